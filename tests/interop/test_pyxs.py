"""python3-pyxs (unchanged) against the real daemon."""
import threading

import pytest

pyxs = pytest.importorskip("pyxs")


@pytest.fixture
def client(daemon):
    with pyxs.Client(unix_socket_path=daemon.socket_path) as c:
        yield c


def test_read_write_mkdir_delete_list_exists(client):
    client.write(b"/p/x", b"1")
    assert client.read(b"/p/x") == b"1"
    client.mkdir(b"/p/dir")
    assert client.list(b"/p") == [b"x", b"dir"]
    assert client.exists(b"/p/x") and not client.exists(b"/p/nope")
    client.delete(b"/p/x")
    assert client.list(b"/p") == [b"dir"]
    with pytest.raises(pyxs.PyXSError):
        client.read(b"/p/x")


def test_perms_walk_and_domain_queries(client):
    client.write(b"/q/a", b"A")
    client.set_perms(b"/q/a", [b"n0", b"r5"])
    assert client.get_perms(b"/q/a") == [b"n0", b"r5"]
    assert list(client.walk(b"/q")) == [(b"/q", b"", [b"a"]), (b"/q/a", b"A", [])]
    assert client.get_domain_path(3) == b"/local/domain/3"
    assert client.is_domain_introduced(0) is True
    assert client.is_domain_introduced(17) is False


def test_transaction_commit_and_eagain(client, daemon):
    client.transaction()
    client.write(b"/t/y", b"2")
    assert client.commit() is True
    assert client.read(b"/t/y") == b"2"
    client.transaction()
    client.read(b"/t/y")
    with pyxs.Client(unix_socket_path=daemon.socket_path) as other:
        other.write(b"/t/y", b"outside")
    client.write(b"/t/y", b"inside")
    assert client.commit() is False          # EAGAIN
    assert client.read(b"/t/y") == b"outside"


def test_monitor_watch_and_wait(client, daemon):
    with client.monitor() as monitor:
        monitor.watch(b"/m", b"tok")
        events = monitor.wait()
        assert next(events) == (b"/m", b"tok")          # the initial event

        def writer():
            with pyxs.Client(unix_socket_path=daemon.socket_path) as other:
                other.write(b"/m/k", b"v")
                other.delete(b"/m")
        thread = threading.Thread(target=writer)
        thread.start()
        assert next(events) == (b"/m/k", b"tok")
        assert next(events) == (b"/m", b"tok")
        thread.join()
        monitor.unwatch(b"/m", b"tok")
