"""Type=notify readiness over a real datagram socket bound as $NOTIFY_SOCKET."""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.daemon_process import ROOT


def _socket_accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
            return True
        except OSError:
            return False


def _messages(sock, timeout: float) -> list:
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).decode().split("\n")
    except socket.timeout:
        return []


@contextlib.contextmanager
def _xsd_notifying(notify_socket: str, rundir):
    """``python -m xsd --no-persist`` told NOTIFY_SOCKET; killed on the way out if still up."""
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "xsd", "--rundir", str(rundir), "--no-persist"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_after_both_sockets_accept_then_stopping(tmp_path, abstract):
    run = tmp_path / "run"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        if abstract:
            name = f"@xsd-test-notify-{os.getpid()}-{time.monotonic_ns()}"
            notify.bind("\0" + name[1:])
        else:
            name = str(tmp_path / "notify")
            notify.bind(name)
        with _xsd_notifying(name, run) as proc:
            ready = _messages(notify, 20.0)
            # Frozen the moment READY=1 arrives, the daemon binds nothing more: both sockets
            # must accept already (the kernel completes a connect to a listening socket).
            proc.send_signal(signal.SIGSTOP)
            try:
                assert (_socket_accepts(str(run / "socket"))
                        and _socket_accepts(str(run / "socket_ro")))
            finally:
                proc.send_signal(signal.SIGCONT)
            assert "READY=1" in ready, ready
            assert any(line.startswith("STATUS=serving on ") for line in ready), ready
            assert f"MAINPID={proc.pid}" in ready
            proc.send_signal(signal.SIGTERM)
            stopping = _messages(notify, 10.0)
            assert "STOPPING=1" in stopping, stopping
            assert proc.wait(10) == 0


def test_live_update_reports_status_then_ready_again(tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify"))
        with _xsd_notifying(str(tmp_path / "notify"), tmp_path / "run") as proc:
            assert "READY=1" in _messages(notify, 20.0)
            proc.send_signal(signal.SIGUSR1)              # as systemctl reload does
            assert _messages(notify, 20.0) == ["STATUS=live update under way"]
            again = _messages(notify, 20.0)
            assert "READY=1" in again and f"MAINPID={proc.pid}" in again   # same process
            proc.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in _messages(notify, 10.0)
            assert proc.wait(10) == 0
