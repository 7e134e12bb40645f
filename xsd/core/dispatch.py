"""Request dispatch: one table from Op to handler and flags.

Checks common to all requests are written once here, as in C xenstored's
wire_funcs table: privilege (EACCES), read-only socket (EROFS), transaction
lookup (ENOENT).  Every refusal becomes an ERROR reply; any other exception
is our bug: logged with its traceback and answered EIO, and the daemon lives.
"""
import logging
from time import perf_counter

from xenstore_protocol import Op, XenstoreError
from xenstore_protocol.constants import HEADER

from . import ops
from .stats import SAMPLE_EVERY

log = logging.getLogger("xsd.dispatch")

PRIV = 1          # dom0 / privileged callers only
MUTATES = 2       # refused on the read-only socket
USES_TX = 4       # runs inside the transaction named by tx_id
REPLY_FIRST = 8   # the reply precedes the events it causes (WATCH's initial event)

_ENTRIES = {
    Op.CONTROL: (ops.do_control, PRIV),
    Op.DIRECTORY: (ops.do_directory, USES_TX),
    Op.READ: (ops.do_read, USES_TX),
    Op.GET_PERMS: (ops.do_get_perms, USES_TX),
    Op.WATCH: (ops.do_watch, REPLY_FIRST),
    Op.UNWATCH: (ops.do_unwatch, 0),
    Op.TRANSACTION_START: (ops.do_transaction_start, USES_TX),
    Op.TRANSACTION_END: (ops.do_transaction_end, USES_TX),
    Op.INTRODUCE: (ops.do_introduce, PRIV | MUTATES),
    Op.RELEASE: (ops.do_release, PRIV | MUTATES),
    Op.GET_DOMAIN_PATH: (ops.do_get_domain_path, 0),
    Op.WRITE: (ops.do_write, MUTATES | USES_TX),
    Op.MKDIR: (ops.do_mkdir, MUTATES | USES_TX),
    Op.RM: (ops.do_rm, MUTATES | USES_TX),
    Op.SET_PERMS: (ops.do_set_perms, MUTATES | USES_TX),
    Op.WATCH_EVENT: (ops.do_not_supported, 0),
    Op.ERROR: (ops.do_not_supported, 0),
    Op.IS_DOMAIN_INTRODUCED: (ops.do_is_domain_introduced, 0),
    Op.RESUME: (ops.do_resume, PRIV | MUTATES),
    Op.SET_TARGET: (ops.do_set_target, PRIV | MUTATES),
    Op.RESTRICT: (ops.do_not_supported, 0),
    Op.RESET_WATCHES: (ops.do_reset_watches, 0),
    Op.DIRECTORY_PART: (ops.do_directory_part, USES_TX),
    Op.GET_FEATURE: (ops.do_get_feature, 0),
    Op.SET_FEATURE: (ops.do_set_feature, PRIV | MUTATES),
    Op.GET_QUOTA: (ops.do_get_quota, PRIV),
    Op.SET_QUOTA: (ops.do_set_quota, PRIV | MUTATES),
}
TABLE = [_ENTRIES.get(op) for op in range(max(_ENTRIES) + 1)]
NAMES = {int(op): op.name for op in _ENTRIES}

_ERROR = int(Op.ERROR)


def error_packet(req_id: int, tx_id: int, name: str) -> bytes:
    payload = name.encode("ascii") + b"\0"
    return HEADER.pack(_ERROR, req_id, tx_id, len(payload)) + payload


def handle(d, s, packet) -> None:
    """Answer one request on session ``s``; fire the watch events it causes.  Counted
    (stats.py); while the daemon measures latency (--metrics), one request in
    ``stats.SAMPLE_EVERY`` is timed: two clock reads and a histogram update cost a
    tenth of a request, a countdown almost nothing."""
    stats = d.stats
    countdown = stats.countdown
    if countdown:
        stats.countdown = countdown - 1     # -1 (not timing) counts on below zero, never to it
        _handle(d, s, packet)
    else:
        stats.countdown = SAMPLE_EVERY - 1
        started = perf_counter()
        _handle(d, s, packet)
        stats.observe(packet[0], perf_counter() - started)


def _handle(d, s, packet) -> None:
    op, req_id, tx_id, payload = packet
    try:
        entry = TABLE[op] if op < len(TABLE) else None
        if entry is None:
            raise XenstoreError("ENOSYS", f"unknown message type {op}")
        handler, flags = entry
        if flags & PRIV and not s.privileged:
            raise XenstoreError("EACCES", "privileged request")
        if flags & MUTATES and s.read_only:
            raise XenstoreError("EROFS", "read-only socket")
        view = d.store
        if flags & USES_TX and tx_id:
            view = s.transactions.get(tx_id)
            if view is None:
                if not s.tx_from_before_restart(tx_id):
                    raise XenstoreError("ENOENT", f"no transaction {tx_id}")
                view = ops.adopt_lost_transaction(d, s, tx_id)
        events = []
        reply = handler(d, s, view, payload, events)
    except XenstoreError as err:
        s.counters.error(op, err.name)
        if d.access_log:
            log.info("%r %s %r -> %s", s, NAMES.get(op, op), payload[:80], err)
        s.send(error_packet(req_id, tx_id, err.name))
        return
    except Exception:
        log.exception("%r: internal error on %s %r", s, NAMES.get(op, op), payload[:80])
        s.counters.error(op, "EIO")
        s.send(error_packet(req_id, tx_id, "EIO"))
        return
    s.counters.requests[op] += 1
    if d.access_log:
        log.info("%r %s %r -> ok", s, NAMES.get(op, op), payload[:80])
    data = HEADER.pack(op, req_id, tx_id, len(reply)) + reply
    if events and view is not d.store and op != Op.TRANSACTION_END:
        view.events.extend(events)     # held until the transaction commits
        events = ()
    if flags & REPLY_FIRST:
        s.send(data)
        _fire(d, s, op, events)
    else:
        # C xenstored queues the events a request causes before its reply.
        if events:
            _fire(d, s, op, events)
        s.send(data)


def _fire(d, s, op, events) -> None:
    """The change is made and will be acknowledged: a failure here is only logged."""
    try:
        d.fire(events)
    except Exception:
        log.exception("%r: internal error firing watches for %s", s, NAMES.get(op, op))
