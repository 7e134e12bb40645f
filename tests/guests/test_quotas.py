"""Each per-domain quota binds a guest on its ring, and never dom0."""
import time

from xenstore_protocol import Op, Packet

from xsd.hv_cli import GUEST_DIRS

from .conftest import usage, wait_for


def set_quota(toolstack, domid, name, value):
    toolstack.ok(Op.SET_QUOTA, str(domid).encode(), name.encode(), str(value).encode())


def test_nodes_quota(guests, toolstack):
    guest = guests.start()
    owned = len(GUEST_DIRS)                     # the toolstack made these the guest's own
    assert usage(toolstack, guest.domid)["nodes"][0] == str(owned)
    set_quota(toolstack, guest.domid, "nodes", owned + 3)
    for i in range(3):
        guest.write(f"data/n{i}", b"x")
    assert guest.error(Op.WRITE, payload=b"data/n3\0x") == "ENOSPC"
    assert guest.error(Op.MKDIR, b"data/a/b") == "ENOSPC"
    guest.write("data/n0", b"rewriting costs no node")
    guest.rm("data/n2")
    guest.write("data/n3", b"x")                # room again
    toolstack.write(f"/local/domain/{guest.domid}/data/by-dom0", b"x")   # dom0 is never limited


def test_nodes_quota_counts_a_transaction_and_its_commit(guests, toolstack):
    guest = guests.start()
    set_quota(toolstack, guest.domid, "nodes", len(GUEST_DIRS) + 2)
    tx = guest.transaction_start()
    guest.write("data/t1", b"x", tx_id=tx)
    guest.write("data/t2", b"x", tx_id=tx)
    assert guest.error(Op.WRITE, payload=b"data/t3\0x", tx_id=tx) == "ENOSPC"
    guest.transaction_end(tx)
    assert guest.read("data/t2") == b"x"


def test_watches_quota(guests, toolstack):
    guest = guests.start()
    set_quota(toolstack, guest.domid, "watches", 2)
    guest.watch("data/a", b"1")
    guest.watch("data/b", b"2")
    assert guest.error(Op.WATCH, b"data/c", b"3") == "E2BIG"
    guest.ok(Op.UNWATCH, b"data/a", b"1")
    guest.watch("data/c", b"3")


def test_transactions_quota(guests, toolstack):
    guest = guests.start()
    set_quota(toolstack, guest.domid, "transactions", 2)
    first = guest.transaction_start()
    guest.transaction_start()
    assert guest.error(Op.TRANSACTION_START, payload=b"\0") == "ENOSPC"
    guest.transaction_end(first, commit=False)
    guest.transaction_start()


def test_node_size_quota(guests, toolstack):
    guest = guests.start()
    set_quota(toolstack, guest.domid, "node-size", 100)
    guest.write("data/fits", b"v" * 100)
    assert guest.error(Op.WRITE, payload=b"data/big\0" + b"v" * 101) == "ENOSPC"
    toolstack.write(f"/local/domain/{guest.domid}/data/dom0-big", b"v" * 1000)


def test_permissions_quota(guests, toolstack):
    guest = guests.start()
    set_quota(toolstack, guest.domid, "permissions", 3)
    guest.write("data/p", b"")
    me = f"n{guest.domid}"
    guest.set_perms("data/p", me, "r0", "r1")
    assert guest.error(Op.SET_PERMS, b"data/p", me.encode(), b"r0", b"r1", b"r2") == "ENOSPC"
    assert guest.get_perms("data/p") == [me, "r0", "r1"]


def test_global_quota_applies_to_every_guest_and_per_domain_overrides_it(guests, toolstack):
    first, second = guests.start(), guests.start()
    toolstack.ok(Op.SET_QUOTA, b"watches", b"1")
    set_quota(toolstack, second.domid, "watches", 3)
    first.watch("data/a", b"1")
    assert first.error(Op.WATCH, b"data/b", b"2") == "E2BIG"
    for i in range(3):
        second.watch(f"data/{i}", b"t")
    assert second.error(Op.WATCH, b"data/x", b"t") == "E2BIG"


def test_outstanding_quota_stops_reading_while_replies_wait_for_the_ring(guests, toolstack):
    """C xenstored's ``outstanding``: past that many replies not yet in the guest's response
    ring, the daemon reads no more of its requests (no error; the guest waits)."""
    guest = guests.start()
    set_quota(toolstack, guest.domid, "outstanding", 4)
    big = b"v" * 900
    guest.write("data/big", big)
    ring = guest.ring

    def send_batch(first, count):
        data = b"".join(Packet(Op.READ, first + i, 0, b"data/big\0").encode() for i in range(count))
        while data:                 # 30 x 25 bytes fit the 1024-byte ring (in two parts at its end)
            written = ring.write_requests(data)
            assert written, f"request ring full: {ring.indexes()}, {first}, {len(data)} left"
            data = data[written:]
        guest.notify()

    def all_read():
        req_cons, req_prod, _, _ = ring.indexes()
        return req_cons == req_prod

    wait_for(all_read, what="the WRITE consumed")
    send_batch(1000, 30)
    wait_for(all_read, what="the first batch read")
    consumed = ring.indexes()[0]
    send_batch(2000, 30)            # replies to the first batch still fill rsp and wait
    time.sleep(0.5)
    assert ring.indexes()[0] == consumed, "requests read past the outstanding quota"
    # Once the guest takes its replies, everything is answered, in order.
    for req_id in list(range(1000, 1030)) + list(range(2000, 2030)):
        reply = guest.reply(req_id)
        assert (reply.op, reply.payload) == (Op.READ, big)


def test_memory_quota_charges_nodes_and_watches_and_refuses_with_enomem(guests, toolstack, daemon):
    guest = guests.start()
    home = f"/local/domain/{guest.domid}"

    def memory():
        return int(usage(toolstack, guest.domid)["memory"][0])

    before = memory()
    guest.write("data/m", b"x" * 100)
    perms = len(guest.get_perms("data/m"))
    # quota.memory_of_node: 40 + path + value + 8 per permission.
    assert memory() - before == 40 + len(f"{home}/data/m") + 100 + 8 * perms
    guest.watch("data/m", b"tok")
    guest.wait_events(1)
    assert memory() - before == (40 + len(f"{home}/data/m") + 100 + 8 * perms
                                 + 40 + len(f"{home}/data/m") + len(b"tok"))
    set_quota(toolstack, guest.domid, "memory", memory() + 1500)
    guest.write("data/big", b"y" * 1000)
    assert guest.error(Op.WRITE, payload=b"data/big2\0" + b"y" * 1000) == "ENOMEM"
    assert guest.error(Op.WRITE, payload=b"data/big\0" + b"y" * 2000) == "ENOMEM"
    assert guest.error(Op.READ, b"data/big2") == "ENOENT"            # nothing half-made
    guest.write("data/big", b"small")                                   # shrinking is fine
    guest.write("data/big2", b"y" * 900)                                # room again
    toolstack.write(f"{home}/data/by-dom0", b"z" * 3000)                # dom0 is never limited
    assert toolstack.ok(Op.CONTROL, b"check") == b"OK\0"


def test_soft_memory_quota_warns_once(guests, toolstack, daemon):
    guest = guests.start()
    toolstack.ok(Op.CONTROL, b"quota-soft", b"set", b"memory", b"1")
    guest.write("data/a", b"1")
    guest.write("data/b", b"2")
    warnings = [line for line in daemon.log().splitlines() if "over the soft quota" in line]
    assert len(warnings) == 1 and f"dom{guest.domid}" in warnings[0]
