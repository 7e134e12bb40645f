"""The daemon's store on the C node store (``xsd._native.store.NodeStore``).

``CStore`` is ``NodeStore`` with the interface of ``store.Store`` (its docstring
lists it), so ops, transactions, watches, the journal and snapshots run on it
unchanged; ``store.new_store`` picks it when xsd._native runs on the C
extension (``XSD_NATIVE``).  Nodes live in C (about 100 bytes each, no Python
object per node); ``get`` hands out a ``NodeView`` copy without its children.

Everything the core reads about the store comes from the store itself: owner
counts and bytes (``owned_by``, ``bytes_of``), the journal's change set
(``take_changes``), the tree for snapshots (``dump``).  No book is kept here on
mutation, so a request path in C that changes the same store bypassing Python
(xsd._native.engine) leaves nothing here stale.

Snapshots: ``freeze`` takes the whole tree in one C call (``dump``), and the
snapshot writer reads its records a step at a time; the store may change
meanwhile, nothing is copied on write, and ``thaw`` has nothing to undo.
"""
from xenstore_protocol.paths import join, parent
from xenstore_protocol.perms import Perm

from .._native.store import NodeStore, NodeView
from .store import Node


class CStore(NodeStore):
    """``store.Store``'s interface over the C store."""

    __slots__ = ()
    in_transaction = False      # permissions.py: a Transaction says True

    def _decode_perms(self, raw: bytes) -> tuple:
        """NodeStore's decoder, giving ``Perm`` entries (the core reads ``.kind``/``.domid``)."""
        perms = self._perms.get(raw)
        if perms is None:
            if len(self._perms) >= 4096:
                self._perms.clear()
            perms = self._perms[raw] = tuple(
                Perm(field[:1].decode(), int(field[1:])) for field in raw.split(b"\0")[:-1])
        return perms

    decode_perms = _decode_perms    # b"n0\0r5\0" -> (Perm, ...): fastpath.py decodes events with it

    # -- reading --------------------------------------------------------------
    def get(self, path: str, children: bool = False):
        """A ``NodeView`` (value, perms, gen, owner; ``children`` None) or None."""
        return NodeStore.get(self, path, children)

    def child_names(self, path: str) -> list:
        names = self.children_bytes(path)
        return names[:-1].decode().split("\0") if names else []

    def last_children(self, path: str, count: int) -> list:
        names = self.last_children_bytes(path, count)
        return names[:-1].decode().split("\0") if names else []

    def copy_of(self, path: str):
        view = NodeStore.get(self, path, True)
        return None if view is None else Node(view.value, view.perms, view.children, view.gen)

    def gen_of(self, path: str):
        view = NodeStore.get(self, path, False)
        return None if view is None else view.gen

    def items(self):
        """``(path, node)`` of every node (pre-order), from one ``dump``."""
        return _preorder(self, self.dump())

    # -- mutators ---------------------------------------------------------------
    def create_missing(self, missing: list, value: bytes, perms: tuple) -> None:
        self.write(missing[0], value, perms)

    def remove_tree(self, path: str) -> dict:
        return self.rm(path)

    # -- loading: no stamps, nothing noted ------------------------------------------
    def load(self, path: str, value: bytes, perms: tuple, gen: int, append: bool = True) -> None:
        """As ``Store.load``."""
        if not append and NodeStore.get(self, path, False) is None:
            raise KeyError(path)
        if not NodeStore.load(self, path, value, perms, gen) and append and path != "/":
            self.move_last(path)

    def unload(self, path: str) -> None:
        """As ``Store.unload``: the C store's removal stamps the parent, so its generation
        and the counter are put back (a replayed batch carries the parent's own entry)."""
        if NodeStore.get(self, path, False) is None:
            return
        up_path = parent(path)
        up = NodeStore.get(self, up_path, False)
        next_gen = self.next_gen
        self.rm(path)
        NodeStore.load(self, up_path, up.value, up.perms, up.gen)
        self.next_gen = next_gen

    def order(self, path: str, names: list) -> None:
        if NodeStore.get(self, path, False) is None or set(names) != set(self.child_names(path)):
            raise ValueError(f"children order of {path} does not match its children")
        for name in names:
            self.move_last(join(path, name))

    def recount(self) -> None:
        """Nothing to do: the C store counts owners and bytes as nodes come and go."""

    # -- snapshots ------------------------------------------------------------------
    def freeze(self) -> "Dump":
        return Dump(self, self.dump(), self.next_gen)

    def thaw(self) -> None:
        """Nothing to undo: ``freeze`` copied the tree."""

    def preorder(self):
        return _preorder(self, self.dump())


class Dump:
    """``CStore.freeze``: the tree as one ``dump``, read record by record."""

    __slots__ = ("store", "raw", "next_gen")

    def __init__(self, store: CStore, raw: bytes, next_gen: int):
        self.store = store
        self.raw = raw
        self.next_gen = next_gen

    def preorder(self):
        return _preorder(self.store, self.raw)


def _preorder(store: CStore, raw: bytes):
    """``(path, NodeView)`` (no children) for each record of ``raw`` (``dump``), parsed as
    it is read: a snapshot written in steps parses a step's worth at a time."""
    for path, value, perms, gen, _ in store.nodes(raw, children=False):
        yield path, NodeView(value, perms, None, gen)
