"""The C request path in front of dispatch: the common requests from bytes to reply in C.

``xsd/_native/engine.c`` answers READ, WRITE, MKDIR, RM, DIRECTORY,
DIRECTORY_PART, GET_PERMS and SET_PERMS on the C node store, or inside a
transaction's C overlay, TRANSACTION_START and END, and under the C watch
registry WATCH and UNWATCH (the initial event after the WATCH's reply, as
dispatch's REPLY_FIRST: written by the engine among the replies where nothing
of the client waits, ``Session.event_room``, else queued), in one crossing per
batch of bytes a client delivers, and stops at the first request it leaves to Python (engine.h says
which: errors (but a conflicting commit's EAGAIN), a crossing of the soft
memory quota, anything unusual); the transport hands the rest to the Python
decoder and ``dispatch``, so replies keep their order.  A change that may fire
watches is made in C too.  Under the C watch registry the engine fires it
there and returns the deliveries with the batch (each before the reply of the
change that made it: ``_deliver`` queues them on their sessions); else
(``--python-fires``, ``--python-watches``) it stops right after the change
with the event described, and the daemon fires it before that request's reply
goes out, as dispatch does.  What the
engine answers is what dispatch would have answered, byte for byte
(tests/native/test_engine.py holds it to the Python core as oracle).

What the engine must know of the Python side, and when it learns it:
- a session's domid, target, privilege, read-only socket and path-max quota,
  and for an unprivileged one what binds its changes (``configure``: the
  node-size, permissions, nodes and memory quotas, the soft memory quota,
  whether its domain was warned past it, its watches' bytes): configured at
  its first batch, again for every session after ``Daemon.state_changed``
  (domains, quotas, targets change only there) or a change of
  ``Quotas.soft_warned``, by an epoch count, and again for one session after
  its watches changed (``Daemon.watches_changed``);
- its open transactions (the C overlays of ``ctransaction.CTransaction``, in
  which the engine answers requests carrying their ids) and its next
  transaction id: the session's table and id are Python's, the conn's a
  mirror, registered at the first batch after Python changed them (its
  START/END, RESET_WATCHES, a restore), each with the transaction-nodes
  quota as it stands, refreshed with the epoch; a START or END the engine
  answers stops its run (STOP_TXN) and ``_transaction_moved`` records it on
  the session before anything else runs (a started overlay adopted as a
  ``CTransaction``), so both sides stay equal;
- for WATCH and UNWATCH (``configure_watches``): the session's handle in the C
  registry (given then, if the session has none yet, so its first WATCH is the
  engine's too), the "watches" quota, and whether the daemon's listeners must
  hear of its watches (a journaled guest's: then each run's watch log goes to
  ``Daemon.watches_logged`` before any of the run's output is sent or flushed,
  so the journal records them before a reply can be seen); with the epoch too.
  The engine reads the session's watch count and bytes (the memory quota) from
  the registry itself;
- which domains exist (SET_PERMS's new owner): the introduced ones and dom0,
  refreshed with the same epoch; an unknown owner goes to Python, which asks
  the hypervisor;
- whether it may answer at all: not while the access log is on (every
  request is logged in Python).  Snapshots need no pause: the C store's
  ``freeze`` copies the tree in one call (cstore.py).

Counts: the engine counts what it answers per session and type;
``stats.session_counters`` folds them into the session's counters.
"""
import logging
from time import perf_counter

from xenstore_protocol import Op
from xenstore_protocol.constants import HEADER

from .._native import BACKEND
from .events import CHANGE, REMOVE
from .ops import transaction_node_limit, watch_bytes
from .stats import SAMPLE_EVERY
from .watches import CWatchRegistry

if BACKEND == "cffi":
    from .._native.engine import (DELIVERY_AFTER, STOP_EVENTS, STOP_FULL, STOP_TXN,
                                  TXN_CONFLICT, TXN_FAILED, TXN_STARTED, Engine,
                                  delivery_groups, watch_changes)
    from .ctransaction import CTransaction

log = logging.getLogger(__name__)


def available(store) -> bool:
    """The engine runs on the C node store only (XSD_NATIVE=c, or auto once built)."""
    return BACKEND == "cffi" and getattr(store, "handle", None) is not None


class FastPath:
    def __init__(self, daemon):
        self.daemon = daemon
        self.engine = Engine(daemon.store.handle, daemon.watches.trie.handle)
        # Under the C registry the engine fires watched changes itself and returns the
        # deliveries with its batch (one crossing per batch); else it stops after each.
        self.fires = (isinstance(daemon.watches, CWatchRegistry)
                      and not daemon.config.python_fires)
        if self.fires:
            self.engine.watches(daemon.watches.native)
        # Bound once: serve runs per batch, mostly of one request (one client, one at a time).
        self._answer = self.engine.answer
        self._deliveries = self.engine.deliveries if self.fires else None
        self.epoch = 0              # bumped by state_changed: sessions reconfigure
        self.poller = None          # the sockets' C poller (transport/poller.py), told the epoch
        self._known_epoch = -1
        self._known = set()
        daemon.quotas.warned_changed = self.state_changed

    def state_changed(self) -> None:
        self.epoch += 1
        if self.poller is not None:
            self.poller.epoch(self.epoch)   # its direct sessions go through serve again

    def prepare(self, session):
        """``session``'s conn, configured as the engine must know it now and with its
        transactions and next id mirrored (the module's docstring): what a run needs."""
        conn = session.native
        if conn is None or session.native_epoch != self.epoch:
            conn = self._configure(session)
        transactions = session.transactions
        if (transactions or conn.txns) and transactions != conn.txns:
            conn.sync_transactions(transactions)     # TRANSACTION_START/END ran in Python
            for tx in transactions.values():
                tx.refresh_limit()
        if conn.next_tx_id != session.next_tx_id:
            conn.txn_next(session.next_tx_id)       # Python's START, a restore, a re-attach
        return conn

    def serve(self, session, data: bytes, flush_at: int, commit=None, run=None):
        """Answer the requests at the start of ``data`` that the engine takes; their replies
        go out through ``session.send``, handed to the transport whenever more than
        ``flush_at`` bytes wait (so it can push back mid-batch: 256 KiB of small READs may
        ask for 50 MiB of replies).  ``commit(session)``: journaling, asked when a run's
        replies may show changes not yet recorded (it journaled, or the store's change log
        holds some); True once it wrote their record (the request pump's ``_commit_now``,
        for a lone client), and the replies go straight to the transport as they do in
        memory; else (or None) they wait for ``Daemon.flush``, which commits before any
        output.  ``run``: the first run, made already on ``data`` by the C poller (its
        ``Engine.answer`` tuple; xsd/transport/poller.py), for a session it found prepared.
        -> (bytes consumed, journaled payload bytes)."""
        daemon = self.daemon
        if run is None:
            if daemon.access_log:
                return 0, 0
            conn = self.prepare(session)
            room = session.event_room(flush_at)     # for the batch's first run only
        else:
            conn = session.native
            room = 0
        answer = self._answer
        stats = daemon.stats
        consumed = journaled = 0
        while True:
            if run is not None:
                used, out, journal_bytes, _, stop, fired, inlined = run
                run = None
            elif stats.timed:
                started = perf_counter()
                used, out, journal_bytes, handled, stop, fired, inlined = answer(
                    conn, data, consumed, room)
                if handled:
                    _sample(stats, data, consumed, handled, perf_counter() - started)
            else:
                used, out, journal_bytes, _, stop, fired, inlined = answer(
                    conn, data, consumed, room)
            room = 0
            consumed += used
            journaled += journal_bytes
            if conn.watches_journaled and (log := self.engine.watch_log()):
                # Before any of the run's output moves (a flush commits the journal first).
                daemon.watches_logged(session, watch_changes(log))
                journal_bytes = journal_bytes or 1      # the journal has a record to write
            if stop == STOP_TXN:
                self._transaction_moved(session, conn)
            if stop == STOP_EVENTS:
                self._fire_before_reply(session, out)
            elif fired:
                self._deliver(session, out, self._deliveries(), flush_at)
            elif out:
                # A socket's replies need not wait for the batch's flush when there is no
                # journal to write first: in memory, or journaling after a run that left the
                # store's change log empty (reads, with every change before them on disk
                # already: a reply never shows what the journal does not hold), or once
                # ``commit`` has written the record of the run's changes (none for a write
                # inside a transaction).  They go straight to the transport, unless output of
                # this client is already waiting (Session.direct_replies says which transports
                # allow it).
                if session.direct_replies and not (
                        session.out or session.backlog or session.paused or (
                            daemon.listeners and (journal_bytes or daemon.store.has_changes())
                            and (commit is None or not commit(session)))):
                    session.write(out)      # nothing of this client waits before these
                    if inlined:             # WATCHes' initial events among them (engine.h)
                        session.events_inlined(out, inlined, False)
                    if session.unsent_held or (session.unsent is not None and session.unsent()):
                        session.count_unsent()  # the budget's count moves only then
                else:
                    session.send(out)
                    if inlined:
                        session.events_inlined(out, inlined, True)
            if stop != STOP_FULL and stop != STOP_EVENTS and (
                    stop != STOP_TXN or consumed == len(data)):
                return consumed, journaled
            if session.out_bytes > flush_at:
                daemon.flush()
            if session.paused or session.closed:
                return consumed, journaled

    def answered(self, sessions) -> str:
        """What the engine answered on ``sessions``' connections, by request type
        ("READ:12 TRANSACTION_START:3"; memreport shows it): which requests take the C path."""
        counts, conflicts = {}, 0
        for session in sessions:
            conn = session.native
            if conn is not None:
                for op in conn.COUNTED_OPS:
                    counts[op] = counts.get(op, 0) + conn.requests(op)
                conflicts += conn.conflicts()
        items = [f"{Op(op).name}:{n}" for op, n in sorted(counts.items()) if n]
        if conflicts:   # TRANSACTION_ENDs answered EAGAIN (an error reply: not a request above)
            items.append(f"TRANSACTION_END/EAGAIN:{conflicts}")
        return " ".join(items)

    def _transaction_moved(self, session, conn) -> None:
        """After a TRANSACTION_START or END the engine answered (engine.h, XSD_RUN_TXN):
        the session's table and next id (which the conn mirrors) learn what C did, as
        ops.do_transaction_start / do_transaction_end would have recorded it."""
        kind, tx_id, handle = self.engine.transaction()
        if kind == TXN_STARTED:
            daemon = self.daemon
            try:
                tx = CTransaction.adopt(daemon.store, tx_id, handle,
                                        transaction_node_limit(daemon, session))
            except BaseException:   # out of memory wrapping it (adopt owns nothing then)
                conn.drop_started(tx_id, handle)
                raise
            session.transactions[tx_id] = conn.txns[tx_id] = tx
            session.next_tx_id = conn.next_tx_id = (tx_id + 1) & 0xFFFFFFFF
            return
        session.transactions.pop(tx_id, None)       # the C conn dropped it; freed with it
        conn.txns.pop(tx_id, None)
        if kind == TXN_CONFLICT:    # the engine answered EAGAIN, as dispatch counts it
            session.counters.error(7, "EAGAIN")
        elif kind == TXN_FAILED:    # the engine answered EIO, as dispatch does for an exception
            log.error("%r: TRANSACTION_END of %d failed applying its commit (out of memory)",
                      session, tx_id)
            session.counters.error(7, "EIO")

    def _fire_before_reply(self, session, out: bytes) -> None:
        """The replies before the changing request's, its event (C xenstored queues a
        request's events before its reply; dispatch._fire), then its reply."""
        daemon = self.daemon
        reply_at, event = self.engine.event(daemon.store.decode_perms, CHANGE, REMOVE)
        if reply_at:
            session.send(out[:reply_at])
        try:
            daemon.fire((event,))
        except Exception:           # the change is made and will be acknowledged
            log.exception("%r: internal error firing watches", session)
        session.send(out[reply_at:])

    def _deliver(self, session, out: bytes, groups: bytes, flush_at: int) -> None:
        """A run's replies with the watch events its changes fired (Engine.deliveries)
        between them: each change's deliveries are queued on their sessions after the
        replies before its own and before it (C xenstored queues a request's events before
        its reply; dispatch._fire), the requester itself possibly among them.  After each
        such reply the output is flushed past ``flush_at``, where the stop per watched
        change (--python-fires) flushes it: events coalesce and drop as they did there
        (after the last one, with no event to follow, the caller's check does it).
        A WATCH's group (``DELIVERY_AFTER``) goes after its reply, as dispatch sends a
        watch's initial event (REPLY_FIRST)."""
        daemon = self.daemon
        deliver = daemon.watches.deliver
        send = session.send
        sent = 0
        held = -1       # where the reply whose deliveries are queued starts (-1: none):
        for reply_at, path, records in delivery_groups(groups):   # several groups may share
            if reply_at & DELIVERY_AFTER:       # one (a commit's events); a WATCH's first
                reply_at &= ~DELIVERY_AFTER     # event goes after its reply
                if held >= 0:
                    sent = self._reply_after_deliveries(session, out, held, flush_at)
                    held = -1
                upto = _reply_end(out, reply_at)
                if upto > sent:
                    send(out[sent:upto])
                    sent = upto
                try:
                    deliver(records, path)
                except Exception:   # the watch is added and acknowledged
                    log.exception("%r: internal error firing watches", session)
                if session.out_bytes > flush_at:
                    daemon.flush()
                continue
            if reply_at != held:
                if held >= 0:
                    sent = self._reply_after_deliveries(session, out, held, flush_at)
                if reply_at > sent:
                    send(out[sent:reply_at])
                    sent = reply_at
                held = reply_at
            try:
                deliver(records, path)
            except Exception:       # the change is made and acknowledged
                log.exception("%r: internal error firing watches", session)
        if held >= 0:   # the last group's reply and the rest of the run's in one send: no
            send(out[held:] if held else out)   # event follows them, to coalesce or drop
        elif sent < len(out):
            send(out[sent:])

    def _reply_after_deliveries(self, session, out: bytes, reply_at: int, flush_at: int) -> int:
        """Queue the reply at ``reply_at`` (its deliveries queued before it); where it ends."""
        end = _reply_end(out, reply_at)
        session.send(out[reply_at:end])
        if session.out_bytes > flush_at:
            self.daemon.flush()
        return end

    def _configure(self, session):
        if self._known_epoch != self.epoch:
            self._refresh_domains()
        conn = session.native
        if conn is None:
            conn = session.native = self.engine.conn()
        configure(conn, self.daemon.quotas, session)
        if self.fires:
            configure_watches(conn, self.daemon, session)
        if not session.privileged:
            for tx in session.transactions.values():
                tx.refresh_limit()      # transaction-nodes, as the quota stands now
        session.native_epoch = self.epoch
        return conn

    def _refresh_domains(self) -> None:
        known = {0, *self.daemon.domains.domains}
        engine = self.engine
        for domid in self._known - known:
            engine.domain_known(domid, False)
        for domid in known - self._known:
            engine.domain_known(domid, True)
        self._known = known
        self._known_epoch = self.epoch


def _reply_end(out: bytes, reply_at: int) -> int:
    """Where the reply starting at ``reply_at`` in a run's output ends."""
    return reply_at + HEADER.size + HEADER.unpack_from(out, reply_at)[3]


def configure(conn, quotas, session) -> None:
    """Tell ``conn`` (the engine's) who ``session`` is and, unprivileged, what binds it, as
    ``quotas`` (the daemon's quota.Quotas) and ops._charge see it now."""
    domid = session.domid
    conn.configure(domid, session.target, session.privileged, session.read_only,
                   quotas.path_max(domid))
    if not session.privileged:
        value = quotas.get
        conn.quotas(node_size=value("node-size", domid), permissions=value("permissions", domid),
                    nodes=value("nodes", domid), memory=value("memory", domid),
                    memory_soft=quotas.soft["memory"], soft_warned=domid in quotas.soft_warned,
                    watch_bytes=watch_bytes(session))
        conn.txn_quotas(value("transactions", domid), value("transaction-nodes", domid))


def configure_watches(conn, daemon, session) -> None:
    """Tell ``conn`` what WATCH and UNWATCH in C need of ``session`` (engine.h
    xsd_conn_watches): its handle in the daemon's C registry (made now if it has none),
    the "watches" quota binding it (quotas.check's), and whether listeners hear of its
    watches (Daemon.watch_added tells them only for such a session: then the engine
    logs the ones it answers, for ``FastPath.serve`` to tell)."""
    quotas = daemon.quotas
    conn.watches(daemon.watches.session_handle(session),
                 0 if session.privileged else quotas.get("watches", session.domid),
                 bool(daemon.listeners) and daemon.keeps_watches(session))
    # A WATCH's initial event may be written among the replies, up to queue_event's bound
    # (none waiting: Session.event_room), pushed with the next run's room.
    conn.inline_events = session.max_events
    conn.inline(0)


def _sample(stats, data: bytes, at: int, handled: int, seconds: float) -> None:
    """The latency sample dispatch.handle takes (one request in SAMPLE_EVERY, with
    --metrics), for ``handled`` requests the engine answered from ``data[at:]`` in
    ``seconds``: each request due for a sample is charged the batch's mean."""
    countdown = stats.countdown
    if countdown >= handled:
        stats.countdown = countdown - handled
        return
    index, mean = 0, seconds / handled
    while True:
        op, _, _, length = HEADER.unpack_from(data, at)
        if index == countdown:
            stats.observe(op, mean)
            countdown += SAMPLE_EVERY
        index += 1
        if index == handled:
            break
        at += HEADER.size + length
    stats.countdown = countdown - handled
