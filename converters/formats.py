"""The ``Exporter`` protocol each artifact format implements, and what they share.

An exporter turns one source (a SavedModel, an ONNX graph) into artifacts of its format: the fp32
baseline, the quantized artifact (optionally with some layers kept float), the op table, the
artifact's inputs and outputs as the board will see them, and a per-layer error ranking for the
accuracy-aware fallback. It also answers what the build asks about its format (notes, calibration
method, whether layers can stay float), so the pipeline never asks which format it holds. Adding a
format means adding a module with one class satisfying :class:`Exporter`; a source's
``exporter()`` hands it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgekit.converters.model_stats import ModelStats
from edgekit.datasets import LabelledData
from edgekit.manifest import TensorSpec
from edgekit.profiles import Build
from edgekit.progress import Progress
from edgekit.vocab import BackendName, CalibrationMethod, ModelFormat, Quantization


@dataclass(frozen=True)
class Quantized:
    """An artifact and what the quantizer did."""

    content: bytes
    scheme: Quantization
    refused_ops: tuple[str, ...] = ()  # ops the strict int8 converter refused (kept float)
    kept_float: tuple[str, ...] = ()  # layers the accuracy fallback kept float


@dataclass(frozen=True)
class Variant:
    """One way an exporter quantizes a model: a candidate worth measuring.

    ``key`` is the exporter's own name for it (only the exporter interprets it), ``label`` what
    reports show, ``file_name`` the file it ships as. The first variant an exporter lists is the
    profile's own scheme; the others are what can run faster on real CPUs.
    """

    key: str
    label: str
    scheme: Quantization
    file_name: str


@dataclass(frozen=True)
class OpCost:
    """One op of the source model: what it costs per inference in each precision, in µs, as the
    runtime's own per-op profiler measured it (the latency-aware fallback's evidence)."""

    node: str
    op: str
    float_us: float
    int8_us: float  # its kernel plus the conversions around it in the quantized model
    int8_kernel: str  # what the runtime runs it as in the quantized model
    # Chosen to stay float: slower in int8, and where leaving it float removes conversions.
    keep_float: bool = False

    # An op moves to float only when int8 costs clearly more: per-op times jitter by a few
    # microseconds, and the mixed candidate is measured as a whole before it can be chosen.
    SLOWER_BY = 1.10

    @property
    def slower_in_int8(self) -> bool:
        """True when keeping this op float should save time."""
        return self.int8_us > self.float_us * self.SLOWER_BY


@dataclass(frozen=True)
class ArtifactIO:
    """An artifact's inputs and outputs, read once from the interpreter that will run it."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class LayerCost:
    """How much signal (dB of SQNR against fp32) a layer loses when quantized.

    ``nodes`` are what the quantizer must keep float for this layer: the layer itself plus
    nodes fused into it whose outputs are never quantized (a Conv before its Relu).
    """

    name: str
    op: str
    loss_db: float
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class GraphNode:
    """A node in topological order: its name (what the quantizer accepts) and tensors."""

    name: str
    op: str
    inputs: tuple[str, ...]
    output: str
    candidate: bool = True  # False for data movement, which keeping float would not help


class Exporter(Protocol):
    """Builds the artifacts of one format from one source model."""

    format: ModelFormat
    file_name: str
    backend: BackendName  # the runtime backend that validates the artifacts

    @property
    def notes(self) -> tuple[str, ...]:
        """What loading and pre-processing changed (opset upgrades, fixed axes, ...)."""
        ...

    def float_model(self) -> bytes:
        """The fp32 artifact."""
        ...

    def variants(self, build: Build) -> tuple[Variant, ...]:
        """The quantized candidates worth measuring under ``build``: the profile's scheme first."""
        ...

    def quantize(
        self,
        build: Build,
        calibration: LabelledData | None,
        *,
        variant: Variant | None = None,
        keep_float: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> Quantized:
        """The artifact per ``variant`` (default: the profile's scheme), with ``keep_float``
        layers left float."""
        ...

    def inspect(self, content: bytes) -> ModelStats:
        """Op table, MACs, weights and memory of an artifact of this format."""
        ...

    def describe(self, content: bytes) -> ArtifactIO:
        """An artifact's inputs and outputs (dtypes, scales, zero points) as the board sees them."""
        ...

    def calibration_method(self, build: Build, scheme: Quantization) -> CalibrationMethod | None:
        """The calibrator that chose activation ranges for an artifact of ``scheme``, when this
        format lets the profile pick one."""
        ...

    def scheme_refusal(self, build: Build) -> str | None:
        """Why this format cannot make the profile's quantization scheme, or None."""
        ...

    def keep_float_refusal(self, build: Build) -> str | None:
        """Why layers cannot be kept float under ``build``'s settings, or None when they can."""
        ...

    def op_costs(
        self, quantized: bytes, sample: LabelledData, *, threads: int
    ) -> tuple[OpCost, ...] | None:
        """Per-op cost of ``quantized`` against the fp32 model, from the runtime's profiler on
        the first sample of ``sample``; None when this format's runtime has no per-op profile."""
        ...

    def rank_layers(
        self, quantized: bytes, sample: LabelledData, *, progress: Progress | None = None
    ) -> list[LayerCost]:
        """Layers of ``quantized`` ordered by the accuracy they cost, worst first, compared with
        the fp32 model on every sample of ``sample`` (the caller keeps it small)."""
        ...


def describe_in_runtime(backend: str, content: bytes) -> ArtifactIO:
    """Load ``content`` into the runtime backend that runs it and read its inputs and outputs."""
    from edgekit.runtime import open_backend

    model = open_backend(backend, content)
    return ArtifactIO(inputs=model.inputs, outputs=model.outputs)


def channel_sqnr_db(reference: np.ndarray, test: np.ndarray, *, channel_axis: int) -> float:
    """Median over channels of each channel's SQNR in dB.

    The median, not the SQNR of the whole tensor: one channel with a large range dominates the
    tensor's energy and hides every other channel being crushed to a few quantization steps.
    """
    ref = np.moveaxis(np.asarray(reference, dtype=np.float64), channel_axis, -1)
    diff = ref - np.moveaxis(np.asarray(test, dtype=np.float64), channel_axis, -1)
    ref2 = ref.reshape(-1, ref.shape[-1]) if ref.ndim else ref.reshape(1, 1)
    diff2 = diff.reshape(ref2.shape)
    signal = (ref2**2).sum(axis=0)
    noise = (diff2**2).sum(axis=0)
    live = signal > 0
    if not live.any():
        return float("inf")
    ratio = signal[live] / np.maximum(noise[live], 1e-30)
    return float(np.median(10.0 * np.log10(ratio)))


# int8's noise floor: a full-scale signal quantized to 8 bits has about 6.02 * 8 = 48 dB SQNR.
# Above it, differences are finer than int8 can show, so SQNRs are capped there; otherwise the
# first layer would be blamed for the whole gap between a lossless input and any int8 tensor.
SQNR_CAP_DB = 48.0


def rank_by_sqnr_loss(nodes: Sequence[GraphNode], sqnr: dict[str, float]) -> list[LayerCost]:
    """Cost of each node: the SQNR of its worst input minus the SQNR of its output, worst first.

    SQNRs are accumulated (quantized model against fp32 model at the same tensor), so the
    difference is what the node itself adds to the error. A node whose output was not measured
    (fused, never quantized) passes its input's SQNR on and joins the next measured node.
    """
    effective = {name: min(value, SQNR_CAP_DB) for name, value in sqnr.items()}
    fused: dict[str, tuple[str, ...]] = {}
    costs = []
    for node in nodes:
        known = [effective[t] for t in node.inputs if t in effective]
        before = min(known) if known else SQNR_CAP_DB
        carried = tuple(name for t in node.inputs for name in fused.get(t, ()))
        if node.output not in effective:
            effective[node.output] = before
            fused[node.output] = (*carried, node.name)
            continue
        if node.candidate:
            costs.append(
                LayerCost(node.name, node.op, before - effective[node.output],
                          tuple(dict.fromkeys((*carried, node.name))))
            )  # fmt: skip
    return sorted(costs, key=lambda c: -c.loss_db)
