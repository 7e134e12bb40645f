"""Watched changes made by the C request path tell every watcher what Python's would.

The engine (xsd/_native/engine.c) makes a WRITE, MKDIR, RM or SET_PERMS that
fires watches itself and leaves only the firing to Python (fastpath.py).  Two
real daemons, one with the engine and one with ``--python-requests`` (every
request through dispatch), get the same random request sequence from the
same clients: a privileged writer sending batches, a privileged watcher and
two guests on their rings that watch (relative and absolute watches, above,
on and below the nodes removed) and change their own nodes.  Every
connection must receive the same packets in the same order on both: replies
and events interleaved, SET_PERMS changing who may see a node included.
The same holds for guests creating nodes at their nodes, memory and soft
memory quotas while dom0 moves them, and the soft quota's log lines agree.
"""
import json
import random
import re
from collections import Counter

import pytest

from xenstore_protocol import Op

from tests.wire import RawClient
from xsd.hv_cli import toolstack_introduce
from xsd.hypervisor.guest_client import GuestClient, SocketClient
from xsd.hypervisor.mock import MockControl

DOM0_PATHS = [b"/w", b"/w/x", b"/w/x/y", b"/a", b"/a/b", b"/a/b/c", b"/a/b/c/d", b"/a/e",
              b"/local/domain/1/data/p", b"/local/domain/1/data/p/z", b"/local/domain/2/data/q"]
GUEST_PATHS = [b"data/p", b"data/p/z", b"data/q", b"data/q/r", b"/w/x", b"/a/b"]
DOM0_PERMS = [[b"n0"], [b"n0", b"r1"], [b"n0", b"b2"], [b"b1"], [b"n2", b"r1"], [b"r0"],
              [b"n1", b"r2"]]
WATCHES = {
    "watcher": [b"/w", b"/a/b", b"/a/b/c/d", b"/local/domain"],
    "g1": [b"data", b"/w/x", b"/a/b/c"],            # "data": relative, /local/domain/1/data
    "g2": [b"data/q", b"/w", b"/a"],
}


class RecordingGuest(GuestClient):
    """A guest on its ring that keeps every packet in arrival order, events and replies."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received = []

    def _deliver(self, data: bytes) -> None:
        for packet in self.decoder.feed(data):
            self.received.append(packet)
            (self.events if packet.op == Op.WATCH_EVENT else self.replies).append(packet)


def script(seed: int, steps: int = 150) -> list:
    """``[(sender, [(op, payload), ...]), ...]``: the dom0 writer sends batches (several
    requests in one write), the guests one request at a time."""
    rng = random.Random(seed)
    out = []
    for _ in range(steps):
        sender = rng.choice(["writer"] * 3 + ["g1", "g2"])
        guest = sender != "writer"
        batch = []
        for _ in range(1 if guest else rng.randrange(1, 6)):
            op = rng.choice([Op.WRITE] * 4 + [Op.MKDIR, Op.RM, Op.RM, Op.SET_PERMS, Op.SET_PERMS,
                                              Op.READ, Op.DIRECTORY])
            path = rng.choice(GUEST_PATHS if guest else DOM0_PATHS)
            if op == Op.WRITE:
                payload = path + b"\0" + rng.choice([b"", b"v", b"value%d" % rng.randrange(99)])
            elif op == Op.SET_PERMS:
                domid = int(sender[1:]) if guest else 0
                perms = ([b"n%d" % domid] + rng.choice([[], [b"r0"], [b"r1"], [b"b2"]])
                         if guest else rng.choice(DOM0_PERMS))
                payload = path + b"\0" + b"".join(p + b"\0" for p in perms)
            else:
                payload = path + b"\0"
            batch.append((op, payload))
        out.append((sender, batch))
    return out


def introduce_guests(proc) -> None:
    """Domains 1 and 2 made on ``proc``'s mock hypervisor and introduced by a toolstack."""
    hv = MockControl(proc.rundir)
    with SocketClient(proc.socket_path, timeout=10) as toolstack:
        for domid in (1, 2):
            row = hv.create(name="vm%d" % domid, domid=domid,
                            uuid="00000000-0000-0000-0000-00000000000%d" % domid)
            toolstack_introduce(toolstack, row)


def run(proc, steps, watches=WATCHES, reports=None) -> dict:
    """Play ``steps`` on the daemon ``proc``, ``watches`` set first: -> each connection's
    packets, in order.  ``reports``: a list that gets CONTROL memreport's lines (a dict)
    once the watches are set and again after the steps, every client still connected."""
    introduce_guests(proc)
    clients = {"writer": RawClient(proc.socket_path, timeout=10),
               "watcher": RawClient(proc.socket_path, timeout=10),
               "g1": RecordingGuest(proc.rundir, 1, timeout=10),
               "g2": RecordingGuest(proc.rundir, 2, timeout=10)}
    try:
        for name, paths in watches.items():
            for i, path in enumerate(paths):
                clients[name].ok(Op.WATCH, path, b"%s-%d" % (name.encode(), i))
        if reports is not None:
            with RawClient(proc.socket_path, timeout=10) as reporter:
                reports.append(reporter.memreport())
        for sender, batch, *end in steps:
            client = clients[sender]
            # A step with an end runs in a transaction of its own, ended so (T or F).
            tx_id = int(client.call(Op.TRANSACTION_START, b"").payload[:-1]) if end else 0
            if sender == "writer":      # the batch in one send
                req_ids = client.send_batch(batch, tx_id)
            else:
                req_ids = [client.send_packet(op, payload, tx_id) for op, payload in batch]
            for req_id in req_ids:
                client.reply(req_id)
            if end:
                client.call(Op.TRANSACTION_END, end[0], tx_id=tx_id)
        for client in clients.values():         # whatever was queued before arrives first
            client.call(Op.GET_DOMAIN_PATH, b"0")
        if reports is not None:
            with RawClient(proc.socket_path, timeout=10) as reporter:
                reports.append(reporter.memreport())
        return {name: [(p.op, p.req_id, p.tx_id, p.payload) for p in client.received]
                for name, client in clients.items()}
    finally:
        for client in clients.values():
            client.close()


def test_watchers_see_the_same_packets_with_and_without_the_engine(daemon_factory):
    steps = script(seed=17)
    with_engine = run(daemon_factory(name="engine"), steps)
    python_only = run(daemon_factory("--python-requests", name="python"), steps)
    for name in with_engine:
        assert with_engine[name] == python_only[name], name
    # The sequence is worth comparing: every watcher was told of changes of each kind.
    events = {name: [p for p in packets if p[0] == Op.WATCH_EVENT]
              for name, packets in with_engine.items()}
    assert all(len(events[name]) > 20 for name in WATCHES), {n: len(e) for n, e in events.items()}


# -- many watched changes in one batch ------------------------------------------------------

# The writer watches too: its own changes' events come before their replies, in its stream.
STORM_WATCHES = dict(WATCHES, writer=[b"/w/x", b"/a", b"/local/domain/1/data"],
                     g1=WATCHES["g1"] + [b"/a/b"])
# One send: g1 watches /a/b (token g1-3) and can read the nodes below it only through
# their parent /a/b (XSA-115), whose perms the same batch gives and takes away: each change
# is filtered by the perms of its own moment, not those at the batch's end.  The nodes'
# paths differ, so no event is coalesced with another.
PARENT_PERMS_BATCH = [
    (Op.MKDIR, b"/a/b\0"), (Op.WRITE, b"/a/b/x1\0a"), (Op.WRITE, b"/a/b/x2\0a"),
    (Op.WRITE, b"/a/b/x3\0a"), (Op.SET_PERMS, b"/a/b\0n0\0r1\0"), (Op.WRITE, b"/a/b/x1\0b"),
    (Op.SET_PERMS, b"/a/b\0n0\0"), (Op.WRITE, b"/a/b/x2\0b"),
    (Op.SET_PERMS, b"/a/b\0n0\0r1\0"), (Op.RM, b"/a/b/x3\0"), (Op.SET_PERMS, b"/a/b\0n0\0"),
    (Op.RM, b"/a/b/x2\0"), (Op.WRITE, b"/a/b/x4\0c"),
]


def storm_script(seed: int, steps: int = 40) -> list:
    """Batches of 10 to 40 requests from the writer in one send, most of them changes
    watched by several watchers (the writer itself among them), between single guest
    requests."""
    rng = random.Random(seed)
    out = [("writer", PARENT_PERMS_BATCH)]
    for sender, batch in script(seed, steps):
        if sender == "writer":
            batch = [request for _, requests in script(rng.random(), 12)
                     if _ == "writer" for request in requests][:rng.randrange(10, 41)]
        out.append((sender, batch))
    return out


def test_batches_of_watched_changes_tell_every_watcher_what_python_would(daemon_factory):
    """Three daemons: the engine firing watched changes itself (the deliveries come back with
    its batch), the engine stopping after each for Python to fire (--python-fires), and
    Python alone: every connection gets the same packets in the same order."""
    steps = storm_script(seed=5)
    fired = run(daemon_factory(name="engine"), steps, STORM_WATCHES)
    stopped = run(daemon_factory("--python-fires", name="stops"), steps, STORM_WATCHES)
    python_only = run(daemon_factory("--python-requests", name="python"), steps, STORM_WATCHES)
    for name in fired:
        assert fired[name] == python_only[name], name
        assert stopped[name] == python_only[name], name
    events = {name: [p[3] for p in packets if p[0] == Op.WATCH_EVENT]
              for name, packets in fired.items()}
    assert all(len(events[name]) > 40 for name in STORM_WATCHES), \
        {n: len(e) for n, e in events.items()}
    # The first batch: g1 saw the changes below /a/b made while it could read /a/b.
    g1 = [e for e in events["g1"] if e.endswith(b"\0g1-3\0")][:4]
    assert g1 == [b"/a/b\0g1-3\0", b"/a/b\0g1-3\0", b"/a/b/x1\0g1-3\0",
                  b"/a/b/x3\0g1-3\0"], g1


# -- guests creating nodes at their quotas ------------------------------------------------

NAMES = [b"x", b"y", b"z"]
TOKENS = [b"t", b"tok-%d" % 42, b"k" * 90]      # watch bytes: 40 + path + token each
SOFT_WARNING = re.compile(r"dom\d+: \d+ bytes of xenstore memory, over the soft quota \d+")


def quota_script(seed: int, steps: int = 220, in_transactions: bool = False) -> list:
    """Guests create, grow and remove nodes under their ``data`` dir and add and remove
    watches, in batches of up to three requests (``in_transactions``: most batches in a
    transaction, committed or not), while dom0 moves the nodes, memory and soft memory
    quotas around what they hold (about 7 nodes and 500 bytes at the start)."""
    rng = random.Random(seed)
    out = []
    for _ in range(steps):
        if rng.random() < 0.15:
            roll = rng.random()
            if roll < 0.3:
                payload = b"%d\0nodes\0%d\0" % (rng.choice([1, 2]), rng.choice([9, 11, 14, 40]))
                out.append(("writer", [(Op.SET_QUOTA, payload)]))
            elif roll < 0.6:
                payload = b"%d\0memory\0%d\0" % (rng.choice([1, 2]),
                                                 rng.choice([900, 1200, 1600, 4000]))
                out.append(("writer", [(Op.SET_QUOTA, payload)]))
            else:
                value = rng.choice([700, 1000, 1300, 2000])
                out.append(("writer", [(Op.CONTROL, b"quota-soft\0set\0memory\0%d\0" % value)]))
            continue
        batch = []
        # Each request of a batch under its own first name: no two of them can fire the
        # same event, which a watcher's batch would coalesce or not depending on how the
        # ring's reads cut the batch (timing, not the request path).
        for first in rng.sample(NAMES, rng.randrange(1, 4)):
            path = b"data/" + b"/".join([first] + [rng.choice(NAMES)
                                                   for _ in range(rng.choice([0, 0, 1, 2]))])
            op = rng.choice([Op.WRITE] * 4 + [Op.MKDIR] * 2 + [Op.RM] * 2 +
                            [Op.WATCH, Op.UNWATCH, Op.READ])
            if op == Op.WRITE:
                payload = path + b"\0" + b"v" * rng.choice([0, 5, 40, 120])
            elif op in (Op.WATCH, Op.UNWATCH):
                payload = path + b"\0" + rng.choice(TOKENS) + b"\0"
            else:
                payload = path + b"\0"
            batch.append((op, payload))
        step = (rng.choice(["g1", "g2"]), batch)
        if in_transactions and rng.random() < 0.8:
            step += (rng.choice([b"T", b"T", b"F"]),)
        out.append(step)
    return out


@pytest.mark.parametrize("in_transactions", [False, True], ids=["outside", "in-transactions"])
def test_guests_creating_at_their_quotas_get_the_same_answers_with_and_without_the_engine(
        daemon_factory, in_transactions):
    """Two daemons, with the C request path and without, under the same quotas: the guests'
    creations within them are the engine's to answer (engine.h), those past them and the
    one crossing the soft memory quota Python's; every connection gets the same packets
    (in transactions: the events at each commit too), and each daemon logs the same
    soft-quota warnings."""
    steps = quota_script(seed=23, in_transactions=in_transactions)
    args = ("--quota-nodes", "12", "--quota-memory", "1500", "-q", "memory=1100")
    engine = daemon_factory(*args, name="engine")
    python = daemon_factory(*args, "--python-requests", name="python")
    with_engine, python_only = run(engine, steps), run(python, steps)
    for name in with_engine:
        assert with_engine[name] == python_only[name], name
    warnings = [SOFT_WARNING.findall(proc.log()) for proc in (engine, python)]
    assert warnings[0] == warnings[1]
    # Worth comparing: guests' creations succeeded, and were refused at each quota.
    replies = [p for name in ("g1", "g2") for p in with_engine[name] if p[0] != Op.WATCH_EVENT]
    errors = {p[3] for p in replies if p[0] == Op.ERROR}
    assert {b"ENOSPC\0", b"ENOMEM\0"} <= errors, errors
    assert sum(1 for p in replies if p[0] in (Op.WRITE, Op.MKDIR)) > 60
    assert len(warnings[0]) >= 3, warnings[0]
    ended = sum(1 for p in replies if p[0] == Op.TRANSACTION_END)     # committed or aborted
    assert ended > 50 if in_transactions else ended == 0, ended


# -- WATCH and UNWATCH answered by the engine -------------------------------------------

WATCH_ROOTS = [b"p", b"q", b"r", b"s", b"t"]


def watch_script(seed: int, steps: int = 160) -> list:
    """Batches in which clients register and drop watches (mostly ones they hold; some
    twice: EEXIST; some unknown: ENOENT) between changes that fire them, relative and
    absolute, @names too.  Each request of a batch works under its own root and every
    registration has a token of its own, so no two events of one batch can be the same
    (a client's events coalesce within its output batch: timing, not the request path)."""
    rng = random.Random(seed)
    held = {name: [] for name in ("writer", "watcher", "g1", "g2")}
    tokens = iter(range(10 ** 6))
    out = []
    for _ in range(steps):
        sender = rng.choice(["writer", "watcher", "g1", "g2"])
        guest = sender.startswith("g")
        batch = []
        for root in rng.sample(WATCH_ROOTS, rng.randrange(1, 5)):
            home = (b"data/" if guest else b"/") + root
            path = rng.choice([home, home + b"/x", home + b"/x/y"])
            roll = rng.random()
            if roll < 0.4:
                where = rng.choice([path, path, b"/" + root, b"@releaseDomain"])
                token = b"%s-%d" % (sender.encode(), next(tokens))
                if held[sender] and rng.random() < 0.1:
                    where, token = rng.choice(held[sender])        # EEXIST
                else:
                    held[sender].append((where, token))
                batch.append((Op.WATCH, where + b"\0" + token + b"\0"))
            elif roll < 0.6:
                if held[sender] and rng.random() < 0.85:
                    where, token = held[sender].pop(rng.randrange(len(held[sender])))
                else:
                    where, token = path, b"never"                   # ENOENT
                batch.append((Op.UNWATCH, where + b"\0" + token + b"\0"))
            elif roll < 0.85:
                batch.append((Op.WRITE, path + b"\0v%d" % rng.randrange(99)))
            else:
                batch.append((rng.choice([Op.RM, Op.MKDIR]), path + b"\0"))
        out.append((sender, batch))
    return out


def c_path_counts(report: dict) -> dict:
    """memreport's "c-path-requests" line: request type name -> count."""
    return {name: int(n) for name, n in
            (item.split(":") for item in report.get("c-path-requests", "").split())}


# One watch per connection set before a watch script runs: each session's first WATCH.
FIRST_WATCHES = {"writer": [b"/p"], "watcher": [b"/q"], "g1": [b"data"], "g2": [b"/r"]}


def same_as_python(daemon_factory, steps, watches, *args):
    """Play ``steps`` (``watches`` set first) on a daemon with the C path and on one with
    every request through dispatch (both started with ``args``); every connection must get
    the same packets, and each domain's requests and events (sent, coalesced, dropped:
    CONTROL stats) must be the same counts.  -> (each connection's packets, the C daemon's
    memreports before and after the steps)."""
    reports = []
    engine = daemon_factory(*args, name="engine")
    python = daemon_factory(*args, "--python-requests", name="python")
    with_engine = run(engine, steps, watches, reports)
    python_only = run(python, steps, watches)
    for name in with_engine:
        assert with_engine[name] == python_only[name], name
    assert domain_counts(engine) == domain_counts(python)
    return with_engine, reports


def domain_counts(proc) -> dict:
    """domid -> (requests by type but CONTROL (the memreports taken on one daemon only),
    events sent/coalesced/dropped), from CONTROL stats."""
    with RawClient(proc.socket_path, timeout=10) as client:
        stats = json.loads(client.ok(Op.CONTROL, b"stats").rstrip(b"\0"))
    return {row["domid"]: ({op: n for op, n in row["requests"].items() if op != "CONTROL"},
                           row["events"]) for row in stats["domains"]}


def test_watch_and_unwatch_tell_every_client_what_python_would(daemon_factory):
    """Two daemons, one answering WATCH and UNWATCH in C (under its C watch registry) and
    one with every request through dispatch: over sockets (batches in one send) and guest
    rings, every connection gets the same packets in the same order: replies, initial
    events after their WATCH's reply, the events of changes in the same batch.  The
    daemons journal (their run directory is their state directory), so the guests'
    watches are the journal's to keep: the engine answers them too, and each session's
    first WATCH."""
    steps = watch_script(seed=11)
    with_engine, reports = same_as_python(daemon_factory, steps, FIRST_WATCHES)
    packets = [p for name in with_engine for p in with_engine[name]]
    ops = Counter(p[0] for p in packets)
    errors = Counter(p[3] for p in packets if p[0] == Op.ERROR)
    assert ops[Op.WATCH] > 100 and ops[Op.UNWATCH] > 50 and ops[Op.WATCH_EVENT] > 300, ops
    assert errors[b"EEXIST\0"] and errors[b"ENOENT\0"], errors
    # The engine answered every session's first WATCH (one each, sockets and guests).
    assert c_path_counts(reports[0]).get("WATCH") == len(FIRST_WATCHES), reports[0]


def test_a_journaled_guest_s_watches_are_the_engine_s_and_tell_what_python_would(
        daemon_factory):
    """The guests' requests of the script above, one at a time on their rings: every
    WATCH and UNWATCH the engine can answer is its own, though the daemons journal and so
    keep the guests' watches (the journal hears of each: the restart tests show it kept
    them), and every connection gets what Python's daemon sends."""
    steps = [(sender, [request]) for sender, batch in watch_script(seed=5)
             if sender.startswith("g") for request in batch]
    with_engine, reports = same_as_python(daemon_factory, steps, FIRST_WATCHES)
    counts = c_path_counts(reports[1])
    for op in (Op.WATCH, Op.UNWATCH):
        # Each alone in its batch: an OK is the engine's, an error (EEXIST, ENOENT) Python's.
        answered = sum(p[0] == op for name in ("g1", "g2") for p in with_engine[name])
        assert answered > 20, (op, answered)
        assert counts.get(op.name) == answered + (len(FIRST_WATCHES) - 2 if op == Op.WATCH else 0), \
            (op, counts)


# -- a WATCH's initial event written by the engine among its batch's replies ----------------

INLINE_STEPS = [
    # Batches of WATCHes (the writer's in one send; the others' one request at a time):
    # each event right after its reply, relative ones as given.
    ("writer", [(Op.WATCH, b"/i/a\0wa\0"), (Op.WATCH, b"/i/b\0wb"), (Op.WATCH, b"i/c\0wc\0")]),
    ("watcher", [(Op.WATCH, b"/i\0wi\0"), (Op.READ, b"/p\0")]),
    ("g1", [(Op.WATCH, b"data/z\0gz\0")]),
    ("g2", [(Op.WATCH, b"/i/a\0ga\0")]),
    ("g1", [(Op.WRITE, b"data/z\0v")]),
    ("writer", [(Op.WRITE, b"/i/a\0x"), (Op.WRITE, b"/i/b\0x")]),
    # The change in the same batch: its event, identical to the waiting initial one, is
    # coalesced with it; so is a key's second initial event in one batch.
    ("writer", [(Op.WATCH, b"/i/d\0wd\0"), (Op.WRITE, b"/i/d\0v")]),
    ("writer", [(Op.WATCH, b"/j\0t\0"), (Op.UNWATCH, b"/j\0t\0"), (Op.WATCH, b"/j\0t\0")]),
    # Past --max-watch-events (3) in one batch: the last dropped, its watch owed an event.
    ("writer", [(Op.WATCH, b"/k/%d\0t\0" % i) for i in range(4)]),
    ("writer", [(Op.WATCH, b"/l/%d\0t\0" % i) for i in range(3)]),
    ("g2", [(Op.WATCH, b"data\0g2\0")]),
    ("writer", [(Op.UNWATCH, b"/j\0t\0"), (Op.WATCH, b"@releaseDomain\0r\0")]),
]


def test_initial_events_written_by_the_engine_tell_every_client_what_python_would(
        daemon_factory):
    """Two daemons, the engine writing each WATCH's initial event among its batch's replies
    where nothing of the client waits, and Python queueing it: over sockets (batches in one
    send, replies written at once) and guest rings (relative watches, replies waiting for
    the flush), every connection gets the same packets, and the same events are counted
    sent, coalesced and dropped."""
    with_engine, reports = same_as_python(daemon_factory, INLINE_STEPS, FIRST_WATCHES,
                                          "--max-watch-events", "3")
    events = {name: [p[3] for p in packets if p[0] == Op.WATCH_EVENT]
              for name, packets in with_engine.items()}
    assert events["writer"].count(b"/i/d\0wd\0") == 1             # coalesced
    assert events["writer"].count(b"/j\0t\0") == 1
    assert b"i/c\0wc\0" in events["writer"] and b"data/z\0gz\0" in events["g1"]
    assert b"/k/3\0t\0" in events["writer"]                        # the owed one, later
    counts = c_path_counts(reports[1])
    assert counts["WATCH"] >= 15, counts
