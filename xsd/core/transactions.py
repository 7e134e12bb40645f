"""Transactions: a private overlay over the live store, checked at commit.

Every node a transaction reads or writes has the generation it saw recorded
(``None`` for a node it saw absent).  At commit any difference is a conflict
and the commit answers EAGAIN, as xenstored does; otherwise the overlay is
applied in one step and the events the transaction caused, held until now,
fire in the order the operations ran.
"""
from collections import Counter

from xenstore_protocol import XenstoreError

from .quota import memory_of_node
from .store import CREATED, REMOVED, UPDATED, Node, Store

_UNSEEN = object()


class Transaction:
    """Implements the ``View`` interface of ``Store`` (get/get_mut/create/remove/set_perms)."""

    __slots__ = ("store", "id", "seen", "snapshot", "overlay", "owned_delta", "events")

    def __init__(self, store: Store, tx_id: int):
        self.store = store
        self.id = tx_id
        self.seen = {}              # path -> generation when first touched (None: absent)
        self.snapshot = {}          # path -> private copy of the node as first read (None: absent)
        self.overlay = {}           # path -> Node (written) or None (removed)
        self.owned_delta = Counter()
        self.events = []            # held until commit

    @classmethod
    def doomed(cls, store: Store, tx_id: int) -> "Transaction":
        """A transaction whose state was lost (live update, crash): its commit conflicts, so
        TRANSACTION_END answers EAGAIN and the client retries, which every client does."""
        tx = cls(store, tx_id)
        tx.seen["/"] = -1          # never the root's generation
        return tx

    def get(self, path: str):
        """The node as this transaction sees it: its own writes, else what it first read.

        A node keeps the value it had when the transaction first read it,
        even if it changes outside meanwhile ("reads and writes happen on
        the copy", docs/misc/xenstore.txt); such a change fails the commit.
        """
        node = self.overlay.get(path, _UNSEEN)
        if node is not _UNSEEN:
            return node
        node = self.snapshot.get(path, _UNSEEN)
        if node is not _UNSEEN:
            return node
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

    @property
    def touched(self) -> int:
        return len(self.overlay)

    def commit(self) -> None:
        """Apply to the store, or raise EAGAIN and change nothing."""
        store = self.store
        nodes = store.nodes
        for path, gen in self.seen.items():
            current = nodes.get(path)
            if (current.gen if current is not None else None) != gen:
                raise XenstoreError("EAGAIN", f"{path} changed during the transaction")
        changes = store.changes
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
