"""The only module that opens sockets: read-write and read-only Unix sockets,
signals, clean shutdown (socket files removed)."""
import asyncio
import logging
import os
import signal

from .connection import Connection
from .daemon import Daemon

log = logging.getLogger("xsd")


class Server:
    def __init__(self, config):
        self.config = config
        self.daemon = Daemon(config)
        self.servers = []
        self._stopping = None
        self._count = 0

    def _factory(self, read_only: bool):
        def make():
            self._count += 1
            return Connection(self.daemon, read_only, f"{'ro' if read_only else 'rw'}#{self._count}")
        return make

    async def start(self) -> None:
        config = self.config
        os.makedirs(config.rundir, exist_ok=True)
        loop = asyncio.get_running_loop()
        for path, read_only in ((config.socket_path, False), (config.ro_socket_path, True)):
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
        for server in self.servers:
            server.close()
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
