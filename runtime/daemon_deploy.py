"""The daemon's side of deployment (``deploy_dir`` set): which bundle to open, the commands that
arrive between windows, and the session swapped when one of them activates a bundle.

The daemon keeps measuring: a command is carried out between two windows, a swapped session
reports from the next window on, and a bundle on trial that fails to load or to run a window is
rolled back by the agent, the daemon carrying on with the previous bundle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.runtime.daemon_settings import DaemonSettings
from edgekit.runtime.deploy_agent import DeployAgent
from edgekit.runtime.deploy_listener import DeployListener
from edgekit.runtime.outbox import Outbox
from edgekit.runtime.reporter import Reporter
from edgekit.runtime.session import DeviceSession

Opener = Callable[[Path], DeviceSession]


class Deployment:
    """The agent of the daemon's deploy directory, and its deploy topic once connected."""

    def __init__(
        self,
        settings: DaemonSettings,
        outbox: Outbox,
        *,
        say: Callable[[str], None],
        stopping: Callable[[], bool],
    ) -> None:
        if settings.deploy_dir is None:
            raise ValueError("Deployment needs settings.deploy_dir")
        self.settings = settings
        self._say = say
        self._stopping = stopping
        self._listener: DeployListener | None = None
        self.agent = DeployAgent(
            settings.deploy_dir,
            device_id=settings.device_id,
            outbox=outbox,
            prefix=settings.prefix,
            trust_key=settings.trust_key,
            store_ca_file=settings.store_ca_file,
            say=say,
            stop=self._interrupt,
        )

    def open_first(self, open_session: Opener) -> DeviceSession:
        """The session on the deploy directory's current bundle (the configured one the first
        time), or on the previous one when the current trial does not load."""
        return self._open(self.agent.start(self.settings.bundle), open_session)

    @contextlib.contextmanager
    def listening(self, reporter: Reporter) -> Iterator[None]:
        """Events go out through ``reporter``; commands come in for the duration."""
        self.agent.attach(reporter.publish_id)
        s = self.settings
        with DeployListener(s.broker_settings, device_id=s.device_id, say=self._say) as listener:
            self._listener = listener
            try:
                yield
            finally:
                self._listener = None

    def poll(self, open_session: Opener) -> DeviceSession | None:
        """Carry out a command that arrived; the new session when it swapped bundles."""
        command = self._listener.take() if self._listener is not None else None
        if command is None:
            return None
        folder = self.agent.handle(command)
        return None if folder is None else self._open(folder, open_session)

    def window_done(self) -> None:
        """A window was reported from the current session."""
        self.agent.window_done()

    def window_failed(self, exc: Exception, open_session: Opener) -> DeviceSession:
        """A window failed: roll a bundle on trial back (the session on the previous one), or
        raise ``exc`` when the bundle was not on trial."""
        folder = self.agent.failed(exc)
        if folder is None:
            raise exc
        return open_session(folder)

    def _open(self, folder: Path, open_session: Opener) -> DeviceSession:
        try:
            session = open_session(folder)
        except EdgekitError as exc:
            back = self.agent.failed(exc)
            if back is None:
                raise
            return open_session(back)
        self.agent.opened()
        return session

    def _interrupt(self) -> bool:
        # A download stops for a newer command (the whole desired state) or for SIGTERM.
        return self._stopping() or (self._listener is not None and self._listener.waiting())
