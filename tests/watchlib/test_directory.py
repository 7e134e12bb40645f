"""ls: DIRECTORY, and the DIRECTORY_PART fallback when the reply passes 4096 bytes."""
import pytest

from watchlib import XenstoreError
from watchlib import commands
from xenstore_protocol import Op


def _make_big_dir(client, n=300):
    names = [f"child-with-a-rather-long-name-{i:04d}" for i in range(n)]
    with client.transaction() as t:
        for name in names:
            t.write(f"/big/{name}", b"")
    assert sum(len(n) + 1 for n in names) > 4096
    return names


def test_big_directory_falls_back_to_directory_part(client):
    names = _make_big_dir(client)
    with pytest.raises(XenstoreError) as e:
        client.request(Op.DIRECTORY, b"/big\0")
    assert e.value.name == "E2BIG"
    assert sorted(client.ls("/big")) == names


def test_big_directory_inside_a_transaction(client):
    names = _make_big_dir(client)
    with client.transaction() as t:
        assert sorted(t.ls("/big")) == names


def _drive(gen, replies):
    """Run a command against scripted replies; returns (result, requests)."""
    sent = []
    try:
        req = next(gen)
        while True:
            sent.append(req)
            reply = replies.pop(0)
            req = gen.throw(reply) if isinstance(reply, Exception) else gen.send(reply)
    except StopIteration as stop:
        return stop.value, sent


def test_directory_part_restarts_when_the_generation_changes():
    replies = [
        XenstoreError("E2BIG"),
        b"7\0a\0b\0\0",          # gen 7, offset 0
        b"8\0x\0\0",             # gen changed: start over
        b"8\0a\0b\0\0",
        b"8\0c\0\0",
        b"8\0\0",                # empty chunk: done
    ]
    result, sent = _drive(commands.ls("/d"), replies)
    assert result == ["a", "b", "c"]
    assert [op for op, _ in sent] == [Op.DIRECTORY] + [Op.DIRECTORY_PART] * 5
    assert sent[1][1] == b"/d\x000\x00"
    assert sent[4][1] == b"/d\x004\x00"      # offset counts bytes of "a\0b\0"


def test_directory_errors_other_than_e2big_propagate():
    with pytest.raises(XenstoreError) as e:
        _drive(commands.ls("/d"), [XenstoreError("ENOENT")])
    assert e.value.name == "ENOENT"
