"""Loading ONNX models: check them, name what cannot be handled, make them ready to quantize.

Models come from PyTorch, Paddle, tf2onnx and Keras with opsets 11 and up, weights as initializers
or Constant nodes, dynamic axes and several (also integer) inputs. Each failure names its reason:
the op, the opset or the feature.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit._optional import require
from edgekit.converters._errors import first_line
from edgekit.errors import ConversionError
from edgekit.manifest import TensorSpec

MIN_OPSET = 11
# Per-channel DequantizeLinear (an axis attribute) needs opset 13.
QUANT_OPSET = 13
_KNOWN_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}
_ELEM_TYPES = {
    1: "float32",
    10: "float16",
    3: "int8",
    2: "uint8",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
}


@dataclass
class OnnxModel:
    """A checked ONNX model (a ModelProto) and what was done to it on the way in."""

    proto: Any
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    notes: list[str] = field(default_factory=list)

    def serialized(self) -> bytes:
        """The model as bytes."""
        data: bytes = self.proto.SerializeToString()
        return data


def onnx_module() -> Any:
    """The ``onnx`` package, imported on first use."""
    return require("onnx", extra="build")


def external_data_files(path: Path) -> tuple[Path, ...]:
    """The files beside ``path`` that hold its external-data tensors (``model.onnx.data``, as the
    dynamo exporter writes), each checked to exist; ConversionError naming one that does not."""
    onnx = onnx_module()
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ConversionError(
            f"{path} is not a valid ONNX file (truncated or not an ONNX protobuf): "
            f"{first_line(exc)}"
        ) from exc
    tensors = list(proto.graph.initializer) + [
        attr.t for node in proto.graph.node for attr in node.attribute if attr.HasField("t")
    ]
    names = dict.fromkeys(
        entry.value
        for tensor in tensors
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    )
    files = []
    for name in names:
        file = (path.parent / name).resolve()
        if path.parent.resolve() not in file.parents:
            raise ConversionError(f"{path}: external data {name!r} points outside its folder")
        if not file.is_file():
            raise ConversionError(
                f"{path}: its weights are in {name}, which is missing (expected at {file})"
            )
        files.append(file)
    return tuple(files)


def source_digest(path: Path) -> str:
    """SHA-256 over the model file and every external-data file it reads, in order."""
    digest = hashlib.sha256()
    for file in (path, *external_data_files(path)):
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def load_onnx(path: Path) -> OnnxModel:
    """Read and check an ``.onnx`` file; raise ConversionError with the reason it cannot be used."""
    onnx = onnx_module()
    if not path.is_file():
        raise ConversionError(f"model not found: {path}")
    external_data_files(path)  # a missing weights file is named, not "truncated protobuf"
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise ConversionError(
            f"{path} is not a valid ONNX file (truncated or not an ONNX protobuf): "
            f"{first_line(exc)}"
        ) from exc
    if not proto.graph.node:
        raise ConversionError(f"{path}: the ONNX graph has no nodes (truncated or empty file)")
    opset = _default_opset(proto, path)
    newest = onnx.defs.onnx_opset_version()
    if opset < MIN_OPSET:
        raise ConversionError(
            f"{path}: opset {opset} is not supported (edgekit handles opsets {MIN_OPSET} to "
            f"{newest}); re-export the model with opset_version={QUANT_OPSET} or newer"
        )
    if opset > newest:
        raise ConversionError(
            f"{path}: opset {opset} is newer than this onnx package supports ({newest})"
        )
    for node in proto.graph.node:
        if node.domain not in _KNOWN_DOMAINS:
            raise ConversionError(
                f"{path}: node {node.name or node.op_type!r} uses op {node.op_type} from custom "
                f"domain {node.domain!r}, which ONNX Runtime cannot run without its library"
            )
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ConversionError(f"{path}: invalid ONNX model: {first_line(exc)}") from exc
    model = OnnxModel(
        proto=proto,
        opset=opset,
        inputs=graph_inputs(proto),
        outputs=tuple(_value_spec(v) for v in proto.graph.output),
    )
    _check_runs(model, path)
    return model


def _default_opset(proto: Any, path: Path) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ConversionError(f"{path}: the model declares no opset for the default ONNX domain")


def graph_inputs(proto: Any) -> tuple[TensorSpec, ...]:
    """The model's real inputs (older exporters also list initializers as inputs)."""
    initializers = {i.name for i in proto.graph.initializer}
    return tuple(_value_spec(v) for v in proto.graph.input if v.name not in initializers)


def _value_spec(value: Any) -> TensorSpec:
    tensor = value.type.tensor_type
    dtype = _ELEM_TYPES.get(tensor.elem_type)
    if dtype is None:
        raise ConversionError(
            f"tensor {value.name!r} has element type {tensor.elem_type}, which edgekit cannot feed"
        )
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in tensor.shape.dim)  # fmt: skip
    return TensorSpec(name=value.name, shape=dims, dtype=dtype)


def _check_runs(model: OnnxModel, path: Path) -> None:
    """Create an ONNX Runtime session: it names ops it has no kernel for."""
    ort = require("onnxruntime", extra="build")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        ort.InferenceSession(model.serialized(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"{path}: ONNX Runtime cannot run it: {first_line(exc)}") from exc


def fix_shapes(model: OnnxModel, sample_shapes: dict[str, tuple[int, ...]]) -> OnnxModel:
    """Pin dynamic non-batch axes to the shapes of one sample (batch axis stays dynamic)."""
    onnx = onnx_module()
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    notes = list(model.notes)
    for value in proto.graph.input:
        shape = sample_shapes.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if shape is None or len(dims) != len(shape) + 1:
            continue
        for axis, (dim, size) in enumerate(zip(list(dims)[1:], shape, strict=True), start=1):
            if not (dim.HasField("dim_value") and dim.dim_value > 0):
                dim.Clear()
                dim.dim_value = int(size)
                notes.append(f"input {value.name!r} axis {axis} fixed to {size}")
        batch = dims[0]
        if not (batch.HasField("dim_value") and batch.dim_value > 0):
            batch.Clear()
            batch.dim_param = "batch"
    try:
        proto = onnx.shape_inference.infer_shapes(proto)
    except Exception as exc:
        raise ConversionError(f"shape inference failed: {first_line(exc)}") from exc
    return OnnxModel(proto, model.opset, graph_inputs(proto), model.outputs, notes)


def upgrade_for_quantization(model: OnnxModel) -> OnnxModel:
    """Convert to opset 13 when older: per-channel QDQ needs DequantizeLinear's axis."""
    if model.opset >= QUANT_OPSET:
        return model
    onnx = onnx_module()
    try:
        proto = onnx.version_converter.convert_version(model.proto, QUANT_OPSET)
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ConversionError(
            f"cannot upgrade opset {model.opset} to {QUANT_OPSET} for quantization: "
            f"{first_line(exc)}"
        ) from exc
    notes = [*model.notes, f"opset {model.opset} upgraded to {QUANT_OPSET}"]
    return OnnxModel(proto, QUANT_OPSET, graph_inputs(proto), model.outputs, notes)


def preprocess(model: OnnxModel) -> OnnxModel:
    """ONNX Runtime's recommended pre-processing: symbolic shape inference and graph
    optimization. Falls back to fewer steps when a step fails, and says so."""
    quant = require("onnxruntime.quantization.shape_inference", extra="build")
    onnx = onnx_module()
    attempts: tuple[dict[str, bool], ...] = (
        {},
        {"skip_symbolic_shape": True},
        {"skip_symbolic_shape": True, "skip_optimization": True},
    )
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        src.write_bytes(model.serialized())
        reasons = []
        for options in attempts:
            try:
                # ORT's symbolic shape inference dumps its half-done model into the current
                # directory when it gives up; keep that inside the temporary folder.
                with contextlib.chdir(tmp):
                    quant.quant_pre_process(str(src), str(dst), **options)
                proto = onnx.load(str(dst))
            except Exception as exc:  # symbolic shape inference has its limits
                reasons.append(first_line(exc))
                continue
            notes = list(model.notes)
            if options:
                notes.append(
                    "pre-processing without " + " and ".join(k[5:] for k in options)
                    + f" ({reasons[0]})"
                )  # fmt: skip
            return OnnxModel(proto, model.opset, graph_inputs(proto), model.outputs, notes)
    raise ConversionError(f"ONNX pre-processing failed: {reasons[-1]}")


def name_nodes(model: OnnxModel) -> OnnxModel:
    """Give every node a unique name: the quantizer keeps nodes float by name."""
    names = [node.name for node in model.proto.graph.node]
    if all(names) and len(set(names)) == len(names):
        return model
    onnx = onnx_module()
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    seen: set[str] = set()
    for i, node in enumerate(proto.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return OnnxModel(proto, model.opset, model.inputs, model.outputs, list(model.notes))
