"""kill -9 at random moments while a guest works on its ring: the guest never notices.

A guest domain on the mock hypervisor keeps its ring across every crash and
never reconnects, re-registers or retries by itself beyond what xenbus does
(EAGAIN at a transaction's end).  Each of its requests must be answered, by
the daemon that got it or by the next one (guest.py consumes requests only
once they are journaled and answered); every acknowledged write must be in
the store; a transaction is all or nothing; its watch keeps firing.
"""
import random
import threading
import time

from tests.daemon_process import DaemonProcess
from tests.durability.domains import introduce
from tests.wire import RawClient
from xenstore_protocol import Op, XenstoreError
from xsd.hypervisor.guest_client import GuestClient

DOMID = 11


def guest_load(guest, stop, acked: dict, pairs: list, errors: list) -> None:
    """Writes of increasing values, and two-key transactions retried on EAGAIN, until ``stop``."""
    i = 0
    try:
        while not stop.is_set():
            i += 1
            if i % 5:
                guest.write(f"data/k{i % 13}", b"%d" % i)
                acked[f"data/k{i % 13}"] = b"%d" % i
                continue
            while True:
                tx = guest.transaction_start()
                guest.write("data/pair/a", b"%d" % i, tx_id=tx)
                guest.write("data/pair/b", b"%d" % i, tx_id=tx)
                try:
                    guest.transaction_end(tx)
                except XenstoreError as err:
                    if err.name != "EAGAIN":
                        raise
                    continue
                pairs.append(i)
                break
    except Exception as err:            # reported by the test, with the round it came in
        errors.append(err)


def guest_crash_rounds(rundir, rounds: int, seed: int) -> dict:
    """SIGKILL the daemon ``rounds`` times under a guest's load; AssertionError on any loss."""
    rng = random.Random(seed)
    proc = DaemonProcess(rundir, ["--journal-max-bytes", "8192"]).start()
    guest = None
    try:
        introduce(proc, DOMID, "crashy")
        guest = GuestClient(proc.rundir, DOMID, timeout=30)
        guest.watch("data", b"tok")
        assert guest.wait_events(1) == [(b"data", b"tok")]
        acked, pairs, errors = {}, [], []
        stop = threading.Event()
        worker = threading.Thread(target=guest_load, args=(guest, stop, acked, pairs, errors))
        worker.start()
        for _ in range(rounds):
            time.sleep(rng.uniform(0.02, 0.3))
            proc.proc.kill()
            proc.proc.wait()
            proc.start()
            time.sleep(0.1)
            if errors:
                break
        stop.set()
        worker.join(60)
        assert not worker.is_alive(), "the guest is stuck on a request no daemon answered"
        assert errors == []
        assert len(acked) == 13 and len(pairs) > 3, (acked, pairs)
        home = f"/local/domain/{DOMID}/"
        with RawClient(proc.socket_path) as c:
            for path, value in acked.items():
                assert c.ok(Op.READ, (home + path).encode()) == value, path
            a = c.ok(Op.READ, (home + "data/pair/a").encode())
            assert c.ok(Op.READ, (home + "data/pair/b").encode()) == a == b"%d" % pairs[-1]
            c.check()
        assert guest.take_events()                       # the watch kept firing
        assert "Traceback" not in proc.log()
        return {"rounds": rounds, "writes": len(acked), "transactions": len(pairs)}
    finally:
        if guest is not None:
            guest.close()
        proc.kill()


def test_a_guest_rides_through_sigkills_without_noticing(tmp_path):
    assert guest_crash_rounds(tmp_path / "run", rounds=8, seed=7)["rounds"] == 8
