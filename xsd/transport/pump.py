"""The request pump: one for every transport (socket connections and guest rings).

It feeds a client's request packets to the daemon, stops at the first one
after which the client's session is paused (its output over the high-water
mark) or closed, and keeps the rest for later (``serve`` / ``drain``).  And
it decides when the daemon flushes (``request_flush``): in memory, or with
nothing for the journal to write, at once; else once every transport's
callbacks of this loop turn have run, so that one journal write and one
fsync cover them all (group commit), waiting a turn longer while the
durability's policy says so (``hold_back``, ``xsd/durability/group_commit.py``).
One exception: a client whose batch alone made the last commit, sending again
with no other batch waiting, is committed and answered at once when a commit
is cheap (``commit_cheap``: tmpfs), since no one has been seen to share it
with: inside the C path's run (``_commit_now``: the record, then its replies
straight to the transport, as in memory), or by a flush in its callback when
its batch also made output for others (watch events); a second client's
batch puts everything back on the scheduled flush.

Snapshots are charged to who causes them.  A snapshot is due because the
journal grew, and the journal grows by what clients write.  The pump counts
the bytes of each session's WRITE, MKDIR, RM and SET_PERMS requests since the
last snapshot began; while a snapshot is being written (persist.py,
``start_snapshot``), each session that wrote at least a quarter of them
(``DEBTOR_SHARE``) has one step of it (one record, about 2,048 nodes) run
before each of its batches: its own requests wait for that work, where every
other client waits at most for the one step a timer runs every few
milliseconds.  (``snapshot-steps-charged`` in CONTROL print counts them.)
"""
import weakref

from xenstore_protocol import Op

# Output gathered from one batch of requests before it is handed over early:
# a read of 256 KiB of small requests may ask for 50 MiB of replies.
FLUSH_AT = 64 * 1024
# Requests whose payload ends up in the journal as node state: what makes snapshots due.
JOURNALED = frozenset({int(Op.WRITE), int(Op.MKDIR), int(Op.RM), int(Op.SET_PERMS)})
DEBTOR_SHARE = 4                # a debtor wrote at least 1/DEBTOR_SHARE of the bytes


class RequestPump:
    def __init__(self, daemon, loop=None, policy=None):
        self.daemon = daemon
        self.loop = loop              # call_soon for group commit; None: flush at once
        self.policy = policy          # the journal (persist.Persistence): hold_back, snapshots
        self._flush_scheduled = False
        self._batches = 0             # transports' batches waiting for the scheduled flush
        self._owner = None            # id() of the session of the one batch waiting, if one
        self._alone = None            # id() of the session whose batch alone made the last
                                      # scheduled commit, while it sends alone
        self._committed = False       # _commit_now wrote a record in this batch
        self._writers = weakref.WeakSet()   # sessions whose ``journal_written`` is counting
        self._debtors = ()            # sessions charged for the snapshot being written
        self._debt_epoch = None       # the journal epoch the debtors were chosen for

    # -- requests -----------------------------------------------------------------
    def serve_bytes(self, session, data: bytes, run=None) -> bytes:
        """The C request path first (xsd/core/fastpath.py): it answers the requests at the
        start of ``data`` it can; the rest, from the first request it leaves to Python, is
        returned for the transport's decoder and ``serve``.  The caller holds no partial
        packet and no queued request, so ``data`` starts at a packet and order is kept.
        When the engine answered all of it, the flush is asked for here, and only if some
        output or a journal commit waits for it (in memory, replies went out directly).
        ``run``: the engine's first run on ``data``, made by the C poller (FastPath.serve)."""
        daemon = self.daemon
        fast = daemon.fastpath
        if fast is None or session.paused:
            return data
        policy = self.policy
        if policy is None:              # in memory
            consumed, _ = fast.serve(session, data, FLUSH_AT, None, run)
            if session.out_bytes > FLUSH_AT:
                daemon.flush()
            if consumed < len(data):
                return data[consumed:] if consumed else data
            if daemon.dirty:
                daemon.flush()          # else every reply already went out (fastpath.py)
            return b""
        if policy.job is not None:
            self._pay_snapshot_debt(session)
        alone = self._alone == id(session)
        consumed, journaled = fast.serve(session, data, FLUSH_AT,
                                         self._commit_now if alone else None, run)
        if session.out_bytes > FLUSH_AT:
            daemon.flush()
        if journaled:
            self.count_written(session, journaled)
        if consumed < len(data):
            return data[consumed:] if consumed else data
        if daemon.dirty:
            # Replies wait.  For a record when the engine journaled (at worst, a WRITE inside
            # a transaction behind output of its client's that was waiting: a turn for no
            # record) or the journal has anything else waiting.
            if self.loop is None or not (journaled or policy.pending()):
                daemon.flush()          # nothing for the journal: no commit to share
            elif alone and not self._flush_scheduled and policy.commit_cheap():
                daemon.flush()          # its record, then its replies: no one to wait for
            else:
                self._schedule_flush(id(session))   # the changes wait for their record
        elif self._committed:
            self._after_commit()        # the replies went out after the record (fastpath.py)
        elif policy.pending():
            self.request_flush()        # another batch's record waits: counted with it
        return b""

    def _commit_now(self, session) -> bool:
        """``FastPath.serve``'s ``commit``: ``session``'s batch may have changes its
        replies would show.  When its batch alone made the last commit and a commit
        is cheap (no one to share one with, and no fsync worth waiting a loop turn for:
        ``serve_bytes``), write the record now (the commit step of ``Daemon.flush``) and say
        so: its replies may then go straight to the transport.  Else False: they wait for
        the flush."""
        if self._alone != id(session) or self._flush_scheduled or self.loop is None \
                or not self.policy.commit_cheap():
            return False
        for listener in self.daemon.listeners:
            listener.commit()
        self._committed = True
        return True

    def _after_commit(self) -> None:
        """The last step of ``Daemon.flush`` after ``_commit_now``'s commit: a snapshot due."""
        self._committed = False
        for listener in self.daemon.listeners:
            listener.after_output()

    def serve(self, session, packets, queue) -> None:
        """Handle ``packets`` in order; once ``session`` is paused or closed, the rest wait
        in ``queue`` (a deque the transport drains with ``drain`` when it can write again)."""
        daemon = self.daemon
        if self.policy is not None:
            self._charge(session, packets)
        handle = daemon.handle
        for i, packet in enumerate(packets):
            handle(session, packet)
            if session.out_bytes > FLUSH_AT:
                daemon.flush()        # lets the transport push back mid-batch
            if session.paused or session.closed:
                queue.extend(packets[i + 1:])
                return

    def drain(self, session, queue, flush_each: bool = False) -> None:
        """Handle what waits in ``queue`` while ``session`` can take output."""
        daemon = self.daemon
        handle = daemon.handle
        while queue and not (session.paused or session.closed):
            handle(session, queue.popleft())
            if flush_each or session.out_bytes > FLUSH_AT:
                daemon.flush()

    # -- who pays for snapshots ----------------------------------------------------------
    def snapshot_running(self) -> bool:
        """A snapshot is being written: every batch comes here (``_pay_snapshot_debt``)."""
        return self.policy is not None and self.policy.job is not None

    def _pay_snapshot_debt(self, session) -> None:
        journal = self.policy
        if journal.snapshot_running:
            if self._debt_epoch != journal.epoch:
                self._choose_debtors(journal.epoch)
            if session in self._debtors:
                journal.snapshot_step(charged=True)

    def _charge(self, session, packets) -> None:
        self._pay_snapshot_debt(session)
        sent = 0
        for packet in packets:
            if packet.op in JOURNALED:
                sent += len(packet.payload)
        if sent:
            self.count_written(session, sent)

    def count_written(self, session, sent: int) -> None:
        """``session`` sent ``sent`` more journaled payload bytes (kept on the session, a
        plain attribute, so the count costs a batch no dictionary of weak references)."""
        counted = session.journal_written
        if not counted:
            self._writers.add(session)
        session.journal_written = counted + sent

    def _choose_debtors(self, epoch: int) -> None:
        writers = list(self._writers)
        total = sum(s.journal_written for s in writers)
        self._debtors = weakref.WeakSet(s for s in writers
                                        if total and s.journal_written * DEBTOR_SHARE >= total)
        self._debt_epoch = epoch
        for s in writers:
            s.journal_written = 0
        self._writers.clear()

    # -- group commit ---------------------------------------------------------------
    def request_flush(self) -> None:
        """A transport handed over its batch: flush now, or once this loop turn is done.
        Now when no journal write waits (in memory, or nothing for the journal: a
        transaction's start, reads answered in Python): no commit to share."""
        policy = self.policy
        if policy is None or self.loop is None or not policy.pending():
            self.daemon.flush()
            return
        self._schedule_flush()

    def commit_held(self, batches: int) -> None:
        """The C poller holds the replies of ``batches`` connections' journaled batches for
        the commit (xsd/transport/poller.py), or watch events their sockets did not take,
        having served every socket ready this turn: flush now in memory, or when a commit
        is cheap (no fsync to share: the batches of this turn are in it), else once this
        loop turn is done, counted with the transports' batches."""
        if self.policy is None or self.loop is None or (
                not self._flush_scheduled and self.policy.commit_cheap()):
            self.daemon.flush()
            return
        self._batches += batches - 1
        self._schedule_flush()

    def _schedule_flush(self, owner=None) -> None:
        """Journaling, with a record waiting: flush once this loop turn is done.  ``owner``:
        the id() of the session whose C-path batch this is (None: a batch of Python's)."""
        self._batches += 1
        self._owner = owner if self._batches == 1 else None
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        if self.policy.hold_back(self._batches):
            self.loop.call_soon(self._scheduled_flush)   # one more turn: more clients are coming
            return
        self._flush_scheduled = False
        self._alone = self._owner if self._batches == 1 else None
        self._batches = 0
        self._owner = None
        self.daemon.flush()
