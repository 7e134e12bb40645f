"""What a subscriber receives, and the bounded, coalescing queue it waits in.

Items handed to a callback (each carries ``.subscription``):

- ``Event(path, subscription, initial, value)``: something at or below a node
  the pattern selects changed (or, with ``above`` set, a node above them did,
  see ``watchlib.patterns``).  ``initial`` marks the events fired when the
  subscription was made; ``value`` is the value read just before delivery when
  the subscription asked for it (None: no such node, or not asked).
- ``LostEvents(subscription, dropped)``: the subscription's queue hit its
  bound and its undelivered events were thrown away.  Re-read what you
  care about.
- ``Resync(subscription)``: the connection to the daemon was lost and has
  been re-established with the watch registered again.  Events may have been
  missed while it was down: re-read what you care about.

``DeliveryQueue`` holds every client's pending items in one FIFO, in the order
the daemon sent them, so that one dispatcher delivers them in that order and
a barrier placed in the FIFO is passed only once everything before it was
delivered.  Coalescing: an event for a path that already waits undelivered
in the same subscription is merged into the waiting one (it keeps its place;
the value, read at delivery, is the newest).  The bound counts distinct
waiting paths per subscription.  No locking here: the clients serialise.
"""
import itertools
from collections import deque

from .patterns import Pattern

EVENT, LOST, RESYNC, BARRIER = range(4)

DEFAULT_MAX_PENDING = 4096

_sub_seq = itertools.count()


class Event:
    __slots__ = ("path", "subscription", "initial", "value", "above")

    def __init__(self, path, subscription, initial=False, value=None, above=False):
        self.path = path
        self.subscription = subscription
        self.initial = initial
        self.value = value
        self.above = above

    def __repr__(self):
        flags = "".join((" initial" if self.initial else "", " above" if self.above else ""))
        return f"<Event {self.path}{flags} value={self.value!r}>"

    def __eq__(self, other):
        return (isinstance(other, Event) and other.path == self.path and
                other.subscription is self.subscription and other.initial == self.initial
                and other.value == self.value and other.above == self.above)

    __hash__ = None


class LostEvents:
    __slots__ = ("subscription", "dropped")

    def __init__(self, subscription, dropped: int):
        self.subscription = subscription
        self.dropped = dropped

    def __repr__(self):
        return f"<LostEvents {self.subscription.pattern} dropped={self.dropped}>"


class Resync:
    __slots__ = ("subscription",)

    def __init__(self, subscription):
        self.subscription = subscription

    def __repr__(self):
        return f"<Resync {self.subscription.pattern}>"


class Subscription:
    """One ``watch(pattern, callback)``: cancel it, or use it as a context manager.

    Counters for the curious: ``delivered``, ``coalesced``, ``lost`` (events
    thrown away on overflow), ``resyncs``.
    """

    def __init__(self, client, pattern: str, callback, *, with_value=False, initial=True,
                 max_pending=DEFAULT_MAX_PENDING):
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._client = client
        self._pattern = Pattern(pattern)
        self.callback = callback
        self.with_value = with_value
        self.initial = initial
        self.max_pending = max_pending
        self.active = True
        self.delivered = 0
        self.coalesced = 0
        self.lost = 0
        self.resyncs = 0
        # Queue state, owned by DeliveryQueue.
        self._pending = {}          # path -> [initial, above]
        self._gen = 0               # bumped when pending is thrown away
        self._lost_marker = None    # the LOST entry waiting in the FIFO, if any
        self._lost_count = 0
        self._resync_marker = None
        self._watch = None          # the DaemonWatch it hangs on
        self._seq = next(_sub_seq)  # creation order: one event reaches subs in this order

    @property
    def pattern(self) -> str:
        return self._pattern.text

    @property
    def pending(self) -> int:
        """Distinct paths waiting for delivery."""
        return len(self._pending)

    def cancel(self):
        """Stop the subscription; the daemon watch goes when no one else uses it.

        Once ``cancel`` returns no callback of this subscription is running
        or will start (unless called from that very callback).
        """
        if self.active:
            self._client._unsubscribe(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cancel()

    def __repr__(self):
        state = "active" if self.active else "cancelled"
        return f"<Subscription {self.pattern} {state}>"


class DeliveryQueue:
    """One FIFO of (subscription, item) for a client; see the module docstring."""

    COMPACT_AT = 4096

    def __init__(self):
        self._order = deque()
        self._live = 0
        self._stale = 0

    def __len__(self):
        return self._live

    def push_event(self, sub, path: str, initial=False, above=False) -> bool:
        """Queue an event; False when it merged into one already waiting."""
        pend = sub._pending
        cur = pend.get(path)
        if cur is not None:
            cur[0] = cur[0] and initial
            cur[1] = cur[1] and above
            sub.coalesced += 1
            return False
        if len(pend) >= sub.max_pending:
            self._overflow(sub)
        pend[path] = [initial, above]
        self._order.append((sub, EVENT, path, sub._gen))
        self._live += 1
        return True

    def _drop_pending(self, sub) -> int:
        n = len(sub._pending)
        if n:
            sub._pending.clear()
            self._live -= n
            self._stale += n
        sub._gen += 1
        return n

    def _overflow(self, sub):
        n = self._drop_pending(sub)
        sub.lost += n
        sub._lost_count += n
        if sub._lost_marker is None:
            sub._lost_marker = marker = object()
            self._order.append((sub, LOST, marker, 0))
            self._live += 1
        self._maybe_compact()

    def push_resync(self, sub) -> bool:
        """Queue a Resync; it supersedes everything the subscription had waiting."""
        self._drop_pending(sub)
        if sub._lost_marker is not None:
            sub._lost_marker = None
            sub._lost_count = 0
            self._live -= 1
            self._stale += 1
        if sub._resync_marker is not None:
            return False
        sub._resync_marker = marker = object()
        self._order.append((sub, RESYNC, marker, 0))
        self._live += 1
        self._maybe_compact()
        return True

    def push_barrier(self, waiter) -> None:
        self._order.append((None, BARRIER, waiter, 0))

    def drop(self, sub) -> None:
        """Forget everything waiting for ``sub`` (cancelled)."""
        self._drop_pending(sub)
        for attr in ("_lost_marker", "_resync_marker"):
            if getattr(sub, attr) is not None:
                setattr(sub, attr, None)
                self._live -= 1
                self._stale += 1
        sub._lost_count = 0
        self._maybe_compact()

    def pop(self):
        """The next ``(subscription, item)``, ``(None, waiter)`` for a barrier, or None.

        An Event comes out with ``value`` None; the client fills it in.
        """
        order = self._order
        while order:
            sub, kind, key, gen = order.popleft()
            if kind == EVENT:
                if gen != sub._gen:
                    self._stale -= 1
                    continue
                flags = sub._pending.pop(key, None)
                if flags is None:          # cannot happen while gen matches
                    self._stale -= 1
                    continue
                self._live -= 1
                return sub, Event(key, sub, flags[0], None, flags[1])
            if kind == BARRIER:
                return None, key
            if kind == LOST:
                if sub._lost_marker is not key:
                    self._stale -= 1
                    continue
                sub._lost_marker = None
                count, sub._lost_count = sub._lost_count, 0
                self._live -= 1
                return sub, LostEvents(sub, count)
            if sub._resync_marker is not key:
                self._stale -= 1
                continue
            sub._resync_marker = None
            self._live -= 1
            sub.resyncs += 1
            return sub, Resync(sub)
        return None

    def _maybe_compact(self):
        if self._stale > self.COMPACT_AT and self._stale > self._live:
            keep = deque()
            for entry in self._order:
                sub, kind, key, gen = entry
                if kind == BARRIER or (
                        kind == EVENT and gen == sub._gen and key in sub._pending) or (
                        kind == LOST and sub._lost_marker is key) or (
                        kind == RESYNC and sub._resync_marker is key):
                    keep.append(entry)
            self._order = keep
            self._stale = 0
