"""The outbox: durable before publish, bounded, idempotent, and it survives kills and damage."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekit.errors import OutboxError
from edgekit.runtime.outbox import Entry, Outbox

TOPIC = "edgekit/v1/pi-bench-01/report"


def _ids(outbox: Outbox) -> list[str]:
    return [entry.message_id for entry in outbox.pending(outbox.max_messages)]


def test_put_pending_remove_in_insertion_order(tmp_path: Path):
    with Outbox(tmp_path / "outbox.db") as outbox:
        for i in range(5):
            assert outbox.put(f"msg-{i:04d}", TOPIC, f"payload {i}".encode())
        assert len(outbox) == 5
        assert outbox.pending(2) == [
            Entry("msg-0000", TOPIC, b"payload 0"),
            Entry("msg-0001", TOPIC, b"payload 1"),
        ]
        assert outbox.get("msg-0003") == Entry("msg-0003", TOPIC, b"payload 3")
        assert outbox.remove("msg-0001")
        assert not outbox.remove("msg-0001")
        assert outbox.get("msg-0001") is None
        assert _ids(outbox) == ["msg-0000", "msg-0002", "msg-0003", "msg-0004"]
        assert outbox.dropped == 0
        assert outbox.recovered_from is None


def test_duplicate_message_id_is_ignored(tmp_path: Path):
    with Outbox(tmp_path / "outbox.db") as outbox:
        assert outbox.put("msg-0000", TOPIC, b"first")
        assert not outbox.put("msg-0000", TOPIC, b"second")
        assert len(outbox) == 1
        assert outbox.get("msg-0000") == Entry("msg-0000", TOPIC, b"first")


def test_entries_survive_reopening(tmp_path: Path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        outbox.put("msg-0000", TOPIC, b"kept")
        outbox.put("msg-0001", TOPIC, b"acked")
        outbox.remove("msg-0001")
    with Outbox(path) as outbox:
        assert outbox.pending(10) == [Entry("msg-0000", TOPIC, b"kept")]
        assert outbox.size_bytes == len(TOPIC) + len(b"kept")


def test_full_by_count_drops_oldest_and_counts_persistently(tmp_path: Path):
    path = tmp_path / "outbox.db"
    with Outbox(path, max_messages=5) as outbox:
        for i in range(8):
            outbox.put(f"msg-{i:04d}", TOPIC, b"x" * 100)
        assert len(outbox) == 5
        assert outbox.dropped == 3
        assert _ids(outbox) == [f"msg-{i:04d}" for i in range(3, 8)]
    with Outbox(path, max_messages=5) as outbox:
        assert outbox.dropped == 3
        outbox.put("msg-0008", TOPIC, b"x")
        assert outbox.dropped == 4
        assert _ids(outbox)[0] == "msg-0004"


def test_full_by_bytes_drops_oldest_until_the_new_one_fits(tmp_path: Path):
    entry_size = len(TOPIC) + 1000
    with Outbox(tmp_path / "outbox.db", max_bytes=3 * entry_size + 10) as outbox:
        for i in range(3):
            outbox.put(f"msg-{i:04d}", TOPIC, b"a" * 1000)
        assert outbox.dropped == 0
        # Twice the size of the others: two of the oldest must go.
        outbox.put("msg-big1", TOPIC, b"b" * 2000)
        assert _ids(outbox) == ["msg-0002", "msg-big1"]
        assert outbox.dropped == 2
        assert outbox.size_bytes <= outbox.max_bytes


def test_disk_stays_bounded_under_a_long_outage(tmp_path: Path):
    path = tmp_path / "outbox.db"
    with Outbox(path, max_messages=50) as outbox:
        for i in range(2000):
            outbox.put(f"msg-{i:06d}", TOPIC, os.urandom(2000))
        assert len(outbox) == 50
        assert outbox.dropped == 1950
    files = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert files < 1_000_000, files  # 50 x 2 KB held; nowhere near the 4 MB ever written


def test_oversized_payload_and_bad_topic_are_refused(tmp_path: Path):
    with Outbox(tmp_path / "outbox.db", max_bytes=1000) as outbox:
        with pytest.raises(OutboxError, match="exceeds the outbox limit of 1000 bytes"):
            outbox.put("msg-0000", TOPIC, b"x" * 2000)
        with pytest.raises(OutboxError, match="not an MQTT topic"):
            outbox.put("msg-0001", "edgekit/v1/+/report", b"x")
        assert len(outbox) == 0


def test_bad_limits_are_refused(tmp_path: Path):
    with pytest.raises(OutboxError, match="max_messages must be at least 1"):
        Outbox(tmp_path / "outbox.db", max_messages=0)


_WRITER = """
import sys
from edgekit.runtime.outbox import Outbox
outbox = Outbox(sys.argv[1])
i = 0
while True:
    message_id = f"msg-{i:08d}"
    outbox.put(message_id, "edgekit/v1/pi/report", b"x" * 700)
    print(message_id, flush=True)  # only after put() returned, i.e. after COMMIT
    i += 1
"""


def test_sigkill_mid_run_loses_nothing_committed(tmp_path: Path):
    path = tmp_path / "outbox.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    committed: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while len(committed) < 200:
            assert time.monotonic() < deadline, f"writer committed only {len(committed)}"
            assert writer.stdout is not None
            ready, _, _ = select.select([writer.stdout], [], [], 1.0)
            if ready:
                line = writer.stdout.readline()
                assert line, f"writer exited with {writer.wait(5)}"
                committed.append(line.strip())
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        # Lines printed between our last read and the kill: committed too.
        assert writer.stdout is not None
        committed += [line.strip() for line in writer.stdout.read().splitlines()]
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(10)
    assert writer.returncode == -signal.SIGKILL

    with Outbox(path) as outbox:
        assert outbox.recovered_from is None
        held = set(_ids(outbox))
        assert set(committed) <= held
        assert len(held) - len(committed) <= 1  # at most the put the kill interrupted
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_truncated_file_is_moved_aside_and_a_fresh_outbox_starts(tmp_path: Path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        for i in range(300):
            outbox.put(f"msg-{i:06d}", TOPIC, os.urandom(1000))
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)
    damaged = path.read_bytes()

    with Outbox(path) as outbox:
        assert outbox.recovered_from is not None
        assert outbox.recovered_from.name.startswith("outbox.db.corrupt-")
        assert outbox.recovered_from.read_bytes() == damaged  # kept aside, untouched
        assert len(outbox) == 0
        assert outbox.dropped == 0
        assert outbox.put("msg-new-01", TOPIC, b"after recovery")
    with Outbox(path) as outbox:
        assert outbox.recovered_from is None
        assert _ids(outbox) == ["msg-new-01"]


def test_garbage_file_is_recovered_with_its_wal_moved_too(tmp_path: Path):
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not an sqlite database\n" * 200)
    wal = tmp_path / "outbox.db-wal"
    wal.write_bytes(b"stale write-ahead log")
    with Outbox(path) as outbox:
        assert outbox.recovered_from is not None
        assert outbox.recovered_from.exists()
        assert Path(f"{outbox.recovered_from}-wal").read_bytes() == b"stale write-ahead log"
        outbox.put("msg-0000", TOPIC, b"ok")
        assert len(outbox) == 1


def test_unusable_path_is_a_reporter_error_not_a_recovery(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the outbox's folder should be")
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(blocker / "outbox.db")
    assert list(tmp_path.iterdir()) == [blocker]


def test_use_after_close_is_a_reporter_error(tmp_path: Path):
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.close()
    with pytest.raises(OutboxError, match=r"outbox .*closed"):
        outbox.put("msg-0000", TOPIC, b"x")


def test_sequence_numbers_run_on_across_reopening_without_gaps(tmp_path):
    path = tmp_path / "seq.sqlite"
    with Outbox(path) as outbox:
        first = [outbox.put_next("edgekit/v1/d/report", lambda n: (f"id-{n:04d}", b"x"))[0]
                 for _ in range(3)]  # fmt: skip
    with Outbox(path) as outbox:
        more = [outbox.put_next("edgekit/v1/d/report", lambda n: (f"id-{n:04d}", b"x"))[0]
                for _ in range(2)]  # fmt: skip
        assert [e.message_id for e in outbox.pending(10)] == [f"id-{n:04d}" for n in range(5)]
    assert first + more == [0, 1, 2, 3, 4]
