"""One socket-path rule (watchlib.sockets), libxenstore's, for every tool here.

libxenstore (xs.c xs_daemon_socket): $XENSTORED_PATH, else
$XENSTORED_RUNDIR + "/socket", else /var/run/xenstored/socket; a variable
counts as set when present, even empty (getenv).  The same answer from the
clients, the CLI shims, xsd's configuration and xsd-hv; and Debian's C tools
agree on a real daemon.
"""
import asyncio
import os

import pytest

from tests.cli import harness
from watchlib import AsyncClient, Client, XenstoreError, commands, sockets
from watchlib.cli import xs
from xsd import hv_cli
from xsd.config import Config


@pytest.mark.parametrize("env,socket", [
    ({}, "/var/run/xenstored/socket"),
    ({"XENSTORED_RUNDIR": "/r"}, "/r/socket"),
    ({"XENSTORED_PATH": "/p/s"}, "/p/s"),
    ({"XENSTORED_PATH": "/p/s", "XENSTORED_RUNDIR": "/r"}, "/p/s"),
    ({"XENSTORED_PATH": ""}, ""),                     # set, if empty: getenv() is not NULL
    ({"XENSTORED_RUNDIR": ""}, "/socket"),
])
def test_the_rule_is_libxenstores(env, socket):
    assert sockets.daemon_socket(env) == socket


def test_read_only_socket_sits_beside_the_socket(tmp_path):
    env = {"XENSTORED_RUNDIR": str(tmp_path)}
    assert sockets.daemon_socket_ro(env) == str(tmp_path / "socket_ro")   # neither exists
    (tmp_path / "socket").touch()
    assert sockets.daemon_socket_ro(env) == str(tmp_path / "socket")      # no socket_ro here
    (tmp_path / "socket_ro").touch()
    assert sockets.daemon_socket_ro(env) == str(tmp_path / "socket_ro")


@pytest.mark.parametrize("env", [
    {"XENSTORED_RUNDIR": "/r"}, {"XENSTORED_PATH": "/p/s"}, {},
    {"XENSTORED_PATH": "/p/s", "XENSTORED_RUNDIR": "/r"},
])
def test_every_user_gives_the_same_answer(monkeypatch, env):
    for name in ("XENSTORED_PATH", "XENSTORED_RUNDIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    want = sockets.daemon_socket(env)
    assert commands.socket_path() == want
    assert xs.daemon_socket() == want
    assert hv_cli.socket_path(sockets.rundir()) == want
    if "XENSTORED_PATH" not in env:
        assert Config(rundir=sockets.rundir()).socket_path == want


def test_clients_find_the_daemon_through_xenstored_rundir(monkeypatch, daemon):
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.setenv("XENSTORED_RUNDIR", daemon.rundir)
    with Client(timeout=10) as c:
        assert c.socket_path == daemon.socket_path
        c.write("/sock/rundir", b"1")
    with Client(read_only=True, timeout=10) as ro:
        assert ro.socket_path == daemon.ro_socket_path
        assert ro.read("/sock/rundir") == b"1"
        with pytest.raises(XenstoreError):
            ro.write("/sock/rundir", b"2")

    async def main():
        async with AsyncClient(timeout=10) as c:
            return c.socket_path, await c.read("/sock/rundir")
    assert asyncio.run(main()) == (daemon.socket_path, b"1")


def test_debian_tools_follow_the_same_rule(daemon, tmp_path):
    """libxenstore itself: $XENSTORED_PATH beats $XENSTORED_RUNDIR, which beats the default."""
    if not harness.debian_available():
        pytest.skip("Debian's xenstore-utils are not installed in /usr/bin")
    with Client(daemon.socket_path, timeout=10) as c:
        c.write("/sock/c", b"seen")
    elsewhere = str(tmp_path / "nothing-here")
    cases = [
        ({"XENSTORED_RUNDIR": daemon.rundir}, True),
        ({"XENSTORED_PATH": daemon.socket_path, "XENSTORED_RUNDIR": elsewhere}, True),
        ({"XENSTORED_PATH": os.path.join(elsewhere, "socket"),
          "XENSTORED_RUNDIR": daemon.rundir}, False),
    ]
    for extra, reaches in cases:
        env = harness.client_env(None, **extra)
        got = harness.run_debian("read", ["/sock/c"], env)
        assert (got.rc == 0 and got.stdout == b"seen\n") is reaches, (extra, got)
        ours = sockets.daemon_socket(env)
        assert (ours == daemon.socket_path) is reaches, (extra, ours)
