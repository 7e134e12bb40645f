"""Issue 12, second hardening pass: what a hostile guest could still make the daemon hold or do.

Each test drives a real daemon, the attacker a guest over its ring, and bounds
what the attack costs (memory, work) instead of timing it.
"""
import os
import socket
import time

import pytest

from xenstore_protocol import Op, Packet, join_fields

from tests.guests.conftest import Guests, memreport
from tests.waiting import wait_for
from tests.wire import RawClient
from xsd.hypervisor.guest_client import SocketClient
from xsd.hypervisor.mock import MockControl

DEEP = "/a" * 1520          # below a short prefix: about 3 KB, some 1,525 levels


def allow_deep_paths(daemon) -> None:
    """These attacks use paths of about 3 KB: past the path-max quota (2048, as C xenstored),
    up to the protocol's own limit (XENSTORE_ABS_PATH_MAX, 3072)."""
    with RawClient(daemon.socket_path) as xs:
        assert xs.ok(Op.CONTROL, b"quota\0set\0path-max\0003072") == b"OK\0"


def cpu_seconds(daemon) -> float:
    """User + system CPU the daemon process has used (/proc/<pid>/stat, clock ticks)."""
    with open(f"/proc/{daemon.proc.pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_missing_until_refused(guest, tx, prefix, attempts):
    """READ distinct missing deep paths in transaction ``tx``: how many were answered before ENOSPC."""
    for i in range(attempts):
        error = guest.error(Op.READ, f"/{prefix}{i}{DEEP}".encode(), tx_id=tx)
        if error == "ENOSPC":
            return i
        assert error == "EACCES"        # the root is not readable by a guest
    return None


def test_reads_of_missing_paths_in_transactions_are_bounded(daemon, guests, toolstack):
    """Item 1: every path a transaction looked at was kept, reads of missing paths and the
    ancestors checked for their error included: 2.4 MB per READ of a missing deep path,
    without limit.  Now each, ancestors included, counts against transaction-nodes (C
    xenstored's accounting)."""
    allow_deep_paths(daemon)
    guest = guests.start()
    rss_before = daemon.rss_kib()
    txs = [guest.transaction_start() for _ in range(10)]    # the transactions quota
    for n, tx in enumerate(txs):
        # C xenstored counts each missing ancestor it looks at (core.c ask_parents reads them
        # one level up at a time): a READ of a missing 1,521-level path uses up the 1,024
        # by itself, then ENOSPC.
        assert read_missing_until_refused(guest, tx, f"z{n}-", 150) == 0
        assert guest.error(Op.READ, b"/more" + DEEP.encode(), tx_id=tx) == "ENOSPC"
    growth = (daemon.rss_kib() - rss_before) / 1024
    # 10 transactions x 1024 nodes x 3 KB paths at most, plus the interpreter's slack.
    assert growth < 48, f"grew {growth:.0f} MiB"
    for tx in txs:
        guest.transaction_end(tx, commit=False)
    tx = guest.transaction_start()                 # a fresh transaction starts from nothing
    shallower = "/a" * 600                         # 601 nodes looked at: within the 1,024
    assert guest.error(Op.READ, f"/again{shallower}".encode(), tx_id=tx) == "EACCES"
    assert guest.error(Op.READ, f"/more{shallower}".encode(), tx_id=tx) == "ENOSPC"
    guest.transaction_end(tx)
    assert toolstack.ok(Op.CONTROL, b"check") == b"OK\0"


def test_transaction_nodes_quota_leaves_dom0_unlimited(guests, toolstack):
    """C xenstored applies transaction-nodes to unprivileged domains only."""
    guests.start()
    tx = toolstack.transaction_start()
    for i in range(1100):
        assert toolstack.error(Op.READ, b"/none%d" % i, tx_id=tx) == "ENOENT"
    toolstack.write("/dom0-tx", b"v", tx_id=tx)
    toolstack.transaction_end(tx)
    assert toolstack.read("/dom0-tx") == b"v"


def test_transaction_nodes_quota_counts_what_a_guest_reads_and_writes(guests, toolstack):
    """Reads and writes share the quota; a refused write leaves nothing behind."""
    guest = guests.start()
    toolstack.ok(Op.SET_QUOTA, str(guest.domid).encode(), b"transaction-nodes", b"20")
    tx = guest.transaction_start()
    for i in range(10):
        assert guest.error(Op.READ, b"data/r%d" % i, tx_id=tx) == "ENOENT"
    # data/w/x/y needs data/w/x/y, data/w/x, data/w, data: the quota runs out midway.
    outcomes = [guest.call(Op.WRITE, payload=b"data/w%d/x/y\0v" % i, tx_id=tx).payload
                for i in range(5)]
    assert b"ENOSPC\0" in outcomes
    guest.transaction_end(tx)
    assert guest.directory("data") == [f"w{i}" for i, o in enumerate(outcomes) if o == b"OK\0"]
    assert toolstack.ok(Op.CONTROL, b"check") == b"OK\0"


def test_a_missing_deep_path_costs_what_its_size_does(daemon, guests, toolstack):
    """Item 11: a guest's READ of a missing 1,535-level path walked up every ancestor,
    building and hashing each prefix (quadratic): 23 times a normal request's CPU.
    Compared with a READ of an existing path as deep, in the same run (daemon CPU time)."""
    allow_deep_paths(daemon)
    guest = guests.start()
    home = f"/local/domain/{guest.domid}"
    existing = f"{home}/d{DEEP}"
    toolstack.write(existing, b"v")                 # inherits the home's perms: the guest reads it
    missing = f"/z{DEEP}".encode()
    spent = {"existing": 0.0, "missing": 0.0, "refused write": 0.0}
    requests = (("existing", Op.READ, existing.encode() + b"\0", None),
                ("missing", Op.READ, missing + b"\0", "EACCES"),
                # The same walk up, in creating a node's missing ancestors (a sibling).
                ("refused write", Op.WRITE, missing + b"\0v", "EACCES"))
    for _ in range(4):
        for name, op, payload, want in requests:
            before = cpu_seconds(daemon)
            for _ in range(250):
                reply = guest.call(op, payload=payload)
                assert (reply.payload[:-1].decode() if reply.op == Op.ERROR else None) == want
            spent[name] += cpu_seconds(daemon) - before
    assert spent["missing"] < 2.5 * spent["existing"], spent
    assert spent["refused write"] < 2.5 * spent["existing"], spent


def test_rewriting_one_node_in_a_transaction_holds_one_event(daemon, guests, toolstack):
    """Item 2: each WRITE, RM or SET_PERMS in a transaction appended a watch event, no cap,
    no merging: 175,000 rewrites of one 2 KB-named node held 369 MiB.  Now one pending
    event per node, and the commit fires it once."""
    guest = guests.start()
    name = "data/" + "n" * 2000
    guest.write(name, b"0")
    guest.watch(name, b"w")
    assert guest.wait_events(1) == [(name.encode(), b"w")]      # a relative watch
    rss_before = daemon.rss_kib()
    tx = guest.transaction_start()
    for i in range(3000):
        reqs = [guest.send_packet(Op.WRITE, name.encode() + b"\0%d" % i, tx_id=tx)]
        if i % 3 == 2:
            reqs.append(guest.send_packet(Op.SET_PERMS, name.encode() + b"\0b%d\0" % guest.domid,
                                          tx_id=tx))
            reqs.append(guest.send_packet(Op.RM, name.encode() + b"\0", tx_id=tx))
        for req in reqs:
            assert guest.reply(req).op != Op.ERROR
    growth = (daemon.rss_kib() - rss_before) / 1024
    guest.transaction_end(tx)
    assert growth < 4, f"grew {growth:.1f} MiB"     # 3000 events of 2 KB each: 6 MiB and more
    assert guest.quiet_events(0.3) == [(name.encode(), b"w")]
    assert toolstack.ok(Op.CONTROL, b"check") == b"OK\0"


def test_deep_watches_cost_about_their_size(daemon, guests, toolstack):
    """Item 8: a watch on a 1,535-level path held a trie node per level, about 100 KiB:
    128 such watches cost a guest 12.9 MiB, 25 times what its requests carried."""
    allow_deep_paths(daemon)
    guest = guests.start()
    guest.watch("data", b"warm-up")                 # the session's first watch allocates more
    guest.wait_events(1)
    rss_before = daemon.rss_kib()
    sent = 0
    for i in range(127):                            # the watches quota (128)
        path = f"/w{i:03d}" + "/a" * 1533           # 3,071 bytes, 1,534 levels
        guest.watch(path, b"t")
        sent += len(path) + 2
    growth = (daemon.rss_kib() - rss_before) * 1024
    assert growth < 5 * sent, f"{growth / 127:.0f} bytes per watch of {sent / 127:.0f}"
    assert len(guest.wait_events(127)) == 127       # each watch's first event
    toolstack.write("/w005", b"")
    toolstack.set_perms("/w005", "n0", f"r{guest.domid}")   # what is made below, it may read
    toolstack.write("/w005" + "/a" * 1533, b"x")   # and the watches still fire
    assert guest.wait_events(1) == [(("/w005" + "/a" * 1533).encode(), b"t")]
    assert toolstack.ok(Op.CONTROL, b"check") == b"OK\0"


def test_deep_watches_fire_exactly_as_shallow_ones(xs, daemon):
    """Deep watches are filed in the trie under a cut path (item 8): what matches there is
    checked against the full path, so writes beside them stay silent and removals reach them."""
    base = "/d" + "/a" * 40
    with RawClient(daemon.socket_path) as watcher:
        for name, token in (("w", b"tw"), ("v", b"tv")):
            watcher.ok(Op.WATCH, f"{base}/{name}".encode(), token)
        assert len(watcher.wait_events(2)) == 2
        xs.ok(Op.WRITE, payload=f"{base}/w/x\0".encode())
        xs.ok(Op.WRITE, payload=f"{base}/v\0".encode())
        xs.ok(Op.WRITE, payload=f"{base}/u\0".encode())     # beside both: no event
        assert watcher.quiet_events() == [(f"{base}/w/x".encode(), b"tw"), (f"{base}/v".encode(), b"tv")]
        xs.ok(Op.RM, f"{base}/w/x".encode())
        assert watcher.quiet_events() == [(f"{base}/w/x".encode(), b"tw")]
        xs.ok(Op.RM, "/d/a/a".encode())                   # above the cut: each sees its own path
        assert watcher.quiet_events() == [(f"{base}/w".encode(), b"tw"), (f"{base}/v".encode(), b"tv")]
        watcher.ok(Op.UNWATCH, f"{base}/w".encode(), b"tw")
        xs.ok(Op.WRITE, payload=f"{base}/w\0".encode())
        assert watcher.quiet_events() == []
        xs.check()


def _stuck_watchers(daemon, count, token):
    """``count`` dom0 connections that watch / and never read again (a small receive buffer)."""
    stuck = []
    for i in range(count):
        sock = socket.socket(socket.AF_UNIX)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(daemon.socket_path)
        sock.sendall(Packet(Op.WATCH, 1, 0, join_fields(b"/", token + b"%d" % i)).encode())
        stuck.append(sock)
    return stuck


def write_under_stuck_watchers(xs, count: int) -> None:
    """WRITE /s/0 .. /s/<count-1>, taking the replies as they come; dom0 must still be served."""
    for i in range(count):
        xs.send_packet(Op.WRITE, b"/s/%d\0x" % i)
        if i % 100 == 99:
            while xs.replies or xs._pump(0):
                xs.replies.clear()
    assert xs.ok(Op.READ, b"/s/%d" % (count - 1)) == b"x"


def test_output_held_for_stuck_clients_is_bounded_in_total(daemon_factory):
    """Item 7: output held for clients that do not read was bounded per connection only:
    500 such watchers of / with 1 KB tokens held 1.5 GB.  Beyond a daemon-wide budget,
    their events are dropped (each watch owed one event on its own path), counted, and
    the log says which connections are stuck, once per connection per interval."""
    daemon = daemon_factory("--no-persist", "--out-high-water", "65536",
                            "--out-budget", str(4 << 20))
    with RawClient(daemon.socket_path) as xs:
        rss_before = daemon.rss_kib()
        stuck = _stuck_watchers(daemon, 48, b"t" * 2000)
        write_under_stuck_watchers(xs, 1500)        # 72,000 events of 2 KB offered
        growth = (daemon.rss_kib() - rss_before) / 1024
        report = xs.memreport()
        # Per connection alone: 64 KiB of transport + 1024 events of 2 KB each, 2.1 MiB x 48.
        assert growth < 24, f"grew {growth:.0f} MiB"
        assert int(report["events-dropped"]) > 0
        stuck_lines = [line for line in daemon.log().splitlines() if "not reading" in line]
        assert 0 < len(stuck_lines) <= 2 * 48, stuck_lines[:3]
        for sock in stuck:
            sock.close()
        xs.check()


def test_output_the_transports_hold_is_in_the_budget_too(daemon_factory):
    """Item 7, the rest: below its high-water mark a socket transport is never paused, so
    what 100 stuck watchers' transports held was bounded per connection only (100 x 4 MiB
    here).  The transports' real buffered bytes count in the budget: once it is spent, an
    event for a client whose transport still holds output is dropped (its watch owed one
    event), so growth is the budget plus a small constant per connection."""
    daemon = daemon_factory("--no-persist", "--out-high-water", str(4 << 20),
                            "--out-budget", str(16 << 20))
    with RawClient(daemon.socket_path, timeout=60) as xs, \
            RawClient(daemon.socket_path) as late:
        late.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        late_token = b"L" * 1024
        late.ok(Op.WATCH, b"/", late_token)
        rss_before = daemon.rss_kib()
        stuck = _stuck_watchers(daemon, 99, b"t" * 1024)
        write_under_stuck_watchers(xs, 5000)        # 500,000 events of 1 KB offered
        growth = (daemon.rss_kib() - rss_before) / 1024
        # Per connection alone: 4 MiB of transport each, 400 MiB.
        assert growth < 16 + 100 * 0.25 + 16, f"grew {growth:.0f} MiB"
        assert int(xs.memreport()["events-dropped"]) > 0
        assert "not reading" in daemon.log()
        # A client that reads again gets, once it has read all, its watch's catch-up
        # event, though nothing fires any more: its transport told when it drained.
        events = []
        while more := late.quiet_events(0.5):
            events += more
        assert events[-1] == (b"/", late_token) and len(events) < 5001
        for sock in stuck:
            sock.close()
        xs.check()


def test_output_waiting_for_stuck_guests_is_in_the_budget_too(daemon_factory):
    """The same for guests: what waits for a guest that never consumes its response ring
    counted only once the guest was paused, past its high-water mark (16 x 4 MiB here)."""
    daemon = daemon_factory("--no-persist", "--out-high-water", str(4 << 20),
                            "--out-budget", str(2 << 20))
    with SocketClient(daemon.socket_path, timeout=60) as ts:
        made = Guests(daemon, MockControl(daemon.rundir), ts)
        try:
            ts.write("/s")
            ts.set_perms("/s", "r0")                # every guest may read what is made below
            stuck = [made.start() for _ in range(16)]
            for i, guest in enumerate(stuck):       # they never consume from now on
                guest.send_packet(Op.WATCH, b"/s\0" + b"g%d" % i + b"t" * 1024 + b"\0")
            rss_before = daemon.rss_kib()
            for i in range(5000):                   # 80,000 events of 1 KB offered
                ts.send_packet(Op.WRITE, b"/s/%d\0x" % i)
                if i % 100 == 99:
                    ts.reply()                      # all before it answered too
            assert ts.read("/s/4999") == b"x"
            growth = (daemon.rss_kib() - rss_before) / 1024
            assert growth < 2 + 16 * 0.25 + 8, f"grew {growth:.0f} MiB"
            assert int(memreport(ts)["events-dropped"]) > 0
            events = []                             # one reads again: its catch-up event last
            while more := stuck[0].quiet_events(0.5):
                events += more
            assert events[-1] == (b"/s", b"g0" + b"t" * 1024) and len(events) < 5001
            assert ts.ok(Op.CONTROL, b"check") == b"OK\0"
        finally:
            made.close()


def test_a_stuck_client_that_reads_again_gets_the_catch_up_event(daemon_factory):
    """Events dropped for the daemon-wide budget are never silent."""
    daemon = daemon_factory("--no-persist", "--out-high-water", "65536",
                            "--out-budget", str(1 << 20))
    with RawClient(daemon.socket_path) as xs, RawClient(daemon.socket_path) as late:
        late.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        token = b"L" * 2000
        late.ok(Op.WATCH, b"/s", token)
        stuck = _stuck_watchers(daemon, 8, b"t" * 2000)
        for i in range(600):
            xs.ok(Op.WRITE, payload=b"/s/%d\0x" % i)
        assert int(xs.memreport()["events-dropped"]) > 0
        events = []
        while True:
            more = late.quiet_events(0.5)
            if not more:
                break
            events += more
        assert events[-1] == (b"/s", token)        # "re-read below /s"
        assert len(events) < 601
        for sock in stuck:
            sock.close()


def test_a_transaction_doomed_by_a_live_update_stays_bounded(daemon, guests):
    """A sibling of item 1: a guest's transaction comes back from a live update doomed
    (its commit answers EAGAIN); until then it still reads, within transaction-nodes."""
    allow_deep_paths(daemon)
    guest = guests.start()
    tx = guest.transaction_start()
    with RawClient(daemon.socket_path, timeout=30) as c:
        assert c.ok(Op.CONTROL, b"live-update") == b"OK\0"
        deadline = time.monotonic() + 30
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            while time.monotonic() < deadline:
                c._pump(1.0)                        # until the old process closes it
    wait_for(lambda: "live update: restored from pid" in daemon.log(), 30, "the live update")
    answered = read_missing_until_refused(guest, tx, "lu", 150)
    assert answered is not None, "150 missing deep paths read in a doomed transaction"
    assert guest.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EAGAIN"
    with RawClient(daemon.socket_path) as c:
        c.check()
