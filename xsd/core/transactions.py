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

from xenstore_protocol import XenstoreError

from .events import CHANGE, REMOVE
from .quota import memory_of_node
from .store import CREATED, REMOVED, UPDATED, Node, Store

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
        nodes = self.tx.store.nodes
        for path in self.tx.seen:
            entry = by_path.get(path)
            if entry is None:
                continue
            removed, perms, old_perms = entry
            if not removed:
                yield (CHANGE, path, perms, old_perms)
                continue
            node = nodes.get(path)
            if node is None:
                yield (REMOVE, path, self.removed_perms)
            else:
                # Removed, then made again: watches on it or above see it as it is now,
                # watches below it see their own path go (C xenstored: watch_exact false).
                yield (REMOVE, path, ChainMap({path: node.perms}, self.removed_perms))


class Transaction:
    """Implements the ``View`` interface of ``Store`` (get/get_mut/create/remove/set_perms)."""

    __slots__ = ("store", "id", "seen", "snapshot", "overlay", "owned_delta", "events",
                 "node_limit", "lost")

    def __init__(self, store: Store, tx_id: int, node_limit=None):
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
    def doomed(cls, store: Store, tx_id: int, node_limit=None) -> "Transaction":
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
        node = self.store.nodes.get(path)
        if node is None:
            self.seen[path] = None
        else:
            self.seen[path] = node.gen
            node = node.copy()
        self.snapshot[path] = node
        return node

    def get_mut(self, path: str) -> Node:
        node = self.overlay.get(path)
        if node is None:
            node = self.get(path)       # already a private copy
            self.overlay[path] = node
        return node

    def create(self, path: str, node: Node) -> None:
        self.get(path)              # records "absent" for the conflict check
        self.overlay[path] = node
        self.owned_delta[node.owner] += 1

    def remove(self, path: str) -> None:
        node = self.get(path)
        self.overlay[path] = None
        self.owned_delta[node.owner] -= 1

    def set_perms(self, path: str, perms: tuple) -> None:
        node = self.get_mut(path)
        if perms[0].domid != node.owner:
            self.owned_delta[node.owner] -= 1
            self.owned_delta[perms[0].domid] += 1
        node.perms = perms

    def set_value(self, path: str, value: bytes) -> None:
        self.get_mut(path).value = value

    def bytes_of(self, domid: int) -> int:
        return self.store.bytes_of(domid)

    def owned_by(self, domid: int) -> int:
        return self.store.owned_by(domid) + self.owned_delta.get(domid, 0)

    def commit(self) -> None:
        """Apply to the store, or raise EAGAIN and change nothing."""
        if self.lost:
            raise XenstoreError("EAGAIN", "transaction lost in a restart")
        store = self.store
        nodes = store.nodes
        for path, gen in self.seen.items():
            current = nodes.get(path)
            if (current.gen if current is not None else None) != gen:
                raise XenstoreError("EAGAIN", f"{path} changed during the transaction")
        changes = store.changes
        store.preserve(self.overlay)    # a snapshot being written reads the tree as it was
        owned_bytes = store.owned_bytes
        for path, node in self.overlay.items():
            old = nodes.get(path)
            if old is not None:
                owned_bytes[old.owner] -= memory_of_node(path, old.value, old.perms)
            if node is not None:
                owned_bytes[node.owner] += memory_of_node(path, node.value, node.perms)
            if node is None:
                if nodes.pop(path, None) is not None and changes is not None:
                    changes[path] = REMOVED
            else:
                node.gen = store.stamp()
                nodes[path] = node
                if changes is not None:
                    # A node made in this transaction (not the copy of one it read) was
                    # appended to its parent's children: the journal must say created.
                    if node is not self.snapshot.get(path):
                        changes[path] = CREATED
                    else:
                        changes.setdefault(path, UPDATED)
        owned = store.owned
        for domid, delta in self.owned_delta.items():
            if delta:
                owned[domid] += delta
                if not owned[domid]:
                    del owned[domid]
