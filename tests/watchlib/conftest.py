"""Fixtures for watchlib: clients on the real daemon, and a way to collect what callbacks get."""
import threading

import pytest
from tests.waiting import wait_for  # noqa: F401  (the tests import it from here)

from watchlib import Client


class Collector:
    """A callback that records every item; ``wait_for`` polls a condition without timing it."""

    def __init__(self):
        self.items = []
        self.lock = threading.Lock()

    def __call__(self, item):
        with self.lock:
            self.items.append(item)

    def paths(self, *, initial=None):
        with self.lock:
            return [i.path for i in self.items
                    if hasattr(i, "path") and (initial is None or i.initial == initial)]

    def of_type(self, cls):
        with self.lock:
            return [i for i in self.items if isinstance(i, cls)]

    def clear(self):
        with self.lock:
            self.items.clear()


@pytest.fixture
def client(daemon):
    with Client(daemon.socket_path, timeout=10) as c:
        yield c


@pytest.fixture
def other(daemon):
    """A second client, for writes from 'another process'."""
    with Client(daemon.socket_path, timeout=10) as c:
        yield c


@pytest.fixture
def collect():
    return Collector()


@pytest.fixture
def blocker():
    """Hold the dispatcher inside a callback until released (``with blocker.hold(client):``)."""
    return Blocker()


class Blocker:
    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sub = None

    def _cb(self, item):
        if getattr(item, "initial", False):
            return
        self.entered.set()
        self.release.wait(30)

    def hold(self, client, path="/watchlib-test-blocker"):
        self.sub = client.watch(path, self._cb)
        client.sync()
        client.write(path, b"block")
        assert self.entered.wait(10), "dispatcher did not enter the blocking callback"
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release.set()
