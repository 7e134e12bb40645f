"""Start-up errors are one line and an exit status; a daemon never takes another's sockets."""
import os
import socket

import pytest

from tests.daemon_process import DaemonProcess
from tests.waiting import wait_for
from tests.startup.helpers import assert_one_line_failure, run_xsd
from tests.wire import RawClient
from xenstore_protocol import Op


def test_run_dir_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run_xsd("--rundir", str(tmp_path / "file" / "run"))
    assert_one_line_failure(result, 1, "cannot create run directory", str(tmp_path / "file"),
                            "Not a directory")


def test_run_dir_that_cannot_be_written():
    # /proc exists and is a directory nobody, root included, can create a file in.
    result = run_xsd("--rundir", "/proc")
    assert_one_line_failure(result, 1, "cannot write in run directory /proc")


def test_state_dir_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run_xsd("--rundir", str(tmp_path / "run"), "--state-dir",
                     str(tmp_path / "file" / "state"))
    assert_one_line_failure(result, 1, "cannot create state directory")
    assert not os.path.exists(tmp_path / "run" / "socket")


def test_pid_file_that_cannot_be_written(tmp_path):
    result = run_xsd("--rundir", str(tmp_path / "run"), "--no-persist",
                     "--pid-file", str(tmp_path / "missing" / "xsd.pid"))
    assert_one_line_failure(result, 1, "cannot write pid file", "No such file")


def test_socket_path_that_is_not_a_socket(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "socket").write_text("precious")
    result = run_xsd("--rundir", str(run), "--no-persist")
    assert_one_line_failure(result, 1, "is not a socket")
    assert (run / "socket").read_text() == "precious"


def test_socket_path_too_long(tmp_path):
    run = tmp_path / ("r" * 120)
    result = run_xsd("--rundir", str(run), "--no-persist")
    assert_one_line_failure(result, 1, "too long")


def test_stale_socket_file_is_replaced(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(run / "socket"))          # bound, never listening: connect is refused
    stale.close()
    proc = DaemonProcess(run, ("--no-persist",)).start()
    try:
        with RawClient(proc.socket_path) as xs:
            assert xs.ok(Op.READ, b"/local/domain/0/name") == b"Domain-0"
    finally:
        proc.stop_checked()


@pytest.mark.parametrize("second_args", [(), ("--no-persist",)])
def test_second_daemon_refuses_to_take_the_sockets(tmp_path, second_args):
    run = tmp_path / "run"
    first = DaemonProcess(run, ("--no-persist",)).start()
    try:
        with RawClient(first.socket_path) as xs:
            xs.ok(Op.WRITE, payload=b"/mine\0first")
        inode = os.stat(first.socket_path).st_ino
        result = run_xsd("--rundir", str(run), "--state-dir", str(tmp_path / "state2"),
                         *second_args)
        assert_one_line_failure(result, 1, "another xenstore daemon answers on",
                                first.socket_path)
        assert os.stat(first.socket_path).st_ino == inode
        with RawClient(first.socket_path) as xs:          # still reachable, still the first
            assert xs.ok(Op.READ, b"/mine") == b"first"
        with RawClient(first.ro_socket_path) as xs:
            assert xs.ok(Op.READ, b"/mine") == b"first"
    finally:
        first.stop_checked()


def test_daemon_removes_only_the_socket_files_it_made(tmp_path):
    run = tmp_path / "run"
    first = DaemonProcess(run, ("--no-persist",)).start()
    os.unlink(first.socket_path)                 # an operator's rm, then a new daemon
    os.unlink(first.ro_socket_path)
    second = DaemonProcess(run, ("--no-persist",)).start()
    try:
        first.stop_checked()
        assert os.path.exists(second.socket_path) and os.path.exists(second.ro_socket_path)
        with RawClient(second.socket_path) as xs:
            assert xs.ok(Op.READ, b"/local/domain/0/name") == b"Domain-0"
    finally:
        second.stop_checked()
    assert not os.path.exists(second.socket_path)      # its own: removed
    assert not os.path.exists(second.ro_socket_path)


def test_pid_file_removed_only_while_it_names_this_daemon(tmp_path):
    pid_file = tmp_path / "xsd.pid"
    proc = DaemonProcess(tmp_path / "run", ("--no-persist", "-F", str(pid_file))).start()
    # The sockets accept (start() returns) a moment before the pid file is written; it is
    # written whole (renamed into place), so it is either absent or right.
    wait_for(pid_file.exists, what="the pid file")
    assert pid_file.read_text() == f"{proc.proc.pid}\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    pid_file.write_text("12345\n")               # another daemon's, written since
    proc.stop_checked()
    assert pid_file.read_text() == "12345\n"


@pytest.mark.parametrize("value", ["bogus", "fortran"])
def test_bad_xsd_native_is_one_line(tmp_path, value):
    """XSD_NATIVE picks the watch matcher (xsd/_native); a value it does not know is a
    start-up error, not an ImportError's traceback."""
    env = dict(os.environ, XSD_NATIVE=value)
    result = run_xsd("--rundir", str(tmp_path / "run"), "--no-persist", env=env)
    assert_one_line_failure(result, 1, f"XSD_NATIVE={value!r}", "auto, c, python")
    assert not os.path.exists(tmp_path / "run" / "socket")


@pytest.mark.parametrize("failure", ["metrics port in use", "another daemon"])
def test_nothing_on_stdout_from_a_start_that_fails(tmp_path, failure):
    """`export XENSTORED_PATH=...` and -P's pid tell a script the daemon serves: they are
    printed once both sockets accept (with READY=1), never by a start that then fails."""
    run = tmp_path / "run"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if failure == "metrics port in use":
            first = None
            args = ("--metrics", f"127.0.0.1:{taken.getsockname()[1]}")
        else:
            first = DaemonProcess(run, ("--no-persist",)).start()
            args = ("--state-dir", str(tmp_path / "state2"))
        try:
            result = run_xsd("--rundir", str(run), "-P", "--log-level", "WARNING", *args)
        finally:
            if first is not None:
                first.stop_checked()
    assert_one_line_failure(result, 1, "--metrics" if first is None else "another xenstore")
    assert result.stdout == ""


def test_export_line_and_pid_once_serving(tmp_path):
    proc = DaemonProcess(tmp_path / "run", ("-P", "--no-persist")).start()
    try:
        with RawClient(proc.socket_path) as xs:
            xs.ok(Op.READ, b"/")
        out = [line for line in proc.log().splitlines() if " INFO " not in line]
        assert out[:2] == [str(proc.proc.pid), f"export XENSTORED_PATH={proc.socket_path}"], out
    finally:
        proc.stop_checked()
