"""Each request type on the raw socket: its success and each of its errors."""
import time

import pytest

from xenstore_protocol import Op, PAYLOAD_MAX
from xenstore_protocol.constants import HEADER

from tests.wire import RawClient


def write(xs, path, value=b""):
    return xs.ok(Op.WRITE, payload=path.encode() + b"\0" + value)


# -- initial tree ------------------------------------------------------------

def test_initial_tree_is_a_fresh_hosts(xs):
    assert xs.ok(Op.DIRECTORY, b"/") == b"tool\0local\0"
    assert xs.ok(Op.READ, b"/tool/xenstored") == b""
    assert xs.ok(Op.READ, b"/local/domain/0/name") == b"Domain-0"
    assert xs.ok(Op.READ, b"/local/domain/0/domid") == b"0"
    assert xs.ok(Op.DIRECTORY, b"/local/domain/0") == b"name\0domid\0"
    assert xs.ok(Op.GET_PERMS, b"/") == b"n0\0"


def test_no_domain_init_leaves_local_out(daemon_factory):
    proc = daemon_factory("--no-domain-init")
    with RawClient(proc.socket_path) as xs:
        assert xs.ok(Op.DIRECTORY, b"/") == b"tool\0"


# -- read / write / mkdir / rm ---------------------------------------------

def test_write_then_read_returns_value_without_nul(xs):
    assert write(xs, "/a", b"hello") == b"OK\0"
    assert xs.ok(Op.READ, b"/a") == b"hello"


def test_write_binary_value_with_nuls(xs):
    write(xs, "/bin", b"a\0b\xff")
    assert xs.ok(Op.READ, b"/bin") == b"a\0b\xff"


def test_write_creates_parents_with_empty_values_and_inherited_perms(xs):
    write(xs, "/p", b"")
    xs.ok(Op.SET_PERMS, b"/p", b"n0", b"r3")
    write(xs, "/p/q/r/s", b"v")
    assert xs.ok(Op.READ, b"/p/q") == b""
    assert xs.ok(Op.READ, b"/p/q/r/s") == b"v"
    assert xs.ok(Op.GET_PERMS, b"/p/q/r") == b"n0\0r3\0"


def test_write_without_nul_is_einval(xs):
    assert xs.error(Op.WRITE, payload=b"/nonul") == "EINVAL"


def test_read_missing_is_enoent(xs):
    assert xs.error(Op.READ, b"/nope") == "ENOENT"


def test_read_payload_without_nul_is_enoent_as_in_c_xenstored(xs):
    write(xs, "/cs", b"v")
    assert xs.error(Op.READ, payload=b"/cs") == "ENOENT"
    assert xs.error(Op.READ, payload=b"") == "EINVAL"


def test_relative_path_resolves_under_dom0_home(xs):
    write(xs, "rel/x", b"1")
    assert xs.ok(Op.READ, b"/local/domain/0/rel/x") == b"1"
    assert xs.ok(Op.READ, b"rel/x") == b"1"


def test_mkdir_keeps_existing_value_and_creates_missing(xs):
    write(xs, "/m", b"keep")
    assert xs.ok(Op.MKDIR, b"/m") == b"OK\0"
    assert xs.ok(Op.READ, b"/m") == b"keep"
    xs.ok(Op.MKDIR, b"/m/n/o")
    assert xs.ok(Op.READ, b"/m/n/o") == b""


def test_rm_is_recursive(xs):
    write(xs, "/r/a/b", b"1")
    write(xs, "/r/c", b"2")
    assert xs.ok(Op.RM, b"/r") == b"OK\0"
    assert xs.error(Op.READ, b"/r/a/b") == "ENOENT"
    assert xs.error(Op.READ, b"/r") == "ENOENT"
    assert b"r\0" not in xs.ok(Op.DIRECTORY, b"/")


def test_rm_missing_node_ok_missing_parent_enoent(xs):
    assert xs.ok(Op.RM, b"/local/nothing") == b"OK\0"
    assert xs.error(Op.RM, b"/nothing/below") == "ENOENT"


def test_rm_root_is_einval(xs):
    assert xs.error(Op.RM, b"/") == "EINVAL"


def test_directory_lists_children_in_creation_order(xs):
    for name in ("z", "a", "m"):
        write(xs, f"/d/{name}")
    assert xs.ok(Op.DIRECTORY, b"/d") == b"z\0a\0m\0"
    write(xs, "/empty")
    assert xs.ok(Op.DIRECTORY, b"/empty") == b""
    assert xs.error(Op.DIRECTORY, b"/none") == "ENOENT"


def test_directory_over_payload_max_is_e2big_and_directory_part_pages(xs):
    names = [f"child-with-a-long-name-{i:05d}" for i in range(400)]
    for name in names:
        xs.ok(Op.MKDIR, f"/big/{name}".encode())
    assert xs.error(Op.DIRECTORY, b"/big") == "E2BIG"
    got, offset, gen = [], 0, None
    while True:
        reply = xs.ok(Op.DIRECTORY_PART, b"/big", str(offset).encode())
        assert len(reply) <= PAYLOAD_MAX
        head, _, rest = reply.partition(b"\0")
        gen = gen or head
        assert head == gen, "generation must not change while nothing changes"
        got += [name for name in rest.split(b"\0")[:-1] if name]
        offset += len(rest)
        if rest == b"\0" or rest.endswith(b"\0\0"):    # the last chunk has one NUL more
            break
    assert [g.decode() for g in got] == names


def test_directory_part_generation_changes_when_children_change(xs):
    xs.ok(Op.MKDIR, b"/g/a")
    first = xs.ok(Op.DIRECTORY_PART, b"/g", b"0").split(b"\0")[0]
    xs.ok(Op.MKDIR, b"/g/b")
    second = xs.ok(Op.DIRECTORY_PART, b"/g", b"0").split(b"\0")[0]
    assert first != second


def test_directory_part_needs_offset(xs):
    assert xs.error(Op.DIRECTORY_PART, b"/") == "EINVAL"


# -- paths -------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    b"", b"//", b"/a//b", b"/a/", b"/a.b", b"/a b", b"/\xc3\xa9", b"a/", b"@foo",
    b"/" + b"a" * 3072, b"r" * 2049,
])
def test_bad_paths_are_einval_and_change_nothing(xs, path):
    before = xs.ok(Op.DIRECTORY, b"/")
    assert xs.error(Op.WRITE, payload=path + b"\0v") == "EINVAL"
    assert xs.error(Op.READ, path) == "EINVAL"
    assert xs.ok(Op.DIRECTORY, b"/") == before


def test_path_length_limits(xs):
    # path-max (2048, C xenstored's default) binds dom0 too; /local/domain/<domid>/ is not
    # counted.  The C daemon answers the same (tests/interop/test_wire_differential.py).
    longest = "/" + "a" * 2047
    write(xs, longest, b"x")
    assert xs.ok(Op.READ, longest.encode()) == b"x"
    assert xs.error(Op.WRITE, payload=longest.encode() + b"a\0x") == "EINVAL"
    home = "/local/domain/7/" + "c" * 2048
    write(xs, home, b"z")
    assert xs.ok(Op.READ, home.encode()) == b"z"
    relative = "b" * 2048
    write(xs, relative, b"y")
    assert xs.ok(Op.READ, f"/local/domain/0/{relative}".encode()) == b"y"
    assert xs.error(Op.WRITE, payload=relative.encode() + b"b\0y") == "EINVAL"


def test_path_max_quota_set_at_run_time_binds_dom0(xs):
    assert xs.ok(Op.CONTROL, b"quota", b"set", b"path-max", b"10") == b"OK\0"
    assert xs.error(Op.WRITE, payload=b"/abcdefghijk\0v") == "EINVAL"
    assert xs.error(Op.READ, b"/abcdefghijk") == "EINVAL"
    write(xs, "/abcdefghi", b"v")
    assert xs.ok(Op.CONTROL, b"quota", b"set", b"path-max", b"3000") == b"OK\0"
    write(xs, "/" + "d" * 2999, b"v")


def test_allowed_punctuation(xs):
    write(xs, "/a-b_c@d/E9", b"ok")
    assert xs.ok(Op.READ, b"/a-b_c@d/E9") == b"ok"


def test_deep_tree_1500_levels(xs):
    path = "/d" * 1500
    xs.ok(Op.CONTROL, b"quota", b"set", b"path-max", b"3072")   # 2048 by default
    write(xs, path, b"deep")
    assert xs.ok(Op.READ, path.encode()) == b"deep"
    xs.ok(Op.WATCH, b"/d", b"t")
    xs.wait_events(1)
    assert xs.ok(Op.RM, b"/d") == b"OK\0"
    assert xs.ok(Op.CONTROL, b"check") == b"OK\0"


# -- permissions -------------------------------------------------------------

def test_get_and_set_perms(xs):
    write(xs, "/pp")
    assert xs.ok(Op.SET_PERMS, b"/pp", b"n0", b"r1", b"w2", b"b3") == b"OK\0"
    assert xs.ok(Op.GET_PERMS, b"/pp") == b"n0\0r1\0w2\0b3\0"


@pytest.mark.parametrize("perms", [[b"x0"], [b"r"], [b"rr"], [b"r-1"], [b"r4294967296"],
                                   [b"n0", b"r 5"], [b"n0", b"r+5"]])
def test_set_perms_malformed_is_einval(xs, perms):
    write(xs, "/pm")
    assert xs.error(Op.SET_PERMS, b"/pm", *perms) == "EINVAL"
    assert xs.ok(Op.GET_PERMS, b"/pm") == b"n0\0"


def test_set_perms_needs_a_permission(xs):
    write(xs, "/pn")
    assert xs.error(Op.SET_PERMS, b"/pn") == "EINVAL"


def test_set_perms_owner_must_exist(xs):
    write(xs, "/po")
    assert xs.error(Op.SET_PERMS, b"/po", b"r5") == "ENOENT"
    assert xs.error(Op.SET_PERMS, b"/po", b"r70000") == "ENOENT"     # as C xenstored
    assert xs.ok(Op.SET_PERMS, b"/po", b"r0", b"b70000") == b"OK\0"
    assert xs.ok(Op.SET_PERMS, b"/po", b"r0", b"b5") == b"OK\0"   # others may be any domid


def test_set_perms_missing_node_enoent(xs):
    assert xs.error(Op.SET_PERMS, b"/missing", b"n0") == "ENOENT"


def test_special_nodes_have_perms(xs):
    assert xs.ok(Op.GET_PERMS, b"@introduceDomain") == b"n0\0"
    assert xs.ok(Op.SET_PERMS, b"@releaseDomain", b"n0", b"r7") == b"OK\0"
    assert xs.ok(Op.GET_PERMS, b"@releaseDomain") == b"n0\0r7\0"


# -- watches -----------------------------------------------------------------

def test_watch_fires_initial_event_after_ok(xs):
    req = xs.send_packet(Op.WATCH, b"/w\0tok\0")
    assert xs.reply(req).payload == b"OK\0"
    assert xs.wait_events(1) == [(b"/w", b"tok")]
    ops = [p.op for p in xs.received]
    assert ops == [Op.WATCH, Op.WATCH_EVENT]


def test_watch_fires_on_create_change_delete_and_perms(xs, daemon):
    with RawClient(daemon.socket_path) as other:
        other.ok(Op.WATCH, b"/w", b"t")
        other.wait_events(1)
        write(xs, "/w/a", b"1")           # create (and parent /w created)
        write(xs, "/w/a", b"2")           # change
        write(xs, "/w/a", b"2")           # same value still fires
        xs.ok(Op.SET_PERMS, b"/w/a", b"n0", b"r1")
        xs.ok(Op.MKDIR, b"/w/a")          # existing: no event
        xs.ok(Op.RM, b"/w/a")
        assert other.wait_events(5) == [(b"/w/a", b"t")] * 5
        assert other.quiet_events() == []


def test_watch_matches_by_component(xs, daemon):
    with RawClient(daemon.socket_path) as other:
        other.ok(Op.WATCH, b"/wo", b"t")
        other.wait_events(1)
        write(xs, "/wother", b"1")
        write(xs, "/wo/x", b"1")
        assert other.wait_events(1) == [(b"/wo/x", b"t")]
        assert other.quiet_events() == []


def test_write_creating_parents_fires_once_with_leaf(xs, daemon):
    with RawClient(daemon.socket_path) as other:
        other.ok(Op.WATCH, b"/", b"root")
        other.wait_events(1)
        write(xs, "/x/y/z", b"1")
        assert other.wait_events(1) == [(b"/x/y/z", b"root")]
        assert other.quiet_events() == []


def test_rm_fires_deleted_nodes_children_first_then_root_and_ancestors(xs, daemon):
    # C xenstored's order: each deleted node below the root (children before parents, in
    # creation order) for the watches on exactly it, then the root for watches on it or
    # above; a watch below on a node that did not exist (/t/a/zz) sees nothing.
    write(xs, "/t/a/b/c", b"x")
    write(xs, "/t/a/e", b"x")
    with RawClient(daemon.socket_path) as other:
        for path in (b"/t", b"/t/a/e", b"/t/a", b"/t/a/b", b"/t/a/zz", b"/t/a/b/c", b"/t/other"):
            other.ok(Op.WATCH, path, b"tok" + path)
        other.wait_events(7)
        xs.ok(Op.RM, b"/t/a")
        assert other.wait_events(5) == [
            (b"/t/a/b/c", b"tok/t/a/b/c"), (b"/t/a/b", b"tok/t/a/b"), (b"/t/a/e", b"tok/t/a/e"),
            (b"/t/a", b"tok/t"), (b"/t/a", b"tok/t/a"),
        ]
        assert other.quiet_events() == []


def test_writer_sees_its_own_event_before_the_reply(xs):
    xs.ok(Op.WATCH, b"/own", b"t")
    xs.wait_events(1)
    xs.received.clear()
    write(xs, "/own", b"1")
    assert [p.op for p in xs.received] == [Op.WATCH_EVENT, Op.WRITE]


def test_several_watches_fire_in_registration_order(xs, daemon):
    with RawClient(daemon.socket_path) as other:
        other.ok(Op.WATCH, b"/o/p", b"second-deeper")
        other.ok(Op.WATCH, b"/o", b"first")
        other.wait_events(2)
        write(xs, "/o/p/q")
        assert other.wait_events(2) == [(b"/o/p/q", b"second-deeper"), (b"/o/p/q", b"first")]


def test_relative_watch_gets_relative_paths(xs, daemon):
    with RawClient(daemon.socket_path) as other:
        other.ok(Op.WATCH, b"rel", b"t")
        assert other.wait_events(1) == [(b"rel", b"t")]
        write(xs, "/local/domain/0/rel/x", b"1")
        assert other.wait_events(1) == [(b"rel/x", b"t")]


def test_watch_errors(xs):
    xs.ok(Op.WATCH, b"/dup", b"t")
    assert xs.error(Op.WATCH, b"/dup", b"t") == "EEXIST"
    assert xs.ok(Op.WATCH, b"/dup", b"other") == b"OK\0"
    assert xs.error(Op.WATCH, b"/only-path") == "EINVAL"
    assert xs.error(Op.WATCH, b"/a", b"t", b"extra") == "EINVAL"
    assert xs.error(Op.WATCH, b"/bad//path", b"t") == "EINVAL"
    assert xs.error(Op.UNWATCH, b"/never", b"t") == "ENOENT"
    assert xs.ok(Op.UNWATCH, b"/dup", b"t") == b"OK\0"
    assert xs.error(Op.UNWATCH, b"/dup", b"t") == "ENOENT"


def test_unwatch_stops_events(xs, daemon):
    with RawClient(daemon.socket_path) as other:
        other.ok(Op.WATCH, b"/u", b"t")
        other.wait_events(1)
        other.ok(Op.UNWATCH, b"/u", b"t")
        write(xs, "/u", b"1")
        assert other.quiet_events() == []


def test_special_watches_fire_initial_event(xs):
    for name in (b"@introduceDomain", b"@releaseDomain", b"@anything"):
        xs.ok(Op.WATCH, name, b"t")
    assert xs.wait_events(3) == [(b"@introduceDomain", b"t"), (b"@releaseDomain", b"t"), (b"@anything", b"t")]


def test_reset_watches_drops_watches_and_transactions(xs, daemon):
    xs.ok(Op.WATCH, b"/rw", b"t")
    tx = int(xs.ok(Op.TRANSACTION_START, b"")[:-1])
    xs.wait_events(1)
    assert xs.ok(Op.RESET_WATCHES, b"") == b"OK\0"
    write(xs, "/rw", b"1")
    assert xs.quiet_events() == []
    assert xs.error(Op.READ, b"/rw", tx_id=tx) == "ENOENT"


# -- transactions ------------------------------------------------------------

def tx_start(xs):
    return int(xs.ok(Op.TRANSACTION_START, b"")[:-1])


def test_transaction_ids_are_small_integers(xs):
    assert xs.ok(Op.TRANSACTION_START, b"") == b"1\0"
    assert xs.ok(Op.TRANSACTION_START, b"") == b"2\0"


def test_transaction_isolation_and_commit(xs, daemon):
    tx = tx_start(xs)
    xs.ok(Op.WRITE, payload=b"/tx/a\0in", tx_id=tx)
    assert xs.ok(Op.READ, b"/tx/a", tx_id=tx) == b"in"
    assert xs.error(Op.READ, b"/tx/a") == "ENOENT"
    assert xs.ok(Op.TRANSACTION_END, b"T", tx_id=tx) == b"OK\0"
    assert xs.ok(Op.READ, b"/tx/a") == b"in"


def test_transaction_abort_discards(xs):
    tx = tx_start(xs)
    xs.ok(Op.WRITE, payload=b"/ab\0x", tx_id=tx)
    xs.ok(Op.TRANSACTION_END, b"F", tx_id=tx)
    assert xs.error(Op.READ, b"/ab") == "ENOENT"


def test_conflicting_write_gives_eagain_and_changes_nothing(xs):
    write(xs, "/c", b"a")
    tx = tx_start(xs)
    assert xs.ok(Op.READ, b"/c", tx_id=tx) == b"a"
    write(xs, "/c", b"b")
    assert xs.ok(Op.READ, b"/c", tx_id=tx) == b"a"      # the transaction's snapshot
    xs.ok(Op.WRITE, payload=b"/c\0c", tx_id=tx)
    xs.ok(Op.WRITE, payload=b"/c2\0c", tx_id=tx)
    assert xs.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EAGAIN"
    assert xs.ok(Op.READ, b"/c") == b"b"
    assert xs.error(Op.READ, b"/c2") == "ENOENT"


def test_commit_lists_children_as_the_transaction_left_them(xs):
    """A commit applies the overlay through the store's operations (transactions.py): the
    children it made come last, in the order it made them, a node it removed and made
    again comes after its old siblings without its old children, as C xenstored does."""
    for name in (b"a", b"b", b"c"):
        write(xs, "/order/" + name.decode(), name)
    write(xs, "/order/a/old", b"gone")
    tx = tx_start(xs)
    xs.ok(Op.RM, b"/order/a", tx_id=tx)
    xs.ok(Op.WRITE, payload=b"/order/d/deep\0d", tx_id=tx)
    xs.ok(Op.WRITE, payload=b"/order/a\0again", tx_id=tx)
    xs.ok(Op.WRITE, payload=b"/order/a/new\0n", tx_id=tx)
    xs.ok(Op.SET_PERMS, b"/order/b", b"n0", b"r1", tx_id=tx)
    assert xs.ok(Op.TRANSACTION_END, b"T", tx_id=tx) == b"OK\0"
    assert xs.ok(Op.DIRECTORY, b"/order") == b"b\0c\0d\0a\0"
    assert xs.ok(Op.DIRECTORY, b"/order/a") == b"new\0"
    assert xs.ok(Op.READ, b"/order/a") == b"again"
    assert xs.ok(Op.READ, b"/order/d/deep") == b"d"
    assert xs.ok(Op.GET_PERMS, b"/order/b") == b"n0\0r1\0"
    assert xs.error(Op.READ, b"/order/a/old") == "ENOENT"
    xs.check()


def test_removing_a_subtree_whose_child_went_meanwhile_conflicts_at_commit(xs, daemon):
    """The transaction listed /gone while it had a child, which then went outside it: its
    RM of /gone removes what it can still see (the child is absent in its view now) and
    the commit conflicts, as any change under a node it read does.  (It answered EIO,
    with a traceback in the log, when the walk met the listed, absent child.)"""
    write(xs, "/gone/kid", b"k")
    tx = tx_start(xs)
    assert xs.ok(Op.DIRECTORY, b"/gone", tx_id=tx) == b"kid\0"
    xs.ok(Op.RM, b"/gone/kid")
    assert xs.ok(Op.RM, b"/gone", tx_id=tx) == b"OK\0"
    assert xs.error(Op.READ, b"/gone", tx_id=tx) == "ENOENT"
    assert xs.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EAGAIN"
    assert xs.ok(Op.READ, b"/gone") == b""
    xs.check()
    assert "Traceback" not in daemon.log()


def test_reading_a_directory_conflicts_with_a_new_sibling(xs):
    xs.ok(Op.MKDIR, b"/dir")
    tx = tx_start(xs)
    xs.ok(Op.DIRECTORY, b"/dir", tx_id=tx)
    xs.ok(Op.MKDIR, b"/dir/new")
    assert xs.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EAGAIN"


def test_unrelated_write_does_not_conflict(xs):
    xs.ok(Op.MKDIR, b"/mine")
    xs.ok(Op.MKDIR, b"/theirs")
    tx = tx_start(xs)
    xs.ok(Op.WRITE, payload=b"/mine/x\0v", tx_id=tx)
    write(xs, "/theirs/y", b"v")
    assert xs.ok(Op.TRANSACTION_END, b"T", tx_id=tx) == b"OK\0"


def test_transaction_events_held_until_commit_in_order(xs, daemon):
    with RawClient(daemon.socket_path) as other:
        other.ok(Op.WATCH, b"/ev", b"t")
        other.wait_events(1)
        tx = tx_start(xs)
        xs.ok(Op.WRITE, payload=b"/ev/1\0a", tx_id=tx)
        xs.ok(Op.WRITE, payload=b"/ev/2\0b", tx_id=tx)
        xs.ok(Op.RM, b"/ev/1", tx_id=tx)
        assert other.quiet_events() == []
        xs.ok(Op.TRANSACTION_END, b"T", tx_id=tx)
        # As C xenstored: one event per node changed; /ev/1, made and removed inside, none.
        assert other.quiet_events() == [(b"/ev/2", b"t")]
        write(xs, "/ev/3", b"a")
        other.wait_events(1)
        tx = tx_start(xs)
        for payload in (b"/ev/3\0b", b"/ev/4\0b"):
            xs.ok(Op.WRITE, payload=payload, tx_id=tx)
        xs.ok(Op.RM, b"/ev/3", tx_id=tx)
        xs.ok(Op.TRANSACTION_END, b"T", tx_id=tx)
        assert other.quiet_events() == [(b"/ev/3", b"t"), (b"/ev/4", b"t")]


def test_transaction_errors(xs, daemon):
    tx = tx_start(xs)
    assert xs.error(Op.TRANSACTION_START, b"", tx_id=tx) == "EBUSY"
    assert xs.error(Op.TRANSACTION_END, b"X", tx_id=tx) == "EINVAL"
    assert xs.error(Op.TRANSACTION_END, b"T", tx_id=999) == "ENOENT"
    assert xs.error(Op.READ, b"/", tx_id=999) == "ENOENT"
    assert xs.error(Op.TRANSACTION_END, b"T") == "ENOENT"
    with RawClient(daemon.socket_path) as other:
        assert other.error(Op.READ, b"/", tx_id=tx) == "ENOENT"   # not its transaction
    xs.ok(Op.TRANSACTION_END, b"T", tx_id=tx)
    assert xs.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "ENOENT"


def test_watch_ignores_tx_id(xs):
    assert xs.ok(Op.WATCH, b"/wt", b"t", tx_id=12345) == b"OK\0"


# -- domains -----------------------------------------------------------------

def test_introduce_fires_once_and_release_fires(xs, daemon):
    with RawClient(daemon.socket_path) as other:
        other.ok(Op.WATCH, b"@introduceDomain", b"in")
        other.ok(Op.WATCH, b"@releaseDomain", b"out")
        other.wait_events(2)
        assert xs.ok(Op.IS_DOMAIN_INTRODUCED, b"5") == b"F\0"
        assert xs.ok(Op.INTRODUCE, b"5", b"1234", b"7") == b"OK\0"
        assert xs.ok(Op.INTRODUCE, b"5", b"1234", b"7") == b"OK\0"   # again: no event
        assert xs.ok(Op.IS_DOMAIN_INTRODUCED, b"5") == b"T\0"
        assert other.wait_events(1) == [(b"@introduceDomain", b"in")]
        assert other.quiet_events() == []
        assert xs.ok(Op.RELEASE, b"5") == b"OK\0"
        assert other.wait_events(1) == [(b"@releaseDomain", b"out")]
        assert xs.ok(Op.IS_DOMAIN_INTRODUCED, b"5") == b"F\0"


def test_release_deletes_nodes_owned_by_the_domain(xs):
    xs.ok(Op.INTRODUCE, b"6", b"1", b"1")
    write(xs, "/local/domain/6/data", b"x")
    xs.ok(Op.SET_PERMS, b"/local/domain/6/data", b"n6")
    write(xs, "/local/domain/6/kept", b"y")
    xs.ok(Op.RELEASE, b"6")
    assert xs.error(Op.READ, b"/local/domain/6/data") == "ENOENT"
    assert xs.ok(Op.READ, b"/local/domain/6/kept") == b"y"
    assert xs.ok(Op.CONTROL, b"check") == b"OK\0"


def test_domain_request_errors(xs):
    assert xs.error(Op.RELEASE, b"9") == "ENOENT"
    assert xs.error(Op.RELEASE, b"0") == "EINVAL"
    assert xs.error(Op.RESUME, b"0") == "EINVAL"
    assert xs.error(Op.RESUME, b"9") == "ENOENT"
    assert xs.error(Op.INTRODUCE, b"9", b"1") == "EINVAL"
    assert xs.error(Op.SET_TARGET, b"9", b"0") == "ENOENT"
    xs.ok(Op.INTRODUCE, b"9", b"1", b"1")
    assert xs.ok(Op.RESUME, b"9") == b"OK\0"
    assert xs.ok(Op.SET_TARGET, b"9", b"0") == b"OK\0"
    assert xs.error(Op.SET_TARGET, b"9", b"44") == "ENOENT"


@pytest.mark.parametrize("op", [Op.GET_DOMAIN_PATH, Op.IS_DOMAIN_INTRODUCED, Op.RELEASE,
                                Op.RESUME, Op.GET_FEATURE])
@pytest.mark.parametrize("field", [b"x", b"", b"-1", b" 7", b"+7", b"7x", b"1e3", b"4294967296",
                                   b"\xd9\xa3"])
def test_numeric_fields_are_strict_decimal(xs, op, field):
    # Issue 12 item 4: C's atoi turned "x" into domain 0 and "-1" into 4294967295.
    assert xs.error(op, field) == "EINVAL"


def test_numeric_fields_in_every_request(xs):
    assert xs.ok(Op.GET_DOMAIN_PATH, b"7") == b"/local/domain/7\0"
    assert xs.ok(Op.IS_DOMAIN_INTRODUCED, b"0") == b"T\0"
    for fields in ([b"7", b"x", b"1"], [b"7x", b"1", b"1"], [b"7", b"1", b"-1"]):
        assert xs.error(Op.INTRODUCE, *fields) == "EINVAL"
    assert xs.ok(Op.IS_DOMAIN_INTRODUCED, b"7") == b"F\0"
    assert xs.error(Op.SET_TARGET, b"x", b"0") == "EINVAL"
    assert xs.error(Op.SET_FEATURE, b"x", b"y") == "EINVAL"
    assert xs.error(Op.SET_FEATURE, b"9", b"y") == "EINVAL"
    assert xs.error(Op.DIRECTORY_PART, b"/", b"x") == "EINVAL"
    assert xs.error(Op.DIRECTORY_PART, b"/", b"-1") == "EINVAL"


@pytest.mark.parametrize("value", [b"abc", b"", b"-1", b"4294967296", b"1e9", b" 5", b"+5", b"5 "])
def test_set_quota_refuses_what_is_not_a_decimal_number(xs, value):
    before = xs.ok(Op.GET_QUOTA, b"nodes")
    assert xs.error(Op.SET_QUOTA, b"nodes", value) == "EINVAL"
    assert xs.error(Op.SET_QUOTA, b"0", b"nodes", value) == "EINVAL"
    assert xs.ok(Op.GET_QUOTA, b"nodes") == before
    assert xs.error(Op.CONTROL, b"quota", b"set", b"nodes", value) == "EINVAL"
    assert xs.ok(Op.GET_QUOTA, b"nodes") == before


# -- features, quotas, control -----------------------------------------------

def test_get_and_set_quota(xs):
    names = xs.ok(Op.GET_QUOTA, payload=b"")[:-1].decode().split()
    assert {"nodes", "watches", "transactions", "node-size", "permissions"} <= set(names)
    assert xs.ok(Op.GET_QUOTA, b"nodes") == b"1000\0"
    assert xs.ok(Op.SET_QUOTA, b"nodes", b"50") == b"OK\0"
    assert xs.ok(Op.GET_QUOTA, b"nodes") == b"50\0"
    assert xs.error(Op.GET_QUOTA, b"bogus") == "EINVAL"
    assert xs.error(Op.GET_QUOTA, b"12", b"nodes") == "ENOENT"
    xs.ok(Op.INTRODUCE, b"12", b"1", b"1")
    xs.ok(Op.SET_QUOTA, b"12", b"nodes", b"7")
    assert xs.ok(Op.GET_QUOTA, b"12", b"nodes") == b"7\0"
    assert xs.ok(Op.GET_QUOTA, b"nodes") == b"50\0"
    assert xs.error(Op.SET_QUOTA, b"nodes") == "EINVAL"


def test_get_and_set_feature(xs):
    # Ring reconnection (1) and the ring's error field (2), as C xenstored offers.
    assert xs.ok(Op.GET_FEATURE, payload=b"") == b"3\0"
    assert xs.error(Op.GET_FEATURE, b"33") == "ENOENT"
    xs.ok(Op.INTRODUCE, b"33", b"1", b"1")
    assert xs.ok(Op.GET_FEATURE, b"33") == b"3\0"
    assert xs.error(Op.SET_FEATURE, b"33", b"0") == "EBUSY"
    assert xs.error(Op.SET_FEATURE, b"0", b"0") == "EBUSY"


def test_control_commands(xs):
    assert b"check" in xs.ok(Op.CONTROL, b"help")
    assert xs.ok(Op.CONTROL, b"check") == b"OK\0"
    assert xs.ok(Op.CONTROL, b"log", b"on") == b"OK\0"
    assert xs.ok(Op.CONTROL, b"log", b"off") == b"OK\0"
    report = xs.ok(Op.CONTROL, b"memreport").decode()
    assert "nodes:" in report and "watches:" in report
    quota = xs.ok(Op.CONTROL, b"quota").decode()
    assert "nodes            :     1000 Nodes per domain\n" in quota
    assert "path-max         :     2048 Max. length of a node path\n" in quota
    assert xs.ok(Op.CONTROL, b"print", b"hello") == b"OK\0"
    assert xs.error(Op.CONTROL, b"bogus") == "EINVAL"
    assert xs.error(Op.CONTROL, payload=b"") == "EINVAL"
    for bad in ([b"log"], [b"print"], [b"print", b"a", b"b"], [b"check", b"x"], [b"help", b"x"],
                [b"quota", b"0", b"1"], [b"quota-soft", b"set", b"nodes", b"5"],
                [b"quota", b"set", b"nodes", b"0"], [b"quota", b"set", b"bogus", b"5"]):
        assert xs.error(Op.CONTROL, *bad) == "EINVAL", bad
    assert xs.error(Op.CONTROL, b"quota", b"5") == "ENOENT"


# -- bad input ---------------------------------------------------------------

@pytest.mark.parametrize("op", [Op.ERROR, Op.WATCH_EVENT, Op.RESTRICT, 27, 1000, Op.INVALID])
def test_unknown_or_reply_only_types_are_enosys_and_connection_kept(xs, op):
    assert xs.error(op, b"/") == "ENOSYS"
    assert xs.ok(Op.READ, b"/tool/xenstored") == b""


def test_oversized_length_closes_only_that_connection(daemon, xs):
    with RawClient(daemon.socket_path) as bad:
        bad.sock.sendall(HEADER.pack(Op.READ, 1, 0, PAYLOAD_MAX + 1) + b"x" * 100)
        with pytest.raises((ConnectionResetError, OSError)):
            bad.reply()
    assert xs.ok(Op.READ, b"/tool/xenstored") == b""
    assert xs.ok(Op.CONTROL, b"check") == b"OK\0"


def test_client_disconnecting_mid_message_leaves_others_alone(daemon, xs):
    with RawClient(daemon.socket_path) as half:
        half.sock.sendall(HEADER.pack(Op.WRITE, 1, 0, 100) + b"/half\0")
    write(xs, "/after", b"1")
    assert xs.error(Op.READ, b"/half") == "ENOENT"


def test_requests_split_in_single_bytes_are_answered(xs):
    data = b"".join(
        HEADER.pack(Op.READ, n, 0, len(b"/tool/xenstored\0")) + b"/tool/xenstored\0" for n in (41, 42))
    for i in range(len(data)):
        xs.sock.sendall(data[i:i + 1])
    assert xs.reply(41).payload == b""
    assert xs.reply(42).payload == b""


def test_req_ids_echoed_across_uint32(xs):
    for req_id in (0, 1, 0x7FFFFFFF, 0xFFFFFFFF):
        xs.send_packet(Op.READ, b"/tool/xenstored\0", req_id=req_id)
        assert xs.reply(req_id).req_id == req_id


# -- read-only socket --------------------------------------------------------

def test_read_only_socket_refuses_mutations(daemon):
    with RawClient(daemon.ro_socket_path) as ro:
        assert ro.ok(Op.READ, b"/local/domain/0/name") == b"Domain-0"
        for op, fields in ((Op.WRITE, (b"/x", b"1")), (Op.MKDIR, (b"/x",)), (Op.RM, (b"/tool",)),
                           (Op.SET_PERMS, (b"/tool", b"n0")), (Op.INTRODUCE, (b"3", b"1", b"1")),
                           (Op.RELEASE, (b"3",)), (Op.SET_QUOTA, (b"nodes", b"1"))):
            assert ro.error(op, *fields) == "EROFS"
        assert ro.ok(Op.WATCH, b"/x", b"t") == b"OK\0"
        tx = int(ro.ok(Op.TRANSACTION_START, b"")[:-1])
        assert ro.ok(Op.READ, b"/tool/xenstored", tx_id=tx) == b""
        assert ro.error(Op.WRITE, payload=b"/y\0v", tx_id=tx) == "EROFS"


def test_sockets_are_private(daemon):
    import os
    import stat
    for path in (daemon.socket_path, daemon.ro_socket_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_sigterm_removes_sockets(daemon):
    import os
    assert daemon.stop() == 0
    assert not os.path.exists(daemon.socket_path)
    assert not os.path.exists(daemon.ro_socket_path)
    daemon.start()


# -- found by the random differential test against C xenstored ----------------------------

def test_missing_node_read_in_a_transaction_conflicts_when_its_parent_changes(xs):
    write(xs, "/anc/p", b"v")
    tx = int(xs.ok(Op.TRANSACTION_START, b"")[:-1])
    assert xs.error(Op.READ, b"/anc/p/missing", tx_id=tx) == "ENOENT"
    xs.ok(Op.RM, b"/anc/p")
    assert xs.error(Op.TRANSACTION_END, b"T", tx_id=tx) == "EAGAIN"


def test_commit_fires_one_event_per_node_in_first_touch_order(xs, daemon):
    write(xs, "/ce/n", b"v")
    with RawClient(daemon.socket_path) as other:
        other.ok(Op.WATCH, b"/ce", b"w")
        other.wait_events(1)
        tx = int(xs.ok(Op.TRANSACTION_START, b"")[:-1])
        xs.ok(Op.READ, b"/ce/n", tx_id=tx)
        for path in (b"/ce/m", b"/ce/n", b"/ce/m", b"/ce/n", b"/ce/gone/x"):
            xs.ok(Op.WRITE, payload=path + b"\0v", tx_id=tx)
        xs.ok(Op.RM, b"/ce/gone", tx_id=tx)       # made and removed inside: no event
        xs.ok(Op.TRANSACTION_END, b"T", tx_id=tx)
        assert other.quiet_events() == [(b"/ce/n", b"w"), (b"/ce/m", b"w")]


def test_identical_events_from_one_request_are_sent_once(xs, daemon):
    with RawClient(daemon.socket_path) as other:
        other.ok(Op.WATCH, b"/dup", b"t")
        other.ok(Op.WATCH, b"/dup/a", b"t")
        other.wait_events(2)
        write(xs, "/dup/a", b"v")
        assert other.quiet_events() == [(b"/dup/a", b"t")]


def test_rest_of_a_split_request_that_looks_like_a_request_is_its_payload(xs):
    """The C path answers whole packets at the start of what a read brings, so after a read
    that ended mid-packet the next one must go to the decoder first: here it is exactly a
    READ packet, but it is the rest of a WRITE's value."""
    inner = HEADER.pack(Op.READ, 77, 0, len(b"/tool/xenstored\0")) + b"/tool/xenstored\0"
    payload = b"/split\0" + inner
    xs.sock.sendall(HEADER.pack(Op.WRITE, 76, 0, len(payload)) + payload[:7])
    time.sleep(0.1)             # the daemon reads the first part on its own
    xs.sock.sendall(inner)
    reply = xs.reply()
    assert (reply.req_id, reply.op, reply.payload) == (76, Op.WRITE, b"OK\0")
    assert xs.ok(Op.READ, b"/split") == inner
