"""Start and stop the real xsd daemon as a separate process, for tests and benchmarks."""
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DaemonProcess:
    def __init__(self, rundir: str, args=(), env=None):
        self.rundir = str(rundir)
        self.args = list(args)
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONPATH", ROOT)
        self.proc = None
        self.log_path = os.path.join(self.rundir, "xsd.log")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.rundir, "socket")

    @property
    def ro_socket_path(self) -> str:
        return os.path.join(self.rundir, "socket_ro")

    @property
    def client_env(self) -> dict:
        """Environment for a client tool (xenstore-utils, pyxs) aimed at this daemon."""
        env = dict(os.environ)
        env["XENSTORED_PATH"] = self.socket_path
        return env

    def start(self, timeout: float = 15.0) -> "DaemonProcess":
        os.makedirs(self.rundir, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xsd", "--rundir", self.rundir, *self.args],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"xsd exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.ro_socket_path):
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(self.socket_path)
                    return self
                except OSError:
                    pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"xsd did not start:\n{self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> "DaemonProcess":
        self.stop()
        return self.start()

    def stop_checked(self) -> None:
        """Stop, and fail if the daemon had died or logged a traceback meanwhile."""
        alive = self.alive()
        self.stop()
        assert alive, f"the daemon died during the test:\n{self.log()}"
        assert "Traceback" not in self.log(), self.log()

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
