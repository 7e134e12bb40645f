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
import operator

import pygtrie

MATCH_ANCESTORS = 1      # ids at the path or any ancestor up to "/"
MATCH_DESCENDANTS = 2    # ids strictly below the path
_ALL_FLAGS = MATCH_ANCESTORS | MATCH_DESCENDANTS
ID_MAX = (1 << 64) - 1

_TREE = 0
_SPECIAL = 1


def _split(path):
    """(kind, key): (_TREE, tuple of components) or (_SPECIAL, path)."""
    if not isinstance(path, str):
        raise TypeError("path must be str, not %s" % type(path).__name__)
    # The C backend sees the UTF-8 bytes; refuse what it cannot encode the
    # same way (UnicodeEncodeError is a ValueError).
    path.encode()
    if path[:1] == "@":
        return _SPECIAL, path
    if path[:1] != "/":
        raise ValueError("invalid path %r: must start with '/' or '@'" % (path,))
    if path == "/":
        return _TREE, ()
    comps = tuple(path[1:].split("/"))
    if "" in comps:
        raise ValueError("invalid path %r: empty component" % (path,))
    return _TREE, comps


def _check_id(id):
    id = operator.index(id)
    if not 0 <= id <= ID_MAX:
        raise OverflowError("id %d outside 0..2**64-1" % id)
    return id


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


def glob_match(pattern, path):
    """True if path matches pattern: a "*" component matches exactly one
    component, "**" any number including zero, anything else itself; a
    special pattern matches only the same special (see trie.h)."""
    pkind, pat = _split(pattern)
    kind, key = _split(path)
    if pkind == _SPECIAL or kind == _SPECIAL:
        return pkind == kind and pat == key
    # One-backtrack-point wildcard match over components, as in trie.c.
    p = s = 0
    star_p = star_s = -1
    while s < len(key):
        if p < len(pat) and pat[p] == "**":
            star_p, star_s = p + 1, s
            p += 1
        elif p < len(pat) and (pat[p] == "*" or pat[p] == key[s]):
            p += 1
            s += 1
        elif star_p >= 0:
            star_s += 1
            p, s = star_p, star_s
        else:
            return False
    while p < len(pat) and pat[p] == "**":
        p += 1
    return p == len(pat)


class _GlobNode:
    __slots__ = ("kids", "ids", "dstar")

    def __init__(self, dstar):
        self.kids = {}
        self.ids = set()
        self.dstar = dstar   # this node's component is "**"


class GlobSet:
    """Many glob patterns, each with ids; match(path) gives the ids of every
    pattern that matches path (each once, sorted)."""

    __slots__ = ("_root", "_special", "_count")

    def __init__(self):
        self._root = _GlobNode(False)
        self._special = {}
        self._count = 0

    def add(self, pattern, id):
        """Register id for pattern. ValueError if already there."""
        id = _check_id(id)
        kind, key = _split(pattern)
        if kind == _SPECIAL:
            ids = self._special.setdefault(key, set())
        else:
            node = self._root
            for comp in key:
                kid = node.kids.get(comp)
                if kid is None:
                    kid = node.kids[comp] = _GlobNode(comp == "**")
                node = kid
            ids = node.ids
        if id in ids:
            raise ValueError("(%r, %d) is already registered" % (pattern, id))
        ids.add(id)
        self._count += 1

    def remove(self, pattern, id):
        """Unregister id for pattern; False if it was not there."""
        id = _check_id(id)
        kind, key = _split(pattern)
        if kind == _SPECIAL:
            ids = self._special.get(key)
            if ids is None or id not in ids:
                return False
            ids.discard(id)
            if not ids:
                del self._special[key]
            self._count -= 1
            return True
        trail = [self._root]
        for comp in key:
            kid = trail[-1].kids.get(comp)
            if kid is None:
                return False
            trail.append(kid)
        if id not in trail[-1].ids:
            return False
        trail[-1].ids.discard(id)
        for depth in range(len(key), 0, -1):   # prune emptied nodes
            node = trail[depth]
            if node.ids or node.kids:
                break
            del trail[depth - 1].kids[key[depth - 1]]
        self._count -= 1
        return True

    @staticmethod
    def _add_state(states, node):
        while node is not None and id(node) not in states:
            states[id(node)] = node
            node = node.kids.get("**")   # "**" also matches zero components

    def match(self, path):
        """Ids of the patterns matching path."""
        kind, key = _split(path)
        if kind == _SPECIAL:
            ids = self._special.get(key)
            return sorted(ids) if ids else []
        cur = {}
        self._add_state(cur, self._root)
        for comp in key:
            nxt = {}
            for node in cur.values():
                if node.dstar:
                    self._add_state(nxt, node)
                self._add_state(nxt, node.kids.get(comp))
                self._add_state(nxt, node.kids.get("*"))
            cur = nxt
            if not cur:
                return []
        found = set()
        for node in cur.values():
            found |= node.ids
        return sorted(found)

    def __len__(self):
        return self._count

    def __repr__(self):
        return "<GlobSet python entries=%d>" % self._count
