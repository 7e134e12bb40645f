"""The node tree: value, children, permissions and generation of every node.

Nodes live in one flat dict keyed by absolute path, so a READ is one lookup
whatever the depth.  ``Store`` is the live tree; ``transactions.Transaction``
offers the same ``View`` methods over a private overlay.  Ops (``ops.py``)
only talk to a view, so the same code runs inside and outside transactions.

Generations: every change stamps the node with a fresh number from one
counter; adding or removing a child changes the parent.  A transaction
conflicts when a node it touched carries another number at commit, and
DIRECTORY_PART hands the parent's number out so a pager sees a change.
"""
from collections import Counter

from xenstore_protocol.perms import Perm

from .quota import memory_of_node


class Node:
    __slots__ = ("value", "perms", "children", "gen")

    def __init__(self, value: bytes, perms: tuple, children=None, gen: int = 0):
        self.value = value
        self.perms = perms               # tuple of Perm; perms[0] is the owner
        self.children = {} if children is None else children   # name -> None, creation order
        self.gen = gen

    @property
    def owner(self) -> int:
        return self.perms[0].domid

    def copy(self) -> "Node":
        return Node(self.value, self.perms, dict(self.children), self.gen)

    def children_bytes(self) -> bytes:
        """``b"a\\0b\\0"``: the DIRECTORY payload, in creation order."""
        children = self.children
        return ("\0".join(children) + "\0").encode("ascii") if children else b""

    def __repr__(self) -> str:
        return f"Node(value={self.value!r}, perms={self.perms}, children={list(self.children)}, gen={self.gen})"


ROOT_PERMS = (Perm("n", 0),)

# What happened to a path since the journal last took the changes (journal.py).
CREATED, UPDATED, REMOVED = 1, 2, 3


class Store:
    """The live tree.  Mutators change nodes in place and stamp generations."""

    def __init__(self) -> None:
        self.nodes = {"/": Node(b"", ROOT_PERMS, gen=0)}
        self.next_gen = 1
        self.owned = Counter({0: 1})       # domid -> nodes it owns (quota)
        self.owned_bytes = Counter({0: memory_of_node("/", b"", ROOT_PERMS)})   # memory quota
        self.changes = None                # path -> CREATED/UPDATED/REMOVED while journaling
        self.frozen = None                 # path -> Node as it was (None: absent) while frozen

    # -- the View interface (also implemented by Transaction) --------------
    def get(self, path: str):
        return self.nodes.get(path)

    def get_mut(self, path: str) -> Node:
        node = self.nodes[path]
        frozen = self.frozen
        if frozen is not None and path not in frozen:
            frozen[path] = node.copy()                # changed in place below: keep it as it was
        node.gen = self.next_gen
        self.next_gen += 1
        if self.changes is not None:
            self.changes.setdefault(path, UPDATED)    # CREATED stays CREATED
        return node

    def create(self, path: str, node: Node) -> None:
        if self.frozen is not None:
            self.frozen.setdefault(path, None)
        node.gen = self.next_gen
        self.next_gen += 1
        self.nodes[path] = node
        self.owned[node.owner] += 1
        self.owned_bytes[node.owner] += memory_of_node(path, node.value, node.perms)
        if self.changes is not None:
            self.changes[path] = CREATED

    def remove(self, path: str) -> None:
        node = self.nodes.pop(path)
        if self.frozen is not None:
            self.frozen.setdefault(path, node)        # no longer in the tree: never changed again
        self._uncount(node.owner)
        self.owned_bytes[node.owner] -= memory_of_node(path, node.value, node.perms)
        if self.changes is not None:
            self.changes[path] = REMOVED

    def set_perms(self, path: str, perms: tuple) -> None:
        node = self.get_mut(path)
        if perms[0].domid != node.owner:
            self._uncount(node.owner)
            self.owned[perms[0].domid] += 1
        self.owned_bytes[node.owner] -= memory_of_node(path, node.value, node.perms)
        self.owned_bytes[perms[0].domid] += memory_of_node(path, node.value, perms)
        node.perms = perms

    def set_value(self, path: str, value: bytes) -> None:
        node = self.get_mut(path)
        self.owned_bytes[node.owner] += len(value) - len(node.value)
        node.value = value

    def owned_by(self, domid: int) -> int:
        return self.owned.get(domid, 0)

    # -- a frozen view, for snapshots written while requests go on -------------------
    def freeze(self) -> "FrozenView":
        """The tree as it is now, readable while it changes (copy on write): every mutator
        keeps the node as it was the first time it changes it.  One view at a time;
        ``thaw`` when done.  Cost: a dict entry per node changed meanwhile."""
        if self.frozen is not None:
            raise RuntimeError("the store is already frozen")
        self.frozen = {}
        return FrozenView(self.nodes, self.frozen, self.next_gen)

    def preserve(self, paths) -> None:
        """Before ``paths`` are replaced or dropped wholesale (a transaction's commit)."""
        frozen = self.frozen
        if frozen is not None:
            nodes = self.nodes
            for path in paths:
                if path not in frozen:
                    frozen[path] = nodes.get(path)    # replaced, not changed in place

    def thaw(self) -> None:
        self.frozen = None


    def bytes_of(self, domid: int) -> int:
        """What the nodes ``domid`` owns are charged (quota.memory_of_node)."""
        return self.owned_bytes.get(domid, 0)

    def recount(self) -> None:
        """Owner accounting from scratch (a store loaded from disk)."""
        self.owned = Counter(node.owner for node in self.nodes.values())
        self.owned_bytes = Counter()
        for path, node in self.nodes.items():
            self.owned_bytes[node.owner] += memory_of_node(path, node.value, node.perms)

    # -- live-only ----------------------------------------------------------
    def _uncount(self, domid: int) -> None:
        left = self.owned[domid] - 1
        if left:
            self.owned[domid] = left
        else:
            del self.owned[domid]

    def stamp(self) -> int:
        gen = self.next_gen
        self.next_gen += 1
        return gen

    def check(self) -> list:
        """Verify the invariants; return a list of problems (empty if sound).

        Every node but the root has its parent, and is listed among the
        parent's children; every listed child exists; the per-owner counts
        equal a recount.  Iterative: depth does not matter.
        """
        from xenstore_protocol.paths import join, parent, basename
        problems = []
        nodes = self.nodes
        if "/" not in nodes:
            return ["root missing"]
        recount = Counter()
        rebytes = Counter()
        for path, node in nodes.items():
            recount[node.owner] += 1
            rebytes[node.owner] += memory_of_node(path, node.value, node.perms)
            if not node.perms:
                problems.append(f"{path}: no permissions")
            if path != "/":
                up = nodes.get(parent(path))
                if up is None:
                    problems.append(f"{path}: parent missing")
                elif basename(path) not in up.children:
                    problems.append(f"{path}: not listed in parent")
            for name in node.children:
                if join(path, name) not in nodes:
                    problems.append(f"{path}: child {name} missing")
        if recount != +self.owned:
            problems.append(f"owner accounting {dict(self.owned)} != recount {dict(recount)}")
        if rebytes != +self.owned_bytes:
            problems.append(f"owner bytes {dict(+self.owned_bytes)} != recount {dict(rebytes)}")
        return problems


class FrozenView:
    """``Store.freeze``: ``get(path)`` as the tree was when frozen."""

    __slots__ = ("_nodes", "_frozen", "next_gen")

    def __init__(self, nodes: dict, frozen: dict, next_gen: int):
        self._nodes = nodes
        self._frozen = frozen
        self.next_gen = next_gen

    def get(self, path: str):
        frozen = self._frozen
        if path in frozen:
            return frozen[path]
        return self._nodes.get(path)
