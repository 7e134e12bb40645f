"""The only module that opens sockets: read-write and read-only Unix sockets,
signals, clean shutdown (socket files removed)."""
import asyncio
import logging
import os
import signal
import weakref

from . import liveupdate
from .connection import Connection
from ..core.daemon import Daemon
from .guest import Guests
from ..core import stats
from ..hypervisor import open_hypervisor

log = logging.getLogger("xsd")


class StartError(Exception):
    """A start-up condition the operator must fix: one line on stderr, exit status 1."""


class Server:
    def __init__(self, config, hypervisor=None):
        self.config = config
        # A live update's state file (liveupdate.py), read before the daemon exists.
        self.handoff = liveupdate.Handoff(config.live_restore) if config.live_restore else None
        self.daemon = Daemon(config, self.handoff)
        self.hypervisor = hypervisor     # opened from config at start when not given
        self.guests = None
        self.servers = []
        self.listening = []              # (path, read_only) of each of self.servers
        self.connections = weakref.WeakSet()
        self.live_update_task = None
        self._stopping = None
        self._count = 0
        self.metrics = None              # metrics.MetricsServer with --metrics
        self._summary_timer = None

    def _factory(self, read_only: bool):
        def make():
            self._count += 1
            conn = Connection(self.daemon, read_only, f"{'ro' if read_only else 'rw'}#{self._count}")
            self.connections.add(conn)
            return conn
        return make

    def live_update(self) -> str:
        """CONTROL live-update, SIGUSR1: replace this process, keeping sockets and state."""
        answer = liveupdate.start(self)
        if answer == "OK":
            self.daemon.stats.live_updates += 1
        return answer

    async def start(self) -> None:
        config = self.config
        os.makedirs(config.rundir, exist_ok=True)
        loop = asyncio.get_running_loop()
        if self.hypervisor is None:
            self.hypervisor = open_hypervisor(config.hypervisor, config.rundir)
        self.guests = Guests(self.daemon, self.hypervisor, loop,
                             live_update=self.handoff is not None)
        self.daemon.loop = loop
        if config.metrics:                # first: a bad address stops us before any socket
            from ..metrics import MetricsServer
            self.metrics = MetricsServer(self.daemon, config.metrics,
                                         restored_by_live_update=self.handoff is not None)
            try:
                await self.metrics.start()
            except OSError as err:
                raise StartError(f"--metrics {config.metrics}: {err.strerror or err}") from None
            self.daemon.stats.start_timing()
        self._summary_timer = loop.call_later(config.log_summary_interval, self._log_summaries)
        if self.handoff is not None:
            self.handoff.restore_guests(self)        # guest sessions of the old process
        for path, read_only in ((config.socket_path, False), (config.ro_socket_path, True)):
            self.listening.append((path, read_only))
            inherited = self.handoff.listener(path) if self.handoff is not None else None
            if inherited is not None:                # live update: the socket never closed
                self.servers.append(await loop.create_unix_server(
                    self._factory(read_only), sock=inherited, backlog=512))
                continue
            if os.path.exists(path):
                os.unlink(path)          # a stale socket from a previous run
            old_umask = os.umask(0o177)  # socket mode 0600, as C xenstored
            try:
                server = await loop.create_unix_server(self._factory(read_only), path, backlog=512)
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            self.servers.append(server)
        if config.pid_file:
            with open(config.pid_file, "w", encoding="ascii") as f:
                f.write(f"{os.getpid()}\n")

    async def serve(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        self._stopping = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop, sig)
        loop.add_signal_handler(signal.SIGUSR1, self.live_update)
        self.daemon.live_update = self.live_update
        log.info("serving on %s and %s", self.config.socket_path, self.config.ro_socket_path)
        try:
            await self._stopping
        finally:
            await self.close()

    def _log_summaries(self) -> None:
        """Repeated warnings, one line per domain or connection per interval (stats.py)."""
        try:
            stats.log_summaries(self.daemon)
        finally:
            self._summary_timer = asyncio.get_running_loop().call_later(
                self.config.log_summary_interval, self._log_summaries)

    def _stop(self, sig) -> None:
        log.info("signal %s: shutting down", signal.Signals(sig).name)
        if self._stopping is not None and not self._stopping.done():
            self._stopping.set_result(None)

    async def close(self) -> None:
        self.daemon.flush()              # a batch still waiting for group commit
        if self._summary_timer is not None:
            self._summary_timer.cancel()
            stats.log_summaries(self.daemon)     # what the last interval has not told yet
        if self.metrics is not None:
            self.metrics.close()
        if self.daemon.persist is not None:
            self.daemon.persist.sync()
        for server in self.servers:
            server.close()
        if self.guests is not None:
            self.guests.close()
            self.guests = None
        if self.hypervisor is not None:
            self.hypervisor.close()
        for path in (self.config.socket_path, self.config.ro_socket_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if self.config.pid_file:
            try:
                os.unlink(self.config.pid_file)
            except FileNotFoundError:
                pass
        self.servers.clear()
        log.info("stopped")
