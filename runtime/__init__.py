"""Device side of edgekit: interpreter backends, prediction and benchmarking.

Never imports TensorFlow, Keras, onnx or ``edgekit.converters``: a board installs only
``edgekit[device]``. The names below are the runtime's public API (the converters use nothing
else); each loads its module on first use, so ``import edgekit.runtime`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgekit.runtime.backend import Backend, open_backend
    from edgekit.runtime.benchmark import measure_latency
    from edgekit.runtime.litert import interpreter_class as litert_interpreter
    from edgekit.runtime.litert import op_resolver_type as litert_op_resolver
    from edgekit.runtime.predict import Predictor
    from edgekit.runtime.quantization import to_float, to_model_dtype
    from edgekit.runtime.side_by_side import Timing, race, time_side_by_side
    from edgekit.runtime.tflite_interpreter import spec_of

# public name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    "Backend": ("edgekit.runtime.backend", "Backend"),
    "Predictor": ("edgekit.runtime.predict", "Predictor"),
    "Timing": ("edgekit.runtime.side_by_side", "Timing"),
    "litert_interpreter": ("edgekit.runtime.litert", "interpreter_class"),
    "litert_op_resolver": ("edgekit.runtime.litert", "op_resolver_type"),
    "measure_latency": ("edgekit.runtime.benchmark", "measure_latency"),
    "open_backend": ("edgekit.runtime.backend", "open_backend"),
    "race": ("edgekit.runtime.side_by_side", "race"),
    "spec_of": ("edgekit.runtime.tflite_interpreter", "spec_of"),
    "time_side_by_side": ("edgekit.runtime.side_by_side", "time_side_by_side"),
    "to_float": ("edgekit.runtime.quantization", "to_float"),
    "to_model_dtype": ("edgekit.runtime.quantization", "to_model_dtype"),
}

__all__ = [
    "Backend",
    "Predictor",
    "Timing",
    "litert_interpreter",
    "litert_op_resolver",
    "measure_latency",
    "open_backend",
    "race",
    "spec_of",
    "time_side_by_side",
    "to_float",
    "to_model_dtype",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
