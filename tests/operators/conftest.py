"""A daemon as an operator runs it: --metrics on a Unix socket, short log summaries,
guests on the mock hypervisor doing known work."""
import socket
import subprocess

import pytest

from xenstore_protocol import Op

from tests.guests.conftest import Guests
from tests.waiting import wait_for  # noqa: F401  (the tests import it from here)
from xsd.hypervisor.guest_client import SocketClient
from xsd.hypervisor.mock import MockControl

SUMMARY_SECONDS = 0.5


@pytest.fixture
def opsd(daemon_factory, tmp_path):
    """A daemon serving metrics on ``<rundir>/m.sock``, summarising warnings every 0.5 s; a
    client not reading has 64 events or 8 KiB waiting for it at most before drops begin."""
    proc = daemon_factory("--metrics", str(tmp_path / "run" / "m.sock"),
                          "--log-summary-interval", str(SUMMARY_SECONDS),
                          "--max-watch-events", "64", "--out-high-water", "8192")
    proc.metrics_path = str(tmp_path / "run" / "m.sock")
    return proc


@pytest.fixture
def toolstack(opsd):
    with SocketClient(opsd.socket_path, timeout=10) as client:
        yield client


@pytest.fixture
def guests(opsd, toolstack):
    made = Guests(opsd, MockControl(opsd.rundir), toolstack)
    yield made
    made.close()


def http_get(path_or_addr, target="/metrics", timeout=10.0):
    """(status line, headers text, body) of one HTTP GET on a Unix socket path or (host, port)."""
    family = socket.AF_UNIX if isinstance(path_or_addr, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path_or_addr)
        s.sendall(f"GET {target} HTTP/1.0\r\nHost: xsd\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status, _, headers = head.decode().partition("\r\n")
    return status, headers, body.decode()


def samples(text: str) -> dict:
    """Exposition text -> {'name{labels}': value}, labels as written (sorted by the client)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def promtool_check(text: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                          capture_output=True, timeout=60)


def set_quota(toolstack, domid, name, value):
    toolstack.ok(Op.SET_QUOTA, str(domid).encode(), name.encode(), str(value).encode())


def cooperate(toolstack, reader, writer) -> str:
    """Issue 12 item 10's pair: ``reader`` watches a directory of ``writer``'s that it may
    read, and from now on never reads its ring.  The directory, relative to writer's home."""
    set_quota(toolstack, writer.domid, "nodes", 0)          # unlimited: distinct nodes
    shared = "data/shared"
    writer.mkdir(shared)
    writer.set_perms(shared, f"n{writer.domid}", f"r{reader.domid}")
    reader.watch(f"/local/domain/{writer.domid}/{shared}", b"w")
    return shared


def flood(writer, directory: str, count: int, start: int = 0, batch: int = 16) -> None:
    """``count`` distinct nodes written under ``directory``, ``batch`` requests in flight."""
    for first in range(start, start + count, batch):
        ids = [writer.send_packet(Op.WRITE, f"{directory}/n{i}\0x".encode())
               for i in range(first, min(first + batch, start + count))]
        for req_id in ids:
            assert writer.reply(req_id).op == Op.WRITE
