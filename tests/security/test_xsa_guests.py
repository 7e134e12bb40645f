"""The advisories that concern unprivileged domains, exercised by guests on mock-hypervisor rings.

Each docstring says what the bug was; the test asserts xsd is not affected.
"""
import random

from xenstore_protocol import Op

from tests.guests.conftest import usage
from tests.waiting import wait_for

OUT = [(b"@releaseDomain", b"out")]


def check_ok(client):
    assert client.ok(Op.CONTROL, b"check") == b"OK\0"


def test_xsa_115_no_watch_event_for_an_unreadable_node(guests, toolstack):
    """XSA-115: watch events told a guest about nodes it could not read."""
    guest = guests.start()
    guest.watch("/local/domain/0", b"spy")
    guest.watch("/tool", b"spy2")
    guest.wait_events(2)
    toolstack.write("/local/domain/0/secret", b"x")
    toolstack.write("/tool/hidden", b"y")
    toolstack.rm("/tool/hidden")
    assert guest.quiet_events(0.3) == []
    toolstack.write("/tool/open", b"z")
    toolstack.set_perms("/tool/open", "n0", f"r{guest.domid}")   # now readable: the change is told
    assert guest.wait_events(1) == [(b"/tool/open", b"spy2")]


def test_xsa_322_and_417_reused_domid_inherits_nothing(guests, hv, toolstack, watcher):
    """XSA-322/417: a new domain reusing a dead domain's id got its nodes, permissions and quota."""
    guest = guests.start(domid=11)
    watcher.wait_events(1)
    toolstack.write("/granted", b"g")
    toolstack.set_perms("/granted", "n0", "r11")
    toolstack.ok(Op.SET_QUOTA, b"11", b"nodes", b"3000")
    guest.write("data/leftover", b"1")
    hv.destroy(11)
    assert watcher.wait_events(1) == OUT
    wait_for(lambda: toolstack.ok(Op.IS_DOMAIN_INTRODUCED, b"11") == b"F\0", what="release")
    again = guests.start(domid=11)
    assert again.error(Op.READ, b"/granted") == "EACCES"
    assert again.error(Op.READ, b"data/leftover") == "ENOENT"
    assert toolstack.ok(Op.GET_QUOTA, b"11", b"nodes") == b"1000\0"
    check_ok(toolstack)


def test_xsa_352_guest_cannot_change_an_owner(guests, toolstack):
    """XSA-352: an unprivileged domain could give a node away (or take one) by SET_PERMS."""
    guest = guests.start()
    other = guests.start()
    guest.write("data/mine", b"1")
    assert guest.error(Op.SET_PERMS, b"data/mine", f"n{other.domid}".encode()) == "EPERM"
    assert guest.error(Op.SET_PERMS, b"data/mine", b"n0") == "EPERM"
    assert guest.get_perms("data/mine") == [f"n{guest.domid}"]
    toolstack.write("/tool/t", b"x")
    toolstack.set_perms("/tool/t", "n0", f"b{guest.domid}")
    assert guest.error(Op.SET_PERMS, b"/tool/t", f"n{guest.domid}".encode()) == "EACCES"
    check_ok(toolstack)


def test_xsa_353_guest_cannot_touch_the_root_against_its_permissions(guests, toolstack):
    """XSA-353: writes and removals at / were allowed to a guest regardless of permissions."""
    guest = guests.start()
    before = toolstack.ok(Op.DIRECTORY, b"/")
    assert guest.error(Op.WRITE, payload=b"/\0x") == "EACCES"
    assert guest.error(Op.WRITE, payload=b"/newtop\0x") == "EACCES"
    assert guest.error(Op.MKDIR, b"/newtop") == "EACCES"
    assert guest.error(Op.RM, b"/tool") == "EACCES"
    assert guest.error(Op.RM, b"/") == "EINVAL"
    assert guest.error(Op.SET_PERMS, b"/", f"b{guest.domid}".encode()) == "EACCES"
    assert toolstack.ok(Op.DIRECTORY, b"/") == before
    assert toolstack.ok(Op.GET_PERMS, b"/") == b"n0\0"


def _quota_story(guest, toolstack, in_tx):
    """Create a/b/c/d with room for only two more nodes: refused whole, nothing half-made."""
    used = int(usage(toolstack, guest.domid)["nodes"][0])
    toolstack.ok(Op.SET_QUOTA, str(guest.domid).encode(), b"nodes", str(used + 2).encode())
    tx = guest.transaction_start() if in_tx else 0
    assert guest.error(Op.WRITE, payload=b"data/a/b/c/d\0v", tx_id=tx) == "ENOSPC"
    if in_tx:
        guest.transaction_end(tx)
    assert guest.error(Op.READ, b"data/a") == "ENOENT"
    assert int(usage(toolstack, guest.domid)["nodes"][0]) == used
    guest.write("data/a/b", b"fits")                       # exactly the room left
    assert guest.error(Op.WRITE, payload=b"data/x\0v") == "ENOSPC"
    check_ok(toolstack)


def test_xsa_414_415_421_quota_failure_midway_leaves_a_consistent_store(guests, toolstack):
    """XSA-414/415/421: hitting a quota half-way through creating parents left half-made nodes
    and wrong accounting (outside transactions)."""
    guest = guests.start()
    guest.mkdir("data")
    _quota_story(guest, toolstack, in_tx=False)


def test_xsa_414_415_421_quota_failure_midway_in_a_transaction(guests, toolstack):
    """The same, inside a transaction that is then committed."""
    guest = guests.start()
    guest.mkdir("data")
    _quota_story(guest, toolstack, in_tx=True)


def test_xsa_419_nodes_of_a_destroyed_domain_are_removed_and_quota_freed(guests, hv, toolstack, watcher):
    """XSA-419: nodes owned by a dead domain stayed, and a new domain could inherit them."""
    guest = guests.start()
    domid = guest.domid
    watcher.wait_events(1)
    for i in range(20):
        guest.write(f"data/n{i}", b"x" * 100)
    hv.destroy(domid)
    assert watcher.wait_events(1) == OUT
    wait_for(lambda: toolstack.ok(Op.IS_DOMAIN_INTRODUCED, str(domid).encode()) == b"F\0", what="release")
    assert toolstack.error(Op.READ, f"/local/domain/{domid}/data/n0".encode()) == "ENOENT"
    check_ok(toolstack)


def test_random_requests_over_a_guest_ring_keep_the_store_sound(guests, toolstack):
    """Fuzz over the ring: garbage from a guest is answered or drops that guest, never more."""
    rng = random.Random(419)
    guest = guests.start()
    words = [b"data", b"/", b"/tool", b"data/a", b"@releaseDomain", b"//", b"T", b"n0", b"x" * 200, b""]
    for _ in range(400):
        op = rng.choice([*range(0, 27), 99])
        payload = b"\0".join(rng.choice(words) for _ in range(rng.randint(0, 3))) + b"\0"
        req = guest.send_packet(op, payload, tx_id=rng.choice([0, 0, 1, 7]))
        assert guest.reply(req).req_id == req
        guest.take_events()
    check_ok(toolstack)
    assert toolstack.ok(Op.READ, b"/tool/xenstored") == b""


def test_xsa_325_special_watches_fire_only_for_permitted_guests(guests, toolstack):
    """XSA-325: any guest watching @releaseDomain learnt of every domain's death (and could
    disturb cleanup); only domains the special node's permissions name may hear it."""
    spy, allowed, victim = guests.start(), guests.start(), guests.start()
    toolstack.set_perms("@releaseDomain", "n0", f"r{allowed.domid}")
    spy.watch("@releaseDomain", b"spy")
    allowed.watch("@releaseDomain", b"ok")
    spy.wait_events(1)
    allowed.wait_events(1)
    toolstack.ok(Op.RELEASE, str(victim.domid).encode())
    assert allowed.wait_events(1) == [(b"@releaseDomain", b"ok")]
    assert spy.quiet_events(0.3) == []


def test_xsa_416_max_size_nodes_in_transactions_stay_bounded(daemon, guests, toolstack):
    """XSA-416 (with 326): many maximum-size nodes written in transactions were kept without
    limit; the transaction and node quotas bound them."""
    guest = guests.start()
    guest.mkdir("data")
    rss_before = daemon.rss_kib()
    txs = []
    refused = 0
    for _ in range(12):                 # the transactions quota (10) stops the last ones
        start = guest.call(Op.TRANSACTION_START, b"")
        if start.op == Op.ERROR:
            assert start.payload == b"ENOSPC\0"
            refused += 1
            continue
        txs.append(int(start.payload[:-1]))
        for i in range(1100):           # nodes (1000) / transaction-nodes (1024) stop each one
            req = guest.send_packet(Op.WRITE, b"data/t%d/n%d\0" % (txs[-1], i) + b"v" * 2048,
                                    tx_id=txs[-1])
            if guest.reply(req).op == Op.ERROR:
                break
    growth = (daemon.rss_kib() - rss_before) / 1024
    assert refused == 2
    assert growth < 64, f"grew {growth:.0f} MiB"
    for tx in txs:
        guest.call(Op.TRANSACTION_END, b"F", tx_id=tx)
    check_ok(toolstack)
