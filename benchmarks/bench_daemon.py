"""The daemon's cost on the device: inference latency while it reports vs edgekit run alone.

    python benchmarks/bench_daemon.py BUNDLE [--broker mqtt://127.0.0.1:1883] [--windows 10]

Same bundle, backend, threads (1) and runs per window on both sides. The daemon's figure is the
median of its windows' p50 (what it reports over MQTT to a real broker); edgekit run's is the
median p50 of as many separate runs. Also the daemon's peak RSS beside edgekit run's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--backend", default="litert")
    args = parser.parse_args()
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edgekit.mqtt import BrokerAddress

    address = BrokerAddress.parse(args.broker)  # the daemon's own parser: same URLs accepted
    device = "bench-daemon"
    received: list[dict] = []
    done = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)

    def on_message(_c, _u, message) -> None:
        received.append(json.loads(message.payload))
        if len(received) >= args.windows:
            done.set()

    client.on_message = on_message
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    client.connect(address.host, address.port)
    client.subscribe(f"edgekit/v1/{device}/report", qos=1)
    client.loop_start()
    with tempfile.TemporaryDirectory() as tmp:
        daemon = subprocess.run(
            ["edgekit", "daemon", str(args.bundle), "--broker", args.broker, "--device-id", device,
             "--backend", args.backend, "--threads", "1", "--window", str(args.runs),
             "--interval", "0", "--reports", str(args.windows), "--outbox",
             str(Path(tmp) / "outbox")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    done.wait(30)
    client.loop_stop()
    alone = []
    for _ in range(args.windows):
        out = subprocess.run(
            ["edgekit", "run", str(args.bundle), "--backend", args.backend, "--threads", "1",
             "--runs", str(args.runs), "--json", "-q"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        alone.append(json.loads(out.stdout))
    d_p50 = statistics.median(r["latency"]["p50_ms"] for r in received)
    a_p50 = statistics.median(r["latency"]["p50_ms"] for r in alone)
    d_rss = max(r["peak_rss_mb"] for r in received)
    a_rss = statistics.median(r["peak_rss_mb"] for r in alone)
    print(f"# daemon cost\nmachine: {machine()}\nbundle: {received[0]['bundle_id']}, "
          f"{args.backend}, 1 thread, {args.runs} runs per window, {args.windows} windows, "
          f"broker {address}\n")  # fmt: skip
    print("| | p50 (ms), median over windows | peak RSS (MiB) | reports delivered |")
    print("|---|---|---|---|")
    print(f"| edgekit daemon (reporting over MQTT) | {d_p50:.4f} | {d_rss:.1f} | "
          f"{len(received)} of {args.windows} |")  # fmt: skip
    print(f"| edgekit run alone | {a_p50:.4f} | {a_rss:.1f} | - |")
    print(f"| ratio daemon / run | {d_p50 / a_p50:.3f} | {d_rss / a_rss:.2f} | |")
    if daemon.returncode:
        print(daemon.stderr, file=sys.stderr)


if __name__ == "__main__":
    main()
