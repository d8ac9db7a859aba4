"""Device profiles: what to build for a board type and what the board can afford.

A profile is a TOML file (shipped in ``edgekit.device_profiles`` or the user's own) validated into a
frozen :class:`DeviceProfile`. Unknown keys and wrong types are errors naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from edgekit.errors import ProfileError
from edgekit.figures import EstimateInputs
from edgekit.vocab import (
    BackendName,
    CalibrationMethod,
    IODtype,
    ModelFormat,
    PruneKind,
    Quantization,
    SelectionSite,
)

_STRICT = ConfigDict(extra="forbid", frozen=True)
_TFLITE_RUNTIMES = (BackendName.LITERT, BackendName.TFLITE_RUNTIME, BackendName.TFLITE_MICRO)

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


@dataclass(config=_STRICT)
class Hardware:
    """The board's compute and memory (its speed per runtime is in ``throughput``)."""

    arch: str
    cores: Annotated[int, Field(ge=1)]
    ram_mb: Positive
    accelerator: str = "none"
    notes: str = ""


@dataclass(config=_STRICT)
class Throughput:
    """How fast one runtime runs models on the board: the figures latency estimates use.

    Sustained figures (what a CNN gets through that runtime), not peaks. A runtime without an
    entry has no estimate: its latency is "unknown", never a pass.
    """

    # Multiply-accumulates per second in integer and float kernels, in G/s.
    int8_gmacs: Positive
    fp32_gmacs: Positive
    # int8 depthwise convolutions usually get far less than dense ones; default: int8_gmacs.
    int8_depthwise_gmacs: Positive | None = None
    # Fixed cost of running one op (dispatch, small-tensor overheads), in microseconds: what
    # dominates tiny models.
    op_overhead_us: NonNegative = 0.0
    notes: str = ""

    def predicted_ms(self, inputs: EstimateInputs) -> float:
        """The latency these figures predict for an artifact with these op-table figures, ms."""
        depthwise = self.int8_depthwise_gmacs or self.int8_gmacs
        compute_ms = (
            inputs.int8_macs / (self.int8_gmacs * 1e6)
            + inputs.int8_depthwise_macs / (depthwise * 1e6)
            + inputs.float_macs / (self.fp32_gmacs * 1e6)
        )
        return compute_ms + inputs.ops * self.op_overhead_us / 1e3


@dataclass(config=_STRICT)
class Build:
    """What the converter produces for this board."""

    formats: Annotated[tuple[ModelFormat, ...], Field(min_length=1)]
    quantization: Quantization
    input_dtype: IODtype = IODtype.FLOAT32
    output_dtype: IODtype = IODtype.FLOAT32
    per_channel: bool = True
    calibration_samples: Annotated[int, Field(ge=1, le=100_000)] = 300
    # ONNX artifacts only: LiteRT's converter always uses min/max ranges.
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    # Build every format in ``formats`` (the first is preferred) instead of only the first one
    # the model can be built to.
    build_all_formats: bool = False
    # When int8 misses the accuracy budget, keep the layers that cost most in float until it fits.
    accuracy_fallback: bool = True
    # With int8: let ops the int8 kernels lack stay float (True) or fail the build naming them.
    allow_float_fallback: bool = True
    prune: PruneKind = PruneKind.NONE
    # Fraction of weights (magnitude) or of channels (structured) to remove, in [0, 1).
    sparsity: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # Ops the board cannot run (e.g. outside the Edge TPU compiler's list); found in the artifact
    # they fail the build's checks.
    unsupported_ops: tuple[str, ...] = ()
    # Where the fastest candidate is chosen: "host" where the build machine stands for the board
    # (x86-64), else "board": the bundle carries the best `ship_candidates` by estimate and the
    # board measures them at first start.
    choose_on: SelectionSite = SelectionSite.BOARD
    ship_candidates: Annotated[int, Field(ge=1, le=8)] = 1


@dataclass(config=_STRICT)
class Runtime:
    """How the board runs the artifact."""

    backend: BackendName
    threads: Annotated[int, Field(ge=1)] = 1
    delegate: str = "none"


@dataclass(config=_STRICT)
class Budgets:
    """Limits a build must meet; every one is checked and reported."""

    max_accuracy_drop_pt: Annotated[float, Field(ge=0)]
    max_model_mb: Positive
    max_ram_mb: Positive
    max_latency_ms: Positive
    # What the whole bundle (artifacts, eval sample, report) may take on the board's storage.
    max_bundle_mb: Positive | None = None


@dataclass(config=_STRICT)
class DeviceProfile:
    """A validated, immutable device profile."""

    name: str
    description: str
    hardware: Hardware
    build: Build
    runtime: Runtime
    budgets: Budgets
    # Per runtime that can run this board's artifacts: [throughput.litert], [throughput.onnxruntime]
    throughput: dict[BackendName, Throughput] = dataclasses.field(default_factory=dict)

    def runtime_for(self, fmt: ModelFormat) -> BackendName:
        """The runtime that runs an artifact of ``fmt`` on this board."""
        if fmt is ModelFormat.ONNX:
            return BackendName.ONNXRUNTIME
        backend = self.runtime.backend
        return backend if backend in _TFLITE_RUNTIMES else BackendName.LITERT

    # Filled by the loader, not by the TOML file.
    source: str = ""
    digest: str = ""


_ADAPTER = TypeAdapter(DeviceProfile)


def shipped_profiles() -> list[str]:
    """Names of the profiles that ship with edgekit, sorted."""
    root = resources.files("edgekit.device_profiles")
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a shipped profile by name (``rpi4``) or a user's TOML file by path."""
    text_key = str(name_or_path)
    candidate = Path(text_key)
    if candidate.suffix == ".toml" or candidate.is_file() or "/" in text_key:
        if not candidate.is_file():
            raise ProfileError(f"profile file not found: {candidate}")
        return parse_profile(candidate.read_bytes(), source=str(candidate))
    resource = resources.files("edgekit.device_profiles").joinpath(f"{text_key}.toml")
    if not resource.is_file():
        names = shipped_profiles()
        near = difflib.get_close_matches(text_key.lower(), names, n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ProfileError(
            f"unknown profile {text_key!r}{hint} (shipped profiles: {', '.join(names)})"
        )
    return parse_profile(resource.read_bytes(), source=f"{text_key}.toml")


def parse_profile(raw: bytes, *, source: str) -> DeviceProfile:
    """Validate the bytes of a profile TOML file; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProfileError(f"profile {source}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {source}: invalid TOML: {exc}") from exc
    except ValueError as exc:  # a decimal integer beyond Python's 4300-digit limit
        raise ProfileError(f"profile {source}: an integer is too large") from exc
    except RecursionError as exc:
        raise ProfileError(f"profile {source}: arrays or tables nested too deeply") from exc
    for reserved in ("source", "digest"):
        if reserved in data:
            raise ProfileError(f"profile {source}: unknown key {reserved!r}")
    try:
        # Validating the JSON form in strict mode: no silent "4" -> 4 coercion, yet enums and
        # nested tables are read from their plain TOML values.
        as_json = json.dumps(data)
    except TypeError as exc:  # TOML dates and times have no place in a profile
        raise ProfileError(f"profile {source}: {exc}") from exc
    except ValueError as exc:  # a hex, octal or binary integer too long to write in decimal
        raise ProfileError(f"profile {source}: an integer is too large") from exc
    except RecursionError as exc:  # dotted keys nest tables as deep as they are long
        raise ProfileError(f"profile {source}: tables nested too deeply") from exc
    try:
        profile = _ADAPTER.validate_json(as_json, strict=True)
    except ValidationError as exc:
        raise ProfileError(f"profile {source}: {_describe(exc)}") from exc
    return dataclasses.replace(profile, source=source, digest=hashlib.sha256(raw).hexdigest())


def _describe(exc: ValidationError) -> str:
    """Turn pydantic's report into one line per problem, each naming the dotted key."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"] if not isinstance(p, int) and p != "[key]")
        if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            problems.append(f"unknown key {key!r}")
        elif err["type"] == "missing":
            problems.append(f"missing key {key!r}")
        elif err["type"] == "json_invalid":  # pydantic's nesting limit on the file's JSON form
            problems.append("arrays or tables nested too deeply")
        else:
            got = err.get("input")
            shown = repr(got) if not isinstance(got, dict) else "a table"
            problems.append(f"key {key!r}: {err['msg'].lower()} (got {shown})")
    return "; ".join(problems)
