"""Faults, counted end to end: boards (edgekit daemon) -> Mosquitto -> edgekit collect -> SQLite.

Each scenario runs real processes and kills or restarts one part mid-run. Sequence numbers are
allotted by each board's outbox in the same transaction that stores the report, so they are
gap-free per device: every number from 0 to the last must be stored exactly once. The figures
(sent, stored, duplicates dropped, rejected, lost) are printed in the test summary.
"""

from __future__ import annotations

import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest
from edgekit_testing import EDGEKIT, FAULT_FIGURES
from live_sqlite import query, scalar

from edgekit._wait import poll_until, wait_until

pytestmark = pytest.mark.slow

DEVICES = ("board-a", "board-b", "board-c")


class Fleet:
    """Daemons and a collector as separate processes, around one broker."""

    def __init__(self, broker, bundle: Path, folder: Path) -> None:
        self.broker, self.bundle, self.folder = broker, bundle, folder
        self.db = folder / "fleet.db"
        self.collector: subprocess.Popen[str] | None = None
        self.duplicates = 0

    def start_collector(self) -> None:
        self.collector = subprocess.Popen(
            [EDGEKIT, "collect", "--broker", self.broker.url, "--db", f"sqlite:///{self.db}",
             "--client-id", "fault-collector", "--batch-size", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        poll_until(self.db.exists, timeout_s=20, poll_s=0.1)
        time.sleep(1.0)  # subscribed

    def stop_collector(self, *, kill: bool = False) -> None:
        assert self.collector is not None
        self.collector.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        _, err = self.collector.communicate(timeout=30)
        if not kill:
            found = re.search(r"\((\d+) duplicates dropped\)", err)
            assert found, err
            self.duplicates += int(found.group(1))
        self.collector = None

    def daemon(self, device: str, reports: int, *, interval: float = 0.1) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [EDGEKIT, "daemon", str(self.bundle), "--broker", self.broker.url, "--device-id",
             device, "--reports", str(reports), "--interval", str(interval), "--window", "5",
             "--outbox", str(self.outbox(device))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def outbox(self, device: str) -> Path:
        return self.folder / f"{device}.outbox"

    def stored(self) -> dict[str, list[int]]:
        if not self.db.exists():
            return {}
        rows = query(self.db, "SELECT device_id, sequence FROM reports")
        out: dict[str, list[int]] = {}
        for device, sequence in rows:
            out.setdefault(device, []).append(sequence)
        return out

    def rejected(self) -> int:
        return int(scalar(self.db, "SELECT count(*) FROM rejected"))

    def sent(self) -> dict[str, int]:
        """Reports each board produced: its outbox's next sequence number."""
        sent = {}
        for device in DEVICES:
            path = self.outbox(device)
            if path.exists():
                sequence = scalar(path, "SELECT value FROM counters WHERE name='sequence'")
                pending = scalar(path, "SELECT count(*) FROM outbox")
                assert pending == 0, f"{device}: {pending} report(s) never acknowledged"
                sent[device] = int(sequence)
        return sent

    def wait_stored(self, total: int, timeout: float = 60) -> None:
        def count() -> int:
            return sum(len(v) for v in self.stored().values())

        wait_until(lambda: count() >= total, timeout_s=timeout, poll_s=0.2,
                   what=f"{total} stored reports")  # fmt: skip

    def account(self, scenario: str, config) -> None:
        """Check every report arrived exactly once and record the figures."""
        sent = self.sent()
        stored = self.stored()
        for device, count in sent.items():
            assert sorted(stored.get(device, [])) == list(range(count)), device
        row = {
            "scenario": scenario,
            "sent": sum(sent.values()),
            "stored": sum(len(v) for v in stored.values()),
            "duplicates dropped": self.duplicates,
            "duplicate rows": sum(len(v) - len(set(v)) for v in stored.values()),
            "rejected": self.rejected(),
        }
        row["lost"] = row["sent"] - row["stored"]
        assert row["lost"] == 0
        assert row["duplicate rows"] == 0
        config.stash.setdefault(FAULT_FIGURES, []).append(row)


def _finish(process: subprocess.Popen[str], timeout: float = 120) -> None:
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err


@pytest.fixture
def fleet(mqtt_broker, jetson_build, tmp_path):
    return Fleet(mqtt_broker, jetson_build[1], tmp_path)


def test_broker_restarted_mid_run(fleet, request):
    fleet.start_collector()
    boards = [fleet.daemon(d, 25) for d in DEVICES]
    fleet.wait_stored(6)
    fleet.broker.stop()
    time.sleep(2.0)  # boards keep measuring into their outboxes
    fleet.broker.start()
    for board in boards:
        _finish(board)
    fleet.wait_stored(75)
    fleet.stop_collector()
    fleet.account("broker restarted mid-run", request.config)


def test_collector_killed_during_ingest_and_restarted(fleet, request):
    fleet.start_collector()
    boards = [fleet.daemon(d, 25) for d in DEVICES]
    fleet.wait_stored(10)
    fleet.stop_collector(kill=True)  # SIGKILL: whatever it had not committed was not acked
    time.sleep(1.5)
    fleet.start_collector()  # same client id: the broker redelivers the unacknowledged
    for board in boards:
        _finish(board)
    fleet.wait_stored(75)
    fleet.stop_collector()
    fleet.account("collector SIGKILLed during ingest, restarted", request.config)


def test_daemon_killed_and_restarted(fleet, request):
    fleet.start_collector()
    steady = [fleet.daemon(d, 20) for d in DEVICES[1:]]
    victim = fleet.daemon(DEVICES[0], 1000)
    wait_until(lambda: len(fleet.stored().get(DEVICES[0], [])) >= 5, what="5 victim reports")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    _finish(fleet.daemon(DEVICES[0], 10))  # picks up what the outbox held, then 10 more
    for board in steady:
        _finish(board)
    total = sum(fleet_sent for fleet_sent in fleet.sent().values())
    fleet.wait_stored(total)
    fleet.stop_collector()
    fleet.account("daemon SIGKILLed mid-run, restarted", request.config)


def _tear_wal(outbox: Path) -> int:
    """Simulate a power cut in the middle of writing the next report: the WAL ends in a frame
    whose page was only partly written. Returns the bytes appended."""
    wal = outbox.with_name(outbox.name + "-wal")
    data = wal.read_bytes()
    assert len(data) > 32, "expected committed frames in the WAL"
    page_size = struct.unpack(">I", data[8:12])[0]
    frame = 24 + page_size
    last = data[-frame:]  # a copy of the last frame, cut short: an interrupted write
    torn = last[: 24 + page_size // 3]
    wal.write_bytes(data + torn)
    return len(torn)


def test_outbox_torn_by_a_power_cut(fleet, request):
    fleet.broker.stop()  # nothing leaves the board: every report waits in its outbox
    board = fleet.daemon(DEVICES[0], 1000, interval=0.05)
    outbox = fleet.outbox(DEVICES[0])
    wait_until(lambda: outbox.exists() and scalar(outbox, "SELECT count(*) FROM outbox") >= 8,
               what="8 reports in the outbox", poll_s=0.1)  # fmt: skip
    board.send_signal(signal.SIGKILL)
    board.wait(10)
    assert _tear_wal(outbox) > 0
    fleet.broker.start()
    fleet.start_collector()
    restarted = fleet.daemon(DEVICES[0], 3)
    _, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, err
    assert "damaged" not in err  # SQLite dropped the torn frame; committed reports are intact
    total = sum(fleet.sent().values())
    fleet.wait_stored(total)
    fleet.stop_collector()
    fleet.account("outbox WAL torn mid-write (power cut), restarted", request.config)
