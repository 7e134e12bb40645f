"""Waiting for something a daemon does asynchronously, without a timed assertion."""
import asyncio
import time


def wait_for(predicate, timeout=10.0, what="condition", interval=0.005):
    """Poll until ``predicate()`` holds; fail only after a generous timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def run_until(loop, predicate, timeout: float = 10.0) -> None:
    """Run the asyncio ``loop`` until ``predicate()`` holds (fail only after a generous
    timeout): for tests that drive a daemon's pump on a loop of their own."""
    async def wait():
        deadline = loop.time() + timeout
        while not predicate():
            assert loop.time() < deadline, "condition never held"
            await asyncio.sleep(0.001)
    loop.run_until_complete(wait())
