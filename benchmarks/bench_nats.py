"""Collector ingest through a three-node NATS JetStream cluster into PostgreSQL, beside Mosquitto.

Two measurements, in one run on this machine:

1. backlog: N reports are published over MQTT 3.1.1 (QoS 1, several publisher processes) while
   no collector runs, then K collector processes (1, 2, 4) take them all into one PostgreSQL
   database. NATS: the boards' messages wait in the EDGEKIT stream; the collectors share its one
   durable consumer (``edgekit collect --nats --workers K`` runs the same code). Mosquitto: the
   messages wait in the collectors' persistent sessions of one ``$share`` group (``edgekit
   collect --share G --workers K``). Both sides alternate, each run on a fresh broker or cluster
   and a fresh database. Reported: the publish rate (what the broker takes with QoS 1 and
   PUBACKs), the drain rate (what the collectors store), and the CPU seconds each part used,
   from which the 17,000 reports/s estimate is made.
2. fleet: D simulated devices (one MQTT 3.1.1 connection each, spread over the three nodes, P
   processes driving them from one selector loop each) publish a retained ``online`` with a Last
   Will, one report every I seconds for S seconds, then ``offline``; two collector processes
   store them. Lost = reports NATS acknowledged (PUBACK) that are not in the database.

    .venv/bin/python benchmarks/bench_nats.py                       # both, default sizes
    .venv/bin/python benchmarks/bench_nats.py --only backlog -n 30000 --repeat 2
    .venv/bin/python benchmarks/bench_nats.py --only fleet --devices 1000 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import selectors
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import paho.mqtt.client as mqtt
import psutil
from _harness import machine
from bench_collector import _mosquitto, _payload, _template
from fixtures_collector import postgres_database
from nats_cluster import NatsCluster, server_version

from edgekit._wait import poll_until
from edgekit.collector import Collector, NatsCollectorSettings, Store, collector_settings
from edgekit.collector.nats_consumer import NatsConsumer
from edgekit.collector.nats_settings import StreamLayout, parse_servers

PREFIX = "edgekit/v1"
TARGET = 17_000  # a million boards reporting once a minute


# -- publishing (MQTT 3.1.1: NATS speaks no MQTT 5) ------------------------------------------


def _publisher(port: int, tag: str, count: int, go: Any, done: Any) -> None:
    """Publish ``count`` reports of 50 devices as fast as PUBACKs come (a process)."""
    template = _template()
    messages = [_payload(template, f"{tag}-{i % 50:02d}", i) for i in range(count)]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{tag}",
                         protocol=mqtt.MQTTv311)  # fmt: skip
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    go.wait(120)
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(300)
    done.put(sum(1 for i in infos if i.is_published()))
    client.disconnect()
    client.loop_stop()


def publish(ports: list[int], total: int, *, processes: int = 3) -> tuple[int, float]:
    """Publish ``total`` reports from ``processes`` processes, round-robin over ``ports``;
    (acknowledged, seconds from the first publish to the last PUBACK)."""
    ctx = mp.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_publisher,
            args=(ports[n % len(ports)], f"p{n}", total // processes, go, done),
        )
        for n in range(processes)
    ]
    for proc in procs:
        proc.start()
    time.sleep(4.0)  # spawn, import, build payloads, connect
    started = time.monotonic()
    go.set()
    acked = sum(done.get(timeout=900) for _ in procs)
    seconds = time.monotonic() - started
    for proc in procs:
        proc.join(30)
    return acked, seconds


# -- CPU accounting ------------------------------------------------------------------------


class Cpu:
    """CPU seconds (user + system) used by a set of processes between start() and stop()."""

    def __init__(self, pids: list[int]) -> None:
        self._procs = [psutil.Process(pid) for pid in pids]
        self._start = 0.0
        self.seconds = 0.0

    def _total(self) -> float:
        total = 0.0
        for proc in self._procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def start(self) -> Cpu:
        self._start = self._total()
        return self

    def stop(self) -> float:
        self.seconds = self._total() - self._start
        return self.seconds


def listener_pid(port: int) -> int:
    """The process listening on ``port`` of this machine."""
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN" and conn.pid:
            return int(conn.pid)
    raise RuntimeError(f"nothing listens on port {port}")


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes (shared with whatever else uses it)."""
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


# -- collectors in processes of their own ------------------------------------------------------


def _collector(kind: str, where: Any, db_url: str, index: int, ready, go, stop, counter) -> None:
    """One collector (a process): an edgekit Collector in a $share group, or a NatsConsumer."""
    store = Store(db_url)
    if kind == "mosquitto":
        settings = collector_settings(
            f"mqtt://127.0.0.1:{where}", client_id=f"bench-{index}", share_group="bench"
        )
        first = Collector(settings, store)
        first.start()  # the persistent session and its share of the subscription, then away
        first.stop()
        ready.put(os.getpid())
        go.wait(600)
        collector = Collector(settings, store)
        collector.start()
        stats, halt = (lambda: collector.stats), collector.stop
    else:
        consumer = NatsConsumer(where, store, set_up=False)
        ready.put(os.getpid())
        go.wait(600)
        flag = threading.Event()
        thread = threading.Thread(target=consumer.run, kwargs={"stop": flag}, daemon=True)
        thread.start()
        stats, halt = (lambda: consumer.stats), (lambda: (flag.set(), thread.join(30)))
    while not stop.is_set():
        counter.value = stats().received
        time.sleep(0.01)
    counter.value = stats().received
    halt()
    store.close()


@dataclass
class Run:
    """One backlog run."""

    broker: str
    collectors: int
    messages: int
    publish_s: float
    publish_per_s: int
    drain_s: float
    drain_per_s: int
    stored: int
    lost: int
    broker_cpu_s_publish: float
    broker_cpu_s_drain: float
    collector_cpu_s: float
    postgres_cpu_s: float


def backlog(kind: str, where: Any, db_url: str, collectors: int, *, broker_pids: list[int],
            publish_fn) -> Run:  # fmt: skip
    """Collectors subscribe and go away; the backlog is published; they come back for it."""
    ctx = mp.get_context("spawn")
    ready, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    counters = [ctx.Value("q", 0) for _ in range(collectors)]
    procs = [
        ctx.Process(target=_collector, args=(kind, where, db_url, i, ready, go, stop, counters[i]))
        for i in range(collectors)
    ]
    for proc in procs:
        proc.start()
    pids = [ready.get(timeout=120) for _ in procs]
    broker_cpu = Cpu(broker_pids).start()
    acked, publish_s = publish_fn()
    cpu_publish = broker_cpu.stop()
    cpus = [Cpu(broker_pids).start(), Cpu(pids).start(), Cpu(postgres_pids()).start()]
    started = time.monotonic()
    go.set()
    deadline = started + 900
    while sum(c.value for c in counters) < acked and time.monotonic() < deadline:
        time.sleep(0.005)
    drain_s = time.monotonic() - started
    cpu_broker, cpu_collectors, cpu_pg = (c.stop() for c in cpus)
    stop.set()
    for proc in procs:
        proc.join(60)
    with Store(db_url, create=False) as store:
        stored = len(store.message_ids())
    return Run(
        broker=kind,
        collectors=collectors,
        messages=acked,
        publish_s=round(publish_s, 2),
        publish_per_s=round(acked / publish_s),
        drain_s=round(drain_s, 2),
        drain_per_s=round(acked / drain_s),
        stored=stored,
        lost=acked - stored,
        broker_cpu_s_publish=round(cpu_publish, 2),
        broker_cpu_s_drain=round(cpu_broker, 2),
        collector_cpu_s=round(cpu_collectors, 2),
        postgres_cpu_s=round(cpu_pg, 2),
    )


def run_nats(collectors: int, n: int, folder: Path, db_url: str) -> Run:
    """The backlog through a fresh three-node cluster (publishers spread over the nodes)."""
    with NatsCluster(folder) as cluster:
        settings = NatsCollectorSettings(servers=parse_servers(cluster.urls), batch_size=1000)
        with Store(db_url) as store:
            NatsConsumer(settings, store).prepare()  # streams and durable before any board

        def publish_fn() -> tuple[int, float]:
            acked, seconds = publish([node.mqtt for node in cluster.nodes], n)
            _wait_sourced(cluster.urls, settings.layout, acked)
            return acked, seconds

        return backlog("nats", settings, db_url, collectors,
                       broker_pids=cluster.pids, publish_fn=publish_fn)  # fmt: skip


def _wait_sourced(urls: str, layout: StreamLayout, count: int) -> None:
    """Wait until the EDGEKIT stream holds ``count`` messages (sourcing is asynchronous)."""
    import asyncio

    import nats

    async def wait() -> None:
        nc = await nats.connect(urls.split(","))
        js = nc.jetstream()
        deadline = time.monotonic() + 120
        while (await js.stream_info(layout.stream)).state.messages < count:
            if time.monotonic() > deadline:
                raise TimeoutError("EDGEKIT did not receive every message")
            await asyncio.sleep(0.1)
        await nc.close()

    asyncio.run(wait())


def run_mosquitto(collectors: int, n: int, folder: Path, db_url: str) -> Run:
    """The backlog through a fresh Mosquitto (persistent sessions of one $share group)."""
    Store(db_url).close()  # the tables, before several collectors race to create them
    broker = _mosquitto(folder)
    try:
        return backlog("mosquitto", broker.port, db_url, collectors,
                       broker_pids=[listener_pid(broker.port)],
                       publish_fn=lambda: publish([broker.port], n))  # fmt: skip
    finally:
        broker.stop()


# -- the fleet -------------------------------------------------------------------------------


def _devices(ports: list[int], names: list[str], seconds: float, interval: float, go, done):
    """Many MQTT 3.1.1 device connections in one process, one selector loop (a process)."""
    template = _template()
    selector = selectors.DefaultSelector()
    clients: list[mqtt.Client] = []
    acked = [0]
    for i, name in enumerate(names):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                             protocol=mqtt.MQTTv311, userdata=name)  # fmt: skip
        client.will_set(f"{PREFIX}/{name}/status", b"offline", qos=1, retain=True)
        client.on_publish = lambda *_a: acked.__setitem__(0, acked[0] + 1)
        client.connect("127.0.0.1", ports[i % len(ports)], keepalive=60)
        selector.register(client.socket(), selectors.EVENT_READ, client)
        clients.append(client)

    def pump(timeout: float) -> None:
        for key, _ in selector.select(timeout):
            key.data.loop_read()
        for client in clients:
            if client.want_write():
                client.loop_write()

    for _ in range(200):  # CONNACKs: NATS stores a session per connection first
        pump(0.01)
    for client in clients:
        client.publish(f"{PREFIX}/{client.user_data_get()}/status", b"online", qos=1, retain=True)
    go.wait(300)
    start = time.monotonic()
    due = [start + interval * i / len(clients) for i in range(len(clients))]
    sequence = [0] * len(clients)
    last_misc = start
    while (now := time.monotonic()) < start + seconds:
        for i, client in enumerate(clients):
            if now >= due[i]:
                client.publish(*_payload(template, names[i], sequence[i]), qos=1)
                sequence[i] += 1
                due[i] += interval
        pump(0.005)
        if now - last_misc > 1.0:
            for client in clients:
                client.loop_misc()
            last_misc = now
    reports = sum(sequence)
    for client in clients:
        client.publish(f"{PREFIX}/{client.user_data_get()}/status", b"offline", qos=1, retain=True)
    deadline = time.monotonic() + 120
    while acked[0] < reports + 2 * len(clients) and time.monotonic() < deadline:
        pump(0.01)
    for client in clients:
        client.disconnect()
    pump(0.05)
    done.put((reports, acked[0] - 2 * len(clients)))


def run_fleet(devices: int, processes: int, seconds: float, interval: float, folder: Path,
              db_url: str, *, collectors: int = 2) -> dict:  # fmt: skip
    """The fleet through a fresh cluster into PostgreSQL, ``collectors`` processes."""
    ctx = mp.get_context("spawn")
    with NatsCluster(folder) as cluster:
        settings = NatsCollectorSettings(servers=parse_servers(cluster.urls), batch_size=1000)
        with Store(db_url) as store:
            NatsConsumer(settings, store).prepare()
        ready, go_collect, stop = ctx.Queue(), ctx.Event(), ctx.Event()
        counters = [ctx.Value("q", 0) for _ in range(collectors)]
        collecting = [
            ctx.Process(target=_collector,
                        args=("nats", settings, db_url, i, ready, go_collect, stop, counters[i]))
            for i in range(collectors)
        ]  # fmt: skip
        for proc in collecting:
            proc.start()
        for _ in collecting:
            ready.get(timeout=120)
        go_collect.set()
        go, done = ctx.Event(), ctx.Queue()
        names = [f"dev-{i:04d}" for i in range(devices)]
        ports = [node.mqtt for node in cluster.nodes]
        driving = [
            ctx.Process(target=_devices,
                        args=(ports, names[n::processes], seconds, interval, go, done))
            for n in range(processes)
        ]  # fmt: skip
        for proc in driving:
            proc.start()
        time.sleep(max(10.0, devices / 50))  # spawn and connect every device (sessions in JS)
        cpu = Cpu(cluster.pids).start()
        go.set()
        started = time.monotonic()
        results = [done.get(timeout=seconds + 300) for _ in driving]
        for proc in driving:
            proc.join(30)
        published, acked = sum(r[0] for r in results), sum(r[1] for r in results)
        with Store(db_url, create=False) as store:
            poll_until(lambda: len(store.message_ids()) >= acked, timeout_s=120, poll_s=0.2)
            elapsed = time.monotonic() - started
            time.sleep(2.0)  # the last statuses
            stored = len(store.message_ids())
            snapshot = store.snapshot(rejected_limit=5)
        broker_cpu = cpu.stop()
        stop.set()
        for proc in collecting:
            proc.join(60)
    return {
        "devices": devices,
        "device_processes": processes,
        "collectors": collectors,
        "seconds": seconds,
        "interval_s": interval,
        "published": published,
        "acked_by_nats": acked,
        "stored": stored,
        "lost": acked - stored,
        "devices_in_db": len(snapshot.devices),
        "offline_at_end": sum(1 for d in snapshot.devices if d.last_status == "offline"),
        "mean_rate_per_s": round(stored / elapsed),
        "nats_cpu_s": round(broker_cpu, 1),
    }


# -- what 17,000 reports/s would take ----------------------------------------------------------


def estimate(runs: list[Run]) -> dict:
    """Per-report CPU cost of each part (medians over the NATS runs), scaled to TARGET."""

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    nats = [r for r in runs if r.broker == "nats"]
    per = {
        "nats_intake_us": median([1e6 * r.broker_cpu_s_publish / r.messages for r in nats]),
        "nats_delivery_us": median([1e6 * r.broker_cpu_s_drain / r.messages for r in nats]),
        "collector_us": median([1e6 * r.collector_cpu_s / r.messages for r in nats]),
        "postgres_us": median([1e6 * r.postgres_cpu_s / r.messages for r in nats]),
    }
    cores = {k.removesuffix("_us") + "_cores": TARGET * v / 1e6 for k, v in per.items()}
    nats_cores = cores["nats_intake_cores"] + cores["nats_delivery_cores"]
    return {
        "target_per_s": TARGET,
        **{k: round(v, 1) for k, v in per.items()},
        **{k: round(v, 2) for k, v in cores.items()},
        "nats_cores": round(nats_cores, 2),
        # R3: each of the three nodes of a stream's group does about a third of that work.
        "nats_cores_per_node_r3": round(nats_cores / 3, 2),
        # A collector is one Python process, one core at most.
        "collector_processes": math.ceil(cores["collector_cores"]),
    }


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("backlog", "fleet"), action="append")
    parser.add_argument("-n", "--messages", type=int, default=30_000)
    parser.add_argument("--collectors", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    scenarios = args.only or ["backlog", "fleet"]
    from nats_cluster import nats_server_binary

    binary = nats_server_binary()
    version = ".".join(map(str, server_version(binary)))
    print(f"machine: {machine()}; nats-server {version}; load {os.getloadavg()}", flush=True)
    results: dict = {"machine": machine(), "nats_server": version, "runs": [], "fleet": None}
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-nats-") as tmp:
        folder = Path(tmp)
        if "backlog" in scenarios:
            for rep in range(args.repeat):
                for k in map(int, args.collectors.split(",")):
                    # Alternate which broker goes first, so drift in the machine's load
                    # does not favour one.
                    kinds = ("nats", "mosquitto") if (rep + k) % 2 else ("mosquitto", "nats")
                    for kind in kinds:
                        run = run_nats if kind == "nats" else run_mosquitto
                        with postgres_database() as db:
                            result = run(k, args.messages, folder / f"{kind}-{rep}-{k}", db)
                        runs.append(result)
                        print(json.dumps({**asdict(result), "load": os.getloadavg()[0]}),
                              flush=True)  # fmt: skip
            results["runs"] = [asdict(r) for r in runs]
            results["estimate"] = estimate(runs)
            print("estimate", json.dumps(results["estimate"]), flush=True)
        if "fleet" in scenarios:
            with postgres_database() as db:
                fleet = run_fleet(args.devices, args.processes, args.seconds, args.interval,
                                  folder / "fleet", db)  # fmt: skip
            results["fleet"] = fleet
            print("fleet", json.dumps(fleet), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
