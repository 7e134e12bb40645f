"""The blocking client: requests, transactions, subscriptions, barriers.

A thin shell: what is not I/O or threads (request ids, reply matching,
routing, re-watch, barriers) is ``protocol.ProtocolCore``, and requests,
transactions and their replay are ``commands``' generators, all shared with
``aio.AsyncClient``.

Threads of a Client, and the order in which things happen on them:

- *reader* (``connection.Connection``): feeds the bytes to the core in daemon
  order, under the client's one lock; the core completes requests and routes
  each watch event to the subscriptions it reaches, appending it to the
  delivery FIFO (``DeliveryQueue``); on a lost connection the reader
  reconnects and starts a *rewatch* thread.
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

from xenstore_protocol import Op, XenstoreError

from . import commands
from .commands import drive  # noqa: F401  (re-exported)
from .connection import Connection, Disconnected, Pending
from .protocol import BARRIER_PATH, ProtocolCore  # noqa: F401  (BARRIER_PATH re-exported)
from .subscription import DEFAULT_MAX_PENDING, DeliveryQueue, Subscription
from .watches import WatchRegistry

log = logging.getLogger("watchlib")

_client_ids = iter(range(1, 1 << 62))


class _Ops:
    """read/write/... for Client and Transaction, through ``self._run``.

    ``tx``: run the request in that transaction instead (``c.read(path, tx=t)``).
    """

    def read(self, path, tx=None) -> bytes:
        return (tx or self)._run(commands.read(path))

    def write(self, path, value, tx=None) -> None:
        (tx or self)._run(commands.write(path, value))

    def mkdir(self, path, tx=None) -> None:
        (tx or self)._run(commands.mkdir(path))

    def rm(self, path, tx=None) -> None:
        (tx or self)._run(commands.rm(path))

    def ls(self, path, tx=None) -> list:
        return (tx or self)._run(commands.ls(path))

    def exists(self, path, tx=None) -> bool:
        return (tx or self)._run(commands.exists(path))

    def get_perms(self, path, tx=None) -> list:
        return (tx or self)._run(commands.get_perms(path))

    def set_perms(self, path, perms, tx=None) -> None:
        (tx or self)._run(commands.set_perms(path, perms))


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
        drive(commands.transaction_begin(self, self._client._core.generation),
              self._client._request)

    def _run(self, gen):
        return drive(commands.in_transaction(self, gen), self._client._request)

    def _end(self, commit: bool):
        drive(commands.transaction_finish(self, commit), self._client._request)

    def abort(self):
        self._end(False)

    def commit(self):
        """Commit; on EAGAIN replay the logged requests (see the class docstring)."""
        drive(commands.commit_replaying(self, self._client._core), self._client._request)


class ClientBase:
    """What both clients (this one and ``aio.AsyncClient``) hold: the socket path,
    the options, and the protocol core with their subscriptions."""

    def _setup(self, path, read_only, timeout, token_tag=""):
        self.socket_path = commands.socket_path(path, read_only)
        self.read_only = read_only
        self.timeout = timeout
        self._id = next(_client_ids)
        self._core = ProtocolCore(
            WatchRegistry(f"watchlib{os.getpid()}.{token_tag}{self._id}"), DeliveryQueue())
        self._closed = False

    # The core's state, by the names the tests and the docs use.
    @property
    def _registry(self):
        return self._core.registry

    @property
    def _queue(self):
        return self._core.queue

    @property
    def _barriers(self):
        return self._core.barriers


class Client(_Ops, ClientBase):
    """A blocking connection to xenstored.  See the module docstring for threads.

    ``path``: the socket (default: see ``commands.socket_path``; ``read_only``
    picks the read-only socket).
    ``timeout``: seconds to wait for any one reply (None: no limit).
    ``reconnect``: reconnect when the daemon goes away (see ``Resync``).
    """

    def __init__(self, path=None, *, read_only=False, timeout=None, reconnect=True):
        self._setup(path, read_only, timeout)
        self._reg_mutex = threading.RLock()     # serialises watch/cancel/rewatch
        self._dispatcher = None
        self._current = None                    # subscription whose callback runs
        self._conn = Connection(self.socket_path, on_restored=self._on_restored,
                                reconnect=reconnect, name=f"watchlib{self._id}",
                                core=self._core)
        self._cv = self._conn.cv                # guards the core, wakes the dispatcher

    # -- plumbing ------------------------------------------------------------

    def _request(self, op, payload, tx_id=0, gen=None):
        return self._conn.request(op, payload, tx_id, gen=gen, timeout=self.timeout)

    def _run(self, gen):
        return drive(gen, self._request)

    def close(self) -> None:
        """Close the connection and stop the dispatcher (pending events are dropped)."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
        self._conn.close()          # fails requests and barriers in flight
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
        return self._request(op, payload, tx_id)

    def get_domain_path(self, domid: int) -> str:
        return self._run(commands.get_domain_path(domid))

    def is_domain_introduced(self, domid: int) -> bool:
        return self._run(commands.is_domain_introduced(domid))

    def introduce(self, domid: int, mfn: int, port: int) -> None:
        self._run(commands.introduce(domid, mfn, port))

    def release(self, domid: int) -> None:
        self._run(commands.release(domid))

    def glob(self, pattern: str) -> list:
        """The existing nodes a pattern selects (as a subscription's initial events), sorted."""
        return self._run(commands.glob(pattern))

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
        def step(*req):
            return fn(req[1]) if req[0] is commands.CALL else self._request(*req)
        return drive(commands.run_transaction(lambda: Transaction(self, 1, replay=False),
                                              self._core, attempts), step)

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
                dw = self._core.subscribe(sub)
                if dw is not None:
                    op, payload, hook = self._core.watch_request(dw)
            if dw is not None:
                try:
                    self._conn.request(op, payload, timeout=self.timeout, hook=hook)
                except BaseException:
                    with self._cv:
                        self._core.watch_failed(dw, sub)
                    raise
            with self._cv:
                self._start_dispatcher()
        if initial:
            found = self._run(commands.initial_paths(sub._pattern))
            with self._cv:
                if self._core.push_initial(sub, found):
                    self._cv.notify_all()
        return sub

    def _unsubscribe(self, sub):
        with self._reg_mutex:
            with self._cv:
                payload = self._core.unsubscribe(sub)
            if payload is not None and not self._closed:
                try:
                    self._conn.request(Op.UNWATCH, payload, timeout=self.timeout)
                except (XenstoreError, Disconnected, TimeoutError) as e:
                    log.debug("watchlib: UNWATCH %s: %s", sub.pattern, e)
        if threading.current_thread() is not self._dispatcher:
            with self._cv:
                while self._current is sub:
                    self._cv.wait()

    def sync(self, timeout=None) -> None:
        """Barrier: return once every event caused by writes completed before the call
        has been handed to its callback (the callbacks have returned).

        How: WATCH a private @name with a fresh token (``ProtocolCore.add_barrier``).
        Retries across a reconnect.
        """
        if threading.current_thread() is self._dispatcher:
            raise RuntimeError("sync() from a callback would wait for itself")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            waiter = Pending()
            with self._cv:
                # After a reconnect, let the Resync items be queued first.
                if not self._cv.wait_for(lambda: not self._core.rewatch_pending or self._closed
                                         or self._conn.closed, left):
                    raise TimeoutError("sync: watches not re-registered in time")
                if self._closed or self._conn.closed:
                    raise Disconnected("client closed")
                payload = self._core.add_barrier(waiter)
                self._start_dispatcher()
            try:
                self._conn.request(Op.WATCH, payload, timeout=left)
            except Disconnected:
                with self._cv:
                    self._core.drop_barrier(payload)
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("sync: not connected") from None
                continue
            except BaseException:
                with self._cv:
                    self._core.drop_barrier(payload)
                raise
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            reached = waiter.done.wait(left)
            try:   # fire and forget: the reply is read and dropped by the reader
                self._conn.send(Op.UNWATCH, payload, timeout=0)
            except (Disconnected, OSError):
                pass
            if not reached:
                with self._cv:
                    self._core.drop_barrier(payload)
                raise TimeoutError("sync: events not delivered in time")
            if waiter.error is None:
                return
            if self._closed:
                raise waiter.error

    # -- after a reconnect ----------------------------------------------------------

    def _on_restored(self):
        threading.Thread(target=self._rewatch, name=f"watchlib{self._id}-rewatch",
                         daemon=True).start()

    def _rewatch(self):
        with self._reg_mutex:
            with self._cv:
                requests = self._core.rewatch_requests()
            sent = []
            try:
                for dw, op, payload, hook in requests:
                    sent.append((dw, self._conn.send(op, payload, timeout=0, hook=hook)))
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
                self._core.rewatch_pending = False
                self._cv.notify_all()

    # -- dispatcher ------------------------------------------------------------------

    def _start_dispatcher(self):
        # caller holds self._cv
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(target=self._dispatch_loop,
                                                name=f"watchlib{self._id}-dispatch",
                                                daemon=True)
            self._dispatcher.start()

    def _dispatch_loop(self):
        queue = self._core.queue
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
                    item.complete(None, None)
                    continue
                self._current = sub
            self._deliver(sub, item)

    def _deliver(self, sub, item):
        if self._core.wants_value(sub, item):
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
