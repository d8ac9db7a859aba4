"""Collector ingest through a real Mosquitto: edgekit's collector beside a bare paho subscriber.

Three measurements, each against a Mosquitto of its own on a free port on 127.0.0.1:

1. backlog: N reports wait in the broker for the subscriber's persistent session, then the
   subscriber connects and takes them all. This is the subscriber's own capacity, with no
   publisher competing for the CPU. The bare paho subscriber acknowledges each message as soon
   as its callback returns and stores nothing; edgekit's collector validates every payload,
   commits it to SQLite, and acknowledges only after the commit.
2. live: the subscriber runs while publisher processes publish N reports as fast as they can;
   the rate is N over the time from the first publish to the last message handled.
3. fleet: D simulated devices (one MQTT connection each, spread over P processes, each process
   driving its connections from one selector loop) publish a retained "online" status, then one
   report every I seconds for S seconds, then "offline"; one collector stores them. Lost =
   reports the broker acknowledged to a device (PUBACK) but that are not in the database.

    .venv/bin/python benchmarks/bench_collector.py               # all three, default sizes
    .venv/bin/python benchmarks/bench_collector.py --only fleet --devices 1000 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import selectors
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The report factory and the Mosquitto launcher the tests use.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import paho.mqtt.client as mqtt
from _harness import machine
from mosquitto_launcher import MosquittoBroker
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from report_factory import make_report

from edgekit._wait import poll_until
from edgekit.collector import Collector, Store, collector_settings

PREFIX = "edgekit/v1"


# -- broker ----------------------------------------------------------------------------------


def _mosquitto(folder: Path) -> MosquittoBroker:
    """A Mosquitto of the benchmark's own; queues without limit for offline sessions."""
    options = ("max_queued_messages 0", "max_connections -1")
    return MosquittoBroker(folder, persistence=False, options=options).start()


# -- payloads --------------------------------------------------------------------------------


def _template() -> dict:
    """A report as published, to copy with a new id, device and sequence per message."""
    return json.loads(make_report("dev").to_json())


def _payload(template: dict, device: str, sequence: int) -> tuple[str, bytes]:
    data = dict(template, message_id=uuid.uuid4().hex, device_id=device, sequence=sequence)
    data["host"] = dict(template["host"], hostname=device)
    return f"{PREFIX}/{device}/report", json.dumps(data, separators=(",", ":")).encode()


# -- publishers ------------------------------------------------------------------------------


def _publisher(port: int, tag: str, count: int, devices: int, go, done) -> None:
    """Publish ``count`` reports as fast as the broker acknowledges them (a process)."""
    template = _template()
    messages = [_payload(template, f"{tag}-{i % devices:04d}", i) for i in range(count)]
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{tag}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    go.wait(60)
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(120)
    done.put((tag, sum(1 for i in infos if i.is_published())))
    client.disconnect()
    client.loop_stop()


def _publish(port: int, total: int, *, processes: int = 2, devices: int = 50) -> tuple[int, float]:
    """Publish ``total`` reports from several processes; (acknowledged, first-publish time)."""
    ctx = mp.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    share = total // processes
    procs = [
        ctx.Process(target=_publisher, args=(port, f"p{n}", share, devices, go, done))
        for n in range(processes)
    ]
    for proc in procs:
        proc.start()
    time.sleep(3.0)  # spawn, import, build payloads, connect
    started = time.monotonic()
    go.set()
    acked = sum(done.get(timeout=600)[1] for _ in procs)
    for proc in procs:
        proc.join(30)
    return acked, started


# -- subscribers -----------------------------------------------------------------------------


class BareSubscriber:
    """paho with automatic PUBACK after each callback; counts and stores nothing."""

    def __init__(self, port: int) -> None:
        self.port, self.received = port, 0
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bare-sub", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()

    def _on_message(self, _c, _u, _m) -> None:
        self.received += 1

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 1000  # the same in-flight window the collector asks for
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        self.client.subscribe(f"{PREFIX}/+/report", qos=1)
        self.client.loop_start()
        self._subscribed.wait(10)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class EdgekitSubscriber:
    """edgekit's collector writing to SQLite."""

    def __init__(self, port: int, db: Path, *, batch_size: int) -> None:
        self.store = Store(f"sqlite:///{db}")
        settings = collector_settings(
            f"mqtt://127.0.0.1:{port}", client_id="edgekit-bench", batch_size=batch_size
        )
        self.collector = Collector(settings, self.store)

    @property
    def received(self) -> int:
        return self.collector.stats.received

    def start(self) -> None:
        self.collector.start()

    def stop(self) -> None:
        self.collector.stop()


@dataclass
class Rate:
    """One measured run."""

    scenario: str
    subscriber: str
    messages: int
    seconds: float
    per_second: float
    stored: int | None
    lost: int | None


def _wait_for(sub, n: int, timeout_s: float) -> float:
    poll_until(lambda: sub.received >= n, timeout_s=timeout_s, poll_s=0.002)
    return time.monotonic()


def run_backlog(kind: str, n: int, folder: Path, *, batch_size: int) -> Rate:
    broker = _mosquitto(folder)
    try:
        sub = _subscriber(kind, broker.port, folder, batch_size=batch_size)
        sub.start()  # create the persistent session and subscription
        sub.stop()
        acked, _ = _publish(broker.port, n)
        sub = _subscriber(kind, broker.port, folder, batch_size=batch_size)
        started = time.monotonic()
        sub.start()
        ended = _wait_for(sub, acked, 600)
        received = sub.received
        sub.stop()
        return _rate("backlog", kind, acked, received, ended - started, sub)
    finally:
        broker.stop()


def run_live(kind: str, n: int, folder: Path, *, batch_size: int) -> Rate:
    broker = _mosquitto(folder)
    try:
        sub = _subscriber(kind, broker.port, folder, batch_size=batch_size)
        sub.start()
        acked, started = _publish(broker.port, n)
        ended = _wait_for(sub, acked, 600)
        received = sub.received
        sub.stop()
        return _rate("live", kind, acked, received, ended - started, sub)
    finally:
        broker.stop()


def _subscriber(kind: str, port: int, folder: Path, *, batch_size: int):
    if kind == "paho":
        return BareSubscriber(port)
    return EdgekitSubscriber(port, folder / "bench.db", batch_size=batch_size)


def _rate(scenario: str, kind: str, acked: int, received: int, seconds: float, sub) -> Rate:
    stored = lost = None
    if isinstance(sub, EdgekitSubscriber):
        stored = len(sub.store.message_ids())
        lost = acked - stored
        sub.store.close()
        for suffix in ("", "-wal", "-shm"):  # the next run starts from an empty database
            Path(str(sub.store.display_url).removeprefix("sqlite:///") + suffix).unlink(
                missing_ok=True
            )
    elif received < acked:
        lost = acked - received
    return Rate(scenario, kind, acked, round(seconds, 2), round(received / seconds), stored, lost)


def _shared_collector(port, db, index, batch_size, ready, go, stop, counter) -> None:
    """One collector of a share group, in a process of its own (a process)."""
    store = Store(f"sqlite:///{db}")
    settings = collector_settings(
        f"mqtt://127.0.0.1:{port}",
        client_id=f"edgekit-bench-{index}",
        share_group="bench",
        batch_size=batch_size,
    )
    collector = Collector(settings, store)
    collector.start()  # the persistent session and its share of the subscription
    collector.stop()
    ready.put(index)
    go.wait(600)
    collector = Collector(settings, store)
    collector.start()
    while not stop.is_set():
        counter.value = collector.stats.received
        time.sleep(0.002)
    collector.stop()
    counter.value = collector.stats.received
    store.close()


def run_backlog_shared(n: int, folder: Path, *, collectors: int, batch_size: int) -> Rate:
    """The backlog taken by several collectors in separate processes sharing one subscription."""
    broker = _mosquitto(folder)
    db = folder / "shared.db"
    ctx = mp.get_context("spawn")
    ready, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    counters = [ctx.Value("q", 0) for _ in range(collectors)]
    procs = [
        ctx.Process(
            target=_shared_collector,
            args=(broker.port, db, i, batch_size, ready, go, stop, counters[i]),
        )
        for i in range(collectors)
    ]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.get(timeout=60)
        acked, _ = _publish(broker.port, n)
        started = time.monotonic()
        go.set()
        deadline = started + 600
        while sum(c.value for c in counters) < acked and time.monotonic() < deadline:
            time.sleep(0.002)
        ended = time.monotonic()
        stop.set()
        for proc in procs:
            proc.join(60)
        with Store(f"sqlite:///{db}") as store:
            stored = len(store.message_ids())
        received = sum(c.value for c in counters)
        return Rate(
            f"backlog, {collectors} shared",
            "edgekit",
            acked,
            round(ended - started, 2),
            round(received / (ended - started)),
            stored,
            acked - stored,
        )
    finally:
        broker.stop()


# -- the fleet -------------------------------------------------------------------------------


def _devices(port: int, names: list[str], seconds: float, interval: float, go, done) -> None:
    """Many device connections in one process, driven by one selector loop (a process)."""
    template = _template()
    selector = selectors.DefaultSelector()
    clients: list[mqtt.Client] = []
    acked = [0]
    published = [0]
    for name in names:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=name,
            protocol=mqtt.MQTTv5,
            userdata=name,
        )
        client.will_set(f"{PREFIX}/{name}/status", b"offline", qos=1, retain=True)
        client.on_publish = lambda *_a: acked.__setitem__(0, acked[0] + 1)
        client.connect("127.0.0.1", port, keepalive=60)
        selector.register(client.socket(), selectors.EVENT_READ, client)
        clients.append(client)

    def pump(timeout: float) -> None:
        for key, _ in selector.select(timeout):
            key.data.loop_read()
        for client in clients:
            if client.want_write():
                client.loop_write()

    for _ in range(50):  # CONNACKs
        pump(0.01)
    for client in clients:
        client.publish(f"{PREFIX}/{client.user_data_get()}/status", b"online", qos=1, retain=True)
    go.wait(120)
    start = time.monotonic()
    # Devices start spread over one interval, as real boards would.
    due = [start + interval * i / len(clients) for i in range(len(clients))]
    sequence = [0] * len(clients)
    last_misc = start
    while (now := time.monotonic()) < start + seconds:
        for i, client in enumerate(clients):
            if now >= due[i]:
                client.publish(*_payload(template, names[i], sequence[i]), qos=1)
                published[0] += 1
                sequence[i] += 1
                due[i] += interval
        pump(0.005)
        if now - last_misc > 1.0:
            for client in clients:
                client.loop_misc()
            last_misc = now
    reports = published[0]
    for client in clients:
        client.publish(f"{PREFIX}/{client.user_data_get()}/status", b"offline", qos=1, retain=True)
    deadline = time.monotonic() + 60
    while acked[0] < reports + 2 * len(clients) and time.monotonic() < deadline:
        pump(0.01)
    for client in clients:
        client.disconnect()
    pump(0.05)
    done.put((reports, acked[0] - 2 * len(clients)))


def run_fleet(
    devices: int, processes: int, seconds: float, interval: float, folder: Path, *, batch_size: int
) -> dict:
    broker = _mosquitto(folder)
    db = folder / "fleet.db"
    sub = EdgekitSubscriber(broker.port, db, batch_size=batch_size)
    sub.start()
    try:
        ctx = mp.get_context("spawn")
        go, done = ctx.Event(), ctx.Queue()
        names = [f"dev-{i:04d}" for i in range(devices)]
        procs = [
            ctx.Process(
                target=_devices,
                args=(broker.port, names[n::processes], seconds, interval, go, done),
            )
            for n in range(processes)
        ]
        for proc in procs:
            proc.start()
        time.sleep(max(5.0, devices / 150))  # spawn and connect every device
        go.set()
        started = time.monotonic()
        results = [done.get(timeout=seconds + 180) for _ in procs]
        for proc in procs:
            proc.join(30)
        published = sum(r[0] for r in results)
        acked = sum(r[1] for r in results)
        deadline = time.monotonic() + 60
        while sub.collector.stats.stored < acked and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        time.sleep(1.0)  # the last statuses
        stats = sub.collector.stats
        stored = len(sub.store.message_ids())
        snapshot = sub.store.snapshot(rejected_limit=5)
        return {
            "devices": devices,
            "processes": processes,
            "seconds": seconds,
            "interval_s": interval,
            "published": published,
            "acked_by_broker": acked,
            "stored": stored,
            "lost": acked - stored,
            "duplicates_dropped": stats.duplicates,
            "rejected": stats.rejected,
            "status_changes": stats.status_changes,
            "devices_in_db": len(snapshot.devices),
            "offline_at_end": sum(1 for d in snapshot.devices if d.last_status == "offline"),
            "mean_rate_per_s": round(stored / elapsed),
            "batches": stats.batches,
        }
    finally:
        sub.stop()
        sub.store.close()
        broker.stop()


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("backlog", "shared", "live", "fleet"), action="append")
    parser.add_argument("--shared-collectors", type=int, default=2)
    parser.add_argument("-n", "--messages", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    scenarios = args.only or ["backlog", "shared", "live", "fleet"]
    print(f"machine: {machine()}")
    results: dict = {"machine": machine(), "rates": [], "fleet": None}
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        folder = Path(tmp)
        for scenario in ("backlog", "live"):
            if scenario not in scenarios:
                continue
            run = run_backlog if scenario == "backlog" else run_live
            for kind in ("paho", "edgekit"):
                rate = run(kind, args.messages, folder, batch_size=args.batch_size)
                results["rates"].append(asdict(rate))
                print(
                    f"{scenario:8} {kind:8} {rate.messages:>8} msgs {rate.seconds:>7.2f} s "
                    f"{rate.per_second:>8}/s  stored {rate.stored}  lost {rate.lost}",
                    flush=True,
                )
        if "shared" in scenarios:
            rate = run_backlog_shared(
                args.messages,
                folder,
                collectors=args.shared_collectors,
                batch_size=args.batch_size,
            )
            results["rates"].append(asdict(rate))
            print(
                f"{rate.scenario:8} {rate.messages:>8} msgs {rate.seconds:>7.2f} s "
                f"{rate.per_second:>8}/s  stored {rate.stored}  lost {rate.lost}",
                flush=True,
            )
        if "fleet" in scenarios:
            fleet = run_fleet(
                args.devices,
                args.processes,
                args.seconds,
                args.interval,
                folder,
                batch_size=args.batch_size,
            )
            results["fleet"] = fleet
            print("fleet   ", json.dumps(fleet), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
