"""The node tree: value, children, permissions and generation of every node.

Two backends behind one interface (``Store``'s docstring): the C node store
(``cstore.CStore``, under ``XSD_NATIVE=c``, the default when built) and this
module's ``Store``, a flat dict keyed by absolute path (``XSD_NATIVE=python``;
the oracle the C store is checked against).  ``new_store`` picks one.
``transactions.Transaction`` offers the same reading and mutating methods over
a private overlay; ops (``ops.py``) only talk to that interface, so the same
code runs inside and outside transactions, on either backend.  Mutations are
operations on paths (``create_missing``, ``set_value``, ``remove_tree``...),
never on node objects: what ``get`` returns is read-only.

Generations: every change stamps the node with a fresh number from one
counter; adding or removing a child changes the parent.  A transaction
conflicts when a node it touched carries another number at commit, and
DIRECTORY_PART hands the parent's number out so a pager sees a change.
"""
from collections import Counter
from itertools import islice

from xenstore_protocol.paths import basename, join, parent
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
    """The live tree in Python (``XSD_NATIVE=python``; the oracle of the C store,
    ``cstore.CStore``, which offers the same interface).

    Readers: ``get``, ``children_bytes``, ``child_names``, ``last_children``, ``copy_of``,
    ``gen_of``, ``owned_by``, ``bytes_of``, ``naming``, ``items``, ``len``.  Mutators, each
    stamping what it changes and noting it for the journal (``track``/``take_changes``):
    ``create_missing``, ``set_value``, ``set_perms``, ``remove_tree``, ``put``.
    Loading (no stamps, not journaled): ``load``, ``unload``, ``order``, ``recount``.
    Snapshots: ``freeze`` / ``thaw``, ``preorder``.  The store counts owners and their
    bytes itself: nothing outside keeps that book.
    """

    in_transaction = False      # permissions.py: a Transaction says True

    def __init__(self) -> None:
        self.nodes = {"/": Node(b"", ROOT_PERMS, gen=0)}
        self.next_gen = 1
        self.owned = Counter({0: 1})       # domid -> nodes it owns (quota)
        self.owned_bytes = Counter({0: memory_of_node("/", b"", ROOT_PERMS)})   # memory quota
        self.changes = None                # path -> CREATED/UPDATED/REMOVED while journaling
        self.frozen = None                 # path -> Node as it was (None: absent) while frozen

    # -- reading --------------------------------------------------------------
    def get(self, path: str):
        """The node at ``path`` (read-only to the caller: value, perms, gen, owner,
        children), or None."""
        return self.nodes.get(path)

    def children_bytes(self, path: str) -> bytes:
        """``b"a\\0b\\0"`` (DIRECTORY's payload) of an existing node."""
        return self.nodes[path].children_bytes()

    def child_names(self, path: str):
        """The children's names of an existing node in creation order (read-only)."""
        return self.nodes[path].children

    def last_children(self, path: str, count: int) -> list:
        """The names of the last ``count`` children of an existing node, in order (the
        journal's: the children a batch made are the last of their parent's)."""
        names = list(islice(reversed(self.nodes[path].children), count))
        names.reverse()
        return names

    def copy_of(self, path: str):
        """A private, mutable ``Node`` copy of the node at ``path`` (a transaction's), or None."""
        node = self.nodes.get(path)
        return None if node is None else node.copy()

    def gen_of(self, path: str):
        node = self.nodes.get(path)
        return None if node is None else node.gen

    def owned_by(self, domid: int) -> int:
        return self.owned.get(domid, 0)

    def bytes_of(self, domid: int) -> int:
        """What the nodes ``domid`` owns are charged (quota.memory_of_node)."""
        return self.owned_bytes.get(domid, 0)

    def items(self):
        """``(path, node)`` of every node, in no particular order; do not mutate meanwhile."""
        return self.nodes.items()

    def naming(self, domid: int) -> list:
        """``[(path, owned), ...]``: the nodes whose permissions name ``domid``, in
        ``items`` order, ``owned`` when it is their owner (a domain's release: the C
        store finds them in one C walk)."""
        return [(path, node.perms[0].domid == domid) for path, node in self.nodes.items()
                if any(p.domid == domid for p in node.perms)]

    def __len__(self) -> int:
        return len(self.nodes)

    # -- mutators (stamped, journaled) ---------------------------------------------
    def create_missing(self, missing: list, value: bytes, perms: tuple) -> None:
        """Create ``missing`` (a path, then its missing ancestors up: ``missing[0]`` gets
        ``value``, the others b""), all with ``perms``; the parent of ``missing[-1]``
        exists and lists it last.  Stamps that parent, then the new nodes top-down."""
        self.get_mut(parent(missing[-1])).children[basename(missing[-1])] = None
        for i in range(len(missing) - 1, -1, -1):
            node = Node(value if i == 0 else b"", perms)
            if i:
                node.children[basename(missing[i - 1])] = None
            self.create(missing[i], node)

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

    def remove_tree(self, path: str) -> dict:
        """Remove ``path`` (not the root) and everything below it; ``{path: perms}`` of what
        went, children first (``subtree``'s order).  Stamps the parent."""
        removed = subtree(self, path)
        self.get_mut(parent(path)).children.pop(basename(path), None)
        for node_path in removed:
            self.remove(node_path)
        return removed

    def put(self, path: str, value: bytes, perms: tuple) -> None:
        """A transaction's commit: give the node at ``path`` this value and these
        permissions, or create it as its existing parent's last child; stamped once
        (a created node's parent too)."""
        node = self.nodes.get(path)
        if node is None:
            self.create_missing([path], value, perms)
            return
        node = self.get_mut(path)
        old_owner, new_owner = node.owner, perms[0].domid
        if new_owner != old_owner:
            self._uncount(old_owner)
            self.owned[new_owner] += 1
        self.owned_bytes[old_owner] -= memory_of_node(path, node.value, node.perms)
        self.owned_bytes[new_owner] += memory_of_node(path, value, perms)
        node.value, node.perms = value, perms

    # -- node-level mutators (PyNodeStore, xsd/nodestore.py, drives these too) ----------
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

    # -- the journal's change set ------------------------------------------------
    def track(self, on: bool) -> None:
        """Note what changes from now on (``take_changes``), or stop noting."""
        if not on:
            self.changes = None
        elif self.changes is None:
            self.changes = {}

    def has_changes(self) -> bool:
        """Changes noted and not taken yet (not on the journal's disk)."""
        return bool(self.changes)

    def take_changes(self) -> dict:
        """``{path: CREATED/UPDATED/REMOVED}`` since the last call (empty when not tracking)."""
        changes = self.changes
        if not changes:
            return {}
        self.changes = {}
        return changes

    # -- loading (snapshot, journal replay): no stamps, nothing noted ----------------------
    def load(self, path: str, value: bytes, perms: tuple, gen: int, append: bool = True) -> None:
        """Put a saved node in place.  ``append``: (re)append it to its parent's children,
        as the live store did when it made it; else change it in place.  KeyError when
        its parent (``append``) or itself (not ``append``) is missing.  Owner counts
        wait for ``recount``."""
        nodes = self.nodes
        node = nodes.get(path)
        if not append:
            if node is None:
                raise KeyError(path)
            node.value, node.perms, node.gen = value, perms, gen
            return
        up = nodes.get(parent(path)) if path != "/" else None
        if up is None:
            raise KeyError(parent(path))
        name = basename(path)
        if node is None:
            nodes[path] = Node(value, perms, None, gen)
        else:
            # Removed and made again: its old children are removed by their own entries.
            up.children.pop(name, None)
            node.value, node.perms, node.gen = value, perms, gen
        up.children[name] = None

    def unload(self, path: str) -> None:
        """Drop ``path`` and what is below it, if it exists (not the root)."""
        nodes = self.nodes
        if path not in nodes:
            return
        for node_path in subtree(self, path):
            del nodes[node_path]
        up = nodes.get(parent(path))
        if up is not None:
            up.children.pop(basename(path), None)

    def order(self, path: str, names: list) -> None:
        """Put the children of ``path`` in the order ``names``; ValueError unless they are
        exactly its children."""
        node = self.nodes.get(path)
        if node is None or set(names) != set(node.children):
            raise ValueError(f"children order of {path} does not match its children")
        node.children = dict.fromkeys(names)

    def recount(self) -> None:
        """Owner accounting from scratch (a store loaded from disk)."""
        self.owned = Counter(node.owner for node in self.nodes.values())
        self.owned_bytes = Counter()
        for path, node in self.nodes.items():
            self.owned_bytes[node.owner] += memory_of_node(path, node.value, node.perms)

    # -- a frozen view, for snapshots written while requests go on -------------------
    def freeze(self) -> "FrozenView":
        """The tree as it is now, readable while it changes (copy on write): every mutator
        keeps the node as it was the first time it changes it.  One view at a time;
        ``thaw`` when done.  Cost: a dict entry per node changed meanwhile."""
        if self.frozen is not None:
            raise RuntimeError("the store is already frozen")
        self.frozen = {}
        return FrozenView(self.nodes, self.frozen, self.next_gen)

    def thaw(self) -> None:
        self.frozen = None

    def preorder(self):
        """``(path, node)`` of every node, parents first, children in order (the store must
        not change meanwhile: ``freeze`` for that)."""
        return preorder(self.get)

    def check(self) -> list:
        """Verify the invariants; return a list of problems (empty if sound).

        Every node but the root has its parent, and is listed among the
        parent's children; every listed child exists; the per-owner counts
        equal a recount.  Iterative: depth does not matter.
        """
        from xenstore_protocol.paths import join
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


def subtree(view, path: str) -> dict:
    """``{path: perms}`` of ``path`` and every node below it, children before their parent
    and in their parent's order (C xenstored's delete order, which its RM events follow;
    ``path`` last); iterative (XSA-418).  ``view``: a store or a transaction.

    A transaction may list a child it cannot read: it listed the parent before the child
    went outside it.  That child is not there to remove; the commit conflicts anyway (the
    parent changed after the transaction read it)."""
    removed = {}
    get, child_names = view.get, view.child_names
    stack = [(path, False)]
    while stack:
        node_path, expanded = stack.pop()
        if expanded:
            removed[node_path] = get(node_path).perms
        elif get(node_path) is not None:
            stack.append((node_path, True))
            stack.extend((join(node_path, name), False)
                         for name in reversed(list(child_names(node_path))))
    return removed


def preorder(get):
    """``(path, node)`` for every node, each parent before its children, children in order;
    ``get(path)`` -> node (with ``children``)."""
    stack = ["/"]
    while stack:
        path = stack.pop()
        node = get(path)
        yield path, node
        if node.children:
            stack.extend(join(path, name) for name in reversed(node.children))


def new_store():
    """The daemon's store: the C store (``cstore.CStore``) when xsd._native runs on the C
    extension (``XSD_NATIVE``), else this module's ``Store``."""
    from .._native import BACKEND
    if BACKEND == "cffi":
        from .cstore import CStore
        return CStore()
    return Store()


class FrozenView:
    """``Store.freeze``: ``get(path)`` and ``preorder()`` as the tree was when frozen."""

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

    def preorder(self):
        return preorder(self.get)
