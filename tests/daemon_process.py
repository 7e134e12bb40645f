"""Start and stop the real xsd daemon as a separate process, for tests and benchmarks.

``ManagedProcess`` is what every server a test starts shares (start, wait until it
is ready, its log, stop, kill); ``DaemonProcess`` is xsd, tests/nats_process.py the
NATS broker.  ``RundirSockets`` is where a xenstored in a run directory listens
(xsd here, Debian's C xenstored in tests/anchors.py).
"""
import os
import signal
import socket
import subprocess
import sys
import time

from watchlib.sockets import RO_SUFFIX, daemon_socket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RundirSockets:
    """The sockets of a xenstored run in ``self.rundir`` (libxenstore's rule, from
    watchlib.sockets, whatever this process's $XENSTORED_PATH), and how to aim a
    client at it."""

    @property
    def socket_path(self) -> str:
        return daemon_socket(environ={}, run_dir=self.rundir)

    @property
    def ro_socket_path(self) -> str:
        return self.socket_path + RO_SUFFIX

    @property
    def client_env(self) -> dict:
        """Environment for a client tool (xenstore-utils, pyxs) aimed at this daemon."""
        env = dict(os.environ)
        env["XENSTORED_PATH"] = self.socket_path
        return env


class ManagedProcess:
    """A server run as a child process: ``start()`` returns once ``_ready()`` says so.

    Subclasses give ``name`` (for messages), ``log_path`` and ``_spawn()``.
    """

    name = "process"

    def __init__(self, log_path: str):
        self.log_path = log_path
        self.proc = None

    def _spawn(self) -> subprocess.Popen:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 15.0):
        self.proc = self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if self._ready():
                return self
            time.sleep(0.005)       # a test waits for this ~2,000 times: poll finely
        self.kill()
        raise RuntimeError(f"{self.name} did not start:\n{self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait: the clean shutdown path.  Past ``timeout``: killed, and
        TimeoutExpired raised."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()


class DaemonProcess(ManagedProcess, RundirSockets):
    name = "xsd"

    def __init__(self, rundir: str, args=(), env=None):
        self.rundir = str(rundir)
        super().__init__(os.path.join(self.rundir, "xsd.log"))
        self.args = list(args)
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONPATH", ROOT)

    def _spawn(self) -> subprocess.Popen:
        os.makedirs(self.rundir, exist_ok=True)
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "xsd", "--rundir", self.rundir, *self.args],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def _ready(self) -> bool:
        """Both sockets bound and the read-write one accepting."""
        if not os.path.exists(self.ro_socket_path):
            return False
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(self.socket_path)
            except OSError:
                return False
        return True

    def stop_checked(self) -> None:
        """Stop, and fail if the daemon had died or logged a traceback meanwhile."""
        alive = self.alive()
        self.stop()
        assert alive, f"the daemon died during the test:\n{self.log()}"
        assert "Traceback" not in self.log(), self.log()

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
