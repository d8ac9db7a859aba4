"""Signed bundles: Ed25519 over the manifest; boards with --trust-key refuse anything else."""

from __future__ import annotations

import json
import shutil
import stat

import pytest
from edgekit_testing import assert_one_clear_error, run_edgekit

from edgekit.bundle import verify_bundle
from edgekit.errors import BundleError, BundleIntegrityError
from edgekit.runtime.session import DeviceSession
from edgekit.signing import generate_keypair


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    ours = generate_keypair(root / "fleet")
    theirs = generate_keypair(root / "other")
    return {"key": ours[0], "pub": ours[1], "other_key": theirs[0], "other_pub": theirs[1]}


@pytest.fixture(scope="module")
def signed(fashion_cnn, keys, tmp_path_factory):
    out = tmp_path_factory.mktemp("signed") / "bundle"
    result = run_edgekit(
        "build", fashion_cnn.model, "--profile", "rpi4", "--calibration", fashion_cnn.calibration,
        "--eval", fashion_cnn.eval, "--out", out, "--sign-key", keys["key"], "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def test_keygen_writes_a_private_key_only_the_owner_reads(tmp_path):
    result = run_edgekit("keygen", "--out", tmp_path / "k")
    assert result.returncode == 0, result.stderr
    assert "key id:" in result.stdout
    mode = stat.S_IMODE((tmp_path / "k.key").stat().st_mode)
    assert mode == 0o600
    assert (tmp_path / "k.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = run_edgekit("keygen", "--out", tmp_path / "k")
    assert_one_clear_error(again, "refusing to overwrite")


def test_signed_bundle_is_trusted(signed, keys):
    manifest = verify_bundle(signed, trust_key=keys["pub"])
    assert manifest.signing_key_id is not None
    assert (signed / "manifest.sig").is_file()
    ok = run_edgekit("verify", signed, "--trust-key", keys["pub"])
    assert ok.returncode == 0, ok.stderr
    assert "(trusted)" in ok.stdout
    session = DeviceSession.open(signed, trust_key=keys["pub"])
    assert session.accuracy().value == session.artifact.metrics.eval_sample_value


def test_unsigned_bundle_is_refused_with_a_trusted_key(rpi4_build, keys):
    _, unsigned = rpi4_build
    with pytest.raises(BundleIntegrityError, match="is not signed"):
        DeviceSession.open(unsigned, trust_key=keys["pub"])
    assert_one_clear_error(run_edgekit("run", unsigned, "--trust-key", keys["pub"]), "not signed")


def test_foreign_signed_bundle_is_refused(signed, keys):
    with pytest.raises(BundleIntegrityError, match="not by the trusted key"):
        verify_bundle(signed, trust_key=keys["other_pub"])
    result = run_edgekit("run", signed, "--trust-key", keys["other_pub"])
    assert_one_clear_error(result, "not by the trusted key")


def test_swapped_model_with_a_consistent_manifest_is_refused(signed, keys, tmp_path):
    """An attacker replaces the model and rewrites its digest: digests agree, the signature not."""
    import hashlib

    copy = tmp_path / "bundle"
    shutil.copytree(signed, copy)
    model = bytearray((copy / "model.tflite").read_bytes())
    model[-10] ^= 0xFF
    (copy / "model.tflite").write_bytes(bytes(model))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["model.tflite"]["sha256"] = hashlib.sha256(model).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    verify_bundle(copy)  # without a trusted key only the digests can be checked: they agree
    with pytest.raises(BundleIntegrityError, match="signature does not match"):
        verify_bundle(copy, trust_key=keys["pub"])
    result = run_edgekit("daemon", copy, "--broker", "mqtt://127.0.0.1:1", "--reports", "1",
                         "--trust-key", keys["pub"], "--outbox", tmp_path / "outbox")  # fmt: skip
    assert_one_clear_error(result, "signature does not match")


def test_stripped_signature_is_refused_even_without_a_key(signed, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(signed, copy)
    (copy / "manifest.sig").unlink()
    with pytest.raises(BundleIntegrityError, match=r"manifest\.sig is missing"):
        verify_bundle(copy)


def test_bad_key_files(fashion_cnn, signed, tmp_path):
    not_a_key = tmp_path / "k.key"
    not_a_key.write_text("hello")
    result = run_edgekit(
        "build", fashion_cnn.model, "--profile", "rpi4", "--calibration", fashion_cnn.calibration,
        "--sign-key", not_a_key, "--out", tmp_path / "o",
    )  # fmt: skip
    assert_one_clear_error(result, "not an unencrypted PEM private key")
    with pytest.raises(BundleError, match="cannot read key file"):
        verify_bundle(signed, trust_key=tmp_path / "missing.pub")


def _as_schema_1(metrics: dict) -> dict:
    """An artifact's metrics as manifest/1 held them: one flat object."""
    acc, sizes, lat = metrics["accuracy"], metrics["sizes"], metrics["latency"]
    return {
        "metric": acc["metric"],
        "fp32": acc["fp32"],
        "quantized": acc["quantized"],
        "drop_pt": acc["drop_pt"],
        "eval_samples": acc["samples"],
        "fp32_bytes": sizes["fp32_bytes"],
        "model_bytes": sizes["model_bytes"],
        "macs": metrics["macs"],
        "params": metrics["params"],
        "est_latency_ms": lat["est_target_ms"],
        "est_ram_mb": metrics["est_ram_mb"],
        "host_p50_ms_fp32": lat["host_p50_fp32_ms"],
        "host_p50_ms": lat["host_p50_ms"],
        "gzip_bytes": sizes["gzip_bytes"],
        "eval_sample_value": metrics["eval_sample_value"],
    }


def test_a_signed_schema_1_bundle_is_trusted_and_runs(signed, keys, tmp_path):
    """A bundle built before manifest/2, signed over its own bytes, still verifies and runs, and
    the board reports the same build figures from it."""
    from edgekit.signing import load_private_key, signature_file

    copy = tmp_path / "bundle"
    shutil.copytree(signed, copy)
    doc = json.loads((copy / "manifest.json").read_text())
    assert doc["schema"] == "edgekit.manifest/2"
    doc["schema"] = "edgekit.manifest/1"
    for artifact in doc["artifacts"]:
        artifact["metrics"] = _as_schema_1(artifact["metrics"])
    raw = (json.dumps(doc, indent=2) + "\n").encode()
    (copy / "manifest.json").write_bytes(raw)
    (copy / "manifest.sig").write_bytes(signature_file(raw, load_private_key(keys["key"])))
    old = DeviceSession.open(copy, trust_key=keys["pub"])
    new = DeviceSession.open(signed, trust_key=keys["pub"])
    # The figures a manifest/1 holds are reported alike; it has no fp32 figure on the eval
    # sample, so none is shown beside the board's (its fp32 came from other samples).
    kept = ("est_latency_ms", "metric", "quantized", "model_bytes")
    assert old.build_figures().model_dump(include=set(kept)) == (
        new.build_figures().model_dump(include=set(kept))
    )
    assert old.build_figures().fp32 is None
    assert new.build_figures().fp32 is not None
    assert new.build_figures().samples == old.accuracy().samples
    assert old.accuracy() == new.accuracy()
    assert old.artifact.metrics.accuracy.quantized == new.artifact.metrics.accuracy.quantized
    ok = run_edgekit("verify", copy, "--trust-key", keys["pub"])
    assert ok.returncode == 0, ok.stderr
