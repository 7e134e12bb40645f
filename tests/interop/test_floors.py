"""The benchmark floors (bench/floors/) serve what bench/bench_floors.py asks of them.

Each floor must carry every one-client test of the anchors' load generator (xsbench over
Debian's libxenstore) to the end, and its minimal watch table must send the events
xsbench's watch:W waits for and no others. Nothing here is timed: the rates are
bench_floors.py's business.
"""
import os
import subprocess
import sys

import pytest

from bench.bench_floors import FLOORS, Floor
from bench.bench_requests import build_xsbench
from tests import anchors
from tests.wire import RawClient
from xenstore_protocol import Op

ONE_CLIENT_TESTS = ["rw", "dir", "tx", "watch:10", "watch:10000"]
# One figure per test that xsbench prints only once the test's last check passed.
LAST_FIGURE = {"rw": "create_spread_ops_per_s", "dir": "dir1000_ops_per_s",
               "tx": "tx_ops_per_s", "watch:10": "watch_W10_events_per_s",
               "watch:10000": "watch_W10000_events_per_s"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not os.path.isfile(os.path.join(anchors.ANCHORS, "xsbench.c")):
        pytest.skip(f"no {anchors.ANCHORS}/xsbench.c")
    work = str(tmp_path_factory.mktemp("floors"))
    floor_c = os.path.join(work, "floor_c")
    # Under ASan/UBSan, so a memory error or undefined behaviour in the C floor's watch
    # table ends it, and the check at the end of each test sees it gone.
    subprocess.run(["gcc", "-O1", "-g", "-Wall", "-Werror", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", "-o", floor_c,
                    os.path.join(FLOORS, "floor_c.c")], check=True)
    return {"xsbench": build_xsbench(work), "c-floor": [floor_c],
            "uvloop-floor": [sys.executable, os.path.join(FLOORS, "floor_uvloop.py")]}


@pytest.fixture(params=["c-floor", "uvloop-floor"])
def floor(request, built, tmp_path):
    responder = Floor(built[request.param], str(tmp_path / "run"))
    yield responder
    alive = responder.proc.poll() is None
    responder.stop()
    assert alive, f"{request.param} died"


def test_each_floor_serves_every_one_client_xsbench_test(floor, built):
    env = dict(os.environ, XENSTORED_PATH=floor.socket_path)
    run = subprocess.run([built["xsbench"], "-n", "200", *ONE_CLIENT_TESTS], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    printed = {line.split()[0] for line in run.stdout.splitlines()}
    assert set(LAST_FIGURE.values()) <= printed, run.stdout


def test_floor_replies_have_the_real_shapes(floor):
    with RawClient(floor.socket_path) as client:
        listing = client.ok(Op.DIRECTORY, b"/bench/dir")
        assert listing.split(b"\0")[:-1] == [b"%d" % i for i in range(1000)]
        first, second = (int(client.ok(Op.TRANSACTION_START, b"").rstrip(b"\0")) for _ in range(2))
        assert 0 < first != second
        assert client.ok(Op.TRANSACTION_END, b"T", tx_id=first) == b"OK\0"
        assert len(client.ok(Op.READ, b"/bench/rw/k0")) == 31


def test_floor_watch_table_sends_the_events_xsbench_waits_for_and_no_others(floor):
    with RawClient(floor.socket_path) as watcher, RawClient(floor.socket_path) as writer:
        assert watcher.ok(Op.WATCH, b"/w/0", b"t0") == b"OK\0"
        assert watcher.ok(Op.WATCH, b"/w/1", b"t1") == b"OK\0"
        assert watcher.ok(Op.WATCH, b"/", b"root") == b"OK\0"
        assert watcher.wait_events(3) == [(b"/w/0", b"t0"), (b"/w/1", b"t1"), (b"/", b"root")]

        def events_after(*writes, tx_id=0):
            """The watcher's events for the writer's writes: the floor writes them before
            the writer's reply, so one round trip of the watcher's after it collects them all."""
            for path in writes:
                writer.ok(Op.WRITE, payload=path + b"\0v", tx_id=tx_id)
            watcher.ok(Op.READ, b"/w/0")
            events, watcher.events = watcher.events, []
            return [tuple(e.payload.split(b"\0")[:2]) for e in events]

        assert events_after(b"/w/0") == [(b"/w/0", b"t0"), (b"/w/0", b"root")]
        assert events_after(b"/w/0/x", b"/w/10", b"/x") == [
            (b"/w/0/x", b"t0"), (b"/w/0/x", b"root"), (b"/w/10", b"root"), (b"/x", b"root")]
        assert events_after(b"/w/0", tx_id=7) == []            # fires at commit: ignored
        assert watcher.ok(Op.UNWATCH, b"/w/0", b"t0") == b"OK\0"
        assert watcher.ok(Op.UNWATCH, b"/", b"root") == b"OK\0"
        assert events_after(b"/w/0", b"/w/1") == [(b"/w/1", b"t1")]

        # A watch on the writer's own connection comes after the write's reply.
        writer.ok(Op.WATCH, b"/w/1", b"mine")
        assert writer.wait_events(1) == [(b"/w/1", b"mine")]
        assert writer.ok(Op.WRITE, payload=b"/w/1\0v") == b"OK\0"
        assert writer.wait_events(1) == [(b"/w/1", b"mine")]
        assert [p.op for p in writer.received[-2:]] == [Op.WRITE, Op.WATCH_EVENT]
        # The watcher goes with its watch on /w/1: the floor goes on serving the writer.
        watcher.close()
        for _ in range(3):
            assert writer.ok(Op.WRITE, payload=b"/w/1\0v") == b"OK\0"
            assert writer.wait_events(1) == [(b"/w/1", b"mine")]
