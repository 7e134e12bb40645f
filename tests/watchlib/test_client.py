"""The blocking Client's requests against the real daemon."""
import threading

import pytest

from watchlib import Client, Disconnected, Perm, XenstoreError
from watchlib import commands
from xenstore_protocol import Op


def test_write_read_roundtrip_bytes_and_str(client):
    client.write("/wl/a", b"\x00\x01binary")
    client.write("/wl/b", "text")
    assert client.read("/wl/a") == b"\x00\x01binary"
    assert client.read("/wl/b") == b"text"


def test_read_missing_raises_enoent(client):
    with pytest.raises(XenstoreError) as e:
        client.read("/wl/missing")
    assert e.value.name == "ENOENT"


def test_invalid_path_raises_einval(client):
    with pytest.raises(XenstoreError) as e:
        client.write("/wl/bad.name", b"")
    assert e.value.name == "EINVAL"


def test_mkdir_ls_rm(client):
    client.mkdir("/wl/dir/x")
    client.write("/wl/dir/y", b"")
    assert sorted(client.ls("/wl/dir")) == ["x", "y"]
    assert client.ls("/wl/dir/x") == []
    client.rm("/wl/dir")
    assert not client.exists("/wl/dir")


def test_exists_is_false_only_for_enoent(client):
    client.write("/wl/e", b"")
    assert client.exists("/wl/e")
    assert not client.exists("/wl/nope")
    with pytest.raises(XenstoreError):
        client.exists("/wl/bad.path")       # EINVAL is not "does not exist"


def test_perms_from_strings_and_perm_objects(client):
    client.write("/wl/p", b"")
    client.set_perms("/wl/p", ["n0", "r1"])
    assert client.get_perms("/wl/p") == [Perm("n", 0), Perm("r", 1)]
    client.set_perms("/wl/p", [Perm("b", 0)])
    assert client.get_perms("/wl/p") == [Perm("b", 0)]


def test_domain_requests(client):
    assert client.get_domain_path(7) == "/local/domain/7"
    assert client.is_domain_introduced(0)
    assert not client.is_domain_introduced(7)
    client.introduce(7, 1234, 5)
    assert client.is_domain_introduced(7)
    client.release(7)
    assert not client.is_domain_introduced(7)


def test_raw_request_escape_hatch(client):
    client.write("/wl/raw", b"v")
    assert client.request(Op.READ, b"/wl/raw\0") == b"v"
    with pytest.raises(XenstoreError) as e:
        client.request(Op.READ, b"/wl/none\0")
    assert e.value.name == "ENOENT"


def test_concurrent_requests_from_many_threads_get_their_own_replies(client):
    errors = []

    def worker(n):
        try:
            for i in range(50):
                client.write(f"/wl/t{n}/k{i}", b"%d-%d" % (n, i))
                assert client.read(f"/wl/t{n}/k{i}") == b"%d-%d" % (n, i)
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_socket_path_from_argument_env_and_default(monkeypatch, daemon):
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    assert commands.socket_path() == "/var/run/xenstored/socket"
    assert commands.socket_path(read_only=True) == "/var/run/xenstored/socket_ro"
    monkeypatch.setenv("XENSTORED_PATH", daemon.socket_path)
    assert commands.socket_path() == daemon.socket_path
    assert commands.socket_path(read_only=True) == daemon.ro_socket_path
    assert commands.socket_path("/x/y") == "/x/y"
    with Client() as c:
        assert c.socket_path == daemon.socket_path
        c.write("/wl/env", b"1")


def test_read_only_client_reads_but_cannot_write(daemon, client):
    client.write("/wl/ro", b"1")
    with Client(daemon.ro_socket_path) as ro:
        assert ro.read("/wl/ro") == b"1"
        with pytest.raises(XenstoreError) as e:
            ro.write("/wl/ro", b"2")
        assert e.value.name in ("EROFS", "EACCES")


def test_connect_failure_raises(tmp_path):
    with pytest.raises(OSError):
        Client(str(tmp_path / "no-socket"))


def test_closed_client_refuses_requests(daemon):
    c = Client(daemon.socket_path)
    c.close()
    with pytest.raises(Disconnected):
        c.read("/")
    c.close()    # idempotent
