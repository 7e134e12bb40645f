"""The only module that opens sockets: read-write and read-only Unix sockets,
signals, systemd readiness, clean shutdown (only the socket files this process
made are removed)."""
import asyncio
import contextlib
import logging
import os
import resource
import signal
import time
import socket
import weakref

from . import liveupdate
from .sdnotify import Notifier
from .trace import Tracer
from ..startup import StartupError, check_socket_path
from .connection import Connection
from ..durability.persist import open_daemon
from .guest import Guests
from ..core import stats
from .pump import RequestPump
from ..hypervisor import open_hypervisor

log = logging.getLogger("xsd")

# A connection given one of the last FD_RESERVE descriptors is logged: past the
# limit, accept() fails (EMFILE) and libuv accepts-and-closes new clients silently.
FD_RESERVE = 8
FD_WARN_EVERY = 60.0          # seconds between two such warnings


class Server:
    def __init__(self, config, hypervisor=None):
        self.config = config
        # A live update's state file (liveupdate.py), read before the daemon exists.
        self.handoff = liveupdate.Handoff(config.live_restore) if config.live_restore else None
        self.hypervisor = hypervisor     # opened from config at start when not given
        self.daemon = open_daemon(config, host=self, handoff=self.handoff)   # self: core.daemon.Host
        self.pump = RequestPump(self.daemon)   # its loop is given at start
        self.tracer = None
        if config.trace_file:
            self.tracer = Tracer(config.trace_file)
            self.tracer.install(self.daemon)
        self.guests = None
        self.servers = []
        self.listening = []              # (path, read_only) of each of self.servers
        self.connections = weakref.WeakSet()
        self.live_update_task = None
        self._stopping = None
        self._count = 0
        self.owned = {}                  # socket path -> (st_dev, st_ino) of the file we bound
        self.notifier = Notifier()
        self._fd_warned = -FD_WARN_EVERY
        self.metrics = None              # metrics.MetricsServer with --metrics
        self._summary_timer = None
        self.poller = None               # poller.SocketPoller: the C path reads the sockets

    def _factory(self, read_only: bool):
        def make():
            self._count += 1
            self._check_descriptors()
            conn = Connection(self.pump, read_only, f"{'ro' if read_only else 'rw'}#{self._count}",
                              self.poller)
            self.connections.add(conn)
            return conn
        return make

    def _check_descriptors(self) -> None:
        """Rate-limited warning as descriptors run out: the next fd is about the lowest free,
        so opening one probe costs a syscall pair and tells how close the limit is."""
        try:
            probe = os.open("/", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            self._warn_descriptors(f"cannot open a descriptor ({err.strerror})")
            return
        os.close(probe)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY and probe >= soft - FD_RESERVE:
            self._warn_descriptors(f"descriptor {probe} of {soft} in use")

    def _warn_descriptors(self, what: str) -> None:
        now = time.monotonic()
        if now - self._fd_warned >= FD_WARN_EVERY:
            self._fd_warned = now
            log.warning("out of file descriptors: %s; new connections are refused until "
                        "clients leave (raise LimitNOFILE / ulimit -n)", what)

    def _loop_exception(self, loop, context) -> None:
        """The default asyncio loop reports a failed accept() here (uvloop does not)."""
        if context.get("message") == "socket.accept() out of system resource":
            self._warn_descriptors(str(context.get("exception")))
            return
        loop.default_exception_handler(context)

    # -- core.daemon.Host ---------------------------------------------------------
    def live_update(self) -> str:
        """CONTROL live-update, SIGUSR1: replace this process, keeping sockets and state."""
        answer = liveupdate.start(self)
        if answer == "OK":               # the new process says READY=1 again once serving
            self.daemon.stats.live_updates += 1
            self.notifier.status("live update under way")
        return answer

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
        if config.metrics:                # first: a bad address stops us before any socket
            from ..metrics import MetricsServer
            self.metrics = MetricsServer(self.daemon, config.metrics,
                                         restored_by_live_update=self.handoff is not None)
            try:
                await self.metrics.start()
            except OSError as err:
                raise StartupError(f"--metrics {config.metrics}: {err.strerror or err}") from None
            self.daemon.stats.start_timing()
        if self.daemon.fastpath is not None and not config.python_poll:
            from .poller import SocketPoller     # over the C node store only
            self.poller = SocketPoller(self.daemon, self.pump, loop)    # after start_timing
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
            check_socket_path(path)      # never take a socket another daemon answers on
            if os.path.lexists(path):
                os.unlink(path)          # a stale socket from a previous run
            old_umask = os.umask(0o177)  # socket mode 0600, as C xenstored
            try:
                server = await loop.create_unix_server(self._factory(read_only), path, backlog=512)
            except OSError as err:       # e.g. taken between the check and the bind
                raise StartupError(f"cannot listen on {path}: {err.strerror or err}") from None
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            self.servers.append(server)
        for path, _read_only in self.listening:
            st = os.stat(path)           # ours now: bound here, or inherited by a live update
            self.owned[path] = (st.st_dev, st.st_ino)
        if config.pid_file:
            write_pid_file(config.pid_file)

    async def serve(self, on_ready=None) -> None:
        """Start, then serve until SIGTERM/SIGINT.  ``on_ready()`` is called once both
        sockets accept, beside systemd's READY=1 (the command line prints there)."""
        await self.start()
        loop = asyncio.get_running_loop()
        self._stopping = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop, sig)
        loop.add_signal_handler(signal.SIGUSR1, self.live_update)
        loop.add_signal_handler(signal.SIGHUP, self.reopen_files)
        loop.set_exception_handler(self._loop_exception)
        log.info("serving on %s and %s", self.config.socket_path, self.config.ro_socket_path)
        self.notifier.ready(f"serving on {self.config.socket_path}")
        if on_ready is not None:
            on_ready()
        if self.config.ready_fd >= 0:             # --fork: the waiting parent may exit now
            os.write(self.config.ready_fd, b"R")
            os.close(self.config.ready_fd)
            self.config.ready_fd = -1
        try:
            await self._stopping
        finally:
            self.notifier.stopping()
            await self.close()
            self.notifier.close()

    def _log_summaries(self) -> None:
        """Repeated warnings, one line per domain or connection per interval (stats.py)."""
        try:
            stats.log_summaries(self.daemon)
        finally:
            self._summary_timer = asyncio.get_running_loop().call_later(
                self.config.log_summary_interval, self._log_summaries)

    def reopen_files(self) -> None:
        """SIGHUP: as C xenstored (which reopens its log and trace files and keeps
        serving), the -T trace and the CONTROL logfile are opened again by name, so
        logrotate can move them away.  A file that cannot be opened is logged and the
        old one kept."""
        from ..core.control import reopen_logfile
        reopened = []
        if self.tracer is not None:
            try:
                self.tracer.reopen()
                reopened.append(self.tracer.path)
            except OSError as err:
                log.error("SIGHUP: cannot reopen trace file %s: %s", self.tracer.path,
                          err.strerror or err)
        try:
            logfile = reopen_logfile()
        except OSError as err:
            log.error("SIGHUP: cannot reopen log file: %s", err.strerror or err)
        else:
            if logfile:
                reopened.append(logfile)
        log.info("SIGHUP: reopened %s; still serving",
                 ", ".join(reopened) if reopened else "no file (no -T, no CONTROL logfile)")

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
        if self.poller is not None:
            self.poller.close()
            self.poller = None
        if self.guests is not None:
            self.guests.close()
            self.guests = None
        if self.hypervisor is not None:
            self.hypervisor.close()
        for path, identity in self.owned.items():
            try:                         # only the file we bound: another daemon's stays
                st = os.lstat(path)
                if (st.st_dev, st.st_ino) == identity:
                    os.unlink(path)
            except FileNotFoundError:
                pass
        self.owned.clear()
        if self.tracer is not None:
            self.tracer.close()
            self.tracer = None
        if self.config.pid_file:
            try:                         # only if it still names this process
                with open(self.config.pid_file, encoding="ascii") as f:
                    ours = f.read().strip() == str(os.getpid())
                if ours:
                    os.unlink(self.config.pid_file)
            except (FileNotFoundError, UnicodeDecodeError):
                pass
        self.servers.clear()
        log.info("stopped")

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
                conn.pause_reading()
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
                conn.resume_reading()
        if self.guests is not None:
            self.guests.resume()


def write_pid_file(path: str) -> None:
    """Our pid in ``path``, whole or not at all: written beside it and renamed over it, so
    a reader (systemd's PIDFile=, an init script) never sees it empty or half written."""
    partial = f"{path}.{os.getpid()}.tmp"
    try:
        with open(partial, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
