"""Faults, counted end to end: boards (edgekit daemon, MQTT 3.1.1) -> a three-node NATS cluster
-> two ``edgekit collect --nats`` processes -> PostgreSQL.

Every part is a real process. Sequence numbers come from each board's outbox (gap-free), so every
number from 0 to the last must be stored exactly once, and a board removes a report from its
outbox only on PUBACK: "0 lost" means no PUBACKed report is missing. The figures go into the
fault table printed at the end of the run.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from edgekit_testing import EDGEKIT, FAULT_FIGURES
from fixtures_collector import table_rows
from live_sqlite import scalar
from nats_cluster import NatsCluster
from nats_testing import (
    close,
    consumer_info,
    jetstream,
    mqtt_client,
    pg_database,
    publish,
    stream_leader,
)
from report_factory import make_report, report_message

from edgekit._wait import poll_until, wait_until
from edgekit.collector import StreamLayout
from edgekit.collector.nats_stream import MQTT_STREAM

pytestmark = pytest.mark.slow

BOARDS = ("board-a", "board-b", "board-c")
ACK_WAIT_S = 3


class NatsFleet:
    """Boards, a NATS cluster and collectors as separate processes."""

    def __init__(self, cluster: NatsCluster, db: str, bundle: Path, folder: Path) -> None:
        self.cluster, self.db, self.bundle, self.folder = cluster, db, bundle, folder
        self.collectors: list[tuple[subprocess.Popen[str], list[str]]] = []
        self.duplicates = 0
        self.acknowledged = 0

    def start_collector(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [EDGEKIT, "collect", "--nats", self.cluster.urls, "--db", self.db,
             "--batch-size", "20", "--ack-wait", str(ACK_WAIT_S)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True).start()
        wait_until(lambda: any("collecting" in line for line in lines) or proc.poll() is not None,
                   timeout_s=60, what="the collector to start")  # fmt: skip
        assert proc.poll() is None, "".join(lines)
        self.collectors.append((proc, lines))
        return proc

    def stop_collectors(self) -> None:
        for proc, lines in self.collectors:
            if proc.poll() is not None:
                continue  # SIGKILLed by the test: it printed nothing
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            time.sleep(0.2)  # the reader thread takes the last line
            text = "".join(lines)
            assert proc.returncode == 0, text
            found = re.search(r"\((\d+) duplicates dropped\).* (\d+) messages acknowledged", text)
            assert found, text
            self.duplicates += int(found.group(1))
            self.acknowledged += int(found.group(2))

    def daemon(self, board: str, node: int, reports: int) -> subprocess.Popen[str]:
        # A board whose node died retries on paho's back-off, waiting 1, 2, 4, 8, 16 s: 1, 3,
        # 7, 15 and 31 s after the loss. When the node is back only after the 15 s try, the
        # board reconnects at 31 s, after this short run has made its last report: the flush
        # waits long enough for it (it returns as soon as the outbox is empty), or the reports
        # would wait for the board's next start, where this test could not count them.
        return subprocess.Popen(
            [EDGEKIT, "daemon", str(self.bundle), "--broker", self.cluster.mqtt_url(node),
             "--mqtt", "3.1.1", "--device-id", board, "--reports", str(reports),
             "--interval", "0.1", "--window", "5", "--outbox", str(self.outbox(board)),
             "--flush-timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def outbox(self, board: str) -> Path:
        return self.folder / f"{board}.outbox"

    def stored(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for board, sequence in table_rows(self.db, "SELECT device_id, sequence FROM reports"):
            out.setdefault(board, []).append(sequence)
        return out

    def count(self) -> int:
        return sum(len(v) for v in self.stored().values())

    def sent(self, boards: tuple[str, ...], said: dict[str, str] | None = None) -> dict[str, int]:
        """Reports each board produced; every one must have been PUBACKed (outbox empty).
        ``said``: what each board's daemon printed, shown when one was not."""
        sent = {}
        for board in boards:
            pending = scalar(self.outbox(board), "SELECT count(*) FROM outbox")
            told = (said or {}).get(board, "")[-4000:]
            assert pending == 0, (
                f"{board}: {pending} report(s) never acknowledged; it said:\n{told}"
            )
            sequence = scalar(
                self.outbox(board), "SELECT value FROM counters WHERE name='sequence'"
            )
            sent[board] = int(sequence)
        return sent

    def account(self, scenario: str, sent: dict[str, int], config) -> dict[str, object]:
        """Each board's sequence numbers stored exactly once; the figures recorded."""
        stored = self.stored()
        missing = {b: sorted(set(range(n)) - set(stored.get(b, []))) for b, n in sent.items()}
        shown = {b: f"{len(m)} ({m[0]}..{m[-1]})" for b, m in missing.items() if m}
        assert not shown, f"PUBACKed but not stored: {shown}"
        for board, count in sent.items():
            assert sorted(stored.get(board, [])) == list(range(count)), board
        total, kept = sum(sent.values()), sum(len(v) for v in stored.values())
        repeated = sum(len(v) - len(set(v)) for v in stored.values())
        row: dict[str, object] = {
            "scenario": scenario,
            "sent": total,
            "stored": kept,
            "duplicates dropped": self.duplicates,
            "duplicate rows": repeated,
            "rejected": table_rows(self.db, "SELECT count(*) FROM rejected")[0][0],
            "lost": total - kept,
        }
        assert (total - kept, repeated) == (0, 0)
        config.stash.setdefault(FAULT_FIGURES, []).append(row)
        return row


@pytest.fixture
def fleet(jetson_build, tmp_path) -> Iterator[NatsFleet]:
    with pg_database() as db, NatsCluster(tmp_path / "nats") as cluster:
        running = NatsFleet(cluster, db, jetson_build[1], tmp_path)
        try:
            yield running
        finally:
            for proc, _ in running.collectors:
                if proc.poll() is None:
                    proc.kill()


def _wait_for(fleet: NatsFleet, total: int, timeout_s: float = 90) -> None:
    """Until ``total`` reports are stored, or the deadline (the accounting then says what is
    missing)."""
    poll_until(lambda: fleet.count() >= total, timeout_s=timeout_s, poll_s=0.3)


def _finish(board: subprocess.Popen[str]) -> str:
    _, err = board.communicate(timeout=180)
    assert board.returncode == 0, err
    return err


def _apart(urls: str) -> str:
    """Lead EDGEKIT from a node that does not lead $MQTT_msgs (the layout that lost PUBACKed
    reports when the stream captured the subjects itself); that node's name."""
    for _ in range(10):
        leader = stream_leader(urls, "EDGEKIT")
        if leader != stream_leader(urls, MQTT_STREAM):
            return leader

        async def step_down(js):
            await js._nc.request("$JS.API.STREAM.LEADER.STEPDOWN.EDGEKIT", b"", timeout=5)

        jetstream(urls, step_down)
        time.sleep(2)
    raise AssertionError("EDGEKIT and $MQTT_msgs stayed led by one node")


def test_boards_to_two_collectors_a_nats_node_killed_mid_run(fleet, request):
    fleet.start_collector()
    fleet.start_collector()  # after the first set the layout up: it only checks it
    victim = int(_apart(fleet.cluster.urls)[1:]) - 1
    boards = [fleet.daemon(board, node, 120) for node, board in enumerate(BOARDS)]
    wait_until(lambda: fleet.count() >= 30, timeout_s=60, what="30 reports stored")
    # The EDGEKIT stream's leader dies without a word, one board's node with it.
    fleet.cluster.kill(victim)
    client = mqtt_client(fleet.cluster.nodes[(victim + 1) % 3].mqtt)
    assert publish(client, [(f"edgekit/v1/{BOARDS[0]}/report", b"not a report")]) == 1
    close(client)
    time.sleep(4)
    fleet.cluster.start(victim)
    said = {name: _finish(board) for name, board in zip(BOARDS, boards, strict=True)}
    try:
        sent = fleet.sent(BOARDS, said)
    except AssertionError as exc:  # what the nodes said, for the diagnosis
        logs = "\n".join(f"-- n{i + 1} --\n{fleet.cluster.log(i)[-6000:]}" for i in range(3))
        raise AssertionError(f"{exc}\nkilled: n{victim + 1}\n{logs}") from None
    _wait_for(fleet, sum(sent.values()))
    fleet.stop_collectors()
    row = fleet.account("NATS node (EDGEKIT leader) SIGKILLed mid-run", sent, request.config)
    assert row["rejected"] == 1, "the malformed payload, once"
    info = consumer_info(fleet.cluster.urls, StreamLayout())
    assert (info.num_ack_pending, info.num_pending) == (0, 0)


def test_a_collector_killed_mid_batch_leaves_its_messages_to_the_other(fleet, request):
    import psycopg

    first, _second = fleet.start_collector(), fleet.start_collector()
    reports = [make_report(board, sequence=i) for i in range(200) for board in BOARDS]
    dsn = fleet.db.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as admin, psycopg.connect(dsn) as lock:
        lock.execute("LOCK TABLE reports IN EXCLUSIVE MODE")
        client = mqtt_client(fleet.cluster.nodes[0].mqtt)
        assert publish(client, [report_message(r) for r in reports]) == len(reports)
        close(client)

        def both_waiting() -> bool:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            return row is not None and row[0] >= 2

        # Each collector has fetched a batch and is inside its commit: nothing acknowledged.
        wait_until(both_waiting, timeout_s=30, what="both collectors blocked mid-commit")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    # The other commits its batch, then gets the dead one's after ack_wait.
    sent = {board: 200 for board in BOARDS}
    _wait_for(fleet, 600)
    fleet.stop_collectors()
    fleet.account("collector SIGKILLed mid-batch (NATS)", sent, request.config)
    assert fleet.acknowledged == 600, "the survivor acknowledged every message, the dead one's too"
