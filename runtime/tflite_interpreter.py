"""What LiteRT and tflite-runtime have in common: the TFLite ``Interpreter`` API."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import RuntimeBackendError
from edgekit.manifest import QuantParams, TensorSpec


class InterpreterBackend:
    """A model loaded into a TFLite-API interpreter class (LiteRT's or tflite-runtime's)."""

    name = "tflite"
    version = "unknown"

    def __init__(self, model: Path | bytes, *, threads: int, interpreter_cls: Any) -> None:
        source = (
            {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
        )
        try:
            self._interp = interpreter_cls(**source, num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            what = "model" if isinstance(model, bytes) else str(model)
            raise RuntimeBackendError(f"{self.name} cannot load {what}: {exc}") from exc
        self._remember_details()
        self.threads = threads

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(spec_of(d) for d in self._in)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return tuple(spec_of(d) for d in self._out)

    def invoke(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self._in):
            raise RuntimeBackendError(f"model takes {len(self._in)} input(s), got {len(inputs)}")
        try:
            # The timed path: for small models a microsecond of Python here is a measurable
            # share of the latency, so the common single-input case takes no loops.
            if len(inputs) == 1:
                array = inputs[0]
                if array.shape != self._shapes[0]:
                    self._fit_shapes(inputs)
                self._interp.set_tensor(self._in_index[0], array)
            else:
                if any(a.shape != s for a, s in zip(inputs, self._shapes, strict=True)):
                    self._fit_shapes(inputs)
                for index, array in zip(self._in_index, inputs, strict=True):
                    self._interp.set_tensor(index, array)
            self._interp.invoke()
            return [self._interp.get_tensor(i) for i in self._out_index]
        except (ValueError, RuntimeError) as exc:
            raise RuntimeBackendError(f"{self.name} inference failed: {exc}") from exc

    def _remember_details(self) -> None:
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        self._shapes = [tuple(int(d) for d in detail["shape"]) for detail in self._in]
        self._in_index = [detail["index"] for detail in self._in]
        self._out_index = [detail["index"] for detail in self._out]

    def _fit_shapes(self, inputs: Sequence[np.ndarray]) -> None:
        for detail, array in zip(self._in, inputs, strict=True):
            if tuple(detail["shape"]) == array.shape:
                continue
            signature = detail["shape_signature"]
            fixed = [s for s, a in zip(signature, array.shape, strict=False) if s != -1 and s != a]
            if len(signature) != array.ndim or fixed:
                raise RuntimeBackendError(
                    f"input {detail['name']!r} takes shape {tuple(signature)}, got {array.shape}"
                )
            self._interp.resize_tensor_input(detail["index"], list(array.shape))
        self._interp.allocate_tensors()
        self._remember_details()


def spec_of(detail: dict[str, Any]) -> TensorSpec:
    """A TensorSpec from an interpreter's tensor details."""
    scale, zero_point = detail["quantization"]
    quant = QuantParams(scale=float(scale), zero_point=int(zero_point)) if scale else None
    shape = tuple(None if int(d) < 0 else int(d) for d in detail["shape_signature"])
    return TensorSpec(
        name=detail["name"], shape=shape, dtype=np.dtype(detail["dtype"]).name, quantization=quant
    )
