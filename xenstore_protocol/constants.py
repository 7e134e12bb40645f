"""Numbers of the wire protocol, as named in xen/include/public/io/xs_wire.h."""
import errno
import struct
from enum import IntEnum


class Op(IntEnum):
    """Message types (``enum xsd_sockmsg_type``)."""
    CONTROL = 0              # formerly DEBUG
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15         # daemon -> client only
    ERROR = 16               # daemon -> client only
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESTRICT = 20            # removed from the protocol; always ENOSYS
    RESET_WATCHES = 21
    DIRECTORY_PART = 22
    GET_FEATURE = 23         # docs/misc/xenstore.txt (Xen 4.17+)
    SET_FEATURE = 24
    GET_QUOTA = 25
    SET_QUOTA = 26
    INVALID = 0xFFFF         # guaranteed never valid


# struct xsd_sockmsg { uint32_t type, req_id, tx_id, len; } in host byte order:
# every xenstore peer (guest ring or dom0 socket) runs on the same machine.
HEADER = struct.Struct("=IIII")
HEADER_SIZE = HEADER.size

PAYLOAD_MAX = 4096           # XENSTORE_PAYLOAD_MAX: longer kills the connection
ABS_PATH_MAX = 3072          # XENSTORE_ABS_PATH_MAX
REL_PATH_MAX = 2048          # XENSTORE_REL_PATH_MAX

# Guest ring page (struct xenstore_domain_interface).
RING_SIZE = 1024
SERVER_FEATURE_RECONNECTION = 1
SERVER_FEATURE_ERROR = 2

# The error strings a daemon may send, in xs_wire.h's xsd_errors order.
ERROR_NAMES = (
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC",
    "EIO", "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN",
    "E2BIG", "EPERM",
)
ERRNO_BY_NAME = {name: getattr(errno, name) for name in ERROR_NAMES}
