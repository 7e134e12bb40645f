"""WatchTrie and GlobSet over the C core (the cffi extension ``_xsd_native``).

Importing this module fails with StaleBuildError (an ImportError) when the
compiled extension was not built from the sources shipped beside it, so a
stale build is never used by accident. xsd._native decides what to do then.

Each C handle is owned by exactly one Python object through ``ffi.gc``. Every
return code is checked here and nowhere else. Each call is one crossing into
C: the path is encoded once, passed as (bytes, length) without a copy, and
the ids come back through a buffer cached on the object (grown and retried
when a result does not fit).

Not thread-safe: the C side takes no locks and cffi releases the GIL during
calls, so one object must be used by one thread at a time (the daemon's event
loop).
"""
import errno
import os
import sys

from ._xsd_native import ffi, lib
from .pytrie import MATCH_ANCESTORS, MATCH_DESCENDANTS

__all__ = ["WatchTrie", "GlobSet", "glob_match", "StaleBuildError",
           "MATCH_ANCESTORS", "MATCH_DESCENDANTS", "STAMP", "EXTENSION"]

from .sourcestamp import HERE, STAMP_FILES, source_stamp  # noqa: F401  (re-exported)

EXTENSION = os.path.abspath(sys.modules[__package__ + "._xsd_native"].__file__)



class StaleBuildError(ImportError):
    """The compiled extension does not match the C sources beside it."""



def check_stamp(built, directory=HERE):
    """Raise StaleBuildError unless ``built`` is the stamp of the sources."""
    try:
        expected = source_stamp(directory)
    except OSError as e:
        raise StaleBuildError(
            "xsd._native: cannot verify the C extension %s: its sources are "
            "missing (%s)" % (EXTENSION, e)) from None
    if built != expected:
        others = sorted(n for n in os.listdir(os.path.dirname(EXTENSION))
                        if n.startswith("_xsd_native.") and n.endswith(".so"))
        raise StaleBuildError(
            "xsd._native: the C extension %s is stale: built from sources "
            "with stamp %s, but the sources in %s now have stamp %s. Rebuild "
            "with `pip install -e .` or `python xsd/_native/build_native.py`"
            "%s." % (EXTENSION, built, directory, expected,
                     "" if len(others) < 2 else
                     " (several builds sit beside each other: %s; Python "
                     "loads the first by suffix order, remove the others)"
                     % ", ".join(others)))


STAMP = ffi.string(lib.xsd_native_stamp()).decode()
check_stamp(STAMP)

if (lib.XSD_MATCH_ANCESTORS, lib.XSD_MATCH_DESCENDANTS) != (
        MATCH_ANCESTORS, MATCH_DESCENDANTS):
    raise StaleBuildError("xsd._native: match flag values differ from trie.h")

# Bound once: a module global is cheaper to reach than lib.<name> per call.
_NULL = ffi.NULL
_new_buf = ffi.new
_unpack = ffi.unpack
_gc = ffi.gc
_trie_new = lib.xsd_trie_new
_trie_free = lib.xsd_trie_free
_trie_add = lib.xsd_trie_add
_trie_remove = lib.xsd_trie_remove
_trie_match = lib.xsd_trie_match
_trie_count = lib.xsd_trie_count
_trie_stats = lib.xsd_trie_stats
_gs_new = lib.xsd_globset_new
_gs_free = lib.xsd_globset_free
_gs_add = lib.xsd_globset_add
_gs_remove = lib.xsd_globset_remove
_gs_match = lib.xsd_globset_match
_gs_count = lib.xsd_globset_count
_gs_stats = lib.xsd_globset_stats
_glob_match = lib.xsd_glob_match

_ENOENT = -errno.ENOENT
_BUF_START = 64        # ids; a write usually fires a handful
_BUF_KEEP = 1 << 14    # larger buffers (a big rm) are not kept on the object


def _fail(rc, path, id=None):
    """Turn a negative errno from C into the Python exception for it."""
    code = -rc
    if code == errno.EEXIST:
        raise ValueError("(%r, %d) is already registered" % (path, id))
    if code in (errno.EINVAL, errno.ENAMETOOLONG):
        raise ValueError("invalid path or flags: %r" % (path,))
    if code == errno.ENOMEM:
        raise MemoryError("xsd._native: out of memory")
    raise OSError(code, os.strerror(code), path)


def _stats(fn, handle):
    st = _new_buf("struct xsd_trie_stats *")
    fn(handle, st)
    return {"entries": st.entries, "nodes": st.nodes, "bytes": st.bytes,
            "blocks": st.blocks}


class _IdIndex:
    """What WatchTrie and GlobSet share: one C handle owned through ffi.gc,
    keys registered with 64-bit ids, and a result buffer grown on demand.
    Subclasses name their C functions and write their own match()."""

    __slots__ = ("_h", "_buf", "_cap")

    def __init__(self):
        h = self._c_new()
        if h == _NULL:
            raise MemoryError("xsd._native: out of memory")
        self._h = _gc(h, self._c_free)
        self._buf = _new_buf("uint64_t[]", _BUF_START)
        self._cap = _BUF_START

    def add(self, key_text, id):
        """Register id at key_text. ValueError if (key_text, id) is already there."""
        key = key_text.encode()
        rc = self._c_add(self._h, key, len(key), id)
        if rc:
            _fail(rc, key_text, id)

    def remove(self, key_text, id):
        """Unregister id at key_text; False if (key_text, id) was not there."""
        key = key_text.encode()
        rc = self._c_remove(self._h, key, len(key), id)
        if rc == 0:
            return True
        if rc == _ENOENT:
            return False
        _fail(rc, key_text)

    def _ids(self, n, buf, call, path):
        """The n ids a match wrote into buf; when they did not fit (n > the
        cached capacity), retry ``call(buf, cap) -> n`` with a buffer of at
        least n ids. The callers keep the commonest results, none and one,
        inline."""
        if 0 < n <= self._cap:
            return _unpack(buf, n)
        while n >= 0:
            cap = max(n, 2 * self._cap)
            buf = _new_buf("uint64_t[]", cap)
            n = call(buf, cap)
            if 0 <= n <= cap:
                if cap <= _BUF_KEEP:
                    self._buf, self._cap = buf, cap
                return _unpack(buf, n)
        _fail(n, path)

    @property
    def handle(self):
        """The raw C handle (for the C request path, xsd/_native/engine.py)."""
        return self._h

    def __len__(self):
        return self._c_count(self._h)

    def stats(self):
        """entries, nodes, bytes (requested from malloc, still held) and
        blocks (live allocations)."""
        return _stats(self._c_stats, self._h)


class WatchTrie(_IdIndex):
    """Maps paths to sets of 64-bit ids; rules in trie.h and pytrie.py."""

    __slots__ = ()
    _c_new, _c_free = staticmethod(_trie_new), staticmethod(_trie_free)
    _c_add, _c_remove = staticmethod(_trie_add), staticmethod(_trie_remove)
    _c_count, _c_stats = staticmethod(_trie_count), staticmethod(_trie_stats)

    def match(self, path, flags):
        """Ids selected by flags (MATCH_ANCESTORS | MATCH_DESCENDANTS), each
        once, sorted ascending. One C call unless the result outgrows the
        cached buffer."""
        key = path.encode()
        buf = self._buf
        n = _trie_match(self._h, key, len(key), flags, buf, self._cap)
        # Most writes fire no watch or one: skip ffi.unpack for those.
        if n == 0:
            return []
        if n == 1:
            return [buf[0]]
        return self._ids(n, buf, lambda b, cap: _trie_match(self._h, key, len(key), flags, b, cap), path)

    def __repr__(self):
        return "<WatchTrie cffi entries=%d>" % len(self)


class GlobSet(_IdIndex):
    """Many glob patterns, each with ids; match(path) gives the ids of every
    pattern matching path, each once, sorted, in one C call."""

    __slots__ = ()
    _c_new, _c_free = staticmethod(_gs_new), staticmethod(_gs_free)
    _c_add, _c_remove = staticmethod(_gs_add), staticmethod(_gs_remove)
    _c_count, _c_stats = staticmethod(_gs_count), staticmethod(_gs_stats)

    def match(self, path):
        """Ids of the patterns matching path."""
        key = path.encode()
        buf = self._buf
        n = _gs_match(self._h, key, len(key), buf, self._cap)
        if n == 0:
            return []
        if n == 1:
            return [buf[0]]
        return self._ids(n, buf, lambda b, cap: _gs_match(self._h, key, len(key), b, cap), path)

    def __repr__(self):
        return "<GlobSet cffi entries=%d>" % len(self)


def glob_match(pattern, path):
    """True if path matches the glob pattern (rules in trie.h)."""
    p = pattern.encode()
    s = path.encode()
    rc = _glob_match(p, len(p), s, len(s))
    if rc < 0:
        _fail(rc, (pattern, path))
    return rc == 1
