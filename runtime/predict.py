"""Float-in, float-out inference on any backend, for applications and for accuracy checks."""

from __future__ import annotations

import numpy as np

from edgekit.errors import RuntimeBackendError
from edgekit.progress import Task
from edgekit.runtime.backend import Backend
from edgekit.runtime.quantization import to_float, to_model_dtype


class Predictor:
    """Runs a single-input, single-output model on float data in batches.

    Quantized inputs and outputs are converted with the model's scale and zero point, so callers
    always see floats, whatever the artifact's I/O dtype.
    """

    def __init__(self, backend: Backend, *, batch_size: int = 32) -> None:
        if len(backend.inputs) != 1 or len(backend.outputs) != 1:
            raise RuntimeBackendError(
                f"Predictor handles one input and one output; the model has "
                f"{len(backend.inputs)} and {len(backend.outputs)}"
            )
        self.backend = backend
        self.input = backend.inputs[0]
        self.output = backend.outputs[0]
        fixed = self.input.shape[0] if self.input.shape else None
        self.batch_size = fixed if fixed is not None else batch_size

    def predict(self, x: np.ndarray, *, task: Task | None = None) -> np.ndarray:
        """Outputs for every sample of ``x`` (batch first), as float32."""
        chunks = []
        for start in range(0, len(x), self.batch_size):
            batch = x[start : start + self.batch_size]
            short = self.batch_size - len(batch) if self.input.shape[0] is not None else 0
            if short:  # a fixed-batch model: pad the last batch, drop the padding's outputs
                batch = np.concatenate([batch, np.repeat(batch[-1:], short, axis=0)])
            (raw,) = self.backend.invoke([to_model_dtype(batch, self.input)])
            chunks.append(to_float(raw, self.output)[: len(batch) - short])
            if task is not None:
                task.advance(len(batch) - short)
        return np.concatenate(chunks)
