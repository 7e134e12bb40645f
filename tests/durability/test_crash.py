"""kill -9 at random moments under a mixed load: nothing acknowledged is lost, nothing half-applied.

Each round starts the daemon on the state of the previous one, runs writes,
removals and three-key transactions from several clients at once (so
batches hold several requests: group commit), SIGKILLs the daemon after a
random delay, restarts it and checks every client's subtree (crashload.py)
and CONTROL check.  A small --journal-max-bytes makes snapshots happen
during the load, so some kills land in or around one.  The longer run is
``bench/crash_soak.py``.
"""
import random
import threading
import time

from tests.daemon_process import DaemonProcess
from tests.durability import crashload
from tests.wire import RawClient
from xenstore_protocol import Op


def crash_rounds(rundir, rounds: int, seed: int, clients: int = 6, args=(), max_delay: float = 0.4):
    """Run ``rounds`` kill/restart rounds; return statistics.  Raises AssertionError on any loss."""
    rng = random.Random(seed)
    proc = DaemonProcess(rundir, ["--journal-max-bytes", "8192", *args]).start()
    with RawClient(proc.socket_path) as c:
        for i in range(clients):
            c.ok(Op.MKDIR, b"/crash/c%d" % i)
    models = [crashload.Model() for _ in range(clients)]
    stats = {"rounds": 0, "acknowledged": 0, "in_flight_applied": 0, "in_flight_lost": 0}
    try:
        for r in range(rounds):
            killer = threading.Timer(rng.uniform(0.01, max_delay), proc.proc.kill)
            killer.start()
            started = time.monotonic()
            done = crashload.run(proc.socket_path, models, rng, f"r{r}",
                                 stop=lambda: time.monotonic() - started > 20)
            killer.join()
            proc.proc.wait()
            proc.start()
            with RawClient(proc.socket_path) as c:
                models = crashload.verify(c, done)
                assert c.ok(Op.CONTROL, b"check") == b"OK\0", proc.log()[-3000:]
            stats["rounds"] += 1
            stats["acknowledged"] += sum(client.acked for client in done)
            for client, model in zip(done, models):
                if client.pending is not None and client.pending[0] in ("write", "rm", "commit"):
                    stats["in_flight_applied" if model is not client.model else "in_flight_lost"] += 1
        log = proc.log()
        stats["torn_tails"] = log.count("dropped a torn last record")
        stats["snapshots"] = log.count("snapshot epoch") - log.count("loaded ")   # beyond start-up
        assert "Traceback" not in log, log[-5000:]
        return stats
    finally:
        proc.kill()


def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path):
    stats = crash_rounds(tmp_path / "run", rounds=40, seed=1)
    assert stats["rounds"] == 40
    assert stats["acknowledged"] > 100, stats        # the load did run between the kills
    print(stats)


def test_sigkill_with_fsync_never_loses_nothing_acknowledged(tmp_path):
    """Without fsync the journal is still written before replies leave: a process crash loses nothing."""
    stats = crash_rounds(tmp_path / "run", rounds=8, seed=2, args=("--fsync", "never"))
    assert stats["rounds"] == 8
    print(stats)
