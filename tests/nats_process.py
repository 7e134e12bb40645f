"""Start and stop Debian's nats-server (JetStream on) for the fleet tests and bench/bench_fleet.py.

Listens on 127.0.0.1 only, on a port chosen free at first start and kept across
restarts (so clients reconnect to the same URL); JetStream's store lives in the
given directory and survives a restart, as on a real broker.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

NATS_SERVER = "nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.store_dir = os.path.join(self.workdir, "jetstream")
        self.log_path = os.path.join(self.workdir, "nats-server.log")
        self.port = None
        self.proc = None

    @staticmethod
    def available() -> bool:
        return shutil.which(NATS_SERVER) is not None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "NatsServer":
        os.makedirs(self.store_dir, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-js", "-sd", self.store_dir, "-a", "127.0.0.1", "-p", str(self.port),
             "-l", self.log_path],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}:\n{self.log()}")
            if "Server is ready" in self.log():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"nats-server did not start:\n{self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> "NatsServer":
        self.stop()
        with open(self.log_path, "w"):
            pass                       # "Server is ready" must come from the new process
        return self.start()
