"""Requests as sans-I/O generators, shared by the blocking and the asyncio client.

A command is a generator that yields ``(op, payload)`` for each request it
needs and receives the reply payload (or has the ``XenstoreError`` of an
ERROR reply thrown into it); its return value is the result.  The drivers
(``Client._run``, ``AsyncClient._run``) do the I/O, so the multi-request
logic (DIRECTORY_PART paging, transaction replay) is written once.

Wire facts: docs/misc/xenstore.txt and xs_wire.h; DIRECTORY_PART chunking as
C xenstored sends it (see /work/shared/anchors/README.md section 4).
"""
import os

from xenstore_protocol import Op, XenstoreError, join_fields, split_fields
from xenstore_protocol.perms import Perm, encode_list, parse

DEFAULT_SOCKET = "/var/run/xenstored/socket"
DEFAULT_RO_SOCKET = "/var/run/xenstored/socket_ro"

# How often `ls` restarts its DIRECTORY_PART walk when the directory keeps
# changing under it (its generation differs between chunks) before giving up.
DIRECTORY_PART_RESTARTS = 16


def socket_path(path=None, read_only=False) -> str:
    """The socket to use: ``path``, else ``$XENSTORED_PATH``, else the default.

    ``read_only`` picks the read-only socket when no path is given: the
    default ``socket_ro``, or ``$XENSTORED_PATH + "_ro"`` when that exists
    (xsd and the anchors' daemons put both sockets side by side).
    """
    if path:
        return str(path)
    env = os.environ.get("XENSTORED_PATH")
    if env:
        if read_only and os.path.exists(env + "_ro"):
            return env + "_ro"
        return env
    return DEFAULT_RO_SOCKET if read_only else DEFAULT_SOCKET


def encode_path(path) -> bytes:
    if isinstance(path, bytes):
        return path
    return path.encode("ascii")


def encode_value(value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def encode_perms(perms) -> bytes:
    out = []
    for p in perms:
        if isinstance(p, Perm):
            out.append(p)
        else:
            out.append(parse(p.encode("ascii") if isinstance(p, str) else p))
    if not out:
        raise ValueError("set_perms needs at least the owner entry")
    return encode_list(out)


# -- one-request commands ----------------------------------------------------

def read(path):
    return (yield Op.READ, encode_path(path) + b"\0")


def write(path, value):
    yield Op.WRITE, encode_path(path) + b"\0" + encode_value(value)


def mkdir(path):
    yield Op.MKDIR, encode_path(path) + b"\0"


def rm(path):
    yield Op.RM, encode_path(path) + b"\0"


def exists(path):
    # READ, not DIRECTORY: a node whose children list is over 4096 bytes
    # answers DIRECTORY with E2BIG on C xenstored.
    try:
        yield Op.READ, encode_path(path) + b"\0"
    except XenstoreError as e:
        if e.name == "ENOENT":
            return False
        raise
    return True


def get_perms(path):
    reply = yield Op.GET_PERMS, encode_path(path) + b"\0"
    return [parse(f) for f in split_fields(reply)]


def set_perms(path, perms):
    yield Op.SET_PERMS, encode_path(path) + b"\0" + encode_perms(perms)


def get_domain_path(domid: int):
    reply = yield Op.GET_DOMAIN_PATH, b"%d\0" % domid
    return reply.rstrip(b"\0").decode("ascii")


def is_domain_introduced(domid: int):
    reply = yield Op.IS_DOMAIN_INTRODUCED, b"%d\0" % domid
    return reply.rstrip(b"\0") == b"T"


def introduce(domid: int, mfn: int, port: int):
    yield Op.INTRODUCE, join_fields(b"%d" % domid, b"%d" % mfn, b"%d" % port)


def release(domid: int):
    yield Op.RELEASE, b"%d\0" % domid


def _names(payload: bytes) -> list:
    return [name.decode("ascii") for name in split_fields(payload)]


def ls(path):
    """DIRECTORY; on E2BIG, DIRECTORY_PART paging.

    C xenstored answers a DIRECTORY whose reply would pass 4096 bytes with
    E2BIG.  DIRECTORY_PART ``path\\0offset\\0`` then returns
    ``"<generation>\\0"`` followed by the whole children names from byte
    ``offset`` of the list, and one more NUL; a chunk with no name ends the
    walk.  A generation that changes between chunks means the directory
    changed: start again from offset 0.
    """
    p = encode_path(path)
    try:
        return _names((yield Op.DIRECTORY, p + b"\0"))
    except XenstoreError as e:
        if e.name != "E2BIG":
            raise
    for _ in range(DIRECTORY_PART_RESTARTS):
        gen = None
        buf = bytearray()
        while True:
            reply = yield Op.DIRECTORY_PART, join_fields(p, b"%d" % len(buf))
            this_gen, _, rest = reply.partition(b"\0")
            if gen is None:
                gen = this_gen
            elif this_gen != gen:
                break                       # changed under us: restart
            chunk = rest[:-1] if rest.endswith(b"\0") else rest
            if not chunk:
                return _names(bytes(buf))
            buf += chunk
    raise XenstoreError("EAGAIN", f"directory {path} kept changing during DIRECTORY_PART")


def raw(op, payload):
    return (yield op, payload)


def transaction_start():
    reply = yield Op.TRANSACTION_START, b"\0"
    return int(reply.rstrip(b"\0"))


def transaction_end(commit: bool):
    yield Op.TRANSACTION_END, b"T\0" if commit else b"F\0"


# -- glob walking ------------------------------------------------------------

class TransactionState:
    """What ``Transaction`` and ``AsyncTransaction`` hold: the log of the block's requests
    with their outcomes, replayed by ``commit_replaying`` on EAGAIN."""

    def __init__(self, client, attempts=5, replay=True):
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._client = client
        self.attempts = attempts
        self._replay_ok = replay
        self.tx_id = None
        self._gen = None
        self._log = []              # (op, payload, reply, error name) per request
        self.retries = 0


def commit_replaying(t):
    """Commit transaction ``t`` (a TransactionState); on EAGAIN replay its log in a new
    transaction, committed in its place when every request gets the same answer.

    Yields steps for the client's own methods rather than wire requests:
    ``("end", commit)``, ``("begin",)`` and ``("request", op, payload)`` (the reply, or
    the XenstoreError thrown in), so the blocking and the asyncio client drive it with
    ``drive`` / ``adrive`` like any command.
    """
    try:
        yield ("end", True)
        return
    except XenstoreError as e:
        if e.name != "EAGAIN" or not t._replay_ok:
            raise
    log_ = t._log
    for _ in range(t.attempts - 1):
        t.retries += 1
        yield ("begin",)
        for op, payload, reply, err in log_:
            try:
                got, got_err = (yield ("request", op, payload)), None
            except XenstoreError as e:
                got, got_err = None, e.name
            if (got, got_err) != (reply, err):
                yield ("end", False)
                raise XenstoreError("EAGAIN", "transaction conflicted and its reads changed")
        try:
            yield ("end", True)
            return
        except XenstoreError as e:
            if e.name != "EAGAIN":
                raise
    raise XenstoreError("EAGAIN", f"transaction conflicted {t.attempts} times")


def walk_matches(pattern):
    """Every existing node that ``pattern`` (a patterns.Pattern) selects, sorted.

    Walks from the literal prefix with ``ls``, descending only where the
    pattern can still match; a ``**`` makes it walk the whole subtree below.
    Nodes that vanish (or are unreadable) during the walk are skipped.
    """
    found = []
    if pattern.matches_exactly(pattern.prefix) and (yield from exists(pattern.prefix)):
        found.append(pattern.prefix)
    stack = [(pattern.prefix, pattern.prefix_components)]
    while stack:
        path, parts = stack.pop()
        if not pattern.could_extend(parts):
            continue
        try:
            names = yield from ls(path)
        except XenstoreError as e:
            if e.name in ("ENOENT", "EACCES"):
                continue
            raise
        base = "" if path == "/" else path
        for name in names:
            child = parts + (name,)
            child_path = f"{base}/{name}"
            if pattern.matches_exactly(child_path):
                found.append(child_path)
            if pattern.could_extend(child):
                stack.append((child_path, child))
    found.sort()
    return found
