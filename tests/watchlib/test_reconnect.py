"""Reconnect: kill and restart the real daemon under live subscriptions."""
import threading

import pytest

from watchlib import Client, Disconnected, Resync

from .conftest import wait_for


def _restart(daemon):
    daemon.stop()
    daemon.start()


def test_resync_after_daemon_restart_then_events_flow_again(daemon, client, collect):
    client.watch("/r", collect, initial=False)
    client.watch("/q/*/x", collect, initial=False)
    client.write("/r/before", b"")
    client.sync()
    _restart(daemon)
    wait_for(lambda: len(collect.of_type(Resync)) == 2, what="two Resync items")
    client.write("/r/after", b"")
    client.write("/q/1/x", b"")
    client.sync()
    assert collect.paths() == ["/r/before", "/r/after", "/q/1/x"]
    assert {r.subscription.pattern for r in collect.of_type(Resync)} == {"/r", "/q/*/x"}
    assert client.reconnects == 1


def test_no_silent_loss_across_a_restart(daemon, client):
    """A write made while the client reconnects is either delivered as an
    event or visible to the re-read the subscriber does on Resync."""
    seen_by_reread = []
    events = []

    def cb(item):
        if isinstance(item, Resync):
            seen_by_reread.append(client.exists("/nl/during"))
        elif not item.initial:
            events.append(item.path)

    client.watch("/nl", cb)
    client.sync()
    _restart(daemon)
    with Client(daemon.socket_path) as writer:
        writer.write("/nl/during", b"x")     # races with watchlib's reconnect
    wait_for(lambda: seen_by_reread, what="Resync delivered")
    client.sync()
    assert seen_by_reread == [True] or "/nl/during" in events


def test_kill_9_is_survived_too(daemon, client, collect):
    client.watch("/k9", collect, initial=False)
    client.sync()
    daemon.kill()
    daemon.start()
    wait_for(lambda: collect.of_type(Resync), what="Resync")
    client.write("/k9/x", b"")
    client.sync()
    assert collect.paths() == ["/k9/x"]


def test_requests_wait_for_the_reconnection(daemon, client):
    client.write("/w/x", b"1")
    daemon.stop()
    result = []
    t = threading.Thread(target=lambda: result.append(client.exists("/")))
    t.start()
    daemon.start()
    t.join(20)
    assert result == [True]


def test_transaction_across_a_restart_raises_disconnected(daemon, client):
    with pytest.raises(Disconnected):
        with client.transaction() as t:
            t.write("/tx/a", b"1")
            _restart(daemon)
            t.write("/tx/b", b"1")
    assert not client.exists("/tx/a")


def test_sync_works_after_a_restart(daemon, client, collect):
    client.watch("/s", collect, initial=False)
    _restart(daemon)
    client.sync()             # retries over the lost connection as needed
    client.write("/s/x", b"")
    client.sync()
    assert "/s/x" in collect.paths()


def test_pending_events_are_superseded_by_resync(daemon, client, other, blocker):
    got = []
    sub = client.watch("/p", got.append, initial=False)
    with blocker.hold(client):
        for i in range(5):
            other.write(f"/p/{i}", b"")
        wait_for(lambda: sub.pending == 5, what="queued events")
        _restart(daemon)
        wait_for(lambda: sub._resync_marker is not None, what="Resync queued")
    client.sync()
    # The five events waited undelivered when the Resync came: it replaced them.
    assert [type(i) for i in got] == [Resync]


def test_no_reconnect_when_disabled(daemon):
    c = Client(daemon.socket_path, reconnect=False)
    try:
        daemon.stop()
        with pytest.raises(Disconnected):
            for _ in range(1000):
                c.read("/")
        daemon.start()
        with pytest.raises(Disconnected):
            c.read("/")
    finally:
        c.close()
