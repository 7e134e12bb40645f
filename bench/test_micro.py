"""Micro-benchmarks under pytest-benchmark: the pieces one request goes through.

    pytest bench/ --benchmark-only                          # run, print the table
    pytest bench/ --benchmark-only --benchmark-autosave     # keep the run (.benchmarks/)
    pytest bench/ --benchmark-only --benchmark-compare      # against the last saved run

Not collected by the test suite (pyproject's testpaths is ``tests``).  Each
group puts the floor beside what it measures: an empty Python call for the
codec, the Python store beside the C store (xsd/nodestore.py's PyNodeStore and
xsd/_native/store.py's NodeStore, same operations, same tree), the pygtrie
fallback beside the C trie.  Compare rows within a group, in one run.

The end-to-end tables (real daemons, xsbench) stay scripts: bench/bench_floors.py,
bench/bench_requests.py.
"""
import struct

import pytest

from xenstore_protocol import Decoder, Op, Packet
from xenstore_protocol.paths import canonicalize
from xenstore_protocol.perms import Perm
from xsd._native import BACKEND, MATCH_ANCESTORS, pytrie
from xsd.nodestore import PyNodeStore

if BACKEND == "cffi":
    from xsd._native import trie as ctrie
    from xsd._native.store import NodeStore as CNodeStore
else:                                        # XSD_NATIVE=python: no C rows
    ctrie = CNodeStore = None

PERMS = (Perm("n", 0),)
VALUE = b"v" * 32
KEYS = 10000                  # as xsbench -n 10000
STORES = [pytest.param(PyNodeStore, id="python")] + \
    ([pytest.param(CNodeStore, id="c")] if CNodeStore else [])
TRIES = [pytest.param(pytrie.WatchTrie, id="pygtrie")] + \
    ([pytest.param(ctrie.WatchTrie, id="c")] if ctrie else [])


# -- codec ----------------------------------------------------------------------

def _batch(n=64):
    """n READ requests back to back, as a busy client's socket delivers them."""
    return b"".join(Packet(Op.READ, i, 0, b"/bench/rw/k%d\0" % i).encode() for i in range(n))


@pytest.mark.benchmark(group="codec")
def test_floor_empty_call(benchmark):
    benchmark(lambda: None)


@pytest.mark.benchmark(group="codec")
def test_decode_one_packet(benchmark):
    data = _batch(1)
    decoder = Decoder()
    benchmark(decoder.feed, data)


@pytest.mark.benchmark(group="codec")
def test_decode_batch_of_64(benchmark):
    data = _batch(64)
    decoder = Decoder()
    packets = benchmark(decoder.feed, data)
    assert len(packets) == 64


@pytest.mark.benchmark(group="codec")
def test_encode_reply(benchmark):
    reply = Packet(Op.READ, 7, 0, VALUE)
    assert len(benchmark(reply.encode)) == 16 + 32


@pytest.mark.benchmark(group="codec")
def test_header_unpack_floor(benchmark):
    """struct alone: what any Python decoder pays per header."""
    header = struct.Struct("=IIII")
    data = _batch(1)
    benchmark(header.unpack_from, data, 0)


@pytest.mark.benchmark(group="codec")
def test_canonicalize_path(benchmark):
    benchmark(canonicalize, "/bench/rw/k1234", 0)


# -- store ----------------------------------------------------------------------

def _filled(store_class):
    store = store_class()
    for i in range(KEYS):
        store.write("/bench/rw/k%d" % i, VALUE, PERMS)
    return store


@pytest.mark.benchmark(group="store-read")
@pytest.mark.parametrize("store_class", STORES)
def test_store_get(benchmark, store_class):
    store = _filled(store_class)
    node = benchmark(store.get, "/bench/rw/k1234")
    assert node.value == VALUE


@pytest.mark.benchmark(group="store-read")
@pytest.mark.parametrize("store_class", STORES)
def test_store_get_without_children(benchmark, store_class):
    """get(path, children=False): value, perms and gen, no children listing."""
    store = _filled(store_class)
    node = benchmark(store.get, "/bench/rw/k1234", False)
    assert node.value == VALUE and node.children is None


@pytest.mark.benchmark(group="store-read")
def test_python_store_dict_lookup_floor(benchmark):
    """The Python store's own lookup (what do_read does before permissions)."""
    store = _filled(PyNodeStore).store
    benchmark(store.get, "/bench/rw/k1234")


@pytest.mark.benchmark(group="store-read")
@pytest.mark.skipif(CNodeStore is None, reason="no C extension")
def test_c_store_bare_crossing_floor(benchmark):
    """One cffi call into xsd_store_get, key encoded beforehand: what any
    per-operation crossing costs before the wrapper builds Python objects."""
    from xsd._native._xsd_native import ffi, lib
    store = _filled(CNodeStore)
    view = ffi.new("struct xsd_node_view *")
    key = b"/bench/rw/k1234"
    assert benchmark(lib.xsd_store_get, store._h, key, len(key), view) == 0


@pytest.mark.benchmark(group="store-overwrite")
@pytest.mark.parametrize("store_class", STORES)
def test_store_overwrite(benchmark, store_class):
    store = _filled(store_class)
    assert benchmark(store.write, "/bench/rw/k1234", VALUE, PERMS) == 0


@pytest.mark.benchmark(group="store-create-rm")
@pytest.mark.parametrize("store_class", STORES)
def test_store_create_and_rm(benchmark, store_class):
    store = _filled(store_class)

    def create_rm():
        store.write("/bench/new/leaf", VALUE, PERMS)
        store.rm("/bench/new")
    benchmark(create_rm)
    assert store.get("/bench/new") is None and store.check() == []


@pytest.mark.benchmark(group="store-directory")
@pytest.mark.parametrize("store_class", STORES)
def test_store_directory_of_1000(benchmark, store_class):
    store = store_class()
    for i in range(1000):
        store.write("/dir/%d" % i, b"", PERMS)
    assert benchmark(store.children_bytes, "/dir").count(b"\0") == 1000


# -- trie -----------------------------------------------------------------------

@pytest.mark.benchmark(group="trie-match")
@pytest.mark.parametrize("trie_class", TRIES)
def test_trie_match_one_of_10000(benchmark, trie_class):
    """A write's watch lookup with 10,000 watches registered elsewhere (xsbench watch:10000)."""
    trie = trie_class()
    for i in range(10000):
        trie.add("/w/%d" % i, i)
    assert benchmark(trie.match, "/w/0", MATCH_ANCESTORS) == [0]


# -- one batch through the request path ------------------------------------------------

BATCH = 64                    # READs and as many WRITEs: one batch a busy client delivers


def _request_batch():
    """BATCH READs and BATCH overwriting WRITEs of filled keys, interleaved, as bytes."""
    packets = []
    for i in range(BATCH):
        packets.append(Packet(Op.READ, 2 * i, 0, b"/bench/rw/k%d\0" % i))
        packets.append(Packet(Op.WRITE, 2 * i + 1, 0, b"/bench/rw/k%d\0" % i + VALUE))
    return b"".join(p.encode() for p in packets)


@pytest.mark.benchmark(group="request-batch")
@pytest.mark.skipif(CNodeStore is None, reason="no C extension")
def test_engine_run_batch(benchmark):
    """The C request path (xsd/_native/engine.c): the whole batch in one crossing, replies
    out as one bytes object.  Per request: this row's time / (2 * BATCH)."""
    from xsd._native.engine import MUTATE, STOP_DONE, Engine
    store = _filled(CNodeStore)
    trie = ctrie.WatchTrie()
    engine = Engine(store.handle, trie.handle)
    conn = engine.conn()
    conn.configure(0, None, True, False, 2048)
    data = _request_batch()
    consumed, out, _, handled, stop = benchmark(engine.run, conn, data, MUTATE)
    assert (consumed, handled, stop) == (len(data), 2 * BATCH, STOP_DONE)
    assert len(out) == BATCH * (16 + len(VALUE)) + BATCH * (16 + 3)


@pytest.mark.benchmark(group="request-batch")
def test_python_dispatch_batch(benchmark):
    """The same batch through today's Python path: Decoder, dispatch.handle per packet on
    the Python core (XSD_NATIVE's store choice aside), one flush."""
    from xsd.config import Config
    from xsd.core.daemon import Daemon
    daemon = Daemon(Config(rundir="/nonexistent"))
    out = []
    session = daemon.open_session(out.append, name="bench")
    for i in range(KEYS):
        daemon.handle(session, Packet(Op.WRITE, i, 0, b"/bench/rw/k%d\0" % i + VALUE))
    daemon.flush()
    out.clear()
    data = _request_batch()

    def batch():
        for packet in Decoder().feed(data):
            daemon.handle(session, packet)
        daemon.flush()
        written = out[0]
        out.clear()
        return written
    written = benchmark(batch)
    assert len(written) == BATCH * (16 + len(VALUE)) + BATCH * (16 + 3)


# -- watched writes: the change in C, the event fired by Python ---------------------------

def _watched_daemon():
    """A daemon, a writer, and a watcher on /bench/w (privileged both): every WRITE of the
    batch fires one event."""
    from xsd.config import Config
    from xsd.core.daemon import Daemon
    daemon = Daemon(Config(rundir="/nonexistent"))
    out, watched = [], []
    writer = daemon.open_session(out.append, name="writer", privileged=True)
    watcher = daemon.open_session(watched.append, name="watcher", privileged=True)
    daemon.handle(watcher, Packet(Op.WATCH, 1, 0, b"/bench/w\0tok\0"))
    daemon.flush()
    data = b"".join(Packet(Op.WRITE, i, 0, b"/bench/w/k%02d\0" % i + VALUE).encode()
                    for i in range(BATCH))

    def done():
        daemon.flush()
        events = sum(map(len, watched))      # event bytes the watcher was sent
        out.clear()
        watched.clear()
        return events
    return daemon, writer, data, done


@pytest.mark.benchmark(group="watched-writes")
@pytest.mark.skipif(CNodeStore is None, reason="no C extension")
def test_fastpath_watched_writes(benchmark):
    """BATCH WRITEs under a watch through FastPath.serve: each made by the engine, which
    stops after it; Python fires its event and sends the reply.  Per write: time / BATCH."""
    daemon, writer, data, done = _watched_daemon()
    assert daemon.fastpath is not None

    def batch():
        assert daemon.fastpath.serve(writer, data, 1 << 30)[0] == len(data)
        return done()
    assert benchmark(batch) == BATCH * (16 + len("/bench/w/k00\0tok\0"))


@pytest.mark.benchmark(group="watched-writes")
def test_python_dispatch_watched_writes(benchmark):
    """The same batch through Decoder and dispatch.handle (what the engine left to Python
    before it made watched changes itself)."""
    daemon, writer, data, done = _watched_daemon()

    def batch():
        for packet in Decoder().feed(data):
            daemon.handle(writer, packet)
        return done()
    assert benchmark(batch) == BATCH * (16 + len("/bench/w/k00\0tok\0"))
