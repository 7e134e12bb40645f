"""The blocking client: requests, transactions, subscriptions, barriers.

Threads of a Client, and the order in which things happen on them:

- *reader* (``connection.Connection``): reads every packet in daemon order;
  completes requests; routes each watch event to the subscriptions it
  reaches and appends it to the delivery FIFO (``DeliveryQueue``); on a lost
  connection, reconnects and starts a *rewatch* thread.
- *dispatcher* (started by the first ``watch`` or ``sync``): takes items off
  the FIFO one at a time and calls the subscription's callback; for a
  ``with_value`` subscription it first reads the value (a request, answered
  through the reader).  One dispatcher per client, so callbacks of a client
  never run concurrently and see events in daemon order.  An exception in a
  callback is logged (logger "watchlib") and the subscription lives on.
- *rewatch* (after a reconnect): sends WATCH again for every daemon watch and,
  as each is confirmed, queues a ``Resync`` for its subscriptions.
- any caller thread: requests, ``watch``, ``cancel``, ``sync``.

Calling the client from a callback is fine (requests, ``watch``, ``cancel``),
except ``sync()``, which waits for the dispatcher and so raises RuntimeError
there.
"""
import logging
import os
import threading
import time

from xenstore_protocol import Op, XenstoreError, join_fields

from . import commands
from .connection import Connection, Disconnected
from .subscription import DEFAULT_MAX_PENDING, DeliveryQueue, Event, Subscription
from .watches import WatchRegistry

log = logging.getLogger("watchlib")

# Path watched (with a fresh token) by sync(): any "@name" may be watched and
# gets its initial event like any watch; nothing ever fires it otherwise.
BARRIER_PATH = "@watchlibBarrier"

_client_ids = iter(range(1, 1 << 62))


class _Waiter:
    __slots__ = ("done", "error")

    def __init__(self):
        self.done = threading.Event()
        self.error = None


class _Ops:
    """read/write/... for Client and Transaction, through ``self._run``."""

    def read(self, path) -> bytes:
        return self._run(commands.read(path))

    def write(self, path, value) -> None:
        self._run(commands.write(path, value))

    def mkdir(self, path) -> None:
        self._run(commands.mkdir(path))

    def rm(self, path) -> None:
        self._run(commands.rm(path))

    def ls(self, path) -> list:
        return self._run(commands.ls(path))

    def exists(self, path) -> bool:
        return self._run(commands.exists(path))

    def get_perms(self, path) -> list:
        return self._run(commands.get_perms(path))

    def set_perms(self, path, perms) -> None:
        self._run(commands.set_perms(path, perms))


def drive(gen, request):
    """Run a sans-I/O command to completion with a blocking ``request(op, payload)``."""
    try:
        req = next(gen)
        while True:
            try:
                reply = request(*req)
            except XenstoreError as e:
                req = gen.throw(e)
            else:
                req = gen.send(reply)
    except StopIteration as stop:
        return stop.value


class Transaction(commands.TransactionState, _Ops):
    """A xenstore transaction on a Client (see ``Client.transaction``).

    Every request made through it is logged with its outcome.  If the
    commit fails with EAGAIN, the log is replayed in a new transaction: when
    every request gets the same answer as before, the block's code would have
    done the same, so the replayed transaction is committed in its place.  If
    any answer differs, or ``attempts`` commits all fail, XenstoreError
    ("EAGAIN") is raised.  The block must therefore decide only on what it
    read through ``t`` (use ``Client.run_transaction`` otherwise, which
    re-runs a function).
    """

    # -- the block ---------------------------------------------------------

    def __enter__(self):
        self._begin()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._end(False)
            return False
        self.commit()
        return False

    def _begin(self):
        conn = self._client._conn
        gen = conn.generation
        reply = conn.request(Op.TRANSACTION_START, b"\0", gen=gen, timeout=self._client.timeout)
        self.tx_id = int(reply.rstrip(b"\0"))
        self._gen = gen
        self._log = []

    def _request(self, op, payload):
        try:
            reply = self._client._conn.request(op, payload, self.tx_id, gen=self._gen,
                                               timeout=self._client.timeout)
        except XenstoreError as e:
            self._log.append((op, payload, None, e.name))
            raise
        self._log.append((op, payload, reply, None))
        return reply

    def _run(self, gen):
        if self.tx_id is None:
            raise RuntimeError("transaction not started (use it as a context manager)")
        return drive(gen, self._request)

    def _end(self, commit: bool):
        tx_id, self.tx_id = self.tx_id, None
        if tx_id is None:
            return
        try:
            self._client._conn.request(Op.TRANSACTION_END, b"T\0" if commit else b"F\0",
                                       tx_id, gen=self._gen, timeout=self._client.timeout)
        except (XenstoreError, Disconnected):
            if commit:
                raise

    def abort(self):
        self._end(False)

    def commit(self):
        """Commit; on EAGAIN replay the logged requests (see the class docstring)."""
        steps = {"end": self._end, "begin": self._begin, "request": self._request}
        drive(commands.commit_replaying(self), lambda step, *args: steps[step](*args))


class Client:
    """A blocking connection to xenstored.  See the module docstring for threads.

    ``path``: the socket (default ``$XENSTORED_PATH``, else
    /var/run/xenstored/socket; ``read_only`` picks ``socket_ro``).
    ``timeout``: seconds to wait for any one reply (None: no limit).
    ``reconnect``: reconnect when the daemon goes away (see ``Resync``).
    """

    def __init__(self, path=None, *, read_only=False, timeout=None, reconnect=True):
        self.socket_path = commands.socket_path(path, read_only)
        self.read_only = read_only
        self.timeout = timeout
        self._id = next(_client_ids)
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._reg_mutex = threading.RLock()     # serialises watch/cancel/rewatch
        self._registry = WatchRegistry(f"watchlib{os.getpid()}.{self._id}")
        self._queue = DeliveryQueue()
        self._barriers = {}                     # token -> _Waiter
        self._dispatcher = None
        self._current = None                    # subscription whose callback runs
        self._closed = False
        self._reconnect = reconnect
        self._rewatch_pending = False           # lost; watches not yet re-registered
        self._conn = Connection(self.socket_path, on_event=self._on_event,
                                on_lost=self._on_lost, on_restored=self._on_restored,
                                reconnect=reconnect, name=f"watchlib{self._id}")

    # -- plumbing ------------------------------------------------------------

    def _request(self, op, payload):
        return self._conn.request(op, payload, timeout=self.timeout)

    def _run(self, gen):
        return drive(gen, self._request)

    def close(self) -> None:
        """Close the connection and stop the dispatcher (pending events are dropped)."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
            for waiter in self._barriers.values():
                waiter.error = Disconnected("client closed")
                waiter.done.set()
            self._barriers.clear()
        self._conn.close()
        d = self._dispatcher
        if d is not None and d is not threading.current_thread():
            d.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def connected(self) -> bool:
        return self._conn.connected

    @property
    def reconnects(self) -> int:
        return self._conn.reconnects

    # -- plain requests --------------------------------------------------------

    def request(self, op, payload: bytes, tx_id: int = 0) -> bytes:
        """Send any request; the reply payload (XenstoreError for an ERROR reply)."""
        return self._conn.request(op, payload, tx_id, timeout=self.timeout)

    def get_domain_path(self, domid: int) -> str:
        return self._run(commands.get_domain_path(domid))

    def is_domain_introduced(self, domid: int) -> bool:
        return self._run(commands.is_domain_introduced(domid))

    def introduce(self, domid: int, mfn: int, port: int) -> None:
        self._run(commands.introduce(domid, mfn, port))

    def release(self, domid: int) -> None:
        self._run(commands.release(domid))

    # The per-method tx argument of the API: c.read(path, tx=t).
    def read(self, path, tx=None) -> bytes:
        return (tx._run if tx else self._run)(commands.read(path))

    def write(self, path, value, tx=None) -> None:
        (tx._run if tx else self._run)(commands.write(path, value))

    def mkdir(self, path, tx=None) -> None:
        (tx._run if tx else self._run)(commands.mkdir(path))

    def rm(self, path, tx=None) -> None:
        (tx._run if tx else self._run)(commands.rm(path))

    def ls(self, path, tx=None) -> list:
        return (tx._run if tx else self._run)(commands.ls(path))

    def exists(self, path, tx=None) -> bool:
        return (tx._run if tx else self._run)(commands.exists(path))

    def get_perms(self, path, tx=None) -> list:
        return (tx._run if tx else self._run)(commands.get_perms(path))

    def set_perms(self, path, perms, tx=None) -> None:
        (tx._run if tx else self._run)(commands.set_perms(path, perms))

    def glob(self, pattern: str) -> list:
        """The existing nodes a pattern selects (as a subscription's initial events), sorted."""
        from .patterns import Pattern
        pat = Pattern(pattern)
        if pat.literal:
            return [pat.text] if pat.special or self.exists(pat.text) else []
        return self._run(commands.walk_matches(pat))

    # -- transactions ----------------------------------------------------------

    def transaction(self, attempts: int = 5) -> Transaction:
        """``with c.transaction() as t:`` commits on exit, aborts on an exception.

        On EAGAIN the block's requests are replayed (up to ``attempts``
        commits in all) and committed if every answer is unchanged;
        otherwise XenstoreError("EAGAIN") is raised after the block.
        """
        return Transaction(self, attempts)

    def run_transaction(self, fn, attempts: int = 5):
        """Call ``fn(t)`` in a transaction, re-running it on EAGAIN; returns its result."""
        for attempt in range(attempts):
            t = Transaction(self, 1, replay=False)
            t._begin()
            try:
                result = fn(t)
            except BaseException:
                t._end(False)
                raise
            try:
                t._end(True)
                return result
            except XenstoreError as e:
                if e.name != "EAGAIN" or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    # -- subscriptions -----------------------------------------------------------

    def watch(self, pattern: str, callback, *, with_value=False, initial=True,
              max_pending=DEFAULT_MAX_PENDING) -> Subscription:
        """Subscribe ``callback(item)`` to ``pattern``; see watchlib.patterns and docs/watchlib.md.

        Returns once the daemon watch is in place: every change made after
        that is reported.  With ``initial``, the callback first gets one
        ``initial`` Event per node the pattern selects now (for a literal
        path or @name: one event for it, whether or not it exists).
        """
        if self._closed:
            raise Disconnected("client closed")
        sub = Subscription(self, pattern, callback, with_value=with_value, initial=initial,
                           max_pending=max_pending)
        with self._reg_mutex:
            with self._cv:
                dw, created = self._registry.add(sub)
            if created:
                try:
                    self._register(dw)
                except BaseException:
                    with self._cv:
                        sub.active = False
                        self._registry.remove(sub)
                    raise
            with self._cv:
                self._start_dispatcher()
        if initial:
            pat = sub._pattern
            if pat.literal:
                found = [pat.text]
            else:
                found = self._run(commands.walk_matches(pat))
            with self._cv:
                if sub.active:
                    for path in found:
                        self._queue.push_event(sub, path, initial=True)
                    self._cv.notify_all()
        return sub

    def _register(self, dw, timeout=None):
        """WATCH for a daemon watch (caller holds _reg_mutex)."""
        with self._cv:
            dw.swallow = True
        try:
            self._conn.request(Op.WATCH, join_fields(dw.path.encode(), dw.token.encode()),
                               timeout=self.timeout if timeout is None else timeout,
                               hook=self._watch_hook(dw))
        except BaseException:
            with self._cv:
                dw.swallow = False
            raise

    def _watch_hook(self, dw):
        def hook(packet):
            with self._cv:
                if packet.op == Op.ERROR:
                    dw.swallow = False
                else:
                    dw.registered = True
        return hook

    def _unsubscribe(self, sub):
        with self._reg_mutex:
            with self._cv:
                if not sub.active:
                    return
                sub.active = False
                self._queue.drop(sub)
                dw = self._registry.remove(sub)
            if dw is not None and dw.registered and not self._closed:
                try:
                    self._conn.request(Op.UNWATCH,
                                       join_fields(dw.path.encode(), dw.token.encode()),
                                       timeout=self.timeout)
                except (XenstoreError, Disconnected, TimeoutError) as e:
                    log.debug("watchlib: UNWATCH %s: %s", dw.path, e)
        if threading.current_thread() is not self._dispatcher:
            with self._cv:
                while self._current is sub:
                    self._cv.wait()

    def sync(self, timeout=None) -> None:
        """Barrier: return once every event caused by writes completed before the call
        has been handed to its callback (the callbacks have returned).

        How: WATCH a private @name with a fresh token.  The daemon answers OK
        and queues that watch's initial event behind every event it queued
        for us before, so once the initial event reaches the dispatcher, all
        earlier events have been delivered.  Retries across a reconnect.
        """
        if threading.current_thread() is self._dispatcher:
            raise RuntimeError("sync() from a callback would wait for itself")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            token = self._registry.new_token()
            waiter = _Waiter()
            with self._cv:
                # After a reconnect, let the Resync items be queued first.
                if not self._cv.wait_for(lambda: not self._rewatch_pending or self._closed
                                         or self._conn.closed, left):
                    raise TimeoutError("sync: watches not re-registered in time")
                if self._closed or self._conn.closed:
                    raise Disconnected("client closed")
                self._barriers[token] = waiter
                self._start_dispatcher()
            payload = join_fields(BARRIER_PATH.encode(), token.encode())
            try:
                self._conn.request(Op.WATCH, payload, timeout=left)
            except Disconnected:
                with self._cv:
                    self._barriers.pop(token, None)
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("sync: not connected") from None
                continue
            except BaseException:
                with self._cv:
                    self._barriers.pop(token, None)
                raise
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            reached = waiter.done.wait(left)
            try:   # fire and forget: the reply is read and dropped by the reader
                self._conn.send(Op.UNWATCH, payload, timeout=0)
            except (Disconnected, OSError):
                pass
            if not reached:
                with self._cv:
                    self._barriers.pop(token, None)
                raise TimeoutError("sync: events not delivered in time")
            if waiter.error is None:
                return
            if self._closed:
                raise waiter.error

    # -- reader-thread callbacks --------------------------------------------------

    def _on_event(self, path, token):
        with self._cv:
            waiter = self._barriers.pop(token, None)
            if waiter is not None:
                self._queue.push_barrier(waiter)
                self._cv.notify_all()
                return
            routes = self._registry.route(path, token)
            if not routes:
                return
            woke = False
            for sub, above in routes:
                woke |= self._queue.push_event(sub, path, False, above)
            if woke:
                self._cv.notify_all()

    def _on_lost(self):
        with self._cv:
            self._rewatch_pending = self._reconnect
            self._registry.disconnected()
            for waiter in self._barriers.values():
                waiter.error = Disconnected("connection lost")
                waiter.done.set()
            self._barriers.clear()

    def _on_restored(self):
        threading.Thread(target=self._rewatch, name=f"watchlib{self._id}-rewatch",
                         daemon=True).start()

    def _rewatch(self):
        with self._reg_mutex:
            with self._cv:
                # A watch registered since the reconnect (by watch()) is current.
                watches = [dw for dw in self._registry.watches() if not dw.registered]
                for dw in watches:
                    dw.swallow = True
            sent = []
            try:
                for dw in watches:
                    payload = join_fields(dw.path.encode(), dw.token.encode())
                    sent.append((dw, self._conn.send(Op.WATCH, payload, timeout=0,
                                                     hook=self._rewatch_hook(dw))))
            except Disconnected:
                return      # lost again: the next reconnect starts over
            for dw, pending in sent:
                try:
                    self._conn.wait(pending, self.timeout)
                except Disconnected:
                    return
                except (XenstoreError, TimeoutError) as e:
                    log.error("watchlib: could not re-register the watch on %s: %s", dw.path, e)
            with self._cv:
                self._rewatch_pending = False
                self._cv.notify_all()

    def _rewatch_hook(self, dw):
        # On the reader thread, so the Resync is queued exactly where the
        # watch became active again in the event stream.
        def hook(packet):
            with self._cv:
                if packet.op == Op.ERROR:
                    dw.swallow = False
                    return
                dw.registered = True
                for sub in dw.subs.values():
                    self._queue.push_resync(sub)
                self._cv.notify_all()
        return hook

    # -- dispatcher ------------------------------------------------------------------

    def _start_dispatcher(self):
        # caller holds self._cv
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(target=self._dispatch_loop,
                                                name=f"watchlib{self._id}-dispatch",
                                                daemon=True)
            self._dispatcher.start()

    def _dispatch_loop(self):
        queue = self._queue
        while True:
            with self._cv:
                self._current = None
                self._cv.notify_all()
                while True:
                    if self._closed:
                        return
                    entry = queue.pop()
                    if entry is not None:
                        break
                    self._cv.wait()
                sub, item = entry
                if sub is None:         # a barrier: everything before it was delivered
                    item.done.set()
                    continue
                self._current = sub
            self._deliver(sub, item)

    def _deliver(self, sub, item):
        if isinstance(item, Event) and sub.with_value and not item.path.startswith("@"):
            try:
                item.value = self._run(commands.read(item.path))
            except XenstoreError:
                item.value = None       # gone (ENOENT) or unreadable
            except (Disconnected, TimeoutError):
                item.value = None       # a Resync follows
        if not sub.active:
            return
        sub.delivered += 1
        try:
            sub.callback(item)
        except Exception:
            log.exception("watchlib: callback for %s raised on %r", sub.pattern, item)
