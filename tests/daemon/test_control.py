"""CONTROL hardening (issue 12 items 3, 5, 6) through a real daemon's sockets."""
import os

import pytest

from xenstore_protocol import Op

from tests.wire import RawClient


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("command", [
    [b"quota", b"set", b"nodes", b"1"], [b"quota-soft", b"set", b"memory", b"1"],
    [b"log", b"on"], [b"logfile", b"LOG"], [b"memreport", b"REPORT"], [b"print", b"x"],
    [b"live-update", b"-s"],
])
def test_read_only_socket_refuses_control_that_changes_or_writes(daemon, tmp_path, command):
    command = [tmp_path.joinpath(c.decode()).as_posix().encode() if c in (b"LOG", b"REPORT")
               else c for c in command]
    with RawClient(daemon.ro_socket_path) as ro, RawClient(daemon.socket_path) as rw:
        before = rw.ok(Op.CONTROL, b"quota")
        assert ro.error(Op.CONTROL, *command) == "EROFS"
        assert rw.ok(Op.CONTROL, b"quota") == before
        assert not tmp_path.joinpath("LOG").exists() and not tmp_path.joinpath("REPORT").exists()
        # What only reads stays allowed there.
        assert ro.ok(Op.CONTROL, b"quota") == before
        ro.check()
        assert b"nodes" in ro.ok(Op.CONTROL, b"memreport")
        assert b"quota-soft" in ro.ok(Op.CONTROL, b"help")


def test_logfile_replaces_its_file_without_leaking_descriptors(daemon, xs, tmp_path):
    logs = [tmp_path / f"log{i}" for i in range(2)]
    xs.ok(Op.CONTROL, b"logfile", str(logs[0]).encode())
    fds = _open_fds(daemon.proc.pid)
    for _ in range(100):
        xs.ok(Op.CONTROL, b"logfile", str(logs[1]).encode())
    assert _open_fds(daemon.proc.pid) <= fds
    xs.ok(Op.CONTROL, b"print", b"once")
    assert logs[1].read_text().count("control print: once") == 1
    assert "once" not in logs[0].read_text()


@pytest.mark.parametrize("command,error", [
    ([b"memreport", b""], "EINVAL"), ([b"logfile", b""], "EINVAL"),
    ([b"memreport", b"/nonexistent-dir/report"], "ENOENT"),
    ([b"logfile", b"/nonexistent-dir/log"], "ENOENT"),
    ([b"memreport", b"/"], "EISDIR"), ([b"logfile", b"/"], "EISDIR"),
])
def test_bad_control_file_names_are_errors_not_tracebacks(daemon, xs, command, error):
    assert xs.error(Op.CONTROL, *command) == error
    xs.check()
    assert "Traceback" not in daemon.log()


def test_help_says_live_update_needs_no_file(xs):
    """C xenstored's help text comes first, byte for byte (its `<file>` included:
    tests/interop/test_wire_differential.py); xsd's own lines after it correct that."""
    text = xs.ok(Op.CONTROL, b"help").rstrip(b"\0").decode()
    ours = text.split("help\t\n", 1)[1]
    live = [line for line in ours.splitlines() if "live-update" in line]
    assert live and "live-update needs no <file>" in live[0], ours
