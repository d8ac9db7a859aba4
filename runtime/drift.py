"""Drift on the board: each window's summary of what the model saw and said (edgekit.drift).

The eval sample is summarised from the same pass that scores its accuracy, so a window costs no
extra inference; watched-folder inputs are summarised as they run and handed over per window.
"""

from __future__ import annotations

import numpy as np

from edgekit import metrics
from edgekit.drift import DriftSummary, WindowDrift, channel_axis_of, merge, summarize
from edgekit.runtime.session import DeviceSession
from edgekit.schema import AccuracyResult


def eval_pass(session: DeviceSession) -> tuple[AccuracyResult | None, DriftSummary | None]:
    """Accuracy on the bundle's eval sample (as :meth:`DeviceSession.accuracy` scores it) and
    the drift summary of the same outputs, from one pass over the sample."""
    sample = session.eval_sample()
    if sample is None:
        return None, None
    outputs = session.predict(sample.xs)
    summary = summarize(sample.xs[0], outputs, channel_axis=_channel_axis(session))
    scored = metrics.score(outputs, labels=sample.y, reference=sample.reference)
    if scored is None:
        return None, summary
    name, value = scored
    return AccuracyResult(metric=name, value=value, samples=len(outputs)), summary


class DriftAccumulator:
    """Summaries of the inputs run since the last :meth:`take` (a watched folder's)."""

    def __init__(self, session: DeviceSession) -> None:
        self._axis = _channel_axis(session)
        self._parts: list[DriftSummary] = []

    def add(self, inputs: np.ndarray, outputs: np.ndarray) -> None:
        """Count one batch of float inputs and the outputs the model gave for them."""
        if len(outputs):
            self._parts.append(summarize(inputs, outputs, channel_axis=self._axis))

    def take(self) -> DriftSummary | None:
        """Everything counted since the last call, as one summary (None when nothing ran)."""
        parts, self._parts = self._parts, []
        return merge(parts) if parts else None


def window_drift(
    session: DeviceSession, eval_sample: DriftSummary | None, watched: DriftSummary | None
) -> WindowDrift | None:
    """The window's drift block: its summaries and the artifact's reference from the manifest."""
    if eval_sample is None and watched is None:
        return None
    return WindowDrift(
        eval_sample=eval_sample, watched=watched, reference=session.artifact.drift_reference
    )


def _channel_axis(session: DeviceSession) -> int | None:
    # Multi-input models get no per-channel statistics: which input would they describe?
    return channel_axis_of(session.inputs[0].shape) if len(session.inputs) == 1 else None
