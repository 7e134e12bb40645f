"""Type=notify readiness over a real datagram socket bound as $NOTIFY_SOCKET."""
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


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_after_both_sockets_accept_then_stopping(tmp_path, abstract):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"@xsd-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        notify.bind("\0" + name[1:])
    else:
        name = str(tmp_path / "notify")
        notify.bind(name)
    run = tmp_path / "run"
    env = dict(os.environ, NOTIFY_SOCKET=name, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "xsd", "--rundir", str(run), "--no-persist"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        ready = _messages(notify, 20.0)
        # Frozen the moment READY=1 arrives, the daemon binds nothing more: both sockets
        # must accept already (the kernel completes a connect to a listening socket).
        proc.send_signal(signal.SIGSTOP)
        try:
            assert _socket_accepts(str(run / "socket")) and _socket_accepts(str(run / "socket_ro"))
        finally:
            proc.send_signal(signal.SIGCONT)
        assert "READY=1" in ready, ready
        assert any(line.startswith("STATUS=serving on ") for line in ready), ready
        assert f"MAINPID={proc.pid}" in ready
        proc.send_signal(signal.SIGTERM)
        stopping = _messages(notify, 10.0)
        assert "STOPPING=1" in stopping, stopping
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()



def test_live_update_reports_status_then_ready_again(tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"), PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "xsd", "--rundir", str(tmp_path / "run"),
                             "--no-persist"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert "READY=1" in _messages(notify, 20.0)
        proc.send_signal(signal.SIGUSR1)              # as systemctl reload does
        assert _messages(notify, 20.0) == ["STATUS=live update under way"]
        again = _messages(notify, 20.0)
        assert "READY=1" in again and f"MAINPID={proc.pid}" in again   # same process
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in _messages(notify, 10.0)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
