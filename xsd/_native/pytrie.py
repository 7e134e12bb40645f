"""Pure-Python WatchTrie and GlobSet: the fallback backend and the C's oracle.

Used when ``XSD_NATIVE=python`` (or under ``auto`` when the C extension is
missing or stale), and by the tests as the reference the C backend must agree
with. Same interface and semantics as ``xsd._native.trie``; the rules are
written once, in trie.h:

- "/a/b" is split on "/" into components, "/" is the root (no components);
  empty components ("//", a trailing "/") and keys starting with neither "/"
  nor "@" are ValueError.
- "@name" is one special key in its own namespace: no ancestors or
  descendants besides itself; "/" does not cover it.
- (path, id) pairs are unique: adding one twice is ValueError; removing an
  absent one returns False. ids are unsigned 64-bit (OverflowError outside).
- match() returns each id once, sorted ascending.

Not thread-safe (nor is the C backend): use each object from one thread.
"""
import pygtrie

# The glob engine and the key and id rules are watchlib's (one Python engine
# for both packages; watchlib.globs is stdlib-only and imports nothing of xsd).
from watchlib.globs import ID_MAX, PyGlobSet as GlobSet, check_id as _check_id, parse_key
from watchlib.globs import py_glob_match as glob_match

__all__ = ["GlobSet", "ID_MAX", "MATCH_ANCESTORS", "MATCH_DESCENDANTS", "WatchTrie", "glob_match"]

MATCH_ANCESTORS = 1      # ids at the path or any ancestor up to "/"
MATCH_DESCENDANTS = 2    # ids strictly below the path
_ALL_FLAGS = MATCH_ANCESTORS | MATCH_DESCENDANTS

_TREE = 0
_SPECIAL = 1


def _split(path):
    """(kind, key): (_TREE, tuple of components) or (_SPECIAL, path)."""
    comps = parse_key(path)
    return (_SPECIAL, path) if comps is None else (_TREE, comps)


class WatchTrie:
    """Maps paths to sets of ids; see the module docstring for the rules."""

    __slots__ = ("_tree", "_special", "_count")

    def __init__(self):
        self._tree = pygtrie.Trie()    # component tuple -> set of ids
        self._special = {}             # "@name" -> set of ids
        self._count = 0

    def add(self, path, id):
        """Register id at path. ValueError if (path, id) is already there."""
        id = _check_id(id)
        kind, key = _split(path)
        store = self._special if kind == _SPECIAL else self._tree
        ids = store.get(key)
        if ids is None:
            store[key] = {id}
        elif id in ids:
            raise ValueError("(%r, %d) is already registered" % (path, id))
        else:
            ids.add(id)
        self._count += 1

    def remove(self, path, id):
        """Unregister id at path; False if (path, id) was not there."""
        id = _check_id(id)
        kind, key = _split(path)
        store = self._special if kind == _SPECIAL else self._tree
        ids = store.get(key)
        if ids is None or id not in ids:
            return False
        ids.discard(id)
        if not ids:
            del store[key]
        self._count -= 1
        return True

    def match(self, path, flags):
        """Ids selected by flags (MATCH_ANCESTORS | MATCH_DESCENDANTS)."""
        if flags & ~_ALL_FLAGS:
            raise ValueError("unknown match flags %#x" % flags)
        kind, key = _split(path)
        if kind == _SPECIAL:
            ids = self._special.get(key) if flags & MATCH_ANCESTORS else None
            return sorted(ids) if ids else []
        found = set()
        if flags & MATCH_ANCESTORS:
            for _, ids in self._tree.prefixes(key):
                found |= ids
        if flags & MATCH_DESCENDANTS:
            depth = len(key)
            try:
                for k, ids in self._tree.iteritems(prefix=key):
                    if len(k) > depth:
                        found |= ids
            except KeyError:   # no node at path, so nothing below it
                pass
        return sorted(found)

    def __len__(self):
        return self._count

    def stats(self):
        """Counters; the C backend adds nodes, bytes and blocks."""
        return {"entries": self._count}

    def __repr__(self):
        return "<WatchTrie python entries=%d>" % self._count
