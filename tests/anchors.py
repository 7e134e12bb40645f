"""Debian's own C xenstored, run without Xen through ../shared/anchors, for side-by-side tests."""
import os
import shutil
import signal
import subprocess

from tests.daemon_process import ROOT, RundirSockets

ANCHORS = os.path.join(os.path.dirname(ROOT), "shared", "anchors")
CXENSTORED = "/usr/lib/xen-4.17/bin/xenstored"


def available() -> str:
    """Empty string when the reference daemon can run here, else why not."""
    if not os.path.isfile(os.path.join(ANCHORS, "start-cxenstored.sh")):
        return f"no {ANCHORS}/start-cxenstored.sh"
    if not os.path.exists(CXENSTORED):
        return f"no {CXENSTORED} (apt package xen-utils-4.17)"
    if not shutil.which("gcc"):
        return "no gcc to build the anchors' shim"
    return ""


class ReferenceDaemon(RundirSockets):
    """C xenstored on ``rundir/socket``, started by the anchors' script."""

    def __init__(self, rundir: str):
        self.rundir = str(rundir)
        out = subprocess.run([os.path.join(ANCHORS, "start-cxenstored.sh"), self.rundir],
                             cwd=ANCHORS, check=True, capture_output=True, text=True, timeout=60)
        self.pid = int(out.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
