"""What the deployment tests share: real bundles built once, real boards, a real controller.

Bundles come from the test-only dense .npz source (tests/npz_source.py): a digits MLP trained
with scikit-learn, built for x86-64 (ONNX, int8), signed with a fleet key:

    a         the MLP (seed 0)                       the fleet's starting bundle
    b         another MLP (seed 1), as fast          a good new version
    slow      ``a`` with each hidden unit repeated   the same function and accuracy, with
              256 times (weights of the second       256x the multiply-adds: slower, honestly
              layer divided to match)
    foreign   an MLP signed with another key         boards refuse it
    tampered  ``b`` with one weight changed and the  every digest matches, the signature does
              manifest's digests updated after it    not: only a board with the key sees it
              was signed

Boards are ``edgekit daemon`` processes, each with its own deploy directory, outbox and log;
the collector is edgekit's own, on a thread; the controller is ``edgekit deploy``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from edgekit_testing import EDGEKIT

from edgekit._wait import wait_until
from edgekit.bundle_store import manifest_digest

HIDDEN_REPEAT = 256
# The default gate, except that a board's p50 may be up to 3x its previous one. Twelve daemons,
# a collector and a controller share two cores in these tests: there a tiny model's p50 moved by
# up to 2x between blocks of windows on the same bundle (medians of 3 windows; 1.8x with 5).
# The slow bundle measures about 7x the others on the same boards.
TEST_GATE = "windows=5,p50-ratio=3,timeout=120"


@dataclass(frozen=True)
class DeployBundles:
    """The bundles the deployment tests roll out (see the module docstring)."""

    a: Path
    b: Path
    slow: Path
    foreign: Path
    tampered: Path
    fleet_pub: Path
    foreign_pub: Path
    fleet_key: Path

    def digest(self, bundle: Path) -> str:
        return manifest_digest(bundle)


def cached_test_bundles(cache: Path) -> DeployBundles:
    """The bundles, built once into pytest's cache folder and reused while the code that makes
    them (the converters, the bundle format, this module) is unchanged."""
    import hashlib

    from edgekit_testing import REPO

    digest = hashlib.sha256()
    sources = [
        *sorted((REPO / "converters").glob("*.py")),
        REPO / "edgekit" / "manifest.py",
        REPO / "edgekit" / "bundle.py",
        REPO / "edgekit" / "signing.py",
        REPO / "tests" / "npz_source.py",
        Path(__file__),
    ]
    for source in sources:
        digest.update(source.read_bytes())
    root = cache / f"bundles-{digest.hexdigest()[:16]}"
    if not (root / "built").is_file():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        build_test_bundles(root)
        (root / "built").write_text("ok\n")
    return _bundles_in(root)


def _bundles_in(root: Path) -> DeployBundles:
    keys = root / "keys"
    return DeployBundles(
        root / "a",
        root / "b",
        root / "slow",
        root / "foreign",
        root / "tampered",
        keys / "fleet.pub",
        keys / "foreign.pub",
        keys / "fleet.key",
    )


def build_test_bundles(root: Path) -> DeployBundles:
    """Build the bundles into ``root`` (a few seconds each: no TensorFlow involved)."""
    from npz_source import NpzDenseSource
    from sklearn.neural_network import MLPClassifier

    from edgekit.converters import source_registry
    from edgekit.converters.examples import digits
    from edgekit.converters.pipeline import BuildRequest, build
    from edgekit.profiles import load_profile
    from edgekit.signing import generate_keypair

    split = digits()
    x_train = split.x_train.reshape(len(split.x_train), -1).astype(np.float32)
    x_test = split.x_test.reshape(len(split.x_test), -1).astype(np.float32)
    np.savez(root / "calib.npz", x=x_train[:300])
    np.savez(root / "eval.npz", x=x_test, y=split.y_test)
    weights = {}
    for seed in (0, 1, 2):
        mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=400, random_state=seed)
        mlp.fit(x_train, split.y_train)
        (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
        weights[seed] = (w1, b1, w2, b2)
        np.savez(root / f"mlp{seed}.npz", w1=w1, b1=b1, w2=w2, b2=b2)
    w1, b1, w2, b2 = weights[0]
    k = HIDDEN_REPEAT
    np.savez(
        root / "wide.npz",
        w1=np.tile(w1, (1, k)),
        b1=np.tile(b1, k),
        w2=np.tile(w2 / k, (k, 1)),
        b2=b2,
    )
    fleet_key, _ = generate_keypair(root / "keys" / "fleet")
    foreign_key, _ = generate_keypair(root / "keys" / "foreign")
    source_registry.register(NpzDenseSource)
    try:
        for name, model, key in (
            ("a", "mlp0", fleet_key),
            ("b", "mlp1", fleet_key),
            ("slow", "wide", fleet_key),
            ("foreign", "mlp2", foreign_key),
        ):
            report = build(
                BuildRequest(
                    model=root / f"{model}.npz",
                    profile=load_profile("x86-64"),
                    out_dir=root / name,
                    calibration=root / "calib.npz",
                    eval_data=root / "eval.npz",
                    latency_runs=0,
                    sign_key=key,
                )
            )
            assert report.status == "ok", (name, report.status)
    finally:
        source_registry.unregister(NpzDenseSource)
    _tamper(root / "b", root / "tampered")
    return _bundles_in(root)


def _tamper(bundle: Path, out: Path) -> Path:
    """A copy of ``bundle`` with one weight of its model changed and the manifest's digest of the
    file updated to match; the signature is left as it was."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    shutil.copytree(bundle, out)
    model = onnx.load(out / "model.onnx")
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.INT8 and init.dims:
            values = numpy_helper.to_array(init).copy()
            values.flat[0] = np.int8(127 if values.flat[0] != 127 else -127)
            init.CopyFrom(numpy_helper.from_array(values, init.name))
            break
    onnx.save(model, out / "model.onnx")
    manifest = json.loads((out / "manifest.json").read_text())
    data = (out / "model.onnx").read_bytes()
    manifest["files"]["model.onnx"] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


# -- boards --------------------------------------------------------------------------------


@dataclass
class Board:
    """One simulated board: an ``edgekit daemon`` process with its own directories."""

    device_id: str
    root: Path
    bundle: Path
    broker: str
    trust_key: Path | None
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def deploy_dir(self) -> Path:
        return self.root / "deploy"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox.sqlite"

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"

    def start(self) -> Board:
        self.root.mkdir(parents=True, exist_ok=True)
        trust = ["--trust-key", str(self.trust_key)] if self.trust_key else []
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    EDGEKIT,
                    "daemon",
                    str(self.bundle),
                    "--broker",
                    self.broker,
                    "--device-id",
                    self.device_id,
                    "--deploy-dir",
                    str(self.deploy_dir),
                    "--outbox",
                    str(self.outbox),
                    "--interval",
                    "0.5",
                    "--window",
                    "20",
                    "--warmup",
                    "3",
                    "--threads",
                    "1",
                    "--flush-timeout",
                    "3",
                    *trust,
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self, *, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        code, self.process = self.process.returncode, None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def running_digest(self) -> str | None:
        link = self.deploy_dir / "current"
        return Path(link.readlink()).name if link.is_symlink() else None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def boards_running(boards: list[Board]) -> Iterator[list[Board]]:
    """Start every board; stop them all at the end (their logs are kept)."""
    try:
        for board in boards:
            board.start()
        yield boards
    finally:
        for board in boards:
            board.stop()


# -- the collector and the controller ------------------------------------------------------


@contextmanager
def collector_running(broker_url: str, db_url: str, **options) -> Iterator[None]:
    """edgekit's collector storing into ``db_url``, on a thread, for the duration."""
    from edgekit.collector import Collector, Store, collector_settings

    store = Store(db_url)
    settings = collector_settings(
        broker_url, client_id=f"edgekit-test-{time.monotonic_ns()}", **options
    )
    stop = threading.Event()
    with Collector(settings, store) as running:
        thread = threading.Thread(target=running.run, kwargs={"stop": stop}, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(15)
    store.close()


def reports_by(db_url: str, device_id: str, digest: str) -> int:
    """Reports the collector stored from ``device_id`` running ``digest``."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM reports WHERE device_id = :d AND bundle_digest = :b"
                    ),
                    {"d": device_id, "b": digest},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def wait_for_reports(
    db_url: str, boards: list[Board], digest: str, *, at_least: int, timeout_s: float
) -> None:
    """Until every board has ``at_least`` reports from ``digest`` in the database."""
    wait_until(
        lambda: all(reports_by(db_url, b.device_id, digest) >= at_least for b in boards),
        timeout_s=timeout_s,
        what=f"{at_least} report(s) from {digest[:12]} of every board",
    )


def deploy(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``edgekit deploy ...`` to its end."""
    return subprocess.run(
        [EDGEKIT, "deploy", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def start_deploy(*args: str | Path, log: Path) -> subprocess.Popen[bytes]:
    """``edgekit deploy ...`` in the background, its output into ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [EDGEKIT, "deploy", *map(str, args)], stdout=out, stderr=subprocess.STDOUT
        )


def python() -> str:
    """The interpreter running the tests (the daemon's)."""
    return sys.executable


# -- commands by hand (the board's side, without a controller) -----------------------------


def install_command(entry, device_id: str, base_url: str, *, rollout_id: str, **changes):
    """The install command a controller would send for a store entry."""
    from edgekit.deploy_wire import DeployCommand
    from edgekit.schema import utc_now

    fields = dict(
        rollout_id=rollout_id,
        device_id=device_id,
        bundle_digest=entry.bundle_digest,
        bundle_id=entry.bundle_id,
        url=entry.url(base_url),
        archive_sha256=entry.archive_sha256,
        archive_size=entry.archive_size,
        measure_windows=2,
        issued_at=utc_now(),
    )
    return DeployCommand(**{**fields, **changes})


def publish_retained(host: str, port: int, topic: str, payload: bytes) -> None:
    """Publish once, retained, QoS 1, and wait for the PUBACK."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{time.monotonic_ns()}")
    client.connect(host, port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def phases(messages) -> list[str]:
    """The phases of the deployment events among subscriber messages, in order."""
    from edgekit.deploy_wire import parse_event

    return [parse_event(m.payload).phase.value for m in messages]
