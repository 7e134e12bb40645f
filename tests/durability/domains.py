"""A guest domain for a durability test's daemon: created in its mock hypervisor and
introduced by a toolstack, as xsd-hv does."""
from xsd.hv_cli import toolstack_introduce
from xsd.hypervisor.guest_client import SocketClient
from xsd.hypervisor.mock import MockControl


def introduce(proc, domid: int, name: str, control=None):
    """Create domain ``domid`` and INTRODUCE it to ``proc``; return its mock row."""
    row = (control or MockControl(proc.rundir)).create(domid=domid, name=name)
    with SocketClient(proc.socket_path, timeout=10) as toolstack:
        toolstack_introduce(toolstack, row)
    return row
