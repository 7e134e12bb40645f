"""One xenstore message: header fields plus payload bytes."""
from typing import NamedTuple

from .constants import HEADER, Op


class Packet(NamedTuple):
    op: int          # an Op value, or any number a peer sent
    req_id: int
    tx_id: int
    payload: bytes

    def encode(self) -> bytes:
        return HEADER.pack(self.op, self.req_id, self.tx_id, len(self.payload)) + self.payload

    def __repr__(self) -> str:
        try:
            name = Op(self.op).name
        except ValueError:
            name = str(self.op)
        return f"Packet({name}, req_id={self.req_id}, tx_id={self.tx_id}, payload={self.payload!r})"


def split_fields(payload: bytes) -> list:
    """``b"a\\0b\\0"`` -> ``[b"a", b"b"]``.

    A final field without its NUL counts as a field, as xenstored reads the
    payload as a C string it terminated itself; an empty payload has no field.
    """
    if not payload:
        return []
    fields = payload.split(b"\0")
    if payload.endswith(b"\0"):
        fields.pop()
    return fields


def join_fields(*fields: bytes) -> bytes:
    """``join_fields(b"a", b"b")`` -> ``b"a\\0b\\0"`` (each field NUL-terminated)."""
    return b"".join(f + b"\0" for f in fields)

