"""The drift reference of an artifact: what it saw and said on the bundle's eval sample.

Stored in the manifest (``Artifact.drift_reference``); boards send it beside each window's own
summaries, and the fleet report measures how far a board's inputs and outputs moved from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgekit.drift import DriftSummary, channel_axis_of, summarize
from edgekit.manifest import TensorSpec


def drift_reference(
    inputs: Sequence[np.ndarray], outputs: np.ndarray, *, specs: Sequence[TensorSpec]
) -> DriftSummary | None:
    """The reference summary of an artifact whose outputs on the eval sample ``inputs`` (one
    batch-first array per model input, the values as the board decodes them from the bundle's
    eval sample) are ``outputs``; ``specs`` are the artifact's inputs. None for an empty sample.

    Computed exactly as the board computes its windows (``edgekit.drift.summarize``), so a board
    running the same artifact on the same sample reproduces it.
    """
    if len(outputs) == 0:
        return None
    single = len(specs) == 1 and len(inputs) == 1
    axis = channel_axis_of(specs[0].shape) if single else None
    return summarize(inputs[0] if single else None, outputs, channel_axis=axis)
