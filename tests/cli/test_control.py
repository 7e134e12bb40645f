"""xenstore-control: our shim against Xen 4.17's tool, on the same xsd daemon; and
live-update as xsd implements it."""
import os

import pytest

from tests.cli.harness import client_env, run
from tests.daemon_process import DaemonProcess
from tests.wire import RawClient
from xenstore_protocol import Op

C_TOOL = "/usr/lib/xen-4.17/bin/xenstore-control"
ARGV0 = "xenstore-control"
RUNNER = "import sys, watchlib.cli as cli; sys.exit(cli.control_main(sys.argv[1:]))"

pytestmark = pytest.mark.skipif(not os.access(C_TOOL, os.X_OK), reason=f"no {C_TOOL}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    proc = DaemonProcess(tmp_path_factory.mktemp("control") / "run", ("--no-persist",)).start()
    yield proc
    proc.stop_checked()


def c_tool(args, env):
    return run([ARGV0, *args], env, executable=C_TOOL)


def ours(args, env):
    return run([__import__("sys").executable, "-c", RUNNER, ARGV0, *args], env)


@pytest.mark.parametrize("args", [
    [], ["help"], ["check"], ["quota"], ["quota", "0"], ["no-such-command"],
    ["quota", "set", "bogus", "1"], ["print", "hello from the test"], ["log", "off"],
    ["live-update", "/usr/sbin/xsd-new"], ["live-update", "-c"], ["live-update", "-t"],
    ["live-update", "-c", "--foo", "/usr/sbin/xsd-new"],
])
def test_same_output_as_xen_tool(served, args):
    env = client_env(served.socket_path)
    assert ours(args, env) == c_tool(args, env)


def test_same_output_without_daemon(tmp_path):
    env = client_env(str(tmp_path / "nothing" / "socket"))
    theirs = c_tool(["help"], env)
    assert theirs.rc == 1 and theirs.stderr == b"Failed to contact Xenstored.\n"
    assert ours(["help"], env) == theirs


def test_live_update_as_xsd_does_it(tmp_path):
    proc = DaemonProcess(tmp_path / "run", ("--no-persist",)).start()
    try:
        with RawClient(proc.socket_path) as xs:
            xs.ok(Op.WRITE, payload=b"/kept\0across the update")
        env = client_env(proc.socket_path)
        # The C tool needs a binary, which xsd does not take: it cannot do this.
        assert c_tool(["live-update"], env).rc == 2
        result = ours(["live-update", "-t", "30"], env)
        assert result == (0, b"", b"")
        from tests.waiting import wait_for
        wait_for(lambda: proc.log().count("serving on") == 2, what="the new process serving")
        assert proc.alive()                        # same pid: execve in place
        with RawClient(proc.socket_path) as xs:
            assert xs.ok(Op.READ, b"/kept") == b"across the update"
    finally:
        proc.stop_checked()


def test_version():
    result = ours(["--version"], client_env())
    assert result.rc == 0 and result.stdout.startswith(b"xenstore-control (xsd) ")
