"""A bundle on the board: verified, loaded into the right interpreter, ready to predict.

    session = DeviceSession.open(Path("bundle"))
    probabilities = session.predict(images)       # float in, float out
    accuracy = session.accuracy()                 # on the bundle's own eval sample

Nothing is loaded before every file of the bundle matches its digest in the manifest.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit import eval_sample, metrics
from edgekit.bundle import MANIFEST_NAME, verify_bundle
from edgekit.errors import BundleError, RuntimeBackendError
from edgekit.manifest import Artifact, Manifest, TensorSpec
from edgekit.runtime import selection
from edgekit.runtime.backend import BACKENDS_FOR_FORMAT, Backend, installed, open_backend
from edgekit.runtime.predict import Predictor
from edgekit.schema import AccuracyResult, BuildFigures, CandidateResult, Selection

# Eval samples are small; a bigger file is not what edgekit builds.
MAX_EVAL_SAMPLE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class EvalSample:
    """The bundle's labelled sample: one array per input, labels, fp32 reference outputs."""

    xs: tuple[np.ndarray, ...]
    y: np.ndarray | None
    reference: np.ndarray | None


class DeviceSession:
    """A verified bundle with one of its artifacts loaded into a backend."""

    def __init__(
        self,
        bundle_dir: Path,
        manifest: Manifest,
        artifact: Artifact,
        backend: Backend,
        *,
        threads: int,
        init_ms: float,
    ) -> None:
        self.bundle_dir = bundle_dir
        self.manifest = manifest
        self.artifact = artifact
        self.backend = backend
        self.threads = threads
        self.init_ms = init_ms
        self.manifest_digest = hashlib.sha256((bundle_dir / MANIFEST_NAME).read_bytes()).hexdigest()
        # One sample at a time: the tensors stay the size timing uses (no re-allocation between
        # timing and accuracy) and peak memory stays what the board needs for one inference.
        self._predictor = Predictor(
            backend, batch_size=1, inputs=artifact.inputs, outputs=artifact.outputs
        )
        self._sample: EvalSample | None = None
        # How the board chose this artifact among the bundle's candidates, when it did.
        self.selection: Selection | None = None

    @classmethod
    def open(
        cls,
        bundle_dir: Path,
        *,
        backend: str | None = None,
        threads: int | None = None,
        trust_key: Path | None = None,
        choice: BoardChoice | None = None,
    ) -> DeviceSession:
        """Verify ``bundle_dir`` and load the artifact best suited to what is installed.

        ``backend`` forces one (its format's artifact must be in the bundle); ``threads``
        defaults to the profile's; with ``trust_key`` only a bundle signed by it is loaded.
        With ``choice``, a bundle that asks the board to choose among its candidates gets the
        one measured fastest within budget here (:mod:`edgekit.runtime.selection`).
        """
        manifest = verify_bundle(bundle_dir, trust_key=trust_key)
        # The profile's thread count, but not more threads than this machine has cores.
        count = threads or min(manifest.runtime.threads if manifest.runtime else 1, _cores())
        if backend is None and choice is not None and selection.applies(manifest):
            return cls._chosen_here(bundle_dir, manifest, threads=count, choice=choice)
        artifact, name = choose(manifest, backend)
        loaded = _load(bundle_dir, artifact, name, threads=count)
        return cls(bundle_dir, manifest, artifact, loaded.backend, threads=count,
                   init_ms=loaded.init_ms)  # fmt: skip

    @classmethod
    def _chosen_here(
        cls, bundle_dir: Path, manifest: Manifest, *, threads: int, choice: BoardChoice
    ) -> DeviceSession:
        """The candidate measured fastest within budget on this host (remembered, or measured
        now: every candidate an installed interpreter can load)."""
        digest = hashlib.sha256((bundle_dir / MANIFEST_NAME).read_bytes()).hexdigest()
        earlier = None if choice.reselect else selection.remembered(choice.cache_dir, digest)
        files = {a.file for a in manifest.artifacts}
        if earlier is not None and earlier.chosen in files:
            artifact = manifest.artifact(earlier.chosen)
            loaded = _load(bundle_dir, artifact, _installed_backend(artifact), threads=threads)
            return cls._made(bundle_dir, manifest, loaded, threads=threads, chosen=earlier)
        candidates, refused = [], []
        for artifact in manifest.artifacts:
            try:
                candidates.append(
                    _load(bundle_dir, artifact, _installed_backend(artifact), threads=threads)
                )
            except (RuntimeBackendError, BundleError) as exc:
                refused.append(CandidateResult(artifact=artifact.file, variant=artifact.variant,
                                               p50_ms=None, within_budget=False,
                                               reason=str(exc)[:200]))  # fmt: skip
        if not candidates:
            raise RuntimeBackendError(
                "no candidate of the bundle can run here: "
                + "; ".join(f"{r.artifact}: {r.reason}" for r in refused)
            )
        sample = _read_sample(bundle_dir / manifest.eval_sample, candidates[0].artifact.inputs) \
            if manifest.eval_sample else None  # fmt: skip
        made = selection.select(
            candidates,
            manifest,
            feed=lambda one: _example(one, sample),
            score=lambda one: _score(one, sample),
            max_seconds=choice.max_seconds,
            refused=refused,
        )
        selection.remember(choice.cache_dir, digest, made)
        winner = next(c for c in candidates if c.artifact.file == made.chosen)
        return cls._made(bundle_dir, manifest, winner, threads=threads, chosen=made)

    @classmethod
    def _made(
        cls,
        bundle_dir: Path,
        manifest: Manifest,
        loaded: selection.Loaded,
        *,
        threads: int,
        chosen: Selection,
    ) -> DeviceSession:
        session = cls(bundle_dir, manifest, loaded.artifact, loaded.backend, threads=threads,
                      init_ms=loaded.init_ms)  # fmt: skip
        session.selection = chosen
        return session

    def predict(self, xs: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """The model's first output, as float32, for a batch of inputs."""
        return self._predictor.predict(xs)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The artifact's inputs as the manifest declares them."""
        return self.artifact.inputs

    def eval_sample(self) -> EvalSample | None:
        """The bundle's eval sample, or None when the build had no data."""
        if self._sample is None and self.manifest.eval_sample:
            self._sample = _read_sample(self.bundle_dir / self.manifest.eval_sample, self.inputs)
        return self._sample

    def accuracy(self) -> AccuracyResult | None:
        """Top-1 (or agreement / SQNR) of this artifact on the eval sample, measured here."""
        sample = self.eval_sample()
        if sample is None:
            return None
        outputs = self.predict(sample.xs)
        scored = metrics.score(outputs, labels=sample.y, reference=sample.reference)
        if scored is None:
            return None
        name, value = scored
        return AccuracyResult(metric=name, value=value, samples=len(outputs))

    def example_input(self) -> list[np.ndarray]:
        """One sample (batch of 1) in the model's dtypes, for latency measurement."""
        from edgekit.runtime.quantization import to_model_dtype

        sample = self.eval_sample()
        xs = [x[:1] for x in sample.xs] if sample is not None else [_zeros(s) for s in self.inputs]
        return [to_model_dtype(x, spec) for x, spec in zip(xs, self.inputs, strict=True)]

    def build_figures(self) -> BuildFigures:
        """The manifest's build-time figures for this artifact, to report beside measurements."""
        m = self.artifact.metrics
        # The pair from the eval sample, the samples the board scores; a bundle from before
        # edgekit 0.2 has only the artifact's figure on it (its fp32 figure came from other
        # samples, so it is not shown beside the board's).
        on_sample = m.sample_accuracy
        return BuildFigures(
            est_latency_ms=m.latency.est_target_ms,
            metric=m.accuracy.metric,
            fp32=None if on_sample is None else on_sample.fp32,
            quantized=m.eval_sample_value,
            samples=None if on_sample is None else on_sample.samples,
            model_bytes=m.sizes.model_bytes,
            variant=self.artifact.variant,
            estimate_inputs=m.estimate_inputs,
            host_p50_ms=m.latency.host_p50_ms,
            host_p50_fp32_ms=m.latency.host_p50_fp32_ms,
        )


@dataclass(frozen=True)
class BoardChoice:
    """How to choose among a bundle's candidates on this board."""

    cache_dir: Path
    reselect: bool = False
    max_seconds: float = selection.DEFAULT_SECONDS


def _load(bundle_dir: Path, artifact: Artifact, name: str, *, threads: int) -> selection.Loaded:
    start = time.perf_counter()
    loaded = open_backend(name, bundle_dir / artifact.file, threads=threads)
    init_ms = (time.perf_counter() - start) * 1e3
    _check_io(artifact, loaded)
    return selection.Loaded(artifact, loaded, init_ms)


def _installed_backend(artifact: Artifact) -> str:
    for name in BACKENDS_FOR_FORMAT[artifact.format]:
        if installed(name):
            return name
    options = ", ".join(BACKENDS_FOR_FORMAT[artifact.format])
    raise RuntimeBackendError(f"no interpreter for {artifact.format} installed (any of: {options})")


def _example(one: selection.Loaded, sample: EvalSample | None) -> list[np.ndarray]:
    from edgekit.runtime.quantization import to_model_dtype

    specs = one.artifact.inputs
    xs = [x[:1] for x in sample.xs] if sample is not None else [_zeros(s) for s in specs]
    return [to_model_dtype(x, spec) for x, spec in zip(xs, specs, strict=True)]


def _score(one: selection.Loaded, sample: EvalSample | None) -> tuple[str, float] | None:
    if sample is None:
        return None
    predictor = Predictor(one.backend, batch_size=1, inputs=one.artifact.inputs,
                          outputs=one.artifact.outputs)  # fmt: skip
    outputs = predictor.predict(sample.xs)
    return metrics.score(outputs, labels=sample.y, reference=sample.reference)


def choose(manifest: Manifest, backend: str | None) -> tuple[Artifact, str]:
    """The artifact and backend to use: the forced backend's format, else the preferred artifact
    with the first installed backend for it, else any artifact something installed can run."""
    if backend is not None:
        fmt = next((f for f, names in BACKENDS_FOR_FORMAT.items() if backend in names), None)
        if fmt is None:
            raise RuntimeBackendError(f"unknown backend {backend!r}")
        artifact = next((a for a in manifest.artifacts if a.format == fmt), None)
        if artifact is None:
            have = ", ".join(a.format for a in manifest.artifacts)
            raise RuntimeBackendError(
                f"backend {backend} runs {fmt} models, but the bundle holds only {have}"
            )
        return artifact, backend
    ordered = [manifest.artifact()] + [
        a for a in manifest.artifacts if a.file != manifest.preferred
    ]
    for artifact in ordered:
        for name in BACKENDS_FOR_FORMAT[artifact.format]:
            if installed(name):
                return artifact, name
    needed = ", ".join(sorted({n for a in ordered for n in BACKENDS_FOR_FORMAT[a.format]}))
    raise RuntimeBackendError(
        f"no interpreter for this bundle is installed (any of: {needed}); "
        "install one with: pip install 'edgekit[device]'"
    )


def _check_io(artifact: Artifact, backend: Backend) -> None:
    """The loaded model must take and give what the manifest says (dtype, quantization)."""
    for declared, actual in (*zip(artifact.inputs, backend.inputs, strict=False),
                             *zip(artifact.outputs, backend.outputs, strict=False)):  # fmt: skip
        same_quant = (declared.quantization is None) == (actual.quantization is None)
        if declared.quantization and actual.quantization:
            same_quant = bool(
                np.isclose(declared.quantization.scale, actual.quantization.scale, rtol=1e-6)
                and declared.quantization.zero_point == actual.quantization.zero_point
            )
        if declared.dtype != actual.dtype or not same_quant:
            raise BundleError(
                f"{artifact.file}: tensor {actual.name!r} is {actual.dtype} "
                f"{actual.quantization} but the manifest declares {declared.dtype} "
                f"{declared.quantization}"
            )
    if len(artifact.inputs) != len(backend.inputs) or len(artifact.outputs) != len(backend.outputs):
        raise BundleError(f"{artifact.file}: inputs/outputs differ from the manifest")


def _read_sample(path: Path, specs: tuple[TensorSpec, ...]) -> EvalSample:
    if path.stat().st_size > MAX_EVAL_SAMPLE_BYTES:
        raise BundleError(f"{path}: eval sample larger than {MAX_EVAL_SAMPLE_BYTES} bytes")
    try:
        with np.load(path, allow_pickle=False) as npz:
            xs = tuple(eval_sample.decode(npz, n) for n in eval_sample.input_names(len(specs)))
            y = npz["y"] if "y" in npz.files else None
            reference = npz["reference"] if "reference" in npz.files else None
    except (KeyError, ValueError, OSError) as exc:
        raise BundleError(f"{path}: unreadable eval sample: {exc}") from exc
    return EvalSample(xs=xs, y=y, reference=reference)


def _cores() -> int:
    return os.cpu_count() or 1


def _zeros(spec: TensorSpec) -> np.ndarray:
    shape = [1] + [d or 1 for d in spec.shape[1:]]
    return np.zeros(shape, dtype=np.float32 if spec.quantization else spec.dtype)
