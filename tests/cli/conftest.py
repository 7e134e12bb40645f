"""One xsd daemon per test module, loaded with the corpus tree (see ``BASELINE``)."""
import pytest

from tests.daemon_process import DaemonProcess
from tests.cli import harness

BIG_CHILDREN = 150          # names of 30 bytes: the listing passes 4096 bytes
CHAIN_DEPTH = 130           # /t/chain/c/c/...: deeper than ls's 72 columns, longer than 255


def baseline_nodes():
    """(path, value, perms or None) of the tree every case starts from."""
    nodes = [
        ("/t", b"", None),
        ("/t/a", b"hello", None),
        ("/t/empty", b"", None),
        ("/t/bin", b"tab\there\x01x\x7f\\ \xff\x00end\n\r\x1b", None),
        ("/t/utf8", "grüße".encode(), None),
        ("/t/long", b"x" * 100, None),
        ("/t/near", b"y" * 60, None),
        ("/t/" + "n" * 75, b"long name", None),
        ("/t/deep/e/f/g", b"1", None),
        ("/t/perm", b"p", ["n0", "r5", "w7", "b9"]),
        ("/t/tidy/a/b/c", b"", None),
        ("/t/tidy2/only", b"", None),
        ("/t/valued", b"has a value", None),
        ("/t/valued/child", b"", None),
        ("/t/w", b"watched", None),
        ("/local/domain/0/rel", b"relative", None),
        ("/local/domain/0/reldir/x", b"1", None),
    ]
    nodes += [(f"/t/big/child-{i:04d}-" + "z" * 19, b"", None) for i in range(BIG_CHILDREN)]
    nodes.append(("/t/chain" + "/c" * CHAIN_DEPTH, b"end", None))
    return nodes


def load_baseline(client) -> None:
    from watchlib import Perm
    for path, value, perms in baseline_nodes():
        client.write(path, value)
        if perms:
            client.set_perms(path, [Perm(p[0], int(p[1:])) for p in perms])


@pytest.fixture(scope="module")
def cli_daemon(tmp_path_factory):
    """A real xsd, shared by the module's cases (each case restores what it changed)."""
    if not harness.debian_available():
        pytest.skip("Debian's xenstore-utils are not installed in /usr/bin")
    from watchlib import Client
    proc = DaemonProcess(tmp_path_factory.mktemp("cli") / "run").start()
    client = Client(proc.socket_path, reconnect=False)
    try:
        load_baseline(client)
        proc.client = client
        proc.baseline = harness.snapshot(client)
        proc.tracker = harness.StoreTracker(client, proc.baseline)
        yield proc
        final = harness.snapshot(client)
        assert final == proc.baseline, "the cases left the store changed: " + repr(
            {k: (proc.baseline.get(k), final.get(k)) for k in set(final) | set(proc.baseline)
             if final.get(k) != proc.baseline.get(k)})
    finally:
        client.close()
        alive = proc.alive()
        proc.stop()
    assert alive, f"the daemon died during the tests:\n{proc.log()}"
    assert "Traceback" not in proc.log(), proc.log()
