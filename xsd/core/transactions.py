"""Transactions: a private overlay over the live store, checked at commit.

Every node a transaction reads or writes has the generation it saw recorded
(``None`` for a node it saw absent).  At commit any difference is a conflict
and the commit answers EAGAIN, as xenstored does; otherwise the overlay is
applied in one step and the events the transaction caused, held until now,
fire.

What a transaction holds is bounded by the nodes it touches, reads of absent
nodes included: C xenstored counts every node a transaction accesses against
``transaction-nodes`` and refuses one more with ENOSPC (transaction.c,
access_node; unprivileged callers only, dom0 is exempt).  Each touched node
costs one entry in ``seen``/``snapshot`` (a path of at most 3072 bytes and
a node), one pending event at most and one removal record at most, so a
guest's transaction holds at most the quota times that.

Pending events are merged per node, as C xenstored keeps one "fire watch"
flag per accessed node: at commit each node fires once, in the order the
transaction first touched the nodes (C's accessed list), and a node that
did not exist before the transaction and was removed in it fires nothing
(the outside world never saw it).  A removal sticks: a node removed and
written again still tells the watches below it (C's ``watch_exact``).
"""
from collections import ChainMap, Counter
from itertools import islice

from xenstore_protocol import XenstoreError
from xenstore_protocol.paths import basename, join, parent

from .events import CHANGE, REMOVE
from .store import Node, subtree

_UNSEEN = object()


class PendingEvents:
    """One transaction's watch events until commit, at most one per node.

    ``extend`` takes the events a request caused (``dispatch`` hands them
    over); iterating gives the merged events to fire, in first-touch order.
    """

    __slots__ = ("tx", "by_path", "removed_perms")

    def __init__(self, tx: "Transaction"):
        self.tx = tx
        self.by_path = {}           # path -> [removed: bool, perms or None, first old_perms]
        self.removed_perms = {}     # path -> perms when the transaction first removed it

    def __len__(self) -> int:
        return len(self.by_path)

    def extend(self, events) -> None:
        by_path = self.by_path
        for event in events:
            kind, path = event[0], event[1]
            entry = by_path.get(path)
            if kind is CHANGE:
                if entry is None:
                    by_path[path] = [False, event[2], event[3]]
                else:
                    entry[1] = event[2]
                    if entry[2] is None:
                        entry[2] = event[3]
            else:       # REMOVE (no request in a transaction makes INITIAL or SPECIAL events)
                self._removed(path, event[2], entry)

    def _removed(self, root: str, removed: dict, entry) -> None:
        seen, by_path, removed_perms = self.tx.seen, self.by_path, self.removed_perms
        for path, perms in removed.items():
            if seen.get(path, _UNSEEN) is None:
                # Made in this transaction and gone again: never visible outside.
                if path != root:
                    by_path.pop(path, None)
                continue
            removed_perms.setdefault(path, perms)
        if seen.get(root, _UNSEEN) is None:
            by_path.pop(root, None)
        elif entry is None:
            by_path[root] = [True, None, None]
        else:
            entry[0], entry[1] = True, None

    def __iter__(self):
        by_path = self.by_path
        if not by_path:
            return
        get = self.tx.store.get
        for path in self.tx.seen:
            entry = by_path.get(path)
            if entry is None:
                continue
            removed, perms, old_perms = entry
            if not removed:
                yield (CHANGE, path, perms, old_perms)
                continue
            node = get(path)
            if node is None:
                yield (REMOVE, path, self.removed_perms)
            else:
                # Removed, then made again: watches on it or above see it as it is now,
                # watches below it see their own path go (C xenstored: watch_exact false).
                yield (REMOVE, path, ChainMap({path: node.perms}, self.removed_perms))


class Transaction:
    """A view over the store (``Store``'s reading and mutating interface) holding its
    changes in a private overlay; ``commit`` applies them through the store's own
    mutators (``remove_tree``, ``put``), so the store keeps its own books (owners,
    bytes, the journal's change set) whichever backend it is."""

    __slots__ = ("store", "id", "seen", "snapshot", "overlay", "owned_delta", "events",
                 "node_limit", "lost")

    in_transaction = True       # permissions.py reads it

    def __init__(self, store, tx_id: int, node_limit=None):
        self.store = store
        self.id = tx_id
        self.seen = {}              # path -> generation when first touched (None: absent)
        self.snapshot = {}          # path -> private copy of the node as first read (None: absent)
        self.overlay = {}           # path -> Node (written) or None (removed)
        self.owned_delta = Counter()
        self.events = PendingEvents(self)
        # () -> the caller's transaction-nodes quota or None; None: no limit (dom0).
        self.node_limit = node_limit
        self.lost = False           # doomed(): the commit conflicts whatever happened

    @classmethod
    def doomed(cls, store, tx_id: int, node_limit=None) -> "Transaction":
        """A transaction whose state was lost (live update, crash): its commit conflicts, so
        TRANSACTION_END answers EAGAIN and the client retries, which every client does."""
        tx = cls(store, tx_id, node_limit)
        tx.lost = True
        return tx

    def get(self, path: str):
        """The node as this transaction sees it: its own writes, else what it first read.

        A node keeps the value it had when the transaction first read it,
        even if it changes outside meanwhile ("reads and writes happen on
        the copy", docs/misc/xenstore.txt); such a change fails the commit.
        A node not touched before counts against ``transaction-nodes``.
        """
        node = self.overlay.get(path, _UNSEEN)
        if node is not _UNSEEN:
            return node
        node = self.snapshot.get(path, _UNSEEN)
        if node is not _UNSEEN:
            return node
        if self.node_limit is not None:
            limit = self.node_limit()
            if limit is not None and len(self.seen) >= limit:
                raise XenstoreError("ENOSPC", f"quota transaction-nodes ({limit}) exceeded")
        node = self.store.copy_of(path)
        self.seen[path] = None if node is None else node.gen
        self.snapshot[path] = node
        return node

    def children_bytes(self, path: str) -> bytes:
        return self.get(path).children_bytes()

    def child_names(self, path: str):
        return self.get(path).children

    def _mut(self, path: str) -> Node:
        node = self.overlay.get(path)
        if node is None:
            node = self.get(path)       # already a private copy
            self.overlay[path] = node
        return node

    def create_missing(self, missing: list, value: bytes, perms: tuple) -> None:
        """As ``Store.create_missing``, in the overlay."""
        for path in missing:
            self.get(path)              # records "absent" for the conflict check
        self._mut(parent(missing[-1])).children[basename(missing[-1])] = None
        overlay = self.overlay
        for i in range(len(missing) - 1, -1, -1):
            node = Node(value if i == 0 else b"", perms)
            if i:
                node.children[basename(missing[i - 1])] = None
            overlay[missing[i]] = node
        self.owned_delta[perms[0].domid] += len(missing)

    def remove_tree(self, path: str) -> dict:
        """As ``Store.remove_tree``, in the overlay; every node below is read (and counts
        against transaction-nodes)."""
        removed = subtree(self, path)
        self._mut(parent(path)).children.pop(basename(path), None)
        overlay, owned_delta = self.overlay, self.owned_delta
        for node_path, perms in removed.items():
            overlay[node_path] = None
            owned_delta[perms[0].domid] -= 1
        return removed

    def set_perms(self, path: str, perms: tuple) -> None:
        node = self._mut(path)
        if perms[0].domid != node.owner:
            self.owned_delta[node.owner] -= 1
            self.owned_delta[perms[0].domid] += 1
        node.perms = perms

    def set_value(self, path: str, value: bytes) -> None:
        self._mut(path).value = value

    def refresh_limit(self) -> None:
        """Nothing to push: ``get`` reads the quota itself (ctransaction's pushes it to C)."""

    def touched(self) -> int:
        """How many paths the transaction touched (what transaction-nodes counts)."""
        return len(self.seen)

    def bytes_of(self, domid: int) -> int:
        return self.store.bytes_of(domid)

    def owned_by(self, domid: int) -> int:
        return self.store.owned_by(domid) + self.owned_delta.get(domid, 0)

    def commit(self) -> None:
        """Apply to the store, or raise EAGAIN and change nothing.

        Through the store's mutators, in three passes: every node the transaction
        removed (or removed and made again) goes from the store with what is below
        it; every node it changed in place gets its value and permissions (``put``);
        every node it made is made, parents first and siblings in the transaction's
        order, so each parent lists its children as the transaction saw them (the
        children a transaction makes are the last of its parent's, as in the store).
        """
        if self.lost:
            raise XenstoreError("EAGAIN", "transaction lost in a restart")
        store = self.store
        gen_of = store.gen_of
        for path, gen in self.seen.items():
            if gen_of(path) != gen:
                raise XenstoreError("EAGAIN", f"{path} changed during the transaction")
        snapshot = self.snapshot
        created = []
        for path, node in self.overlay.items():
            if node is not None and node is snapshot.get(path):
                store.put(path, node.value, node.perms)
                continue
            if self.seen[path] is not None and gen_of(path) is not None:
                store.remove_tree(path)
            if node is not None:
                created.append(path)
        if created:
            self._create_in_order(created)

    def _create_in_order(self, created: list) -> None:
        store, overlay = self.store, self.overlay
        created_set = set(created)
        per_parent = Counter(parent(path) for path in created)
        stack = [up for up in per_parent if up not in created_set]
        made = 0
        while stack:
            up_path = stack.pop()
            names = list(islice(reversed(self.get(up_path).children), per_parent[up_path]))
            for name in reversed(names):
                path = join(up_path, name)
                node = overlay[path]
                store.put(path, node.value, node.perms)
                made += 1
                if path in per_parent:
                    stack.append(path)
        if made != len(created):
            raise AssertionError(f"transaction commit: {len(created) - made} nodes not made")


def transaction_type(store):
    """The class of the transactions on ``store``: the C overlay (``ctransaction.
    CTransaction``) over the C store, this module's ``Transaction`` over the Python one."""
    if getattr(store, "handle", None) is not None:
        from .ctransaction import CTransaction
        return CTransaction
    return Transaction
