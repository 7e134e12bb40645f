"""-T FILE: one readable line per connection, request, reply and watch event."""
import re

from tests.waiting import wait_for
from tests.wire import RawClient
from xenstore_protocol import Op

STAMP = r"\d{8} \d\d:\d\d:\d\d"


def test_trace_file_lines(daemon_factory, tmp_path):
    trace = tmp_path / "xsd.trace"
    proc = daemon_factory("-T", str(trace), "--no-persist")
    with RawClient(proc.socket_path) as watcher, RawClient(proc.socket_path) as writer:
        watcher.ok(Op.WATCH, b"/vm", b"tok")
        watcher.wait_events(1)
        writer.ok(Op.WRITE, payload=b"/vm/1/name\0web")
        watcher.wait_events(1)
        tx = int(writer.ok(Op.TRANSACTION_START, b"").rstrip(b"\0"))
        writer.ok(Op.READ, b"/vm/1/name", tx_id=tx)
        assert writer.error(Op.READ, b"/nonexistent") == "ENOENT"
    # The writer (rw#3) closes first, the watcher (rw#2) after it: a loaded daemon may see
    # the two hang-ups in different turns, so the file is read once both are in it.
    text = wait_for_text(trace, "DESTROY connection rw#3", "DESTROY connection rw#2")
    lines = text.splitlines()       # rw#1: the fixture's probe that the daemon is up
    assert "CREATE connection rw#2 (d0)" in lines
    patterns = [
        rf"IN  rw#2 \(d0\) {STAMP} WATCH rid=\d+ tx=0 \(/vm tok\)",
        rf"OUT rw#2 \(d0\) {STAMP} WATCH rid=\d+ tx=0 \(OK\)",
        rf"OUT rw#2 \(d0\) {STAMP} WATCH_EVENT rid=0 tx=0 \(/vm tok\)",
        rf"IN  rw#3 \(d0\) {STAMP} WRITE rid=\d+ tx=0 \(/vm/1/name web\)",
        rf"OUT rw#2 \(d0\) {STAMP} WATCH_EVENT rid=0 tx=0 \(/vm/1/name tok\)",
        rf"IN  rw#3 \(d0\) {STAMP} READ rid=\d+ tx={tx} \(/vm/1/name\)",
        rf"OUT rw#3 \(d0\) {STAMP} READ rid=\d+ tx={tx} \(web\)",
        rf"OUT rw#3 \(d0\) {STAMP} ERROR rid=\d+ tx=0 \(ENOENT\)",
    ]
    for pattern in patterns:
        assert any(re.fullmatch(pattern, line) for line in lines), (pattern, text)
    assert "DESTROY connection rw#2 (d0)" in lines


def test_long_payload_is_cut(daemon_factory, tmp_path):
    trace = tmp_path / "xsd.trace"
    proc = daemon_factory("--trace-file", str(trace), "--no-persist")
    with RawClient(proc.socket_path) as xs:
        xs.ok(Op.WRITE, payload=b"/big\0" + b"v" * 2000 + b"\n\x01")
    text = wait_for_text(trace, "DESTROY connection rw#2")
    line = next(row for row in text.splitlines() if "WRITE" in row and "IN " in row)
    assert line.endswith("...)") and len(line) < 400, line


def wait_for_text(path, *needles: str) -> str:
    """The trace's text once every one of ``needles`` is in it."""
    wait_for(lambda: path.exists() and all(n in path.read_text() for n in needles),
             what=" and ".join(needles))
    return path.read_text()
