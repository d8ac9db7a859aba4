"""Bundle files are verified against the manifest; tampering is caught."""

from __future__ import annotations

import pytest

from edgekit.bundle import archive_bundle, extract_bundle, verify_bundle, write_bundle
from edgekit.errors import BundleError, BundleIntegrityError
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
                    metric=None,
                    fp32=None,
                    quantized=None,
                    drop_pt=None,
                    eval_samples=0,
                    fp32_bytes=1,
                    model_bytes=1,
                    macs=0,
                    params=0,
                    est_latency_ms=0,
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
    assert (bundle / "manifest.json").read_text().startswith('{\n  "schema": "edgekit.manifest/1"')


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
