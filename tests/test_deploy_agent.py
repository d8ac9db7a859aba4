"""The board's deployment agent in a real ``edgekit daemon`` against a real Mosquitto: commands
are published by hand (no controller), the daemon's deployment events and reports are read back.

Shown: a download killed by SIGKILL resumes with a Range request and nothing partial is ever
activated; a foreign-signed bundle is refused and not fetched again when its command comes back;
a bundle that verifies but fails to load is rolled back by the board itself, which says why;
budgets and signature requirements are checked before anything is unpacked.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time

import pytest
from deploy_fleet import (
    Board,
    cached_test_bundles,
    install_command,
    publish_retained,
)
from fixtures_mqtt import Subscriber

from edgekit._wait import wait_until
from edgekit.bundle_server import BundleServer
from edgekit.bundle_store import BundleStore, manifest_digest
from edgekit.deploy_wire import FitBudgets, deploy_topic, parse_event
from edgekit.schema import parse_report
from edgekit.signing import load_private_key, signature_file


@pytest.fixture(scope="session")
def bundles(request):
    return cached_test_bundles(request.config.cache.mkdir("edgekit-deploy"))


def _events_until(events: Subscriber, final: set[str], *, timeout: float) -> list:
    """Deployment events until one whose phase is in ``final``."""
    got = []
    deadline = time.monotonic() + timeout
    while not got or parse_event(got[-1].payload).phase.value not in final:
        got.append(events.next(max(0.1, deadline - time.monotonic())))
    return [parse_event(m.payload) for m in got]


def _report_digests(reports: Subscriber, count: int, *, timeout: float) -> list[str]:
    return [parse_report(m.payload).bundle_digest for m in reports.collect(count, timeout)]


def _report_from(reports: Subscriber, digest: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (
        parse_report(reports.next(max(0.1, deadline - time.monotonic())).payload).bundle_digest
        != digest
    ):
        pass


def test_sigkill_mid_download_resumes_and_never_activates_a_partial_bundle(
    bundles, mqtt_broker, tmp_path
):
    store = BundleStore(tmp_path / "store")
    entry = store.add(bundles.slow)
    old = manifest_digest(bundles.a)
    board = Board("pi-dl", tmp_path / "pi-dl", bundles.a, mqtt_broker.url, bundles.fleet_pub)
    # Slow enough to be caught half-way: the archive takes several seconds.
    rate = max(1024, entry.archive_size // 6)
    with (
        BundleServer(store.root, rate_limit_bps=rate) as server,
        Subscriber(mqtt_broker, "edgekit/v1/pi-dl/report") as reports,
    ):
        board.start()
        assert _report_digests(reports, 1, timeout=60) == [old]
        command = install_command(entry, "pi-dl", server.url, rollout_id="rdl")
        publish_retained(
            mqtt_broker.host, mqtt_broker.port, deploy_topic("pi-dl"), command.to_json()
        )
        part = board.deploy_dir / "staging" / f"{entry.bundle_digest}.tar.gz.part"
        wait_until(
            lambda: part.is_file() and part.stat().st_size > entry.archive_size // 4,
            timeout_s=30,
            what="a quarter of the archive on disk",
        )
        board.kill()  # SIGKILL mid-download
        held = part.stat().st_size
        assert 0 < held < entry.archive_size
        assert board.running_digest() == old
        assert not (board.deploy_dir / "bundles" / entry.bundle_digest).exists()
        board.start()  # the retained command comes again; the download resumes
        wait_until(
            lambda: board.running_digest() == entry.bundle_digest,
            timeout_s=60,
            what="the new bundle activated",
        )
        _report_from(reports, entry.bundle_digest, timeout=60)
        board.stop()
        served = [(s.start, s.status.value) for s in server.served]
    assert served[0] == (0, 200)
    resumed = [start for start, status in served[1:] if status == 206]
    assert resumed, served
    assert resumed[0] >= held  # from what the killed daemon kept, not from the start
    assert sum(s.sent for s in server.served) < 2 * entry.archive_size
    assert not part.exists()


def test_a_foreign_signed_bundle_is_refused_and_not_fetched_again(bundles, mqtt_broker, tmp_path):
    store = BundleStore(tmp_path / "store")
    entry = store.add(bundles.foreign)
    old = manifest_digest(bundles.a)
    board = Board("pi-fs", tmp_path / "pi-fs", bundles.a, mqtt_broker.url, bundles.fleet_pub)
    with (
        BundleServer(store.root) as server,
        Subscriber(mqtt_broker, "edgekit/v1/pi-fs/deployment") as events,
        Subscriber(mqtt_broker, "edgekit/v1/pi-fs/report") as reports,
    ):
        board.start()
        _report_digests(reports, 1, timeout=60)
        command = install_command(entry, "pi-fs", server.url, rollout_id="rfs")
        publish_retained(
            mqtt_broker.host, mqtt_broker.port, deploy_topic("pi-fs"), command.to_json()
        )
        seen = _events_until(events, {"failed", "healthy", "rolled_back"}, timeout=60)
        assert seen[0].phase.value == "received"
        assert seen[-1].phase.value == "failed"
        assert "not by the trusted key" in seen[-1].reason
        assert seen[-1].running_digest == old
        assert set(_report_digests(reports, 2, timeout=30)) == {old}
        board.stop()
        board.start()  # the retained command is delivered again: already handled
        _report_digests(reports, 2, timeout=60)
        board.stop()
        fetched = [s for s in server.served if s.name == entry.archive_name]
    assert len(fetched) == 1
    assert board.running_digest() == old
    assert list((board.deploy_dir / "staging").iterdir()) == []


def _unloadable(bundles, out):
    """``a`` with its manifest declaring an int8 input the model does not have, re-signed with
    the fleet key: every file and the signature check out, loading it fails."""
    shutil.copytree(bundles.a, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["bundle_id"] = "a-declares-int8-input"
    manifest["artifacts"][0]["inputs"][0]["dtype"] = "int8"
    raw = (json.dumps(manifest, indent=2) + "\n").encode()
    (out / "manifest.json").write_bytes(raw)
    (out / "manifest.sig").write_bytes(signature_file(raw, load_private_key(bundles.fleet_key)))
    return out


def test_a_bundle_that_fails_to_load_is_rolled_back_by_the_board(bundles, mqtt_broker, tmp_path):
    store = BundleStore(tmp_path / "store")
    entry = store.add(_unloadable(bundles, tmp_path / "unloadable"))
    old = manifest_digest(bundles.a)
    board = Board("pi-rb", tmp_path / "pi-rb", bundles.a, mqtt_broker.url, bundles.fleet_pub)
    with (
        BundleServer(store.root) as server,
        Subscriber(mqtt_broker, "edgekit/v1/pi-rb/deployment") as events,
        Subscriber(mqtt_broker, "edgekit/v1/pi-rb/report") as reports,
    ):
        board.start()
        _report_digests(reports, 1, timeout=60)
        command = install_command(entry, "pi-rb", server.url, rollout_id="rrb")
        publish_retained(
            mqtt_broker.host, mqtt_broker.port, deploy_topic("pi-rb"), command.to_json()
        )
        seen = _events_until(events, {"failed", "healthy", "rolled_back"}, timeout=60)
        # (downloading comes once per 25% reached: once or more for a small archive)
        assert [phase for phase, _ in itertools.groupby(e.phase.value for e in seen)] == [
            "received",
            "downloading",
            "verified",
            "activated",
            "rolled_back",
        ]
        assert "int8" in seen[-1].reason  # the load error, as the board saw it
        assert seen[-1].running_digest == old
        # the board carries on, on its previous bundle
        assert set(_report_digests(reports, 2, timeout=30)) == {old}
        board.stop()
    assert board.running_digest() == old
    state = json.loads((board.deploy_dir / "state.json").read_text())
    assert state["trial"] is None
    assert state["handled"][-1]["outcome"] == "rolled_back"


def test_budgets_and_signature_requirements_are_checked_before_unpacking(
    bundles, mqtt_broker, tmp_path
):
    store = BundleStore(tmp_path / "store")
    entry = store.add(bundles.b)
    # No trusted key on this board: a command that requires a signature is refused outright.
    board = Board("pi-fit", tmp_path / "pi-fit", bundles.a, mqtt_broker.url, None)
    with (
        BundleServer(store.root) as server,
        Subscriber(mqtt_broker, "edgekit/v1/pi-fit/deployment") as events,
    ):
        board.start()
        topic = deploy_topic("pi-fit")
        tight = FitBudgets(max_model_mb=0.001, max_ram_mb=512)
        command = install_command(entry, "pi-fit", server.url, rollout_id="rfit", budgets=tight)
        publish_retained(mqtt_broker.host, mqtt_broker.port, topic, command.to_json())
        over = _events_until(events, {"failed"}, timeout=60)[-1]
        assert "of flash, the profile allows 0.001 MB" in over.reason
        signed = install_command(
            entry, "pi-fit", server.url, rollout_id="rsig", signature_required=True
        )
        publish_retained(mqtt_broker.host, mqtt_broker.port, topic, signed.to_json())
        refused = _events_until(events, {"failed"}, timeout=60)[-1]
        assert "requires a signed bundle" in refused.reason
        board.stop()
        fetched = [s for s in server.served if s.name == entry.archive_name]
    assert len(fetched) == 1  # the signature rule needed no download at all
    assert board.running_digest() == manifest_digest(bundles.a)
    assert not (board.deploy_dir / "bundles" / entry.bundle_digest).exists()
