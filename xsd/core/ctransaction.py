"""Transactions on the C store: ``Transaction``'s interface over the C overlay (txn.h).

Under ``XSD_NATIVE=c`` the daemon's store is ``cstore.CStore`` and each
transaction is a ``CTransaction``: the overlay (what was read when, private
copies, removals, the owned-node delta, the pending events merged per node)
lives in C (``xsd._native.txn``), so the ops Python answers in a transaction
(ops.py, through this interface) and the requests the C engine answers in it
work on one and the same overlay.  ``transactions.Transaction`` is the
oracle: tests/native/test_txn.py runs random transactions through both and
requires the same replies, events and stores.  Semantics (what is recorded
when, the transaction-nodes quota, how events merge, the commit's order) are
in transactions.py's docstrings; this module only translates: paths to bytes,
permissions to their wire encoding and back (``CStore.decode_perms``), C's
refusals to ``XenstoreError``.
"""
from collections import ChainMap

from xenstore_protocol import XenstoreError

from .._native.store import NodeView
from .._native.txn import NativeTxn, TxnRefused
from .events import CHANGE, REMOVE

_new_view = tuple.__new__


class CPendingEvents:
    """``PendingEvents`` over the C overlay: ``extend`` hands each event to C, which
    merges them per node; iterating (after the commit) gives the merged events."""

    __slots__ = ("tx",)

    def __init__(self, tx: "CTransaction"):
        self.tx = tx

    def extend(self, events) -> None:
        tx = self.tx
        native, encode = tx.native, tx.store._encode
        for event in events:
            kind, path = event[0], event[1]
            if kind is CHANGE:
                old = event[3]
                native.note_change(path.encode(), encode(event[2]),
                                   None if old is None else encode(old))
            else:       # REMOVE (no request in a transaction makes INITIAL or SPECIAL events)
                records, tx.removed_records = tx.removed_records, None
                if records is None or tx.removed_root != path:
                    records = b"".join(b"%s\0%s\0" % (p.encode(), encode(perms))
                                       for p, perms in event[2].items())
                native.note_remove(path.encode(), records)

    def __iter__(self):
        raw = self.tx.native.events()
        if not raw:
            return iter(())
        decode = self.tx.store.decode_perms
        events, removed_perms = [], {}
        at, end = 0, len(raw)
        while at < end:
            kind = raw[at]
            cut = raw.index(b"\0", at + 1)
            path = raw[at + 1:cut].decode()
            at = cut + 1
            stop = _perms_end(raw, at)
            perms = raw[at:stop]
            at = stop + 1
            if kind == 0x43:        # 'C': perms, then old perms
                stop = _perms_end(raw, at)
                old = raw[at:stop]
                at = stop + 1
                events.append((CHANGE, path, decode(perms), decode(old) if old else None))
            elif kind == 0x52:      # 'R': the perms it has again, if it was made again
                events.append((REMOVE, path, perms))
            else:                   # 'M': the removed-perms map, after the events
                removed_perms[path] = decode(perms)
        for i, event in enumerate(events):
            if event[0] is REMOVE:
                again = event[2]
                events[i] = (REMOVE, event[1], removed_perms if not again else
                             ChainMap({event[1]: decode(again)}, removed_perms))
        return iter(events)


def _perms_end(raw: bytes, at: int) -> int:
    """Where the permission entries starting at ``at`` end (their closing NUL)."""
    while raw[at] != 0:
        at = raw.index(b"\0", at) + 1
    return at


class CTransaction:
    """``Transaction`` (transactions.py) with its overlay in C; same interface."""

    __slots__ = ("store", "id", "native", "events", "node_limit", "removed_root",
                 "removed_records")

    in_transaction = True       # permissions.py reads it

    def __init__(self, store, tx_id: int, node_limit=None):
        self.store = store
        self.id = tx_id
        self.native = NativeTxn(store.handle)
        self.events = CPendingEvents(self)
        self.node_limit = node_limit        # () -> transaction-nodes or None; None: dom0
        self.removed_root = None            # the last remove_tree: its records, so the
        self.removed_records = None         # REMOVE event it makes goes back as it came

    @classmethod
    def adopt(cls, store, tx_id: int, handle, node_limit=None) -> "CTransaction":
        """The transaction the request engine started (engine.h, TRANSACTION_START): its
        overlay ``handle`` (an ``xsd_txn *`` over ``store``, its limit already set) owned
        from here on, as if made by ``__init__``."""
        tx = cls.__new__(cls)
        tx.store = store
        tx.id = tx_id
        tx.events = CPendingEvents(tx)
        tx.node_limit = node_limit
        tx.removed_root = tx.removed_records = None
        tx.native = NativeTxn.adopt(handle, store.handle)  # last: raising, it owns nothing
        return tx

    @classmethod
    def doomed(cls, store, tx_id: int, node_limit=None) -> "CTransaction":
        tx = cls(store, tx_id, node_limit)
        tx.native.doom()
        return tx

    def _limit(self) -> None:
        node_limit = self.node_limit
        if node_limit is not None:
            self.native.set_limit(node_limit() or 0)

    refresh_limit = _limit      # fastpath.py: before the engine reads in it

    def touched(self) -> int:
        """How many paths the transaction touched (``len(Transaction.seen)``)."""
        return self.native.seen()

    def _read(self, operation, *args):
        """``operation(*args)`` of the overlay that may read untouched nodes: under the
        transaction-nodes limit as it stands now, its refusal the xenstore error."""
        self._limit()
        try:
            return operation(*args)
        except TxnRefused as err:
            raise XenstoreError(err.args[0], "quota transaction-nodes exceeded") from None

    def get(self, path: str):
        node = self._read(self.native.get, path.encode())
        if node is None:
            return None
        value, perms, gen = node
        return _new_view(NodeView, (value, self.store.decode_perms(perms), None, gen))

    def children_bytes(self, path: str) -> bytes:
        names = self._read(self.native.children, path.encode())
        if names is None:
            raise RuntimeError(f"children of {path}, absent in the transaction")
        return names

    def child_names(self, path: str):
        names = self.children_bytes(path)
        return names[:-1].decode().split("\0") if names else []

    def create_missing(self, missing: list, value: bytes, perms: tuple) -> None:
        self._read(self.native.create, missing[0].encode(), len(missing), value,
                   self.store._encode(perms))

    def remove_tree(self, path: str) -> dict:
        records = self._read(self.native.remove, path.encode())
        self.removed_root, self.removed_records = path, records
        decode, removed, at = self.store.decode_perms, {}, 0
        while at < len(records):
            cut = records.index(b"\0", at)
            stop = _perms_end(records, cut + 1)
            removed[records[at:cut].decode()] = decode(records[cut + 1:stop])
            at = stop + 1
        return removed

    def set_perms(self, path: str, perms: tuple) -> None:
        self.native.set_perms(path.encode(), self.store._encode(perms))

    def set_value(self, path: str, value: bytes) -> None:
        self.native.set_value(path.encode(), value)

    def bytes_of(self, domid: int) -> int:
        return self.store.bytes_of(domid)

    def owned_by(self, domid: int) -> int:
        return self.store.owned_by(domid) + self.native.owned_delta(domid)

    def commit(self) -> None:
        """As ``Transaction.commit``: applied, or EAGAIN and nothing changed."""
        if not self.native.commit():
            raise XenstoreError("EAGAIN", "the transaction conflicts (or was lost)")
