"""SIGHUP, as C xenstored: keep serving and reopen the files it writes (the -T trace,
CONTROL logfile), so logrotate can move them away."""
import signal

from tests.startup.test_trace import wait_for_text
from tests.waiting import wait_for
from tests.wire import RawClient
from xenstore_protocol import Op


def test_sighup_keeps_serving_and_reopens_the_trace_file(daemon_factory, tmp_path):
    trace = tmp_path / "trace"
    proc = daemon_factory("-T", str(trace), "--no-persist")
    with RawClient(proc.socket_path) as xs:
        xs.ok(Op.WRITE, payload=b"/before\0x")
        wait_for_text(trace, "/before x")
        trace.rename(tmp_path / "trace.1")
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(trace.exists, what="a new trace file after SIGHUP")
        xs.ok(Op.WRITE, payload=b"/after\0y")
        assert xs.ok(Op.READ, b"/before") == b"x"
    wait_for_text(trace, "/after y")
    assert proc.alive()
    assert "/after" not in (tmp_path / "trace.1").read_text()
    assert "SIGHUP" in proc.log()


def test_sighup_reopens_the_control_logfile(daemon, tmp_path):
    log = tmp_path / "xsd-control.log"
    with RawClient(daemon.socket_path) as xs:
        xs.ok(Op.CONTROL, b"logfile", str(log).encode())
        xs.ok(Op.CONTROL, b"print", b"first")
        log.rename(tmp_path / "xsd-control.log.1")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(log.exists, what="a new logfile after SIGHUP")
        xs.ok(Op.CONTROL, b"print", b"second")
    assert "control print: second" in log.read_text()
    assert "second" not in (tmp_path / "xsd-control.log.1").read_text()
    assert daemon.alive()
