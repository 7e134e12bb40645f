"""Guests on the mock hypervisor: a daemon, its hypervisor's controls, a toolstack, guests.

``daemon`` is the suite's (the daemon offers both ring features, reconnection
and the error field, by default).  A test plays every part: ``hv`` is the hypervisor (MockControl), ``toolstack`` a dom0
client that writes a domain's nodes and INTRODUCEs it, ``guest(domid)`` the
guest kernel on its ring page.
"""

import pytest

from xenstore_protocol import Op

from tests.waiting import wait_for  # noqa: F401  (the tests import it from here)
from tests.wire import RawClient
from xsd.hv_cli import toolstack_introduce
from xsd.hypervisor.guest_client import GuestClient, SocketClient
from xsd.hypervisor.mock import MockControl

@pytest.fixture
def hv(daemon):
    return MockControl(daemon.rundir)


@pytest.fixture
def toolstack(daemon):
    with SocketClient(daemon.socket_path, timeout=10) as client:
        yield client


@pytest.fixture
def watcher(daemon):
    """A dom0 client watching @introduceDomain ("in") and @releaseDomain ("out"); initial events taken."""
    with RawClient(daemon.socket_path, timeout=10) as client:
        client.ok(Op.WATCH, b"@introduceDomain", b"in")
        client.ok(Op.WATCH, b"@releaseDomain", b"out")
        assert len(client.wait_events(2)) == 2
        yield client


class Guests:
    """Create domains in the mock, introduce them as a toolstack does, open their rings."""

    def __init__(self, daemon, hv, toolstack):
        self.daemon, self.hv, self.toolstack = daemon, hv, toolstack
        self.clients = []

    def create(self, domid=None, name="", introduce=True):
        row = self.hv.create(name=name, domid=domid)
        if introduce:
            toolstack_introduce(self.toolstack, row)
        return row

    def open(self, domid, timeout=10.0):
        client = GuestClient(self.daemon.rundir, domid, timeout=timeout)
        self.clients.append(client)
        return client

    def start(self, domid=None, name=""):
        """A created, introduced domain, and its guest client."""
        row = self.create(domid, name)
        return self.open(row.domid)

    def close(self):
        for client in self.clients:
            client.close()


@pytest.fixture
def guests(daemon, hv, toolstack):
    made = Guests(daemon, hv, toolstack)
    yield made
    made.close()


def usage(client, domid) -> dict:
    """``CONTROL quota <domid>`` as {name: (used, limit)}."""
    text = client.ok(Op.CONTROL, b"quota", str(domid).encode()).decode().rstrip("\0")
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(": ")
        used, _, limit = rest.partition(" / ")
        out[name] = (used, limit)
    return out


def memreport(client) -> dict:
    text = client.ok(Op.CONTROL, b"memreport").decode().rstrip("\0")
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
