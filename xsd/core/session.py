"""One client's xenstore state, whatever carries its bytes (socket or guest ring).

A Session knows the caller's domid and rights, its transactions and watches,
and how replies and watch events leave.  Output is gathered per batch of
requests (``out``) and handed to the transport in one write by ``flush``,
which the daemon calls once the batch is handled.  While the transport is
paused (its buffer over the high-water mark) output waits in ``backlog``;
there, an event identical to one still waiting is dropped as C xenstored
does ("dropping duplicate watch"), and events beyond ``max_events`` (per
batch, or waiting) are dropped and counted, so a client that never reads
cannot make the daemon grow.  A drop is never silent: the watch that lost an
event is owed one event on its own path (``overflowed``), sent once the
output drains.  That is a legal spurious event (docs/misc/xenstore.txt,
"Watches may be triggered spuriously") that tells the client to re-read what
lies below its watch.  Replies are never dropped: the transport stops
feeding this client's requests while it is paused, which bounds them.

Those bounds are per client; ``OutputBudget`` bounds their sum.  Against one
daemon-wide budget count every session's batch (``out``) and backlog, and
the bytes each transport still holds unsent, as the transport itself tells
through ``unsent`` (a socket's write buffer, a guest's output not yet in its
ring), looked at after each write and whenever the budget seems spent.  Once
it is spent, a client whose transport still holds output is paused at once
(``squeeze``, not at its high-water mark: so its drain is told, and with it
the catch-up event goes out); events for paused clients are then dropped as
above (the watch owed its event) and the log names each such client, once
per ``STUCK_LOG_INTERVAL``; a client whose transport is empty gets at most
``BATCH_WHEN_SPENT`` bytes of events per batch meanwhile.  So what stuck
clients hold in total is the budget plus ``BATCH_WHEN_SPENT`` and one batch's
replies per connection, whatever ``out_high_water`` is.  Replies are never
dropped, budget or not.
"""
import logging
import time
from collections import deque
from functools import partial

from xenstore_protocol.constants import HEADER, Op, PAYLOAD_MAX

from .stats import Counters
from .watches import SessionWatches

log = logging.getLogger("xsd.session")

_WATCH_EVENT = int(Op.WATCH_EVENT)
_HEADER_SIZE = HEADER.size

STUCK_LOG_INTERVAL = 60.0       # seconds between two "not reading" lines about one client
BATCH_WHEN_SPENT = 64 << 10     # bytes of events one batch gives a client once the budget is spent


_event_header = partial(HEADER.pack, _WATCH_EVENT, 0, 0)     # (payload length) -> header


def event_payload(path: str, token: bytes) -> bytes:
    """A WATCH_EVENT's payload for ``path`` and ``token``: "path NUL token NUL"."""
    return path.encode("ascii") + b"\0" + token + b"\0"


def event_frame(path: str, token: bytes):
    """A WATCH_EVENT frame for ``path`` and ``token``, or None past PAYLOAD_MAX (XSA-324)."""
    payload = event_payload(path, token)
    if len(payload) > PAYLOAD_MAX:
        return None
    return _event_header(len(payload)) + payload


class OutputBudget:
    """Output held for clients, summed over every session (issue 12).

    ``held`` counts the bytes in batches and backlogs, and what the transports
    last said they hold unsent (each session's ``unsent_held``; ``holders`` are
    the sessions whose transport held some then).
    """

    RECOUNT_INTERVAL = 0.05     # seconds: how stale the transports' part may be once spent

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self.holders = set()
        self._recounted = 0.0

    def spent(self) -> bool:
        if self.held < self.limit:
            return False
        # A transport that drained tells no one: ask those that held output again, but
        # not for every event while the budget stays spent.
        now = time.monotonic()
        if now - self._recounted >= self.RECOUNT_INTERVAL:
            self._recounted = now
            for session in list(self.holders):
                session.count_unsent()
        return self.held >= self.limit


class Session:
    def __init__(self, write, dirty: list, *, domid: int = 0, privileged: bool = True,
                 read_only: bool = False, name: str = "?", max_events: int = 1024,
                 budget: OutputBudget = None, unsent=None, squeeze=None,
                 direct_replies: bool = False):
        self.write = write          # the transport's write(bytes)
        # The transport takes a reply at once, outside the daemon's flush (a socket): the C
        # path may write there directly in memory (fastpath.py).  A guest ring may not: its
        # requests are consumed at the flush, and a reply must not overtake that.
        self.direct_replies = direct_replies
        self._dirty = dirty         # the daemon's list of sessions to flush
        self.domid = domid
        self.privileged = privileged
        self.read_only = read_only
        self.target = None          # SET_TARGET: the domain this one acts for
        self.name = name
        self.transactions = {}      # tx_id -> Transaction
        self.watches = SessionWatches()  # watch_key(path, token) -> Watch; the registry's view
        self.next_tx_id = 1
        self.max_events = max_events
        self.out = []               # this batch's output, written by flush()
        self.out_bytes = 0
        self.out_events = 0
        self.out_event_set = set()  # this batch's events: an identical one is not sent twice
        self.paused = False
        self.backlog = deque()      # output held while the transport is paused
        self.pending_events = set() # events in the backlog, for coalescing
        self.events_dropped = 0
        self.events_sent = 0        # queued for the client (stats.py reads these three)
        self.events_coalesced = 0   # identical to one still waiting: not queued twice
        self.drops_logged = 0       # events_dropped already told in the log (stats.log_summaries)
        self.counters = Counters()  # requests by type and outcome (dispatch.py)
        self.overflowed = {}        # watch key -> None: owed one event on the watch's own path
        self.budget = budget        # the daemon-wide OutputBudget, or None (no bound)
        self.unsent = unsent        # () -> bytes the transport holds unsent; None: not told
        self.unsent_held = 0        # what it said last, counted in budget.held
        self.squeeze = squeeze      # () -> None: pause now if the transport holds output
        self._stuck_logged = None   # time.monotonic() of the last "not reading" line
        self.closed = False
        self.journal_watches = False    # a guest's: its watches outlive a daemon crash (persist.py)
        self.tx_issued_from = None      # after a restart: the first transaction id this session gave
        self.native = None              # the C request path's conn (fastpath.py), made at first use
        self.native_epoch = -1          # the FastPath.epoch it was configured for
        self.native_counted = None      # its per-type counts already in ``counters`` (stats.py)
        self.journal_written = 0        # journaled payload bytes sent since the last snapshot
                                        # began (the request pump charges snapshots by it)
        # () -> None, for a socket the C poller serves (xsd/transport/poller.py): told
        # whenever output starts waiting here or the client is paused, so the poller stops
        # writing this client's replies itself before they could overtake what waits.
        self.poller_hold = None

    def __repr__(self) -> str:
        return f"<Session {self.name} dom{self.domid}>"

    def tx_from_before_restart(self, tx_id: int) -> bool:
        """An id this session does not know, given by the daemon before a restart (guest.py):
        any id outside the range this session has given out since (``tx_issued_from`` up to
        ``next_tx_id``, modulo 2**32; the start is random, so an old id lands in that range
        with odds of one in 2**32 per id given out)."""
        start = self.tx_issued_from
        return start is not None and \
            (tx_id - start) & 0xFFFFFFFF >= (self.next_tx_id - start) & 0xFFFFFFFF

    # -- output -------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """A reply: always delivered, in order."""
        if self.paused or self.backlog:
            self.backlog.append(data)
            if self.budget is not None:
                self.budget.held += len(data)
            return
        if not self.out:
            self._dirty.append(self)
            if self.poller_hold is not None:
                self.poller_hold()
        self.out.append(data)
        self.out_bytes += len(data)
        if self.budget is not None:
            self.budget.held += len(data)

    def queue_event(self, path: str, token: bytes, watch=None) -> None:
        """A watch event for this client; ``watch`` (the watch's key, watches.watch_key) is
        owed a marker if it must be dropped."""
        self.queue_payload(event_payload(path, token), watch)

    def queue_payload(self, payload: bytes, watch=None) -> None:
        """``queue_event`` given the event's WATCH_EVENT payload, "event path NUL token NUL"
        (the C path's deliveries come so: watchreg.deliver_payloads)."""
        n = len(payload)
        if n > PAYLOAD_MAX:
            # XSA-324: never emit a frame over the limit; the client could not read it.
            self._drop_event("too long for a frame", watch)
            return
        data = _event_header(n) + payload
        n += _HEADER_SIZE                       # the frame's length
        budget = self.budget
        if (not self.paused and self.unsent_held and self.squeeze is not None
                and budget.spent()):
            # Its transport still holds output while the budget is spent: a client not
            # keeping up.  Paused now (not at its high-water mark), its drain is told and
            # its events take the paused road below, dropped while the budget is spent.
            self.squeeze()
            if not self.paused:
                self.count_unsent()             # it had drained meanwhile
        if not self.paused and not self.backlog:
            if data in self.out_event_set:
                # C xenstored drops an event identical to one still waiting to be written
                # (two watches of one client, same token, same event path): nothing is lost.
                self.events_coalesced += 1
                return
            if self.out_events >= self.max_events:
                self._drop_event("too many in one batch", watch)
                return
            if budget is not None:
                if self.out_bytes >= BATCH_WHEN_SPENT and budget.spent():
                    # One batch goes to the transport whole, past its high-water mark.
                    self._drop_event("daemon-wide output budget spent", watch)
                    return
                budget.held += n
            self.out_events += 1
            self.events_sent += 1
            self.out_event_set.add(data)
            if not self.out:
                self._dirty.append(self)
                if self.poller_hold is not None:
                    self.poller_hold()
            self.out.append(data)
            self.out_bytes += n
            return
        if data in self.pending_events:
            self.events_coalesced += 1      # the identical one waiting will tell the same
            return
        if len(self.pending_events) >= self.max_events:
            self._drop_event("backlog full", watch)
            return
        if budget is not None:
            if budget.spent():
                self._drop_event("daemon-wide output budget spent", watch)
                self._log_stuck()
                return
            budget.held += n
        self.pending_events.add(data)
        self.backlog.append(data)
        self.events_sent += 1

    def event_room(self, flush_at: int) -> int:
        """Bytes of output the C request path's run may reach with WATCHes' initial events
        written among its replies (engine.h xsd_conn_inline_events; fastpath.py gives it to
        the first run of a batch, and the engine writes them only for a run that answers the
        whole batch and fires nothing else), or 0: where queue_event would queue each of them
        at once, in ``out``, with nothing to coalesce, drop or flush on the way: nothing of
        this client waiting (so ``out_events`` is 0 and ``out_event_set`` empty, and the
        events are at most ``max_events``, the conn's bound), the batch within ``flush_at``
        (the request pump flushes only past it) and the budget not spent by it."""
        if self.out or self.backlog or self.paused:
            return 0
        budget = self.budget
        if budget is not None and budget.held + flush_at >= budget.limit:
            return 0
        return flush_at

    def events_inlined(self, out: bytes, count: int, waiting: bool) -> None:
        """``count`` watch events the C request path wrote among the replies in ``out`` (given
        ``event_room``), counted as queue_event counts the events it queues.  ``waiting``:
        ``out`` went to ``send``, not to the transport: until the flush an identical event is
        coalesced with them and they count against ``max_events``, as queued ones do."""
        self.events_sent += count
        if waiting:
            self.out_events += count
            add, at, end, unpack = self.out_event_set.add, 0, len(out), HEADER.unpack_from
            while at < end:
                op, _, _, length = unpack(out, at)
                following = at + _HEADER_SIZE + length
                if op == _WATCH_EVENT:
                    add(out[at:following])
                at = following

    def count_unsent(self) -> int:
        """Ask the transport what it holds unsent and count that in the budget."""
        budget, unsent = self.budget, self.unsent
        if budget is None or unsent is None:
            return 0
        n = 0 if self.closed else unsent()
        if n != self.unsent_held:
            budget.held += n - self.unsent_held
            self.unsent_held = n
            if n:
                budget.holders.add(self)
            else:
                budget.holders.discard(self)
        return n

    def _log_stuck(self) -> None:
        now = time.monotonic()
        if self._stuck_logged is None or now - self._stuck_logged >= STUCK_LOG_INTERVAL:
            self._stuck_logged = now
            log.warning("%r is not reading: %d bytes unsent in its transport, %d bytes and "
                        "%d events waiting for it, %d events dropped so far (daemon-wide "
                        "output budget %d bytes spent)",
                        self, self.unsent_held, sum(map(len, self.backlog)),
                        len(self.pending_events), self.events_dropped, self.budget.limit)

    def _drop_event(self, why: str, watch) -> None:
        if watch is not None:
            self.overflowed[watch] = None
            if self.poller_hold is not None:
                self.poller_hold()      # its owed event goes before any the poller would write
        self.events_dropped += 1
        if self.drops_logged == 0:
            # The first drop is told at once; the rest once per interval, per connection
            # (stats.log_summaries), so a guest that never reads cannot flood the log.
            self.drops_logged = self.events_dropped
            log.warning("%r: watch event dropped (%s); further drops are summarised "
                        "periodically", self, why)

    def flush(self) -> None:
        out = self.out
        if self.out_events:
            self.out_events = 0
            self.out_event_set.clear()
        budget = self.budget
        if budget is not None:
            budget.held -= self.out_bytes
        self.out_bytes = 0
        if out and not self.closed:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self.write(data)        # may call pause() before it returns
            if self.unsent_held or (self.unsent is not None and self.unsent()):
                self.count_unsent()     # the budget's count moves only then
        else:
            out.clear()
        if self.overflowed and not self.paused and not self.backlog:
            self._send_markers()

    def _send_markers(self) -> None:
        """One event per watch that lost some: its own path, so the client re-reads below it."""
        markers = []
        for key in self.overflowed:
            watch = self.watches.get(key)
            if watch is not None:               # still registered
                data = event_frame(watch.event_path(watch.path), watch.token)
                if data is not None:
                    markers.append(data)
        self.overflowed.clear()
        if markers and not self.closed:
            self.write(b"".join(markers))
            self.count_unsent()

    def pause(self) -> None:
        self.paused = True
        if self.poller_hold is not None:
            self.poller_hold()

    def resume(self) -> None:
        """The transport drained: hand it the backlog until it fills again."""
        self.paused = False
        backlog, pending, budget = self.backlog, self.pending_events, self.budget
        while backlog and not self.paused and not self.closed:
            data = backlog.popleft()
            pending.discard(data)
            if budget is not None:
                budget.held -= len(data)
            self.write(data)
        self.count_unsent()
        if self.overflowed and not backlog and not self.paused:
            self._send_markers()

    def discard_output(self) -> None:
        """The client is gone: drop what waited for it and give its share of the budget back."""
        budget = self.budget
        if budget is not None:
            budget.held -= sum(map(len, self.backlog)) + self.out_bytes + self.unsent_held
            budget.holders.discard(self)
        self.unsent_held = 0
        self.out_bytes = 0
        self.paused = False
        self.backlog.clear()
        self.pending_events.clear()
        self.overflowed.clear()
