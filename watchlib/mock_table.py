"""The mock hypervisor's domain table: one JSON file, its format and its lock.

Read and written by both sides of the mock: xsd's simulated hypervisor
(``xsd.hypervisor.mock``: the daemon, ``xsd-hv``, tests) and watchlib's
``MockHypervisor`` (``watchlib.hypervisor``), so a test can drive the daemon
and the library from one table.  Stdlib only; nothing of xsd is imported.

The file (version 1), in the daemon's run directory as ``FILE_NAME``:

    {"version": 1,
     "domains": [
        {"domid": 0, "uuid": "00000000-0000-0000-0000-000000000000",
         "state": "running", "shutdown_reason": null},
        {"domid": 5, "uuid": "...", "state": "shutdown", "shutdown_reason": "reboot"}
     ]}

``state`` is "running", "shutdown" (the domain stopped and says why in
``shutdown_reason``: one of ``SHUTDOWN_REASONS``, as in
xen/include/public/sched.h) or "dying" (being destroyed).  A destroyed
domain is simply absent.  Unknown keys are kept as they are (xsd adds
``name``, ``store_mfn``, ``store_port``, ``ring``, ``evtchn``).

Every change takes an flock on ``path + ".lock"`` (``locked``) and replaces
the file whole: written to a temporary file, then renamed, so a reader never
sees half a table.
"""
import fcntl
import json
import os

VERSION = 1
FILE_NAME = "mock-hypervisor.json"

RUNNING, SHUTDOWN, DYING = "running", "shutdown", "dying"
STATES = (RUNNING, SHUTDOWN, DYING)
# SHUTDOWN_* in xen/include/public/sched.h, by code.
SHUTDOWN_REASONS = ("poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset")
DOM0_UUID = "00000000-0000-0000-0000-000000000000"


class TableError(ValueError):
    """The table exists but is not one this module can read (bad JSON, unknown version)."""


def load(path) -> list:
    """The table's rows (dicts), or [] when there is no table yet.

    TableError for a file that is not a version-1 table; other OSErrors pass.
    """
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return []
    except ValueError as err:
        raise TableError(f"{path}: unreadable mock hypervisor table: {err}") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise TableError(f"{path}: unknown mock hypervisor table version "
                         f"{data.get('version') if isinstance(data, dict) else data!r}")
    return list(data.get("domains", []))


def save(path, rows: list) -> None:
    """Replace the table with ``rows`` (call it under ``locked``)."""
    path = str(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"version": VERSION, "domains": rows}, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


class locked:
    """``with locked(path):`` holds the table's flock (``path + ".lock"``)."""

    def __init__(self, path):
        self.path = str(path) + ".lock"
        self.fd = -1

    def __enter__(self):
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def ensure(path, **dom0_keys) -> None:
    """Create the table with dom0 alone (plus ``dom0_keys``) if there is none."""
    if os.path.exists(str(path)):
        return
    with locked(path):
        if not os.path.exists(str(path)):
            save(path, [dict(domid=0, uuid=DOM0_UUID, state=RUNNING, shutdown_reason=None,
                             **dom0_keys)])


def update(path, change):
    """Under the lock: ``change(rows)`` edits the rows in place and returns a result;
    the table is then saved.  An exception from ``change`` leaves the table as it was."""
    with locked(path):
        rows = load(path)
        result = change(rows)
        save(path, rows)
        return result


def find(rows: list, domid: int) -> int:
    """The index of ``domid``'s row; KeyError if absent."""
    for i, row in enumerate(rows):
        if int(row["domid"]) == domid:
            return i
    raise KeyError(f"no domain {domid} in the mock hypervisor")
