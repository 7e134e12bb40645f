"""Transactions on the C overlay (xsd/_native/txn.c, xsd/core/ctransaction.py) against
the Python Transaction (xsd/core/transactions.py) on the Python store as oracle.

Two in-process daemons get the same packets from the same sessions: the oracle
on ``store.Store`` (its transactions are ``transactions.Transaction``) and one
on ``cstore.CStore`` (``ctransaction.CTransaction``), its requests going
through the C request path first (``FastPath.serve``) and to dispatch for
what it leaves, as the transport sends them.  Several transactions are open at
once, guests and dom0 write outside them meanwhile (conflicts), subtrees are
removed and made again, DIRECTORY_PART pages inside them, a guest's
transaction-nodes quota is small; guests create nodes inside transactions at
their nodes, memory and soft memory quotas (the engine answers those within
them, engine.h).  Every reply, every watch event a watcher
gets (at commit: merged, in first-touch order) and, after every packet, both
stores (paths, values, permissions, children order, generations) must agree.
"""
import random

import pytest

from xenstore_protocol import Decoder, Op, Packet
from xsd._native import BACKEND
from xsd.config import Config
from xsd.core.daemon import Daemon, Host
from xsd.core.events import REMOVE
from xsd.core.ops import watch_bytes
from xsd.core.stats import session_counters
from xsd.core.store import Store
from xsd.core.transactions import Transaction

if BACKEND != "cffi":
    pytest.skip("the C overlay is the C build's (XSD_NATIVE=python)", allow_module_level=True)
from xsd._native.store import NodeStore              # noqa: E402
from xsd.core.cstore import CStore                   # noqa: E402
from xsd.core.ctransaction import CTransaction       # noqa: E402

DOMAINS = {1, 2, 3}


class Hypervisor(Host):
    def domain_info(self, domid):
        return object() if domid in DOMAINS else None


class Side:
    """One daemon and its sessions; ``send`` answers one packet as the server would."""

    def __init__(self, store, fast: bool):
        self.daemon = Daemon(Config(rundir="/nonexistent", no_domain_init=True),
                             host=Hypervisor(), store=store)
        self.fast = fast and self.daemon.fastpath is not None
        self.sessions = {}
        self.in_c = 0           # packets with a tx_id the C engine answered
        self.guest_creations_in_c = 0   # of those, a guest's WRITE or MKDIR making nodes
        self.last_in_c = False          # the engine answered the last packet sent
        self.txn_in_c = 0               # TRANSACTION_START/END the engine answered
        self.removal_commits_in_c = 0   # of those, commits holding a merged REMOVE

    def session(self, name, domid, privileged=False):
        out = []
        s = self.daemon.open_session(out.append, domid=domid, privileged=privileged, name=name)
        self.sessions[name] = (s, out)

    def send(self, name, packet):
        s, out = self.sessions[name]
        tx = s.transactions.get(packet.tx_id) if self.fast and packet.tx_id else None
        owned = tx.native.owned_delta(s.domid) if tx is not None else 0
        removes = tx is not None and packet.op == Op.TRANSACTION_END and \
            any(event[0] is REMOVE for event in tx.events)
        self.last_in_c = self.fast and \
            self.daemon.fastpath.serve(s, packet.encode(), 1 << 30)[0] != 0
        if not self.last_in_c:
            self.daemon.handle(s, packet)
        elif packet.op in (Op.TRANSACTION_START, Op.TRANSACTION_END):
            self.txn_in_c += 1
            self.removal_commits_in_c += removes
        if self.last_in_c and packet.tx_id:
            self.in_c += 1
            # The transaction's view gained nodes its domain owns: the engine created them.
            if not s.privileged and tx.native.owned_delta(s.domid) > owned:
                self.guest_creations_in_c += 1
        self.daemon.flush()
        data = b"".join(out)
        out.clear()
        return data

    def conflicts_in_c(self):
        """TRANSACTION_ENDs the engine answered EAGAIN on the open sessions."""
        return sum(s.native.conflicts() for s, _ in self.sessions.values()
                   if s.native is not None)

    def take(self, name):
        out = self.sessions[name][1]
        data = b"".join(out)
        out.clear()
        return data

    def nodes(self):
        store = self.daemon.store
        if isinstance(store, CStore):
            nodes, stack = {}, ["/"]
            while stack:
                path = stack.pop()
                node = NodeStore.get(store, path, True)
                nodes[path] = (node.value, tuple(tuple(p) for p in node.perms),
                               list(node.children), node.gen)
                stack.extend(path.rstrip("/") + "/" + name for name in node.children)
            return nodes
        return {path: (n.value, tuple(tuple(p) for p in n.perms), list(n.children), n.gen)
                for path, n in store.items()}


SESSIONS = (("dom0", 0, True), ("dom0b", 0, True), ("guest1", 1, False),
            ("guest2", 2, False), ("guest1b", 1, False))
WATCHERS = (("watcher", 0, True, [b"/", b"/a", b"/a/b/c"]),
            ("gwatch", 1, False, [b"/a", b"/local/domain/1", b"/b/x"]))
PATHS = ["/a", "/a/b", "/a/b/c", "/a/b/d", "/a/c", "/b", "/b/x", "/b/x/y", "/c",
         "/local/domain/1/d", "/local/domain/1/d/e", "/local/domain/1/f",
         "/local/domain/2/g", "/local/domain/1"]


class Pair:
    def __init__(self, fast=True):
        self.py = Side(Store(), fast=False)
        self.c = Side(CStore(), fast=fast)
        self.c.daemon.store.keep_listings(1)    # transactions' copies read kept listings
        assert isinstance(self.c.daemon.store, CStore)
        self.req = 0
        for side in (self.py, self.c):
            for name, domid, privileged in SESSIONS:
                side.session(name, domid, privileged)
            for name, domid, privileged, _ in WATCHERS:
                side.session(name, domid, privileged)
        self.open = {name: [] for name, _, _ in SESSIONS}     # tx ids each has open
        self.compared = {"replies": 0, "events": 0, "commits": 0, "conflicts": 0,
                         "enospc": 0, "enomem": 0, "warned changes": 0}
        self.warned = set()

    def send(self, name, op, tx_id, payload):
        self.req += 1
        packet = Packet(op, self.req, tx_id, payload)
        want = self.py.send(name, packet)
        got = self.c.send(name, packet)
        assert got == want, (name, packet)
        self.compared["replies"] += 1
        for watcher, *_ in WATCHERS:
            want_events = self.py.take(watcher)
            assert self.c.take(watcher) == want_events, (name, packet, watcher)
            self.compared["events"] += bool(want_events)
        assert self.c.nodes() == self.py.nodes(), (name, packet)
        # The soft memory quota's state (and its one log line) moved alike: a request that
        # crosses it is Python's on both sides.
        warned = self.py.daemon.quotas.soft_warned
        assert self.c.daemon.quotas.soft_warned == warned, (name, packet)
        if warned != self.warned:
            self.compared["warned changes"] += 1
            self.warned = set(warned)
        return want

    def boot(self):
        for name, _, _, paths in WATCHERS:
            for path in paths:
                self.send(name, Op.WATCH, 0, path + b"\0tok\0")
        for path in ("/a/b/c", "/a/c", "/b/x/y", "/local/domain/1/d/e", "/local/domain/2/g"):
            self.send("dom0", Op.WRITE, 0, path.encode() + b"\0seed")
        for domid in (1, 2):
            self.send("dom0", Op.SET_PERMS, 0, b"/local/domain/%d\0n%d\0r0\0" % (domid, domid))
        self.send("dom0", Op.SET_PERMS, 0, b"/b\0b0\0")       # guests may write below /b
        self.send("dom0", Op.SET_PERMS, 0, b"/b/x\0b0\0")
        for i in range(12):                                  # a wide node for DIRECTORY_PART
            self.send("dom0", Op.WRITE, 0, b"/c/%s\0" % (b"child-%02d-" % i + b"n" * 300))


def random_request(rng, pair, name, domid):
    """One request of ``name``: in one of its transactions (mostly, when it has one) or not."""
    open_ = pair.open[name]
    roll = rng.random()
    if roll < 0.08 or (not open_ and roll < 0.3):
        return Op.TRANSACTION_START, 0, b"\0"
    tx_id = rng.choice(open_) if open_ and rng.random() < 0.8 else 0
    if rng.random() < 0.02:
        tx_id = 999                                     # no such transaction: ENOENT
    if tx_id and rng.random() < 0.2:
        return Op.TRANSACTION_END, tx_id, rng.choice([b"T\0", b"T\0", b"F\0"])
    path = rng.choice(PATHS).encode()
    if domid and rng.random() < 0.3:
        path = rng.choice([b"d", b"d/e", b"f", b"d/e/h"])   # relative to the guest's home
    op = rng.choice([Op.READ, Op.READ, Op.DIRECTORY, Op.DIRECTORY_PART, Op.GET_PERMS,
                     Op.WRITE, Op.WRITE, Op.WRITE, Op.MKDIR, Op.RM, Op.RM, Op.SET_PERMS])
    if op == Op.WRITE:
        return op, tx_id, path + b"\0" + rng.choice([b"", b"v", b"value-%d" % rng.randrange(99)])
    if op == Op.DIRECTORY_PART:
        if rng.random() < 0.5:
            path = b"/c"
        return op, tx_id, path + b"\0" + rng.choice([b"0", b"1500", b"3000", b"9999"]) + b"\0"
    if op == Op.SET_PERMS:
        owner = domid if domid else rng.choice([0, 1, 2, 7])     # 7 does not exist: ENOENT
        extra = rng.choice([b"", b"r1\0", b"b2\0", b"w1\0r2\0"])
        return op, tx_id, path + b"\0" + rng.choice(b"nrwb").to_bytes(1, "big") + \
            b"%d\0" % owner + extra
    return op, tx_id, path + b"\0"


def run(pair, rng, steps):
    names = [(name, domid) for name, domid, _ in SESSIONS]
    for step in range(steps):
        if step % 97 == 50:
            # The guests' transaction-nodes quota changes while their transactions are open.
            pair.send("dom0", Op.SET_QUOTA, 0, b"1\0transaction-nodes\0%d\0"
                      % rng.choice([4, 6, 9, 40]))
        name, domid = rng.choice(names)
        op, tx_id, payload = random_request(rng, pair, name, domid)
        note(pair, name, op, tx_id, payload, pair.send(name, op, tx_id, payload))
    end_all(pair)


def note(pair, name, op, tx_id, payload, reply):
    """Keep ``pair.open`` and the counts of what the run reached up to date; ``reply``:
    the session's output (watch events it got may come before the reply)."""
    (reply,) = [p for p in Decoder().feed(reply) if p.op != Op.WATCH_EVENT]
    error = reply.op == Op.ERROR
    if op == Op.TRANSACTION_START and not error:
        pair.open[name].append(int(reply.payload[:-1]))
    elif op == Op.TRANSACTION_END and tx_id in pair.open[name]:
        pair.open[name].remove(tx_id)
        if payload == b"T\0":
            pair.compared["conflicts" if reply.payload == b"EAGAIN\0" else "commits"] += 1
    if error and tx_id:
        for name in ("ENOSPC", "ENOMEM"):
            pair.compared[name.lower()] += reply.payload == name.encode() + b"\0"


def end_all(pair):
    """Every transaction still open ends: committed, so its events are compared too."""
    for name, tx_ids in pair.open.items():
        for tx_id in list(tx_ids):
            pair.send(name, Op.TRANSACTION_END, tx_id, b"T\0")
            tx_ids.remove(tx_id)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("fast", [True, False], ids=["engine", "python-ops"])
def test_c_transactions_answer_as_python_ones(seed, fast):
    """``fast``: requests go through the C engine first (as the server sends them);
    else all through dispatch, so Python's ops run on the C overlay alone."""
    rng = random.Random(seed)
    pair = Pair(fast)
    pair.boot()
    pair.send("dom0", Op.SET_QUOTA, 0, b"1\0transaction-nodes\x006\0")
    run(pair, rng, 1500)
    counts = pair.compared
    # The run reached what it is about (not a test that passes by doing nothing).
    assert counts["commits"] > 20 and counts["conflicts"] > 5, counts
    assert counts["enospc"] > 3 and counts["events"] > 50, counts
    # The C engine answered a good part of the requests inside transactions itself, and
    # of the transactions' starts and ends, conflicting commits (EAGAIN) and commits
    # holding removals among them (refusals are Python's).
    assert pair.c.in_c > 200 if fast else pair.c.in_c == 0, pair.c.in_c
    assert pair.c.txn_in_c > 100 if fast else pair.c.txn_in_c == 0, pair.c.txn_in_c
    conflicts, removals = pair.c.conflicts_in_c(), pair.c.removal_commits_in_c
    assert conflicts > 5 if fast else conflicts == 0, conflicts
    assert removals > 5 if fast else removals == 0, removals


def test_the_daemon_on_the_c_store_uses_the_c_overlay():
    pair = Pair()
    reply = pair.send("guest1", Op.TRANSACTION_START, 0, b"\0")
    tx_id = int(reply[16:-1])
    assert type(pair.c.sessions["guest1"][0].transactions[tx_id]) is CTransaction
    assert type(pair.py.sessions["guest1"][0].transactions[tx_id]) is Transaction


def test_remove_then_make_again_fires_as_python():
    """A subtree removed and made again inside one transaction: the commit removes and
    recreates it in the transaction's order; watchers below see their path go, those on
    it see it as it is now."""
    pair = Pair()
    pair.boot()
    tx = int(pair.send("dom0", Op.TRANSACTION_START, 0, b"\0")[16:-1])
    pair.send("dom0", Op.RM, tx, b"/a\0")
    pair.send("dom0", Op.WRITE, tx, b"/a/b/z\0new")
    pair.send("dom0", Op.WRITE, tx, b"/a/c\0again")
    pair.send("dom0", Op.DIRECTORY_PART, tx, b"/a\x000\0")
    pair.send("dom0", Op.TRANSACTION_END, tx, b"T\0")
    assert pair.c.nodes()["/a"][2] == ["b", "c"]


def test_commits_holding_removals_fire_in_the_engine_as_python():
    """Commits holding removals, answered by the engine (Pair.send compares every reply,
    every watcher's events and the stores): the merged REMOVEs fire in first-touch order
    among the CHANGEs, to watches on the root and above (by the root's perms, or its
    parent's in the store: XSA-115) and below it (each by its own perms or its parent's,
    as the transaction first removed them); a root made again is seen as it is now; a
    subtree removed piecewise, then whole; a node made in the transaction and removed
    again fires nothing; a guest's removal in its home."""
    pair = Pair()
    pair.boot()
    for name, path in (("watcher", b"/a/b"), ("gwatch", b"/a/b/c"), ("gwatch", b"/a/b/d"),
                       ("gwatch", b"/local/domain/1/d/e"), ("watcher", b"/b/x/y")):
        pair.send(name, Op.WATCH, 0, path + b"\0below\0")
    pair.send("dom0", Op.SET_PERMS, 0, b"/a\0n0\0r1\0")       # guest 1 reads /a, not below

    def commit(*requests, who="dom0", outcome="OK"):
        tx = int(pair.send(who, Op.TRANSACTION_START, 0, b"\0")[16:-1])
        for op, payload in requests:
            pair.send(who, op, tx, payload)
        reply = pair.send(who, Op.TRANSACTION_END, tx, b"T\0")
        assert pair.c.last_in_c, requests
        (end,) = [p for p in Decoder().feed(reply) if p.op != Op.WATCH_EVENT]
        assert end.payload == outcome.encode() + b"\0", (requests, end)
        for name in ("watcher", "gwatch"):      # Pair.send compared them; here they go
            pair.c.take(name)

    def seed():
        for path in (b"/a/b/c", b"/a/b/d", b"/a/c"):
            pair.send("dom0", Op.WRITE, 0, path + b"\0v")
        pair.send("dom0", Op.SET_PERMS, 0, b"/a/b/d\0n0\0r1\0")

    seed()
    removals = pair.c.removal_commits_in_c
    commit((Op.WRITE, b"/a/c\0first"), (Op.RM, b"/a/b\0"), (Op.WRITE, b"/b/x\0after"))
    seed()
    commit((Op.RM, b"/a/b/c\0"), (Op.RM, b"/a/b\0"))                  # piecewise, then whole
    seed()
    commit((Op.RM, b"/a/b\0"), (Op.WRITE, b"/a/b/d\0again"))         # made again below
    seed()
    commit((Op.RM, b"/a\0"), (Op.WRITE, b"/a\0again"), (Op.SET_PERMS, b"/a\0n0\0r1\0"))
    seed()
    commit((Op.WRITE, b"/a/new/x\0"), (Op.RM, b"/a/new\0"), (Op.RM, b"/b/x/y\0"))
    pair.send("guest1", Op.WRITE, 0, b"q/r\0v")                      # the guest's own
    pair.send("gwatch", Op.WATCH, 0, b"q/r\0rel\0")
    commit((Op.RM, b"q\0"), (Op.WRITE, b"f\0v"), who="guest1")        # its home, relative
    assert pair.c.removal_commits_in_c - removals == 6
    # A conflicting commit holding a removal changes nothing and fires nothing.
    seed()
    tx = int(pair.send("dom0", Op.TRANSACTION_START, 0, b"\0")[16:-1])
    pair.send("dom0", Op.RM, tx, b"/a/b\0")
    pair.send("dom0b", Op.WRITE, 0, b"/a/b/c\0moved")
    for name in ("watcher", "gwatch"):
        pair.c.take(name)
    assert Decoder().feed(pair.send("dom0", Op.TRANSACTION_END, tx, b"T\0")) == \
        [Packet(Op.ERROR, pair.req, tx, b"EAGAIN\0")] and pair.c.last_in_c
    assert pair.c.take("watcher") == pair.c.take("gwatch") == b""


# -- guests creating nodes inside transactions, at their quotas -----------------------

GUESTS = ("guest1", "guest2", "guest1b")        # guest1b: a second session of domain 1
GUEST_NAMES = [b"a", b"b", b"c", b"d"]
WATCH_TOKENS = [b"t", b"token-7", b"x" * 60]


def guest_tx_request(rng, pair, name):
    """A guest's request in its home, mostly in one of its transactions: creations (with
    missing ancestors too), its own nodes growing, removals (the nodes quota moves both
    ways), watches of its own (their bytes count in the memory quota), commits, aborts."""
    open_ = pair.open[name]
    if (not open_ and rng.random() < 0.7) or rng.random() < 0.04:
        return Op.TRANSACTION_START, 0, b"\0"
    tx_id = rng.choice(open_) if open_ and rng.random() < 0.85 else 0
    if tx_id and rng.random() < 0.1:
        return Op.TRANSACTION_END, tx_id, rng.choice([b"T\0", b"T\0", b"F\0"])
    path = b"q/" + b"/".join(rng.choice(GUEST_NAMES) for _ in range(rng.choice([1, 1, 2, 3])))
    if rng.random() < 0.1:
        path = rng.choice([b"/a/g", b"/b/x/g/h"])     # dom0's: EACCES; writable by all
    op = rng.choice([Op.WRITE] * 5 + [Op.MKDIR] * 2 + [Op.RM] * 2 + [Op.WATCH, Op.UNWATCH])
    if op == Op.WRITE:
        return op, tx_id, path + b"\0" + rng.randbytes(rng.choice([0, 3, 30, 200]))
    if op in (Op.WATCH, Op.UNWATCH):
        return op, 0, rng.choice([path, b"/b/x"]) + b"\0" + rng.choice(WATCH_TOKENS) + b"\0"
    return op, tx_id, path + b"\0"


def guest_quota_request(rng, pair):
    """dom0 moves a guest domain's quotas to just around what it uses now (the store's
    nodes and bytes of the domain, its sessions' watches), the soft memory quota (one
    for all: CONTROL quota-soft) with them, or transaction-nodes."""
    daemon = pair.py.daemon
    domid = rng.choice([1, 2])
    used = daemon.store.bytes_of(domid) + sum(
        watch_bytes(s) for s, _ in pair.py.sessions.values()
        if s.domid == domid and not s.privileged)
    roll = rng.random()
    if roll < 0.3:
        name, value = b"nodes", daemon.store.owned_by(domid) + rng.choice([0, 1, 2, 3, 5, 20])
    elif roll < 0.6:
        name, value = b"memory", used + rng.choice([0, 30, 80, 150, 400, 2000])
    elif roll < 0.85:
        value = max(1, daemon.store.bytes_of(domid) + rng.choice([-100, 0, 60, 150, 400]))
        return Op.CONTROL, b"quota-soft\0set\0memory\0%d\0" % value
    else:
        name, value = b"transaction-nodes", rng.choice([5, 8, 12, 40, 0])
    return Op.SET_QUOTA, b"%d\0%s\0%d\0" % (domid, name, value)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_guests_creating_in_transactions_at_their_quotas_answer_as_python(seed):
    """Guests create nodes and grow their own inside transactions right at their nodes,
    memory, soft memory and transaction-nodes quotas, with watches of their own counting
    in the memory quota and dom0 moving the quotas between their requests: replies,
    events at commit, stores and the soft quota's warned state agree with the Python
    core on the Python Transaction, and the engine made a good part of the creations,
    conflicting commits and commits holding removals."""
    rng = random.Random(seed)
    pair = Pair()
    pair.boot()
    for i, name in enumerate(GUESTS):       # some bytes of watches from the start
        pair.send(name, Op.WATCH, 0, b"/b/x\0" + b"w" * 20 * i + b"\0")
    for _ in range(1200):
        if rng.random() < 0.12:
            op, payload = guest_quota_request(rng, pair)
            pair.send("dom0", op, 0, payload)
            continue
        name = rng.choice(GUESTS)
        op, tx_id, payload = guest_tx_request(rng, pair, name)
        note(pair, name, op, tx_id, payload, pair.send(name, op, tx_id, payload))
    end_all(pair)
    counts = pair.compared
    assert counts["commits"] > 20 and counts["events"] > 20, counts
    assert counts["enospc"] > 5 and counts["enomem"] > 5, counts
    assert counts["warned changes"] > 5, counts
    assert pair.c.guest_creations_in_c > 50, pair.c.guest_creations_in_c
    # Guests' conflicting commits and commits holding removals were the engine's too.
    assert pair.c.conflicts_in_c() > 10, pair.c.conflicts_in_c()
    assert pair.c.removal_commits_in_c > 5, pair.c.removal_commits_in_c


def test_a_guest_creates_in_its_transaction_in_c_within_its_quotas():
    """The nodes quota counts the store's nodes of the domain (another session of it
    changes them outside) plus what the transaction made or removed; the memory quota
    the store's bytes, the session's watches and the new node; the soft one is crossed
    in Python only.  Within them the engine answers; past them Python refuses."""
    pair = Pair()
    pair.boot()
    store = pair.py.daemon.store
    home = b"/local/domain/1/"

    def quota(name, value):
        pair.send("dom0", Op.SET_QUOTA, 0, b"1\0%s\0%d\0" % (name, value))

    def send(op, payload, tx=0, who="guest1"):
        (reply,) = [p for p in Decoder().feed(pair.send(who, op, tx, payload))
                    if p.op != Op.WATCH_EVENT]
        return pair.c.last_in_c, reply.payload[:-1].decode() if reply.op == Op.ERROR else "OK"

    def write(path, value=b"", tx=0, who="guest1"):
        return send(Op.WRITE, path + b"\0" + value, tx, who)

    def used():         # what ops._charge counts before the new node: guest1's session
        s = pair.py.sessions["guest1"][0]
        return store.bytes_of(1) + watch_bytes(s)

    tx = int(pair.send("guest1", Op.TRANSACTION_START, 0, b"\0")[16:-1])
    quota(b"nodes", store.owned_by(1) + 3)
    assert write(b"q/a/b/c", tx=tx) == (False, "ENOSPC")     # four new nodes
    assert write(b"q/a", tx=tx) == (True, "OK")              # two, the guest's own
    assert write(b"/b/o", who="guest1b") == (True, "OK")     # outside: the store's count
    assert write(b"q/z", tx=tx) == (False, "ENOSPC")         # 1 + 2 in the transaction
    assert send(Op.RM, b"/b/o\0", who="guest1b") == (True, "OK")
    assert send(Op.MKDIR, b"q/z\0", tx=tx) == (True, "OK")
    assert send(Op.RM, b"q\0", tx=tx) == (True, "OK")        # its three nodes gone again
    assert write(b"q/y/w", tx=tx) == (True, "OK")
    quota(b"nodes", 0)
    # Memory: the store's bytes (not the transaction's), the watches, the new node.
    node = 40 + len(home) + 2 + 16   # memory_of_node of "<home>m1", empty, two perms
    quota(b"memory", used() + node + 1)
    assert write(b"m1", b"v", tx=tx) == (True, "OK")
    assert write(b"m2", b"vvvv", tx=tx) == (False, "ENOMEM")
    assert write(b"m1", b"vvvv", tx=tx) == (True, "OK")     # grows its own node by 3
    assert write(b"m1", b"v" * (4 + node + 4), tx=tx) == (False, "ENOMEM")
    assert send(Op.WATCH, b"/x\0t\0") == (True, "OK")     # 40 + 3 bytes more (its first: C's too)
    assert write(b"m2", b"v", tx=tx) == (False, "ENOMEM")
    assert send(Op.UNWATCH, b"/x\0t\0") == (True, "OK")         # the engine's: a watch it has
    assert write(b"m2", b"v", tx=tx) == (True, "OK")        # its bytes freed at once
    quota(b"memory", 0)
    # The soft quota: crossing it is Python's (it warns once), past it C's, silently.
    pair.send("dom0", Op.CONTROL, 0, b"quota-soft\0set\0memory\0%d\0" % (used() + node + 3))
    assert write(b"m3", b"vvv", tx=tx) == (True, "OK")     # exactly at it
    assert write(b"m4", b"vvvv", tx=tx) == (False, "OK")    # over it: warned
    assert pair.py.daemon.quotas.soft_warned == {1}
    assert write(b"m5", b"vvvv", tx=tx) == (True, "OK")
    assert write(b"m4", b"", tx=tx) == (True, "OK")         # shrinking: no charge at all
    assert pair.c.guest_creations_in_c == 7
    assert send(Op.TRANSACTION_END, b"T\0", tx=tx) == (True, "OK")  # the engine commits
    nodes = pair.c.nodes()
    assert [nodes["/local/domain/1/" + name][1] for name in ("q", "q/y/w", "m5")] == \
        [(("n", 1), ("r", 0))] * 3       # owned by the guest's domain, as Python made them


# -- TRANSACTION_START and TRANSACTION_END in the engine --------------------------------

def test_starts_and_ends_in_the_engine_answer_as_python():
    """The engine starts and ends transactions (engine.h, XSD_RUN_TXN) as ops.py does:
    ids from the session's next id, skipping 0 and ids in use and wrapping through
    uint32 (XSA-420); the transactions quota; a commit's events fired to the watchers
    in first-touch order before END's reply; aborts.  What it leaves to Python (START in
    a transaction, END without one or with a bad payload, conflicts, refusals, a long
    run of ids in use) Python answers; both daemons agree on every reply, event and node
    (Pair.send), and on each session's table of transactions and next id."""
    pair = Pair()
    pair.boot()
    sessions = {name: (pair.py.sessions[name][0], pair.c.sessions[name][0])
                for name, _, _ in SESSIONS}

    def send(name, op, payload=b"\0", tx=0):
        (reply,) = [p for p in Decoder().feed(pair.send(name, op, tx, payload))
                    if p.op != Op.WATCH_EVENT]
        py, c = sessions[name]
        assert sorted(c.transactions) == sorted(py.transactions), name
        assert c.next_tx_id == py.next_tx_id, name
        if reply.op == Op.ERROR:
            return pair.c.last_in_c, reply.payload[:-1].decode()
        return pair.c.last_in_c, reply.payload.rstrip(b"\0").decode()

    def start(name="dom0"):
        in_c, reply = send(name, Op.TRANSACTION_START)
        assert in_c, reply
        return int(reply)

    # Ids wrap through uint32, skipping 0 and ids in use.
    first = start()
    assert first == 1
    for s in sessions["dom0"]:
        s.next_tx_id = 0xFFFFFFFF           # as a re-attached guest's ring sets it (guest.py)
    assert start() == 0xFFFFFFFF
    assert start() == 2                     # 0 skipped, 1 in use
    # A commit: its events to the watchers, merged, before the reply.
    tx = start()
    assert send("dom0", Op.WRITE, b"/a/b/c\0in-tx", tx) == (True, "OK")
    assert send("dom0", Op.WRITE, b"/b/new/deep\0v", tx) == (True, "OK")
    assert send("dom0", Op.SET_PERMS, b"/a\0n0\0r1\0", tx) == (True, "OK")
    assert send("dom0", Op.TRANSACTION_END, b"T\0", tx) == (True, "OK")
    # An abort changes nothing; "T" without its NUL commits.
    tx = start()
    assert send("dom0", Op.WRITE, b"/a\0gone", tx) == (True, "OK")
    assert send("dom0", Op.TRANSACTION_END, b"F\0", tx) == (True, "OK")
    tx = start()
    assert send("dom0", Op.WRITE, b"/c\0kept", tx) == (True, "OK")
    assert send("dom0", Op.TRANSACTION_END, b"T", tx) == (True, "OK")
    # Python's: START inside a transaction, END without one, bad payloads, unknown ids.
    assert send("dom0", Op.TRANSACTION_START, b"\0", first) == (False, "EBUSY")
    assert send("dom0", Op.TRANSACTION_END, b"T\0") == (False, "ENOENT")
    assert send("dom0", Op.TRANSACTION_END, b"T\0", 77) == (False, "ENOENT")
    assert send("dom0", Op.TRANSACTION_END, b"X\0", first) == (False, "EINVAL")
    # A conflict: EAGAIN from the engine, nothing changed, the transaction gone on both
    # sides (an END of it is then Python's ENOENT), the error counted as dispatch does.
    tx = start()
    assert send("dom0", Op.READ, b"/c\0", tx) == (True, "kept")
    assert send("dom0b", Op.WRITE, b"/c\0moved") == (True, "OK")
    assert send("dom0", Op.WRITE, b"/b/x\0late", tx) == (True, "OK")
    assert send("dom0", Op.TRANSACTION_END, b"T\0", tx) == (True, "EAGAIN")
    assert send("dom0", Op.TRANSACTION_END, b"F\0", tx) == (False, "ENOENT")
    assert pair.c.sessions["dom0"][0].native.conflicts() == 1
    # A removal committed: the engine fires it (watchers on it, above and below it).
    tx = start()
    assert send("dom0", Op.RM, b"/b/new\0", tx) == (True, "OK")
    assert send("dom0", Op.TRANSACTION_END, b"T\0", tx) == (True, "OK")
    # A guest's conflicting commit (another session of its domain moved its node).
    tx = start("guest1")
    assert send("guest1", Op.WRITE, b"f\0mine", tx) == (True, "OK")
    assert send("guest1b", Op.WRITE, b"f\0theirs") == (True, "OK")
    assert send("guest1", Op.TRANSACTION_END, b"T", tx) == (True, "EAGAIN")
    # The transactions quota: within it C's, its refusal Python's (counted there too).
    pair.send("dom0", Op.SET_QUOTA, 0, b"1\0transactions\x002\0")
    guest = [start("guest1"), start("guest1")]
    assert send("guest1", Op.TRANSACTION_START) == (False, "ENOSPC")
    assert [s.counters.refused for s in sessions["guest1"]] == [{"transactions": 1}] * 2
    assert send("guest1", Op.TRANSACTION_END, b"F\0", guest.pop()) == (True, "OK")
    guest.append(start("guest1"))
    # Many open at once; a run of ids in use longer than the engine probes is Python's.
    many = [start("dom0b") for _ in range(80)]
    assert many == list(range(1, 81))
    for s in sessions["dom0b"]:
        s.next_tx_id = 3
    assert send("dom0b", Op.TRANSACTION_START) == (False, "81")
    assert start("dom0b") == 82
    for tx in many[::7]:
        assert send("dom0b", Op.TRANSACTION_END, b"T\0", tx) == (True, "OK")
    # RESET_WATCHES drops the session's transactions: END of one is then ENOENT.
    assert send("guest1", Op.RESET_WATCHES, b"") == (False, "OK")
    assert send("guest1", Op.TRANSACTION_END, b"T\0", guest[0]) == (False, "ENOENT")
    # Counted per type like any request Python answers (stats.session_counters).
    for name in ("dom0", "dom0b", "guest1"):
        py, c = (session_counters(s) for s in sessions[name])
        assert c.requests == py.requests and c.errors == py.errors, name
    assert pair.c.txn_in_c > 100
    # A session closed with transactions open: they go with it; the others carry on.
    for side in (pair.py, pair.c):
        s = side.sessions["dom0b"][0]
        assert len(s.transactions) > 50
        side.daemon.close_session(s)
        side.session("dom0b", 0, True)
    sessions["dom0b"] = (pair.py.sessions["dom0b"][0], pair.c.sessions["dom0b"][0])
    assert start("dom0b") == 1
    assert send("dom0b", Op.TRANSACTION_END, b"T\0", 1) == (True, "OK")
    assert pair.c.daemon.usage(0)["transactions"] == pair.py.daemon.usage(0)["transactions"]


def test_a_start_whose_overlay_cannot_be_wrapped_leaves_nothing_behind(monkeypatch):
    """Out of memory adopting the overlay the engine started (FastPath._transaction_moved):
    the C conn forgets the id and the overlay is freed, so neither side knows a transaction
    the other does not (a request with that id is then Python's: ENOENT)."""
    side = Side(CStore(), fast=True)
    side.session("dom0", 0, privileged=True)
    s = side.sessions["dom0"][0]

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(CTransaction, "adopt", out_of_memory)
    with pytest.raises(MemoryError):
        side.daemon.fastpath.serve(s, Packet(Op.TRANSACTION_START, 1, 0, b"\0").encode(), 1 << 30)
    monkeypatch.undo()
    assert s.transactions == {} and s.native.txns == {}
    used, *_ = side.daemon.fastpath.engine.run(s.native, Packet(Op.READ, 2, 1, b"/\0").encode())
    assert used == 0                                    # tx 1 unknown to the engine
    assert Decoder().feed(side.send("dom0", Packet(Op.READ, 3, 1, b"/\0")))[0].payload == \
        b"ENOENT\0"
