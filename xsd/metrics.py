"""Prometheus metrics (``xsd --metrics ADDR``): read from the daemon's state at scrape time.

Nothing here runs per request.  The request path counts in plain ints
(``core/stats.py``); this module is a prometheus_client custom Collector that
turns those counts and the daemon's existing state (store, sessions, domains,
quotas, journal) into metric families when a scraper asks.

The HTTP endpoint is served from the daemon's own asyncio loop, not from a
thread: a scrape then reads the daemon's dicts and sets between two requests,
never while one is half done, with no lock on the request path and no thread
contending for the GIL while requests are handled.  Its cost is one scrape's
collection (proportional to sessions and domains, and one pass over the nodes
for the bytes each domain owns) at the scraper's rate, typically every few
seconds.  A scrape connection may send at most ``MAX_REQUEST`` bytes of
request head and must send it within ``READ_TIMEOUT`` seconds, and at most ``MAX_CLIENTS`` may be open at once, so idle scrapers
cannot use up the daemon's descriptors.
"""
import asyncio
import logging
import os

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.process_collector import ProcessCollector



from .core import stats

log = logging.getLogger("xsd.metrics")

# generate_latest writes the classic text format; Prometheus 2.x (Debian's) negotiates it
# by this type, whatever newer default the client library advertises.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST = 8192
READ_TIMEOUT = 5.0
MAX_CLIENTS = 16        # scrape connections at once; more are closed unanswered

def parse_address(text: str):
    """``HOST:PORT`` (``[v6]:PORT`` too) -> ("tcp", host, port); a path with a "/" -> ("unix", path).
    Raises ValueError with a message fit for the command line."""
    if "/" in text:
        return ("unix", text)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: expected HOST:PORT (e.g. 127.0.0.1:9101) or a socket path")
    return ("tcp", host.strip("[]"), int(port))


_BOUNDS = [str(b) for b in stats.LATENCY_BOUNDS] + ["+Inf"]


def _buckets(counts) -> list:
    """Per-bucket counts (stats.LATENCY_BOUNDS, then +Inf) as Prometheus's cumulative pairs."""
    cumulative, buckets = 0, []
    for bound, count in zip(_BOUNDS, counts):
        cumulative += count
        buckets.append((bound, cumulative))
    return buckets


def connection_kind(session) -> str:
    """socket, socket-ro or guest-ring (only a guest's ring session journals its watches)."""
    if session.journal_watches:
        return "guest-ring"
    return "socket-ro" if session.read_only else "socket"


class DaemonCollector:
    """A prometheus_client Collector over a ``core.daemon.Daemon``."""

    def __init__(self, daemon, restored_by_live_update: bool = False):
        self.daemon = daemon
        self.restored = restored_by_live_update

    def describe(self):
        return []       # no registration-time collection: the daemon may not be serving yet

    def collect(self):
        d = self.daemon
        yield from self._requests(d)
        yield from self._domains(d)
        yield from self._events_and_connections(d)
        yield from self._durability(d)

    def _requests(self, d):
        per_domain = stats.per_domain(d)
        total = stats.Counters()
        for counters in per_domain.values():
            total.add(counters)
        requests = CounterMetricFamily("xsd_requests", "Requests answered, by type and outcome "
                                       "(ok, or the xenstore error returned)",
                                       labels=("type", "outcome"))
        for op, count in enumerate(total.requests):
            if count:
                requests.add_metric((stats.op_name(op), "ok"), count)
        for (op, name), count in sorted(total.errors.items()):
            requests.add_metric((stats.op_name(op), name), count)
        yield requests
        by_domain = CounterMetricFamily("xsd_domain_requests", "Requests answered, by domain",
                                        labels=("domid",))
        refused = CounterMetricFamily("xsd_domain_quota_refusals", "Requests refused by a "
                                      "quota, by domain and quota", labels=("domid", "quota"))
        dropped = CounterMetricFamily("xsd_domain_watch_events_dropped", "Watch events dropped "
                                      "for a client not reading, by domain", labels=("domid",))
        for domid, counters in sorted(per_domain.items()):
            label = str(domid)
            by_domain.add_metric((label,), sum(counters.requests) + sum(counters.errors.values()))
            for quota, count in sorted(counters.refused.items()):
                refused.add_metric((label, quota), count)
            dropped.add_metric((label,), counters.events_dropped)
        yield by_domain
        yield refused
        yield dropped
        for name, value in (("fired", total.events_sent), ("coalesced", total.events_coalesced),
                            ("dropped", total.events_dropped)):
            yield CounterMetricFamily(f"xsd_watch_events_{name}",
                                      f"Watch events {name}" + {
                                          "fired": " (queued for their clients)",
                                          "coalesced": " (identical to one still waiting)",
                                          "dropped": " (client not reading; it gets one "
                                                     "catch-up event per watch)"}[name],
                                      value=value)
        latency = HistogramMetricFamily("xsd_request_latency_seconds", "Time to handle a "
                                        f"request, by type (a sample: one request in "
                                        f"{stats.SAMPLE_EVERY})",
                                        labels=("type",))
        for op, counts in sorted(d.stats.latency.items()):
            latency.add_metric((stats.op_name(op),), _buckets(counts), d.stats.latency_sum[op])
        yield latency

    def _domains(self, d):
        rows = stats.domain_rows(d)
        gauges = {
            name: GaugeMetricFamily(f"xsd_domain_{name}", help_text, labels=("domid",))
            for name, help_text in (
                ("nodes", "Nodes the domain owns"),
                ("watches", "Watches the domain's connections hold"),
                ("transactions", "Transactions the domain has open"),
                ("node_memory_bytes", "Bytes the nodes the domain owns are charged against its "
                                      "memory quota: 40 + path + value + 8 per permission each"))}
        limits = GaugeMetricFamily("xsd_domain_quota_limit", "A quota binding the domain "
                                   "(0: none, as for dom0)", labels=("domid", "quota"))
        for row in rows:
            label = str(row["domid"])
            for name in ("nodes", "watches", "transactions"):
                gauges[name].add_metric((label,), row["quota"][name]["used"])
                limits.add_metric((label, name), row["quota"][name]["limit"])
            gauges["node_memory_bytes"].add_metric((label,), row["node_memory"])
        yield from gauges.values()
        yield limits
        yield GaugeMetricFamily("xsd_domains", "Domains introduced by the toolstack (dom0 not among them)",
                                value=len(d.domains.domains))
        yield GaugeMetricFamily("xsd_nodes", "Nodes in the store", value=len(d.store))
        yield GaugeMetricFamily("xsd_watches", "Watches registered", value=len(d.watches))

    def _events_and_connections(self, d):
        kinds = {"socket": 0, "socket-ro": 0, "guest-ring": 0}
        for session in list(d.sessions):
            kinds[connection_kind(session)] += 1
        connections = GaugeMetricFamily("xsd_connections", "Open connections, by kind",
                                        labels=("kind",))
        for kind, count in kinds.items():
            connections.add_metric((kind,), count)
        yield connections

    def _durability(self, d):
        yield CounterMetricFamily("xsd_live_updates", "Live updates started by this process",
                                  value=d.stats.live_updates)
        yield GaugeMetricFamily("xsd_live_update_restored", "1 if this process took over from "
                                "another by live update", value=1 if self.restored else 0)
        flush = HistogramMetricFamily("xsd_flush_duration_seconds", "Time to hand a batch's "
                                      "output on, journal write and fsync included "
                                      "(measured while --metrics is on)")
        flush.add_metric((), _buckets(d.stats.flush_buckets), d.stats.flush_sum)
        yield flush
        persist = d.persist
        if persist is None:
            return
        p = persist.statistics()
        yield GaugeMetricFamily("xsd_journal_bytes", "Bytes in the journal since the last "
                                "snapshot", value=p["journal-bytes"])
        yield GaugeMetricFamily("xsd_snapshot_bytes", "Bytes of the last snapshot",
                                value=p["snapshot-bytes"])
        yield CounterMetricFamily("xsd_snapshots", "Snapshots written by this process",
                                  value=p["snapshots"])
        yield GaugeMetricFamily("xsd_snapshot_last_duration_seconds", "Time the last snapshot "
                                "took to write", value=persist.last_snapshot_seconds)
        yield GaugeMetricFamily("xsd_fsync_seconds_average", "Moving average of the journal's "
                                "fsync time", value=persist.fsync_seconds)


def make_registry(daemon, restored_by_live_update: bool = False) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon, restored_by_live_update))
    ProcessCollector(registry=registry)     # process_resident_memory_bytes, open fds, cpu
    return registry


class MetricsServer:
    """A minimal HTTP/1.0 responder for ``GET /metrics`` on the daemon's loop."""

    def __init__(self, daemon, address: str, restored_by_live_update: bool = False):
        self.address = parse_address(address)
        self.registry = make_registry(daemon, restored_by_live_update)
        self.server = None
        self.clients = 0

    async def start(self) -> None:
        """Listen; raise OSError when the address cannot be bound."""
        if self.address[0] == "unix":
            path = self.address[1]
            if os.path.exists(path):
                os.unlink(path)
            self.server = await asyncio.start_unix_server(self._serve, path, limit=MAX_REQUEST)
        else:
            _, host, port = self.address
            self.server = await asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST)
        log.info("metrics on %s", self.describe())

    def describe(self) -> str:
        if self.address[0] == "unix":
            return self.address[1]
        host, port = self.address[1], self.address[2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
            if self.address[0] == "unix":
                try:
                    os.unlink(self.address[1])
                except FileNotFoundError:
                    pass

    async def _serve(self, reader, writer) -> None:
        if self.clients >= MAX_CLIENTS:
            writer.close()
            return
        self.clients += 1
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, ConnectionError):
                return
            method, _, rest = head.partition(b" ")
            target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                self._respond(writer, b"405 Method Not Allowed", b"text/plain", b"GET only\n")
            elif target not in (b"/metrics", b"/"):
                self._respond(writer, b"404 Not Found", b"text/plain", b"try /metrics\n")
            else:
                body = generate_latest(self.registry)
                self._respond(writer, b"200 OK", CONTENT_TYPE,
                              b"" if method == b"HEAD" else body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.clients -= 1
            writer.close()

    @staticmethod
    def _respond(writer, status: bytes, content_type: bytes, body: bytes) -> None:
        writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: " + content_type +
                     b"\r\nContent-Length: " + str(len(body)).encode() +
                     b"\r\nConnection: close\r\n\r\n" + body)
