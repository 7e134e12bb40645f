"""xenstore wire codec: sans-I/O, standard library only, vendorable as-is.

Bytes go in (``Decoder.feed``), packets come out; ``Packet.encode`` gives bytes.
Nothing here opens a socket or knows about asyncio.  The daemon (``xsd``), the
client library (``watchlib``) and the CLI shims all share this package.

Facts come from xen/include/public/io/xs_wire.h and docs/misc/xenstore.txt.
"""
from .constants import (
    ABS_PATH_MAX, ERRNO_BY_NAME, ERROR_NAMES, HEADER_SIZE, Op, PAYLOAD_MAX,
    REL_PATH_MAX,
)
from .decoder import Decoder
from .errors import ProtocolError, XenstoreError
from .packet import Packet, join_fields, split_fields
from . import paths, perms

__all__ = [
    "ABS_PATH_MAX", "Decoder", "ERRNO_BY_NAME", "ERROR_NAMES", "HEADER_SIZE",
    "Op", "PAYLOAD_MAX", "Packet", "ProtocolError", "REL_PATH_MAX",
    "XenstoreError", "join_fields", "paths", "perms", "split_fields",
]
