"""systemd's readiness protocol (sd_notify(3)), written for xsd: one datagram per
message to the socket named by $NOTIFY_SOCKET, a path or, starting with '@', an
abstract-namespace address.  Without $NOTIFY_SOCKET every call does nothing, so a
daemon outside systemd pays nothing.  Xen's own xenstored.service is Type=notify.
"""
import logging
import os
import socket

log = logging.getLogger("xsd")


class Notifier:
    def __init__(self, address=None):
        address = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        if address.startswith("@"):
            address = "\0" + address[1:]       # abstract namespace
        self.address = address
        self.sock = None
        if address:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when there is no one to tell."""
        if self.sock is None:
            return False
        try:
            self.sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as err:
            log.warning("NOTIFY_SOCKET %r: %s", self.address.replace("\0", "@"), err.strerror)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def stopping(self, status: str = "shutting down") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
