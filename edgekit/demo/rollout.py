"""The demo's rollout: a second variant of the model for one board type, rolled out with a
canary through a bundle store served over HTTP, gated on what the boards measure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.progress import Progress

# The board type the demo rolls a second variant out to.
PROFILE = "rpi4"
# Extra epochs that make the second variant (v2: the model fine-tuned a little more).
V2_EPOCHS = 2


@dataclass(frozen=True)
class RolloutOutcome:
    """What the demo's rollout did."""

    rollout_id: str
    state: str
    reason: str


@dataclass
class DemoRollout:
    """Builds the v2 bundle, then rolls it out once the fleet has reported (``run``)."""

    out_dir: Path
    progress: Progress
    say: Callable[[str], None]
    outcome: RolloutOutcome | None = None

    def build_variant(self) -> Path:
        """Fine-tune the demo model a little more and build it for PROFILE; the bundle."""
        from edgekit.converters._tf import keras
        from edgekit.converters.examples import digits, train
        from edgekit.converters.pipeline import BuildRequest, build
        from edgekit.profiles import load_profile

        split = digits()
        model = keras().models.load_model(self.out_dir / "demo-model.keras")
        with self.progress.task("Fine-tuning v2 of the model", total=V2_EPOCHS) as task:
            train(
                model,
                split.x_train,
                split.y_train,
                epochs=V2_EPOCHS,
                seed=1,
                on_epoch=lambda _e, _a: task.advance(),
            )
        model.save(self.out_dir / "demo-model-v2.keras")
        bundle = self.out_dir / "bundles" / f"{PROFILE}-v2"
        build(
            BuildRequest(
                model=self.out_dir / "demo-model-v2.keras",
                profile=load_profile(PROFILE),
                out_dir=bundle,
                calibration=self.out_dir / "calibration.npz",
                eval_data=self.out_dir / "eval.npz",
                allow_over_budget=True,
            ),
            progress=self.progress,
        )
        self.say(f"built {PROFILE} v2 (fine-tuned {V2_EPOCHS} more epochs) -> {bundle}")
        return bundle

    def run(self, bundle: Path, *, broker: str, db_url: str) -> RolloutOutcome:
        """Roll ``bundle`` out to the PROFILE boards: a canary first, then the rest."""
        from edgekit.bundle_server import BundleServer
        from edgekit.rollout.controller import RolloutController
        from edgekit.rollout.create import RolloutRequest, create_rollout, describe
        from edgekit.rollout.messenger import controller_settings
        from edgekit.rollout.repository import RolloutDb
        from edgekit.vocab import MqttVersion

        store = self.out_dir / "store"
        store.mkdir(exist_ok=True)
        with BundleServer(store) as server, RolloutDb(db_url) as db:
            request = RolloutRequest(
                bundle=bundle,
                store_url=server.url,
                store_dir=store,
                profile=PROFILE,
                canary="10%",
                waves="100%",
            )
            rollout_id = create_rollout(db, request)
            self.say(f"store {store} served at {server.url}; {describe(rollout_id, db)}")
            # The embedded broker speaks MQTT 3.1.1 only.
            settings = controller_settings(broker, rollout_id, mqtt_version=MqttVersion.V311)
            ended = RolloutController(db, settings, rollout_id, say=self.say).run()
        self.outcome = RolloutOutcome(rollout_id, ended.state.value, ended.reason)
        self.say(f"rollout {rollout_id}: {ended.state.value} ({ended.reason})")
        return self.outcome


def windows_sent(outbox: Path) -> int:
    """Reports a daemon produced over the life of its outbox (its sequence counter)."""
    import sqlite3

    with sqlite3.connect(outbox) as db:
        row = db.execute("SELECT value FROM counters WHERE name = 'sequence'").fetchone()
    return int(row[0]) if row else 0
