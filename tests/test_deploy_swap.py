"""A power cut between the steps of a swap, simulated: the board's agent carries out a real
install in a process of its own and is SIGKILLed right after one step; then a real daemon starts
on what is left. Whatever the step, it runs a whole bundle (every file verified against its
signed manifest): the old one up to the link flip, the new one (on trial) after it; nothing an
interrupted step left behind stays, and the outbox still holds every event put before the cut.

The agent fsyncs each step before it takes the next, so a SIGKILL after a step leaves on disk
what a power cut after it would; that is what the simulation rests on.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys

import pytest
from deploy_fleet import cached_test_bundles, install_command
from edgekit_testing import EDGEKIT

from edgekit._net import free_port
from edgekit._wait import wait_until
from edgekit.bundle import verify_bundle
from edgekit.bundle_server import BundleServer
from edgekit.bundle_store import BundleStore, manifest_digest
from edgekit.deploy_wire import parse_event
from edgekit.schema import parse_report

STEPS = (
    "downloaded",
    "unpacked",
    "installed",
    "trial-recorded",
    "previous-linked",
    "current-linked",
)

# Adopt bundle A, then carry out the command, SIGKILLing this process right after STEP.
AGENT = """
import os, signal, sys
from pathlib import Path
from edgekit.deploy_wire import parse_command
from edgekit.runtime.deploy_agent import DeployAgent
from edgekit.runtime.outbox import Outbox

step, root, command, trust_key, first = sys.argv[1:6]
def cut(name):
    if name == step:
        os.kill(os.getpid(), signal.SIGKILL)
with Outbox(Path(root) / "outbox.sqlite") as outbox:
    agent = DeployAgent(Path(root) / "deploy", device_id="pi-cut", outbox=outbox,
                        prefix="edgekit/v1", trust_key=Path(trust_key), on_step=cut)
    agent.start(Path(first))
    agent.handle(parse_command(Path(command).read_bytes()))
print("not cut")
"""


@pytest.fixture(scope="session")
def bundles(request):
    return cached_test_bundles(request.config.cache.mkdir("edgekit-deploy"))


def _outbox(path) -> tuple[list[str], list[str]]:
    """(event phases, report digests) the outbox holds, in order."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT topic, payload FROM outbox ORDER BY seq").fetchall()
    events = [parse_event(p).phase.value for t, p in rows if t.endswith("/deployment")]
    reports = [parse_report(p).bundle_digest for t, p in rows if t.endswith("/report")]
    return events, reports


@pytest.mark.parametrize("step", STEPS)
def test_a_power_cut_after_any_step_leaves_a_whole_bundle(step, bundles, tmp_path):
    store = BundleStore(tmp_path / "store")
    entry = store.add(bundles.b)
    old, new = manifest_digest(bundles.a), entry.bundle_digest
    root = tmp_path / "board"
    root.mkdir()
    with BundleServer(store.root) as server:
        command = tmp_path / "command.json"
        command.write_bytes(
            install_command(entry, "pi-cut", server.url, rollout_id="rcut").to_json()
        )
        cut = subprocess.run(
            [
                sys.executable,
                "-c",
                AGENT,
                step,
                str(root),
                str(command),
                str(bundles.fleet_pub),
                str(bundles.a),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert cut.returncode == -signal.SIGKILL, cut.stderr
    events_before, _ = _outbox(root / "outbox.sqlite")
    # The board comes back with no broker to talk to: it runs what is on disk and buffers.
    daemon = subprocess.run(
        [
            EDGEKIT,
            "daemon",
            str(bundles.a),
            "--broker",
            f"mqtt://127.0.0.1:{free_port()}",
            "--device-id",
            "pi-cut",
            "--deploy-dir",
            str(root / "deploy"),
            "--outbox",
            str(root / "outbox.sqlite"),
            "--trust-key",
            str(bundles.fleet_pub),
            "--reports",
            "2",
            "--interval",
            "0.1",
            "--window",
            "5",
            "--flush-timeout",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert daemon.returncode == 0, daemon.stderr
    expected = new if step == "current-linked" else old
    current = root / "deploy" / "current"
    assert current.resolve().name == expected
    verify_bundle(current, trust_key=bundles.fleet_pub)  # whole, and signed by the fleet key
    events, reports = _outbox(root / "outbox.sqlite")
    assert reports == [expected, expected]
    assert events[: len(events_before)] == events_before  # nothing the cut interrupted was lost
    assert events_before[:1] == ["received"]
    leftovers = [p.name for p in (root / "deploy" / "staging").iterdir()]
    assert not [n for n in leftovers if n.startswith("unpacking-")]
    assert not list((root / "deploy").glob(".*.new"))
    state = json.loads((root / "deploy" / "state.json").read_text())
    if step == "current-linked":
        # The restarted daemon took the trial up where the cut left it, and finished it.
        assert state["trial"] is None
        assert state["handled"][-1]["digest"] == new
        assert state["handled"][-1]["outcome"] == "healthy"
        assert events[len(events_before) :] == ["measuring", "healthy"]
    else:
        # The swap never happened: the command is still to do when it is delivered again.
        assert state["trial"] is None
        assert state["handled"] == []
        assert events == events_before


def test_a_bundle_the_daemon_keeps_dying_on_is_given_up(bundles, tmp_path):
    """A bundle on trial that takes the daemon down (here: SIGKILL after its first window,
    before it has proven itself) is rolled back after MAX_TRIAL_STARTS starts on it."""
    from edgekit.runtime.deploy_agent import MAX_TRIAL_STARTS

    store = BundleStore(tmp_path / "store")
    entry = store.add(bundles.b)
    old, new = manifest_digest(bundles.a), entry.bundle_digest
    root = tmp_path / "board"
    root.mkdir()
    with BundleServer(store.root) as server:
        command = tmp_path / "command.json"
        # More windows than the daemon lives through: it never proves itself.
        trial = install_command(entry, "pi-cut", server.url, rollout_id="rdie", measure_windows=10)
        command.write_bytes(trial.to_json())
        subprocess.run(
            [
                sys.executable,
                "-c",
                AGENT,
                "current-linked",
                str(root),
                str(command),
                str(bundles.fleet_pub),
                str(bundles.a),
            ],
            capture_output=True,
            timeout=120,
        )
    args = [
        EDGEKIT,
        "daemon",
        str(bundles.a),
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--device-id",
        "pi-cut",
        "--deploy-dir",
        str(root / "deploy"),
        "--outbox",
        str(root / "outbox.sqlite"),
        "--trust-key",
        str(bundles.fleet_pub),
        "--window",
        "5",
        "--flush-timeout",
        "0",
    ]
    for start in range(MAX_TRIAL_STARTS):
        daemon = subprocess.Popen(
            [*args, "--interval", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(
            lambda n=start: len(_outbox(root / "outbox.sqlite")[1]) > n,
            timeout_s=60,
            what="a window on the bundle on trial",
        )
        daemon.kill()
        daemon.wait(10)
    assert _outbox(root / "outbox.sqlite")[1] == [new] * MAX_TRIAL_STARTS
    last = subprocess.run(
        [*args, "--reports", "1", "--interval", "0.1"], capture_output=True, text=True, timeout=120
    )
    assert last.returncode == 0, last.stderr
    assert "rolled_back" in last.stderr
    assert f"stopped {MAX_TRIAL_STARTS} times while starting on it" in last.stderr
    events, reports = _outbox(root / "outbox.sqlite")
    assert reports[-1] == old
    assert events[-1] == "rolled_back"
    assert (root / "deploy" / "current").resolve().name == old
