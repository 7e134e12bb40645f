"""The shims' logic with a scripted handle, for what a live daemon will not do on cue
(a commit that fails with EAGAIN, a transaction that cannot start), plus the C
parsing helpers."""
import errno
import io

import pytest

from watchlib.cli import cformat, tools
from watchlib.cli.gnu_getopt import LongOpt, Parser
from watchlib.cli.xs import XsError


class FakeXs:
    """An in-memory store with xs_* calls; ``end_errors`` fail TRANSACTION_END in turn."""

    def __init__(self, values, end_errors=(), start_error=None):
        self.values = dict(values)
        self.end_errors = list(end_errors)
        self.start_error = start_error
        self.calls = []

    def transaction_start(self):
        self.calls.append("start")
        if self.start_error:
            raise XsError(self.start_error)
        return 7

    def transaction_end(self, tx, abort):
        self.calls.append("abort" if abort else "commit")
        if self.end_errors:
            raise XsError(self.end_errors.pop(0))

    def read(self, path, tx=0):
        self.calls.append(("read", path))
        if path not in self.values:
            raise XsError(errno.ENOENT)
        return self.values[path]

    def write(self, path, value, tx=0):
        self.calls.append(("write", path, value))
        self.values[path] = value

    def close(self):
        pass


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setattr(tools, "quiet_watchlib_logging", lambda: None)

    def run(fake, mode, *args):
        monkeypatch.setattr(tools.XsHandle, "open", classmethod(lambda cls: fake))
        out, err = io.BytesIO(), io.BytesIO()
        rc = tools.Tool([f"xenstore-{mode}", *args], mode=mode, stdout=out, stderr=err).run()
        return rc, out.getvalue(), err.getvalue()
    return run


def test_a_commit_answered_eagain_reruns_and_prints_once(run):
    fake = FakeXs({b"/a": b"1", b"/b": b"2"}, end_errors=[errno.EAGAIN, errno.EAGAIN])
    assert run(fake, "read", "/a", "/b") == (0, b"1\n2\n", b"")
    assert fake.calls.count("start") == 3 and fake.calls.count("commit") == 3


def test_a_failed_read_aborts_and_keeps_what_was_read(run):
    fake = FakeXs({b"/a": b"1"})
    assert run(fake, "read", "/a", "/nope") == (
        1, b"1\n", b"xenstore-read: couldn't read path /nope\n")
    assert fake.calls[-1] == "abort"


def test_a_transaction_that_cannot_start(run):
    fake = FakeXs({}, start_error=errno.EROFS)
    assert run(fake, "write", "/a", "1", "/b", "2") == (
        1, b"", b"xenstore-write: couldn't start transaction\n")


def test_a_transaction_that_cannot_end_prints_nothing(run):
    fake = FakeXs({b"/a": b"1", b"/b": b"2"}, end_errors=[errno.EIO])
    assert run(fake, "read", "/a", "/b") == (1, b"", b"xenstore-read: couldn't end transaction\n")


def test_eagain_after_a_failure_is_not_retried(run):
    fake = FakeXs({b"/a": b"1"}, end_errors=[errno.EAGAIN])
    assert run(fake, "read", "/a", "/nope") == (
        1, b"", b"xenstore-read: couldn't read path /nope\nxenstore-read: couldn't end transaction\n")


def test_one_key_needs_no_transaction(run):
    fake = FakeXs({b"/a": b"x"})
    assert run(fake, "read", "/a")[0] == 0
    assert "start" not in fake.calls


# -- escaping ---------------------------------------------------------------------------

def test_every_byte_survives_sanitise_then_unsanitise():
    data = bytes(range(256)) * 2
    assert cformat.unsanitise(cformat.sanitise(data)) == data


@pytest.mark.parametrize("raw,shown", [
    (b"a\tb\x01c", b"a\\tb\\001c"), (b"\x07\x08\x1b\x7f\xff", b"\\007\\x08\\x1b\\x7f\\xff"),
    (b"\\", b"\\\\"), (b"\n\r\x00", b"\\n\\r\\000"), (b"plain ~ text", b"plain ~ text"),
])
def test_sanitise(raw, shown):
    assert cformat.sanitise(raw) == shown


@pytest.mark.parametrize("text,stored", [
    (b"\\x41\\x4g", b"A\x04g"), (b"\\xZ", b"xZ"), (b"end\\", b"end\x00"), (b"\\08", b"\x008"),
    (b"\\777", b"\xff"), (b"\\q", b"q"), (b"\\x-1", b"\xff"), (b"\\x 5", b"\x05"),
])
def test_unsanitise(text, stored):
    assert cformat.unsanitise(text) == stored


@pytest.mark.parametrize("text,value", [
    ("5", 5), (" 5x", 5), ("-1", -1), ("abc", 0), ("", 0), ("99999999999", 1215752191),
    ("+7", 7), ("0x10", 0),
])
def test_atoi(text, value):
    assert cformat.c_atoi(text) == value


# -- options -----------------------------------------------------------------------------

LONG = [LongOpt("help", False, "h"), LongOpt("number", True, "n"), LongOpt("raw", False, "R"),
        LongOpt("recurse", False, "r")]


def parse(*args, posix=False):
    messages = []
    parser = Parser(["prog", *args], "hn:Rr", LONG, messages.append,
                    extensions=[LongOpt("json", False, "json")], posixly_correct=posix)
    return list(parser), parser.operands, messages


def test_options_are_permuted_unless_posixly_correct():
    assert parse("k1", "-R", "k2") == ([("R", None)], ["k1", "k2"], [])
    assert parse("k1", "-R", "k2", posix=True) == ([], ["k1", "-R", "k2"], [])


def test_option_arguments():
    assert parse("-n3", "-n", "4", "--number=5", "--num", "6")[0] == [
        ("n", "3"), ("n", "4"), ("n", "5"), ("n", "6")]
    assert parse("-n")[2] == ["prog: option requires an argument -- 'n'\n"]
    assert parse("--number")[2] == ["prog: option '--number' requires an argument\n"]


def test_long_option_complaints():
    assert parse("--r")[2] == ["prog: option '--r' is ambiguous; possibilities: '--raw' '--recurse'\n"]
    assert parse("--he=1")[2] == ["prog: option '--help' doesn't allow an argument\n"]
    assert parse("--nope=2")[2] == ["prog: unrecognized option '--nope=2'\n"]


def test_extensions_match_only_spelled_out():
    assert parse("--json")[0] == [("json", None)]
    assert parse("--js")[2] == ["prog: unrecognized option '--js'\n"]
    assert parse("--json=1")[2] == ["prog: unrecognized option '--json=1'\n"]
