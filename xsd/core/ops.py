"""One function per request type: ``do_<op>(d, s, view, payload, events) -> reply payload``.

``d`` is the Daemon, ``s`` the caller's Session, ``view`` the live store
(``store.Store`` or ``cstore.CStore``) or the caller's Transaction, which
offer the same interface (``store.Store``'s docstring).  A handler
validates everything before it changes anything, raises XenstoreError to
refuse, and appends the watch events it causes to ``events`` (the
dispatcher fires them, or holds them until commit).  No I/O here.
"""
import logging
import re

from xenstore_protocol import PAYLOAD_MAX, XenstoreError, split_fields
from xenstore_protocol import paths
from xenstore_protocol.paths import canonicalize, decode, parent
from xenstore_protocol.perms import Perm, encode_list, parse_list

from .domains import DOMID_FIRST_RESERVED, U64_MAX, decimal
from .events import CHANGE, INITIAL, REMOVE, SPECIAL
from .permissions import OWNER, READ, WRITE, access, closest_ancestor, existing_node
from .quota import memory_of_node, memory_of_watch, memory_of_watches
from .watches import watch_key
from .transactions import transaction_type

log = logging.getLogger("xsd.domains")

OK = b"OK\0"

SPECIAL_NODES = (paths.INTRODUCE_DOMAIN, paths.RELEASE_DOMAIN)


def _one_path(d, s, payload: bytes, allow_special: bool = False) -> str:
    if payload and payload[-1] != 0:
        # C xenstored answers ENOENT to a path that lacks its NUL (anchors README, section 4).
        raise XenstoreError("ENOENT", "path not NUL-terminated")
    fields = split_fields(payload)
    if len(fields) != 1:
        raise XenstoreError("EINVAL", "expected one path")
    return _path(d, s, fields[0], allow_special)


# C xenstored does not count this prefix against path-max (is_valid_nodename's
# "/local/domain/%5u/").
_DOMAIN_HOME = re.compile(r"/local/domain/[0-9]{1,5}/")


def _path(d, s, raw: bytes, allow_special: bool = False) -> str:
    """A path field, checked and made absolute; longer than the path-max quota (every
    caller, dom0 too, as C xenstored; its prefix /local/domain/<domid>/ not counted) is
    EINVAL."""
    path = canonicalize(decode(raw), s.domid, allow_special)
    limit = d.quotas.path_max(s.domid)
    if limit and len(path) > limit:
        home = _DOMAIN_HOME.match(path)
        if len(path) - (home.end() if home else 0) > limit:
            raise XenstoreError("EINVAL", f"path longer than path-max ({limit})")
    return path


def _domid_arg(payload: bytes, count: int = 1) -> list:
    fields = split_fields(payload)
    if len(fields) < count:
        raise XenstoreError("EINVAL", f"expected {count} argument(s)")
    return [decimal(f) for f in fields[:count]]


# -- reading -----------------------------------------------------------------

def do_read(d, s, view, payload, events):
    return existing_node(s, view, _one_path(d, s, payload), READ).value


def do_directory(d, s, view, payload, events):
    path = _one_path(d, s, payload)
    existing_node(s, view, path, READ)
    children = view.children_bytes(path)
    if len(children) > PAYLOAD_MAX:
        raise XenstoreError("E2BIG", "use DIRECTORY_PART")   # as C xenstored
    return children


def do_directory_part(d, s, view, payload, events):
    """``<path>|<offset>|`` -> ``<gen>|`` + the children from byte ``offset`` that fit.

    The last chunk carries one more NUL: libxenstore stops paging when the
    gathered list ends in an empty string.
    """
    fields = split_fields(payload)
    if len(fields) != 2:
        raise XenstoreError("EINVAL", "expected path and offset")
    path = _path(d, s, fields[0])
    node = existing_node(s, view, path, READ)
    offset = decimal(fields[1])
    children = view.children_bytes(path)
    gen = b"%d\0" % node.gen
    if offset >= len(children):
        return gen + b"\0"       # past the end: an empty last chunk, as C xenstored
    room = PAYLOAD_MAX - 1 - len(gen) - 1     # the final NUL marks the chunk's end
    end = offset
    while end < len(children):
        nxt = children.index(b"\0", end) + 1
        if nxt - offset > room:
            break
        end = nxt
    return gen + children[offset:end] + (b"\0" if end == len(children) else b"")


def do_get_perms(d, s, view, payload, events):
    path = _one_path(d, s, payload, allow_special=True)
    if paths.is_special(path):
        return encode_list(_special_perms(d, path))
    return encode_list(existing_node(s, view, path, READ).perms)


def _special_perms(d, name: str) -> tuple:
    if name not in SPECIAL_NODES:
        raise XenstoreError("ENOENT", name)
    return d.watches.special_perms.get(name, (Perm("n", 0),))


# -- writing -----------------------------------------------------------------

def do_write(d, s, view, payload, events):
    cut = payload.find(b"\0")
    if cut < 0:
        raise XenstoreError("EINVAL", "WRITE needs a path and a value")
    path = _path(d, s, payload[:cut])
    value = payload[cut + 1:]
    d.quotas.check(s, "node-size", len(value), "ENOSPC")
    node = view.get(path)
    if node is None:
        perms = _create(d, s, view, path, value)
    else:
        perms = node.perms
        if not s.privileged:
            if not access(s, node.perms) & WRITE:
                raise XenstoreError("EACCES", path)
            if node.owner == s.domid:
                _charge(d, s, view, len(value) - len(node.value))
        view.set_value(path, value)        # the value only: ``perms`` still holds
    events.append((CHANGE, path, perms, None))
    return OK


def do_mkdir(d, s, view, payload, events):
    path = _one_path(d, s, payload)
    node = view.get(path)
    if node is not None:
        if not s.privileged and not access(s, node.perms) & WRITE:
            raise XenstoreError("EACCES", path)
        return OK                 # existing: value kept, no event
    perms = _create(d, s, view, path, b"")
    events.append((CHANGE, path, perms, None))
    return OK


def _create(d, s, view, path: str, value: bytes) -> tuple:
    """Create ``path`` and its missing ancestors; return their permissions.

    The closest existing ancestor must be writable by the caller.  New nodes
    inherit its permissions; an unprivileged creator owns what it creates
    (C xenstored's construct_node).
    """
    top_path, top = closest_ancestor(view, path)
    perms = top.perms
    if not s.privileged and not access(s, perms) & WRITE:
        raise XenstoreError("EACCES", path)
    missing = [path]
    cut = path.rfind("/")
    while cut > len(top_path):
        missing.append(path[:cut])
        cut = path.rfind("/", 0, cut)
    if not s.privileged:
        d.quotas.check(s, "nodes", view.owned_by(s.domid) + len(missing), "ENOSPC")
        _charge(d, s, view, sum(memory_of_node(p, value if i == 0 else b"", perms)
                                for i, p in enumerate(missing)))
        perms = (Perm(perms[0].kind, s.domid),) + perms[1:]
    if view.in_transaction:
        for node_path in missing:
            view.get(node_path)     # counted now: a quota stops it before any change
    view.create_missing(missing, value, perms)
    return perms


def watch_bytes(s) -> int:
    return memory_of_watches(len(s.watches), s.watches.text_bytes())


def _charge(d, s, view, extra: int) -> None:
    """The memory quota: what the caller's domain's nodes (``view.bytes_of``) and this
    session's watches take, plus ``extra`` (quota.memory_of_node/_of_watch)."""
    if extra > 0 and not s.privileged:
        d.quotas.check_memory(s, view.bytes_of(s.domid) + watch_bytes(s) + extra)


def do_rm(d, s, view, payload, events):
    path = _one_path(d, s, payload)
    if path == "/":
        raise XenstoreError("EINVAL", "cannot remove the root")
    node = view.get(path)
    if node is None:
        # Missing node: fine if its parent exists (docs/misc/xenstore.txt, RM).
        existing_node(s, view, parent(path), READ)
        return OK
    if not s.privileged and not access(s, node.perms) & WRITE:
        raise XenstoreError("EACCES", path)
    removed = view.remove_tree(path)   # in a transaction, bounded by transaction-nodes
    events.append((REMOVE, path, removed))
    return OK


def do_set_perms(d, s, view, payload, events):
    fields = split_fields(payload)
    if len(fields) < 2:
        raise XenstoreError("EINVAL", "SET_PERMS needs a path and permissions")
    path = _path(d, s, fields[0], allow_special=True)
    perms = parse_list(fields[1:])
    d.quotas.check(s, "permissions", len(perms), "ENOSPC")
    if paths.is_special(path):
        old = _special_perms(d, path)
        if not s.privileged and not access(s, old) & OWNER:
            raise XenstoreError("EACCES", path)
        d.watches.special_perms[path] = perms
        d.state_changed()
        return OK
    node = existing_node(s, view, path, WRITE | OWNER)
    if not s.privileged and perms[0].domid != node.owner:
        raise XenstoreError("EPERM", "only a privileged domain changes the owner")
    if perms[0].domid >= DOMID_FIRST_RESERVED or not d.domain_exists(perms[0].domid):
        raise XenstoreError("ENOENT", f"owner domain {perms[0].domid} does not exist")
    old = node.perms
    view.set_perms(path, perms)
    events.append((CHANGE, path, perms, old))
    return OK


# -- watches -----------------------------------------------------------------

def _watch_args(d, s, payload):
    fields = split_fields(payload)
    if len(fields) != 2:
        raise XenstoreError("EINVAL", "expected path and token")
    path = _path(d, s, fields[0], allow_special=True)
    relative = not fields[0].startswith((b"/", b"@"))
    return path, fields[1], relative


def do_watch(d, s, view, payload, events):
    path, token, relative = _watch_args(d, s, payload)
    if watch_key(path, token) in s.watches:
        raise XenstoreError("EEXIST", "same path and token already watched")
    d.quotas.check(s, "watches", len(s.watches) + 1, "E2BIG")
    _charge(d, s, d.store, memory_of_watch(len(path) + len(token)))
    watch = d.watches.add(s, path, token, relative)
    d.watch_added(s, watch)
    events.append((INITIAL, watch))
    return OK


def do_unwatch(d, s, view, payload, events):
    path, token, _ = _watch_args(d, s, payload)
    watch = s.watches.get(watch_key(path, token))
    if watch is None:
        raise XenstoreError("ENOENT", "no such watch")
    d.watches.remove(watch)
    d.watch_removed(s, path, token)
    return OK


def do_reset_watches(d, s, view, payload, events):
    d.watches.remove_all(s)
    d.watches_reset(s)
    s.transactions.clear()
    return OK


# -- transactions ------------------------------------------------------------

def do_transaction_start(d, s, view, payload, events):
    if view.in_transaction:
        raise XenstoreError("EBUSY", "transactions do not nest")
    d.quotas.check(s, "transactions", len(s.transactions) + 1, "ENOSPC")
    tx_id = s.next_tx_id
    while tx_id == 0 or tx_id in s.transactions:     # ids wrap through uint32 (XSA-420)
        tx_id = (tx_id + 1) & 0xFFFFFFFF
    s.next_tx_id = (tx_id + 1) & 0xFFFFFFFF
    s.transactions[tx_id] = transaction_type(d.store)(d.store, tx_id, transaction_node_limit(d, s))
    return b"%d\0" % tx_id


def transaction_node_limit(d, s):
    """What bounds the nodes a transaction of ``s`` touches (transactions.py): the
    transaction-nodes quota as it stands at each new node, as C xenstored reads it; dom0 none."""
    if s.privileged:
        return None
    return lambda: d.quotas.limit(s, "transaction-nodes")


def adopt_lost_transaction(d, s, tx_id: int):
    """A transaction the daemon before a restart gave this guest (``Session.
    tx_from_before_restart``; guest.py when it re-attaches the ring): it comes back doomed, so the guest's
    TRANSACTION_END answers EAGAIN and the guest retries, as after a live update, instead
    of ENOENT for an id it was given.  Counted against the quota like any transaction."""
    d.quotas.check(s, "transactions", len(s.transactions) + 1, "ENOENT")
    tx = s.transactions[tx_id] = transaction_type(d.store).doomed(
        d.store, tx_id, transaction_node_limit(d, s))
    return tx


def do_transaction_end(d, s, view, payload, events):
    if not view.in_transaction:
        raise XenstoreError("ENOENT", "not in a transaction")
    fields = split_fields(payload)
    if fields not in ([b"T"], [b"F"]):
        raise XenstoreError("EINVAL", "TRANSACTION_END takes T or F")
    del s.transactions[view.id]
    if fields[0] == b"T":
        view.commit()
        events.extend(view.events)     # merged: one per node, first-touch order (transactions.py)
    return OK


# -- domains -----------------------------------------------------------------

def do_introduce(d, s, view, payload, events):
    fields = split_fields(payload)
    if len(fields) < 3:
        raise XenstoreError("EINVAL", "INTRODUCE needs domid, mfn and event channel")
    domid, mfn, port = decimal(fields[0]), decimal(fields[1], U64_MAX), decimal(fields[2])
    if d.domains.introduce(domid, mfn, port):
        d.state_changed()
        events.append((SPECIAL, paths.INTRODUCE_DOMAIN))
    return OK


def do_release(d, s, view, payload, events):
    (domid,) = _domid_arg(payload)
    d.domains.release(domid)
    d.forget_domain(domid, events)
    log.info("domain %d released (RELEASE from %s)", domid, s.name)
    return OK


def do_resume(d, s, view, payload, events):
    (domid,) = _domid_arg(payload)
    if domid == 0:
        raise XenstoreError("EINVAL", "cannot resume domain 0")
    domain = d.domains.get(domid)
    if domain is None:
        raise XenstoreError("ENOENT", f"domain {domid} not introduced")
    domain.shutdown_seen = False
    d.state_changed()
    return OK


def do_set_target(d, s, view, payload, events):
    domid, target = _domid_arg(payload, 2)
    domain = d.domains.get(domid)
    if domain is None or not d.domains.is_introduced(target):
        raise XenstoreError("ENOENT", "domain not introduced")
    domain.target = target
    d.retarget(domid, target)
    d.state_changed()
    return OK


def do_is_domain_introduced(d, s, view, payload, events):
    (domid,) = _domid_arg(payload)
    return b"T\0" if d.domains.is_introduced(domid) else b"F\0"


def do_get_domain_path(d, s, view, payload, events):
    (domid,) = _domid_arg(payload)
    return paths.domain_home(domid).encode("ascii") + b"\0"


def do_get_feature(d, s, view, payload, events):
    fields = split_fields(payload)
    if len(fields) > 1:
        raise XenstoreError("EINVAL", "GET_FEATURE takes at most a domid")
    if not fields:
        domain = d.domains.get(s.domid)
        features = domain.features if domain is not None else d.domains.supported_features
    else:
        if not s.privileged:
            raise XenstoreError("EACCES", "only dom0 asks about other domains")
        domid = decimal(fields[0])
        domain = d.domains.get(domid)
        if domain is not None:
            features = domain.features
        elif domid == 0 or d.domain_exists(domid):
            features = d.domains.pending_features.get(domid, d.domains.supported_features)
        else:
            raise XenstoreError("ENOENT", f"no domain {domid}")
    return b"%d\0" % features


def do_set_feature(d, s, view, payload, events):
    domid, value = _domid_arg(payload, 2)
    if d.domains.is_introduced(domid):
        raise XenstoreError("EBUSY", "features are fixed once a domain is introduced")
    if not d.domain_exists(domid):
        raise XenstoreError("ENOENT", f"no domain {domid}")
    if value & ~d.domains.supported_features:
        raise XenstoreError("EINVAL", "feature not supported")
    d.domains.pending_features[domid] = value
    d.state_changed()
    return OK


def _quota_domain(d, raw: bytes) -> int:
    domid = decimal(raw)
    if not (d.domains.is_introduced(domid) or d.domain_exists(domid)):
        raise XenstoreError("ENOENT", f"no domain {domid}")
    return domid


def do_get_quota(d, s, view, payload, events):
    """``[[<domid>|]<quota>|]``: with no argument, the names of all quotas."""
    fields = split_fields(payload)
    if len(fields) > 2:
        raise XenstoreError("EINVAL", "too many arguments")
    if not fields:
        return " ".join(d.quotas.values).encode("ascii") + b"\0"
    domid = _quota_domain(d, fields[0]) if len(fields) == 2 else None
    name = fields[-1].decode("ascii", "replace")
    return b"%d\0" % d.quotas.get(name, domid)


def do_set_quota(d, s, view, payload, events):
    """``[<domid>|]<quota>|<value>|``."""
    fields = split_fields(payload)
    if len(fields) not in (2, 3):
        raise XenstoreError("EINVAL", "expected [domid] quota value")
    domid = _quota_domain(d, fields[0]) if len(fields) == 3 else None
    name = fields[-2].decode("ascii", "replace")
    d.quotas.set(name, decimal(fields[-1]), domid)
    d.state_changed()
    return OK


# -- control -----------------------------------------------------------------

def do_control(d, s, view, payload, events):
    from .control import run_control
    fields = split_fields(payload)
    if not fields:
        raise XenstoreError("EINVAL", "CONTROL needs a command")
    return run_control(d, s, fields)


# Not a request a client may send: ERROR, WATCH_EVENT, RESTRICT (removed) -> ENOSYS.
def do_not_supported(d, s, view, payload, events):
    raise XenstoreError("ENOSYS", "not a request")
