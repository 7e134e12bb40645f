"""Every option of the C xenstored 4.17 is accepted by xsd with its meaning, or said to
mean nothing in --help; --version; every default shown in --help."""
import os
import re
import signal
import subprocess

import pytest

from tests.daemon_process import DaemonProcess
from tests.startup.helpers import assert_one_line_failure, run_xsd
from tests.waiting import wait_for
from tests.wire import RawClient
from xenstore_protocol import Op
from xsd.__main__ import build_parser

XENSTORED = "/usr/lib/xen-4.17/bin/xenstored"


def c_options() -> set:
    """The options the C daemon's --help lists: {"-D", "--no-domain-init", ...}."""
    result = subprocess.run([XENSTORED, "--help"], capture_output=True, text=True, check=False)
    text = result.stdout + result.stderr
    found = set()
    for short, long in re.findall(r"^\s+(-\w), (--[\w-]+)", text, re.M):
        found.update((short, long))
    return found


def quota_table(socket_path: str) -> dict:
    with RawClient(socket_path) as xs:
        text = xs.ok(Op.CONTROL, b"quota").rstrip(b"\0").decode()
    # C xenstored's layout: "Quota settings:" then "<name> : <value> <description>"
    return {name: int(value) for name, value in
            re.findall(r"^([\w-]+)\s*:\s*(\d+)", text, re.M)}


def test_every_c_option_is_known_to_xsd():
    ours = set()
    for action in build_parser()._actions:
        ours.update(action.option_strings)
    theirs = c_options()
    assert len(theirs) == 38, theirs       # 19 options, short and long
    assert theirs <= ours, theirs - ours


def test_help_shows_every_default_and_the_accepted_ones():
    result = run_xsd("-H")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for action in build_parser()._actions:
        if action.help in (None, "==SUPPRESS==") or action.dest in ("help", "version"):
            continue
        help_text = " ".join(action.help.split())
        assert help_text.split("%")[0][:40] in text
        assert "default" in help_text or help_text.startswith("accepted") \
            or action.dest in ("quota", "verbose"), action.option_strings
    for option in ("--timeout", "--no-recovery", "--internal-db", "--live-update", "--event"):
        assert re.search(re.escape(option) + r".*?accepted", text), option
    assert run_xsd("--help").stdout == result.stdout


def test_version():
    result = run_xsd("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"xsd \d+\.\d+\.\d+\n", result.stdout)


def test_c_quota_options_set_the_quotas(daemon_factory):
    proc = daemon_factory("-E", "11", "--entry-size", "222", "-W", "33", "-t", "4",
                          "--perm-nb", "6", "-Q", "transaction-nodes=77", "--quota",
                          "outstanding=9", "-q", "memory=1000000", "-w", "watch-event=20",
                          "-R", "-I", "--internal-db=off", "-N", "-U", "--event", "3",
                          "--master-domid", "0", "--priv-domid", "0")
    table = quota_table(proc.socket_path)
    assert {k: table[k] for k in ("nodes", "node-size", "watches", "transactions",
                                  "permissions", "transaction-nodes", "outstanding")} == {
        "nodes": 11, "node-size": 222, "watches": 33, "transactions": 4, "permissions": 6,
        "transaction-nodes": 77, "outstanding": 9}


def test_path_max_option(daemon_factory):
    proc = daemon_factory("-M", "100")
    assert quota_table(proc.socket_path)["path-max"] == 100


def test_no_domain_init_pid_file_output_pid_verbose(tmp_path):
    pid_file = tmp_path / "xsd.pid"
    proc = DaemonProcess(tmp_path / "run", ("-D", "-F", str(pid_file), "-P", "-V",
                                            "--no-persist")).start()
    with RawClient(proc.socket_path) as xs:
        assert xs.error(Op.READ, b"/local/domain/0/name") == "ENOENT"
    pid = proc.proc.pid
    assert pid_file.read_text() == f"{pid}\n"
    assert re.search(rf"^{pid}$", proc.log(), re.M)
    assert "log level DEBUG" in proc.log()
    proc.stop_checked()
    assert not pid_file.exists()


def test_without_domain_init_options_dom0_is_written(daemon):
    with RawClient(daemon.socket_path) as xs:
        assert xs.ok(Op.READ, b"/local/domain/0/name") == b"Domain-0"


@pytest.mark.parametrize("args, fragment", [
    (("-E", "many"), "--entry-nb"),
    (("-t", "-1"), "--transaction"),
    (("-Q", "nodes"), "WHAT=N"),
    (("-Q", "bogus=3"), "bogus"),
    (("-Q", "nodes=4294967296"), "more than 4294967295"),
    (("--quota-nodes", "99999999999"), "more than 4294967295"),
    (("-q", "memory=4294967296"), "more than 4294967295"),
    (("-q", "nodes=3"), "memory"),
    (("-w", "watch-event=soon"), "soon"),
    (("-I", "maybe"), "maybe"),
    (("--log-level", "chatty"), "chatty"),
    (("--no-such-option",), "--no-such-option"),
    (("--fsync-interval", "nan"), "more than 0"),
    (("--fsync-interval", "inf"), "--fsync-interval"),
    (("--fsync-interval=-1",), "more than 0"),
    (("--fsync-interval", "0"), "--fsync-interval"),
    (("--fsync-interval", "soon"), "soon"),
    (("--log-summary-interval", "nan"), "--log-summary-interval"),
    (("--log-summary-interval=-inf",), "more than 0"),
    (("--log-summary-interval", "0"), "--log-summary-interval"),
    (("--max-watch-events", "0"), "1 or more"),
    (("--out-high-water", "0"), "1 or more"),
])
def test_bad_command_line_is_one_line(tmp_path, args, fragment):
    result = run_xsd("--rundir", str(tmp_path / "run"), *args)
    assert_one_line_failure(result, 2, fragment)
    assert not os.path.exists(tmp_path / "run" / "socket")


def test_fork_returns_once_serving(tmp_path):
    run, pid_file = tmp_path / "run", tmp_path / "xsd.pid"
    result = run_xsd("--rundir", str(run), "--no-persist", "--fork", "-F", str(pid_file),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, capture_output=False)
    assert result.returncode == 0
    pid = int(pid_file.read_text())
    try:
        with RawClient(str(run / "socket")) as xs:       # serving when the command returned
            assert xs.ok(Op.READ, b"/local/domain/0/name") == b"Domain-0"
        assert os.getsid(pid) == pid                      # its own session
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_file.exists(), what="the background daemon's exit")


def test_fork_reports_a_failed_start(tmp_path):
    result = run_xsd("--rundir", str(tmp_path / "run"), "--no-persist", "--fork",
                     "--hypervisor", "xen")
    assert result.returncode == 1
    assert "no Xen hypervisor interface here" in result.stderr
