"""The ``Source`` protocol: what the build asks of the user's model, whatever its kind.

A source knows its name, kind, digest and tensors; which artifact formats it can become (and why
not the others); how to make the :class:`~edgekit.converters.formats.Exporter` for a format; how
to prune itself; and how to pin dynamic axes to the data's shapes. The pipeline asks only these
questions, so it never needs to know which kind of model it holds.

Adding a source kind means adding a module with a class that satisfies both :class:`Source`
(its instances) and :class:`SourceType` (the class itself: ``accepts`` and ``open`` as
classmethods), and one line in :mod:`edgekit.converters.source_registry` (or a call to its
``register``). Its ``kind`` is a name of its own, recorded in the manifest; the shipped kinds'
names are :class:`~edgekit.vocab.SourceKind`'s. The shipped kinds:
:mod:`~edgekit.converters.keras_source` (``.keras``, ``.h5``),
:mod:`~edgekit.converters.saved_model_source`, :mod:`~edgekit.converters.onnx_source` and
:mod:`~edgekit.converters.torch_source` (``.pt2``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from edgekit.converters.formats import Exporter
from edgekit.converters.prune import PruneOutcome, PruneSpec
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError
from edgekit.manifest import TensorSpec
from edgekit.progress import Progress
from edgekit.vocab import ModelFormat

# A shape of one sample (no batch axis) per input name.
SampleShapes = Mapping[str, tuple[int, ...]]


class Source(Protocol):
    """A loaded model, ready to become artifacts."""

    @property
    def name(self) -> str:
        """Short name for bundle ids (the file's stem)."""
        ...

    @property
    def kind(self) -> str:
        """What the user's file is, as recorded in the manifest (a :class:`SourceKind` value
        for the shipped sources)."""
        ...

    @property
    def sha256(self) -> str:
        """SHA-256 of the user's file (or directory tree)."""
        ...

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The model's inputs, batch axis first, in the order data is fed."""
        ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """The model's outputs."""
        ...

    def refusal(self, fmt: ModelFormat) -> str | None:
        """Why this model cannot become an artifact of ``fmt``, or None when it can."""
        ...

    def exporter(self, fmt: ModelFormat, *, work_dir: Path) -> Exporter:
        """The exporter that makes ``fmt`` artifacts of this model (scratch files in
        ``work_dir``); raises ConversionError for a format it cannot become."""
        ...

    def prune(
        self,
        spec: PruneSpec,
        *,
        train: LabelledData | None,
        epochs: int,
        work_dir: Path,
        progress: Progress,
    ) -> tuple[Source, PruneOutcome]:
        """A pruned copy of this model (fine-tuned on ``train`` where the kind can) and what
        pruning did; raises ConversionError for a pruning this kind cannot do."""
        ...

    def pin_shapes(self, shapes: SampleShapes) -> Source:
        """This model with dynamic non-batch input axes fixed to ``shapes`` where the formats
        need that; raises DataError naming an input it cannot pin."""
        ...


class SourceType(Protocol):
    """A kind of model file: recognizes its paths and opens them (a Source class itself)."""

    # How the kind is named in "expected ..." messages: ".keras, .h5", "a SavedModel directory".
    expected: str

    def accepts(self, path: Path) -> bool:
        """True when ``path`` (which exists) is a file or folder of this kind."""
        ...

    def open(self, path: Path, *, work_dir: Path) -> Source:
        """Load and check ``path``; raises ConversionError naming what is wrong with it."""
        ...


def cannot_become(source: Source, fmt: ModelFormat) -> ConversionError:
    """The error for asking ``source`` for an exporter of a format it cannot become."""
    reason = source.refusal(fmt) or f"no {fmt.value} exporter"
    return ConversionError(f"a {source.kind} model cannot become {fmt.value}: {reason}")
