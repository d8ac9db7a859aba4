"""What a build will do, decided before any conversion: the request checked, the pruning asked
for, the formats this model can become for the profile, and the data loaded and fitted to it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.converters.c_array import check_emit
from edgekit.converters.formats import Exporter
from edgekit.converters.prune import PruneSpec
from edgekit.converters.source import SampleShapes, Source
from edgekit.datasets import LabelledData, load_data
from edgekit.errors import ConversionError, DataError
from edgekit.manifest import TensorSpec
from edgekit.profiles import DeviceProfile
from edgekit.vocab import (
    EmitKind,
    ModelFormat,
    PixelRange,
    PruneKind,
    Quantization,
    SelectionSite,
)


@dataclass(frozen=True)
class BuildRequest:
    """What to build, for which profile, from which data, and where to put it."""

    model: Path
    profile: DeviceProfile
    out_dir: Path
    calibration: Path | None = None
    eval_data: Path | None = None
    pixel_range: PixelRange = PixelRange.UNIT
    allow_over_budget: bool = False
    # Samples in the bundle's eval sample; None: 200, fewer when they would exceed the larger of
    # 4 MiB and the artifact (said in the report).
    eval_sample_size: int | None = None
    # Host-latency runs per artifact; 0 skips the measurement.
    latency_runs: int = 50
    # Pruning: None takes the profile's choice.
    prune: PruneKind | None = None
    sparsity: float | None = None
    train_data: Path | None = None
    epochs: int = 2
    auto_sparsity: bool = False
    # Inputs with dynamic axes: input name -> shape of one sample (no batch axis); the name ""
    # stands for the only input.
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # None takes the profile's accuracy_fallback.
    accuracy_fallback: bool | None = None
    # Ed25519 private key (PEM) to sign the manifest with.
    sign_key: Path | None = None
    # Extra forms of the preferred artifact written into the bundle (C source and header).
    emit: tuple[EmitKind, ...] = ()


@dataclass(frozen=True)
class Plan:
    """A checked request and the policy every candidate is built and judged by."""

    request: BuildRequest
    prune: PruneSpec

    @property
    def profile(self) -> DeviceProfile:
        """The device profile built for."""
        return self.request.profile

    @property
    def budget_pt(self) -> float:
        """The accuracy drop the profile allows, in percentage points."""
        return self.profile.budgets.max_accuracy_drop_pt

    @property
    def fallback_enabled(self) -> bool:
        """Whether the accuracy-aware fallback may run (the request overrides the profile)."""
        asked = self.request.accuracy_fallback
        return self.profile.build.accuracy_fallback if asked is None else asked

    @property
    def host_threads(self) -> int:
        """Threads for measurements on this machine: the board's, as far as this one has them."""
        return max(1, min(self.profile.runtime.threads, os.cpu_count() or 1))

    def sparsities(self) -> list[float]:
        """The sparsities to try, in order: the target, or its --auto-sparsity steps back."""
        if self.request.auto_sparsity and self.prune.active:
            return self.prune.step_back()
        return [self.prune.sparsity]

    def prune_at(self, sparsity: float) -> PruneSpec:
        """The pruning asked for, at ``sparsity``."""
        return dataclasses.replace(self.prune, sparsity=sparsity)


@dataclass(frozen=True)
class BuildData:
    """The data a build uses, loaded and checked against the model's inputs."""

    calibration: LabelledData | None
    evaluation: LabelledData | None
    train: LabelledData | None

    def for_accuracy(self) -> tuple[LabelledData | None, str]:
        """Labelled eval data, else calibration data compared with fp32 (agreement)."""
        if self.evaluation is not None:
            return self.evaluation, "eval data"
        if self.calibration is not None:
            return self.calibration.without_labels(), "calibration data (no --eval)"
        return None, ""

    def sample_shapes(self, inputs: tuple[TensorSpec, ...]) -> dict[str, tuple[int, ...]]:
        """Shape of one sample per input name, from the calibration (else eval) data."""
        sample = self.calibration or self.evaluation
        if sample is None:
            return {}
        return {
            spec.name: tuple(int(d) for d in x.shape[1:])
            for spec, x in zip(inputs, sample.xs, strict=False)
        }


def check_request(request: BuildRequest) -> Plan:
    """The request's options checked against each other and the profile."""
    profile = request.profile
    if profile.build.quantization is Quantization.INT8 and request.calibration is None:
        raise DataError(
            f"profile {profile.name} quantizes to int8, which needs calibration data: "
            "pass --calibration DATA (.npz with x, or an image folder)"
        )
    kind = request.prune or profile.build.prune
    sparsity = profile.build.sparsity if request.sparsity is None else request.sparsity
    if request.sparsity is not None and kind is PruneKind.NONE:
        kind = PruneKind.MAGNITUDE  # asking for a sparsity means asking for pruning
    spec = PruneSpec(kind=kind, sparsity=sparsity)
    if request.train_data is not None and not spec.active:
        raise DataError("--train is for fine-tuning after pruning; pass --prune and --sparsity")
    if request.auto_sparsity and not spec.active:
        raise DataError("--auto-sparsity needs pruning: pass --prune and --sparsity")
    if request.epochs < 1:
        raise DataError(f"--epochs must be at least 1, got {request.epochs}")
    check_emit(profile, request.emit)
    return Plan(request=request, prune=spec)


def choose_formats(
    profile: DeviceProfile, source: Source
) -> tuple[tuple[ModelFormat, ...], tuple[str, ...]]:
    """The formats to build: the profile's, in preference order, that this model can become;
    and a note for each format of the profile left out, saying why."""
    possible = [fmt for fmt in profile.build.formats if source.refusal(fmt) is None]
    if not possible:
        wanted = ", ".join(f.value for f in profile.build.formats)
        can = ", ".join(f.value for f in ModelFormat if source.refusal(f) is None) or "nothing"
        reasons = "; ".join(str(source.refusal(f)) for f in profile.build.formats)
        raise ConversionError(
            f"profile {profile.name} builds {wanted}, but a {source.kind} model can only become "
            f"{can} here ({reasons}); use a profile that lists {can}"
        )
    # A choice on this host measures every format (the fastest ships); otherwise the first one
    # the model can become, or all of them when the profile ships one per format.
    every = profile.build.build_all_formats or profile.build.choose_on is SelectionSite.HOST
    chosen = tuple(possible if every else possible[:1])
    # Formats the model cannot become are named; one left out by preference is not news.
    notes = tuple(
        f"skipped {fmt.value}: {source.refusal(fmt)}"
        for fmt in profile.build.formats
        if source.refusal(fmt) is not None
    )
    return chosen, notes


def usable_exporters(
    profile: DeviceProfile, exporters: Mapping[ModelFormat, Exporter]
) -> tuple[dict[ModelFormat, Exporter], tuple[str, ...]]:
    """The exporters that can make the profile's scheme (with a note for each one left out);
    ConversionError when none can."""
    refusals = {fmt: e.scheme_refusal(profile.build) for fmt, e in exporters.items()}
    usable = {fmt: e for fmt, e in exporters.items() if refusals[fmt] is None}
    if not usable:
        reasons = "; ".join(f"{fmt.value}: {why}" for fmt, why in refusals.items())
        raise ConversionError(
            f"profile {profile.name} quantizes to {profile.build.quantization}, which no format "
            f"it lists can make ({reasons})"
        )
    notes = tuple(f"skipped {fmt.value}: {why}" for fmt, why in refusals.items() if why)
    return usable, notes


def load_build_data(request: BuildRequest, inputs: tuple[TensorSpec, ...]) -> BuildData:
    """Calibration (capped at the profile's sample count), eval and training data."""

    def load(path: Path | None, role: str) -> LabelledData | None:
        if path is None:
            return None
        return load_data(path, role=role, specs=inputs, pixel_range=request.pixel_range)

    calibration = load(request.calibration, "calibration")
    if calibration is not None:
        calibration = calibration.take(request.profile.build.calibration_samples)
    evaluation = load(request.eval_data, "eval")
    return BuildData(calibration, evaluation, load(request.train_data, "train"))


def pin_shapes(source: Source, data: BuildData, given: SampleShapes) -> Source:
    """The source with dynamic axes fixed: ``given`` shapes (--input-shape) first, then the
    data's."""
    named = dict(given)
    if "" in named and len(source.inputs) == 1:  # --input-shape 1x28x28: the only input
        named.setdefault(source.inputs[0].name, named[""])
    return source.pin_shapes({**data.sample_shapes(source.inputs), **named})
