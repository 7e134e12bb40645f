"""Transactions: commit, abort, EAGAIN handled by replay or by re-running a function."""
import pytest

from watchlib import XenstoreError


def test_commit_makes_writes_visible(client, other):
    with client.transaction() as t:
        t.write("/tx/a", b"1")
        t.mkdir("/tx/d")
        assert t.read("/tx/a") == b"1"
        assert not other.exists("/tx/a")          # invisible outside until commit
    assert other.read("/tx/a") == b"1"
    assert other.exists("/tx/d")


def test_exception_in_block_aborts(client):
    with pytest.raises(RuntimeError):
        with client.transaction() as t:
            t.write("/tx/gone", b"1")
            raise RuntimeError("boom")
    assert not client.exists("/tx/gone")


def test_tx_argument_form(client):
    with client.transaction() as t:
        client.write("/tx/arg", b"1", tx=t)
        assert client.read("/tx/arg", tx=t) == b"1"
        assert client.exists("/tx/arg", tx=t)
        assert client.ls("/tx", tx=t) == ["arg"]
        assert client.get_perms("/tx/arg", tx=t)[0].kind == "n"
    assert client.read("/tx/arg") == b"1"


def test_eagain_on_blind_writes_is_retried_by_replay(client, other):
    client.write("/tx/k", b"0")
    with client.transaction(attempts=3) as t:
        t.write("/tx/k", b"mine")
        other.write("/tx/k", b"theirs")           # conflicts: the commit gets EAGAIN
    assert t.retries == 1
    assert client.read("/tx/k") == b"mine"


def test_eagain_after_a_changed_read_is_raised(client, other):
    client.write("/tx/r", b"0")
    with pytest.raises(XenstoreError) as e:
        with client.transaction(attempts=5) as t:
            value = t.read("/tx/r")
            t.write("/tx/w", value + b"+1")
            other.write("/tx/r", b"changed")       # the replayed read would differ
    assert e.value.name == "EAGAIN"
    assert not client.exists("/tx/w")


def test_eagain_when_attempts_run_out(client, other):
    client.write("/tx/x", b"0")
    with pytest.raises(XenstoreError) as e:
        with client.transaction(attempts=1) as t:
            t.write("/tx/x", b"mine")
            other.write("/tx/x", b"theirs")
    assert e.value.name == "EAGAIN"
    assert client.read("/tx/x") == b"theirs"


def test_run_transaction_reruns_the_function_on_eagain(client, other):
    client.write("/tx/n", b"0")
    calls = []

    def increment(t):
        calls.append(1)
        n = int(t.read("/tx/n"))
        if len(calls) == 1:
            other.write("/tx/n", b"10")            # someone else got there first
        t.write("/tx/n", b"%d" % (n + 1))
        return n + 1

    assert client.run_transaction(increment) == 11
    assert len(calls) == 2
    assert client.read("/tx/n") == b"11"


def test_run_transaction_gives_up_after_attempts(client, other):
    client.write("/tx/m", b"0")

    def always_conflicts(t):
        t.read("/tx/m")
        t.write("/tx/m", b"x")
        other.write("/tx/m", b"y")

    with pytest.raises(XenstoreError) as e:
        client.run_transaction(always_conflicts, attempts=3)
    assert e.value.name == "EAGAIN"
