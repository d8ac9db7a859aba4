"""The bundle's eval sample: chosen, stored compactly, and scored the way the board scores it.

The board reproduces the build's figure on this sample exactly, so the build scores every shipped
artifact on the decoded sample (what the board will read), one sample at a time (as the board runs
it), beside the fp32 model on the same samples. By default the sample is capped at the larger of
4 MiB and the largest artifact (boards have flash limits), taking fewer samples to fit and saying
so; an explicit size is taken as asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgekit import eval_sample
from edgekit.converters.candidates import Candidate
from edgekit.converters.drift_reference import drift_reference
from edgekit.converters.validate import Reference, accuracy_of, outputs_of
from edgekit.datasets import LabelledData
from edgekit.drift import DriftSummary
from edgekit.figures import AccuracyFigures

DEFAULT_SAMPLES = 200
DEFAULT_CAP_BYTES = 4 * 2**20
SAMPLE_LABEL = "eval sample"


@dataclass(frozen=True)
class SampleOutput:
    """The eval sample file and what each shipped artifact scores on it."""

    content: bytes
    count: int
    requested: int
    coding: str  # how the inputs are stored: "uint8", "float16", an integer dtype
    figures: tuple[AccuracyFigures, ...]  # per shipped artifact, fp32 beside it, same samples
    # Per shipped artifact: what it saw and said on the sample, the boards' drift reference.
    references: tuple[DriftSummary | None, ...]
    note: str | None  # set when fewer samples were kept than asked for


def make_sample(
    shipped: Sequence[Candidate], reference: Reference, *, requested: int | None
) -> SampleOutput:
    """The sample of ``requested`` samples (default: 200, capped in size) and its figures."""
    assert reference.data is not None  # the caller checked
    wanted = requested or DEFAULT_SAMPLES
    pool = reference.data.subset(reference.data.sample_indices(wanted))
    cap = max(DEFAULT_CAP_BYTES, max(len(c.content) for c in shipped))
    preferred = shipped[0].baseline
    encoded = [eval_sample.encode(n, x) for n, x in zip(eval_sample.input_names(len(pool.xs)),
                                                         pool.xs, strict=True)]  # fmt: skip
    decoded = LabelledData(xs=tuple(e.decoded for e in encoded), y=pool.y, source=pool.source)
    # The fp32 outputs on what the board will read: the board's agreement and SQNR reference.
    fp32 = outputs_of(preferred.content, decoded, backend=preferred.backend)
    count = len(pool)
    content = _file(encoded, decoded, fp32, count)
    while requested is None and len(content) > cap and count > 1:
        count = max(1, min(count - 1, int(count * cap / len(content) * 0.95)))
        content = _file(encoded, decoded, fp32, count)
    kept = decoded.subset(np.arange(count))
    # One sample at a time, exactly as DeviceSession runs it on the board.
    runs = [outputs_of(c.content, kept, backend=c.backend, batch_size=1) for c in shipped]
    figures = tuple(accuracy_of(fp32[:count], r, kept, data_label=SAMPLE_LABEL) for r in runs)
    # Summarised from the same outputs, as the board summarises its pass over the sample.
    references = tuple(
        drift_reference(kept.xs, r, specs=c.io.inputs) for c, r in zip(shipped, runs, strict=True)
    )
    note = None
    if count < len(pool):
        note = (
            f"eval sample: {count} of {len(pool)} samples, to stay within "
            f"{cap / 2**20:.1f} MiB (pass --eval-sample N to choose)"
        )
    return SampleOutput(content, count, len(pool), encoded[0].coding, figures, references, note)


def _file(
    encoded: Sequence[eval_sample.Encoded], decoded: LabelledData, fp32: np.ndarray, count: int
) -> bytes:
    """The file holding the first ``count`` samples (scale and offset arrays kept whole)."""
    head = [
        eval_sample.Encoded({k: v if "." in k else v[:count] for k, v in e.arrays.items()},
                            e.decoded[:count], e.coding)
        for e in encoded
    ]  # fmt: skip
    y = None if decoded.y is None else decoded.y[:count]
    return eval_sample.file_bytes(head, y, fp32[:count])
