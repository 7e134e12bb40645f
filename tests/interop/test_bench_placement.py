"""bench/placement.py puts a daemon's whole process tree and the benchmark's clients where
``bench_floors.py --pin`` says, and bench_floors.py runs and states that placement.

Real processes and the kernel's own affinity masks: a daemon stand-in with a thread and a
child process, and the C floor under xsbench. Nothing is timed.
"""
import os
import subprocess
import sys

import pytest

from bench.placement import CPUS, cpu_sets, place, process_tree
from tests import anchors
from tests.daemon_process import ROOT

# A daemon that spawned something: a second thread, and a child process with its own.
SPAWNER = """
import subprocess, sys, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
child = subprocess.Popen([sys.executable, "-c",
    "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); "
    "print('up', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(60)
"""

needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="split needs two CPUs")


@pytest.fixture
def spawner():
    proc = subprocess.Popen([sys.executable, "-c", SPAWNER], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    yield proc.pid, child
    os.kill(child, 9)
    proc.kill()
    proc.wait()


@pytest.fixture
def own_cpus_kept():
    """place() moves this process too: give the rest of the suite its CPUs back."""
    before = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, before)


def masks(pid):
    return {tid: frozenset(os.sched_getaffinity(tid)) for tid in process_tree(pid)}


@needs_two_cpus
@pytest.mark.parametrize("placement", ["split", "shared"])
def test_place_pins_every_thread_of_the_daemon_and_its_children_and_the_clients(
        placement, spawner, own_cpus_kept):
    daemon, child = spawner
    tree = masks(daemon)
    assert len(tree) == 4                       # two threads each: the daemon's and the child's
    assert set(os.listdir(f"/proc/{child}/task")) <= {str(t) for t in tree}

    place(daemon, placement)

    daemon_cpus, client_cpus = cpu_sets(placement)
    assert set(masks(daemon).values()) == {frozenset(daemon_cpus)}
    assert os.sched_getaffinity(0) == client_cpus
    client = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                            capture_output=True, text=True, check=True)
    assert client.stdout.strip() == str(sorted(client_cpus))
    if placement == "split":
        assert not daemon_cpus & client_cpus
    else:
        assert daemon_cpus == client_cpus and len(daemon_cpus) == 1


@needs_two_cpus
def test_none_gives_the_daemon_and_the_clients_every_cpu_back(spawner, own_cpus_kept):
    daemon, _ = spawner
    place(daemon, "split")
    place(daemon, "none")
    assert set(masks(daemon).values()) == {frozenset(CPUS)}
    assert os.sched_getaffinity(0) == set(CPUS)


def test_a_placement_that_cannot_be_made_is_refused():
    with pytest.raises(ValueError, match="two CPUs"):
        cpu_sets("split", cpus=(0,))
    with pytest.raises(ValueError, match="unknown placement"):
        cpu_sets("sideways")


@needs_two_cpus
def test_bench_floors_runs_with_pin_and_states_the_placement():
    why = anchors.available()
    if why:
        pytest.skip(why)
    run = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_floors.py"),
                          "--rows", "rw", "--reps", "2", "-n", "200", "--daemons", "c-floor",
                          "--pin", "shared", "--spread"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("| read ops/s, 1 client | ") for line in lines), run.stdout
    assert any(line.startswith("Spread across repetitions") for line in lines), run.stdout
    assert f"Placement: rw: shared (the daemon and everything it spawns on CPU {CPUS[0]}, " \
           f"the clients on CPU {CPUS[0]})" in run.stdout

