"""The C watch registry (watchreg.h) for xsd/core/watches.py's CWatchRegistry.

One object owns one ``xsd_wreg`` through ``ffi.gc``; it borrows a WatchTrie's
handle (which the request engine reads too) and a C store's. Every return
code is checked here and nowhere else; the delivery and listing layouts of
watchreg.h are read here and nowhere else. Plain values in and out: paths,
tokens and perms as bytes, sessions as small integers.
"""
import errno
import os
from struct import Struct

from ._xsd_native import ffi, lib
from . import trie as _checked  # noqa: F401  (the build stamp is checked at its import)

__all__ = ["NativeWatchRegistry", "TRIE_DEPTH", "deliver_payloads", "deliveries"]

TRIE_DEPTH = lib.XSD_WREG_TRIE_DEPTH

_DELIVERY = Struct("<IHHH")         # session, event path, path, token lengths
_LISTED = Struct("<QHH")            # order, path, token lengths
_U32 = Struct("<I")
_NONE = _U32.pack(0xFFFFFFFF)
_SAME_PATH = lib.XSD_WREG_SAME_PATH
if _DELIVERY.size != lib.XSD_WREG_DELIVERY_HEADER:
    raise ImportError("xsd._native: delivery header differs from watchreg.h")

_NULL = ffi.NULL
_unpack = ffi.unpack
_new = ffi.new
_add = lib.xsd_wreg_add
_remove = lib.xsd_wreg_remove
_find = lib.xsd_wreg_find
_fire_change = lib.xsd_wreg_fire_change
_fire_remove = lib.xsd_wreg_fire_remove
_fire_special = lib.xsd_wreg_fire_special
_count = lib.xsd_wreg_session_count
_text_bytes = lib.xsd_wreg_session_text_bytes

_BUF_START = 4096
_BUF_KEEP = 1 << 20     # larger buffers (a big rm) are not kept on the object


def _fail(rc, what):
    code = -rc
    if code == errno.ENOMEM:
        raise MemoryError("xsd._native: out of memory")
    if code in (errno.EINVAL, errno.E2BIG):
        raise ValueError("xsd._native watch registry: invalid %r" % (what,))
    raise OSError(code, os.strerror(code), what)


class NativeWatchRegistry:
    """Watches as C records; see watchreg.h for what each call does."""

    __slots__ = ("_h", "_trie", "_store", "_buf", "_cap", "_order", "_asks")

    def __init__(self, trie, store_handle=None):
        h = lib.xsd_wreg_new(trie.handle, _NULL if store_handle is None else store_handle)
        if h == _NULL:
            raise MemoryError("xsd._native: out of memory")
        self._h = ffi.gc(h, lib.xsd_wreg_free)
        self._trie, self._store = trie, store_handle    # borrowed: kept alive with us
        self._buf = _new("char[]", _BUF_START)
        self._cap = _BUF_START
        self._order = _new("uint64_t *")
        self._asks = _new("int *")

    # -- sessions -------------------------------------------------------------
    @property
    def handle(self):
        """The ``xsd_wreg *`` (the request engine fires through it: engine.h)."""
        return self._h

    def session_new(self) -> int:
        s = lib.xsd_wreg_session_new(self._h)
        if s < 0:
            _fail(s, "session")
        return s

    def session_set(self, s: int, domid: int, target, privileged: bool) -> None:
        rc = lib.xsd_wreg_session_set(self._h, s, domid, -1 if target is None else target,
                                      privileged)
        if rc:
            _fail(rc, s)

    def session_free(self, s: int) -> None:
        rc = lib.xsd_wreg_session_free(self._h, s)
        if rc:
            _fail(rc, s)

    def session_clear(self, s: int) -> None:
        rc = lib.xsd_wreg_session_clear(self._h, s)
        if rc:
            _fail(rc, s)

    def count(self, s: int) -> int:
        return _count(self._h, s)

    def text_bytes(self, s: int) -> int:
        return _text_bytes(self._h, s)

    # -- watches ----------------------------------------------------------------
    def add(self, s: int, path: bytes, token: bytes, relative: bool):
        """The new watch's number (registration order: firing order), or None if ``s``
        already has (path, token)."""
        rc = _add(self._h, s, path, len(path), token, len(token), relative, self._order)
        if rc == 0:
            return self._order[0] >> 2
        if rc == -errno.EEXIST:
            return None
        _fail(rc, path)

    def remove(self, s: int, key: bytes) -> bool:
        rc = _remove(self._h, s, key, len(key))
        if rc == 0:
            return True
        if rc == -errno.ENOENT:
            return False
        _fail(rc, key)

    def find(self, s: int, key: bytes):
        """``(number, relative)`` of ``s``'s watch keyed ``key`` (path NUL token), or None."""
        if _find(self._h, s, key, len(key), self._order):
            order = self._order[0]
            return order >> 2, bool(order & 1)
        return None

    def session_watches(self, s: int) -> list:
        """``[(number, relative, key), ...]`` of ``s``'s watches, in registration order."""
        data = self._call(lambda buf, cap: lib.xsd_wreg_session_watches(self._h, s, buf, cap), s)
        out, at, size = [], 0, _LISTED.size
        while at < len(data):
            order, plen, tlen = _LISTED.unpack_from(data, at)
            at += size
            end = at + plen + 1 + tlen
            out.append((order >> 2, bool(order & 1), data[at:end]))
            at = end
        out.sort()
        return out

    # -- firing -------------------------------------------------------------------
    # Each returns the deliveries as watchreg.h lays them out (b"": none); ``deliver`` or
    # ``deliveries`` reads them.
    def fire_change(self, path: bytes, perms: bytes, old_perms) -> bytes:
        h, buf = self._h, self._buf
        if old_perms is None:
            old_perms, old_len = _NULL, 0
        else:
            old_len = len(old_perms)
        n = _fire_change(h, path, len(path), perms, len(perms), old_perms, old_len, buf,
                         self._cap)
        if n == 0:
            return b""
        if 0 < n <= self._cap:
            return _unpack(buf, n)
        return self._call(lambda b, cap: _fire_change(
            h, path, len(path), perms, len(perms), old_perms, old_len, b, cap), path, n)

    def fire_special(self, name: bytes, perms) -> bytes:
        h = self._h
        plen = 0 if perms is None else len(perms)
        perms = _NULL if perms is None else perms
        return self._call(lambda b, cap: _fire_special(h, name, len(name), perms, plen, b, cap),
                          name)

    def fire_remove(self, root: bytes, root_perms: bytes, removed_below) -> bytes:
        """Deliveries of removing the subtree at ``root``.  ``removed_below(paths)`` is
        asked, only when watches lie below ``root``, for ``[(path, perms, parent_perms
        or None), ...]`` of the removed nodes among ``paths`` (bytes), in firing order."""
        h, asks = self._h, self._asks
        data = self._call(lambda b, cap: _fire_remove(
            h, root, len(root), root_perms, len(root_perms), _NULL, 0, asks, b, cap), root)
        if not asks[0]:
            return data
        paths = data.split(b"\0")[:-1]
        parts = []
        for path, perms, parent_perms in removed_below(paths):
            parts += (_U32.pack(len(path)), path, _U32.pack(len(perms)), perms)
            if parent_perms is None:
                parts.append(_NONE)
            else:
                parts += (_U32.pack(len(parent_perms)), parent_perms)
        below = b"".join(parts)
        return self._call(lambda b, cap: _fire_remove(
            h, root, len(root), root_perms, len(root_perms), below, len(below), asks, b, cap),
            root)

    def _call(self, call, what, n=None) -> bytes:
        """``call(buf, cap) -> n`` with a buffer that fits (watchreg.h's n > cap rule)."""
        buf, cap = self._buf, self._cap
        if n is None:
            n = call(buf, cap)
        while n > cap:
            cap = max(n, 2 * cap)
            buf = _new("char[]", cap)
            n = call(buf, cap)
            if 0 <= n <= cap and cap <= _BUF_KEEP:
                self._buf, self._cap = buf, cap
        if n < 0:
            _fail(n, what)
        return _unpack(buf, n) if n else b""

    def __len__(self) -> int:
        return lib.xsd_wreg_count(self._h)

    def stats(self) -> dict:
        st = _new("struct xsd_wreg_stats *")
        lib.xsd_wreg_stats(self._h, st)
        return {"watches": st.watches, "sessions": st.sessions, "bytes": st.bytes,
                "blocks": st.blocks}


def deliver_payloads(data: bytes, path: bytes, sessions) -> None:
    """Hand each delivery in ``data``, from a fire call given ``path`` (the request engine's
    groups, engine.py ``delivery_groups``, or a fire_* call's), as the WATCH_EVENT payload
    it makes: ``sessions[handle].queue_payload(event path NUL token NUL, key)``, in order.  The
    event path stays bytes (never decoded and encoded again) and the record's own
    "NUL token" is the payload's middle."""
    at, end_all, unpack = 0, len(data), _DELIVERY.unpack_from
    while at < end_all:
        s, evlen, plen, tlen = unpack(data, at)
        at += 10                                # _DELIVERY.size
        if evlen == _SAME_PATH:
            ev = path
        else:
            ev = data[at:at + evlen]
            at += evlen
        token_at = at + plen
        end = token_at + 1 + tlen
        sessions[s].queue_payload(ev + data[token_at:end] + b"\0", data[at:end])
        at = end


def deliveries(data: bytes, path: str) -> list:
    """``[(session, event path, token, key), ...]`` from watchreg.h's delivery records."""
    out = []
    deliver_payloads(data, path.encode("ascii"), _Collect(out))
    return out


class _Collect:
    """``deliver_payloads``' sessions for ``deliveries``: every handle notes into one list."""

    __slots__ = ("out", "handle")

    def __init__(self, out):
        self.out = out

    def __getitem__(self, handle):
        self.handle = handle
        return self

    def queue_payload(self, payload, key):
        path, _, token = payload[:-1].partition(b"\0")
        self.out.append((self.handle, path.decode("ascii"), token, key))
