"""watchlib.Mirror on the real daemon: equal to the store after sync(), one callback per change."""
import asyncio
import threading

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from watchlib import AsyncClient, Client
from watchlib.mirror import Added, AsyncMirror, Changed, Mirror, MirrorCore, Removed

PATTERNS = ["/t/*/dev/*/state", "/t/vm/**"]


def store_view(client, patterns=PATTERNS) -> dict:
    """What the patterns select in the store now, read afresh (glob + read)."""
    view = {}
    for pattern in patterns:
        for path in client.glob(pattern):
            view[path] = client.read(path)
    return view


def diff(before: dict, after: dict) -> list:
    changes = [Removed(p, v) for p, v in before.items() if p not in after]
    for p, v in after.items():
        if p not in before:
            changes.append(Added(p, v))
        elif before[p] != v:
            changes.append(Changed(p, v, before[p]))
    return sorted(changes, key=lambda c: c.path)


class Changes(list):
    """on_change: records every change, thread-safe."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def __call__(self, change):
        with self.lock:
            self.append(change)

    def take(self) -> list:
        with self.lock:
            out = sorted(self, key=lambda c: c.path)
            self.clear()
            return out


def test_initial_listing_then_one_callback_per_change(client, other):
    other.write("/t/1/dev/vif/state", b"1")
    other.write("/t/1/dev/vif/mac", b"aa")
    other.write("/t/vm/u1/name", b"guest")
    changes = Changes()
    with Mirror(PATTERNS, changes, client=client) as m:
        assert changes.take() == [Added("/t/1/dev/vif/state", b"1"), Added("/t/vm", b""),
                                  Added("/t/vm/u1", b""), Added("/t/vm/u1/name", b"guest")]
        other.write("/t/1/dev/vif/state", b"4")
        other.write("/t/1/dev/vif/state", b"4")            # the same value: no callback
        other.write("/t/1/dev/vif/mac", b"bb")             # not selected: no callback
        other.set_perms("/t/1/dev/vif/state", ["n0"])      # no value change: no callback
        m.sync()
        assert changes.take() == [Changed("/t/1/dev/vif/state", b"4", b"1")]
        other.rm("/t/1")                                   # a subtree: one Removed per node
        other.rm("/t/vm/u1")
        m.sync()
        assert changes.take() == [Removed("/t/1/dev/vif/state", b"4"),
                                  Removed("/t/vm/u1", b""), Removed("/t/vm/u1/name", b"guest")]
        assert m.values == {"/t/vm": b""} == store_view(other)


def test_a_write_that_creates_parents_reports_them(client, other):
    changes = Changes()
    with Mirror(["/t/*", "/t/vm/**"], changes, client=client) as m:
        other.write("/t/vm/a/b", b"x")        # creates /t, /t/vm, /t/vm/a: one event only
        m.sync()
        assert changes.take() == [Added("/t/vm", b""), Added("/t/vm/a", b""),
                                  Added("/t/vm/a/b", b"x")]
        assert m.values == store_view(other, ["/t/*", "/t/vm/**"])


def test_removing_an_ancestor_of_the_prefix_is_seen(client, other):
    other.write("/t/2/dev/vbd/state", b"3")
    changes = Changes()
    with Mirror(["/t/*/dev/*/state"], changes, client=client) as m:
        changes.take()
        other.rm("/t")                        # the daemon reports it with the watched path
        m.sync()
        assert changes.take() == [Removed("/t/2/dev/vbd/state", b"3")]
        assert len(m) == 0


class CountingClient(Client):
    """A real client that records the reads and listings the mirror makes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def read(self, path, tx=None):
        self.calls.append(("read", path))
        return super().read(path, tx)

    def ls(self, path, tx=None):
        self.calls.append(("ls", path))
        return super().ls(path, tx)


def test_only_the_affected_subtree_is_read_again(daemon, other):
    for domid in range(20):
        other.write(f"/t/{domid}/dev/vif/state", b"1")
    with CountingClient(daemon.socket_path, timeout=10) as c, \
            Mirror(["/t/*/dev/*/state"], client=c) as m:
        assert len(m) == 20
        c.calls.clear()
        other.write("/t/7/dev/vif/state", b"4")
        other.write("/t/7/data", b"x")                    # off the pattern: nothing read
        m.sync()
        assert c.calls == [("read", "/t/7/dev/vif/state")]
        c.calls.clear()
        other.rm("/t/7/dev")
        m.sync()
        assert c.calls and all(path.startswith("/t/7/") for _, path in c.calls), c.calls
        assert len(m) == 19


def test_patterns_are_checked():
    for bad in (["relative/path"], ["@introduceDomain"], []):
        try:
            MirrorCore(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
    assert sorted(MirrorCore(["/a/*/b", "/a/x/**", "/c"]).roots) == ["/a", "/c"]


def test_async_mirror(daemon, other):
    other.write("/t/3/dev/vif/state", b"1")

    async def main():
        seen = []

        async def on_change(change):          # a coroutine callback is awaited
            seen.append(change)

        async with AsyncClient(daemon.socket_path, timeout=10) as c:
            async with AsyncMirror(PATTERNS, on_change, client=c) as m:
                assert seen == [Added("/t/3/dev/vif/state", b"1")]
                other.write("/t/3/dev/vif/state", b"2")
                other.write("/t/vm/x", b"y")
                await m.sync()
                other.rm("/t/3")
                await m.sync()
                assert seen[1:] == [
                    Changed("/t/3/dev/vif/state", b"2", b"1"), Added("/t/vm", b""),
                    Added("/t/vm/x", b"y"), Removed("/t/3/dev/vif/state", b"2")]
                assert m.values == store_view(other)
    asyncio.run(main())


# -- the stateful test: random operations, the mirror equals the store after each sync() ------

COMPONENTS = st.sampled_from(["1", "2", "dev", "vif", "state", "vm"])
PATHS = st.lists(COMPONENTS, min_size=1, max_size=5).map(lambda parts: "/t/" + "/".join(parts))
VALUES = st.sampled_from([b"", b"1", b"2", b"connected"])


def test_mirror_equals_store_after_every_sync(daemon, blocker):
    """Writes, subtree removals, permission changes, daemon restarts (the tree survives
    in the journal, so a Resync must not report anything) and a queue overflow
    (LostEvents): after each operation and sync(), the mirror equals a fresh read of
    the store and the callbacks since the last sync are exactly the difference."""
    client = Client(daemon.socket_path, timeout=10)
    writer = Client(daemon.socket_path, timeout=10)
    blocker.hold(client)             # a held dispatcher lets the burst rule overflow the queue
    blocker.release.set()
    counts = {"restarts": 0, "lost": 0}

    class MirrorMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            writer.rm("/t") if writer.exists("/t") else None
            self.changes = Changes()
            self.mirror = Mirror(PATTERNS, self.changes, client=client, max_pending=8)
            self.restarts = 0
            self.before = store_view(writer)
            assert self.changes.take() == diff({}, self.before)

        def teardown(self):
            self.mirror.close()

        @rule(path=PATHS, value=VALUES)
        def write(self, path, value):
            writer.write(path, value)

        @rule(path=PATHS)
        def remove_subtree(self, path):
            if writer.exists(path):
                writer.rm(path)

        @rule(path=PATHS, perms=st.sampled_from([["n0"], ["r0"], ["b0", "w5"]]))
        def change_permissions(self, path, perms):
            if writer.exists(path):
                writer.set_perms(path, perms)

        @precondition(lambda self: self.restarts < 1)
        @rule()
        def restart_daemon(self):
            self.restarts += 1
            counts["restarts"] += 1
            daemon.restart()

        @rule(paths=st.lists(PATHS, min_size=10, max_size=20, unique=True), value=VALUES)
        def overflow(self, paths, value):
            lost = self.mirror.lost
            blocker.release.clear()
            blocker.entered.clear()
            client.write(blocker.sub.pattern, b"hold")     # the dispatcher waits in there
            assert blocker.entered.wait(10)
            for path in paths:
                writer.write(path, value)
                writer.write(path + "/extra", b"x")     # more distinct paths than max_pending
            blocker.release.set()
            self.mirror.sync()
            if self.mirror.lost > lost:
                counts["lost"] += 1

        @invariant()
        def equal_after_sync(self):
            self.mirror.sync(timeout=30)
            now = store_view(writer)
            assert self.mirror.values == now
            assert self.changes.take() == diff(self.before, now)
            self.before = now

    try:
        run_state_machine_as_test(MirrorMachine, settings=settings(
            max_examples=12, stateful_step_count=12, deadline=None, derandomize=True,
            suppress_health_check=list(HealthCheck)))
    finally:
        client.close()
        writer.close()
    assert counts["restarts"] > 0 and counts["lost"] > 0, counts
