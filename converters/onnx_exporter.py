"""ONNX artifacts (the :class:`Exporter` for ONNX Runtime) from an ONNX graph: fp32 and QDQ int8."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit._optional import require
from edgekit.converters._errors import first_line
from edgekit.converters.formats import (
    ArtifactIO,
    GraphNode,
    LayerCost,
    OpCost,
    Quantized,
    Variant,
    channel_sqnr_db,
    describe_in_runtime,
    rank_by_sqnr_loss,
)
from edgekit.converters.model_stats import DATA_MOVEMENT_OPS, ModelStats
from edgekit.converters.onnx_inspect import inspect_onnx
from edgekit.converters.onnx_model import (
    OnnxModel,
    name_nodes,
    preprocess,
    upgrade_for_quantization,
)
from edgekit.converters.onnx_op_costs import op_costs
from edgekit.converters.onnx_quantize import QdqOptions, quantize_onnx
from edgekit.datasets import LabelledData
from edgekit.errors import ConversionError
from edgekit.profiles import Build
from edgekit.progress import Progress, SilentProgress
from edgekit.vocab import BackendName, CalibrationMethod, ModelFormat, Quantization

# Static int8 variants: (unsigned activations, per-channel weights) -> (key, label).
_VARIANTS: dict[tuple[bool, bool], tuple[str, str]] = {
    (False, True): ("s8s8-pc", "int8 QDQ S8S8 per-channel"),
    (True, True): ("u8s8-pc", "int8 QDQ U8S8 per-channel"),
    (False, False): ("s8s8-pt", "int8 QDQ S8S8 per-tensor"),
    (True, False): ("u8s8-pt", "int8 QDQ U8S8 per-tensor"),
}
# Keeping these float would not win accuracy back: they only move data.
_NOT_CANDIDATES = DATA_MOVEMENT_OPS | {"MaxPool", "Constant"}


class OnnxExporter:
    """ONNX model -> fp32 and QDQ int8 ``.onnx`` artifacts."""

    format = ModelFormat.ONNX
    file_name = "model.onnx"
    backend = BackendName.ONNXRUNTIME

    def __init__(self, model: OnnxModel, *, work_dir: Path | None = None) -> None:
        self.model = preprocess(upgrade_for_quantization(name_nodes(model)))
        # Activation ranges, computed by the first static quantization and reused by the rest.
        self._cache_dir = tempfile.TemporaryDirectory(prefix="edgekit-calib-", dir=work_dir)
        self._calibration_cache = Path(self._cache_dir.name) / "ranges.json"

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(self.model.notes)

    def float_model(self) -> bytes:
        return self.model.serialized()

    def inspect(self, content: bytes) -> ModelStats:
        return inspect_onnx(content)

    def describe(self, content: bytes) -> ArtifactIO:
        return describe_in_runtime(self.backend, content)

    def calibration_method(self, build: Build, scheme: Quantization) -> CalibrationMethod | None:
        return build.calibration_method if scheme is Quantization.INT8 else None

    def scheme_refusal(self, build: Build) -> str | None:
        if build.quantization is Quantization.FP16:
            return "ONNX Runtime's quantizer has no fp16 mode"
        return None

    def keep_float_refusal(self, build: Build) -> str | None:
        return None  # the QDQ quantizer excludes nodes by name whatever the I/O dtypes

    def variants(self, build: Build) -> tuple[Variant, ...]:
        """The profile's scheme, then for static int8 the activation signedness and weight
        granularity it did not ask for: ORT's integer kernels differ by CPU (x86 prefers
        unsigned activations), and per-tensor weights let more depthwise convolutions fuse."""
        scheme = build.quantization
        primary = _VARIANTS[(False, build.per_channel)]
        if scheme is not Quantization.INT8:
            return (Variant(scheme.value, scheme.value, scheme, self.file_name),)
        others = [key for key in _VARIANTS if key != (False, build.per_channel)]
        return tuple(
            Variant(key, label, Quantization.INT8,
                    self.file_name if key == primary[0] else f"model.{key}.onnx")
            for key, label in (primary, *(_VARIANTS[k] for k in others))
        )  # fmt: skip

    def quantize(
        self,
        build: Build,
        calibration: LabelledData | None,
        *,
        variant: Variant | None = None,
        keep_float: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> Quantized:
        options = None
        if variant is not None and variant.scheme is Quantization.INT8:
            unsigned, per_channel = next(k for k, v in _VARIANTS.items() if v[0] == variant.key)
            options = QdqOptions(unsigned_activations=unsigned, per_channel=per_channel)
        artifact = quantize_onnx(
            self.model,
            build,
            calibration=calibration,
            scheme=None if variant is None else variant.scheme,
            options=options,
            exclude=tuple(keep_float),
            calibration_cache=self._calibration_cache,
            progress=progress,
        )
        return Quantized(
            content=artifact.content, scheme=artifact.scheme, kept_float=tuple(keep_float)
        )

    def op_costs(
        self, quantized: bytes, sample: LabelledData, *, threads: int
    ) -> tuple[OpCost, ...] | None:
        """ONNX Runtime's profiler on both models, each op traced back to this model's nodes."""
        feed = _Feed(self.model, sample.take(1)).get_next()
        assert feed is not None  # take(1) of a non-empty sample
        return op_costs(self.model.proto, self.float_model(), quantized, feed, threads=threads)

    def rank_layers(
        self, quantized: bytes, sample: LabelledData, *, progress: Progress | None = None
    ) -> list[LayerCost]:
        """ONNX Runtime's QDQ debugging tools: every activation of the QDQ model against the
        fp32 model's, then the SQNR each node loses."""
        debug = require("onnxruntime.quantization.qdq_loss_debug", extra="build")
        progress = progress or SilentProgress()
        with tempfile.TemporaryDirectory(prefix="edgekit-qdq-debug-") as tmp:
            folder = Path(tmp)
            activations = []
            with progress.task("Comparing layers with fp32", total=2) as task:
                for name, content in (("float", self.float_model()), ("qdq", quantized)):
                    plain, augmented = folder / f"{name}.onnx", folder / f"{name}-aug.onnx"
                    plain.write_bytes(content)
                    try:
                        debug.modify_model_output_intermediate_tensors(str(plain), str(augmented))
                        activations.append(
                            debug.collect_activations(str(augmented), _Feed(self.model, sample))
                        )
                    except Exception as exc:
                        raise ConversionError(
                            f"comparing layers with fp32 failed: {first_line(exc)}"
                        ) from exc
                    task.advance()
        float_acts, qdq_acts = activations
        # What the next node sees: the dequantized value where the tensor was quantized, the
        # tensor itself where it was not (e.g. a Conv output fused with its Relu).
        seen = dict(qdq_acts)
        for tensor, match in debug.create_activation_matching(qdq_acts).items():
            seen[tensor] = match["post_qdq"]
        shapes = _shapes(self.model.proto)
        sqnr = {}
        for tensor, values in float_acts.items():
            if tensor not in seen:
                continue
            ref = _restore(values, shapes.get(tensor))
            test = _restore(seen[tensor], shapes.get(tensor))
            if ref.shape != test.shape:
                continue
            sqnr[tensor] = channel_sqnr_db(ref, test, channel_axis=1 if ref.ndim >= 3 else -1)
        constants = {init.name for init in self.model.proto.graph.initializer}
        nodes = [
            GraphNode(
                name=node.name,
                op=node.op_type,
                inputs=tuple(i for i in node.input if i and i not in constants),
                output=node.output[0],
                candidate=node.op_type not in _NOT_CANDIDATES,
            )
            for node in self.model.proto.graph.node
            if node.output and node.op_type != "Constant"
        ]
        return rank_by_sqnr_loss(nodes, sqnr)


class _Feed:
    """One sample at a time, so saved (flattened) activations can be reshaped back."""

    def __init__(self, model: OnnxModel, data: LabelledData) -> None:
        self._names = [s.name for s in model.inputs]
        self._dtypes = [s.dtype for s in model.inputs]
        self._data = data
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._data):
            return None
        i = self._i
        self._i += 1
        return {
            name: np.asarray(x[i : i + 1], dtype=dtype)
            for name, dtype, x in zip(self._names, self._dtypes, self._data.xs, strict=True)
        }

    def __iter__(self) -> Any:
        while (item := self.get_next()) is not None:
            yield item

    def rewind(self) -> None:
        self._i = 0


def _shapes(proto: Any) -> dict[str, tuple[int, ...]]:
    onnx = require("onnx", extra="build")
    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)
    return shapes


def _restore(batches: Sequence[np.ndarray], shape: tuple[int, ...] | None) -> np.ndarray:
    """Saved activations come flattened, one sample per batch: give them back their shape."""
    if shape and all(int(np.prod(shape)) == b.size for b in batches):
        return np.concatenate([b.reshape(shape) for b in batches])
    return np.concatenate([b.reshape(-1, 1) for b in batches])
