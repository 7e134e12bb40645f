"""One test per Xen Security Advisory against xenstored that a socket client can exercise.

Each docstring says what the bug was; the test asserts xsd is not affected.
Advisories that concern unprivileged guests are exercised in tests/guests.
"""

from xenstore_protocol import Op, PAYLOAD_MAX

from tests.wire import RawClient


def check_ok(xs):
    assert xs.ok(Op.CONTROL, b"check") == b"OK\0"


def memreport(xs):
    text = xs.ok(Op.CONTROL, b"memreport").decode().rstrip("\0")
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def test_xsa_323_path_length_limits(xs):
    """XSA-323: paths longer than the protocol allows crashed oxenstored; they must be EINVAL.
    (The path-max quota, 2048 by default, is raised to reach the protocol's own limit.)"""
    xs.ok(Op.CONTROL, b"quota", b"set", b"path-max", b"4000")
    assert xs.error(Op.WRITE, payload=b"/" + b"a" * 3072 + b"\0v") == "EINVAL"
    assert xs.error(Op.WRITE, payload=b"r" * 2049 + b"\0v") == "EINVAL"
    assert xs.ok(Op.WRITE, payload=b"/" + b"a" * 3071 + b"\0v") == b"OK\0"
    check_ok(xs)


def test_xsa_324_no_event_frame_over_payload_max(daemon, xs):
    """XSA-324: a watch event for path + token over 4096 bytes was sent anyway and broke the client."""
    with RawClient(daemon.socket_path) as watcher:
        watcher.ok(Op.WATCH, b"/" + b"w" * 999, b"t" * 3000)
        watcher.wait_events(1)
        xs.ok(Op.WRITE, payload=b"/" + b"w" * 999 + b"/" + b"c" * 1000 + b"\0v")
        watcher.quiet_events(0.3)
        assert all(len(p.payload) <= PAYLOAD_MAX for p in watcher.received)
        assert watcher.ok(Op.READ, b"/tool/xenstored") == b""     # the connection still works
    check_ok(xs)


def test_xsa_326_large_rm_under_many_watches_is_bounded(daemon, xs):
    """XSA-326: watch events from a big RM were queued without limit for a client that did not read.

    100 watches on /big, each with its own 900-byte token; each round RMs a subtree of 100
    nodes under /big, which fires every watch once per node removed: 10,100 events, about
    9 MiB, for a client that never reads.  Bounded (max_watch_events in a batch and in a
    paused client's backlog, the transport's high-water mark), the daemon grows about
    3.6 MiB however many rounds come; with no per-client cap it grew 59 MiB (just short of
    the daemon-wide output budget, 64 MiB), with a transport never paused 14 MiB.  (One RM
    of 3000 watched nodes could not tell them apart: its 2.7 MiB of events, queued whole,
    were lost in the RM's own 6-9 MiB of allocator growth.)
    """
    lazy = RawClient(daemon.socket_path)
    for i in range(100):          # registered while reading; from now on it never reads
        lazy.ok(Op.WATCH, b"/big", b"%d:" % i + b"t" * 900)
        lazy.events.clear()
    rss_before = daemon.rss_kib()
    for r in range(6):
        ids = [xs.send_packet(Op.WRITE, b"/big/%d/%d\0v" % (r, i)) for i in range(100)]
        for req_id in ids:
            assert xs.reply(req_id).op == Op.WRITE
        xs.ok(Op.RM, b"/big/%d" % r)
    growth = (daemon.rss_kib() - rss_before) / 1024
    assert growth < 8, f"grew {growth:.1f} MiB"
    assert int(memreport(xs)["events-dropped"]) > 0
    check_ok(xs)
    lazy.close()


def test_xsa_330_reset_watches_frees_everything(daemon, xs):
    """XSA-330: RESET_WATCHES leaked the watches it dropped."""
    with RawClient(daemon.socket_path) as c:
        for i in range(500):
            c.send_packet(Op.WATCH, b"/r%d\0t\0" % i)
        c.send_packet(Op.TRANSACTION_START, b"\0")
        c.ok(Op.RESET_WATCHES, payload=b"")
        report = memreport(xs)
        assert report["watches"] == "0"
        assert report["transactions"] == "0"
    check_ok(xs)


def test_xsa_418_deep_tree(xs):
    """XSA-418: recursion over a deep tree overflowed the stack of xenstored."""
    path = b"/d" * 1500
    xs.ok(Op.CONTROL, b"quota", b"set", b"path-max", b"3072")   # 2048 by default
    xs.ok(Op.WRITE, payload=path + b"\0deep")
    xs.ok(Op.WATCH, b"/d", b"t")
    tx = int(xs.ok(Op.TRANSACTION_START, b"")[:-1])
    xs.ok(Op.RM, b"/d", tx_id=tx)
    xs.ok(Op.TRANSACTION_END, b"T", tx_id=tx)
    check_ok(xs)
    xs.ok(Op.WRITE, payload=path + b"\0deep")
    xs.ok(Op.RM, b"/d")
    check_ok(xs)


def test_xsa_420_ids_across_the_uint32_range(xs):
    """XSA-420: request and transaction ids near 2**32 were mishandled."""
    for req_id in (0, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
        assert xs.reply(xs.send_packet(Op.READ, b"/tool/xenstored\0", req_id=req_id)).req_id == req_id
    for tx_id in (0x80000000, 0xFFFFFFFF):
        assert xs.error(Op.READ, b"/", tx_id=tx_id) == "ENOENT"


def test_xsa_420_transaction_ids_wrap_skipping_zero_and_live_ids():
    """XSA-420 (in-process: 2**32 transactions cannot be opened over a socket in a test)."""
    from xsd.config import Config
    from xsd.core.daemon import Daemon
    from xsd.core.ops import do_transaction_start
    daemon = Daemon(Config(rundir="/nonexistent"))
    session = daemon.open_session(lambda data: None)
    session.next_tx_id = 0xFFFFFFFF
    assert do_transaction_start(daemon, session, daemon.store, b"\0", []) == b"4294967295\0"
    assert do_transaction_start(daemon, session, daemon.store, b"\0", []) == b"1\0"
    session.next_tx_id = 1
    assert do_transaction_start(daemon, session, daemon.store, b"\0", []) == b"2\0"


def test_xsa_425_release_repeated(xs):
    """XSA-425: releasing a domain twice, or while it was busy, freed its state twice."""
    xs.ok(Op.INTRODUCE, b"7", b"1", b"1")
    xs.ok(Op.WRITE, payload=b"/local/domain/7/x\0v")
    xs.ok(Op.SET_PERMS, b"/local/domain/7", b"n7")
    tx = int(xs.ok(Op.TRANSACTION_START, b"")[:-1])
    xs.ok(Op.WRITE, payload=b"/local/domain/7/y\0v", tx_id=tx)
    assert xs.ok(Op.RELEASE, b"7") == b"OK\0"
    assert xs.error(Op.RELEASE, b"7") == "ENOENT"
    assert xs.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EAGAIN"
    check_ok(xs)


def test_xsa_440_transaction_conflicting_with_deletion(xs):
    """XSA-440: a transaction committing over a node deleted meanwhile left a dangling entry."""
    xs.ok(Op.WRITE, payload=b"/x/a/b\0v")
    tx = int(xs.ok(Op.TRANSACTION_START, b"")[:-1])
    xs.ok(Op.WRITE, payload=b"/x/a/b/c\0new", tx_id=tx)
    xs.ok(Op.RM, b"/x/a")
    assert xs.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EAGAIN"
    check_ok(xs)
    xs.ok(Op.WRITE, payload=b"/y/a/b\0v")
    tx = int(xs.ok(Op.TRANSACTION_START, b"")[:-1])
    xs.ok(Op.RM, b"/y/a", tx_id=tx)
    xs.ok(Op.WRITE, payload=b"/y/a/b/c\0outside")
    assert xs.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EAGAIN"
    assert xs.ok(Op.READ, b"/y/a/b/c") == b"outside"
    check_ok(xs)


def test_xsa_481_malformed_paths(xs):
    """XSA-481: paths like "/local/domain/" (trailing slash) slipped through validation."""
    for path in (b"/local/domain/", b"/local//domain", b"local/", b"/.", b"/a/../b",
                 b"@", b"@a/b", b" /a", b"/a\n"):
        assert xs.error(Op.WRITE, payload=path + b"\0v") in ("EINVAL", "ENOENT"), path
        assert xs.error(Op.MKDIR, path) in ("EINVAL", "ENOENT"), path
    check_ok(xs)
    assert xs.ok(Op.DIRECTORY, b"/") == b"tool\0local\0"


def test_xsa_484_reset_watches_inside_a_transaction(xs):
    """XSA-484: RESET_WATCHES sent with a transaction id freed that transaction while in use."""
    tx = int(xs.ok(Op.TRANSACTION_START, b"")[:-1])
    xs.ok(Op.WRITE, payload=b"/r\0v", tx_id=tx)
    assert xs.ok(Op.RESET_WATCHES, payload=b"", tx_id=tx) == b"OK\0"
    assert xs.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "ENOENT"
    assert xs.error(Op.READ, b"/r") == "ENOENT"
    check_ok(xs)
