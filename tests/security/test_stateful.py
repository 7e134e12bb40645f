"""Every operation, from privileged and unprivileged callers, with transactions, watches and
quotas, in random order: after every step the store's invariants hold (CONTROL check).

Driven in-process through the same Daemon.handle the sockets and guest rings use,
so hypothesis can run thousands of steps and shrink a failure to a short story.
"""
import shutil
import tempfile

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from xenstore_protocol import Decoder, Op, Packet

from xsd.config import Config
from xsd.durability.persist import open_daemon

PATHS = ["/a", "/a/b", "/a/b/c", "/x", "/local/domain/5", "/local/domain/5/d", "/local/domain/6/e",
         "d", "d/f", "/local/domain/6", "@introduceDomain", "/", "/a//b"]
PERMS = [b"n0", b"r5", b"b5", b"w6", b"n5", b"b6", b"r0"]
CALLERS = ["dom0", "dom5", "dom6"]


class Caller:
    def __init__(self, daemon, domid):
        self.out = []
        self.session = daemon.open_session(self.out.append, domid=domid, privileged=domid == 0,
                                           name=f"dom{domid}")
        self.session.journal_watches = domid != 0      # as guest.py marks a ring's session
        self.txs = []


class StoreMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        quotas = {"nodes": 12, "watches": 4, "transactions": 2, "node-size": 64, "permissions": 3,
                  "transaction-nodes": 10}
        # Journaling (without fsync): check() also compares the guests' journaled watches
        # with their sessions, and teardown reloads the files and compares everything.
        self.dir = tempfile.mkdtemp(prefix="xsd-stateful-")
        self.daemon = open_daemon(Config(rundir=self.dir, state_dir=self.dir, fsync="never",
                                    quotas=quotas))
        self.callers = {"dom0": Caller(self.daemon, 0)}
        self.req = 0
        for domid in (5, 6):
            self.send("dom0", Op.INTRODUCE, b"%d\0" b"1\0" b"1\0" % domid, False)
            self.callers[f"dom{domid}"] = Caller(self.daemon, domid)
        for domid in (5, 6):      # as a toolstack does: each guest owns its home
            self.send("dom0", Op.MKDIR, b"/local/domain/%d\0" % domid, False)
            self.send("dom0", Op.SET_PERMS, b"/local/domain/%d\0n%d\0" % (domid, domid), False)

    def send(self, who, op, payload, in_tx):
        caller = self.callers[who]
        tx_id = caller.txs[-1] if in_tx and caller.txs else 0
        self.req += 1
        self.daemon.handle(caller.session, Packet(op, self.req, tx_id, payload))
        self.daemon.flush()
        replies = [p for p in Decoder().feed(b"".join(caller.out)) if p.op != Op.WATCH_EVENT]
        caller.out.clear()
        assert replies and replies[-1].req_id == self.req
        reply = replies[-1]
        assert reply.op in (op, Op.ERROR)
        if reply.op == Op.ERROR:
            assert reply.payload[:-1].decode() in {"EINVAL", "EACCES", "EEXIST", "ENOENT", "ENOSPC",
                                                   "E2BIG", "EPERM", "EAGAIN", "EBUSY", "EROFS"}, reply
        return reply

    @rule(who=st.sampled_from(CALLERS), path=st.sampled_from(PATHS), value=st.binary(max_size=80),
          in_tx=st.booleans())
    def write(self, who, path, value, in_tx):
        self.send(who, Op.WRITE, path.encode() + b"\0" + value, in_tx)

    @rule(who=st.sampled_from(CALLERS), path=st.sampled_from(PATHS), in_tx=st.booleans(),
          op=st.sampled_from([Op.MKDIR, Op.RM, Op.READ, Op.DIRECTORY, Op.GET_PERMS]))
    def one_path(self, who, path, in_tx, op):
        self.send(who, op, path.encode() + b"\0", in_tx)

    @rule(who=st.sampled_from(CALLERS), path=st.sampled_from(PATHS),
          perms=st.lists(st.sampled_from(PERMS), min_size=1, max_size=5), in_tx=st.booleans())
    def set_perms(self, who, path, perms, in_tx):
        self.send(who, Op.SET_PERMS, path.encode() + b"\0" + b"\0".join(perms) + b"\0", in_tx)

    @rule(who=st.sampled_from(CALLERS), path=st.sampled_from(PATHS), token=st.sampled_from([b"t", b"u"]),
          unwatch=st.booleans())
    def watch(self, who, path, token, unwatch):
        self.send(who, Op.UNWATCH if unwatch else Op.WATCH, path.encode() + b"\0" + token + b"\0", False)

    @rule(who=st.sampled_from(CALLERS))
    def tx_start(self, who):
        reply = self.send(who, Op.TRANSACTION_START, b"\0", False)
        if reply.op == Op.TRANSACTION_START:
            self.callers[who].txs.append(int(reply.payload[:-1]))

    @rule(who=st.sampled_from(CALLERS), commit=st.booleans())
    def tx_end(self, who, commit):
        caller = self.callers[who]
        if caller.txs:
            self.send(who, Op.TRANSACTION_END, b"T\0" if commit else b"F\0", True)
            caller.txs.pop()

    @rule(who=st.sampled_from(CALLERS))
    def reset_watches(self, who):
        self.send(who, Op.RESET_WATCHES, b"", False)
        self.callers[who].txs.clear()

    @rule(domid=st.sampled_from([5, 6]), release=st.booleans())
    def domain(self, domid, release):
        if release:
            self.send("dom0", Op.RELEASE, b"%d\0" % domid, False)
            # As guest.py on release: the ring's connection ends; a later INTRODUCE
            # of the domid serves a fresh one.
            self.daemon.close_session(self.callers[f"dom{domid}"].session)
            self.callers[f"dom{domid}"] = Caller(self.daemon, domid)
        else:
            was = self.daemon.domains.is_introduced(domid)
            reply = self.send("dom0", Op.INTRODUCE, b"%d\0" b"1\0" b"1\0" % domid, False)
            if reply.op == Op.INTRODUCE and not was:     # guest.py: a new ring, a new session
                self.daemon.close_session(self.callers[f"dom{domid}"].session)
                self.callers[f"dom{domid}"] = Caller(self.daemon, domid)

    @rule(who=st.sampled_from(CALLERS), name=st.sampled_from([b"nodes", b"watches", b"transactions"]),
          value=st.integers(0, 15))
    def set_quota(self, who, name, value):
        self.send(who, Op.SET_QUOTA, name + b"\0%d\0" % value, False)

    @invariant()
    def store_is_sound(self):
        assert self.daemon.check() == []
        reply = self.send("dom0", Op.CONTROL, b"check\0", False)
        assert reply.payload == b"OK\0"


    def teardown(self):
        daemon = getattr(self, "daemon", None)
        if daemon is None:
            return
        try:
            daemon.flush()
            daemon.persist.close()
            again = open_daemon(Config(rundir=self.dir, state_dir=self.dir, fsync="never"))
            assert {p: (n.value, n.perms) for p, n in again.store.items()} == \
                {p: (n.value, n.perms) for p, n in daemon.store.items()}
            assert again.persist.guest_watches.by_domid == daemon.persist.guest_watches.by_domid
            again.persist.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


StoreMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
test_store_invariants_hold_under_random_operations = StoreMachine.TestCase
