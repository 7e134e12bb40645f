"""Dispatch, driven in-process: our own bugs become EIO and the daemon lives on.

A real daemon cannot be made to hit a bug on purpose, so this drives the same
Daemon object the server uses, with a handler made to fail.
"""
from xenstore_protocol import Decoder, Op, Packet

from xsd.core import dispatch
from xsd.config import Config
from xsd.core.daemon import Daemon


def run(daemon, session_out, packet):
    session = daemon.open_session(session_out.append, name="unit")
    daemon.handle(session, packet)
    daemon.flush()
    return Decoder().feed(b"".join(session_out))


def test_unexpected_exception_answers_eio_and_is_logged(monkeypatch, caplog):
    daemon = Daemon(Config(rundir="/nonexistent"))

    def broken(*args):
        raise RuntimeError("a bug")

    table = list(dispatch.TABLE)
    table[Op.READ] = (broken, dispatch.USES_TX)
    monkeypatch.setattr(dispatch, "TABLE", table)
    replies = run(daemon, [], Packet(Op.READ, 9, 0, b"/tool\0"))
    assert replies == [Packet(Op.ERROR, 9, 0, b"EIO\0")]
    assert "a bug" in caplog.text and "Traceback" in caplog.text
    monkeypatch.undo()
    assert run(daemon, [], Packet(Op.READ, 10, 0, b"/tool/xenstored\0")) == [Packet(Op.READ, 10, 0, b"")]


def test_failed_request_changes_nothing():
    daemon = Daemon(Config(rundir="/nonexistent"))
    store = daemon.store
    before = {p: (n.value, n.perms, list(store.child_names(p))) for p, n in store.items()}
    run(daemon, [], Packet(Op.WRITE, 1, 0, b"/a/b.c\0v"))
    run(daemon, [], Packet(Op.SET_PERMS, 2, 0, b"/tool\0n0\0bogus\0"))
    after = {p: (n.value, n.perms, list(store.child_names(p))) for p, n in store.items()}
    assert before == after
    assert daemon.check() == []


def test_the_store_is_the_c_store_unless_the_python_fallback_is_asked_for():
    """XSD_NATIVE=c (./dev test) puts the daemon's nodes in the C store (xsd/core/cstore.py);
    tests/native/test_backend.py fails the run when the C build is not in use unless
    XSD_NATIVE=python asked for the Python store."""
    from xsd._native import BACKEND
    from xsd.core.store import Store
    store = Daemon(Config(rundir="/nonexistent")).store
    if BACKEND == "cffi":
        from xsd.core.cstore import CStore
        assert type(store) is CStore
    else:
        assert type(store) is Store
