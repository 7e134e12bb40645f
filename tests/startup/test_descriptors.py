"""issue 12 item 11: the soft descriptor limit is raised to the hard one at start, and
running out of descriptors is logged (rate-limited) while the daemon keeps serving."""
import os
import resource
import socket
import subprocess
import sys

from tests.daemon_process import ROOT, DaemonProcess
from tests.waiting import wait_for
from tests.wire import RawClient
from xenstore_protocol import Op


def _limits(soft, hard):
    def preexec():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return preexec


def _nofile(pid: int) -> tuple:
    with open(f"/proc/{pid}/limits", encoding="ascii") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no Max open files line")


def _served(path: str) -> bool:
    try:
        with RawClient(path) as xs:
            return xs.ok(Op.READ, b"/local/domain/0/name") == b"Domain-0"
    except OSError:
        return False          # accepted and closed at once while descriptors were short


def test_soft_limit_raised_to_hard(tmp_path):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    hard = min(hard, 4096)
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "xsd", "--rundir", str(run), "--no-persist"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_limits(64, hard))
    try:
        wait_for(lambda: os.path.exists(run / "socket_ro"), what="the sockets")
        assert _nofile(proc.pid) == (hard, hard)
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
    assert f"descriptors {hard}," in err and "Traceback" not in err


def test_out_of_descriptors_is_logged_once_and_serving_goes_on(tmp_path):
    limit = 48
    proc = DaemonProcess(tmp_path / "run", ("--no-persist",)).start()
    resource.prlimit(proc.proc.pid, resource.RLIMIT_NOFILE, (limit, limit))
    clients = []
    try:
        for _ in range(limit + 20):         # more than the daemon can hold
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(proc.socket_path)
            clients.append(sock)
        wait_for(lambda: "out of file descriptors" in proc.log(), timeout=10)
        for sock in clients:
            sock.close()
        clients.clear()
        wait_for(lambda: _served(proc.socket_path), what="service once descriptors are free")
        assert proc.log().count("out of file descriptors") == 1   # rate-limited
    finally:
        for sock in clients:
            sock.close()
        proc.stop_checked()
