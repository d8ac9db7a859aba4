"""edgekit's vocabulary: every closed set of names the layers exchange, one ``StrEnum`` each.

Profiles, manifests, build reports, wire reports, the store and the CLI all use these, so a value
is spelt once. Members are ``str``: they compare equal to, and serialize as, their plain values,
which is what files on disk and payloads on the wire hold. Standard library only: the board, the
collector and the CLI's start-up all import this module.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path


class ModelFormat(StrEnum):
    """Artifact format."""

    TFLITE = "tflite"
    ONNX = "onnx"


class SourceKind(StrEnum):
    """What the user's model file is."""

    KERAS = "keras"
    H5 = "h5"
    SAVED_MODEL = "saved_model"
    ONNX = "onnx"
    PYTORCH = "pytorch"  # a torch.export program (.pt2) or an nn.Module given in Python


class Layout(StrEnum):
    """Axis order of a 4-D (image-like) model input: what the board must feed."""

    NCHW = "NCHW"  # channels first (PyTorch)
    NHWC = "NHWC"  # channels last (Keras, TFLite's own kernels, camera frames)


class Quantization(StrEnum):
    """Quantization scheme of an artifact."""

    INT8 = "int8"  # full-integer post-training quantization with calibration data
    DYNAMIC = "dynamic"  # int8 weights, float activations (no calibration data)
    FP16 = "fp16"  # float16 weights
    NONE = "none"  # float32 as trained


class IODtype(StrEnum):
    """Dtype of an artifact's inputs and outputs."""

    FLOAT32 = "float32"
    INT8 = "int8"
    UINT8 = "uint8"


class CalibrationMethod(StrEnum):
    """How activation ranges are chosen from calibration data (ONNX Runtime's calibrators)."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class PruneKind(StrEnum):
    """How a model is pruned before quantization."""

    NONE = "none"
    MAGNITUDE = "magnitude"  # zero the smallest weights: smaller gzip transfers, same dense MACs
    STRUCTURED = "structured"  # remove whole filters/channels: fewer MACs on dense CPU kernels


class BackendName(StrEnum):
    """Interpreter that runs an artifact."""

    LITERT = "litert"
    TFLITE_RUNTIME = "tflite-runtime"
    ONNXRUNTIME = "onnxruntime"
    # Built for, never run by, edgekit's runtime: microcontrollers run TFLite Micro firmware.
    TFLITE_MICRO = "tflite-micro"


class MetricName(StrEnum):
    """How accuracy is scored: top-1 against labels, top-1 agreement with the fp32 model's
    outputs, or signal-to-quantization-noise ratio against them (non-classifiers)."""

    TOP1 = "top1"
    AGREEMENT = "agreement"
    SQNR_DB = "sqnr_db"


class OpPrecision(StrEnum):
    """What an op of an artifact runs as, in the op table."""

    INT8 = "int8"  # an integer kernel (uint8 too)
    INT16 = "int16"
    FLOAT = "float"
    FLOAT_QDQ = "float-qdq"  # a float kernel between DequantizeLinear and QuantizeLinear
    CONVERT = "convert"  # quantize, dequantize, requantize
    INDEX = "index"  # integer data that is not quantized (indices, shapes)

    @property
    def integer(self) -> bool:
        """True for integer kernels on quantized data."""
        return self in (OpPrecision.INT8, OpPrecision.INT16)

    @property
    def floating(self) -> bool:
        """True for float kernels, between Q/DQ pairs or not."""
        return self in (OpPrecision.FLOAT, OpPrecision.FLOAT_QDQ)


class CheckStatus(StrEnum):
    """Outcome of one budget or compatibility check."""

    PASS = "pass"
    FAIL = "fail"
    NOT_MEASURED = "not measured"


class BuildStatus(StrEnum):
    """Outcome of a build."""

    OK = "ok"
    OVER_BUDGET = "over_budget"  # no bundle written
    OVER_BUDGET_OVERRIDDEN = "over_budget_overridden"  # bundle written on the user's word


class SelectionSite(StrEnum):
    """Where the candidate to run is chosen: on the build host, whose measurements stand for the
    board's, or on the board itself among the candidates the bundle carries."""

    HOST = "host"
    BOARD = "board"


class MqttVersion(StrEnum):
    """MQTT protocol version a client speaks."""

    V5 = "5"
    V311 = "3.1.1"


class StreamRetention(StrEnum):
    """When the collector's JetStream stream lets go of a message."""

    LIMITS = "limits"  # kept until max age or size, acknowledged or not (replayable)
    WORKQUEUE = "workqueue"  # removed once the collectors acknowledge it


class DeviceStatus(StrEnum):
    """A board's retained status."""

    ONLINE = "online"
    OFFLINE = "offline"


class PixelRange(StrEnum):
    """How 8-bit pixels of an image folder are scaled before they reach the model."""

    UNIT = "0-1"  # x / 255
    BYTE = "0-255"  # unchanged, as float
    SYMMETRIC = "-1-1"  # x / 127.5 - 1


class EmitKind(StrEnum):
    """Extra forms of the shipped artifact ``edgekit build --emit`` writes into the bundle."""

    C = "c"  # a C source and header: the .tflite as a const array, for firmware


class ReportFormat(StrEnum):
    """Output formats of ``edgekit report``."""

    HTML = "html"
    MD = "md"
    CSV = "csv"
    JSON = "json"

    @classmethod
    def from_suffix(cls, suffix: str) -> ReportFormat | None:
        """The format a file suffix names (``md``, ``.markdown``, ``htm``, ...), or None."""
        suffix = suffix.lower().lstrip(".")
        aliases = {"markdown": "md", "htm": "html"}
        try:
            return cls(aliases.get(suffix, suffix))
        except ValueError:
            return None

    @classmethod
    def for_path(cls, path: Path) -> ReportFormat:
        """The format a file name asks for (.md, .csv, .json), HTML otherwise."""
        return cls.from_suffix(path.suffix) or cls.HTML
