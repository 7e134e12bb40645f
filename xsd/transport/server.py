"""The only module that opens sockets: read-write and read-only Unix sockets,
signals, clean shutdown (socket files removed)."""
import asyncio
import logging
import os
import signal
import socket
import weakref

from . import liveupdate
from .connection import Connection
from ..durability.persist import open_daemon
from .guest import Guests
from .pump import RequestPump
from ..hypervisor import open_hypervisor

log = logging.getLogger("xsd")


class Server:
    def __init__(self, config, hypervisor=None):
        self.config = config
        # A live update's state file (liveupdate.py), read before the daemon exists.
        self.handoff = liveupdate.Handoff(config.live_restore) if config.live_restore else None
        self.hypervisor = hypervisor     # opened from config at start when not given
        self.daemon = open_daemon(config, host=self, handoff=self.handoff)   # self: core.daemon.Host
        self.pump = RequestPump(self.daemon)   # its loop is given at start
        self.guests = None
        self.servers = []
        self.listening = []              # (path, read_only) of each of self.servers
        self.connections = weakref.WeakSet()
        self.live_update_task = None
        self._stopping = None
        self._count = 0

    def _factory(self, read_only: bool):
        def make():
            self._count += 1
            conn = Connection(self.pump, read_only, f"{'ro' if read_only else 'rw'}#{self._count}")
            self.connections.add(conn)
            return conn
        return make

    # -- core.daemon.Host ---------------------------------------------------------
    def live_update(self) -> str:
        """CONTROL live-update, SIGUSR1: replace this process, keeping sockets and state."""
        return liveupdate.start(self)

    def domain_info(self, domid: int):
        return self.hypervisor.domain_info(domid) if self.hypervisor is not None else None

    async def start(self) -> None:
        config = self.config
        os.makedirs(config.rundir, exist_ok=True)
        loop = asyncio.get_running_loop()
        if self.hypervisor is None:
            self.hypervisor = open_hypervisor(config.hypervisor, config.rundir)
        persist = self.daemon.persist
        self.pump.loop = loop
        self.pump.policy = persist
        if persist is not None:
            persist.serve_on(loop)
        self.guests = Guests(self.pump, self.hypervisor, loop,
                             live_update=self.handoff is not None,
                             saved_watches=persist.guest_watches.by_domid if persist else None)
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
        log.info("serving on %s and %s", self.config.socket_path, self.config.ro_socket_path)
        try:
            await self._stopping
        finally:
            await self.close()

    def _stop(self, sig) -> None:
        log.info("signal %s: shutting down", signal.Signals(sig).name)
        if self._stopping is not None and not self._stopping.done():
            self._stopping.set_result(None)

    async def close(self) -> None:
        self.daemon.flush()              # a batch still waiting for group commit
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

    # -- live update (liveupdate.py) -------------------------------------------------
    def inheritable_listeners(self) -> list:
        """The listening sockets, duplicated and inheritable: ``{"path", "read_only", "fd"}``."""
        listeners = []
        for server, (path, read_only) in zip(self.servers, self.listening):
            fd = os.dup(server.sockets[0].fileno())   # the socket outlives stop_listening()
            os.set_inheritable(fd, True)
            listeners.append({"path": path, "read_only": read_only, "fd": fd})
        return listeners

    def stop_listening(self) -> None:
        for server in self.servers:
            server.close()

    def pause_clients(self) -> None:
        """Read no more requests from any client, socket or guest."""
        for conn in list(self.connections):
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.pause_reading()
        if self.guests is not None:
            try:
                self.guests.pause()
            except Exception:
                log.exception("live update: stopping guest event channels")

    def output_waiting(self) -> bool:
        """Some socket client has replies not yet taken by the kernel."""
        return any(c.transport is not None and not c.transport.is_closing()
                   and c.transport.get_write_buffer_size() for c in list(self.connections))

    async def resume_clients(self, listeners: list) -> None:
        """Undo ``stop_listening`` and ``pause_clients`` (a live update that failed)."""
        loop = asyncio.get_running_loop()
        self.servers.clear()
        for item in listeners:
            sock = socket.socket(fileno=item["fd"])
            self.servers.append(await loop.create_unix_server(
                self._factory(item["read_only"]), sock=sock, backlog=512))
        for conn in list(self.connections):
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.resume_reading()
        if self.guests is not None:
            self.guests.resume()
