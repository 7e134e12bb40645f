"""The C request path (xsd/_native/engine.c) against xsd's own Python core as oracle.

The engine runs over a C node store and the oracle daemon's own C watch trie;
the oracle is an in-process ``xsd.core.daemon.Daemon`` (the same object the
server runs) fed the same packets.  Every packet the engine answers must get
the oracle's reply bytes exactly; a packet it leaves to Python must not have
changed the C store, and must be one Python answers with an error or one the
engine is documented to leave (engine.h): a crossing of the soft memory quota
(Python's log, told by Quotas.soft_warned changing), an owner it does not
know.  Guests create nodes at their nodes, memory and soft memory quotas with
watches of their own counting.  What the engine answered leaves
Quotas.soft_warned as it was.  A change that may fire watches is made in C and described
(STOP_EVENTS): the watchers (privileged and guests, relative watches too) get
from the oracle daemon firing that description exactly what they got from
the oracle handling the packet.  After every batch both stores hold the same
nodes: path, value, permissions, children in order and generation.
"""
import random
import struct
from collections import Counter

import pytest

from xenstore_protocol import Decoder, Op, Packet
from xenstore_protocol.paths import canonicalize
from xsd._native import BACKEND
from xsd.config import Config
from xsd.core import fastpath
from xsd.core.daemon import Daemon, Host, Listener
from xsd.core.store import Store

if BACKEND != "cffi":
    pytest.skip("the engine is the C build's (XSD_NATIVE=python)", allow_module_level=True)
from xsd._native import WatchTrie                # noqa: E402
from xsd._native.engine import (MUTATE, REPLY_MAX, STOP_BAD, STOP_DONE,  # noqa: E402
                                STOP_EVENTS, STOP_FULL, STOP_PYTHON, Engine, delivery_groups)
from xsd._native.watchreg import NativeWatchRegistry, deliveries  # noqa: E402
from xsd._native.store import NodeStore          # noqa: E402
from xsd.core.cstore import CStore               # noqa: E402
from xsd.core.events import CHANGE, REMOVE       # noqa: E402

ENGINE_OPS = {Op.READ, Op.DIRECTORY, Op.DIRECTORY_PART, Op.GET_PERMS,
              Op.WRITE, Op.MKDIR, Op.RM, Op.SET_PERMS}
MUTATING = {Op.WRITE, Op.MKDIR, Op.RM, Op.SET_PERMS}
EXISTING_DOMAINS = {1, 2, 3, 7}     # the hypervisor's; the engine is told of 1, 2, 3 only


class FakeHypervisorHost(Host):
    """The hypervisor lists EXISTING_DOMAINS (Daemon.domain_exists asks it)."""

    def domain_info(self, domid):
        return object() if domid in EXISTING_DOMAINS else None


class Pair:
    """One oracle daemon and one engine over a C store, kept in step.

    The engine's conns learn what binds their sessions as the daemon's FastPath
    makes them (``fastpath.configure``), and when it does: the oracle daemon's
    own hooks (``Daemon.state_changed``, ``Quotas.warned_changed``,
    ``Daemon.watches_changed``) mark them stale, and ``run_batch`` reconfigures
    stale ones before each run, so a hook that fails to fire shows as a reply
    that differs."""

    def __init__(self):
        # The oracle runs on the Python store, whatever the backend (XSD_NATIVE).
        self.daemon = Daemon(Config(rundir="/nonexistent", no_domain_init=True),
                             host=FakeHypervisorHost(), store=Store())
        self.epoch = 0
        self.daemon.fastpath = self             # its state_changed reaches us
        self.daemon.quotas.warned_changed = self.state_changed
        self.store = CStore()       # its _decode_perms gives Perm entries, as the daemon's
        self.store.keep_listings(1)     # DIRECTORY, DIRECTORY_PART from kept listings
        # The engine borrows the oracle's watch trie: watches registered through the
        # daemon's WATCH handler are exactly what the engine sees.
        self.engine = Engine(self.store.handle, self.daemon.watches.trie.handle)
        for domid in (1, 2, 3):
            self.engine.domain_known(domid, True)
        self.sessions = {}
        self.watchers = ("watcher", "gwatch1", "gwatch2")    # sessions that only watch
        self.session("watcher", 0, privileged=True)
        self.session("gwatch1", 1)
        self.session("gwatch2", 2)
        self.events = {}            # watcher -> event bytes the last oracle call gave it
        self.fired = 0              # watchers told of a change the engine made

    def session(self, name, domid, privileged=False, read_only=False, target=None):
        out = []
        s = self.daemon.open_session(out.append, domid=domid, privileged=privileged,
                                     read_only=read_only, name=name)
        s.target = target
        self.sessions[name] = (s, self.engine.conn(), out)
        return name

    def state_changed(self):
        """FastPath.state_changed: every conn relearns its session."""
        self.epoch += 1

    def conn(self, name):
        """The conn of session ``name``, configured as FastPath.serve would before a run."""
        s, conn, _ = self.sessions[name]
        if s.native_epoch != self.epoch:
            fastpath.configure(conn, self.daemon.quotas, s)
            s.native_epoch = self.epoch
        return conn

    def oracle(self, name, packet):
        """The oracle's reply packets to ``packet``; the watch events every session got
        (the requester's own included) are in ``events``."""
        self.daemon.handle(self.sessions[name][0], packet)
        self.daemon.flush()
        return self._take_output(name)

    def fire(self, event):
        """The oracle daemon fires ``event``; -> what each session got."""
        self.daemon.fire((event,))
        self.daemon.flush()
        self._take_output(None)
        return dict(self.events)

    def _take_output(self, name):
        """Each session's output since the last call: its watch events into ``events``;
        the rest, ``name``'s replies, returned."""
        replies = b""
        for session_name, (_, _, out) in self.sessions.items():
            data = b"".join(out)
            out.clear()
            events = b""
            if data:
                for packet in Decoder().feed(data):
                    if packet.op == Op.WATCH_EVENT:
                        events += packet.encode()
                    elif session_name == name:
                        replies += packet.encode()
            self.events[session_name] = events
        return replies

    def engine_event(self):
        return self.engine.event(self.store._decode_perms, CHANGE, REMOVE)

    def both(self, name, packets):
        """Run ``packets`` through the engine (privileged setup traffic): all must be answered
        and agree with the oracle."""
        data = b"".join(p.encode() for p in packets)
        consumed, out, _, handled, stop = self.engine.run(self.conn(name), data, MUTATE)
        assert (consumed, stop, handled) == (len(data), STOP_DONE, len(packets))
        assert out == b"".join(self.oracle(name, p) for p in packets)

    def c_nodes(self):
        nodes, stack = {}, ["/"]
        while stack:
            path = stack.pop()
            node = NodeStore.get(self.store, path, True)
            nodes[path] = (node.value, tuple(node.perms), list(node.children), node.gen)
            stack.extend(path.rstrip("/") + "/" + name for name in node.children)
        return nodes

    def oracle_nodes(self):
        return {path: (n.value, tuple(tuple(p) for p in n.perms), list(n.children), n.gen)
                for path, n in self.daemon.store.items()}

    def assert_same_stores(self):
        assert self.c_nodes() == self.oracle_nodes()
        assert self.store.check() == []


def boot(pair):
    """C xenstored's initial tree and a home for each guest, through the engine (the
    oracle wrote /tool/xenstored itself: Daemon.init_tree)."""
    pair.session("dom0", 0, privileged=True)
    init = Packet(Op.WRITE, 1, 0, b"/tool/xenstored\0").encode()
    assert pair.engine.run(pair.conn("dom0"), init, MUTATE)[3:] == (1, STOP_DONE)
    pair.assert_same_stores()
    pair.both("dom0", [
        Packet(Op.WRITE, 2, 0, b"/local/domain/0/name\0Domain-0"),
        Packet(Op.WRITE, 3, 0, b"/local/domain/0/domid\x000"),
        *(Packet(Op.MKDIR, 10 + d, 0, b"/local/domain/%d\0" % d) for d in (1, 2, 3)),
        *(Packet(Op.SET_PERMS, 20 + d, 0, b"/local/domain/%d\0n%d\0r0\0" % (d, d))
          for d in (1, 2, 3)),
    ])
    pair.assert_same_stores()


# -- the random differential test ---------------------------------------------------

ABSOLUTE = ["/a", "/a/b", "/a/b/c", "/a/c", "/b", "/w", "/w/x", "/w/x/y", "/local/domain/1/a",
            "/local/domain/1/a/b", "/local/domain/2/a", "/local/domain/0/name", "/tool/xenstored",
            "/local/domain/3", "/"]
RELATIVE = ["a", "a/b", "data", "a/b/c"]
ODD = [b"", b"/a/", b"//a", b"/a//b", b"@introduceDomain", b"/a b", b"/a\xff", b"a/",
       b"/" + b"x" * 2100]
WATCHED = ["/w", "/a/b/c", "/local/domain/2"]


def random_path(rng, guest):
    roll = rng.random()
    if roll < 0.06:
        return rng.choice(ODD)
    if roll < (0.6 if guest else 0.25):         # a guest works in its home mostly
        return rng.choice(RELATIVE).encode()
    return rng.choice(ABSOLUTE).encode()


def random_perms(rng, domid):
    if rng.random() < 0.07:
        return rng.choice([[b"x1"], [b"r"], [b"r99999"], [b"n0", b""], [b"b0", b"r4294967296"]])
    owner = domid if domid and rng.random() < 0.7 else rng.choice([0, 0, 1, 2, 3, 7])
    entries = [b"%s%d" % (rng.choice(b"nrwb").to_bytes(1, "big"), owner)]
    for _ in range(rng.randrange(3)):
        entries.append(b"%s%s" % (rng.choice(b"nrwb").to_bytes(1, "big"),
                                  rng.choice([b"1", b"2", b"3", b"01", b"32768"])))
    return entries


def random_packet(rng, req_id, domid):
    op = rng.choice([Op.READ, Op.READ, Op.DIRECTORY, Op.DIRECTORY_PART, Op.GET_PERMS,
                     Op.WRITE, Op.WRITE, Op.MKDIR, Op.RM, Op.SET_PERMS, Op.WATCH])
    path = random_path(rng, domid != 0)
    tx_id = 1 if rng.random() < 0.03 else 0
    if op == Op.WRITE:
        payload = path + b"\0" + rng.randbytes(rng.choice([0, 1, 5, 40]))
        if rng.random() < 0.05:
            payload = path          # no value field: EINVAL
    elif op == Op.SET_PERMS:
        payload = path + b"\0" + b"".join(p + b"\0" for p in random_perms(rng, domid))
    elif op == Op.DIRECTORY_PART:
        payload = path + b"\0" + rng.choice([b"0", b"2", b"5", b"100", b"x", b""]) + b"\0"
    elif op == Op.WATCH:
        op, payload = Op.GET_DOMAIN_PATH, b"1\0"     # never the engine's
    else:
        payload = path + (b"" if rng.random() < 0.04 else b"\0")
    return Packet(op, req_id, tx_id, payload)


def canonical(session, packet):
    raw = packet.payload.split(b"\0", 1)[0]
    return canonicalize(raw.decode("ascii"), session.domid)


def why_python(pair, session, packet, reply, old, warned):
    """Why the engine may leave ``packet`` to Python (engine.h), or None if it should not;
    ``old``: the node at the packet's path before it (None: missing); ``warned``: the
    oracle's Quotas.soft_warned before it."""
    existed = old is not None
    if reply[:4] == struct.pack("=I", Op.ERROR):
        return "an error reply"
    if packet.op not in ENGINE_OPS or packet.tx_id:
        return "not the engine's request type"
    if packet.payload.startswith(b"@"):
        return "a special name (@introduceDomain, @releaseDomain)"
    if packet.op == Op.MKDIR and existed:
        return None                         # the engine answers MKDIR of an existing node
    if packet.op in MUTATING:
        if warned != pair.daemon.quotas.soft_warned:
            return "the soft memory quota crossed (Python logs it) or left"
        if packet.op == Op.RM and not existed:
            return "RM of a missing node"
        if packet.op == Op.SET_PERMS:
            owner = int(packet.payload.split(b"\0")[1][1:])
            if owner not in (0, 1, 2, 3):
                return "an owner the engine does not know"
    return None


def mirror(pair, session, packet, existed):
    """Make the C store follow a change the oracle made for a packet the engine left to it,
    with the same store operations (so generations agree too)."""
    if packet.payload.startswith(b"@"):
        return                              # special names are not nodes
    path = canonical(session, packet)
    node = pair.daemon.store.nodes.get(path)
    if packet.op == Op.WRITE:
        value = packet.payload.split(b"\0", 1)[1]
        pair.store.write(path, value, node.perms)
    elif packet.op == Op.MKDIR and not existed:
        pair.store.write(path, b"", node.perms)
    elif packet.op == Op.RM and existed:
        pair.store.rm(path)
    elif packet.op == Op.SET_PERMS:
        pair.store.set_perms(path, node.perms)


def run_batch(pair, name, packets, flags=MUTATE, reasons=None):
    """Send ``packets`` in one buffer through the engine, Python taking what it leaves
    (``reasons``: a Counter of why, with error replies by error name)."""
    s = pair.sessions[name][0]
    data = b"".join(p.encode() for p in packets)
    pos = 0
    answered = punted = 0
    while pos < len(data):
        consumed, out, journaled, handled, stop = pair.engine.run(pair.conn(name), data, flags,
                                                                  pos)
        done = Decoder().feed(data[pos:pos + consumed])
        assert handled == len(done)
        assert journaled == sum(len(p.payload) for p in done if p.op in MUTATING)
        warned = set(pair.daemon.quotas.soft_warned)
        replies = [pair.oracle(name, p) for p in done[:-1]]
        before = pair.oracle_nodes()            # the nodes as the last packet found them
        replies += [pair.oracle(name, p) for p in done[-1:]]
        assert out == b"".join(replies), done
        # What the engine answered, Python answers without a word in the log.
        assert pair.daemon.quotas.soft_warned == warned, done
        answered += handled
        pos += consumed
        pair.assert_same_stores()
        if stop == STOP_EVENTS:
            check_event(pair, s, done[-1], out, replies[-1], before)
            continue
        if stop == STOP_DONE:
            assert pos == len(data)
            break
        assert stop == STOP_PYTHON
        after = pair.c_nodes()
        (packet,) = Decoder().feed(data[pos:pos + 16 + struct.unpack_from("=I", data, pos + 12)[0]])
        try:
            old = pair.daemon.store.nodes.get(canonical(s, packet))
        except Exception:
            old = None
        old = old and old.copy()
        warned = set(pair.daemon.quotas.soft_warned)
        reply = pair.oracle(name, packet)
        reason = why_python(pair, s, packet, reply, old, warned)
        assert reason is not None, (packet, reply)
        if reasons is not None:
            reasons[reply[16:-1].decode() if reason == "an error reply" else reason] += 1
        if reason != "an error reply":
            mirror(pair, s, packet, old is not None)
        pos += 16 + len(packet.payload)
        punted += 1
        assert after == pair.c_nodes() or reason != "an error reply"
        pair.assert_same_stores()
        del before
    return answered, punted


def check_event(pair, session, packet, out, reply, before):
    """The engine changed a watched node with ``packet`` and described the event: its
    reply is the last in ``out``; the oracle, firing the description, tells every watcher
    what it told them handling the packet (``pair.events``)."""
    reply_at, event = pair.engine_event()
    assert out[reply_at:] == reply
    told = dict(pair.events)
    path = canonical(session, packet)
    assert event[1] == path
    if packet.op == Op.RM:
        assert event[0] is REMOVE
        below = [p for p in before if p == path or p.startswith(path + "/")]
        assert sorted(event[2]) == sorted(below)
        assert list(event[2])[-1] == path       # the root last, children before parents
        assert all(tuple(tuple(x) for x in event[2][p]) == before[p][1] for p in below)
    else:
        assert event[0] is CHANGE
        assert (event[3] is not None) == (packet.op == Op.SET_PERMS)
    assert pair.fire(event) == told
    pair.fired += sum(1 for data in told.values() if data)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_answers_as_the_python_core_does(seed):
    rng = random.Random(seed)
    pair = Pair()
    pair.daemon.quotas.set("node-size", 20, domid=2)     # some of guest2's writes: ENOSPC
    pair.daemon.quotas.set("permissions", 2, domid=1)
    boot(pair)
    pair.session("guest1", 1)
    pair.session("guest2", 2)
    pair.session("guest3", 3, target=1)      # acts for domain 1 (SET_TARGET)
    pair.session("ro", 0, privileged=True, read_only=True)
    # Some nodes to find, some of them readable or writable by guests.
    pair.both("dom0", [Packet(Op.WRITE, 30 + i, 0, path.encode() + b"\0seed")
                       for i, path in enumerate(ABSOLUTE[:-1])])
    pair.both("dom0", [Packet(Op.SET_PERMS, 50, 0, b"/a/b\0n0\0r1\0b2\0"),
                       Packet(Op.SET_PERMS, 51, 0, b"/b\0r0\0"),
                       Packet(Op.SET_PERMS, 52, 0, b"/w\0n3\0")])
    for i, path in enumerate(WATCHED):
        pair.oracle("watcher", Packet(Op.WATCH, 900 + i, 0, path.encode() + b"\0tok\0"))
    for name, paths in (("gwatch1", [b"a", b"/a/b", b"/w/x/y"]), ("gwatch2", [b"a/b", b"/w"])):
        for i, path in enumerate(paths):        # relative and absolute, some unreadable
            pair.oracle(name, Packet(Op.WATCH, 950 + i, 0, path + b"\0g\0"))
    names = ["dom0"] * 4 + ["guest1", "guest2", "guest3"] * 2 + ["ro"]
    answered = punted = 0
    for batch in range(200):
        name = rng.choice(names)
        domid = pair.sessions[name][0].domid
        packets = [random_packet(rng, batch * 10 + i, domid) for i in range(rng.randrange(1, 7))]
        a, p = run_batch(pair, name, packets)
        answered += a
        punted += p
    # The common requests really went through C, and Python still saw its share.
    assert answered > 150 and punted > 100, (answered, punted)
    counts = {op: sum(pair.sessions[n][1].requests(op) for n in set(names))
              for op in ENGINE_OPS}
    assert all(counts[op] for op in ENGINE_OPS), counts
    guests = {op: sum(pair.sessions[n][1].requests(op) for n in ("guest1", "guest2", "guest3"))
              for op in (Op.READ, Op.WRITE, Op.RM, Op.SET_PERMS)}
    assert all(guests.values()), guests      # unprivileged changes ran in C too
    assert pair.fired > 20, pair.fired       # watched changes ran in C and told watchers


GUEST_NAMES = [b"a", b"b", b"c", b"d", b"e"]
WATCH_TOKENS = [b"t", b"token-%d" % 7, b"x" * 60]


def guest_creation_packet(rng, req_id):
    """A guest's request in its home: mostly creations and removals (the nodes quota moves
    both ways), some watches (their bytes count in the memory quota), some reads."""
    path = b"/".join(rng.choice(GUEST_NAMES) for _ in range(rng.choice([1, 1, 2, 3])))
    op = rng.choice([Op.WRITE] * 4 + [Op.MKDIR] * 2 + [Op.RM] * 2 + [Op.WATCH, Op.UNWATCH, Op.READ])
    if op == Op.WRITE:
        payload = path + b"\0" + rng.randbytes(rng.choice([0, 3, 30, 200]))
    elif op in (Op.WATCH, Op.UNWATCH):
        payload = rng.choice([path, b"/w"]) + b"\0" + rng.choice(WATCH_TOKENS) + b"\0"
    else:
        payload = path + b"\0"
    return Packet(op, req_id, 0, payload)


def quota_packets(rng, pair, req_id):
    """dom0 moves the guests' quotas to just around what they use now (SET_QUOTA and
    CONTROL quota-soft: Python's, which tells the engine through state_changed)."""
    store, sessions = pair.daemon.store, pair.daemon.sessions
    domid = rng.choice([1, 2, 3])
    used = store.bytes_of(domid) + sum(
        fastpath.watch_bytes(s) for s in sessions if s.domid == domid and not s.privileged)
    roll = rng.random()
    if roll < 0.25:
        name, value = b"nodes", store.owned_by(domid) + rng.choice([0, 1, 2, 3, 5, 20])
    elif roll < 0.5:
        name, value = b"memory", used + rng.choice([0, 20, 80, 150, 400, 1000, 5000])
    else:
        value = max(1, store.bytes_of(domid) + rng.choice([-100, 0, 60, 150, 400]))
        return [Packet(Op.CONTROL, req_id, 0, b"quota-soft\0set\0memory\0%d\0" % value)]
    return [Packet(Op.SET_QUOTA, req_id, 0, b"%d\0%s\0%d\0" % (domid, name, value))]


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_guests_creating_near_their_quotas_get_the_python_cores_answers(seed):
    """Guests create and remove nodes in their homes right at their nodes, memory and
    soft memory quotas, with watches of their own counting in the memory quota (added
    and removed through Python between the engine's runs) and dom0 moving the quotas:
    every reply the engine gives is the Python core's, every punt is a quota error, a
    crossing of the soft quota, or another of engine.h's cases."""
    rng = random.Random(seed)
    pair = Pair()
    boot(pair)
    pair.daemon.quotas.set_soft("memory", 1 << 20)
    pair.session("guest1", 1)
    pair.session("guest2", 2)
    pair.session("guest3", 3, target=1)      # creates in domain 1's home, owns it: domain 3's
    guests = ["guest1", "guest2", "guest3"]
    for i, name in enumerate(guests):       # some bytes of watches from the start
        pair.oracle(name, Packet(Op.WATCH, 990 + i, 0, b"/w\0" + b"w" * 30 * i + b"\0"))
    answered = punted = 0
    reasons = Counter()
    for batch in range(300):
        if rng.random() < 0.2:
            a, p = run_batch(pair, "dom0", quota_packets(rng, pair, batch), reasons=reasons)
        else:
            name = rng.choice(guests)
            if name == "guest3":
                packets = [Packet(Op.WRITE, 1, 0, b"/local/domain/1/g3-%d\0v" % rng.randrange(8))]
            else:
                packets = [guest_creation_packet(rng, batch * 10 + i)
                           for i in range(rng.randrange(1, 6))]
            a, p = run_batch(pair, name, packets, reasons=reasons)
        answered += a
        punted += p
    created = sum(pair.sessions[n][1].requests(op) for n in guests for op in (Op.WRITE, Op.MKDIR))
    # Worth comparing: guests' creations ran in C, and Python still refused at the quotas,
    # warned at the soft quota and took the watches.
    assert created > 100, created
    assert reasons["ENOSPC"] > 5 and reasons["ENOMEM"] > 5, reasons
    assert reasons["the soft memory quota crossed (Python logs it) or left"] > 5, reasons
    assert reasons["not the engine's request type"] > 50, reasons


# -- stop reasons and framing ----------------------------------------------------------

def fresh():
    pair = Pair()
    boot(pair)
    return pair


def small_engine(pair, out_cap):
    """A second engine over the same store and trie, with an ``out_cap``-byte reply buffer."""
    engine = Engine(pair.store.handle, pair.daemon.watches.trie.handle, out_cap=out_cap)
    conn = engine.conn()
    conn.configure(0, None, True, False, 0)
    return engine, conn


def reads(n, start=0):
    return [Packet(Op.READ, start + i, 0, b"/local/domain/0/name\0") for i in range(n)]


def test_partial_packets_across_calls_give_the_same_replies():
    pair = fresh()
    conn = pair.sessions["dom0"][1]
    packets = reads(3) + [Packet(Op.WRITE, 9, 0, b"/p/q\0value"), Packet(Op.DIRECTORY, 10, 0, b"/p\0")]
    data = b"".join(p.encode() for p in packets)
    held, replies = b"", b""
    for cut in range(0, len(data), 7):              # 7-byte pieces: headers split too
        held += data[cut:cut + 7]
        consumed, out, _, _, stop = pair.engine.run(conn, held, MUTATE)
        assert stop == STOP_DONE
        replies += out
        held = held[consumed:]
    assert held == b""
    assert Decoder().feed(replies) == [
        *(Packet(Op.READ, i, 0, b"Domain-0") for i in range(3)),
        Packet(Op.WRITE, 9, 0, b"OK\0"), Packet(Op.DIRECTORY, 10, 0, b"q\0")]


def test_python_stop_leaves_consumed_at_the_packet_it_does_not_answer():
    pair = fresh()
    conn = pair.sessions["dom0"][1]
    first = reads(2)
    rest = [Packet(Op.WATCH, 5, 0, b"/a\0t\0"), *reads(1, 6)]
    data = b"".join(p.encode() for p in first + rest)
    consumed, out, _, handled, stop = pair.engine.run(conn, data, MUTATE)
    assert (stop, handled) == (STOP_PYTHON, 2)
    assert data[consumed:] == b"".join(p.encode() for p in rest)
    assert len(Decoder().feed(out)) == 2
    # A transaction's request is Python's too, even a READ.
    consumed, _, _, handled, stop = pair.engine.run(
        conn, Packet(Op.READ, 1, 4, b"/local/domain/0/name\0").encode(), MUTATE)
    assert (consumed, handled, stop) == (0, 0, STOP_PYTHON)


def test_full_stops_before_a_packet_without_room_for_a_maximal_reply():
    engine, conn = small_engine(fresh(), REPLY_MAX + 10)
    data = b"".join(p.encode() for p in reads(3))
    consumed, out, _, handled, stop = engine.run(conn, data, MUTATE)
    assert (handled, stop) == (1, STOP_FULL)
    assert Decoder().feed(out) == [Packet(Op.READ, 0, 0, b"Domain-0")]
    consumed2, out2, _, handled2, stop2 = engine.run(conn, data, MUTATE, consumed)
    assert (handled2, stop2) == (1, STOP_FULL)
    assert Decoder().feed(out2) == [Packet(Op.READ, 1, 0, b"Domain-0")]


def test_a_tiny_out_buffer_answers_nothing():
    pair = fresh()
    engine, conn = small_engine(pair, 64)
    consumed, out, _, handled, stop = engine.run(conn, Packet(Op.WRITE, 1, 0, b"/x\0y").encode(), MUTATE)
    assert (consumed, out, handled, stop) == (0, b"", 0, STOP_FULL)
    assert pair.store.get("/x") is None


def test_bad_length_stops_at_its_header_after_answering_what_precedes():
    pair = fresh()
    good = reads(1)[0].encode()
    bad = struct.pack("=IIII", Op.READ, 2, 0, 4097) + b"x" * 10
    consumed, out, _, handled, stop = pair.engine.run(pair.sessions["dom0"][1], good + bad, MUTATE)
    assert (consumed, handled, stop) == (len(good), 1, STOP_BAD)
    # Python's decoder refuses the same bytes (and closes the connection).
    with pytest.raises(Exception, match="exceeds"):
        Decoder().feed(bad)


def test_a_header_of_exactly_4096_is_waited_for():
    pair = fresh()
    header = struct.pack("=IIII", Op.WRITE, 1, 0, 4096)
    consumed, _, _, _, stop = pair.engine.run(pair.sessions["dom0"][1], header + b"/z\0", MUTATE)
    assert (consumed, stop) == (0, STOP_DONE)


def test_without_mutate_changes_go_to_python_and_reads_stay_in_c():
    pair = fresh()
    conn = pair.sessions["dom0"][1]
    consumed, _, _, handled, stop = pair.engine.run(conn, reads(1)[0].encode(), 0)
    assert (handled, stop) == (1, STOP_DONE)
    mkdir_existing = Packet(Op.MKDIR, 2, 0, b"/tool\0").encode()
    assert pair.engine.run(conn, mkdir_existing, 0)[3:] == (1, STOP_DONE)
    write = Packet(Op.WRITE, 3, 0, b"/new\0v").encode()
    assert pair.engine.run(conn, write, 0)[0::4] == (0, STOP_PYTHON)
    assert pair.store.get("/new") is None


def test_a_watched_change_is_made_in_c_and_stops_right_after_with_its_event():
    pair = fresh()
    conn = pair.sessions["dom0"][1]
    pair.both("dom0", [Packet(Op.WRITE, 1, 0, b"/a/b/c\0v"),
                       Packet(Op.SET_PERMS, 2, 0, b"/a/b\0n0\0r1\0")])
    pair.oracle("watcher", Packet(Op.WATCH, 3, 0, b"/a/b/c/d\0t\0"))
    read, rm, after = reads(1)[0], Packet(Op.RM, 4, 0, b"/a\0"), reads(1, 5)[0]
    data = read.encode() + rm.encode() + after.encode()
    consumed, out, _, handled, stop = pair.engine.run(conn, data, MUTATE)
    assert (consumed, handled, stop) == (len(read.encode() + rm.encode()), 2, STOP_EVENTS)
    assert pair.store.get("/a") is None                    # made, not left to Python
    reply_at, event = pair.engine_event()
    assert out[:reply_at] == Packet(Op.READ, 0, 0, b"Domain-0").encode()
    assert out[reply_at:] == Packet(Op.RM, 4, 0, b"OK\0").encode()
    n0, r1 = ("n", 0), ("r", 1)
    assert event[:2] == (REMOVE, "/a")
    assert [(p, tuple(map(tuple, perms))) for p, perms in event[2].items()] == [
        ("/a/b/c", (n0,)), ("/a/b", (n0, r1)), ("/a", (n0,))]   # children first, root last
    assert pair.engine.run(conn, data, MUTATE, consumed)[3:] == (1, STOP_DONE)
    # A write and a permission change on a watched node: CHANGE, old perms for SET_PERMS only.
    pair.oracle("watcher", Packet(Op.WATCH, 6, 0, b"/w\0t\0"))
    assert pair.engine.run(conn, Packet(Op.WRITE, 7, 0, b"/w/x\0v").encode(), MUTATE)[3:] \
        == (1, STOP_EVENTS)
    assert pair.engine_event() == (0, (CHANGE, "/w/x", (n0,), None))
    assert pair.engine.run(conn, Packet(Op.SET_PERMS, 8, 0, b"/w\0b2\0r1\0").encode(),
                           MUTATE)[3:] == (1, STOP_EVENTS)
    assert pair.engine_event() == (0, (CHANGE, "/w", (("b", 2), r1), (n0,)))
    # MKDIR of an existing node changes nothing and fires nothing; beside the watch, no stop.
    for packet in (Packet(Op.MKDIR, 9, 0, b"/w\0"), Packet(Op.WRITE, 10, 0, b"/b\0v")):
        assert pair.engine.run(conn, packet.encode(), MUTATE)[3:] == (1, STOP_DONE)


def firing_engine(pair):
    """An engine over the pair's C store that fires through its own C watch registry (as
    the daemon's FastPath sets it up under CWatchRegistry); every session of the pair gets
    a handle there.  -> (engine, registry, handle -> session name)."""
    trie = WatchTrie()
    registry = NativeWatchRegistry(trie, pair.store.handle)
    engine = Engine(pair.store.handle, trie.handle)
    engine.watches(registry)
    for domid in (1, 2, 3):
        engine.domain_known(domid, True)
    names = {}
    for name, (s, _, _) in pair.sessions.items():
        handle = registry.session_new()
        registry.session_set(handle, s.domid, s.target, s.privileged)
        names[handle] = name
    return engine, registry, names


def test_a_batch_of_watched_changes_is_answered_in_one_run_with_python_s_deliveries():
    """With the C registry, watched WRITE/MKDIR/RM/SET_PERMS do not stop the run: one run
    answers the whole batch and returns, per change, the deliveries the oracle daemon's
    watchers got handling that packet, tagged with where its reply starts; a parent's
    perms changed later in the batch do not reach the earlier changes' checks."""
    pair = fresh()
    pair.session("guest1", 1)
    pair.both("dom0", [Packet(Op.WRITE, 1, 0, b"/a/b/c\0v"), Packet(Op.WRITE, 2, 0, b"/w/x\0v"),
                       Packet(Op.WRITE, 3, 0, b"/local/domain/1/data/k\0v"),
                       Packet(Op.SET_PERMS, 4, 0, b"/local/domain/1/data\0n1\0")])
    engine, registry, names = firing_engine(pair)
    handles = {name: handle for handle, name in names.items()}
    watches = [("watcher", b"/a", b"w0"), ("watcher", b"/w", b"w1"), ("dom0", b"/a/b", b"d0"),
               ("gwatch1", b"/a/b", b"g0"), ("gwatch1", b"/w/x", b"g1"),
               ("gwatch2", b"/a", b"h0"), ("guest1", b"data", b"r0"),
               ("watcher", b"/a/b/c/d/e", b"w2")]
    for i, (name, path, token) in enumerate(watches):
        pair.oracle(name, Packet(Op.WATCH, 100 + i, 0, path + b"\0" + token + b"\0"))
        absolute = path if path.startswith(b"/") else b"/local/domain/1/" + path
        assert registry.add(handles[name], absolute, token, not path.startswith(b"/"))
    requests = [
        (Op.WRITE, b"/a/b/c\0two"), (Op.SET_PERMS, b"/a/b\0n0\0r1\0"),
        (Op.WRITE, b"/a/b/c/d\0new"), (Op.SET_PERMS, b"/a/b/c/d\0n0\0"),
        (Op.WRITE, b"/a/b/c/d\0three"), (Op.SET_PERMS, b"/a/b/c\0n0\0b2\0"),
        (Op.WRITE, b"/a/b/c/d\0four"), (Op.SET_PERMS, b"/a/b\0n0\0"),
        (Op.WRITE, b"/a/b/c\0five"), (Op.READ, b"/w/x\0"), (Op.MKDIR, b"/w/x/y/z\0"),
        (Op.WRITE, b"/local/domain/1/data/k\0g"), (Op.MKDIR, b"/a/b/c/d/e\0"),
        (Op.SET_PERMS, b"/a/b\0n0\0r1\0"), (Op.RM, b"/a/b/c/d\0"),
        (Op.SET_PERMS, b"/a/b\0n0\0r2\0"), (Op.RM, b"/a/b\0"), (Op.WRITE, b"/a/b\0"),
        (Op.RM, b"/w\0"), (Op.RM, b"/local/domain/1/data\0"),
    ]
    packets = [Packet(op, 200 + i, 0, payload) for i, (op, payload) in enumerate(requests)]
    data = b"".join(p.encode() for p in packets)
    consumed, out, _, handled, stop = engine.run(pair.conn("dom0"), data, MUTATE)
    assert (consumed, handled, stop) == (len(data), len(packets), STOP_DONE)
    got = {}
    for reply_at, path, records in delivery_groups(engine.deliveries()):
        for handle, event_path, token, _ in deliveries(records, path.decode()):
            key = reply_at, names[handle]
            got[key] = got.get(key, b"") + Packet(
                Op.WATCH_EVENT, 0, 0, event_path.encode() + b"\0" + token + b"\0").encode()
    want, at = {}, 0
    for packet in packets:
        reply = pair.oracle("dom0", packet)
        want.update({(at, name): told for name, told in pair.events.items() if told})
        at += len(reply)
    assert at == len(out)
    assert got == want
    pair.assert_same_stores()
    # Worth comparing: the guests were told some changes and spared others.
    told = {name for _, name in want}
    assert {"watcher", "dom0", "gwatch1", "gwatch2", "guest1"} <= told, told
    assert len(want) > 20, len(want)


def test_set_perms_to_an_unknown_owner_is_left_to_python_until_told():
    pair = fresh()
    conn = pair.sessions["dom0"][1]
    packet = Packet(Op.SET_PERMS, 1, 0, b"/tool\0n9\0").encode()
    assert pair.engine.run(conn, packet, MUTATE)[0::4] == (0, STOP_PYTHON)
    pair.engine.domain_known(9, True)
    assert pair.engine.run(conn, packet, MUTATE)[3:] == (1, STOP_DONE)
    assert pair.store.get("/tool").perms == (("n", 9),)
    pair.engine.domain_known(9, False)
    assert pair.engine.run(conn, Packet(Op.SET_PERMS, 2, 0, b"/tool\0r9\0").encode(),
                           MUTATE)[0::4] == (0, STOP_PYTHON)
    with pytest.raises(ValueError):
        pair.engine.domain_known(0x7FF0, True)


def test_counts_and_journaled_bytes():
    pair = fresh()
    conn = pair.sessions["dom0"][1]
    packets = [Packet(Op.WRITE, 1, 0, b"/j\0abc"), Packet(Op.READ, 2, 0, b"/j\0"),
               Packet(Op.MKDIR, 3, 0, b"/j/k\0"), Packet(Op.RM, 4, 0, b"/j\0")]
    data = b"".join(p.encode() for p in packets)
    _, _, journaled, handled, _ = pair.engine.run(conn, data, MUTATE)
    assert handled == 4
    assert journaled == len(b"/j\0abc") + len(b"/j/k\0") + len(b"/j\0")
    assert [conn.requests(op) for op in (Op.WRITE, Op.READ, Op.MKDIR, Op.RM, Op.WATCH)] \
        == [1 + 3, 1, 1 + 3, 1, 0]      # boot wrote 3 nodes and made 3 homes


def test_directory_part_pages_a_wide_node_as_python_does():
    pair = fresh()
    names = [b"child-%04d-%s" % (i, b"x" * (i % 40)) for i in range(500)]
    pair.both("dom0", [Packet(Op.WRITE, i, 0, b"/wide/" + n + b"\0") for i, n in enumerate(names)])
    offset, pages = 0, 0
    while True:
        packet = Packet(Op.DIRECTORY_PART, 1, 0, b"/wide\0%d\0" % offset)
        pair.both("dom0", [packet])          # the same bytes as the oracle's
        (reply,) = Decoder().feed(pair.oracle("dom0", packet))
        gen, chunk = reply.payload.split(b"\0", 1)
        pages += 1
        if chunk.endswith(b"\0\0") or chunk == b"\0":
            break
        offset += len(chunk)
    assert pages >= 4
    pair.assert_same_stores()


def test_guest_changes_within_quotas_run_in_c_and_past_them_in_python():
    pair = fresh()
    quotas = pair.daemon.quotas
    quotas.set("node-size", 4, domid=1)
    quotas.set("permissions", 2, domid=1)
    pair.session("guest1", 1)                        # its conn gets these quotas
    pair.both("dom0", [Packet(Op.WRITE, 1, 0, b"/local/domain/1/dev\0longer-value"),
                       Packet(Op.SET_PERMS, 2, 0, b"/local/domain/1/dev\0n1\0")])

    def write(value, path=b"dev"):
        return run_batch(pair, "guest1", [Packet(Op.WRITE, 3, 0, path + b"\0" + value)])

    def set_quota(name, value):                      # as CONTROL quota does: state_changed
        quotas.set(name, value, domid=1)
        pair.daemon.state_changed()

    assert write(b"abcde") == (0, 1)                 # over node-size: ENOSPC from Python
    assert write(b"abc") == (1, 0)                   # its own node, shorter: C
    set_quota("memory", pair.daemon.store.bytes_of(1))
    assert write(b"abcd") == (0, 1)                  # one byte more: ENOMEM from Python
    set_quota("memory", 0)
    assert write(b"abcd") == (1, 0)                  # growing its own node, no memory quota
    assert run_batch(pair, "guest1", [Packet(Op.SET_PERMS, 4, 0, b"dev\0n1\0r2\0")]) == (1, 0)
    assert run_batch(pair, "guest1", [Packet(Op.SET_PERMS, 5, 0, b"dev\0n1\0r2\0r3\0")]) == (0, 1)
    assert run_batch(pair, "guest1", [Packet(Op.SET_PERMS, 6, 0, b"dev\0n2\0")]) == (0, 1)  # EPERM
    assert run_batch(pair, "guest1", [Packet(Op.RM, 7, 0, b"dev\0")]) == (1, 0)
    # Creating: the nodes quota counts every node the domain owns, the new ones added.
    set_quota("nodes", pair.daemon.store.owned_by(1) + 2)
    assert write(b"x", b"new/deeper/still") == (0, 1)   # three nodes: ENOSPC
    assert write(b"x", b"new/deeper") == (1, 0)
    assert pair.store.get("/local/domain/1/new").perms == (("n", 1), ("r", 0))   # its own
    assert write(b"x", b"new2") == (0, 1)
    set_quota("nodes", 0)
    # The memory quota counts the session's watches too: a watch added through Python
    # makes the next creation that fitted a byte short.
    home_child = len(b"/local/domain/1/") + 4        # memory_of_node of "<home>/new2", 2 perms
    set_quota("memory", pair.daemon.store.bytes_of(1) + 40 + home_child + 1 + 16)
    watch = Packet(Op.WATCH, 8, 0, b"/x\0t\0")     # 40 + 3 bytes, charged at once
    assert run_batch(pair, "guest1", [watch]) == (0, 1)
    assert write(b"x", b"new2") == (0, 1)            # ENOMEM
    assert run_batch(pair, "guest1", [Packet(Op.UNWATCH, 9, 0, b"/x\0t\0")]) == (0, 1)
    assert write(b"x", b"new2") == (1, 0)            # the watch gone, it fits exactly
    # The soft memory quota: the request crossing it is Python's (it logs once); past it,
    # answered here without a word; coming back under it is Python's again.
    set_quota("memory", 0)
    quotas.set_soft("memory", pair.daemon.store.bytes_of(1) + 40 + home_child + 16)
    pair.daemon.state_changed()
    assert write(b"", b"new3") == (1, 0)             # exactly at it
    assert write(b"", b"new4") == (0, 1)             # crosses it: warned
    assert quotas.soft_warned == {1}
    assert write(b"", b"new5") == (1, 0)             # still over, warned already
    assert write(b"ab", b"new5") == (1, 0)           # grows its node, still over
    for name in (b"new5", b"new4", b"new3"):
        assert run_batch(pair, "guest1", [Packet(Op.RM, 10, 0, name + b"\0")]) == (1, 0)
    assert write(b"", b"new3") == (0, 1)             # back under it: Python forgets the warning
    assert quotas.soft_warned == set()
    assert write(b"", b"new4") == (0, 1)             # and warns again, once
    assert write(b"", b"new5") == (1, 0)


# -- WATCH and UNWATCH in C ------------------------------------------------------------
#
# Two in-process daemons on C stores under the C watch registry, one with the request
# engine (its FastPath, fed through the transports' RequestPump as a socket's bytes are)
# and one with --python-requests (every request through dispatch: ops.do_watch and
# do_unwatch are the oracle).  Each batch goes to both as one buffer; every session's
# output (replies and watch events, in order) must be the same bytes.

REGISTERED_PATHS = [b"/w", b"/w/x", b"/a", b"/a/b", b"/local/domain/1", b"data", b"data/x",
                    b"x", b"@introduceDomain", b"@releaseDomain", b"@other",
                    b"/local/domain/2/data"]
ODD_REGISTERED_PATHS = [b"", b"/w/", b"//w", b"@intro/duce", b"/w\xff", b"/" + b"p" * 2100]
REGISTERED_TOKENS = [b"t", b"tok", b"", b"\xfftok", b"k" * 120]
CHANGED = [b"/w", b"/w/x", b"/a/b", b"data/x", b"data", b"x", b"/local/domain/2/data/q"]


class WatchListener(Listener):
    """A daemon listener noting what it hears of guests' watches (Daemon.watch_added)."""

    def __init__(self):
        self.heard = []

    def watch_added(self, domid, path, token, relative):
        self.heard.append(("added", domid, path, token, relative))

    def watch_removed(self, domid, path, token):
        self.heard.append(("removed", domid, path, token))

    def watches_cleared(self, domid):
        self.heard.append(("cleared", domid))


class WatchDaemons:
    """The two daemons, the same sessions on each (name -> session, output list)."""

    def __init__(self, *, watches_quota=5, memory_quota=900):
        from collections import deque

        from xsd.transport.pump import RequestPump
        self.deque = deque
        self.closed_counts = Counter()
        self.journaled = set()      # names of guests whose watches listeners hear of
        self.sides = []
        for python in (False, True):
            d = Daemon(Config(rundir="/nonexistent", no_domain_init=True,
                              python_requests=python), host=FakeHypervisorHost(), store=CStore())
            assert (d.fastpath is None) == python
            d.quotas.set("watches", watches_quota, domid=1)
            d.quotas.set("watches", watches_quota + 2, domid=2)
            d.quotas.set("memory", memory_quota, domid=1)
            d.quotas.set("memory", memory_quota, domid=2)
            listener = WatchListener()
            d.add_listener(listener)
            self.sides.append({"daemon": d, "pump": RequestPump(d), "sessions": {},
                               "listener": listener})
        for name, domid, privileged in (("dom0", 0, True), ("watcher", 0, True),
                                        ("g1", 1, False), ("g2", 2, False)):
            self.open(name, domid, privileged)
        self.batch("dom0", [(Op.MKDIR, b"/local/domain/%d\0" % d) for d in (1, 2, 3)] +
                   [(Op.SET_PERMS, b"/local/domain/%d\0n%d\0r0\0" % (d, d)) for d in (1, 2, 3)] +
                   [(Op.WRITE, b"/w/x\0v"), (Op.WRITE, b"/a/b\0v"),
                    (Op.SET_PERMS, b"/w\0n0\0r1\0r2\0")])

    def open(self, name, domid, privileged=False):
        for side in self.sides:
            out = []
            s = side["daemon"].open_session(out.append, domid=domid, privileged=privileged,
                                            name=name)
            s.journal_watches = name in self.journaled
            side["sessions"][name] = (s, out)

    def close(self, name):
        conn = self.sides[0]["sessions"][name][0].native
        if conn is not None:
            self.closed_counts.update({op: conn.requests(op) for op in Op})
        for side in self.sides:
            s, _ = side["sessions"].pop(name)
            side["daemon"].close_session(s)

    def batch(self, name, requests, req_id=[1000]):
        """``requests`` from ``name`` in one buffer to both daemons; -> every session's
        output on each, {name: bytes}, which must agree."""
        data = b""
        for op, payload in requests:
            req_id[0] += 1
            data += Packet(op, req_id[0], 0, payload).encode()
        got = []
        for side in self.sides:
            pump = side["pump"]
            s = side["sessions"][name][0]
            rest = pump.serve_bytes(s, data)
            pump.serve(s, Decoder().feed(rest), self.deque())
            got.append(self._flushed(side))
        assert got[0] == got[1], requests
        self.assert_same_counts()
        return got[0]

    def one_turn(self, batches):
        """``batches`` ([(name, requests)]) served in turn on both daemons with no flush
        between them (as the request pump's flush waits for a loop turn's journal record),
        then one flush: -> every session's output on each, {name: bytes}, which must agree.
        The engine's side serves as ``RequestPump.serve_bytes`` does, less its flush."""
        from xsd.transport.pump import FLUSH_AT
        got = []
        for engine, side in zip((True, False), self.sides):
            d, pump = side["daemon"], side["pump"]
            for name, requests in batches:
                data = b"".join(Packet(op, 900 + i, 0, payload).encode()
                                for i, (op, payload) in enumerate(requests))
                s = side["sessions"][name][0]
                consumed = d.fastpath.serve(s, data, FLUSH_AT)[0] if engine else 0
                pump.serve(s, Decoder().feed(data[consumed:]), self.deque())
            got.append(self._flushed(side))
        assert got[0] == got[1], batches
        self.assert_same_counts()
        return got[0]

    @staticmethod
    def _flushed(side) -> dict:
        """One side's daemon flushed: what each of its sessions was written, {name: bytes}."""
        side["daemon"].flush()
        told = {}
        for other, (_, out) in side["sessions"].items():
            told[other] = b"".join(out)
            out.clear()
        return told

    def assert_same_counts(self):
        """Every session's event counts (stats.py's sent, coalesced, dropped) and what of
        its output waits (events queued, the set coalescing them, watches owed an event)
        agree on both daemons."""
        def counts(session):
            return (session.events_sent, session.events_coalesced, session.events_dropped,
                    session.out_events, sorted(session.out_event_set),
                    list(session.overflowed), len(session.backlog))
        for name in self.sides[0]["sessions"]:
            assert counts(self.sides[0]["sessions"][name][0]) == \
                counts(self.sides[1]["sessions"][name][0]), name

    def c_requests(self, op):
        """Requests of type ``op`` the engine answered, closed sessions' included."""
        return sum(s.native.requests(op) for s, _ in self.sides[0]["sessions"].values()
                   if s.native is not None) + self.closed_counts[op]

    def assert_same_watches(self):
        for name in self.sides[0]["sessions"]:
            mine, oracle = (sorted((w.path, w.token, w.relative)
                                   for w in side["sessions"][name][0].watches.values())
                            for side in self.sides)
            assert mine == oracle, name
        assert self.sides[0]["listener"].heard == self.sides[1]["listener"].heard


def packets_of(data):
    return [(p.op, p.req_id, p.payload) for p in Decoder().feed(data)]


def test_watch_is_answered_in_c_with_its_first_event_after_the_reply():
    pair = WatchDaemons()
    first = pair.batch("g1", [(Op.WATCH, b"data\0t0\0")])       # a session's first, in C too
    assert pair.c_requests(Op.WATCH) == 1
    assert [(op, payload) for op, _, payload in packets_of(first["g1"])] == [
        (Op.WATCH, b"OK\0"), (Op.WATCH_EVENT, b"data\0t0\0")]
    told = pair.batch("g1", [(Op.WATCH, b"data/x\0t\0"), (Op.WRITE, b"data/x/y\0v"),
                             (Op.WATCH, b"/w\0t\0"), (Op.UNWATCH, b"data/x\0t\0"),
                             (Op.WRITE, b"data/x/z\0w"), (Op.READ, b"data/x/z\0")])
    assert pair.c_requests(Op.WATCH) == 3 and pair.c_requests(Op.UNWATCH) == 1
    assert pair.c_requests(Op.READ) == 1        # the batch ran on in C
    # The reply, then the initial event; the write's events (the new watch among them)
    # before the write's reply; none for the watch after its UNWATCH.
    assert [(op, payload) for op, _, payload in packets_of(told["g1"])] == [
        (Op.WATCH, b"OK\0"), (Op.WATCH_EVENT, b"data/x\0t\0"),
        (Op.WATCH_EVENT, b"data/x/y\0t0\0"), (Op.WATCH_EVENT, b"data/x/y\0t\0"),
        (Op.WRITE, b"OK\0"), (Op.WATCH, b"OK\0"), (Op.WATCH_EVENT, b"/w\0t\0"),
        (Op.UNWATCH, b"OK\0"), (Op.WATCH_EVENT, b"data/x/z\0t0\0"), (Op.WRITE, b"OK\0"),
        (Op.READ, b"w")]
    pair.assert_same_watches()


def test_every_session_the_engine_serves_has_a_registry_handle_until_it_closes():
    """The engine's first batch of a session gives it its handle (so its first WATCH can be
    the engine's); closing frees it, watches or none, and a closed session gets none."""
    pair = WatchDaemons()
    d = pair.sides[0]["daemon"]
    in_use = d.watches.stats()["sessions"]
    for i in range(3):
        pair.open("idle%d" % i, 0, privileged=True)
        pair.batch("idle%d" % i, [(Op.READ, b"/w\0")])
    assert d.watches.stats()["sessions"] == in_use + 3
    pair.batch("idle0", [(Op.WATCH, b"/w\0t\0")])
    assert d.watches.stats()["sessions"] == in_use + 3
    closed = pair.sides[0]["sessions"]["idle1"][0]
    for i in range(3):
        pair.close("idle%d" % i)
    assert d.watches.stats()["sessions"] == in_use
    assert d.watches.session_handle(closed) is None
    assert d.watches.stats()["sessions"] == in_use and d.check() == []


def test_watch_errors_stay_python_s_and_the_batch_goes_on():
    pair = WatchDaemons(watches_quota=3)
    pair.batch("g1", [(Op.WATCH, b"/w\0a\0")])
    requests = [
        (Op.WATCH, b"/w\0a\0"),                 # EEXIST
        (Op.UNWATCH, b"/w\0nope\0"),            # ENOENT
        (Op.WATCH, b"/w\0"), (Op.WATCH, b"/w\0a\0b\0"), (Op.WATCH, b"/w/\0a\0"),   # EINVAL
        (Op.WATCH, b"@introduceDomain\0s\0"), (Op.WATCH, b"data\0b"),
        (Op.WATCH, b"/a\0c\0"),                 # the fourth: E2BIG (quota 3)
        (Op.UNWATCH, b"@introduceDomain\0s\0"), (Op.WATCH, b"/a\0c\0"),
    ]
    # One batch each: the transport hands Python the rest of a batch after a punt.
    replies = [(op, payload) for request in requests
               for op, _, payload in packets_of(pair.batch("g1", [request])["g1"])
               if op != Op.WATCH_EVENT]
    assert replies == [(Op.ERROR, b"EEXIST\0"), (Op.ERROR, b"ENOENT\0"),
                       (Op.ERROR, b"EINVAL\0"), (Op.ERROR, b"EINVAL\0"), (Op.ERROR, b"EINVAL\0"),
                       (Op.WATCH, b"OK\0"), (Op.WATCH, b"OK\0"), (Op.ERROR, b"E2BIG\0"),
                       (Op.UNWATCH, b"OK\0"), (Op.WATCH, b"OK\0")]
    assert pair.c_requests(Op.WATCH) == 4 and pair.c_requests(Op.UNWATCH) == 1
    pair.assert_same_watches()


def test_a_guest_s_watches_count_in_its_memory_quota_in_c_at_once():
    """Watches added in C are charged at once (the engine reads their bytes from the
    registry): the guest's next creation or watch past the memory quota is ENOMEM."""
    pair = WatchDaemons(watches_quota=50, memory_quota=700)
    pair.batch("g1", [(Op.WATCH, b"/w\0first\0")])
    requests = [(Op.WATCH, b"data/x\0" + b"k%02d" % i + b"x" * 60 + b"\0") for i in range(8)]
    told = pair.batch("g1", requests)       # both must refuse the same one first
    replies = [(op, payload) for op, _, payload in packets_of(told["g1"])
               if op != Op.WATCH_EVENT]
    accepted = replies.index((Op.ERROR, b"ENOMEM\0"))
    assert accepted >= 3 and pair.c_requests(Op.WATCH) == 1 + accepted
    assert pair.batch("g1", [(Op.WRITE, b"data/n\0v")])["g1"].endswith(b"ENOMEM\0")
    for i in range(2):
        unwatch = (Op.UNWATCH, b"data/x\0k%02d" % i + b"x" * 60 + b"\0")
        assert pair.batch("g1", [unwatch])["g1"].endswith(b"OK\0")
    assert pair.c_requests(Op.UNWATCH) == 2
    told = pair.batch("g1", [(Op.WRITE, b"data/n\0v")])     # room again, in C
    assert packets_of(told["g1"])[-1][::2] == (Op.WRITE, b"OK\0")
    assert pair.c_requests(Op.WRITE) == 1
    pair.assert_same_watches()


def journal_guest_watches(pair, name="g2", domid=2):
    """Make ``name`` a journaled guest on both daemons: its domain introduced, its
    watches kept (Daemon.keeps_watches), so listeners hear of them."""
    pair.journaled.add(name)
    for side in pair.sides:
        d = side["daemon"]
        d.domains.introduce(domid, 1, 1)
        d.state_changed()
        side["sessions"][name][0].journal_watches = True


def test_a_journaled_guest_s_watches_are_answered_in_c_and_listeners_hear_them_in_order():
    """Listeners hear of a journaled guest's watches (Daemon.watch_added): the engine
    answers its WATCH and UNWATCH and logs them, and the listeners hear of each, in the
    order answered (a watch dropped and made again in one batch included), before the
    batch's output leaves, as they hear of Python's."""
    pair = WatchDaemons()
    journal_guest_watches(pair)
    commits = []        # per commit on the engine's side: (told so far, g2's writes so far)
    listener, out = pair.sides[0]["listener"], pair.sides[0]["sessions"]["g2"][1]
    listener.commit = lambda: commits.append((len(listener.heard), len(out)))
    pair.batch("g2", [(Op.WATCH, b"data\0a\0")])
    first_batch = commits[:]
    pair.batch("g2", [(Op.WATCH, b"data\0b\0"), (Op.UNWATCH, b"data\0a\0"),
                      (Op.WATCH, b"/w\0c\0"), (Op.UNWATCH, b"/w\0c\0"), (Op.WATCH, b"/w\0c\0"),
                      (Op.WATCH, b"@releaseDomain\0d\0"), (Op.WRITE, b"data/x\0v")])
    assert pair.c_requests(Op.WATCH) == 5 and pair.c_requests(Op.UNWATCH) == 2
    assert pair.sides[0]["listener"].heard == [
        ("added", 2, "/local/domain/2/data", b"a", True),
        ("added", 2, "/local/domain/2/data", b"b", True),
        ("removed", 2, "/local/domain/2/data", b"a"),
        ("added", 2, "/w", b"c", False), ("removed", 2, "/w", b"c"),
        ("added", 2, "/w", b"c", False), ("added", 2, "@releaseDomain", b"d", False)]
    # The journal's commit of each batch heard all of it before any of its output left.
    assert first_batch[0] == (1, 0) and commits[len(first_batch)] == (7, 0), commits
    pair.assert_same_watches()


def test_a_batch_whose_watch_log_passes_its_bound_runs_on_in_c_and_all_is_heard():
    """A run stops FULL once its watch log passes 256 KiB (engine.h) and the next run goes
    on: 80 registrations of ~4 KiB keys and their removals, one batch each, all answered
    in C and heard in order."""
    pair = WatchDaemons(watches_quota=100, memory_quota=1 << 22)
    journal_guest_watches(pair)
    keys = [b"/w\0" + b"%03d" % i + b"k" * 4000 for i in range(80)]
    pair.batch("g2", [(Op.WATCH, key + b"\0") for key in keys])
    fast, stops = pair.sides[0]["daemon"].fastpath, []
    answer = fast._answer

    def noting(*args):
        result = answer(*args)
        stops.append((result[3], result[4]))       # handled, stop
        return result
    fast._answer = noting
    pair.batch("g2", [(Op.UNWATCH, key + b"\0") for key in keys])
    # Replies are 19 bytes: only the log (~4 KiB an entry) can fill a run.
    assert stops[0][1] == STOP_FULL and 60 < stops[0][0] < 80, stops
    assert pair.c_requests(Op.WATCH) == pair.c_requests(Op.UNWATCH) == 80
    heard = pair.sides[0]["listener"].heard
    assert [(kind, token) for kind, _, _, token, *_ in heard] == \
        [("added", key[3:]) for key in keys] + [("removed", key[3:]) for key in keys]
    pair.assert_same_watches()


def test_a_journaled_guest_s_refused_watches_are_not_heard():
    """EEXIST and ENOENT (Python's, the engine having logged nothing) tell no listener."""
    pair = WatchDaemons(watches_quota=2)
    journal_guest_watches(pair)
    for request in [(Op.WATCH, b"/w\0a\0"), (Op.WATCH, b"/w\0a\0"), (Op.UNWATCH, b"/w\0b\0"),
                    (Op.WATCH, b"/a\0b\0")]:     # one batch each: the engine tries each
        pair.batch("g2", [request])
    assert pair.c_requests(Op.WATCH) == 2 and pair.c_requests(Op.UNWATCH) == 0
    assert [h[:4] for h in pair.sides[0]["listener"].heard] == [
        ("added", 2, "/w", b"a"), ("added", 2, "/a", b"b")]
    pair.assert_same_watches()


@pytest.mark.parametrize("seed", [1, 2])
def test_watch_and_unwatch_answer_as_the_python_core_does(seed):
    """Random batches of WATCH, UNWATCH (good, unknown, malformed, special, relative),
    changes that fire them in the same batch, RESET_WATCHES, and sessions closed and
    opened again (their registry handles given out anew), from privileged callers and
    guests at their watches and memory quotas."""
    rng = random.Random(seed)
    pair = WatchDaemons(watches_quota=6, memory_quota=1100)
    journal_guest_watches(pair)         # g2's watches heard by listeners, g1's not
    names = ["dom0", "watcher", "g1", "g2"]
    for step in range(160):
        name = rng.choice(names)
        if rng.random() < 0.03:
            domid = pair.sides[0]["sessions"][name][0].domid
            pair.close(name)
            pair.open(name, domid, privileged=domid == 0)
            continue
        requests = []
        watches = [(w.path.encode(), w.token)
                   for w in pair.sides[1]["sessions"][name][0].watches.values()]
        for _ in range(rng.randrange(1, 6)):
            roll = rng.random()
            path = rng.choice(ODD_REGISTERED_PATHS if rng.random() < 0.05 else REGISTERED_PATHS)
            key = path + b"\0" + rng.choice(REGISTERED_TOKENS)
            if roll < 0.45:
                requests.append((Op.WATCH, key + rng.choice([b"\0", b"\0", b""])))
            elif roll < 0.7:
                if watches and rng.random() < 0.7:
                    path, token = watches.pop(rng.randrange(len(watches)))
                    key = path + b"\0" + token
                requests.append((Op.UNWATCH, key + b"\0"))
            elif roll < 0.72:
                requests.append((Op.RESET_WATCHES, b""))
            elif roll < 0.85:
                requests.append((Op.WRITE, rng.choice(CHANGED) + b"\0v%d" % step))
            elif roll < 0.92:
                requests.append((Op.RM, rng.choice(CHANGED) + b"\0"))
            else:
                requests.append((Op.READ, rng.choice(CHANGED) + b"\0"))
        pair.batch(name, requests)
        pair.assert_same_watches()
    assert pair.c_requests(Op.WATCH) > 60 and pair.c_requests(Op.UNWATCH) > 20, \
        (pair.c_requests(Op.WATCH), pair.c_requests(Op.UNWATCH))


def noting_inlined(pair):
    """The engine's daemon's runs, noted: -> the list each run's count of initial events
    written among its replies (Engine.answer's last result) is appended to."""
    fast, inlined = pair.sides[0]["daemon"].fastpath, []
    answer = fast._answer

    def noting(*args):
        result = answer(*args)
        inlined.append(result[6])
        return result
    fast._answer = noting
    return inlined


def test_initial_events_written_by_the_engine_are_what_python_queues():
    """A WATCH's initial event written by the engine among its run's replies (engine.h
    xsd_conn_inline_events) when nothing of the client waits: the same bytes, counts and
    coalescing as Python's queue_event, whose waiting events it joins; where a run fires
    anything else, names a key twice, or passes the client's max_events, or the client is
    paused, the events are queued as before."""
    pair = WatchDaemons(watches_quota=20, memory_quota=4000)
    inlined = noting_inlined(pair)
    told = pair.batch("dom0", [(Op.WATCH, b"/w/a\0t1\0"), (Op.WATCH, b"/w/b\0t2"),
                               (Op.READ, b"/w/x\0")])
    assert inlined[-1] == 2
    assert [(op, payload) for op, _, payload in packets_of(told["dom0"])] == [
        (Op.WATCH, b"OK\0"), (Op.WATCH_EVENT, b"/w/a\0t1\0"), (Op.WATCH, b"OK\0"),
        (Op.WATCH_EVENT, b"/w/b\0t2\0"), (Op.READ, b"v")]
    told = pair.batch("g1", [(Op.WATCH, b"data/x\0r1\0")])          # relative: as given
    assert inlined[-1] == 1 and packets_of(told["g1"])[1] == (Op.WATCH_EVENT, 0, b"data/x\0r1\0")
    # Written among the replies, it waits with them for the flush (these sessions' replies
    # go through Session.send): dom0's change in the same turn fires an identical event,
    # coalesced with it as with a queued one.
    coalesced = pair.sides[0]["sessions"]["g1"][0].events_coalesced
    told = pair.one_turn([("g1", [(Op.WATCH, b"data/y\0r2\0")]),
                          ("dom0", [(Op.WRITE, b"/local/domain/1/data/y\0v")])])
    assert inlined[-2] == 1
    assert [p for p in packets_of(told["g1"]) if p[0] == Op.WATCH_EVENT] == [
        (Op.WATCH_EVENT, 0, b"data/y\0r2\0")]
    assert pair.sides[0]["sessions"]["g1"][0].events_coalesced == coalesced + 1
    # The change in the same batch: queued as before, and coalesced.
    told = pair.batch("dom0", [(Op.WATCH, b"/n\0k\0"), (Op.WRITE, b"/n\0v")])
    assert inlined[-1] == 0
    assert [p[2] for p in packets_of(told["dom0"]) if p[0] == Op.WATCH_EVENT] == [b"/n\0k\0"]
    # A key dropped and added again in one run: the second event coalesced, as before.
    told = pair.batch("watcher", [(Op.WATCH, b"/s\0t\0"), (Op.UNWATCH, b"/s\0t\0"),
                                  (Op.WATCH, b"/s\0t\0")])
    assert inlined[-1] == 0
    assert [p[2] for p in packets_of(told["watcher"]) if p[0] == Op.WATCH_EVENT] == [b"/s\0t\0"]
    # A paused client (its transport full): Python's; the reply and the event wait in its
    # backlog; and while it was not, the same client's output waiting: none written.
    for side in pair.sides:
        side["sessions"]["watcher"][0].pause()
    runs = len(inlined)
    told = pair.batch("watcher", [(Op.WATCH, b"/u\0t\0")])
    assert len(inlined) == runs and told["watcher"] == b""
    for side in pair.sides:
        side["sessions"]["watcher"][0].resume()
    told = pair.batch("watcher", [(Op.READ, b"/w/x\0")])
    assert [p[2] for p in packets_of(told["watcher"]) if p[0] == Op.WATCH_EVENT] == [
        b"/u\0t\0"]
    told = pair.one_turn([("watcher", [(Op.WRITE, b"/s\0v")]),
                          ("watcher", [(Op.WATCH, b"/v\0t\0")])])
    assert inlined[-1] == 0
    assert [p[2] for p in packets_of(told["watcher"]) if p[0] == Op.WATCH_EVENT] == [
        b"/s\0t\0", b"/v\0t\0"]
    # At most max_events in one batch: past it, none written, the last dropped (the watch
    # owed its marker after the flush) as Python drops it.
    pair.open("few", 0, privileged=True)
    for side in pair.sides:
        side["sessions"]["few"][0].max_events = 2
    told = pair.batch("few", [(Op.WATCH, b"/f/%d\0t\0" % i) for i in range(2)])
    assert inlined[-1] == 2
    told = pair.batch("few", [(Op.WATCH, b"/g/%d\0t\0" % i) for i in range(3)])
    assert inlined[-1] == 0
    assert [p[2] for p in packets_of(told["few"]) if p[0] == Op.WATCH_EVENT] == [
        b"/g/0\0t\0", b"/g/1\0t\0", b"/g/2\0t\0"]       # the last one the marker
    assert pair.sides[0]["sessions"]["few"][0].events_dropped == 1
    pair.assert_same_watches()
