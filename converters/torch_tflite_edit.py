"""Edits and checks of the ``.tflite`` files litert-torch and AI Edge Quantizer write.

Both write full-integer models with int8 inputs and outputs and have no option for anything else,
so the I/O the profile asks for is made here: float32 I/O by a QUANTIZE after each integer input
and a DEQUANTIZE before each integer output (the reverse of TensorFlow's
``modify_model_interface``, which LiteRT ships and which gives uint8 I/O from float I/O).

:func:`fake_quant_weights` catches the artifact a PT2E graph gives when it is converted without
its quantization config: fp32 weight constants fed through QUANTIZE -> DEQUANTIZE into float
kernels. Its accuracy equals the int8 model's, so only the file itself shows it (it is larger than
fp32 and runs about 11x slower).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from edgekit._optional import require
from edgekit.converters._errors import first_line
from edgekit.errors import ConversionError
from edgekit.vocab import IODtype

_INTEGER = {"INT8", "UINT8", "INT16"}


def _schema() -> Any:
    return require("ai_edge_litert.schema_py_generated", extra="build", package="ai-edge-litert")


def _flatbuffers() -> Any:
    return require("ai_edge_litert.tools.flatbuffer_utils", extra="build", package="ai-edge-litert")


def _type_name(schema: Any, code: int) -> str:
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return str(names.get(code, code))


def _opcode(model: Any, builtin: int) -> int:
    """Index of ``builtin`` in the model's operator codes, added when missing."""
    schema, fbu = _schema(), _flatbuffers()
    for i, code in enumerate(model.operatorCodes):
        if fbu.get_builtin_code_from_operator_code(code) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def to_float_io(content: bytes, *, inputs: bool, outputs: bool) -> bytes:
    """``content`` with float32 instead of integer inputs and/or outputs (same results:
    the added QUANTIZE/DEQUANTIZE use the integer tensors' own scale and zero point)."""
    schema, fbu = _schema(), _flatbuffers()
    model = fbu.read_model_from_bytearray(bytearray(content))
    quantize = _opcode(model, schema.BuiltinOperator.QUANTIZE)
    dequantize = _opcode(model, schema.BuiltinOperator.DEQUANTIZE)
    moved: dict[tuple[int, int], int] = {}  # (subgraph, integer tensor) -> its float twin
    for index, graph in enumerate(model.subgraphs):
        before: list[Any] = []
        after: list[Any] = []
        for edge, wanted, op_code in ((graph.inputs, inputs, quantize),
                                      (graph.outputs, outputs, dequantize)):  # fmt: skip
            if not wanted:
                continue
            for k, tensor in enumerate(edge):
                if _type_name(schema, graph.tensors[tensor].type) not in _INTEGER:
                    continue
                twin = copy.deepcopy(graph.tensors[tensor])
                twin.type = schema.TensorType.FLOAT32
                twin.quantization = None
                twin.buffer = 0  # buffer 0 is the empty one: an activation, no data
                graph.tensors.append(twin)
                float_index = len(graph.tensors) - 1
                # The float tensor takes the name the signature and the board see.
                graph.tensors[tensor].name = (graph.tensors[tensor].name or b"") + b"_int"
                op = schema.OperatorT()
                op.opcodeIndex = op_code
                is_input = op_code == quantize
                op.inputs = [float_index] if is_input else [tensor]
                op.outputs = [tensor] if is_input else [float_index]
                (before if is_input else after).append(op)
                edge[k] = float_index
                moved[(index, tensor)] = float_index
        graph.operators = [*before, *graph.operators, *after]
    for signature in model.signatureDefs or []:
        for entry in [*(signature.inputs or []), *(signature.outputs or [])]:
            entry.tensorIndex = moved.get((signature.subgraphIndex, entry.tensorIndex),
                                          entry.tensorIndex)  # fmt: skip
    return bytes(fbu.convert_object_to_bytearray(model))


def with_io(content: bytes, *, inputs: IODtype, outputs: IODtype) -> bytes:
    """A full-integer model with int8 I/O given the I/O dtypes the profile asks for."""
    if inputs is IODtype.INT8 and outputs is IODtype.INT8:
        return content
    floated = to_float_io(content, inputs=inputs is not IODtype.INT8,
                          outputs=outputs is not IODtype.INT8)  # fmt: skip
    if IODtype.UINT8 not in (inputs, outputs):
        return floated
    # LiteRT's modify_model_interface turns float edges (with their QUANTIZE/DEQUANTIZE) into
    # integer ones; it takes file paths and the TensorType codes.
    schema = _schema()
    interface = require("ai_edge_litert._pywrap_modify_model_interface", extra="build",
                        package="ai-edge-litert")  # fmt: skip
    codes = {IODtype.FLOAT32: schema.TensorType.FLOAT32, IODtype.INT8: schema.TensorType.INT8,
             IODtype.UINT8: schema.TensorType.UINT8}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgekit-io-") as tmp:
        src, dst = Path(tmp) / "in.tflite", Path(tmp) / "out.tflite"
        src.write_bytes(floated)
        try:
            status = interface.modify_model_interface(str(src), str(dst), codes[inputs],
                                                      codes[outputs])  # fmt: skip
        except Exception as exc:
            raise ConversionError(f"cannot give the model {inputs} I/O: {first_line(exc)}") from exc
        if status != 0 or not dst.is_file():
            raise ConversionError(f"cannot give the model {inputs}/{outputs} I/O (status {status})")
        return dst.read_bytes()


def fake_quant_weights(content: bytes) -> list[str]:
    """Names of float32 constants fed into a QUANTIZE op: the weights of a PT2E graph converted
    without its quantization config (empty for a real int8 model and for a plain fp32 one)."""
    schema, fbu = _schema(), _flatbuffers()
    model = fbu.read_model_from_bytearray(bytearray(content))
    found = []
    for graph in model.subgraphs:
        for op in graph.operators:
            code = fbu.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
            if code != schema.BuiltinOperator.QUANTIZE:
                continue
            tensor = graph.tensors[op.inputs[0]]
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            has_data = buffer is not None and (
                (buffer.data is not None and len(buffer.data) > 0) or (buffer.offset or 0) > 1
            )
            if has_data and _type_name(schema, tensor.type) == "FLOAT32":
                name = tensor.name
                found.append(name.decode() if isinstance(name, bytes) else str(name))
    return found


def check_real_int8(content: bytes) -> None:
    """Raise ConversionError when ``content`` holds fp32 weights wrapped in QUANTIZE/DEQUANTIZE
    instead of int8 weights."""
    fake = fake_quant_weights(content)
    if fake:
        shown = ", ".join(fake[:3]) + (f" and {len(fake) - 3} more" if len(fake) > 3 else "")
        raise ConversionError(
            f"the int8 artifact holds {len(fake)} fp32 weight tensor(s) wrapped in "
            f"QUANTIZE/DEQUANTIZE ({shown}): the PT2E graph was converted without its "
            "quantization config, which runs float kernels about 11x slower than fp32"
        )
