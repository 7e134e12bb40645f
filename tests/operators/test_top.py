"""xenstore-top against a real daemon: --json and --once for scripts, and the live view
on a real terminal (tmux: start it, send keys, capture the pane)."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from xenstore_protocol import Op

from tests.daemon_process import ROOT, DaemonProcess

from .conftest import cooperate, flood, set_quota, wait_for

TOP = os.path.join(os.path.dirname(sys.executable), "xenstore-top")


def top(daemon, *args, check=True):
    done = subprocess.run([TOP, *args], env=daemon.client_env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def by_domid(doc):
    return {row["domid"]: row for row in doc["domains"]}


def test_json_reports_each_domains_known_work(opsd, guests, toolstack):
    busy, quiet, reader = guests.start(), guests.start(), guests.start()
    set_quota(toolstack, quiet.domid, "nodes", 10)          # 7 of its own already
    for i in range(3):
        quiet.write(f"data/q{i}", b"x")
    for i in range(4):
        assert quiet.error(Op.WRITE, payload=f"data/z{i}\0x".encode()) == "ENOSPC"
    shared = cooperate(toolstack, reader, busy)             # reader never reads again
    flood(busy, shared, 300)
    # While top samples, the busy guest writes and the quiet one does nothing.
    stop = threading.Event()

    def work():
        i = 1000
        while not stop.is_set():
            flood(busy, shared, 16, start=i)
            i += 16

    worker = threading.Thread(target=work)
    worker.start()
    try:
        doc = json.loads(top(opsd, "--json", "--interval", "0.5").stdout)
    finally:
        stop.set()
        worker.join()
    rows = by_domid(doc)
    assert set(rows) == {0, busy.domid, quiet.domid, reader.domid}
    b, q, r = rows[busy.domid], rows[quiet.domid], rows[reader.domid]
    assert b["rate"] > 10 and list(b["rates"])[0] == "WRITE"
    assert q["rate"] == 0 and r["rate"] == 0
    assert doc["domains"][0]["domid"] == busy.domid          # sorted by requests/s
    assert q["requests"] == 3 + 4 and q["refused"] == 4 and q["refused_by_quota"] == {"nodes": 4}
    assert q["nodes"] == 10 and q["quota"]["nodes"] == {"used": 10, "limit": 10}
    assert q["fill"] == 1.0
    assert r["watches"] == 1 and r["dropped"] > 0
    assert b["nodes"] >= 7 + 1 + 300 and b["dropped"] == 0
    assert rows[0]["quota"]["nodes"]["limit"] == 0           # dom0: no quota


def test_once_table_and_paging_over_many_domains(opsd, guests, toolstack):
    made = [guests.create() for _ in range(30)]
    page = json.loads(toolstack.ok(Op.CONTROL, b"stats").rstrip(b"\0"))
    assert page["next"] is not None                         # 31 rows do not fit one reply
    assert len(toolstack.ok(Op.CONTROL, b"stats")) <= 4096
    out = top(opsd, "--once", "--interval", "0.1", "--sort", "d").stdout.splitlines()
    assert out[0].split()[:3] == ["DOMID", "CONN", "REQ/S"]
    assert [int(line.split()[0]) for line in out[1:]] == [0] + sorted(r.domid for r in made)
    assert toolstack.error(Op.CONTROL, b"stats", b"x") == "EINVAL"


def test_daemon_down_is_one_line(tmp_path):
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "nothing"))
    done = subprocess.run([TOP, "--once"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr == (f"xenstore-top: cannot connect to xenstored at {tmp_path}/nothing: "
                           "No such file or directory\n")


@pytest.mark.parametrize("interval", ["inf", "nan", "0", "-1", "1e300"])
def test_interval_must_be_finite_and_positive(tmp_path, interval):
    env = dict(os.environ, XENSTORED_PATH=str(tmp_path / "nothing"))
    done = subprocess.run([TOP, "--once", "-i", interval], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("xenstore-top: ") and len(done.stderr.splitlines()) == 1
    assert "--interval" in done.stderr


def test_a_closed_pipe_ends_it_quietly(opsd):
    # As `xenstore-top --once | head -3` once head has gone: the reader is closed before
    # the table is written (top spends the interval between its two samples first).
    proc = subprocess.Popen([TOP, "--once", "--interval", "0.5"], env=opsd.client_env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == -signal.SIGPIPE       # what the xenstore-* tools do
    assert err == b""


class Tmux:
    """One tmux server of our own (-L), so no one else's sessions are touched."""

    def __init__(self, name):
        self.base = ["tmux", "-L", name]

    def __call__(self, *args):
        return subprocess.run(self.base + list(args), capture_output=True, text=True, timeout=30)

    def pane(self):
        return self("capture-pane", "-p", "-t", "top").stdout


@pytest.fixture
def tmux():
    t = Tmux(f"xsd-top-{os.getpid()}")
    yield t
    t("kill-server")


def test_live_view_in_a_terminal(opsd, guests, toolstack, tmux):
    big, small = guests.start(), guests.start()
    for i in range(40):
        big.write(f"data/n{i}", b"x")
    env = " ".join(f"{k}={v}" for k, v in (("XENSTORED_PATH", opsd.socket_path),
                                             ("TERM", "xterm")))
    started = tmux("new-session", "-d", "-s", "top", "-x", "160", "-y", "30",
                   f"env {env} {TOP} --interval 0.3")
    assert started.returncode == 0, started.stderr
    wait_for(lambda: "DOMID" in tmux.pane(), what="the table")

    def rows():
        lines = tmux.pane().splitlines()
        head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("DOMID"))
        return [int(line.split()[0]) for line in lines[head + 1:] if line.strip()]

    tmux("send-keys", "-t", "top", "n")
    wait_for(lambda: "sort: nodes" in tmux.pane(), what="sorted by nodes")
    wait_for(lambda: rows()[0] == big.domid and rows()[-1] == small.domid, what="most nodes first")
    tmux("send-keys", "-t", "top", "d")
    wait_for(lambda: "sort: domid" in tmux.pane() and rows() == [0, big.domid, small.domid],
             what="sorted by domid")
    tmux("send-keys", "-t", "top", "d")
    wait_for(lambda: "(reversed)" in tmux.pane() and rows() == [small.domid, big.domid, 0],
             what="reversed")
    # Refreshing in place: the small guest's new watch shows without a key.
    small.watch("data", b"t")
    wait_for(lambda: any(line.split()[:1] == [str(small.domid)] and line.split()[4] == "1"
                         for line in tmux.pane().splitlines()), what="the watch counted")
    tmux("send-keys", "-t", "top", "q")
    wait_for(lambda: tmux("has-session", "-t", "top").returncode != 0, what="top quit")


def test_live_view_says_when_the_daemon_goes(tmux, tmp_path):
    daemon = DaemonProcess(tmp_path / "run").start()        # stopped here, not by a fixture
    try:
        err = tmp_path / "top.err"
        started = tmux("new-session", "-d", "-s", "top", "-x", "160", "-y", "30",
                       f"env XENSTORED_PATH={daemon.socket_path} TERM=xterm {TOP} --interval 0.2 "
                       f"2>{err}; echo rc=$? >>{err}")
        assert started.returncode == 0, started.stderr
        wait_for(lambda: "DOMID" in tmux.pane(), what="the table")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    wait_for(lambda: "rc=" in err.read_text(), what="top to end")
    assert err.read_text() == (f"xenstore-top: the daemon went away (its socket "
                               f"{daemon.socket_path} closed)\nrc=1\n")


def test_a_released_domain_leaves_the_view(opsd, guests, toolstack):
    guest = guests.start()
    guest.write("data/x", b"1")
    rows = by_domid(json.loads(toolstack.ok(Op.CONTROL, b"stats").rstrip(b"\0")))
    assert rows[guest.domid]["requests"] == {"WRITE": 1}
    toolstack.ok(Op.RELEASE, str(guest.domid).encode())
    wait_for(lambda: guest.domid not in by_domid(json.loads(
        toolstack.ok(Op.CONTROL, b"stats").rstrip(b"\0"))), what="the row gone")
    time.sleep(0.3)        # the guest's connection closing after the release adds nothing
    assert guest.domid not in by_domid(json.loads(toolstack.ok(Op.CONTROL, b"stats").rstrip(b"\0")))


def test_works_on_the_read_only_socket(opsd, guests, toolstack):
    """CONTROL stats changes nothing, so socket_ro answers it (docs/operators.md)."""
    made = guests.create()
    out = top(opsd, "--once", "--interval", "0.1", "--sort", "d",
              "--socket", opsd.ro_socket_path).stdout.splitlines()
    assert [int(line.split()[0]) for line in out[1:]] == [0, made.domid]
