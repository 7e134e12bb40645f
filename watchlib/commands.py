"""Requests as sans-I/O generators, shared by the blocking and the asyncio client.

A command is a generator that yields ``(op, payload)`` for each request it
needs (``(op, payload, tx_id, generation)`` inside a transaction) and
receives the reply payload (or has the exception of the request, such as the
``XenstoreError`` of an ERROR reply, thrown into it); its return value is the
result.  ``drive`` (threads) and ``adrive`` (asyncio) run one with the
client's request function, so the multi-request logic (DIRECTORY_PART
paging, glob walks, transactions and their replay) is written once.

Wire facts: docs/misc/xenstore.txt and xs_wire.h; DIRECTORY_PART chunking as
C xenstored sends it.
"""
from xenstore_protocol import Op, XenstoreError, join_fields, split_fields
from xenstore_protocol.perms import Perm, encode_list, parse

from . import sockets
from .protocol import Disconnected

# How often `ls` restarts its DIRECTORY_PART walk when the directory keeps
# changing under it (its generation differs between chunks) before giving up.
DIRECTORY_PART_RESTARTS = 16

# A step of ``run_transaction`` that is no request: call the user's function
# with the transaction (``(CALL, t)``); its result is sent back.
CALL = "call"


def drive(gen, request):
    """Run a command to completion with a blocking ``request(*step)``."""
    try:
        req = next(gen)
        while True:
            try:
                reply = request(*req)
            except BaseException as e:
                req = gen.throw(e)
            else:
                req = gen.send(reply)
    except StopIteration as stop:
        return stop.value


async def adrive(gen, request):
    """Run a command to completion with an async ``request(*step)``."""
    try:
        req = next(gen)
        while True:
            try:
                reply = await request(*req)
            except BaseException as e:
                req = gen.throw(e)
            else:
                req = gen.send(reply)
    except StopIteration as stop:
        return stop.value


def socket_path(path=None, read_only=False) -> str:
    """The socket to use: ``path``, else libxenstore's rule (``watchlib.sockets``)."""
    return sockets.client_socket(path, read_only)


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


# -- transactions ------------------------------------------------------------

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


def transaction_begin(t, generation):
    """TRANSACTION_START on the connection of ``generation``; ``t`` then holds its id."""
    reply = yield Op.TRANSACTION_START, b"\0", 0, generation
    t.tx_id = int(reply.rstrip(b"\0"))
    t._gen = generation
    t._log = []


def in_transaction(t, command):
    """Run ``command`` inside ``t``, logging every request with its outcome for the replay."""
    if t.tx_id is None:
        raise RuntimeError("transaction not started (use it as a context manager)")
    try:
        req = next(command)
        while True:
            op, payload = req
            try:
                reply = yield op, payload, t.tx_id, t._gen
            except XenstoreError as e:
                t._log.append((op, payload, None, e.name))
                req = command.throw(e)
            else:
                t._log.append((op, payload, reply, None))
                req = command.send(reply)
    except StopIteration as stop:
        return stop.value


def transaction_finish(t, commit: bool):
    """TRANSACTION_END; a failed abort is no error (the transaction is gone either way)."""
    tx_id, t.tx_id = t.tx_id, None
    if tx_id is None:
        return
    try:
        yield Op.TRANSACTION_END, b"T\0" if commit else b"F\0", tx_id, t._gen
    except (XenstoreError, Disconnected):
        if commit:
            raise


def commit_replaying(t, core):
    """Commit transaction ``t`` (a TransactionState); on EAGAIN replay its log in a new
    transaction, committed in its place when every request gets the same answer.

    ``core`` (the client's ProtocolCore) says which connection a new
    transaction is opened on.
    """
    try:
        yield from transaction_finish(t, True)
        return
    except XenstoreError as e:
        if e.name != "EAGAIN" or not t._replay_ok:
            raise
    log_ = t._log
    for _ in range(t.attempts - 1):
        t.retries += 1
        yield from transaction_begin(t, core.generation)
        for op, payload, reply, err in log_:
            try:
                got, got_err = (yield from in_transaction(t, _one(op, payload))), None
            except XenstoreError as e:
                got, got_err = None, e.name
            if (got, got_err) != (reply, err):
                yield from transaction_finish(t, False)
                raise XenstoreError("EAGAIN", "transaction conflicted and its reads changed")
        try:
            yield from transaction_finish(t, True)
            return
        except XenstoreError as e:
            if e.name != "EAGAIN":
                raise
    raise XenstoreError("EAGAIN", f"transaction conflicted {t.attempts} times")


def _one(op, payload):
    return (yield op, payload)


def run_transaction(new_transaction, core, attempts: int):
    """``fn(t)`` (the ``CALL`` step) in a new transaction, re-run on EAGAIN up to
    ``attempts`` times; returns its result."""
    for attempt in range(attempts):
        t = new_transaction()
        yield from transaction_begin(t, core.generation)
        try:
            result = yield CALL, t
        except GeneratorExit:
            raise
        except BaseException:
            yield from transaction_finish(t, False)
            raise
        try:
            yield from transaction_finish(t, True)
            return result
        except XenstoreError as e:
            if e.name != "EAGAIN" or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# -- glob walking ------------------------------------------------------------

def glob(pattern: str):
    """The existing nodes a pattern selects (as a subscription's initial events), sorted."""
    from .patterns import Pattern
    pat = Pattern(pattern)
    if pat.literal:
        return [pat.text] if pat.special or (yield from exists(pat.text)) else []
    return (yield from walk_matches(pat))


def initial_paths(pattern):
    """The paths of a new subscription's initial events (``pattern``: a patterns.Pattern)."""
    if pattern.literal:
        return [pattern.text]
    return (yield from walk_matches(pattern))


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
