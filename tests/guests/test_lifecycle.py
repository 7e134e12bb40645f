"""Domains come and go: @introduceDomain / @releaseDomain, XSA-419 clean-up, RESUME, SET_TARGET,
and a reused domid that inherits nothing (XSA-322 / XSA-417)."""
import os
import signal

import pytest

from xenstore_protocol import Op

from xsd.hv_cli import toolstack_cleanup, toolstack_introduce
from xsd.hypervisor.guest_client import SocketClient
from xsd.hypervisor.mock import MockControl

from .conftest import Guests, memreport, usage, wait_for

IN = [(b"@introduceDomain", b"in")]
OUT = [(b"@releaseDomain", b"out")]


def introduced(client, domid) -> bool:
    return client.ok(Op.IS_DOMAIN_INTRODUCED, str(domid).encode()) == b"T\0"


def test_domain_death_releases_it_and_deletes_the_nodes_it_owns(guests, hv, toolstack, watcher):
    guest = guests.start()
    domid, home = guest.domid, f"/local/domain/{guest.domid}"
    assert watcher.wait_events(1) == IN
    guest.write("data/a/b", b"1")
    guest.watch("data", b"t")
    guest.transaction_start()
    assert usage(toolstack, domid)["watches"][0] == "1"
    hv.destroy(domid)
    assert watcher.wait_events(1) == OUT
    assert not introduced(toolstack, domid)
    # XSA-419: what the domain owned is gone; what dom0 owns under its home stays.
    assert toolstack.error(Op.READ, f"{home}/data".encode()) == "ENOENT"
    assert toolstack.directory(home) == ["vm", "name", "domid"]
    report = memreport(toolstack)
    assert report["watches"] == "2" and report["transactions"] == "0"   # the watcher's two
    assert toolstack.ok(Op.CONTROL, b"check") == b"OK\0"
    assert watcher.quiet_events(0.1) == []


def test_a_dying_domain_is_released(guests, hv, toolstack, watcher):
    guest = guests.start()
    watcher.wait_events(1)
    hv.set_dying(guest.domid)
    assert watcher.wait_events(1) == OUT
    assert not introduced(toolstack, guest.domid)


def test_shutdown_fires_release_domain_once_until_resume(guests, hv, toolstack, watcher):
    guest = guests.start()
    domid = guest.domid
    watcher.wait_events(1)
    hv.shutdown(domid, "suspend")
    assert watcher.wait_events(1) == OUT
    assert introduced(toolstack, domid)
    assert guest.read("name")                     # still served: shut down is not dead
    hv.create()                                   # another VIRQ: the shutdown is old news
    assert watcher.quiet_events(0.3) == []
    toolstack.ok(Op.RESUME, str(domid).encode())
    hv.create()                                   # still shut down, and RESUME re-armed it
    assert watcher.wait_events(1) == OUT
    hv.resume(domid)
    assert watcher.quiet_events(0.3) == []
    toolstack.ok(Op.RESUME, str(domid).encode())
    hv.crash(domid)
    assert watcher.wait_events(1) == OUT
    hv.destroy(domid)
    assert watcher.wait_events(1) == OUT
    assert not introduced(toolstack, domid)


def test_release_tears_the_ring_down_and_reintroduction_serves_afresh(guests, hv, toolstack, watcher):
    guest = guests.start()
    domid = guest.domid
    watcher.wait_events(1)
    guest.watch("data", b"w")
    guest.wait_events(1)
    toolstack.ok(Op.RELEASE, str(domid).encode())
    assert watcher.wait_events(1) == OUT
    assert memreport(toolstack)["watches"] == "2"
    row = hv.record(domid)
    toolstack.ok(Op.INTRODUCE, str(domid).encode(), str(row["store_mfn"]).encode(), b"1")
    assert watcher.wait_events(1) == IN
    # Served again, by a new session: no watch, and no grant made to the released
    # incarnation (r<domid> on its home went with it, as C xenstored's generation check).
    assert guest.ok(Op.GET_DOMAIN_PATH, str(domid).encode()) == f"/local/domain/{domid}\0".encode()
    assert guest.error(Op.READ, b"name") == "EACCES"
    assert usage(toolstack, domid)["watches"][0] == "0"


def test_introduce_with_a_wrong_ring_or_port_is_refused(guests, hv, toolstack, watcher):
    row = guests.create(introduce=False)
    domid = str(row.domid).encode()
    assert toolstack.error(Op.INTRODUCE, domid, b"12345", b"1") == "EINVAL"
    assert toolstack.error(Op.INTRODUCE, domid, str(row["store_mfn"]).encode(), b"9") == "EINVAL"
    assert not introduced(toolstack, row.domid)
    toolstack.ok(Op.INTRODUCE, domid, str(row["store_mfn"]).encode(), b"1")
    assert watcher.wait_events(1) == IN
    guest = guests.open(row.domid)
    assert guest.error(Op.READ, b"domid") == "EACCES"     # no toolstack nodes: nothing to read
    assert guest.ok(Op.GET_DOMAIN_PATH, domid) == b"/local/domain/" + domid + b"\0"

def test_a_domain_the_hypervisor_lacks_is_released_at_the_next_check(hv, toolstack, watcher):
    toolstack.ok(Op.INTRODUCE, b"42", b"1", b"1")     # C xenstored accepts this too
    assert watcher.wait_events(1) == IN
    assert introduced(toolstack, 42)
    hv.create()
    assert watcher.wait_events(1) == OUT
    assert not introduced(toolstack, 42)


def test_reused_domid_inherits_nothing(guests, hv, toolstack, watcher):
    guest = guests.start(domid=7)
    watcher.wait_events(1)
    toolstack.write("/shared", b"s")
    toolstack.set_perms("/shared", "n0", "r7")
    toolstack.ok(Op.SET_QUOTA, b"7", b"nodes", b"20")
    toolstack.set_perms("@releaseDomain", "n0", "r7")
    assert guest.read("/shared") == b"s"
    guest.write("data/old", b"1")
    guest.watch("/shared", b"g")
    old_uuid = hv.record(7)["uuid"]
    hv.destroy(7)
    assert watcher.wait_events(1) == OUT
    toolstack_cleanup(toolstack, 7, old_uuid)
    again = guests.start(domid=7)
    assert again.error(Op.READ, b"/shared") == "EACCES"
    assert toolstack.get_perms("/shared") == ["n0"]
    assert toolstack.get_perms("@releaseDomain") == ["n0"]
    assert toolstack.ok(Op.GET_QUOTA, b"7", b"nodes") == b"1000\0"
    assert again.error(Op.READ, b"data/old") == "ENOENT"
    assert usage(toolstack, 7)["watches"][0] == "0"


def test_domid_destroyed_and_recreated_between_two_checks_is_released(daemon, guests, hv, toolstack,
                                                                       watcher):
    guest = guests.start(domid=9)
    watcher.wait_events(1)
    guest.write("data/x", b"1")
    os.kill(daemon.proc.pid, signal.SIGSTOP)      # both changes reach the daemon in one check
    try:
        hv.destroy(9)
        hv.create(domid=9)
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
    assert watcher.wait_events(1) == OUT
    assert not introduced(toolstack, 9)
    assert toolstack.error(Op.READ, b"/local/domain/9/data/x") == "ENOENT"


def test_set_target_gives_a_device_model_its_targets_rights(guests, hv, toolstack, watcher):
    target, dm, other = guests.start(), guests.start(), guests.start()
    watcher.wait_events(3)
    target.write("data/disk", b"d")
    other.write("data/private", b"p")
    disk = f"/local/domain/{target.domid}/data/disk".encode()
    assert dm.error(Op.READ, disk) == "EACCES"
    toolstack.ok(Op.SET_TARGET, str(dm.domid).encode(), str(target.domid).encode())
    assert dm.ok(Op.READ, disk) == b"d"
    dm.write(disk.decode(), b"e")
    assert target.read("data/disk") == b"e"
    assert dm.read(f"/local/domain/{target.domid}/name") == target.read("name")
    assert dm.error(Op.READ, f"/local/domain/{other.domid}/data/private".encode()) == "EACCES"
    # The target dies: its device model keeps nothing, not even over a new domain with its domid.
    hv.destroy(target.domid)
    assert watcher.wait_events(1) == OUT
    reborn = guests.start(domid=target.domid)
    reborn.write("data/disk", b"new")
    assert dm.error(Op.READ, disk) == "EACCES"


def test_set_target_reaches_a_device_models_watch_registered_before_it(guests, toolstack):
    """The permission check of watch events learns the new target at once (the C registry
    is told at Daemon.state_changed), not only at the watcher's next registration."""
    target, dm = guests.start(), guests.start()
    target.write("data/disk", b"d")
    path = f"/local/domain/{target.domid}/data"
    dm.watch(path, b"t")
    assert dm.wait_events(1) == [(path.encode(), b"t")]          # the initial event
    target.write("data/disk", b"e")
    assert dm.quiet_events(0.2) == []                              # not its to read (XSA-115)
    toolstack.ok(Op.SET_TARGET, str(dm.domid).encode(), str(target.domid).encode())
    target.write("data/disk", b"f")
    assert dm.wait_events(1) == [(f"{path}/disk".encode(), b"t")]


def test_keep_orphans_keeps_a_dead_domains_nodes_and_gives_them_to_dom0(daemon_factory):
    proc = daemon_factory("--keep-orphans")
    with SocketClient(proc.socket_path, timeout=10) as toolstack:
        made = Guests(proc, MockControl(proc.rundir), toolstack)
        try:
            guest = made.start()
            guest.write("data/x", b"1")
            toolstack.set_perms(f"/local/domain/{guest.domid}/data/x", f"n{guest.domid}", "r0", "b3")
            toolstack.ok(Op.WATCH, b"@releaseDomain", b"out")
            toolstack.wait_events(1)
            made.hv.destroy(guest.domid)
            assert toolstack.wait_events(1) == OUT
            path = f"/local/domain/{guest.domid}/data/x"
            assert toolstack.read(path) == b"1"
            assert toolstack.get_perms(path) == ["n0", "r0", "b3"]
            assert toolstack.ok(Op.CONTROL, b"check") == b"OK\0"
        finally:
            made.close()


def test_toolstack_introduction_through_xsd_hv_helper(guests, hv, toolstack, watcher):
    row = hv.create(name="via-helper")
    toolstack_introduce(toolstack, row)
    assert watcher.wait_events(1) == IN
    home = f"/local/domain/{row.domid}"
    assert toolstack.get_perms(home) == ["n0", f"r{row.domid}"]
    assert toolstack.get_perms(f"{home}/data") == [f"n{row.domid}"]
    assert toolstack.read(f"{home}/vm") == f"/vm/{row['uuid']}".encode()


def test_a_restarted_daemon_serves_restored_guests_and_releases_the_dead(daemon, guests, hv):
    alive, dead = guests.start(), guests.start()
    alive.write("data/x", b"1")
    daemon.stop()
    hv.destroy(dead.domid)                         # dies while xsd is down
    daemon.start()
    with SocketClient(daemon.socket_path, timeout=10) as toolstack:
        if not introduced(toolstack, alive.domid):
            pytest.skip("this daemon does not keep its state across a restart")
        assert alive.read("data/x") == b"1"        # its ring is served again
        wait_for(lambda: not introduced(toolstack, dead.domid), what="the dead domain released")
