"""xsd-fleet end to end: real daemons, a real nats-server, bridges, FleetMirror consumers."""
import asyncio
import json
import os
import signal
import subprocess
import sys

import nats
from hypothesis import given
from hypothesis import strategies as st

from tests.daemon_process import ROOT
from tests.nats_process import free_port
from tests.waiting import wait_for
from watchlib import Client, XenstoreError
from watchlib.fleet import DOMAINS, FleetMirror, key_of, meta_key, path_of_key, subject_filter
from watchlib.hypervisor import MockHypervisor
from watchlib.mirror import Added, Changed, Removed
from xsd_fleet import Bridge

PATTERNS = ["/local/domain/*/name", "/local/domain/*/device/*/*/state", "/vm/**"]


def store_view(socket_path, patterns=PATTERNS) -> dict:
    with Client(socket_path, timeout=10) as c:
        return {path: c.read(path) for p in patterns for path in c.glob(p)}


def fleet_view(fm, host) -> dict:
    return {path: value for (h, path), value in fm.values.items() if h == host}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


# -- the key scheme -------------------------------------------------------------------------

COMPONENT = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF,
                                  blacklist_characters="/"), min_size=1, max_size=8)


@given(host=COMPONENT, parts=st.lists(COMPONENT, min_size=0, max_size=5))
def test_keys_are_valid_and_reversible(host, parts):
    path = "/" + "/".join(parts)
    key = key_of(host, path)
    assert all(ch.isascii() and (ch.isalnum() or ch in "-_.") for ch in key)
    assert not key.startswith(".") and not key.endswith(".") and ".." not in key
    assert path_of_key(key) == (host, path)


def test_key_examples_and_filters():
    assert key_of("host-7", "/local/domain/3/name") == "host-7.local.domain.3.name"
    assert key_of("h_1", "/vm/a.b/@x") == "h_5F1.vm.a_2Eb._40x"
    assert path_of_key("h.=heartbeat") == ("h", None)
    assert subject_filter("host-*", "/local/domain/*/device/**/state") == "*.local.domain.*.device.>"
    assert subject_filter("host-1", "/vm/*") == "host-1.vm.*"


# -- a bridge and a consumer in one loop ---------------------------------------------------------

async def start_bridge(daemon, nats_server, host, **kwargs):
    kwargs.setdefault("domains", False)
    kwargs.setdefault("heartbeat", 0.2)
    return await Bridge(host, servers=[nats_server.url], xenstored_path=daemon.socket_path,
                        patterns=PATTERNS, **kwargs).start()


def test_a_change_reaches_the_consumer(daemon, nats_server):
    async def main():
        seen = []
        bridge = await start_bridge(daemon, nats_server, "host-1")
        fm = await FleetMirror.start([nats_server.url], "host-*", "/local/domain/*/device/**/state",
                                     lambda host, change: seen.append((host, change)))
        try:
            with Client(daemon.socket_path) as c:
                c.write("/local/domain/0/device/vif/0/state", b"1")
                c.write("/local/domain/0/device/vif/0/mac", b"aa")        # not selected
                await bridge.sync()
                await fm.sync()
                assert seen == [("host-1", Added("/local/domain/0/device/vif/0/state", b"1"))]
                c.write("/local/domain/0/device/vif/0/state", b"4")
                await bridge.sync()
                await fm.sync()
                c.rm("/local/domain/0/device")
                await bridge.sync()
                await fm.sync()
            assert seen[1:] == [
                ("host-1", Changed("/local/domain/0/device/vif/0/state", b"4", b"1")),
                ("host-1", Removed("/local/domain/0/device/vif/0/state", b"4"))]
            wait_for(lambda: fm.age("host-1") is not None)
            assert fm.age("host-1") < 60
        finally:
            await fm.close()
            await bridge.close()
    run(main())


def test_two_hosts_never_see_each_others_keys(daemon_factory, nats_server):
    a, b = daemon_factory(name="a"), daemon_factory(name="b")
    for d, value in ((a, b"on-a"), (b, b"on-b")):
        with Client(d.socket_path) as c:
            c.write("/vm/u1/name", value)
            c.write(f"/vm/only-{value.decode()}", b"1")

    async def main():
        ba = await start_bridge(a, nats_server, "host-a")
        bb = await start_bridge(b, nats_server, "host-b")
        fa = await FleetMirror.start([nats_server.url], "host-a", "/**")
        fall = await FleetMirror.start([nats_server.url], "*", "/**")
        try:
            await ba.sync()
            await bb.sync()
            await fa.sync()
            await fall.sync()
            assert {h for h, _ in fa.values} == {"host-a"}
            assert fleet_view(fa, "host-a") == store_view(a.socket_path)
            assert fleet_view(fall, "host-a") == store_view(a.socket_path)
            assert fleet_view(fall, "host-b") == store_view(b.socket_path)
            assert fall.values[("host-b", "/vm/u1/name")] == b"on-b"
            assert ("host-a", "/vm/only-on-b") not in fall.values
        finally:
            for x in (fa, fall, ba, bb):
                await x.close()
    run(main())


def test_restarting_nats_server_ends_equal(daemon, nats_server):
    async def main():
        bridge = await start_bridge(daemon, nats_server, "host-1")
        fm = await FleetMirror.start([nats_server.url], "host-1", "/**")   # lives through it
        with Client(daemon.socket_path) as c:
            c.write("/vm/a/state", b"running")
            c.write("/vm/b/state", b"running")
            await bridge.sync()
            nats_server.restart()
            c.write("/vm/a/state", b"paused")     # made while the broker was away or just back
            c.rm("/vm/b")
            c.write("/vm/c/state", b"running")
            await bridge.sync(timeout=60)
        try:
            await fm.sync()
            assert fleet_view(fm, "host-1") == store_view(daemon.socket_path)
            assert bridge.counters["reconciles"] >= 2      # the start, and the reconnect
        finally:
            await fm.close()
            await bridge.close()
    run(main())


def test_restarting_xenstored_ends_equal(daemon_factory, nats_server):
    """A daemon without persistence comes back empty: the bridge's mirror re-reads on its
    Resync, and the bucket loses the keys of nodes that are gone."""
    daemon = daemon_factory("--no-persist")

    async def main():
        with Client(daemon.socket_path) as c:
            c.write("/vm/before/state", b"running")
        bridge = await start_bridge(daemon, nats_server, "host-1")
        fm = await FleetMirror.start([nats_server.url], "host-1", "/**")
        try:
            await bridge.sync()
            await fm.sync()
            assert ("host-1", "/vm/before/state") in fm.values
            daemon.restart()
            with Client(daemon.socket_path) as c:
                c.write("/vm/after/state", b"running")
            await bridge.sync(timeout=60)
            await fm.sync()
            assert fleet_view(fm, "host-1") == store_view(daemon.socket_path)
            assert ("host-1", "/vm/before/state") not in fm.values
            assert bridge.mirror.resyncs >= 1
        finally:
            await fm.close()
            await bridge.close()
    run(main())


def test_overflowing_the_bridge_queue_ends_equal(daemon, nats_server):
    async def main():
        bridge = await start_bridge(daemon, nats_server, "host-1", queue_max=5)
        fm = await FleetMirror.start([nats_server.url], "host-1", "/**")
        try:
            await bridge.sync()
            nats_server.stop()                   # the broker is away: changes pile up
            with Client(daemon.socket_path) as c:
                for i in range(40):
                    c.write(f"/vm/u{i}/state", b"running")
                c.rm("/vm/u3")
                await bridge.mirror.sync()
                assert bridge.counters["overflows"] >= 1 and len(bridge.pending) <= 5
                nats_server.start()
                await bridge.sync(timeout=60)
                await fm.sync()
                assert fleet_view(fm, "host-1") == store_view(daemon.socket_path)
                assert ("host-1", "/vm/u3/state") not in fm.values
        finally:
            await fm.close()
            await bridge.close()
    run(main())


def test_killing_the_bridge_ends_equal(daemon, nats_server, tmp_path):
    """A real xsd-fleet process, SIGKILLed; what changed meanwhile (writes and a removed
    subtree) is in the bucket once a new one has run, and stale keys are gone."""
    log = open(tmp_path / "bridge.log", "ab")

    def bridge_process():
        return subprocess.Popen(
            [sys.executable, "-m", "xsd_fleet", "--host", "host-k", "--servers", nats_server.url,
             "--xenstored-path", daemon.socket_path, "--no-domains", "--heartbeat", "0.1",
             *sum((["--pattern", p] for p in PATTERNS), [])],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
            stdout=subprocess.DEVNULL, stderr=log)

    async def main():
        fm = await FleetMirror.start([nats_server.url], "host-k", "/**")

        async def equal():
            for _ in range(400):                 # the barrier: the consumer caught up and matches
                await fm.sync()
                if fleet_view(fm, "host-k") == store_view(daemon.socket_path):
                    return True
                await asyncio.sleep(0.05)
            return False

        with Client(daemon.socket_path) as c:
            c.write("/vm/x/state", b"1")
            c.write("/vm/y/state", b"1")
            proc = bridge_process()
            try:
                assert await equal()
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                c.write("/vm/x/state", b"2")
                c.rm("/vm/y")
                c.write("/vm/z/state", b"3")
                proc = bridge_process()
                assert await equal()
                assert ("host-k", "/vm/y") not in fm.values
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(20) == 0, (tmp_path / "bridge.log").read_text()
        await fm.close()
    try:
        run(main())
    finally:
        log.close()


def test_domain_created_and_destroyed_is_announced_once_each(daemon, nats_server):
    hv = MockHypervisor(f"{daemon.rundir}/mock-hypervisor.json")

    async def events(host):
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        sub = await js.subscribe(f"xsd.{host}.domain.>", ordered_consumer=True)
        out = []
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                break
            out.append((msg.subject, json.loads(msg.data)))
        await nc.close()
        return out

    def release(c, domid):
        try:
            c.release(domid)
        except XenstoreError as e:
            assert e.name == "ENOENT"        # xsd released it already (the mock said so)

    async def main():
        with Client(daemon.socket_path) as c:
            bridge = await start_bridge(daemon, nats_server, "host-d", domains=True, hypervisor=hv)
            await bridge.sync()
            hv.create(7, uuid="u7")
            c.introduce(7, 100, 1)
            await bridge.sync()
            await bridge.close()
            # A restarted bridge announces nothing it had announced before (its table
            # of what it published is in the bucket).
            bridge = await start_bridge(daemon, nats_server, "host-d", domains=True, hypervisor=hv)
            await bridge.sync()
            assert bridge.counters["domain_events"] == bridge.counters["domain_duplicates"] == 0
            hv.destroy(7)
            release(c, 7)
            await bridge.sync()
            await bridge.close()
            # Even without that table (as if it died between publishing and saving it),
            # the message ids repeat and JetStream drops the repeats.
            nc = await nats.connect(nats_server.url)
            await (await nc.jetstream().key_value("xsd")).delete(meta_key("host-d", DOMAINS))
            await nc.close()
            bridge = await start_bridge(daemon, nats_server, "host-d", domains=True, hypervisor=hv)
            await bridge.sync()
            assert bridge.counters["domain_duplicates"] == 1        # dom0's "added"
            assert bridge.counters["domain_events"] == 0
            await bridge.close()
        got = [(subject, e["domid"], e["uuid"]) for subject, e in await events("host-d")]
        assert got == [("xsd.host-d.domain.0.added", 0, "00000000-0000-0000-0000-000000000000"),
                       ("xsd.host-d.domain.7.added", 7, "u7"),
                       ("xsd.host-d.domain.7.removed", 7, "u7")]
    run(main())


def test_start_up_failures_are_one_line(nats_server, tmp_path):
    def xsd_fleet(*args):
        return subprocess.run([sys.executable, "-m", "xsd_fleet", "--no-domains", *args],
                              cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                              capture_output=True, text=True, timeout=60)

    no_xs = xsd_fleet("--servers", nats_server.url, "--xenstored-path", str(tmp_path / "none"))
    assert no_xs.returncode == 1
    assert no_xs.stderr.startswith("xsd-fleet: cannot connect to xenstored: ")
    assert len(no_xs.stderr.splitlines()) == 1, no_xs.stderr
    no_nats = xsd_fleet("--servers", f"nats://127.0.0.1:{free_port()}", "--connect-timeout", "1")
    assert no_nats.returncode == 1
    assert no_nats.stderr.startswith("xsd-fleet: cannot use NATS JetStream at nats://127.0.0.1:")
    assert len(no_nats.stderr.splitlines()) == 1, no_nats.stderr
    bad = xsd_fleet("--queue-max", "0")
    assert bad.returncode == 2 and "--queue-max must be at least 1" in bad.stderr
    assert "Traceback" not in no_xs.stderr + no_nats.stderr + bad.stderr


def xsd_fleet_cli(*args, env_drop=()):
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    env["PYTHONPATH"] = ROOT
    return subprocess.run([sys.executable, "-m", "xsd_fleet", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_bad_options_are_one_line_and_exit_2():
    for args, says in ((["--pattern", "no-slash"], "'no-slash' is not an absolute path"),
                       (["--pattern", "/a//b"], "empty component"),
                       (["--pattern", "@introduceDomain"], "not @names"),
                       (["--heartbeat", "nan"], "--heartbeat: 'nan': want a finite"),
                       (["--heartbeat", "inf"], "--heartbeat: 'inf': want a finite"),
                       (["--connect-timeout", "-1"], "--connect-timeout: '-1': want a finite"),
                       (["--connect-timeout", "0"], "--connect-timeout: '0': want a finite")):
        # No broker and no daemon here: a bad option must be refused before either is tried.
        done = xsd_fleet_cli("--no-domains", "--servers", f"nats://127.0.0.1:{free_port()}",
                             "--xenstored-path", "/nonexistent/socket", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("xsd-fleet: ") and says in done.stderr, (args, done.stderr)
        assert len(done.stderr.splitlines()) == 1, (args, done.stderr)


def test_help_states_every_default():
    text = " ".join(xsd_fleet_cli("--help").stdout.split())    # unwrapped
    assert "None" not in text and "False" not in text
    assert "--xenstored-path PATH xenstored's socket (default: $XENSTORED_PATH, else " \
           "/var/run/xenstored/socket)" in text
    assert "(default: /local/domain/*/name " in text
    assert "(default: $XSD_MOCK_HYPERVISOR, else Xen's own on a Xen host)" in text
    assert "--heartbeat SECONDS seconds between heartbeats (default: 5.0)" in text


def test_no_hypervisor_names_the_cli_option():
    # This machine is no Xen host (no /dev/xen/privcmd); $XSD_MOCK_HYPERVISOR is unset.
    assert not os.path.exists("/dev/xen/privcmd") and not os.path.exists("/proc/xen/privcmd")
    done = xsd_fleet_cli(env_drop=("XSD_MOCK_HYPERVISOR",))
    assert done.returncode == 2
    assert done.stderr == ("xsd-fleet: no hypervisor here: not a Xen host (no /dev/xen/privcmd "
                           "or /proc/xen/privcmd); use --mock-hypervisor PATH, set "
                           "$XSD_MOCK_HYPERVISOR, or --no-domains\n")
