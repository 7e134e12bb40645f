"""Clients that misbehave: the daemon stays up, bounded, and fair to everyone else."""
import socket
import time

from xenstore_protocol import Op, Packet, join_fields

from tests.waiting import wait_for
from tests.wire import RawClient


def test_watcher_that_never_reads_cannot_grow_the_daemon(daemon, xs):
    token = b"t" * 3000        # big events fill the socket and the transport fast
    lazy = socket.socket(socket.AF_UNIX)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lazy.connect(daemon.socket_path)
    lazy.sendall(Packet(Op.WATCH, 1, 0, join_fields(b"/flood", token)).encode())
    xs.ok(Op.MKDIR, b"/flood")
    rss_before = daemon.rss_kib()
    for i in range(20000):      # distinct paths: nothing to coalesce
        xs.send_packet(Op.WRITE, b"/flood/%d\0x" % i)
        if i % 500 == 499:
            while xs.replies or xs._pump(0):   # keep our own socket drained
                xs.replies.clear()
    # A READ on the same connection is answered after every write before it.
    assert xs.ok(Op.READ, b"/flood/19999") == b"x"
    wait_for(lambda: int(xs.memreport()["events-dropped"]) > 0, what="events to be dropped")
    report = xs.memreport()
    growth_mib = (daemon.rss_kib() - rss_before) / 1024
    assert int(report["events-dropped"]) > 0
    # 20000 events of 3 KiB = 60 MiB if held; the bounds keep it near 1 MiB + 1024 events.
    assert growth_mib < 24, f"daemon grew {growth_mib:.1f} MiB"
    assert xs.ok(Op.READ, b"/flood/19999") == b"x"
    xs.check()
    lazy.close()


def test_client_that_never_reads_replies_is_paused_not_buffered(daemon, xs):
    xs.ok(Op.WRITE, payload=b"/big\0" + b"v" * 4000)
    greedy = socket.socket(socket.AF_UNIX)
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.connect(daemon.socket_path)
    greedy.setblocking(False)
    request = Packet(Op.READ, 7, 0, b"/big\0").encode()
    rss_before = daemon.rss_kib()
    sent = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sent < 20000:   # 80 MB of replies if all were held
        try:
            greedy.send(request * 50)
            sent += 50
        except BlockingIOError:
            time.sleep(0.01)     # the daemon stopped reading us: exactly the point
            if time.monotonic() > deadline - 4:
                break
    growth_mib = (daemon.rss_kib() - rss_before) / 1024
    assert growth_mib < 16, f"daemon grew {growth_mib:.1f} MiB"
    assert xs.ok(Op.READ, b"/tool/xenstored") == b""     # others are still served
    greedy.close()


def test_garbage_bytes_close_only_that_connection(daemon, xs):
    with RawClient(daemon.socket_path) as bad:
        bad.sock.sendall(b"\xff" * 64)
        try:
            while bad._pump(1):
                pass
        except ConnectionResetError:
            pass
    xs.check()
    assert xs.ok(Op.READ, b"/local/domain/0/name") == b"Domain-0"


def test_many_connections_come_and_go(daemon, xs):
    for _ in range(200):
        with RawClient(daemon.socket_path) as c:
            c.ok(Op.WATCH, b"/cg", b"t")
            c.send_packet(Op.TRANSACTION_START, b"\0")
    wait_for(lambda: xs.memreport()["connections"] == "1",   # closes are noticed asynchronously
             what="the closed connections to go", interval=0.05)
    report = xs.memreport()
    assert report["connections"] == "1"
    assert report["watches"] == "0"
    assert report["transactions"] == "0"


def test_dropped_events_are_never_silent(daemon_factory):
    """Over the per-client bound, events are dropped, and the watch gets one event on its own path."""
    proc = daemon_factory("--max-watch-events", "10")
    with RawClient(proc.socket_path) as writer, RawClient(proc.socket_path) as watcher:
        watcher.ok(Op.WATCH, b"/m", b"tok")
        assert watcher.wait_events(1) == [(b"/m", b"tok")]
        tx = int(writer.ok(Op.TRANSACTION_START, b"")[:-1])
        for i in range(50):
            writer.ok(Op.WRITE, payload=b"/m/%d\0v" % i, tx_id=tx)
        writer.ok(Op.TRANSACTION_END, b"T", tx_id=tx)
        events = watcher.wait_events(11)
        assert events[:10] == [(b"/m/%d" % i, b"tok") for i in range(10)]
        assert events[10:] == [(b"/m", b"tok")]      # "re-read below /m"
        assert watcher.quiet_events() == []
