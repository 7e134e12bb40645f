"""What the request path has done, counted in plain ints, and read at leisure.

Counting must cost the request path nothing measurable, so nothing here is
called per request beyond an integer increment: dispatch bumps
``Counters.requests[op]`` (a list indexed by message type), an error bumps a
small dict, ``Session.queue_event`` bumps its own ints.  Everything else (sums
per domain, quota fill, the Prometheus exposition in ``xsd/metrics.py``, the
``CONTROL stats`` text that ``xenstore-top`` reads) is computed when someone
asks, from these counters and the daemon's existing state.

Latency is the one exception: it needs two clock reads and a histogram update,
about a tenth of a request's own cost, so it is measured only while metrics are
on (``Stats.start_timing``), and then on one request in ``SAMPLE_EVERY``
(dispatch.handle counts down), into fixed buckets (``LATENCY_BOUNDS``).

A session's counters outlive it: on close they are added to its domain's
``retired`` totals, so a domain's counts only ever grow (Prometheus counters
must not go back) until the domain is released.
"""
import json
import logging
from bisect import bisect_left

from xenstore_protocol import PAYLOAD_MAX, Op, XenstoreError

log = logging.getLogger("xsd.stats")

# Counted per message type; XS_INVALID (0xffff) is a marker, never a request answered OK.
N_OPS = max(int(op) for op in Op if op != Op.INVALID) + 1

SAMPLE_EVERY = 16      # with --metrics, one request in this many is timed

# Upper bounds (seconds) of the latency buckets; the last bucket is +Inf.
LATENCY_BOUNDS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                  0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)


class Counters:
    """One session's (or a retired domain's) counts."""
    __slots__ = ("requests", "errors", "refused", "events_sent", "events_coalesced",
                 "events_dropped")

    def __init__(self):
        self.requests = [0] * N_OPS      # answered OK, by message type
        self.errors = {}                 # (op, error name) -> count
        self.refused = {}                # quota name -> requests refused by it
        self.events_sent = 0
        self.events_coalesced = 0
        self.events_dropped = 0

    def error(self, op: int, name: str) -> None:
        key = (op, name)
        self.errors[key] = self.errors.get(key, 0) + 1

    def refuse(self, quota: str) -> None:
        self.refused[quota] = self.refused.get(quota, 0) + 1

    def add(self, other: "Counters") -> None:
        mine = self.requests
        for op, count in enumerate(other.requests):
            if count:
                mine[op] += count
        for key, count in other.errors.items():
            self.errors[key] = self.errors.get(key, 0) + count
        for key, count in other.refused.items():
            self.refused[key] = self.refused.get(key, 0) + count
        self.events_sent += other.events_sent
        self.events_coalesced += other.events_coalesced
        self.events_dropped += other.events_dropped


def _fold_native(session, c: Counters) -> None:
    """Add what the C request path answered for ``session`` since the last fold (fastpath.py)."""
    counted = session.native_counted
    if counted is None:
        counted = session.native_counted = {}
    conn = session.native
    for op in conn.COUNTED_OPS:
        n = conn.requests(op)
        delta = n - counted.get(op, 0)
        if delta:
            c.requests[op] += delta
            counted[op] = n


def session_counters(session) -> Counters:
    """A session's counters, its events included (Session keeps those itself)."""
    c = session.counters
    c.events_sent = session.events_sent
    if session.native is not None:
        _fold_native(session, c)
        c.events_sent += session.native.events_written()    # those the C poller wrote
    c.events_coalesced = session.events_coalesced
    c.events_dropped = session.events_dropped
    return c


class Stats:
    """The daemon's counters: retired sessions' totals, latency, and logged summaries."""

    def __init__(self):
        self.retired = {}            # domid -> Counters of its closed sessions
        self.timed = False           # measure latency and flush time (--metrics on)
        self.countdown = -1          # dispatch: requests until the next timed one; -1: never
        self.latency = {}            # op -> [count per bucket] (len(LATENCY_BOUNDS) + 1)
        self.latency_sum = {}        # op -> seconds
        self.flush_buckets = [0] * (len(LATENCY_BOUNDS) + 1)    # Daemon.flush, while timed
        self.flush_sum = 0.0
        self.live_updates = 0        # started by this process
        self._logged = {}            # (domid, quota) -> refusals already summarised

    def start_timing(self) -> None:
        self.timed = True
        self.countdown = 0

    def observe(self, op: int, seconds: float) -> None:
        buckets = self.latency.get(op)
        if buckets is None:
            buckets = self.latency[op] = [0] * (len(LATENCY_BOUNDS) + 1)
            self.latency_sum[op] = 0.0
        buckets[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.latency_sum[op] += seconds

    def observe_flush(self, seconds: float) -> None:
        self.flush_buckets[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.flush_sum += seconds

    def retire(self, session) -> None:
        """``session`` closed: keep its counts under its domain."""
        totals = self.retired.get(session.domid)
        if totals is None:
            totals = self.retired[session.domid] = Counters()
        totals.add(session_counters(session))

    def forget(self, domid: int) -> None:
        """The domain is released: its counts go with it (a reused domid starts at 0)."""
        self.retired.pop(domid, None)
        for key in [k for k in self._logged if k[0] == domid]:
            del self._logged[key]


def per_domain(d) -> dict:
    """domid -> Counters summed over the domain's live and closed sessions."""
    out = {}
    for domid, retired in d.stats.retired.items():
        total = out[domid] = Counters()
        total.add(retired)
    for session in list(d.sessions):
        total = out.get(session.domid)
        if total is None:
            total = out[session.domid] = Counters()
        total.add(session_counters(session))
    return out


def domain_rows(d) -> list:
    """One dict per domain (dom0 and every introduced domain, plus any with counts):
    cumulative requests by type, errors, quota refusals, events, and usage against quota."""
    counters = per_domain(d)
    domids = set(counters) | set(d.domains.domains) | {0}
    quotas = d.quotas
    sessions = {}
    for s in list(d.sessions):
        sessions.setdefault(s.domid, []).append(s)
    rows = []
    for domid in sorted(domids):
        c = counters.get(domid) or Counters()
        mine = sessions.get(domid, [])
        usage = {"nodes": d.store.owned_by(domid),        # as Daemon.usage, sessions grouped
                 "watches": sum(len(s.watches) for s in mine),
                 "transactions": sum(len(s.transactions) for s in mine)}
        quota = {}
        privileged = domid == 0 or not mine or all(s.privileged for s in mine)
        for name in ("nodes", "watches", "transactions"):
            limit = 0 if privileged else quotas.get(name, domid)
            quota[name] = {"used": usage.get(name, 0), "limit": limit}
        rows.append({
            "domid": domid,
            "connections": len(mine),
            "requests": {Op(op).name: n for op, n in enumerate(c.requests)
                         if n and op in _OP_VALUES},
            "errors": _errors_by_name(c.errors),
            "refused": dict(c.refused),
            "events": {"sent": c.events_sent, "coalesced": c.events_coalesced,
                       "dropped": c.events_dropped},
            # What its nodes are charged against the memory quota (quota.memory_of_node),
            # kept by the store as nodes come and go: no walk of the tree per scrape.
            "node_memory": d.store.bytes_of(domid),
            "quota": quota,
        })
    return rows


_OP_VALUES = frozenset(int(op) for op in Op)


def op_name(op: int) -> str:
    """A message type's name in xs_wire.h, or its number when it has none."""
    return Op(op).name if op in _OP_VALUES else str(op)


def _errors_by_name(errors: dict) -> dict:
    out = {}
    for (op, name), count in errors.items():
        key = f"{op_name(op)}:{name}"
        out[key] = out.get(key, 0) + count
    return out


def control_text(d, first_domid: int = 0) -> str:
    """``CONTROL stats [<domid>]``: the rows of domains from ``first_domid`` on, as many as
    fit in one reply (PAYLOAD_MAX, as DIRECTORY_PART pages), as one JSON object;
    ``"next"`` is the domid to ask for next, or null at the end (xenstore-top reads it)."""
    room = PAYLOAD_MAX - 64          # the envelope, the "next" field and the final NUL
    rows, used, following = [], 0, None
    for row in domain_rows(d):
        if row["domid"] < first_domid:
            continue
        text = json.dumps(row, separators=(",", ":"), sort_keys=True)
        if used + len(text) + 1 > room:
            following = row["domid"]
            break
        rows.append(text)
        used += len(text) + 1
    if not rows and following is not None:
        raise XenstoreError("E2BIG", f"dom{following}'s row does not fit in a reply")
    nxt = "null" if following is None else str(following)
    return '{"domains":[' + ",".join(rows) + '],"next":' + nxt + "}"


def log_summaries(d) -> None:
    """Once per interval (the server's timer): one line per domain whose requests were
    refused by a quota since the last summary, and one per connection that dropped
    watch events (session.py logs the first drop at once, then only these)."""
    stats = d.stats
    for domid, c in sorted(per_domain(d).items()):
        fresh = {}
        for quota, count in c.refused.items():
            before = stats._logged.get((domid, quota), 0)
            if count > before:
                fresh[quota] = count - before
                stats._logged[(domid, quota)] = count
        if fresh:
            log.warning("dom%d: %d requests refused by quota since the last summary (%s)",
                        domid, sum(fresh.values()),
                        ", ".join(f"{q} {n}" for q, n in sorted(fresh.items())))
    for session in list(d.sessions):
        unlogged = session.events_dropped - session.drops_logged
        if unlogged > 0:
            session.drops_logged = session.events_dropped
            log.warning("%r: %d watch events dropped since the last summary (%d in all): "
                        "the client is not reading", session, unlogged, session.events_dropped)
