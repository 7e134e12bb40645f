"""The client side of the xenstore protocol, without I/O: one core under both clients.

``ProtocolCore`` is what ``connection.Connection`` (threads) and
``aio.AsyncClient`` (asyncio) share; they only move bytes and wake waiters.
Bytes come in through ``feed``; requests go out as the bytes ``send``
returns.  The core owns:

- request ids and the requests in flight (``send`` registers a *waiter*, an
  object of the shell's choosing, and ``feed`` hands back the replies as
  ``(waiter, reply, error)`` for the shell to complete);
- the connection's *generation*: a transaction id is valid only in the
  generation that opened it (``send(gen=...)`` refuses any other);
- with a ``WatchRegistry`` and a ``DeliveryQueue`` (the clients'
  subscriptions): routing of watch events to subscriptions, the barrier
  tokens of ``sync``, the WATCH and UNWATCH requests of subscriptions and
  re-registration (re-watch) after a reconnect, with the ``Resync`` queued
  exactly where the watch became active again in the event stream.

The core is not locked: the threaded shell calls it under one lock, the
asyncio shell from its loop.  Watch events with a token the registry does not
know (all of them for a core without registry, as the xenstore-* shims use)
come back from ``feed`` as ``(path, token)`` pairs.

Wire facts: docs/misc/xenstore.txt (req_id echoed in the reply; WATCH_EVENT
carries ``path\\0token\\0``; a WATCH is followed by one initial event).
"""
import logging

from xenstore_protocol import ERROR_NAMES, Decoder, Op, Packet, XenstoreError, join_fields, split_fields

log = logging.getLogger("watchlib")

# Path watched (with a fresh token) by sync(): any "@name" may be watched and
# gets its initial event like any watch; nothing ever fires it otherwise.
BARRIER_PATH = "@watchlibBarrier"

REQ_ID_MAX = 0xFFFFFFFF     # req_id is a uint32_t (xs_wire.h); 0 is never used


class Disconnected(ConnectionError):
    """The connection to the daemon was lost (or closed) before a reply came.

    The request may or may not have been applied.
    """


def error_from_reply(payload: bytes) -> XenstoreError:
    name = payload.split(b"\0", 1)[0].decode("ascii", "replace")
    if name not in ERROR_NAMES:
        return XenstoreError("EIO", f"daemon sent unknown error {name!r}")
    return XenstoreError(name)


def watch_payload(path: str, token: str) -> bytes:
    return join_fields(path.encode(), token.encode())


class Fed:
    """What one ``feed`` produced: replies to complete, unrouted events, queue woken."""
    __slots__ = ("replies", "events", "woke")

    def __init__(self):
        self.replies = []       # (waiter, reply payload or None, XenstoreError or None)
        self.events = []        # (path, token) the registry does not route
        self.woke = False       # something was queued for the dispatcher


class ProtocolCore:
    def __init__(self, registry=None, queue=None):
        self.registry = registry          # watches.WatchRegistry, for a subscribing client
        self.queue = queue                # subscription.DeliveryQueue, with the registry
        self.generation = 1
        self.barriers = {}                # sync token -> waiter
        self.rewatch_pending = False      # lost; watches not yet re-registered
        self._decoder = Decoder()
        self._req_id = 0
        self._pending = {}                # req_id -> (waiter, hook)
        self._woke = False

    # -- requests ----------------------------------------------------------------

    def send(self, op: int, payload: bytes, tx_id: int, waiter, hook=None, gen=None):
        """Register a request; ``(req_id, bytes to write)``.

        ``hook(packet)`` runs inside ``feed`` as the reply arrives, before
        anything after it in the stream is handled.
        """
        if gen is not None and gen != self.generation:
            raise Disconnected("the connection this transaction belonged to was lost")
        self._req_id = self._req_id % REQ_ID_MAX + 1
        req_id = self._req_id
        self._pending[req_id] = (waiter, hook)
        return req_id, Packet(op, req_id, tx_id, payload).encode()

    def forget(self, req_id: int) -> None:
        """Stop waiting for a reply (timed out, or the send failed); it is dropped if it comes."""
        self._pending.pop(req_id, None)

    def feed(self, data: bytes) -> Fed:
        """Handle bytes read from the daemon, in order; raises ProtocolError on a broken stream."""
        out = Fed()
        self._woke = False          # set by the hooks that queue something
        for packet in self._decoder.feed(data):
            if packet.op == Op.WATCH_EVENT:
                self._event(packet.payload, out)
                continue
            waiter, hook = self._pending.pop(packet.req_id, (None, None))
            if waiter is None:
                continue            # timed out, or fire-and-forget
            if hook is not None:
                try:
                    hook(packet)
                except Exception:
                    log.exception("watchlib: error in a reply hook")
            if packet.op == Op.ERROR:
                out.replies.append((waiter, None, error_from_reply(packet.payload)))
            else:
                out.replies.append((waiter, packet.payload, None))
        out.woke |= self._woke
        return out

    def _event(self, payload: bytes, out: Fed) -> None:
        fields = split_fields(payload)
        if len(fields) < 2:
            return
        path, token = fields[0].decode("latin-1"), fields[1].decode("latin-1")
        if self.registry is None:
            out.events.append((path, token))
            return
        waiter = self.barriers.pop(token, None)
        if waiter is not None:
            self.queue.push_barrier(waiter)
            out.woke = True
            return
        try:
            routes = self.registry.route(path, token)
        except Exception:
            log.exception("watchlib: error while routing a watch event")
            return
        if routes is None:
            out.events.append((path, token))
            return
        for sub, above in routes:
            out.woke |= self.queue.push_event(sub, path, False, above)

    def lost(self, rewatch: bool) -> list:
        """The connection went away: the waiters to fail (requests in flight, barriers).

        A new generation starts; the daemon's watches are gone with the
        connection, so every daemon watch is to be registered again.
        """
        self.generation += 1
        self._decoder = Decoder()
        failed = [waiter for waiter, _ in self._pending.values()]
        self._pending = {}
        if self.registry is not None:
            self.rewatch_pending = rewatch
            self.registry.disconnected()
        failed.extend(self.barriers.values())
        self.barriers.clear()
        return failed

    def close(self) -> list:
        """Closed for good: every waiter to fail."""
        failed = [waiter for waiter, _ in self._pending.values()]
        self._pending = {}
        failed.extend(self.barriers.values())
        self.barriers.clear()
        self.rewatch_pending = False
        return failed

    # -- subscriptions (a core with a registry) -----------------------------------

    def subscribe(self, sub):
        """Attach ``sub``; the daemon watch to register (WATCH) first, or None if it exists."""
        dw, created = self.registry.add(sub)
        return dw if created else None

    def watch_request(self, dw, rewatch=False):
        """``(op, payload, hook)`` of the WATCH for daemon watch ``dw``.

        Its initial event (the daemon sends one after the OK) is swallowed;
        after a reconnect (``rewatch``) the hook queues a ``Resync`` for every
        subscription on it, exactly where the watch became active again.
        """
        dw.swallow = True

        def hook(packet):
            if packet.op == Op.ERROR:
                dw.swallow = False
                return
            dw.registered = True
            if rewatch:
                for sub in list(dw.subs.values()):
                    self._woke |= self.queue.push_resync(sub)
        return Op.WATCH, watch_payload(dw.path, dw.token), hook

    def watch_failed(self, dw, sub) -> None:
        """The WATCH for ``sub``'s new daemon watch never got its OK."""
        dw.swallow = False
        sub.active = False
        self.registry.remove(sub)

    def rewatch_requests(self) -> list:
        """``[(dw, op, payload, hook)]`` for every daemon watch not registered on this connection.

        One registered since the reconnect (by a new subscription) is current.
        """
        return [(dw,) + self.watch_request(dw, rewatch=True)
                for dw in self.registry.watches() if not dw.registered]

    def unsubscribe(self, sub):
        """Detach ``sub`` and forget what waits for it; the UNWATCH payload to send, or None."""
        if not sub.active:
            return None
        sub.active = False
        self.queue.drop(sub)
        dw = self.registry.remove(sub)
        if dw is not None and dw.registered:
            return watch_payload(dw.path, dw.token)
        return None

    def push_initial(self, sub, paths) -> bool:
        """Queue ``sub``'s initial events; True if anything was queued."""
        if not sub.active:
            return False
        for path in paths:
            self.queue.push_event(sub, path, initial=True)
        return True

    def add_barrier(self, waiter) -> bytes:
        """The WATCH payload of a new sync barrier; its initial event queues ``waiter``.

        The daemon queues that event behind every event it queued for us
        before, so once it reaches the dispatcher all earlier events are
        delivered.
        """
        token = self.registry.new_token()
        self.barriers[token] = waiter
        return watch_payload(BARRIER_PATH, token)

    def drop_barrier(self, payload: bytes) -> None:
        token = split_fields(payload)[1].decode()
        self.barriers.pop(token, None)

    @staticmethod
    def wants_value(sub, item) -> bool:
        """The dispatcher reads the node's value before delivering this item."""
        from .subscription import Event
        return isinstance(item, Event) and sub.with_value and not item.path.startswith("@")
