"""The node store's operations, over the C store or the Python store.

``NodeStore`` is ``xsd._native.store.NodeStore`` (C) when the C extension is
in use (``xsd._native.BACKEND == "cffi"``, see ``XSD_NATIVE``), else
``PyNodeStore``: the swap point for when core/ops.py moves onto this interface.
It lives here, not in ``xsd._native``, because the fallback wraps
``xsd/core/store.py`` and imports point one way (core -> _native).

``PyNodeStore`` puts behind one interface what ``xsd/core/ops.py`` does to
``xsd.core.store.Store`` today (stamp the closest existing ancestor, create the
missing nodes top-down, remove a subtree, parent first), so that
the C store (``xsd._native.store.NodeStore``, same interface) can be checked
against it operation by operation (tests/native/test_store_property.py) and
later swapped in behind ``XSD_NATIVE``.  Nothing here is new behaviour: each
method names the lines of core/ops.py it mirrors.

Interface (both classes):

    get(path)             -> Node copy (value, perms, children, gen) or None
    children_bytes(path)  -> b"a\\0b\\0" (DIRECTORY payload); KeyError if missing
    missing(path)         -> (components missing, perms of the closest existing node)
    write(path, value, perms) -> nodes created (0: overwrote); perms for new nodes
    set_perms(path, perms)
    rm(path)              -> {path: perms} removed, parent before children (see rm);
                             KeyError if missing, ValueError for "/"
    owned_by(domid), stamp(), check() -> [problems], len()

Paths are canonical (xenstore_protocol.paths.canonicalize has run); perms are
tuples of ``Perm`` with the owner first (the C store gives back plain
``(kind, domid)`` tuples, which compare equal to ``Perm``).
"""
from xenstore_protocol.paths import basename, join, parent

from ._native import BACKEND
from .core.store import Node, Store


class PyNodeStore:
    """The operations above on an ``xsd.core.store.Store`` (``self.store``)."""

    backend = "python"

    def __init__(self, store: Store = None):
        self.store = Store() if store is None else store

    def get(self, path: str):
        node = self.store.get(path)
        return None if node is None else node.copy()

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
        """Parent before children: the order ``ops.subtree`` had before it took C xenstored's
        delete order (children first); the C store gives the same, and both must follow
        ``ops.remove_subtree`` before the C store joins the request path."""
        if path == "/":
            raise ValueError("cannot remove the root")
        store = self.store
        if store.get(path) is None:
            raise KeyError(path)
        removed, stack = {}, [path]
        while stack:
            node_path = stack.pop()
            node = store.get(node_path)
            removed[node_path] = node.perms
            stack.extend(join(node_path, name) for name in node.children)
        store.get_mut(parent(path)).children.pop(basename(path), None)
        for node_path in removed:
            store.remove(node_path)
        return removed

    def owned_by(self, domid: int) -> int:
        return self.store.owned_by(domid)

    def stamp(self) -> int:
        return self.store.stamp()

    def check(self) -> list:
        return self.store.check()

    def __len__(self) -> int:
        return len(self.store.nodes)


if BACKEND == "cffi":
    from ._native.store import NodeStore
else:
    NodeStore = PyNodeStore
