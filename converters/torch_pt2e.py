"""PT2E int8 quantization of a torch program for litert-torch, with named modules kept float.

litert-torch's documented full-integer path: ``PT2EQuantizer`` with per-channel symmetric int8
weights, ``prepare_pt2e``, calibration, ``convert_pt2e``, then ``litert_torch.convert`` *with*
``QuantConfig(pt2e_quantizer=...)``. Without that config the converter keeps fp32 weights wrapped
in QUANTIZE/DEQUANTIZE (:func:`~edgekit.converters.torch_tflite_edit.check_real_int8` catches it).

The accuracy fallback keeps modules float by their qualified names (``block.se``). litert-torch
0.10's own switch for that, ``set_module_name(name, None)``, asserts, and its name filter strips a
10-character ``L__self___`` prefix that torch 2.13's ``nn_module_stack`` keys no longer have
(``L__self__block.se``: names never match). So the quantizer here overrides only the method that
builds the static annotation filters and matches the module paths the stack records.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.converters._errors import first_line
from edgekit.converters.torch_errors import reason
from edgekit.errors import ConversionError
from edgekit.progress import Progress
from edgekit.vocab import CalibrationMethod


def torch_module() -> Any:
    """The ``torch`` package, imported on first use."""
    return require("torch", extra="torch")


def litert_torch() -> Any:
    """The ``litert_torch`` package (PyTorch -> LiteRT), imported on first use."""
    torch_module()
    # edgekit shows its own progress; litert-torch would print a line per conversion stage.
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    return require("litert_torch", extra="torch", package="litert-torch")


def eval_module(program: Any) -> Any:
    """The program's graph module in eval mode (an exported module cannot be ``.eval()``-ed;
    litert-torch warns about, and may keep, training-mode behaviour otherwise)."""
    helpers = require("torchao.quantization.pt2e", extra="torch", package="torchao")
    module = program.module()
    helpers.move_exported_model_to_eval(module)
    module.training = False  # what litert-torch checks; the ops above are already eval's
    return module


def module_paths(node: Any) -> list[str]:
    """Qualified names of the modules a graph node was traced in, outermost first ('' = root)."""
    return [str(path) for path, _ in node.meta.get("nn_module_stack", {}).values()]


def in_modules(node: Any, names: Sequence[str]) -> bool:
    """True when ``node`` comes from one of the modules ``names`` (or from inside one)."""
    return any(p == n or p.startswith(n + ".") for p in module_paths(node) for n in names if n)


@functools.cache
def _keep_float_quantizer_class() -> type:
    pq = require("litert_torch.quantize.pt2e_quantizer", extra="torch", package="litert-torch")

    class KeepFloatQuantizer(pq.PT2EQuantizer):  # type: ignore[name-defined]
        """The global config everywhere except the modules in ``keep_float``, which stay float.

        Only the static-annotation method is replaced: it is where 0.10's broken name filter
        would be used (see the module docstring)."""

        def __init__(self, keep_float: tuple[str, ...]) -> None:
            super().__init__()
            self.keep_float = keep_float

        def _annotate_for_static_quantization_config(self, model: Any) -> Any:
            keep = self.keep_float
            return self._annotate_all_static_patterns(
                model, self.global_config, lambda n: not in_modules(n, keep)
            )

    return KeepFloatQuantizer


def quantizer(
    *, per_channel: bool, method: CalibrationMethod, keep_float: Sequence[str] = ()
) -> Any:
    """A PT2E quantizer: int8 symmetric weights (per channel when asked), int8 activations with
    min/max ranges, or histogram ranges for the entropy/percentile calibrators."""
    pq = require("litert_torch.quantize.pt2e_quantizer", extra="torch", package="litert-torch")
    observer = require("torchao.quantization.pt2e.observer", extra="torch", package="torchao")
    config = pq.get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=False)
    if method is CalibrationMethod.MINMAX:
        # The shipped config uses HistogramObserver, ~100x slower per calibration sample.
        act = dataclasses.replace(
            config.input_activation,
            observer_or_fake_quant_ctr=observer.MinMaxObserver.with_args(eps=2**-12),
        )
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    return _keep_float_quantizer_class()(tuple(keep_float)).set_global(config)


def batches(x: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    """``x`` in chunks of exactly ``batch`` samples (the last padded by repeating its last)."""
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        yield np.ascontiguousarray(chunk, dtype=np.float32)


def quantized_graph(
    module: Any, example: tuple[Any, ...], calibration: np.ndarray, q: Any, *, progress: Progress
) -> Any:
    """prepare_pt2e -> calibrate on every sample -> convert_pt2e (weights left as fp32 with
    their quantize/dequantize pair, which litert-torch folds into int8 constants)."""
    torch = torch_module()
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", extra="torch", package="torchao")
    helpers = require("torchao.quantization.pt2e", extra="torch", package="torchao")
    try:
        graph = torch.export.export(module, example).module()
        prepared = pt2e.prepare_pt2e(graph, q)
        with torch.no_grad(), progress.task("Calibrating (PT2E int8)", total=len(calibration)) as t:
            for chunk in batches(calibration, int(example[0].shape[0])):
                prepared(torch.from_numpy(chunk))
                t.advance(len(chunk))
        converted = pt2e.convert_pt2e(prepared, fold_quantize=False)
        helpers.move_exported_model_to_eval(converted)
        converted.training = False
    except ConversionError:
        raise
    except Exception as exc:  # torch.export, the annotators and the observers raise many kinds
        raise ConversionError(f"PT2E quantization failed: {first_line(exc)}") from exc
    return converted


def float_reference_graph(module: Any, example: tuple[Any, ...]) -> Any:
    """The same graph PT2E quantizes (batch norms folded into convolutions), left float: what
    quantized activations are compared with node by node."""
    torch = torch_module()
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", extra="torch", package="torchao")
    pq = require("litert_torch.quantize.pt2e_quantizer", extra="torch", package="litert-torch")
    graph = torch.export.export(module, example).module()
    prepared = pt2e.prepare_pt2e(graph, pq.PT2EQuantizer())  # no config: annotates nothing
    return pt2e.convert_pt2e(prepared, fold_quantize=False)


def to_tflite(graph: Any, example: tuple[Any, ...], q: Any | None) -> bytes:
    """litert-torch's conversion of ``graph``; with the quantization config when ``q`` is given."""
    lt = litert_torch()
    options: dict[str, Any] = {}
    if q is not None:
        quant_config = require("litert_torch.quantize.quant_config", extra="torch",
                               package="litert-torch")  # fmt: skip
        options["quant_config"] = quant_config.QuantConfig(pt2e_quantizer=q)
    try:
        content: bytes = lt.convert(graph, example, **options).model_content()
    except Exception as exc:
        raise ConversionError(f"litert-torch conversion failed: {reason(exc)}") from exc
    return content
