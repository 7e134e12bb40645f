"""Fixtures shared by the whole suite: a real xsd daemon on a real socket."""
import pytest

from tests.daemon_process import DaemonProcess
from tests.wire import RawClient


@pytest.fixture
def daemon(tmp_path):
    """A fresh daemon per test, serving on ``tmp_path/run/socket``; stopped (SIGTERM) after."""
    proc = DaemonProcess(tmp_path / "run").start()
    yield proc
    proc.stop_checked()


@pytest.fixture
def daemon_factory(tmp_path):
    """Start daemons with extra arguments: ``daemon_factory("--quota-nodes", "5")``; each
    must survive its test without a traceback, as ``daemon``'s."""
    started = []

    def start(*args, name="run"):
        proc = DaemonProcess(tmp_path / name, args).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop_checked()


@pytest.fixture
def xs(daemon):
    """A raw protocol client on the read-write socket."""
    with RawClient(daemon.socket_path) as client:
        yield client
