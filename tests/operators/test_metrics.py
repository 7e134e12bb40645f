"""xsd --metrics: a scrape of a running daemon whose guests did known work, checked by
Debian's promtool and against what was done."""
import math
import socket
import subprocess
import sys
import time

from xenstore_protocol import Op

from tests.daemon_process import ROOT
from xsd.core.stats import SAMPLE_EVERY

from .conftest import cooperate, flood, http_get, promtool_check, samples, set_quota, wait_for


def node_memory(client, domid: int) -> int:
    """What ``domid``'s nodes are charged (docs/operators.md), summed over the tree read
    through the wire: 40 + path + value + 8 per permission, per node it owns."""
    total, stack = 0, ["/"]
    while stack:
        path = stack.pop()
        perms = client.get_perms(path)
        if int(perms[0][1:]) == domid:
            total += 40 + len(path) + len(client.read(path)) + 8 * len(perms)
        stack.extend(path.rstrip("/") + "/" + name for name in client.directory(path))
    return total


def test_scrape_counts_known_work_and_passes_promtool(opsd, guests, toolstack):
    a, b = guests.start(), guests.start()
    set_quota(toolstack, b.domid, "nodes", 9)           # 7 dirs already B's: room for 2
    for i in range(5):
        a.write(f"data/k{i}", b"v" * 10)
    assert a.error(Op.READ, b"data/missing") == "ENOENT"
    a.watch("data", b"tok")
    a.wait_events(1)                                    # the initial event
    a.write("data/k0", b"again")
    a.wait_events(1)
    b.write("data/x1", b"1")
    b.write("data/x2", b"2")
    for i in range(3):
        assert b.error(Op.WRITE, payload=f"data/y{i}\0v".encode()) == "ENOSPC"

    status, headers, text = http_get(opsd.metrics_path)
    assert status == "HTTP/1.0 200 OK"
    assert "text/plain; version=0.0.4" in headers
    check = promtool_check(text)
    assert check.returncode == 0, check.stdout + check.stderr

    m = samples(text)
    A, B = str(a.domid), str(b.domid)
    # Guest A: 5 + 1 writes ok, one READ refused; B: 2 writes ok, 3 refused by the nodes quota.
    assert m[f'xsd_domain_requests_total{{domid="{A}"}}'] == 5 + 1 + 1 + 1
    assert m[f'xsd_domain_requests_total{{domid="{B}"}}'] == 2 + 3
    assert m['xsd_requests_total{outcome="ENOENT",type="READ"}'] >= 1
    assert m['xsd_requests_total{outcome="ENOSPC",type="WRITE"}'] == 3
    assert m[f'xsd_domain_quota_refusals_total{{domid="{B}",quota="nodes"}}'] == 3
    assert m[f'xsd_domain_nodes{{domid="{A}"}}'] == 7 + 5
    assert m[f'xsd_domain_nodes{{domid="{B}"}}'] == 9
    assert m[f'xsd_domain_quota_limit{{domid="{B}",quota="nodes"}}'] == 9
    assert m[f'xsd_domain_quota_limit{{domid="{A}",quota="nodes"}}'] == 1000
    assert m[f'xsd_domain_watches{{domid="{A}"}}'] == 1
    assert m[f'xsd_domain_node_memory_bytes{{domid="{A}"}}'] == node_memory(toolstack, a.domid)
    assert m["xsd_watch_events_fired_total"] >= 2
    assert m['xsd_connections{kind="guest-ring"}'] == 2
    assert m['xsd_connections{kind="socket"}'] >= 1        # the toolstack
    assert m["xsd_domains"] == 2
    # Latency: the first request and every SAMPLE_EVERY-th after it are timed.
    requests = sum(v for k, v in m.items() if k.startswith("xsd_requests_total{"))
    timed = [v for k, v in m.items() if k.startswith("xsd_request_latency_seconds_count{")]
    assert sum(timed) == math.ceil(requests / SAMPLE_EVERY)
    for key, count in m.items():
        if key.startswith("xsd_request_latency_seconds_count{"):
            kind = key[key.index("{"):]
            assert m["xsd_request_latency_seconds_bucket{le=\"+Inf\"," + kind[1:]] == count
    assert m["xsd_flush_duration_seconds_count"] > 0
    assert m["xsd_journal_bytes"] > 0
    assert m["xsd_live_update_restored"] == 0
    assert m["process_open_fds"] > 0


def test_dropped_events_counted_per_domain(opsd, guests, toolstack):
    """A guest that watches and never reads its ring: its events are dropped and counted."""
    reader, writer = guests.start(), guests.start()
    shared = cooperate(toolstack, reader, writer)
    flood(writer, shared, 500)
    text = http_get(opsd.metrics_path)[2]
    m = samples(text)
    dropped = m[f'xsd_domain_watch_events_dropped_total{{domid="{reader.domid}"}}']
    assert dropped > 0
    assert m["xsd_watch_events_dropped_total"] == dropped
    assert promtool_check(text).returncode == 0


def test_counts_survive_the_connection(opsd, toolstack):
    """Counters never go back: a closed connection's requests stay in dom0's total."""
    from tests.wire import RawClient
    with RawClient(opsd.socket_path) as c:
        for _ in range(7):
            c.ok(Op.WRITE, b"/gone", b"x")
    wait_for(lambda: samples(http_get(opsd.metrics_path)[2])
             ['xsd_connections{kind="socket"}'] == 1, what="the client's session closed")
    m = samples(http_get(opsd.metrics_path)[2])
    assert m['xsd_requests_total{outcome="ok",type="WRITE"}'] == 7


def test_tcp_address_and_other_paths(daemon_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon_factory("--metrics", f"127.0.0.1:{port}")
    status, _, text = http_get(("127.0.0.1", port))
    assert status == "HTTP/1.0 200 OK" and "xsd_requests_total" in text
    assert http_get(("127.0.0.1", port), "/other")[0] == "HTTP/1.0 404 Not Found"
    # Clients that send nothing, or garbage, cost the daemon a bounded number of descriptors:
    # beyond MAX_CLIENTS at once, a connection is closed unanswered.
    from xsd.metrics import MAX_CLIENTS
    idle = []
    try:
        for _ in range(MAX_CLIENTS):
            idle.append(socket.create_connection(("127.0.0.1", port)))
        with socket.socket() as junk:
            junk.connect(("127.0.0.1", port))
            junk.sendall(b"\xff" * 20000)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            time.sleep(0.2)
            assert extra.recv(10) == b""                    # closed unanswered
    finally:
        for s in idle:
            s.close()
    wait_for(lambda: http_get(("127.0.0.1", port))[0] == "HTTP/1.0 200 OK", what="served again")


def test_off_by_default(daemon):
    assert "--metrics" not in " ".join(daemon.args)
    import os
    assert not [f for f in os.listdir(daemon.rundir) if f.endswith(".sock")]


def _xsd(*args, tmp_path):
    return subprocess.run([sys.executable, "-m", "xsd", "--rundir", str(tmp_path / "r"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_bad_address_is_one_line_and_a_status(tmp_path):
    done = _xsd("--metrics", "nonsense", tmp_path=tmp_path)
    assert done.returncode == 2
    assert "--metrics: 'nonsense': expected HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_address_in_use_is_one_line_and_a_status(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = _xsd("--metrics", f"127.0.0.1:{port}", tmp_path=tmp_path)
    assert done.returncode == 1
    assert f"xsd: --metrics 127.0.0.1:{port}: " in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "r" / "socket").exists()


def test_live_update_keeps_serving_metrics(opsd):
    """The new process binds the same address again and says it took over."""
    from tests.durability.test_live_update import wait_closed, wait_log
    from tests.wire import RawClient
    before = samples(http_get(opsd.metrics_path)[2])
    assert before["xsd_live_update_restored"] == 0
    with RawClient(opsd.socket_path) as c:
        assert c.ok(Op.CONTROL, b"live-update") == b"OK\0"
        wait_closed(c)
    wait_log(opsd, "live update: restored from pid")
    wait_for(lambda: opsd.log().count("metrics on ") == 2, what="metrics served again")
    text = http_get(opsd.metrics_path)[2]
    after = samples(text)
    assert after["xsd_live_update_restored"] == 1
    assert promtool_check(text).returncode == 0
