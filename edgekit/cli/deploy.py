"""``edgekit deploy``, ``rollback`` and ``serve-bundles``: rolling bundles out.

    edgekit serve-bundles store/ --port 8080
    edgekit deploy bundle/ --devices 'rpi4-*' --store store/ --store-url http://host:8080 \
        --db sqlite:///fleet.db --broker mqtt://broker
    edgekit rollouts --db sqlite:///fleet.db      (edgekit.cli.rollouts)
    edgekit rollback r1a2b3c4 --db sqlite:///fleet.db --broker mqtt://broker

A thin shell around :mod:`edgekit.rollout`: options (flags, else ``EDGEKIT_*`` variables), the
signals, the messages. ``deploy`` exits 0 when the rollout succeeded, 1 when it was rolled back
or failed (its reason printed), 2 for bad input.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgekit._env import env_var
from edgekit.cli import _mqtt_options as mqtt_options
from edgekit.cli._output import err_console
from edgekit.errors import DeployError

if TYPE_CHECKING:
    from edgekit.mqtt import BrokerSettings

Db = Annotated[
    str,
    typer.Option(
        envvar="EDGEKIT_DB", help="The collector's database URL (where rollouts are kept)."
    ),
]
LeaseTtl = Annotated[
    float,
    typer.Option(min=2.0, help="Seconds a controller's lease lasts unless it renews it."),
]


def _say(message: str) -> None:
    err_console().print(message, markup=False, highlight=False, soft_wrap=True)


def _broker(
    url: str | None,
    rollout_id: str,
    *,
    ca_file: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    mqtt: str | None,
    prefix: str | None,
) -> BrokerSettings:
    from edgekit.mqtt import TlsFiles
    from edgekit.rollout.messenger import controller_settings
    from edgekit.schema import DEFAULT_PREFIX
    from edgekit.vocab import MqttVersion

    environ = mqtt_options.environment()

    def pick(value: str | Path | None, name: str) -> str | None:
        return str(value) if value is not None else mqtt_options.from_env(environ, name)

    broker = pick(url, "broker")
    if broker is None:
        raise DeployError(f"no broker: pass --broker or set {env_var('broker')}")
    files = (pick(ca_file, "ca_file"), pick(certfile, "certfile"), pick(keyfile, "keyfile"))
    version = pick(mqtt, "mqtt") or MqttVersion.V5.value
    try:
        mqtt_version = MqttVersion(version)
    except ValueError:
        raise DeployError(f"--mqtt {version!r} is not 5 or 3.1.1") from None
    return controller_settings(
        broker,
        rollout_id,
        tls_files=TlsFiles(*(Path(f) if f else None for f in files)),
        mqtt_version=mqtt_version,
        prefix=pick(prefix, "prefix") or DEFAULT_PREFIX,
    )


def deploy(
    bundle: Annotated[
        Path | None,
        typer.Argument(
            help="Bundle folder or .tar.gz to roll out (not with --resume).", show_default=False
        ),
    ] = None,
    devices: Annotated[
        str | None, typer.Option(help="Boards whose device id matches this glob.")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Boards whose reports name this profile.")
    ] = None,
    canary: Annotated[
        str, typer.Option(help="Share of the boards in the first wave, alone (0% for none).")
    ] = "10%",
    waves: Annotated[
        str, typer.Option(help="Cumulative shares of the boards after the canary, ending at 100%.")
    ] = "25%,50%,100%",
    gate: Annotated[
        str | None,
        typer.Option(
            help="The gate: windows=3,p50-ratio=1.5,accuracy-drop=PT,failures=0,"
            "timeout=600 (any of them; accuracy-drop defaults to the profile's budget)."
        ),
    ] = None,
    db: Db = "sqlite:///edgekit.db",
    broker: mqtt_options.Broker = None,
    store: Annotated[
        Path | None,
        typer.Option(help="Bundle store folder to add the bundle to (the one --store-url serves)."),
    ] = None,
    store_url: Annotated[
        str | None,
        typer.Option(
            envvar="EDGEKIT_STORE_URL",
            help="Base URL boards fetch bundles from (edgekit serve-bundles DIR).",
        ),
    ] = None,
    store_ca_file: Annotated[
        Path | None,
        typer.Option(help="CA of an https:// bundle store [default: system CAs]."),
    ] = None,
    trust_key: Annotated[
        Path | None,
        typer.Option(help="Refuse a bundle not signed by this key before sending anything."),
    ] = None,
    require_signature: Annotated[
        bool,
        typer.Option(
            "--require-signature",
            help="Boards refuse the bundle without a trusted key (always so for a signed bundle).",
        ),
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(help="Continue this rollout from the database (after a controller stopped)."),
    ] = None,
    lease_ttl: LeaseTtl = 15.0,
    ca_file: mqtt_options.CaFile = None,
    certfile: mqtt_options.Certfile = None,
    keyfile: mqtt_options.Keyfile = None,
    mqtt: mqtt_options.Mqtt = None,
    prefix: mqtt_options.Prefix = None,
) -> None:
    """Roll BUNDLE out to boards in waves (a canary first), each gated on what the boards
    measure on it against their previous bundle; a failed gate sends them back."""
    from edgekit.rollout.controller import RolloutController
    from edgekit.rollout.create import RolloutRequest, create_rollout, describe
    from edgekit.rollout.plan import GatePolicy
    from edgekit.rollout.repository import RolloutDb
    from edgekit.rollout.rollback import known_rollout
    from edgekit.rollout.states import RolloutState

    if (bundle is None) == (resume is None):
        raise DeployError("give a BUNDLE to roll out, or --resume ROLLOUT to continue one")
    settings_for = functools.partial(
        _broker,
        broker,
        ca_file=ca_file,
        certfile=certfile,
        keyfile=keyfile,
        mqtt=mqtt,
        prefix=prefix,
    )
    settings_for("check")  # a bad broker setting stops us before anything is written
    with RolloutDb(db) as rollouts:
        if resume is None:
            assert bundle is not None
            if store_url is None:
                raise DeployError(
                    f"no bundle store: pass --store-url or set {env_var('store_url')}"
                )
            request = RolloutRequest(
                bundle=bundle,
                store_url=store_url,
                store_dir=store,
                devices=devices,
                profile=profile,
                canary=canary,
                waves=waves,
                gate=GatePolicy.parse(gate),
                trust_key=trust_key,
                require_signature=require_signature,
                store_ca_file=store_ca_file,
            )
            rollout_id = create_rollout(rollouts, request)
            _say(describe(rollout_id, rollouts))
        else:
            rollout_id = known_rollout(rollouts, resume).rollout_id
        settings = settings_for(rollout_id)
        stop = threading.Event()
        with _stopping_on_signals(stop):
            # Resuming after a controller died: its lease must run out first.
            wait = lease_ttl + 2 if resume else 0.0
            ended = RolloutController(
                rollouts,
                settings,
                rollout_id,
                lease_ttl_s=lease_ttl,
                wait_for_lease_s=wait,
                stop=stop,
                say=_say,
            ).run()
    if stop.is_set():
        _say(f"stopped; `edgekit deploy --resume {rollout_id}` continues rollout {rollout_id}")
        raise typer.Exit(130)
    typer.echo(f"rollout {rollout_id}: {ended.state.value}")
    if ended.state is not RolloutState.SUCCEEDED:
        _say(f"rollout {rollout_id} {ended.state.value.replace('_', ' ')}: {ended.reason}")
        raise typer.Exit(1)


def rollback(
    rollout: Annotated[str, typer.Argument(help="The rollout id (edgekit rollouts lists them).")],
    db: Db = "sqlite:///edgekit.db",
    broker: mqtt_options.Broker = None,
    wait: Annotated[
        float, typer.Option(min=1.0, help="Seconds to wait for the boards to be back.")
    ] = 600.0,
    lease_ttl: LeaseTtl = 15.0,
    ca_file: mqtt_options.CaFile = None,
    certfile: mqtt_options.Certfile = None,
    keyfile: mqtt_options.Keyfile = None,
    mqtt: mqtt_options.Mqtt = None,
    prefix: mqtt_options.Prefix = None,
) -> None:
    """Send every board ROLLOUT reached back to the bundle it ran before, and wait for them."""
    from edgekit.rollout.repository import RolloutDb
    from edgekit.rollout.rollback import known_rollout, roll_back

    with RolloutDb(db) as rollouts:
        rollout_id = known_rollout(rollouts, rollout).rollout_id
        settings = _broker(
            broker,
            rollout_id,
            ca_file=ca_file,
            certfile=certfile,
            keyfile=keyfile,
            mqtt=mqtt,
            prefix=prefix,
        )
        ended = roll_back(
            rollouts, settings, rollout_id, wait_s=wait, lease_ttl_s=lease_ttl, say=_say
        )
    typer.echo(f"rollout {rollout_id}: {ended.state.value}")


def serve_bundles(
    directory: Annotated[Path, typer.Argument(help="Bundle store folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8080,
    certfile: Annotated[
        Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM).")
    ] = None,
    keyfile: Annotated[Path | None, typer.Option(help="The certificate's private key.")] = None,
    limit_rate: Annotated[
        int | None,
        typer.Option(min=1, help="Bytes per second per download, to spare the uplink."),
    ] = None,
) -> None:
    """Serve a bundle store folder over HTTP(S) with Range requests (resumable downloads)."""
    from edgekit.bundle_server import BundleServer

    server = BundleServer(
        directory,
        host=host,
        port=port,
        certfile=certfile,
        keyfile=keyfile,
        rate_limit_bps=limit_rate,
    )
    stop = threading.Event()
    _say(f"serving {directory} at {server.url}")
    with _stopping_on_signals(stop), server:
        stop.wait()


@contextlib.contextmanager
def _stopping_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` for the duration (the previous handlers come back)."""

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
