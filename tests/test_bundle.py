"""Bundle files are verified against the manifest; tampering is caught."""

from __future__ import annotations

import json

import pytest

from edgekit.bundle import archive_bundle, extract_bundle, verify_bundle, write_bundle
from edgekit.errors import BundleError, BundleIntegrityError
from edgekit.figures import AccuracyFigures, LatencyFigures, SizeFigures
from edgekit.manifest import (
    Artifact,
    BuildMetrics,
    FileEntry,
    Manifest,
    ProfileRef,
    SourceModel,
    TensorSpec,
)


def _manifest(files: dict[str, bytes]) -> Manifest:
    spec = TensorSpec(name="x", shape=(None, 4), dtype="float32")
    return Manifest(
        bundle_id="m-test-0",
        created_at="2026-01-01T00:00:00+00:00",
        edgekit_version="0",
        profile=ProfileRef(name="rpi4", digest="0" * 64, source="rpi4.toml"),
        source_model=SourceModel(name="m.keras", kind="keras", sha256="1" * 64),
        artifacts=(
            Artifact(
                file="model.tflite",
                format="tflite",
                quantization="int8",
                per_channel=True,
                inputs=(spec,),
                outputs=(spec,),
                metrics=BuildMetrics(
                    accuracy=AccuracyFigures(
                        metric=None, fp32=None, quantized=None, drop_pt=None, samples=0, data=None
                    ),
                    sizes=SizeFigures(
                        fp32_bytes=1,
                        model_bytes=1,
                        ratio=1.0,
                        fp32_gzip_bytes=1,
                        gzip_bytes=1,
                        gzip_ratio=1.0,
                    ),
                    latency=LatencyFigures(
                        est_target_ms=0,
                        est_target_fp32_ms=0,
                        host_p50_ms=None,
                        host_p50_fp32_ms=None,
                        host_ratio=None,
                        host_threads=1,
                    ),
                    macs=0,
                    params=0,
                    est_ram_mb=0,
                ),
            ),
        ),
        preferred="model.tflite",
        files={name: FileEntry.of_bytes(data) for name, data in files.items()},
    )


@pytest.fixture
def bundle(tmp_path):
    files = {"model.tflite": b"model-bytes", "build_report.json": b"{}"}
    return write_bundle(tmp_path / "bundle", files, _manifest(files))


def test_written_bundle_verifies(bundle):
    manifest = verify_bundle(bundle)
    assert manifest.bundle_id == "m-test-0"
    assert (bundle / "manifest.json").read_text().startswith('{\n  "schema": "edgekit.manifest/2"')


def test_changed_file_is_caught(bundle):
    (bundle / "model.tflite").write_bytes(b"model-bytez")
    with pytest.raises(BundleIntegrityError, match=r"model\.tflite does not match"):
        verify_bundle(bundle)


def test_missing_and_extra_files_are_caught(bundle):
    (bundle / "evil.tflite").write_bytes(b"x")
    with pytest.raises(BundleIntegrityError, match=r"not in the manifest: evil\.tflite"):
        verify_bundle(bundle)
    (bundle / "evil.tflite").unlink()
    (bundle / "build_report.json").unlink()
    with pytest.raises(BundleIntegrityError, match="missing file"):
        verify_bundle(bundle)


def test_manifest_with_unknown_key_is_refused(bundle):
    text = (bundle / "manifest.json").read_text().replace('"preferred"', '"extra": 1, "preferred"')
    (bundle / "manifest.json").write_text(text)
    with pytest.raises(BundleError, match="invalid manifest"):
        verify_bundle(bundle)


def test_manifest_cannot_name_paths_outside_the_bundle(bundle):
    text = (bundle / "manifest.json").read_text().replace('"model.tflite": {', '"../x": {', 1)
    (bundle / "manifest.json").write_text(text)
    with pytest.raises(BundleError, match="invalid manifest"):
        verify_bundle(bundle)


def test_rebuild_replaces_a_bundle_but_never_a_foreign_folder(bundle, tmp_path):
    files = {"model.tflite": b"v2"}
    write_bundle(bundle, files, _manifest(files))
    assert (bundle / "model.tflite").read_bytes() == b"v2"
    assert not (bundle / "build_report.json").exists()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"jpg")
    with pytest.raises(BundleError, match="refusing to overwrite"):
        write_bundle(foreign, files, _manifest(files))
    assert (foreign / "holiday.jpg").exists()


def test_archive_round_trip(bundle, tmp_path):
    archive = archive_bundle(bundle, tmp_path / "b.tar.gz")
    unpacked = extract_bundle(archive, tmp_path / "out")
    assert verify_bundle(unpacked).bundle_id == "m-test-0"


# --- manifest/1 bundles (flat per-artifact metrics) are still read ----------------------------

# The artifact entry of a manifest/1 as edgekit 0.1 builds wrote it (figures of a real rpi4 build).
SCHEMA_1_ARTIFACT = {
    "file": "model.tflite",
    "format": "tflite",
    "quantization": "int8",
    "per_channel": True,
    "inputs": [{"name": "x", "shape": [None, 4], "dtype": "float32", "quantization": None}],
    "outputs": [{"name": "y", "shape": [None, 4], "dtype": "float32", "quantization": None}],
    "metrics": {
        "metric": "top1",
        "fp32": 88.15,
        "quantized": 88.05,
        "drop_pt": 0.1,
        "eval_samples": 2000,
        "fp32_bytes": 428000,
        "model_bytes": 107000,
        "macs": 2403072,
        "params": 206922,
        "est_latency_ms": 0.4,
        "est_ram_mb": 0.25,
        "host_p50_ms_fp32": 0.2,
        "host_p50_ms": 0.1,
        "gzip_bytes": 90000,
        "eval_sample_value": 88.5,
    },
    "pruning": None,
    "kept_float": [],
}


def _schema_1_bundle(root, metrics: dict) -> tuple:
    files = {"model.tflite": b"model-bytes"}
    bundle = write_bundle(root / "bundle", files, _manifest(files))
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["schema"] = "edgekit.manifest/1"
    doc["artifacts"] = [{**SCHEMA_1_ARTIFACT, "metrics": metrics}]
    raw = json.dumps(doc, indent=2).encode()
    (bundle / "manifest.json").write_bytes(raw)
    return bundle, raw


def test_a_schema_1_manifest_still_loads_and_verifies(tmp_path):
    bundle, raw = _schema_1_bundle(tmp_path, SCHEMA_1_ARTIFACT["metrics"])
    manifest = verify_bundle(bundle)
    assert manifest.schema_id == "edgekit.manifest/2"
    m = manifest.artifact().metrics
    assert (m.accuracy.metric, m.accuracy.fp32, m.accuracy.quantized) == ("top1", 88.15, 88.05)
    assert (m.accuracy.drop_pt, m.accuracy.samples, m.accuracy.data) == (0.1, 2000, None)
    assert (m.sizes.fp32_bytes, m.sizes.model_bytes, m.sizes.gzip_bytes) == (428000, 107000, 90000)
    assert m.sizes.ratio == pytest.approx(107000 / 428000)
    assert m.sizes.fp32_gzip_bytes is None  # schema 1 did not record it
    assert m.latency.est_target_ms == 0.4
    assert (m.latency.host_p50_ms, m.latency.host_p50_fp32_ms) == (0.1, 0.2)
    assert m.latency.host_ratio == pytest.approx(0.5)
    assert (m.macs, m.params, m.est_ram_mb, m.eval_sample_value) == (2403072, 206922, 0.25, 88.5)
    # the raw bytes are what the digest and a signature cover; nothing rewrote them
    assert (bundle / "manifest.json").read_bytes() == raw
    # what was read writes back as schema 2 and reads back the same
    assert Manifest.model_validate_json(manifest.to_json()) == manifest


def test_a_schema_1_manifest_without_optional_figures_loads(tmp_path):
    metrics = dict(SCHEMA_1_ARTIFACT["metrics"])
    for optional in ("host_p50_ms_fp32", "host_p50_ms", "gzip_bytes", "eval_sample_value"):
        del metrics[optional]
    bundle, _ = _schema_1_bundle(tmp_path, metrics)
    m = verify_bundle(bundle).artifact().metrics
    assert (m.sizes.gzip_bytes, m.latency.host_p50_ms, m.latency.host_ratio) == (None, None, None)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"surprise": 1}, "metrics"),  # unknown keys stay refused
        ({"accuracy": {}}, "metrics"),  # a schema 2 section inside schema 1
        # no size ratio follows from these
        ({"fp32_bytes": 0}, "sizes.ratio"),
        ({"fp32_bytes": True}, "sizes.ratio"),
        ({"model_bytes": 10**400}, "sizes.ratio"),
        ({"est_latency_ms": "fast"}, "latency.est_target_ms"),
        ({"host_p50_ms": -1e400}, "latency.host_p50_ms"),
    ],
)
def test_a_broken_schema_1_manifest_is_refused_in_one_line(tmp_path, change, where):
    metrics = {**SCHEMA_1_ARTIFACT["metrics"], **change}
    bundle, _ = _schema_1_bundle(tmp_path, metrics)
    with pytest.raises(BundleError, match="invalid manifest") as caught:
        verify_bundle(bundle)
    assert where in str(caught.value)
