"""The two ways a xenstore exchange goes wrong."""
from .constants import ERRNO_BY_NAME


class ProtocolError(Exception):
    """The peer broke the framing (e.g. a length over PAYLOAD_MAX).

    The only exception the decoder raises; the connection cannot continue.
    ``packets`` holds the whole packets that arrived before the bad frame in
    the same ``feed``: a peer may still answer them before closing.
    """

    def __init__(self, message: str, packets=()):
        super().__init__(message)
        self.packets = list(packets)


class XenstoreError(Exception):
    """A request refused with one of the xs_wire.h error names ("ENOENT")."""

    def __init__(self, name: str, detail: str = ""):
        if name not in ERRNO_BY_NAME:
            raise ValueError(f"not a xenstore error name: {name!r}")
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name
        self.errno = ERRNO_BY_NAME[name]
        self.detail = detail
