"""Waiting for something a daemon does asynchronously, without a timed assertion."""
import time


def wait_for(predicate, timeout=10.0, what="condition", interval=0.005):
    """Poll until ``predicate()`` holds; fail only after a generous timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
