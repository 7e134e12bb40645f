"""The sockets' C poller (xsd/transport/poller.py, xsd/_native/poller.h) in a real daemon.

The C-level contract (socket pairs, every kind, the waiting list) is
tests/native/c/test_poller.c under the sanitizers; here: that a real daemon's
socket clients are served by it, in memory and journaling, that they get exactly
what the same daemon sends with every socket's bytes going through Python
(``--python-poll``), and that a journaled reply is never seen before its record.
"""
import math

import pytest

from tests.daemon.test_engine_events import FIRST_WATCHES, run, watch_script
from tests.wire import RawClient
from xenstore_protocol import Op

MODES = {"in memory": ("--no-persist",), "journaling": ()}


def poller_batches(proc) -> int:
    with RawClient(proc.socket_path, timeout=10) as client:
        return int(client.memreport().get("c-poller-batches", 0))


def warmed_up(proc, xs) -> int:
    """A few writes first: the first batches of a connection are its transport's (the
    poller takes over from the next loop turn), and a daemon starting its journal writes a
    snapshot, during which every batch goes through the pump.  -> the poller's count then."""
    for i in range(10):
        xs.ok(Op.WRITE, payload=b"/warm/%d\0" % i)
    return poller_batches(proc)


@pytest.mark.parametrize("mode", MODES, ids=list(MODES))
def test_a_plain_clients_batches_are_the_pollers(daemon_factory, mode):
    """Writes, reads and listings of one client, each batch answered and written by the
    poller (its count moves with them), the answers right; with --python-poll none is."""
    polled = daemon_factory(*MODES[mode], name="polled")
    through_python = daemon_factory(*MODES[mode], "--python-poll", name="python")
    for proc in (polled, through_python):
        with RawClient(proc.socket_path, timeout=10) as xs:
            before = warmed_up(proc, xs)
            for i in range(40):
                xs.ok(Op.WRITE, payload=b"/p/%d\0v%d" % (i, i))
                assert xs.ok(Op.READ, b"/p/%d" % i) == b"v%d" % i
            assert xs.ok(Op.DIRECTORY, b"/p").count(b"\0") == 40
        after = poller_batches(proc)
        if proc is polled:
            assert after - before >= 70, (before, after)    # nearly all of the 81
        else:
            assert after == before == 0


def test_every_client_gets_what_it_gets_through_python(daemon_factory):
    """The watch script of test_engine_events (watches added and dropped between changes
    that fire them; the writer's batches in one send, guests on their rings), played on a
    journaling daemon with the poller and on one reading every socket through Python:
    every connection gets the same packets in the same order."""
    steps = watch_script(seed=17)
    polled = run(daemon_factory(name="polled"), steps, FIRST_WATCHES)
    through_python = run(daemon_factory("--python-poll", name="python"), steps, FIRST_WATCHES)
    for name in polled:
        assert polled[name] == through_python[name], name
    assert sum(len(p) for p in polled.values()) > 500


def test_a_journaled_reply_is_seen_only_once_its_record_is_written(daemon_factory):
    """The poller holds a journaled write's reply until the commit: a client that has its
    reply finds the node after the daemon is killed (no clean stop) and started again."""
    proc = daemon_factory(name="journal")
    with RawClient(proc.socket_path, timeout=10) as xs:
        before = warmed_up(proc, xs)
        for i in range(30):
            xs.ok(Op.WRITE, payload=b"/kept/%d\0v" % i)
        assert poller_batches(proc) - before >= 25       # nearly all of the 30
        proc.kill()             # SIGKILL: nothing written after the last reply
    proc.start()
    with RawClient(proc.socket_path, timeout=10) as xs:
        assert xs.ok(Op.DIRECTORY, b"/kept").count(b"\0") == 30


def test_with_metrics_the_pollers_requests_are_timed_as_pythons(daemon_factory, tmp_path):
    """--metrics: the poller times one request in SAMPLE_EVERY of those it answers, on one
    count with Python's, so the scrape's latency samples are exactly one in SAMPLE_EVERY of
    every request; and the poller serves such a daemon's clients."""
    from tests.operators.conftest import http_get, samples
    from xsd.core.stats import SAMPLE_EVERY
    metrics = str(tmp_path / "m.sock")
    proc = daemon_factory("--metrics", metrics, name="metrics")
    with RawClient(proc.socket_path, timeout=10) as xs:
        before = warmed_up(proc, xs)
        for i in range(100):
            xs.ok(Op.WRITE, payload=b"/m/%d\0v" % i)
            xs.ok(Op.READ, b"/m/%d" % i)
        assert poller_batches(proc) - before >= 180
    m = samples(http_get(metrics)[2])
    requests = sum(v for k, v in m.items() if k.startswith("xsd_requests_total{"))
    timed = sum(v for k, v in m.items() if k.startswith("xsd_request_latency_seconds_count{"))
    assert requests > 200
    assert timed == math.ceil(requests / SAMPLE_EVERY)
    assert m['xsd_request_latency_seconds_count{type="READ"}'] >= 100 // SAMPLE_EVERY
