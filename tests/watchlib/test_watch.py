"""Subscriptions against the real daemon: events, globs, sharing, barrier, queue guarantees."""
import logging
import threading

import pytest

from watchlib import Event, LostEvents, XenstoreError
from watchlib.client import BARRIER_PATH

from .conftest import wait_for


def test_literal_watch_gets_initial_event_then_changes_below(client, collect):
    client.write("/w/a", b"0")
    client.watch("/w", collect)
    client.write("/w/a", b"1")
    client.write("/w/b/c", b"2")
    client.sync()
    assert collect.paths(initial=True) == ["/w"]
    assert collect.paths(initial=False) == ["/w/a", "/w/b/c"]
    assert all(e.subscription.pattern == "/w" for e in collect.items)


def test_initial_event_fires_for_a_missing_literal_path(client, collect):
    client.watch("/w/not/there", collect, with_value=True)
    client.sync()
    [event] = collect.items
    assert (event.path, event.initial, event.value) == ("/w/not/there", True, None)


def test_without_initial(client, collect):
    client.watch("/w", collect, initial=False)
    client.write("/w/x", b"")
    client.sync()
    assert collect.paths() == ["/w/x"]


def test_with_value_carries_the_value_read_after_the_event(client, collect):
    client.watch("/w", collect, with_value=True, initial=False)
    client.write("/w/v", b"hello")
    client.rm("/w/v")
    client.sync()
    assert [(e.path, e.value) for e in collect.items][0][0] == "/w/v"
    # The last event is the rm: the value is gone.
    assert collect.items[-1].value is None


def test_star_matches_one_component_and_reports_below(client, collect):
    client.watch("/local/domain/*/device", collect, initial=False)
    client.write("/local/domain/3/device/vif/0/state", b"4")
    client.write("/local/domain/3/devices", b"no")         # not "device"
    client.write("/local/domain/3/name", b"no")
    client.write("/local/domain/7/device", b"")
    client.sync()
    assert collect.paths() == ["/local/domain/3/device/vif/0/state", "/local/domain/7/device"]


def test_glob_initial_events_list_existing_matches(client, collect):
    for d in (1, 2):
        for v in (0, 1):
            client.write(f"/local/domain/{d}/device/vif/{v}/state", b"4")
    client.write("/local/domain/2/device/vbd/0/state", b"4")
    client.watch("/local/domain/*/device/vif/*/state", collect, with_value=True)
    client.sync()
    assert collect.paths(initial=True) == [
        f"/local/domain/{d}/device/vif/{v}/state" for d in (1, 2) for v in (0, 1)]
    assert all(e.value == b"4" for e in collect.items)


def test_globstar_matches_any_depth(client, collect):
    client.watch("/gs/**/state", collect, initial=False)
    client.write("/gs/state", b"")
    client.write("/gs/a/b/c/state", b"")
    client.write("/gs/a/b/c/other", b"")
    client.sync()
    assert collect.paths() == ["/gs/state", "/gs/a/b/c/state"]


def test_rm_above_the_matches_is_reported_flagged_above(client, collect):
    client.write("/local/domain/5/device/vif/0/state", b"4")
    client.watch("/local/domain/*/device/vif/*/state", collect, initial=False)
    client.rm("/local/domain/5")
    client.sync()
    [event] = collect.items
    assert (event.path, event.above) == ("/local/domain/5", True)


def test_special_introduce_and_release_domain(client, collect):
    client.watch("@introduceDomain", collect)
    client.watch("@releaseDomain", collect)
    client.introduce(9, 1, 1)
    client.release(9)
    client.sync()
    assert collect.paths() == ["@introduceDomain", "@releaseDomain",
                               "@introduceDomain", "@releaseDomain"]
    assert [e.initial for e in collect.items] == [True, True, False, False]


def test_subscriptions_under_one_prefix_share_one_daemon_watch(client, collect):
    other = []
    s1 = client.watch("/share/*/a", collect, initial=False)
    s2 = client.watch("/share/*/b", other.append, initial=False)
    s3 = client.watch("/share", lambda e: None, initial=False)
    assert len(client._registry.watches()) == 1
    client.write("/share/x/a", b"")
    client.write("/share/x/b", b"")
    client.sync()
    assert collect.paths() == ["/share/x/a"]
    assert [e.path for e in other] == ["/share/x/b"]
    s1.cancel()
    s3.cancel()
    assert len(client._registry.watches()) == 1         # s2 still holds it
    client.write("/share/y/b", b"")
    client.sync()
    assert [e.path for e in other] == ["/share/x/b", "/share/y/b"]
    s2.cancel()
    assert client._registry.watches() == []


def test_two_clients_watching_the_same_path_do_not_clobber(client, other, collect):
    theirs = []
    client.watch("/same", collect, initial=False)
    sub = other.watch("/same", theirs.append, initial=False)
    sub.cancel()                      # UNWATCH with other's token only
    client.write("/same/x", b"")
    client.sync()
    assert collect.paths() == ["/same/x"]
    assert theirs == []


def test_cancel_stops_delivery_and_unwatches(client, collect):
    sub = client.watch("/c", collect, initial=False)
    client.write("/c/1", b"")
    client.sync()
    sub.cancel()
    client.write("/c/2", b"")
    client.sync()
    assert collect.paths() == ["/c/1"]
    assert client._registry.watches() == []
    sub.cancel()                      # idempotent


def test_subscription_as_context_manager(client, collect):
    with client.watch("/cm", collect, initial=False):
        client.write("/cm/a", b"")
        client.sync()
    client.write("/cm/b", b"")
    client.sync()
    assert collect.paths() == ["/cm/a"]


def test_bad_patterns_are_refused(client):
    for bad in ("relative/path", "/trailing/", "/a//b", ""):
        with pytest.raises(ValueError):
            client.watch(bad, print)


def test_barrier_covers_writes_from_other_connections(client, other):
    seen = []
    client.watch("/bar", lambda e: seen.append(e.path), initial=False)
    for i in range(200):
        other.write(f"/bar/k{i}", b"")
    client.sync()
    assert len(seen) == 200


def test_barrier_waits_for_slow_callbacks_to_return(client, other):
    done = []

    def slow(event):
        threading.Event().wait(0.01)
        done.append(event.path)

    client.watch("/slow", slow, initial=False)
    for i in range(20):
        other.write(f"/slow/{i}", b"")
    client.sync()
    assert len(done) == 20


def test_barrier_leaves_no_watch_behind(client, collect):
    for _ in range(3):
        client.sync()
    assert client._barriers == {}
    assert client._registry.watches() == []
    # Were a barrier watch left on the daemon, a watch on "/" would not mind;
    # but its events would reach nobody: check the stream stays clean.
    client.watch("/", collect, initial=False)
    client.write("/after-barrier", b"")
    client.sync()
    assert collect.paths() == ["/after-barrier"]


def test_sync_from_a_callback_raises(client):
    errors = []

    def cb(event):
        try:
            client.sync()
        except RuntimeError as e:
            errors.append(e)

    client.watch("/sy", cb)
    client.sync()
    assert len(errors) == 1


def test_requests_and_watch_from_inside_a_callback(client, collect):
    def cb(event):
        if event.path == "/in/go":
            client.write("/in/echo", client.read("/in/go"))
            client.watch("/in2", collect, initial=False)

    client.watch("/in", cb, initial=False)
    client.write("/in/go", b"x")
    client.sync()
    client.write("/in2/z", b"")
    client.sync()
    assert client.read("/in/echo") == b"x"
    assert collect.paths() == ["/in2/z"]


def test_callback_exception_is_logged_and_subscription_lives_on(client, caplog):
    seen = []

    def flaky(event):
        seen.append(event.path)
        if event.path == "/ex/bad":
            raise ValueError("callback bug")

    client.watch("/ex", flaky, initial=False)
    with caplog.at_level(logging.ERROR, logger="watchlib"):
        client.write("/ex/bad", b"")
        client.write("/ex/good", b"")
        client.sync()
    assert seen == ["/ex/bad", "/ex/good"]
    assert any("callback bug" in (r.exc_text or "") or
               (r.exc_info and "callback bug" in str(r.exc_info[1])) for r in caplog.records)


def test_events_for_one_path_coalesce_while_undelivered(client, other, blocker):
    got = []
    sub = client.watch("/co", got.append, with_value=True, initial=False)
    with blocker.hold(client):
        for i in range(100):
            other.write("/co/x", b"%d" % i)
        wait_for(lambda: sub.coalesced == 99, what="99 coalesced events")
        assert sub.pending == 1
    client.sync()
    assert [(e.path, e.value) for e in got] == [("/co/x", b"99")]


def test_overflow_drops_the_queue_and_says_so(client, other, blocker):
    got = []
    sub = client.watch("/ov", got.append, initial=False, max_pending=10)
    with blocker.hold(client):
        for i in range(50):
            other.write(f"/ov/k{i:02d}", b"")
        wait_for(lambda: sub.lost == 40 and sub.pending == 10, what="overflow")
    client.sync()
    lost = [i for i in got if isinstance(i, LostEvents)]
    events = [i.path for i in got if isinstance(i, Event)]
    assert len(lost) == 1 and lost[0].dropped == 40
    assert got[0] is lost[0]                        # the gap comes first, then what followed it
    assert events == [f"/ov/k{i:02d}" for i in range(40, 50)]
    # Nothing lost silently: every write was delivered or covered by LostEvents.
    assert lost[0].dropped + len(events) == 50


def test_queue_is_bounded_under_a_fast_writer(client, other, blocker):
    # Separate writes, not one transaction: beyond --max-watch-events (1024)
    # from one request xsd sends one "re-read" event instead (docs/watchlib.md).
    sub = client.watch("/fast", lambda e: None, initial=False, max_pending=100)
    with blocker.hold(client):
        for i in range(1000):
            other.write(f"/fast/k{i}", b"")
        wait_for(lambda: sub.lost + sub.pending == 1000, what="all events seen")
        assert sub.pending <= 100
        assert len(client._queue) <= 101
    client.sync()


def test_watch_error_propagates(client):
    with pytest.raises(XenstoreError):
        client.watch("/bad.char/*", print)
    assert client._registry.watches() == []


def test_barrier_path_is_a_special_name():
    assert BARRIER_PATH.startswith("@")


def test_module_level_watch_uses_the_default_client(monkeypatch, daemon, collect):
    import watchlib
    monkeypatch.setenv("XENSTORED_PATH", daemon.socket_path)
    try:
        with watchlib.watch("/mod", collect, initial=False):
            c = watchlib.default_client()
            assert c.socket_path == daemon.socket_path
            c.write("/mod/x", b"")
            c.sync()
        assert collect.paths() == ["/mod/x"]
    finally:
        watchlib.default_client().close()


def test_cancel_from_another_thread_waits_for_the_running_callback(client):
    order = []
    entered = threading.Event()
    release = threading.Event()

    def cb(event):
        entered.set()
        release.wait(30)
        order.append("callback returned")

    sub = client.watch("/cw", cb, initial=False)
    client.write("/cw/x", b"")
    assert entered.wait(10)
    t = threading.Thread(target=lambda: (sub.cancel(), order.append("cancel returned")))
    t.start()
    t.join(0.2)
    assert t.is_alive()                    # still waiting for the callback
    release.set()
    t.join(10)
    assert order == ["callback returned", "cancel returned"]


def test_cancel_from_its_own_callback(client, collect):
    def cb(event):
        collect(event)
        event.subscription.cancel()

    client.watch("/own", cb, initial=False)
    client.write("/own/1", b"")
    client.write("/own/2", b"")
    client.sync()
    assert collect.paths() == ["/own/1"]


def test_glob_lists_selected_nodes(client):
    for p in ("/gl/1/a", "/gl/2/a", "/gl/2/b", "/gl/3/x/a"):
        client.write(p, b"")
    assert client.glob("/gl/*/a") == ["/gl/1/a", "/gl/2/a"]
    assert client.glob("/gl/**/a") == ["/gl/1/a", "/gl/2/a", "/gl/3/x/a"]
    assert client.glob("/gl/2/b") == ["/gl/2/b"]
    assert client.glob("/gl/9") == []
    assert client.glob("/nothing/*") == []
