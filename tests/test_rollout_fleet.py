"""Rollouts to a fleet of 12 real ``edgekit daemon`` processes, each with its own deploy
directory and outbox, through a real Mosquitto, with edgekit's collector storing their reports
and ``edgekit deploy`` as the controller.

- a good bundle goes out in waves (canary, 25%, 50%, 100%), each sent only once the one before
  passed its gate; a board that was offline during the rollout gets it when it comes back;
- a slower bundle (the same function with 256 times the multiply-adds) stops at the canary wave:
  the canaries are sent back and report from their previous bundle again, nobody else got it;
- a tampered bundle (digests fixed up after signing) is refused by every board, and the rollout
  fails cleanly: nobody ever ran it, every board still runs what it ran;
- the controller SIGKILLed mid-rollout is resumed by another from the database, after a second
  one was refused by the lease, and no board is sent its command twice.

The boards are shared by the tests of this module (starting 12 daemons takes a while); each test
judges boards against whatever they run when it starts, as the gate itself does.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_fleet import (
    TEST_GATE,
    Board,
    DeployBundles,
    boards_running,
    cached_test_bundles,
    collector_running,
    deploy,
    reports_by,
    start_deploy,
    wait_for_reports,
)
from edgekit_testing import assert_one_clear_error, assert_one_error_line, run_edgekit
from fixtures_collector import table_rows
from fixtures_mqtt import Subscriber
from mosquitto_launcher import MosquittoBroker

from edgekit._wait import wait_until
from edgekit.bundle_server import BundleServer
from edgekit.bundle_store import manifest_digest
from edgekit.deploy_wire import parse_command

pytestmark = pytest.mark.slow

FLEET = [f"pi-{i:02d}" for i in range(12)]
GATE = TEST_GATE


@dataclass
class Fleet:
    broker: MosquittoBroker
    db: str
    store: Path
    store_url: str
    bundles: DeployBundles
    boards: list[Board]

    def board(self, device_id: str) -> Board:
        return next(b for b in self.boards if b.device_id == device_id)

    def deploy(self, bundle: Path, *args: str):
        return deploy(
            bundle,
            "--devices",
            "pi-*",
            "--db",
            self.db,
            "--broker",
            self.broker.url,
            "--store",
            self.store,
            "--store-url",
            self.store_url,
            "--gate",
            GATE,
            *args,
        )

    def settle(self, boards: list[Board] | None = None) -> None:
        """Until every (running) board has three reports from the bundle it runs."""
        for board in boards or [b for b in self.boards if b.process is not None]:
            wait_until(
                lambda b=board: b.running_digest() is not None,
                timeout_s=60,
                what=f"{board.device_id} to start",
            )
            wait_for_reports(
                self.db, [board], board.running_digest() or "", at_least=3, timeout_s=90
            )


@pytest.fixture(scope="module")
def fleet(request, tmp_path_factory):
    bundles = cached_test_bundles(request.config.cache.mkdir("edgekit-deploy"))
    root = tmp_path_factory.mktemp("fleet")
    db = f"sqlite:///{root / 'fleet.db'}"
    (root / "store").mkdir()
    with MosquittoBroker(root / "mosquitto") as broker, BundleServer(root / "store") as server:
        boards = [Board(d, root / d, bundles.a, broker.url, bundles.fleet_pub) for d in FLEET]
        with collector_running(broker.url, db), boards_running(boards):
            yield Fleet(broker, db, root / "store", server.url, bundles, boards)


def _rollout_id(result) -> str:
    assert result.stdout.startswith("rollout "), (result.stdout, result.stderr)
    return result.stdout.split()[1].rstrip(":")


def _waves(db: str, rollout_id: str) -> list[tuple]:
    return table_rows(
        db,
        f"SELECT label, size, state, sent_at, decided_at FROM rollout_waves "
        f"WHERE rollout_id = '{rollout_id}' ORDER BY wave",
    )


def test_a_good_bundle_rolls_out_in_waves_and_reaches_a_board_that_was_away(fleet):
    fleet.settle()
    away = fleet.board("pi-11")  # last by id: in the last wave
    away.stop()  # SIGTERM: it says 'offline' and is gone during the rollout
    wait_until(
        lambda: (
            table_rows(fleet.db, "SELECT last_status FROM devices WHERE device_id = 'pi-11'")
            == [("offline",)]
        ),
        timeout_s=30,
        what="pi-11 seen offline",
    )
    new = manifest_digest(fleet.bundles.b)
    result = fleet.deploy(fleet.bundles.b)
    assert result.returncode == 0, result.stderr
    rollout_id = _rollout_id(result)
    waves = _waves(fleet.db, rollout_id)
    assert [(label, size, state) for label, size, state, *_ in waves] == [
        ("canary", 2, "passed"),
        ("25%", 1, "passed"),
        ("50%", 3, "passed"),
        ("100%", 6, "passed"),
    ]
    for before, after in itertools.pairwise(waves):
        assert after[3] >= before[4]  # sent only after the wave before it was decided
    online = [b for b in fleet.boards if b is not away]
    assert {b.running_digest() for b in online} == {new}
    wait_for_reports(fleet.db, online, new, at_least=3, timeout_s=60)
    deferred = table_rows(
        fleet.db,
        f"SELECT device_id, state, deferred FROM rollout_targets "
        f"WHERE rollout_id = '{rollout_id}' AND deferred",
    )
    assert deferred == [("pi-11", "sent", 1)]
    assert reports_by(fleet.db, "pi-11", new) == 0
    away.start()  # back: the retained desired state is waiting for it
    wait_for_reports(fleet.db, [away], new, at_least=1, timeout_s=90)
    assert away.running_digest() == new
    assert "deployment " + rollout_id in away.log_text()


def test_a_slower_bundle_stops_at_the_canaries_and_they_go_back(fleet):
    fleet.settle()
    before = {b.device_id: b.running_digest() for b in fleet.boards}
    slow = manifest_digest(fleet.bundles.slow)
    result = fleet.deploy(fleet.bundles.slow)
    assert result.returncode == 1, result.stderr
    rollout_id = _rollout_id(result)
    assert result.stdout.strip() == f"rollout {rollout_id}: rolled_back"
    assert "x its" in result.stderr  # the gate says why: the p50 ratio
    waves = _waves(fleet.db, rollout_id)
    assert [(label, state) for label, _, state, *_ in waves] == [
        ("canary", "failed"),
        ("25%", "pending"),
        ("50%", "pending"),
        ("100%", "pending"),
    ]
    targets = dict(
        table_rows(
            fleet.db,
            f"SELECT device_id, state FROM rollout_targets WHERE rollout_id = '{rollout_id}'",
        )
    )
    canaries = ["pi-00", "pi-01"]
    assert {targets[d] for d in canaries} == {"reverted"}
    assert {s for d, s in targets.items() if d not in canaries} == {"pending"}
    for device in canaries:
        board = fleet.board(device)
        assert board.running_digest() == before[device]
        assert reports_by(fleet.db, device, slow) >= 3  # it did run it, and was measured
        # and it reports from its previous bundle again
        count = reports_by(fleet.db, device, before[device])
        wait_until(
            lambda d=device, n=count: reports_by(fleet.db, d, before[d]) > n,
            timeout_s=30,
            what=f"{device} reporting from its previous bundle",
        )
    for board in fleet.boards:
        if board.device_id not in canaries:
            assert reports_by(fleet.db, board.device_id, slow) == 0
            assert not (board.deploy_dir / "bundles" / slow).exists()
    gate = table_rows(
        fleet.db,
        f"SELECT verdict_json FROM rollout_waves WHERE rollout_id = '{rollout_id}' AND wave = 0",
    )[0][0]
    assert '"verdict":"fail"' in gate
    assert '"p50_ratio_limit":3.0' in gate


def test_a_tampered_bundle_is_refused_by_every_board_and_the_rollout_fails_cleanly(fleet):
    fleet.settle()
    before = {b.device_id: b.running_digest() for b in fleet.boards}
    tampered = manifest_digest(fleet.bundles.tampered)
    result = fleet.deploy(fleet.bundles.tampered, "--canary", "0%", "--waves", "100%")
    assert result.returncode == 1, result.stderr
    rollout_id = _rollout_id(result)
    assert result.stdout.strip() == f"rollout {rollout_id}: failed"
    refusals = table_rows(
        fleet.db,
        f"SELECT device_id, reason FROM rollout_events WHERE "
        f"rollout_id = '{rollout_id}' AND phase = 'failed'",
    )
    assert sorted(d for d, _ in refusals) == FLEET
    assert all("signature does not match manifest.json" in reason for _, reason in refusals)
    ran = table_rows(
        fleet.db,
        f"SELECT count(*) FROM rollout_events WHERE rollout_id = "
        f"'{rollout_id}' AND phase IN ('activated', 'measuring')",
    )
    assert ran == [(0,)]
    for board in fleet.boards:
        assert board.running_digest() == before[board.device_id]
        assert reports_by(fleet.db, board.device_id, tampered) == 0
        assert not (board.deploy_dir / "bundles" / tampered).exists()
        assert list((board.deploy_dir / "staging").iterdir()) == []


def test_a_killed_controller_is_resumed_from_the_database_without_resending(fleet, tmp_path):
    """The controller is SIGKILLed while a wave is out; a second one is refused while the first
    holds the lease; one started after the kill takes the lease over when it runs out and
    finishes the rollout. Every board got its command exactly once."""
    fleet.settle()
    running = {b.device_id: b.running_digest() for b in fleet.boards}
    # Whichever of the two good bundles the fleet does not run (a after the tests above).
    bundle = (
        fleet.bundles.b
        if set(running.values()) == {manifest_digest(fleet.bundles.a)}
        else fleet.bundles.a
    )
    target = manifest_digest(bundle)
    todo = sorted(d for d, digest in running.items() if digest != target)
    common = [
        "--devices",
        "pi-*",
        "--db",
        fleet.db,
        "--broker",
        fleet.broker.url,
        "--store-url",
        fleet.store_url,
        "--gate",
        GATE,
        "--lease-ttl",
        "6",
    ]
    with Subscriber(fleet.broker, "edgekit/v1/+/deploy") as commands:
        first = start_deploy(bundle, "--store", fleet.store, *common, log=tmp_path / "first.log")
        rollout_id = None

        def second_wave_acknowledged() -> bool:
            nonlocal rollout_id
            rows = table_rows(
                fleet.db,
                "SELECT rollout_id FROM rollouts WHERE state = 'running' ORDER BY created_at DESC",
            )
            if not rows:
                return False
            rollout_id = rows[0][0]
            waves = _waves(fleet.db, rollout_id)
            states = table_rows(
                fleet.db,
                f"SELECT state FROM rollout_targets WHERE rollout_id = '{rollout_id}' AND wave = 1",
            )
            return [w[2] for w in waves[:2]] == ["passed", "sent"] and all(
                s not in ("pending", "sent") for (s,) in states
            )

        wait_until(second_wave_acknowledged, timeout_s=120, what="the 25% wave out and answered")
        # A second controller while the first runs: refused once the lease did not come free.
        second = deploy("--resume", rollout_id, *common[2:])
        assert_one_error_line(second, f"rollout {rollout_id} is run by another controller")
        first.kill()  # SIGKILL mid-rollout
        first.wait(10)
        resumed = deploy("--resume", rollout_id, *common[2:])
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip() == f"rollout {rollout_id}: succeeded"
        live = Counter()
        while True:
            try:
                message = commands.next(2.0)
            except TimeoutError:
                break
            command = parse_command(message.payload)
            if not message.retain and command.rollout_id == rollout_id:
                live[command.device_id] += 1
    assert live == Counter({device: 1 for device in todo})
    waves = _waves(fleet.db, rollout_id)
    assert [w[2] for w in waves] == ["passed"] * 4
    wait_until(
        lambda: {b.running_digest() for b in fleet.boards} == {target},
        timeout_s=60,
        what="every board on the rolled-out bundle",
    )


def test_a_rollout_is_rolled_back_by_hand_and_listed(fleet):
    """``edgekit rollback`` sends every board a finished rollout reached back to the bundle it
    ran before; ``edgekit rollouts`` shows the rollouts with their gate figures."""
    fleet.settle()
    before = {b.device_id: b.running_digest() for b in fleet.boards}
    bundle = (
        fleet.bundles.b
        if set(before.values()) == {manifest_digest(fleet.bundles.a)}
        else fleet.bundles.a
    )
    result = fleet.deploy(bundle, "--canary", "0%", "--waves", "100%")
    assert result.returncode == 0, result.stderr
    rollout_id = _rollout_id(result)
    assert {b.running_digest() for b in fleet.boards} == {manifest_digest(bundle)}
    back = run_edgekit(
        "rollback", rollout_id, "--db", fleet.db, "--broker", fleet.broker.url, timeout=300
    )
    assert back.returncode == 0, back.stderr
    assert back.stdout.strip() == f"rollout {rollout_id}: rolled_back"
    assert {b.device_id: b.running_digest() for b in fleet.boards} == before
    again = run_edgekit("rollback", rollout_id, "--db", fleet.db, "--broker", fleet.broker.url)
    assert_one_clear_error(again, f"rollout {rollout_id} is already rolled back")
    listed = run_edgekit("rollouts", "--db", fleet.db)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith(f"{rollout_id}  rolled_back")
    assert "rolled back by hand" in lines[0]
    assert "12 reverted" in lines[0]
    assert lines[1].split()[:5] == ["wave", "100%", "12", "board(s)", "passed"]
    assert "p50 ratio" in lines[1]
    assert "5 window(s) each" in lines[1]
