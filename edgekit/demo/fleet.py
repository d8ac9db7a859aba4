"""The demo's fleet: simulated boards (real ``edgekit daemon`` processes) reporting to a
collector service with an embedded broker, until every report is stored (and, while they run,
a rollout to them)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit._net import free_port
from edgekit._wait import poll_until
from edgekit.demo.rollout import windows_sent
from edgekit.errors import EdgekitError
from edgekit.progress import Progress

# The collector's session in the demo.
CLIENT_ID = "edgekit-demo"


@dataclass(frozen=True)
class Board:
    """One simulated board: its id and the bundle it runs."""

    device_id: str
    bundle: Path


def run_fleet(
    boards: list[Board],
    *,
    out_dir: Path,
    database: Path,
    reports: int,
    interval_s: float,
    progress: Progress,
    say: Callable[[str], None],
    then: Callable[[str, str], object] | None = None,
) -> tuple[int, int]:
    """Run ``boards`` against a collector storing into ``database`` until each has reported
    ``reports`` windows; (reports sent, reports stored). EdgekitError if a board failed.

    With ``then``, the boards keep running (each with a deploy directory of its own) while
    ``then(broker_url, db_url)`` runs, and stop after it; they report all along.
    """
    from edgekit.collector import Store

    url = f"mqtt://127.0.0.1:{free_port()}"
    db_url = f"sqlite:///{database}"
    # Bundles are rebuilt on every run: what an earlier run deployed must not stand in for them.
    shutil.rmtree(out_dir / "deploy", ignore_errors=True)
    with _CollectorThread(db_url, url) as collector:
        say(f"embedded broker on {url}, collector storing into {database}")
        processes = [
            _start_daemon(b, url, out_dir, None if then else reports, interval_s) for b in boards
        ]
        expected = len(boards) * reports
        with (
            Store(db_url) as store,
            progress.task(f"{len(boards)} simulated boards reporting", total=expected) as task,
        ):
            counted = [0]

            def done() -> bool:  # every report stored, or no collector left to store them
                now = len(store.message_ids())
                task.advance(min(now, expected) - min(counted[0], expected))
                counted[0] = now
                return now >= expected or not collector.alive()

            timeout = 60 + reports * interval_s * 3
            poll_until(done, timeout_s=timeout, poll_s=0.5)
            try:
                if then is not None and counted[0] >= expected:
                    then(url, db_url)
            finally:
                for process in processes:
                    if process.poll() is None:
                        process.send_signal(signal.SIGTERM)
            failed = [b.device_id for b, p in zip(boards, processes, strict=True) if _finish(p)]
            sent = sum(windows_sent(_outbox(out_dir, b)) for b in boards)
            # What the boards flushed on SIGTERM reaches the collector a moment later.
            poll_until(lambda: len(store.message_ids()) >= sent, timeout_s=30, poll_s=0.2)
    if failed:
        raise EdgekitError(f"simulated board(s) {', '.join(failed)} failed; see {out_dir}/logs")
    with Store(db_url) as store:
        return sent, len(store.message_ids())


class _CollectorThread:
    """:func:`edgekit.collector.serve` with an embedded broker, on a thread of its own; its
    error, if it had one, is raised when the block ends."""

    def __init__(self, db_url: str, broker: str) -> None:
        self._db_url, self._broker = db_url, broker
        self._started = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="edgekit-demo-collector")

    def _serve(self) -> None:
        from edgekit.collector import serve

        try:
            serve(
                self._db_url,
                broker=self._broker,
                embedded_broker=True,
                client_id=CLIENT_ID,
                stop=self._stop,
                on_started=lambda _what: self._started.set(),
            )
        except BaseException as exc:  # re-raised on the demo's thread
            self._error = exc
        finally:
            self._started.set()

    def alive(self) -> bool:
        """Whether the collector still runs."""
        return self._thread.is_alive()

    def __enter__(self) -> _CollectorThread:
        self._thread.start()
        if not self._started.wait(60):
            self._stop.set()
            raise EdgekitError("the demo's collector did not start within 60 s")
        self._raise()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def _outbox(out_dir: Path, board: Board) -> Path:
    return out_dir / "outbox" / f"{board.device_id}.sqlite"


def _start_daemon(
    board: Board, broker: str, out_dir: Path, reports: int | None, interval_s: float
) -> subprocess.Popen[bytes]:
    """A board's daemon: ``reports`` windows, or until SIGTERM with a deploy directory."""
    logs = out_dir / "logs"
    logs.mkdir(exist_ok=True)
    log = (logs / f"{board.device_id}.log").open("wb")
    until = (
        ["--reports", str(reports)]
        if reports is not None
        else ["--deploy-dir", str(out_dir / "deploy" / board.device_id)]
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgekit",
            "daemon",
            str(board.bundle),
            "--broker",
            broker,
            "--device-id",
            board.device_id,
            "--mqtt",
            "3.1.1",
            *until,
            "--interval",
            str(interval_s),
            "--window",
            "200",
            "--outbox",
            str(_outbox(out_dir, board)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=out_dir,
    )


def _finish(process: subprocess.Popen[bytes]) -> int:
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
