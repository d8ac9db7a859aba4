"""The board's memory figure is the process's own, not what it inherited from its parent."""

from __future__ import annotations

import json
import subprocess
import sys

from edgekit_testing import EDGEKIT

# A parent that holds 1 GiB of touched memory, then starts the command given on its argv.
_PARENT = """
import subprocess, sys
import numpy as np
held = np.ones(2**27)  # 1 GiB, every page written
assert held.sum() > 0
out = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=True).stdout
print(out)
"""


def _rss_of_run(bundle, *, parent: bool) -> float:
    command = [EDGEKIT, "run", str(bundle), "--json", "--runs", "20"]
    if parent:
        command = [sys.executable, "-c", _PARENT, *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return float(json.loads(result.stdout)["peak_rss_mb"])


def test_a_run_started_by_a_1_gib_parent_reports_its_own_rss(rpi4_build):
    _, bundle = rpi4_build
    alone = _rss_of_run(bundle, parent=False)
    child = _rss_of_run(bundle, parent=True)
    # ru_maxrss would say > 1024 MiB here: exec keeps the parent's high-water mark.
    assert child < 512, child
    assert abs(child - alone) < 0.25 * alone, (child, alone)


def test_a_daemon_started_by_a_1_gib_parent_reports_its_own_rss(rpi4_build, mqtt_broker, tmp_path):
    """The daemon's report over MQTT, as `edgekit demo` starts its boards: from a parent that
    holds 1 GiB."""
    from fixtures_mqtt import Subscriber

    from edgekit.schema import parse_report

    _, bundle = rpi4_build
    subscriber = Subscriber(mqtt_broker, "edgekit/v1/rss-board/report")
    command = [sys.executable, "-c", _PARENT, EDGEKIT, "daemon", str(bundle), "--broker",
               mqtt_broker.url, "--device-id", "rss-board", "--outbox", str(tmp_path / "outbox"),
               "--window", "20", "--interval", "0.1", "--reports", "1"]  # fmt: skip
    subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    report = parse_report(subscriber.next(30).payload)
    alone = _rss_of_run(bundle, parent=False)
    assert report.peak_rss_mb < 512, report.peak_rss_mb
    # The daemon holds paho and its outbox beside what `run` holds: close, not equal.
    assert abs(report.peak_rss_mb - alone) < 0.5 * alone, (report.peak_rss_mb, alone)
