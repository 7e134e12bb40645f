"""The C request path (engine.h): packet bytes in, reply bytes out, one crossing per batch.

    from xsd._native.engine import Engine, MUTATE, STOP_PYTHON
    engine = Engine(node_store.handle, watch_trie.handle)   # borrows both
    conn = engine.conn()                                     # one per session
    conn.configure(domid=0, target=None, privileged=True, read_only=False, path_max=2048)
    conn.quotas(node_size=2048, permissions=5, nodes=1000, memory=2621440,
                memory_soft=2097152, soft_warned=False, watch_bytes=0)
                                                    # unprivileged callers' changes in C too
    consumed, out, journaled, handled, stop = engine.run(conn, data, MUTATE)

``run`` answers the whole packets at the start of ``data`` (from ``offset``)
that the engine takes and returns their replies as one bytes object; it stops
at a partial packet (STOP_DONE), at a packet Python must answer (STOP_PYTHON:
``data[offset + consumed:]`` starts with it), when the reply buffer is full
(STOP_FULL: call again), at a header announcing more than 4096 bytes
(STOP_BAD: the Decoder raises ProtocolError on it), or right after a change
that may fire watches (STOP_EVENTS: ``engine.event(...)`` tells where its
reply starts in ``out`` and what changed; fire it, send the reply, call
again) unless the engine was given the C watch registry (``watches``): then
it fires there and ``deliveries()`` holds the run's deliveries, read with
``delivery_groups``; for a conn whose watches are journaled (``Conn.watches``),
``watch_log()`` holds the WATCHes and UNWATCHes it answered (``watch_changes``
reads them).  engine.h says which
packets the engine answers; everything else, and every error, stays Python's.

One C handle per object, owned through ``ffi.gc``; the engine keeps the
store's and the trie's owners alive (it borrows their handles), each conn
keeps its engine alive.  Not thread-safe: the event loop's thread only.
"""
from struct import Struct

from . import trie as _checked  # noqa: F401  (the build stamp is checked at its import)
from ._xsd_native import ffi, lib

__all__ = ["Engine", "Conn", "MUTATE", "STOP_DONE", "STOP_PYTHON", "STOP_FULL", "STOP_BAD",
           "STOP_EVENTS", "STOP_TXN", "TXN_STARTED", "TXN_ENDED", "TXN_FAILED",
           "TXN_CONFLICT", "DELIVERY_AFTER", "watch_changes"]

MUTATE = lib.XSD_RUN_MUTATE
STOP_DONE = lib.XSD_RUN_DONE
STOP_PYTHON = lib.XSD_RUN_PYTHON
STOP_FULL = lib.XSD_RUN_FULL
STOP_BAD = lib.XSD_RUN_BAD
STOP_EVENTS = lib.XSD_RUN_EVENTS
STOP_TXN = lib.XSD_RUN_TXN          # after a TRANSACTION_START/END: ``Engine.transaction()``
TXN_STARTED = lib.XSD_TXN_STARTED
TXN_ENDED = lib.XSD_TXN_ENDED
TXN_FAILED = lib.XSD_TXN_FAILED
TXN_CONFLICT = lib.XSD_TXN_CONFLICT    # END answered EAGAIN: Python counts the error
_CHANGE = lib.XSD_EVENT_CHANGE     # the first byte of a CHANGE event (an int in C)
REPLY_MAX = lib.XSD_REPLY_MAX
DELIVERY_AFTER = lib.XSD_DELIVERY_AFTER    # in a group's reply_at: after that reply (WATCH)

_NULL = ffi.NULL
_run = lib.xsd_engine_run
_unpack = ffi.unpack
_from_buffer = ffi.from_buffer
_OUT_CAP = 16 * REPLY_MAX      # replies of one run; FULL past it (the caller runs again)
_GROUP = Struct("=QII")         # engine.h: reply_at, path length, records length
_WATCH_LOG = Struct("=IBB")     # engine.h: key length, kind, relative
if _WATCH_LOG.size != lib.XSD_WATCH_LOG_HEADER:
    raise ImportError("xsd._native: watch log entry header differs from engine.h")
if _GROUP.size != lib.XSD_DELIVERY_GROUP_HEADER:
    raise ImportError("xsd._native: delivery group header differs from engine.h")
# struct xsd_run's fields a run's caller reads (engine.h), in one unpack where cffi field
# reads cost three times as much per run: consumed, out_len, journaled, handled, stop and
# deliveries_len (whether the run fired anything: the common run fires nothing, and then
# no second crossing is made).
# And events_inlined: the initial events the run wrote among its replies.
_ANSWER = Struct("=QQQIi32xQ32xI")
if ffi.sizeof("size_t") != 8 or ffi.sizeof("int") != 4 or \
        ffi.sizeof("struct xsd_run") < _ANSWER.size or [
        ffi.offsetof("struct xsd_run", f) for f in (
            "consumed", "out_len", "journaled", "handled", "stop", "deliveries_len",
            "events_inlined")] != \
        [0, 8, 16, 24, 28, 64, 104]:
    raise ImportError("xsd._native: struct xsd_run's layout differs from engine.py's _ANSWER")
_unpack_answer = _ANSWER.unpack_from


class Conn:
    """One session's identity for the engine (xsd_conn) and its per-type counts."""

    __slots__ = ("_h", "_engine", "txns", "next_tx_id", "watches_journaled", "inline_events",
                 "inline_room")
    # The request types the engine answers (xs_wire.h numbers): what a counter fold reads.
    COUNTED_OPS = (1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 14, 22)

    def __init__(self, engine):
        h = lib.xsd_conn_new(engine._h)
        if h == _NULL:
            raise MemoryError("xsd._native: out of memory")
        self._h = ffi.gc(h, lib.xsd_conn_free)
        self._engine = engine
        self.txns = {}          # tx_id -> the owner of the xsd_txn the C conn borrows
        self.next_tx_id = 1     # what the C conn tries first at TRANSACTION_START
        self.watches_journaled = False  # its runs log WATCH/UNWATCH (Engine.watch_log)
        self.inline_events = 0  # initial events a run may write among its replies, at most
        self.inline_room = 0    # ... while its output stays within these bytes (last pushed)

    def sync_transactions(self, transactions: dict) -> None:
        """The C conn knows exactly ``transactions`` (tx_id -> an object whose ``native``
        is an ``xsd._native.txn.NativeTxn``; others are left to Python): requests with
        those ids run in them.  Each is kept alive here while the C conn borrows it."""
        txns, h = self.txns, self._h
        for tx_id in [i for i, tx in txns.items() if transactions.get(i) is not tx]:
            lib.xsd_conn_txn_drop(h, tx_id)
            del txns[tx_id]
        for tx_id, tx in transactions.items():
            if tx_id not in txns:
                native = getattr(tx, "native", None)
                if native is None:
                    continue
                if lib.xsd_conn_txn_add(h, tx_id, native.handle):
                    raise MemoryError("xsd._native: out of memory")
                txns[tx_id] = tx

    def drop_started(self, tx_id: int, handle) -> None:
        """Undo a TRANSACTION_START the engine answered whose overlay ``handle`` could not
        be adopted (``NativeTxn.adopt`` raised): the conn forgets it, the overlay is freed."""
        lib.xsd_conn_txn_drop(self._h, tx_id)
        lib.xsd_txn_free(handle)

    def txn_next(self, next_tx_id: int) -> None:
        """The id the next TRANSACTION_START the engine answers tries first (engine.h: the
        conn mirrors Session.next_tx_id; ``next_tx_id`` here mirrors the C one)."""
        lib.xsd_conn_txn_next(self._h, next_tx_id)
        self.next_tx_id = next_tx_id

    def txn_quotas(self, transactions: int, transaction_nodes: int) -> None:
        """The "transactions" and "transaction-nodes" quotas binding the caller (0: none);
        until given, an unprivileged caller's TRANSACTION_START is Python's."""
        lib.xsd_conn_txn_quotas(self._h, transactions, transaction_nodes)

    def configure(self, domid: int, target, privileged: bool, read_only: bool,
                  path_max: int = 0) -> None:
        """Who the session is; ``target`` None for none, ``path_max`` 0 for no limit."""
        lib.xsd_conn_configure(self._h, domid, -1 if target is None else target,
                               bool(privileged), bool(read_only), path_max)

    def quotas(self, *, node_size: int, permissions: int, nodes: int, memory: int,
               memory_soft: int, soft_warned: bool, watch_bytes: int) -> None:
        """What binds an unprivileged caller (engine.h's struct xsd_quotas; a limit of 0 is
        none); until given, the engine leaves every change by an unprivileged caller to
        Python.  All of them, every time: a figure left out would be a limit lifted."""
        q = ffi.new("struct xsd_quotas *", {
            "node_size": node_size, "permissions": permissions, "nodes": nodes,
            "memory": memory, "memory_soft": memory_soft, "soft_warned": bool(soft_warned),
            "watch_bytes": watch_bytes})
        lib.xsd_conn_quotas(self._h, q)

    def watches(self, session, limit: int, journaled: bool) -> None:
        """WATCH and UNWATCH in C (engine.h xsd_conn_watches): the session's handle in the
        engine's watch registry (None: none yet, both Python's), the "watches" quota
        binding it (0: none), and whether listeners hear of its watches (then each run's
        ``Engine.watch_log`` holds the ones it answered)."""
        lib.xsd_conn_watches(self._h, -1 if session is None else session, limit,
                             bool(journaled))
        self.watches_journaled = bool(journaled)

    def inline(self, room: int) -> None:
        """The next runs may write up to ``inline_events`` WATCHes' initial events among their
        replies while their output stays within ``room`` bytes (0: none; engine.h
        xsd_conn_inline_events); ``Engine.answer`` pushes it when it changes."""
        lib.xsd_conn_inline_events(self._h, self.inline_events, room)
        self.inline_room = room

    def requests(self, op: int) -> int:
        """Requests of type ``op`` the engine answered on this conn."""
        return lib.xsd_conn_requests(self._h, op)

    def events_written(self) -> int:
        """Watch events the poller wrote this conn's client itself (engine.h): Python's
        event counts add them (stats.session_counters)."""
        return lib.xsd_conn_events_written_count(self._h)

    def conflicts(self) -> int:
        """TRANSACTION_ENDs the engine answered EAGAIN on this conn (not in ``requests``)."""
        return lib.xsd_conn_conflicts(self._h)


class Engine:
    """xsd_engine over a C node store and a C watch trie (raw handles, borrowed)."""

    __slots__ = ("_h", "_owners", "_out", "_cap", "_run_result", "_result", "_replies")

    def __init__(self, store_handle, trie_handle=None, out_cap: int = _OUT_CAP):
        """``out_cap``: bytes of the reusable reply buffer; below REPLY_MAX every run
        stops FULL at its first whole packet."""
        h = lib.xsd_engine_new(store_handle, _NULL if trie_handle is None else trie_handle)
        if h == _NULL:
            raise MemoryError("xsd._native: out of memory")
        self._h = ffi.gc(h, lib.xsd_engine_free)
        self._owners = (store_handle, trie_handle)     # their ffi.gc handles: kept alive with us
        self._out = ffi.new("char[]", max(out_cap, 1))
        self._cap = out_cap
        self._run_result = ffi.new("struct xsd_run *")
        self._result = ffi.buffer(self._run_result)     # the same bytes, for _ANSWER
        self._replies = ffi.buffer(self._out)           # slicing it copies out the replies

    def conn(self) -> Conn:
        return Conn(self)

    def watches(self, registry) -> None:
        """Fire watched changes through ``registry`` (an ``xsd._native.watchreg.
        NativeWatchRegistry`` over the trie this engine was given) instead of stopping
        STOP_EVENTS: each run's deliveries are then read with ``deliveries()``."""
        lib.xsd_engine_watches(self._h, registry.handle)
        self._owners += (registry,)     # borrowed by C: kept alive with us

    def deliveries(self) -> bytes:
        """The last run's delivery groups (engine.h; ``delivery_groups`` reads them), b""
        when it fired nothing."""
        r = self._run_result
        n = r.deliveries_len
        return _unpack(r.deliveries, n) if n else b""

    def watch_log(self) -> bytes:
        """The last run's watch log (engine.h; ``watch_changes`` reads it), b"" when it
        answered no WATCH or UNWATCH of a journaled conn."""
        r = self._run_result
        n = r.watch_log_len
        return _unpack(r.watch_log, n) if n else b""

    def domain_known(self, domid: int, known: bool) -> None:
        """SET_PERMS may make ``domid`` an owner (Daemon.domain_exists); domids at or above
        DOMID_FIRST_RESERVED are never known (ValueError)."""
        if lib.xsd_engine_domain_known(self._h, domid, bool(known)):
            raise ValueError("domid %d cannot own nodes" % domid)

    def run(self, conn: Conn, data, flags: int = MUTATE, offset: int = 0):
        """-> ``(consumed, out, journaled, handled, stop)``: bytes of ``data[offset:]``
        answered, their replies, payload bytes of the WRITE/MKDIR/RM/SET_PERMS among them,
        how many packets, and why it stopped (STOP_*)."""
        return self.answer(conn, data, offset, 0, flags)[:5]

    def answer(self, conn: Conn, data, offset: int = 0, room: int = 0, flags: int = MUTATE):
        """``run`` as the C path of a transport calls it, once per batch of one client:
        -> ``(consumed, out, journaled, handled, stop, fired, inlined)``, ``fired`` being the
        bytes of the run's delivery groups (``deliveries()``; 0: it fired nothing),
        ``inlined`` the WATCHes' initial events written into ``out`` after their replies,
        which ``room`` allows: the bytes the run's output may reach with them (0: none,
        their delivery groups as before; ``Conn.inline``)."""
        if room != conn.inline_room:
            conn.inline(room)
        if offset:
            _run(self._h, conn._h, _from_buffer(data) + offset, len(data) - offset,
                 self._out, self._cap, flags, self._run_result)
        else:           # the common case: a batch served in one run
            _run(self._h, conn._h, data, len(data), self._out, self._cap, flags,
                 self._run_result)
        # Unpacked here, not through last_answer: one Python call less per batch.
        consumed, n, journaled, handled, stop, fired, inlined = _unpack_answer(self._result)
        return consumed, self._replies[:n] if n else b"", journaled, handled, stop, fired, inlined

    def last_answer(self):
        """``answer``'s tuple for the last run (the poller's runs: poller.py)."""
        consumed, n, journaled, handled, stop, fired, inlined = _unpack_answer(self._result)
        return consumed, self._replies[:n] if n else b"", journaled, handled, stop, fired, inlined

    def transaction(self):
        """After a run that stopped STOP_TXN: ``(kind, tx_id, handle)``: TXN_STARTED with
        the new ``xsd_txn *`` (the caller now owns it: ``NativeTxn.adopt``), TXN_ENDED,
        TXN_FAILED (the commit failed applying; the reply is EIO) or TXN_CONFLICT (the
        commit conflicted; the reply is EAGAIN, nothing changed) with handle None.  The C
        conn has already registered or dropped it; its ``txns`` and ``next_tx_id`` are
        the caller's to update."""
        r = self._run_result
        return r.txn_kind, r.txn_id, None if r.txn == _NULL else r.txn

    def event(self, decode_perms, change, remove):
        """After a run that stopped STOP_EVENTS: ``(reply_at, event)``, where the changing
        packet's reply starts in that run's ``out`` and its event as xsd/core/ops.py builds
        it: ``(change, path, perms, old_perms_or_None)`` or ``(remove, root, {path: perms})``
        (children first, root last), each perms ``decode_perms(b"<kind><domid>\\0...")``.
        ``change``/``remove`` are the caller's kinds (xsd/core/events.py)."""
        r = self._run_result
        raw = _unpack(r.event, r.event_len)
        return r.reply_at, _decode_event(raw, decode_perms, change, remove)


def delivery_groups(data: bytes):
    """``(reply_at, path, records)`` per group of ``Engine.deliveries()``, in order: where
    the reply of the change that fired it starts in the run's ``out`` (with
    ``DELIVERY_AFTER`` set: the reply of a WATCH, its initial event to go after it), the
    changed path (bytes, as the event payloads take it) and watchreg.h's delivery records
    for it (``watchreg.deliver_payloads`` reads them)."""
    at, end, unpack = 0, len(data), _GROUP.unpack_from
    while at < end:
        reply_at, path_len, records_len = unpack(data, at)
        at += 16                                # _GROUP.size
        path_end = at + path_len
        at = path_end + records_len
        yield reply_at, data[path_end - path_len:path_end], data[path_end:at]


def watch_changes(data: bytes):
    """``(added, path, token, relative)`` per entry of ``Engine.watch_log()``, in the order
    the engine answered them: ``added`` False for an UNWATCH (``relative`` then False)."""
    at, end, unpack, size = 0, len(data), _WATCH_LOG.unpack_from, _WATCH_LOG.size
    while at < end:
        key_len, kind, relative = unpack(data, at)
        at += size
        path, _, token = data[at:at + key_len].partition(b"\0")
        at += key_len
        yield kind == lib.XSD_WATCH_LOG_ADDED, path.decode("ascii"), token, bool(relative)


def _decode_event(raw: bytes, decode_perms, change, remove):
    """engine.h's event bytes -> ops.py's event tuple."""
    if raw[0] == _CHANGE:                           # the common case: kept short
        path, _, rest = raw.partition(b"\0")
        cut = rest.find(b"\0\0") + 1                # the perms' last NUL, then the end NUL
        return (change, path[1:].decode(), decode_perms(rest[:cut]),
                decode_perms(rest[cut + 1:-1]) if len(rest) > cut + 2 else None)
    cut = raw.index(b"\0", 1)
    removed, at = {}, cut + 1
    while at < len(raw):
        path_end = raw.index(b"\0", at)
        end = raw.index(b"\0\0", path_end + 1) + 1
        removed[raw[at:path_end].decode()] = decode_perms(raw[path_end + 1:end])
        at = end + 1
    return remove, raw[1:cut].decode(), removed
