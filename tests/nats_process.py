"""Start and stop Debian's nats-server (JetStream on) for the fleet tests and bench/bench_fleet.py.

Listens on 127.0.0.1 only, on a port chosen free at first start and kept across
restarts (so clients reconnect to the same URL); JetStream's store lives in the
given directory and survives a restart, as on a real broker.
"""
import os
import shutil
import socket
import subprocess

from tests.daemon_process import ManagedProcess

NATS_SERVER = "nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer(ManagedProcess):
    name = NATS_SERVER

    def __init__(self, workdir):
        self.workdir = str(workdir)
        super().__init__(os.path.join(self.workdir, "nats-server.log"))
        self.store_dir = os.path.join(self.workdir, "jetstream")
        self.port = None

    @staticmethod
    def available() -> bool:
        return shutil.which(NATS_SERVER) is not None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _spawn(self) -> subprocess.Popen:
        os.makedirs(self.store_dir, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        return subprocess.Popen(
            [NATS_SERVER, "-js", "-sd", self.store_dir, "-a", "127.0.0.1", "-p", str(self.port),
             "-l", self.log_path],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def _ready(self) -> bool:
        return "Server is ready" in self.log()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait; past ``timeout``, killed (a broker slow to stop fails no test)."""
        try:
            super().stop(timeout)
        except subprocess.TimeoutExpired:
            pass

    def restart(self) -> "NatsServer":
        self.stop()
        with open(self.log_path, "w"):
            pass                       # "Server is ready" must come from the new process
        return self.start()
