"""A ``.tflite`` model in LiteRT with every intermediate tensor kept, for comparing a quantized
model with its fp32 twin layer by layer (the ranking behind the accuracy-aware fallback)."""

from __future__ import annotations

import numpy as np


class AllTensors:
    """A model in LiteRT with every intermediate tensor kept, for layer-by-layer comparison."""

    def __init__(self, content: bytes) -> None:
        from edgekit.runtime import litert_interpreter, litert_op_resolver

        self._interp = litert_interpreter()(
            model_content=content,
            experimental_preserve_all_tensors=True,
            # XNNPACK would fuse ops and hide the intermediate tensors the comparison reads.
            experimental_op_resolver_type=litert_op_resolver("BUILTIN_WITHOUT_DEFAULT_DELEGATES"),
        )
        self._interp.allocate_tensors()
        self._input = self._interp.get_input_details()[0]
        details = {t["index"]: t for t in self._interp.get_tensor_details()}
        self._details = details
        produced = set()
        self.ops = []
        for op in self._interp._get_ops_details():
            if op["op_name"] == "DELEGATE":
                continue
            out = int(op["outputs"][0])
            produced.add(out)
            self.ops.append(
                {
                    "op": op["op_name"],
                    "output": details[out]["name"],
                    "output_index": out,
                    "inputs": [details[int(i)]["name"] for i in op["inputs"] if int(i) >= 0],
                    "input_indices": [int(i) for i in op["inputs"] if int(i) >= 0],
                    "quantized": np.dtype(details[out]["dtype"]).name in ("int8", "uint8"),
                }
            )
        self._activations = produced | {self._input["index"]}
        self.names = {details[i]["name"] for i in self._activations}

    def canonical_names(self, reference_names: set[str]) -> dict[str, str]:
        """Quantized tensor name -> the fp32 model's name for the same value.

        The converter renames a layer's output when a DEQUANTIZE (model output) or QUANTIZE
        (model input) takes over the original name.
        """
        mapping = {}
        for op in self.ops:
            if op["op"] == "DEQUANTIZE" and op["output"] in reference_names:
                mapping[op["inputs"][0]] = op["output"]
            if op["op"] == "QUANTIZE" and op["inputs"][0] in reference_names:
                mapping[op["output"]] = op["inputs"][0]
        return mapping

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every activation tensor (dequantized to float) for one input."""
        from edgekit.runtime import spec_of, to_float, to_model_dtype

        spec = spec_of(self._input)
        self._interp.set_tensor(self._input["index"], to_model_dtype(x, spec))
        self._interp.invoke()
        values = {}
        for index in self._activations:
            detail = self._details[index]
            dtype = np.dtype(detail["dtype"]).name
            if dtype not in ("float32", "int8", "uint8"):
                continue
            values[detail["name"]] = to_float(self._interp.get_tensor(index), spec_of(detail))
        return values
