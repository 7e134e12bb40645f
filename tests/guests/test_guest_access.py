"""A guest on its ring is an unprivileged domain: its home, relative paths, permissions, watches."""
from xenstore_protocol import Op

from .conftest import usage


def test_guest_writes_under_its_home_with_relative_paths(guests, toolstack):
    guest = guests.start(name="alpha")
    domid = guest.domid
    guest.write("data/greeting", b"hello")
    assert guest.read("data/greeting") == b"hello"
    assert guest.read(f"/local/domain/{domid}/data/greeting") == b"hello"
    assert toolstack.read(f"/local/domain/{domid}/data/greeting") == b"hello"
    assert guest.get_perms("data/greeting") == [f"n{domid}"]     # the creator owns it
    assert guest.read("name") == b"alpha"                          # home is r<domid>
    assert guest.ok(Op.GET_DOMAIN_PATH, str(domid).encode()) == f"/local/domain/{domid}\0".encode()
    assert "greeting" in guest.directory("data")


def test_guest_is_refused_outside_what_permissions_grant(guests, toolstack):
    guest = guests.start()
    other = guests.start()
    home, other_home = f"/local/domain/{guest.domid}", f"/local/domain/{other.domid}"
    other.write("data/private", b"x")
    toolstack.write("/tool/secret", b"s")
    assert guest.error(Op.READ, b"/local/domain/0/name") == "EACCES"
    assert guest.error(Op.READ, b"/tool/secret") == "EACCES"
    assert guest.error(Op.WRITE, payload=b"/tool/x\0v") == "EACCES"
    assert guest.error(Op.WRITE, payload=home.encode() + b"/toplevel\0v") == "EACCES"  # home: r only
    assert guest.error(Op.READ, f"{other_home}/data/private".encode()) == "EACCES"
    assert guest.error(Op.DIRECTORY, f"{other_home}/data".encode()) == "EACCES"
    assert guest.error(Op.GET_PERMS, f"{other_home}/data/private".encode()) == "EACCES"
    assert guest.error(Op.RM, f"{other_home}/data/private".encode()) == "EACCES"
    # A missing node under an unreadable parent must not leak its absence (EACCES, not ENOENT).
    assert guest.error(Op.READ, f"{other_home}/data/nothing".encode()) == "EACCES"
    assert guest.error(Op.READ, b"data/nothing") == "ENOENT"
    # Only a privileged domain changes owners.
    guest.write("data/mine", b"1")
    assert guest.error(Op.SET_PERMS, b"data/mine", f"n{other.domid}".encode()) == "EPERM"
    assert other.read("data/private") == b"x"


def test_privileged_requests_are_eacces_for_a_guest(guests):
    guest = guests.start()
    for op, fields in ((Op.INTRODUCE, (b"9", b"1", b"1")), (Op.RELEASE, (b"9",)),
                       (Op.SET_TARGET, (b"9", b"0")), (Op.RESUME, (b"9",)),
                       (Op.SET_QUOTA, (b"nodes", b"1")), (Op.GET_QUOTA, (b"nodes",)),
                       (Op.CONTROL, (b"check",)), (Op.SET_FEATURE, (b"9", b"0")),
                       (Op.GET_FEATURE, (b"0",))):
        assert guest.error(op, *fields) == "EACCES", op.name


def test_a_guest_grants_another_guest_read_access(guests):
    owner, reader, stranger = guests.start(), guests.start(), guests.start()
    owner.write("data/shared", b"v")
    path = f"/local/domain/{owner.domid}/data/shared"
    owner.set_perms("data/shared", f"n{owner.domid}", f"r{reader.domid}")
    assert reader.read(path) == b"v"
    assert reader.error(Op.WRITE, payload=path.encode() + b"\0w") == "EACCES"
    assert stranger.error(Op.READ, path.encode()) == "EACCES"
    owner.set_perms("data/shared", f"n{owner.domid}", f"b{reader.domid}")
    reader.write(path, b"w")
    assert owner.read("data/shared") == b"w"


def test_watch_events_reach_a_guest_only_for_nodes_it_may_read(guests, toolstack):
    guest = guests.start()
    home = f"/local/domain/{guest.domid}"
    guest.watch("data", b"rel")
    guest.watch("/local/domain/0", b"dom0")
    assert sorted(guest.wait_events(2)) == [(b"/local/domain/0", b"dom0"), (b"data", b"rel")]
    toolstack.write(f"{home}/data/x", b"1")
    assert guest.wait_events(1) == [(b"data/x", b"rel")]    # relative watch, relative path
    toolstack.write("/local/domain/0/hidden", b"1")           # n0: the guest may not know (XSA-115)
    guest.write("data/y", b"2")
    assert guest.wait_events(1) == [(b"data/y", b"rel")]
    assert guest.quiet_events(0.1) == []


def test_guest_features_are_advertised_on_the_ring_and_by_get_feature(guests):
    guest = guests.start()
    assert guest.ring.server_features == 3
    assert guest.ok(Op.GET_FEATURE, payload=b"") == b"3\0"


def test_set_feature_before_introduce_limits_what_the_ring_advertises(guests, toolstack):
    row = guests.create(introduce=False)
    toolstack.ok(Op.SET_FEATURE, str(row.domid).encode(), b"2")
    from xsd.hv_cli import toolstack_introduce
    toolstack_introduce(toolstack, row)
    guest = guests.open(row.domid)
    guest.ok(Op.READ, b"name")
    assert guest.ring.server_features == 2


def test_transactions_work_for_a_guest(guests, toolstack):
    guest = guests.start()
    tx = guest.transaction_start()
    guest.write("data/t", b"1", tx_id=tx)
    assert toolstack.error(Op.READ, f"/local/domain/{guest.domid}/data/t".encode()) == "ENOENT"
    guest.transaction_end(tx)
    assert toolstack.read(f"/local/domain/{guest.domid}/data/t") == b"1"
    assert usage(toolstack, guest.domid)["transactions"][0] == "0"
