"""Float-in, float-out inference on any backend, for applications and for accuracy checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgekit.errors import RuntimeBackendError
from edgekit.manifest import TensorSpec
from edgekit.progress import Task
from edgekit.runtime.backend import Backend
from edgekit.runtime.quantization import to_float, to_model_dtype


class Predictor:
    """Runs a model on float (or integer id) data in batches and returns one output as float32.

    Quantized inputs and outputs are converted with the model's scale and zero point, so callers
    see the same values whatever the artifact's I/O dtype.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        batch_size: int = 32,
        output: int = 0,
        inputs: Sequence[TensorSpec] | None = None,
        outputs: Sequence[TensorSpec] | None = None,
    ) -> None:
        """``inputs``/``outputs`` override the backend's specs (a bundle passes its manifest's,
        so conversion uses the scale and zero point the bundle declares)."""
        if not 0 <= output < len(backend.outputs):
            raise RuntimeBackendError(f"the model has no output {output}")
        self.backend = backend
        self.inputs = tuple(inputs) if inputs is not None else backend.inputs
        self.output = (tuple(outputs) if outputs is not None else backend.outputs)[output]
        self._output_index = output
        fixed = {spec.shape[0] for spec in self.inputs if spec.shape and spec.shape[0] is not None}
        self.fixed_batch = fixed.pop() if len(fixed) == 1 else None
        self.batch_size = self.fixed_batch or batch_size

    def predict(
        self, xs: np.ndarray | Sequence[np.ndarray], *, task: Task | None = None
    ) -> np.ndarray:
        """Output for every sample (batch first); ``xs`` is one array per model input."""
        arrays = [xs] if isinstance(xs, np.ndarray) else list(xs)
        if len(arrays) != len(self.inputs):
            raise RuntimeBackendError(
                f"the model takes {len(self.inputs)} input(s), got {len(arrays)}"
            )
        total = len(arrays[0])
        chunks = []
        for start in range(0, total, self.batch_size):
            batch = [a[start : start + self.batch_size] for a in arrays]
            real = len(batch[0])
            short = self.batch_size - real if self.fixed_batch else 0
            if short:  # a fixed-batch model: pad the last batch, drop the padding's outputs
                batch = [np.concatenate([b, np.repeat(b[-1:], short, axis=0)]) for b in batch]
            raw = self.backend.invoke(
                [to_model_dtype(b, spec) for b, spec in zip(batch, self.inputs, strict=True)]
            )
            chunks.append(to_float(raw[self._output_index], self.output)[:real])
            if task is not None:
                task.advance(real)
        return np.concatenate(chunks)
