"""The C store's wrapper interface over the Python store: the oracle the C store is held to.

``PyNodeStore`` puts behind the interface of ``xsd._native.store.NodeStore``
what the core does to ``xsd.core.store.Store`` (stamp the closest existing
ancestor, create the missing nodes top-down, remove a subtree children
first), so that the C store can be checked against it operation by operation
(tests/native/test_store_property.py; bench/bench_store.py sets them side by
side).  The daemon's own choice of store is ``xsd.core.store.new_store``
(``XSD_NATIVE``).  It lives here, not in ``xsd._native``, because it wraps
``xsd/core/store.py`` and imports point one way (core -> _native).  The request operations mirror
core/ops.py; the rest mirror what the core does to the Store directly: a
transaction commit (put, move_last), replay (load, next_gen), the journal
(track, take_changes: ``Store.changes``), snapshots (dump, nodes) and the memory
quota (bytes_of: ``Store.owned_bytes``).

Interface (both classes):

    get(path, children=True) -> Node copy (value, perms, children, gen) or None;
                             children=False: children is None (cheaper in C)
    children_bytes(path)  -> b"a\\0b\\0" (DIRECTORY payload); KeyError if missing
    missing(path)         -> (components missing, perms of the closest existing node)
    write(path, value, perms) -> nodes created (0: overwrote); perms for new nodes
    set_value(path, value)    an existing node's value, stamped once
    set_perms(path, perms)
    rm(path)              -> {path: perms} removed in store.subtree order (children
                             first, path last); KeyError if missing, ValueError for "/"
    put(path, value, perms) -> 0 (existing node replaced, stamped once) or 1 (created
                             last under its existing parent; parent stamped first)
    move_last(path)       the node goes last among its parent's children; no stamp
    load(path, value, perms, gen) -> 1 created / 0 overwritten; exactly that gen,
                             no stamp, no change record (replay)
    next_gen              (property, settable)
    track(on), take_changes() -> {path: CREATED|UPDATED|REMOVED} (first-change order)
    dump() -> bytes (store.h xsd_store_dump records), nodes(children=True) ->
                             iterator of (path, value, perms, gen, children names or
                             None) in pre-order
    bytes_of(domid), owned_by(domid), stamp(), check() -> [problems], len()

Paths are canonical (xenstore_protocol.paths.canonicalize has run); perms are
tuples of ``Perm`` with the owner first (the C store gives back plain
``(kind, domid)`` tuples, which compare equal to ``Perm``).
"""
import struct

from xenstore_protocol.paths import basename, join, parent

from .core.quota import memory_of_node
from .core.store import Node, Store


class PyNodeStore:
    """The operations above on an ``xsd.core.store.Store`` (``self.store``)."""

    backend = "python"

    def __init__(self, store: Store = None):
        self.store = Store() if store is None else store

    def get(self, path: str, children: bool = True):
        node = self.store.get(path)
        if node is None:
            return None
        if children:
            return node.copy()
        bare = Node(node.value, node.perms, gen=node.gen)
        bare.children = None            # as the C store's NodeView: not asked for
        return bare

    def children_bytes(self, path: str) -> bytes:
        return self.store.nodes[path].children_bytes()

    def missing(self, path: str):
        """ops._create's walk up to the closest existing node."""
        count, top_path = 0, path
        top = self.store.get(top_path)
        while top is None:
            count += 1
            top_path = parent(top_path)
            top = self.store.get(top_path)
        return count, top.perms

    def write(self, path: str, value: bytes, perms: tuple) -> int:
        """ops.do_write: overwrite in place, or ops._create with ``perms``."""
        store = self.store
        if store.get(path) is not None:
            store.set_value(path, value)   # as ops.do_write: owner bytes follow
            return 0
        missing = [path]
        top_path = parent(path)
        while store.get(top_path) is None:
            missing.append(top_path)
            top_path = parent(top_path)
        store.get_mut(top_path).children[basename(missing[-1])] = None
        for i in range(len(missing) - 1, -1, -1):
            node = Node(value if i == 0 else b"", perms)
            if i:
                node.children[basename(missing[i - 1])] = None
            store.create(missing[i], node)
        return len(missing)

    def set_perms(self, path: str, perms: tuple) -> None:
        if self.store.get(path) is None:
            raise KeyError(path)
        self.store.set_perms(path, perms)

    def rm(self, path: str) -> dict:
        """Store.remove_tree (ops.do_rm's): children before their parent, ``path`` last."""
        if path == "/":
            raise ValueError("cannot remove the root")
        if self.store.get(path) is None:
            raise KeyError(path)
        return self.store.remove_tree(path)

    def set_value(self, path: str, value: bytes) -> None:
        if self.store.get(path) is None:
            raise KeyError(path)
        self.store.set_value(path, value)

    def put(self, path: str, value: bytes, perms: tuple) -> int:
        """A transaction commit's write of one node: replace it (stamped once), or create
        it last under its existing parent (the parent stamped first)."""
        store = self.store
        node = store.get(path)
        if node is None:
            up = parent(path)
            if path == "/" or store.get(up) is None:
                raise KeyError(path)
            store.get_mut(up).children[basename(path)] = None
            store.create(path, Node(value, perms))
            return 1
        node = store.get_mut(path)
        self._recharge(path, node, value, perms)
        return 0

    def _recharge(self, path: str, node: Node, value: bytes, perms: tuple) -> None:
        """Give node value and perms, moving its count and bytes between owners."""
        store = self.store
        store._uncount(node.owner)
        store.owned_bytes[node.owner] -= memory_of_node(path, node.value, node.perms)
        node.value, node.perms = value, perms
        store.owned[node.owner] += 1
        store.owned_bytes[node.owner] += memory_of_node(path, value, perms)

    def move_last(self, path: str) -> None:
        if path == "/":
            raise ValueError("the root has no parent")
        if self.store.get(path) is None:
            raise KeyError(path)
        children = self.store.nodes[parent(path)].children
        del children[basename(path)]
        children[basename(path)] = None

    def load(self, path: str, value: bytes, perms: tuple, gen: int) -> int:
        store = self.store
        node = store.get(path)
        if node is not None:
            self._recharge(path, node, value, perms)
            node.gen = gen
            return 0
        up = store.get(parent(path))
        if up is None:
            raise KeyError(path)
        up.children[basename(path)] = None
        store.nodes[path] = Node(value, perms, gen=gen)
        store.owned[perms[0].domid] += 1
        store.owned_bytes[perms[0].domid] += memory_of_node(path, value, perms)
        return 1

    @property
    def next_gen(self) -> int:
        return self.store.next_gen

    @next_gen.setter
    def next_gen(self, gen: int) -> None:
        self.store.next_gen = gen

    def track(self, on: bool) -> None:
        store = self.store
        if not on:
            store.changes = None
        elif store.changes is None:
            store.changes = {}

    def take_changes(self) -> dict:
        changes = self.store.changes
        if changes is None:
            return {}
        self.store.changes = {}
        return changes

    def nodes(self, children: bool = True):
        """(path, value, perms, gen, children names or None) in pre-order, iteratively."""
        nodes = self.store.nodes
        stack = ["/"]
        while stack:
            path = stack.pop()
            node = nodes[path]
            yield path, node.value, node.perms, node.gen, tuple(node.children) if children else None
            stack.extend(join(path, name) for name in reversed(list(node.children)))

    def dump(self) -> bytes:
        """The records of store.h's xsd_store_dump, built in Python."""
        out = []
        for path, value, perms, gen, _ in self.nodes():
            out.append(b"%s\0%s\0%s%s" % (
                path.encode(), b"".join(b"%s%d\0" % (p.kind.encode(), p.domid) for p in perms),
                struct.pack("<QI", gen, len(value)), value))
        return b"".join(out)

    def naming(self, domid: int) -> list:
        """store.h's xsd_store_naming: ``(path, owned)`` in pre-order."""
        return [(path, perms[0].domid == domid) for path, _, perms, _, _ in self.nodes(False)
                if any(p.domid == domid for p in perms)]

    def bytes_of(self, domid: int) -> int:
        return self.store.bytes_of(domid)

    def owned_by(self, domid: int) -> int:
        return self.store.owned_by(domid)

    def stamp(self) -> int:
        return self.store.stamp()

    def check(self) -> list:
        return self.store.check()

    def __len__(self) -> int:
        return len(self.store.nodes)

