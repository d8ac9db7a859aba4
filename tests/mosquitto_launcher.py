"""The one Mosquitto launcher of the tests and the benchmarks, and the certificates it can use.

Plain module (no pytest, no paho): the benchmarks import it with ``tests/`` on their path. Each
broker runs on its own port with a config written into its folder; stop() and start() keep port
and data, so a test can restart it. Logs go to ``<folder>/mosquitto.log``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgekit._net import LOCALHOST, free_port, wait_for_port

HOST = LOCALHOST


def mosquitto_binary() -> str:
    """Where mosquitto is; RuntimeError if it is not installed."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise RuntimeError("mosquitto is not installed (bash .ci/setup installs it)")
    return binary


@dataclass
class Credentials:
    """A user the broker's password file knows."""

    username: str
    password: str


@dataclass(frozen=True)
class Pki:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=30
    )


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (EC P-256, valid two days): (certificate, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    return cert, key


def _issue(folder: Path, ca: tuple[Path, Path], name: str, extensions: str) -> tuple[Path, Path]:
    cert, key, csr = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    ext.write_text(extensions + "\n")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext,
        cwd=folder,
    )  # fmt: skip
    return cert, key


def make_pki(folder: Path) -> Pki:
    """Certificates for a TLS broker on 127.0.0.1 that also wants a client certificate."""
    ca = make_ca(folder, "test-ca")
    server = _issue(
        folder, ca, "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    )
    client = _issue(folder, ca, "device", "extendedKeyUsage=clientAuth")
    return Pki(ca[0], server[0], server[1], client[0], client[1])


def run_as_me() -> str:
    """The config line that keeps mosquitto started as root from switching to the 'mosquitto'
    user, who could not read the test's files; empty for anyone else."""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name}" if os.geteuid() == 0 else ""


class MosquittoBroker:
    """One mosquitto process with its own config in ``folder``.

    Anonymous unless ``credentials`` are given; TLS only (with a client certificate required)
    when ``tls`` is; persistent (saved on a clean stop, so retained messages and sessions survive
    a restart) unless ``persistence=False``. ``options`` are further config lines; ``config``
    replaces the generated config altogether (it must listen on ``port``).
    """

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        credentials: Credentials | None = None,
        tls: Pki | None = None,
        persistence: bool = True,
        options: Sequence[str] = (),
        config: str | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.credentials = credentials
        self.tls = tls
        self.folder = folder
        self.log = folder / "mosquitto.log"
        self.conf = folder / "mosquitto.conf"
        self.password_file = folder / "passwords"
        self._process: subprocess.Popen[bytes] | None = None
        if credentials is not None:
            self.set_password(credentials)
        text = config if config is not None else self._config(persistence, options)
        self.conf.write_text(text)

    def _config(self, persistence: bool, options: Sequence[str]) -> str:
        lines = [
            f"listener {self.port} {HOST}",
            f"persistence true\npersistence_location {self.folder}/"
            if persistence
            else "persistence false",
            # To stderr, which goes to a file we opened: mosquitto may drop root privileges and
            # then could not open a file in the test's folder itself.
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            run_as_me(),
        ]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
            ]
        if self.credentials is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        return "\n".join([*lines, *options]) + "\n"

    def set_password(self, credentials: Credentials) -> None:
        """Make the password file hold only this user; a running broker reads it on restart."""
        subprocess.run(
            ["mosquitto_passwd", "-b", "-c", str(self.password_file),
             credentials.username, credentials.password],
            check=True, capture_output=True, timeout=10,
        )  # fmt: skip

    @property
    def url(self) -> str:
        """mqtt://host:port (mqtts:// with TLS), without credentials."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is up."""
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout: float = 10.0) -> MosquittoBroker:
        """Start mosquitto and wait until its port accepts connections."""
        if self.running:
            raise RuntimeError("mosquitto is already running")
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [mosquitto_binary(), "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(self.port, timeout_s=timeout, process=self._process)
        except (RuntimeError, TimeoutError) as exc:
            self.kill()
            raise RuntimeError(f"mosquitto did not start ({exc}):\n{self.log.read_text()}") from exc
        return self

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop mosquitto cleanly (SIGTERM: it saves its persistence file) and wait for it."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        self._process = None

    def kill(self) -> None:
        """SIGKILL mosquitto (teardown and failure paths)."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(10)
            self._process = None

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
