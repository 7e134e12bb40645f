"""The asyncio client against the real daemon."""
import asyncio
import logging

import pytest

from watchlib import AsyncClient, Disconnected, Event, Resync, XenstoreError


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def until(predicate, what="condition"):
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def test_requests(daemon):
    async def main():
        async with AsyncClient(daemon.socket_path) as c:
            await c.write("/as/a", b"1")
            await c.mkdir("/as/d")
            assert await c.read("/as/a") == b"1"
            assert sorted(await c.ls("/as")) == ["a", "d"]
            assert await c.exists("/as/a") and not await c.exists("/as/zz")
            await c.set_perms("/as/a", ["n0", "r3"])
            assert [str(p.kind) + str(p.domid) for p in await c.get_perms("/as/a")] == ["n0", "r3"]
            assert await c.get_domain_path(4) == "/local/domain/4"
            await c.introduce(4, 1, 1)
            assert await c.is_domain_introduced(4)
            await c.release(4)
            await c.rm("/as")
            with pytest.raises(XenstoreError) as e:
                await c.read("/as/a")
            assert e.value.name == "ENOENT"
            # Concurrent requests from many tasks.
            await asyncio.gather(*(c.write(f"/as2/k{i}", b"%d" % i) for i in range(100)))
            values = await asyncio.gather(*(c.read(f"/as2/k{i}") for i in range(100)))
            assert values == [b"%d" % i for i in range(100)]
    run(main())


def test_big_directory(daemon):
    async def main():
        async with AsyncClient(daemon.socket_path) as c:
            names = [f"a-fairly-long-child-name-number-{i:04d}" for i in range(200)]
            async with c.transaction() as t:
                for n in names:
                    await t.write(f"/abig/{n}", b"")
            assert sorted(await c.ls("/abig")) == names
    run(main())


def test_watch_sync_and_async_callbacks(daemon):
    async def main():
        async with AsyncClient(daemon.socket_path) as c:
            got = []

            async def acb(event):
                await asyncio.sleep(0)
                got.append(("async", event.path, event.value))

            s1 = await c.watch("/aw/*/x", acb, with_value=True, initial=False)
            await c.watch("/aw", lambda e: got.append(("sync", e.path, e.initial)))
            await c.write("/aw/1/x", b"v")
            await c.sync()
            assert got == [("sync", "/aw", True), ("async", "/aw/1/x", b"v"),
                           ("sync", "/aw/1/x", False)]
            s1.cancel()
            await c.write("/aw/2/x", b"")
            await c.sync()
            assert got[-1] == ("sync", "/aw/2/x", False)
            assert len(got) == 4
    run(main())


def test_callback_exception_is_logged(daemon, caplog):
    async def main():
        async with AsyncClient(daemon.socket_path) as c:
            seen = []

            async def bad(event):
                seen.append(event.path)
                raise ValueError("async callback bug")

            await c.watch("/ae", bad, initial=False)
            await c.write("/ae/1", b"")
            await c.write("/ae/2", b"")
            await c.sync()
            assert seen == ["/ae/1", "/ae/2"]
    with caplog.at_level(logging.ERROR, logger="watchlib"):
        run(main())
    assert any(r.exc_info and "async callback bug" in str(r.exc_info[1]) for r in caplog.records)


def test_overflow_and_coalescing(daemon):
    async def main():
        async with AsyncClient(daemon.socket_path) as c, AsyncClient(daemon.socket_path) as w:
            release = asyncio.Event()
            got = []

            async def slow(item):
                if isinstance(item, Event) and item.path == "/ao/block":
                    await release.wait()
                got.append(item)

            sub = await c.watch("/ao", slow, initial=False, max_pending=5)
            await w.write("/ao/block", b"")
            await until(lambda: sub.pending == 0 and sub.delivered == 1, "blocked")
            for _ in range(3):
                await w.write("/ao/same", b"")
            for i in range(9):      # "same" + k0..k3 fill the 5; k4 overflows
                await w.write(f"/ao/k{i}", b"")
            await until(lambda: sub.lost == 5 and sub.pending == 5, "overflow")
            release.set()
            await c.sync()
            assert sub.coalesced == 2
            kinds = [type(i).__name__ for i in got[1:]]
            assert kinds == ["LostEvents"] + ["Event"] * 5
            assert got[1].dropped == 5
            assert [i.path for i in got[2:]] == [f"/ao/k{i}" for i in range(4, 9)]
    run(main())


def test_transaction_replay_and_run_transaction(daemon):
    async def main():
        async with AsyncClient(daemon.socket_path) as c, AsyncClient(daemon.socket_path) as o:
            await c.write("/at/k", b"0")
            async with c.transaction() as t:
                await t.write("/at/k", b"mine")
                await o.write("/at/k", b"theirs")
            assert t.retries == 1
            assert await c.read("/at/k") == b"mine"

            calls = []

            async def bump(t):
                calls.append(1)
                n = int(await t.read("/at/n")) if await t.exists("/at/n") else 0
                if len(calls) == 1:
                    await o.write("/at/n", b"5")
                await t.write("/at/n", b"%d" % (n + 1))

            await c.run_transaction(bump)
            assert len(calls) == 2
            assert await c.read("/at/n") == b"6"
    run(main())


def test_reconnect_resync(daemon):
    async def main():
        async with AsyncClient(daemon.socket_path) as c:
            got = []
            await c.watch("/ar", got.append, initial=False)
            await c.write("/ar/1", b"")
            await c.sync()
            await asyncio.get_running_loop().run_in_executor(None, daemon.stop)
            await asyncio.get_running_loop().run_in_executor(None, daemon.start)
            await until(lambda: any(isinstance(i, Resync) for i in got), "Resync")
            await c.write("/ar/2", b"")
            await c.sync()
            assert [type(i).__name__ for i in got] == ["Event", "Resync", "Event"]
            assert got[-1].path == "/ar/2"
            assert c.reconnects == 1
    run(main())


def test_sync_from_callback_raises(daemon):
    async def main():
        async with AsyncClient(daemon.socket_path) as c:
            errors = []

            async def cb(e):
                try:
                    await c.sync()
                except RuntimeError as err:
                    errors.append(err)

            await c.watch("/asy", cb)
            await c.sync()
            assert len(errors) == 1
    run(main())


def test_closed_client_refuses(daemon):
    async def main():
        c = await AsyncClient(daemon.socket_path).connect()
        await c.close()
        with pytest.raises(Disconnected):
            await c.read("/")
    run(main())


def test_tx_argument_form(daemon):
    """AsyncClient takes ``tx=`` like Client: the request runs inside the transaction."""
    async def main():
        async with AsyncClient(daemon.socket_path) as c, AsyncClient(daemon.socket_path) as o:
            async with c.transaction() as t:
                await c.write("/atx/arg", b"1", tx=t)
                assert await c.read("/atx/arg", tx=t) == b"1"
                assert await c.exists("/atx/arg", tx=t)
                assert await c.ls("/atx", tx=t) == ["arg"]
                assert (await c.get_perms("/atx/arg", tx=t))[0].kind == "n"
                assert not await o.exists("/atx/arg")       # not committed yet
            assert await o.read("/atx/arg") == b"1"
    run(main())
