"""The board's daemon against a real Mosquitto: reports arrive, outages and crashes lose none."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from edgekit_testing import EDGEKIT, assert_one_clear_error, assert_one_error_line, run_edgekit
from fixtures_mqtt import Subscriber
from live_sqlite import scalar

from edgekit._net import free_port
from edgekit._wait import poll_until
from edgekit.eval_sample import read_inputs
from edgekit.schema import STATUS_OFFLINE, STATUS_ONLINE, parse_report

_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test():
    """A test that fails half-way must not leave its daemon running (they run until stopped)."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _daemon(bundle: Path, url: str, outbox: Path, *args: str, device: str = "pi-01"):
    process = subprocess.Popen(
        [EDGEKIT, "daemon", str(bundle), "--broker", url, "--device-id", device,
         "--outbox", str(outbox), "--window", "20", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _STARTED.append(process)
    return process


def _finish(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def _pending(outbox: Path) -> int:
    # Read while the daemon may be writing it (or creating it): see live_sqlite.
    return int(scalar(outbox, "SELECT count(*) FROM outbox"))


def _reports(subscriber: Subscriber, count: int, timeout: float) -> dict[str, object]:
    """Unique reports by message id (delivery is at least once: repeats are allowed)."""
    unique: dict[str, object] = {}
    deadline = time.monotonic() + timeout
    while len(unique) < count:
        message = subscriber.next(max(0.1, deadline - time.monotonic()))
        report = parse_report(message.payload)
        unique[report.message_id] = report
    return unique


@pytest.fixture
def bundle(jetson_build) -> Path:
    return jetson_build[1]


def test_n_reports_arrive_schema_valid(bundle, mqtt_broker, tmp_path):
    subscriber = Subscriber(mqtt_broker, "edgekit/v1/pi-01/report")
    outbox = tmp_path / "outbox.sqlite"
    code, err = _finish(_daemon(bundle, mqtt_broker.url, outbox, "--interval", "0.2",
                                "--reports", "5"))  # fmt: skip
    assert code == 0, err
    reports = list(_reports(subscriber, 5, timeout=20).values())
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert [r.sequence for r in reports] == [0, 1, 2, 3, 4]
    for r in reports:
        assert r.device_id == "pi-01"
        assert r.bundle_digest == digest
        assert r.latency.count == 20
        assert r.accuracy is not None
    assert reports[0].latency.init_ms is not None  # the first window includes the load
    assert _pending(outbox) == 0
    subscriber.close()


def test_status_goes_offline_when_the_daemon_is_killed(bundle, mqtt_broker, tmp_path):
    status = Subscriber(mqtt_broker, "edgekit/v1/pi-01/status")
    process = _daemon(bundle, mqtt_broker.url, tmp_path / "outbox", "--interval", "0.5")
    status.wait_for_payload(STATUS_ONLINE, timeout=20)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    status.wait_for_payload(STATUS_OFFLINE, timeout=20)  # the Last Will
    status.close()
    late = Subscriber(mqtt_broker, "edgekit/v1/pi-01/status")
    message = late.next(timeout=5)
    assert (message.payload, message.retain) == (STATUS_OFFLINE, True)
    late.close()


def test_sigterm_flushes_and_goes_offline(bundle, mqtt_broker, tmp_path):
    status = Subscriber(mqtt_broker, "edgekit/v1/pi-01/status")
    reports = Subscriber(mqtt_broker, "edgekit/v1/pi-01/report")
    process = _daemon(bundle, mqtt_broker.url, tmp_path / "outbox", "--interval", "0.3")
    status.wait_for_payload(STATUS_ONLINE, timeout=20)
    reports.next(timeout=20)
    process.send_signal(signal.SIGTERM)
    code, err = _finish(process)
    assert code == 0, err
    assert "SIGTERM" in err
    status.wait_for_payload(STATUS_OFFLINE, timeout=10)
    assert _pending(tmp_path / "outbox") == 0
    status.close()
    reports.close()


def test_broker_outage_loses_no_report(bundle, mqtt_broker, tmp_path):
    subscriber = Subscriber(mqtt_broker, "edgekit/v1/pi-01/report", persistent=True)
    outbox = tmp_path / "outbox.sqlite"
    process = _daemon(bundle, mqtt_broker.url, outbox, "--interval", "0.4", "--reports", "12")
    first = _reports(subscriber, 2, timeout=20)
    mqtt_broker.stop()
    time.sleep(2.5)  # the daemon keeps measuring; reports wait in its outbox
    assert _pending(outbox) >= 2
    mqtt_broker.start()
    code, err = _finish(process, timeout=90)
    assert code == 0, err
    rest = _reports(subscriber, 12 - len(first), timeout=30)
    everything = first | rest
    assert sorted(r.sequence for r in everything.values()) == list(range(12))
    assert _pending(outbox) == 0
    subscriber.close()


def test_sigkill_and_restart_loses_nothing_from_the_outbox(bundle, mqtt_broker, tmp_path):
    """Broker away: reports pile up in the outbox; the daemon dies by SIGKILL; a restarted
    daemon with the broker back delivers every one of them."""
    outbox = tmp_path / "outbox.sqlite"
    mqtt_broker.stop()
    process = _daemon(bundle, mqtt_broker.url, outbox, "--interval", "0.2")
    poll_until(lambda: outbox.exists() and _pending(outbox) >= 4, timeout_s=30, poll_s=0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    buffered = _pending(outbox)
    assert buffered >= 4
    mqtt_broker.start()
    subscriber = Subscriber(mqtt_broker, "edgekit/v1/pi-01/report")
    code, err = _finish(_daemon(bundle, mqtt_broker.url, outbox, "--interval", "0.2",
                                "--reports", "1"))  # fmt: skip
    assert code == 0, err
    assert f"{buffered} report(s) from an earlier run" in err
    reports = _reports(subscriber, buffered + 1, timeout=30)
    assert len(reports) == buffered + 1
    assert _pending(outbox) == 0
    subscriber.close()


def test_unreachable_broker_buffers_says_so_once_and_does_not_spin(bundle, tmp_path):
    outbox = tmp_path / "outbox.sqlite"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    nowhere = f"mqtt://127.0.0.1:{free_port()}"
    code, err = _finish(_daemon(bundle, nowhere, outbox, "--interval", "0.5", "--reports", "6",
                                "--window", "5", "--flush-timeout", "1"))  # fmt: skip
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert code == 0, err
    assert err.count("broker unreachable") == 1, err
    assert "Connection refused" in err
    assert _pending(outbox) == 6
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ~2.5 s of waiting between windows: a reconnect loop spinning would burn it all as CPU
    assert cpu < 0.6 * wall, (cpu, wall)


def test_malformed_url_and_bad_credentials(bundle, mqtt_broker_with_password, tmp_path):
    result = run_edgekit("daemon", bundle, "--broker", "http://broker:1883", "--outbox",
                         tmp_path / "o1", "--reports", "1")  # fmt: skip
    assert_one_error_line(result, "setting 'broker' from --broker", "must start with mqtt://")
    url = mqtt_broker_with_password.url.replace("mqtt://", "mqtt://device:wrong@")
    result = run_edgekit("daemon", bundle, "--broker", url, "--outbox", tmp_path / "o2",
                         "--reports", "1")  # fmt: skip
    assert_one_error_line(result, "bad username or password")


def test_config_file_and_environment_with_flags_winning(bundle, mqtt_broker, tmp_path):
    config = tmp_path / "daemon.toml"
    config.write_text(
        f'bundle = "{bundle}"\nbroker = "{mqtt_broker.url}"\ndevice_id = "from-file"\n'
        f'interval = 0.2\nreports = 9\nwindow = 5\noutbox = "{tmp_path / "outbox"}"\n'
    )
    subscriber = Subscriber(mqtt_broker, "edgekit/v1/from-env/report")
    env = {**os.environ, "EDGEKIT_DEVICE_ID": "from-env"}
    result = subprocess.run([EDGEKIT, "daemon", "--config", str(config), "--reports", "2"],
                            capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    reports = _reports(subscriber, 2, timeout=10)  # env beat the file, the flag beat the file
    assert all(r.device_id == "from-env" and r.latency.count == 5 for r in reports.values())
    with pytest.raises(TimeoutError):
        subscriber.next(timeout=1.0)
    subscriber.close()
    config.write_text('brokr = "mqtt://x"\n')
    bad = subprocess.run([EDGEKIT, "daemon", str(bundle), "--config", str(config)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert_one_clear_error(bad, f"config file {config}: unknown key 'brokr'")
    config.write_text(f'broker = "{mqtt_broker.url}"\nwarmup = 3\n')
    env = {**os.environ, "EDGEKIT_CONFIG": str(config), "EDGEKIT_OUTBOX_MAX_MB": "none"}
    bad = subprocess.run([EDGEKIT, "daemon", str(bundle)], capture_output=True, text=True,
                         env=env, timeout=60)  # fmt: skip
    assert_one_clear_error(bad, "setting 'outbox_max_mb' from EDGEKIT_OUTBOX_MAX_MB")


def test_watched_folder_inputs_are_run_and_counted(bundle, mqtt_broker, tmp_path):
    watch, results = tmp_path / "in", tmp_path / "out"
    watch.mkdir()
    (x,) = read_inputs(bundle / "eval_sample.npz")
    for i in range(3):
        np.save(watch / f"frame{i}.npy", x[i])
    os.utime(watch, None)
    past = time.time() - 5
    for file in watch.iterdir():
        os.utime(file, (past, past))
    subscriber = Subscriber(mqtt_broker, "edgekit/v1/pi-01/report")
    code, err = _finish(_daemon(bundle, mqtt_broker.url, tmp_path / "outbox", "--interval", "0.3",
                                "--reports", "2", "--watch", str(watch), "--watch-out",
                                str(results)))  # fmt: skip
    assert code == 0, err
    reports = _reports(subscriber, 2, timeout=10)
    assert sum(r.workload_inputs for r in reports.values()) == 3
    from edgekit.runtime.session import DeviceSession

    session = DeviceSession.open(bundle)
    for i in range(3):
        record = json.loads((results / f"frame{i}.npy.result.json").read_text())
        assert record["top1"] == [int(session.predict(x[i : i + 1]).argmax())]
        assert record["latency_ms"] > 0
    subscriber.close()
