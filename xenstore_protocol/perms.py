"""Node permissions on the wire: ``n0``, ``r5``, ``w7``, ``b12``.

The first entry names the owner and the access everyone not listed gets;
later entries grant access to one domain each (docs/misc/xenstore.txt).
"""
from typing import NamedTuple

from .errors import XenstoreError

NONE, READ, WRITE, BOTH = "n", "r", "w", "b"
_KINDS = (NONE, READ, WRITE, BOTH)


class Perm(NamedTuple):
    kind: str        # one of n r w b
    domid: int

    @property
    def can_read(self) -> bool:
        return self.kind in (READ, BOTH)

    @property
    def can_write(self) -> bool:
        return self.kind in (WRITE, BOTH)

    def encode(self) -> bytes:
        return f"{self.kind}{self.domid}".encode("ascii")


def parse(field: bytes) -> Perm:
    """``b"r5"`` -> ``Perm("r", 5)``; anything else is EINVAL."""
    text = field.decode("ascii", "replace")
    kind, digits = text[:1], text[1:]
    if kind not in _KINDS or not digits.isdigit() or not digits.isascii():
        raise XenstoreError("EINVAL", f"bad permission {text!r}")
    domid = int(digits)
    if domid > 0xFFFFFFFF:      # C xenstored's unsigned int; a domid that no domain has
                                # is ENOENT as an owner (SET_PERMS), kept as another entry
        raise XenstoreError("EINVAL", f"domid out of range in {text!r}")
    return Perm(kind, domid)


def parse_list(fields) -> tuple:
    if not fields:
        raise XenstoreError("EINVAL", "no permissions given")
    return tuple(parse(f) for f in fields)


def encode_list(perms) -> bytes:
    return b"".join(p.encode() + b"\0" for p in perms)

