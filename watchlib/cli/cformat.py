"""Byte-exact C behaviours the xenstore tools show: value escaping and number parsing.

Escaping (what ``xenstore-read`` and ``xenstore-ls`` print, and what
``xenstore-write`` understands without ``-R``), as observed with xenstore-utils:

- printable ASCII (space to ``~``) stands for itself, except the backslash;
- ``\\t`` ``\\n`` ``\\r`` ``\\\\`` for tab, newline, carriage return, backslash;
- bytes below 8 as three octal digits (``\\001``), every other byte as
  ``\\x`` and two hex digits (``\\x1b``, ``\\x7f``, ``\\xff``).

Reading escapes back (``unsanitise``) follows the C tool's scanf-based parser,
quirks included: ``\\x`` takes up to two hex digits (after optional blanks and a
sign), ``\\0``..``\\7`` up to three octal digits, an unknown escape drops the
backslash, a lone final backslash becomes a NUL byte.
"""

_SIMPLE_ESCAPES = {0x09: b"\\t", 0x0A: b"\\n", 0x0D: b"\\r", 0x5C: b"\\\\"}
_UNESCAPE = {ord("t"): 0x09, ord("n"): 0x0A, ord("r"): 0x0D, ord("\\"): 0x5C}
_SPACES = b" \t\n\v\f\r"
_HEX = b"0123456789abcdefABCDEF"
_OCT = b"01234567"


def _escape_table():
    table = []
    for c in range(256):
        if 0x20 <= c <= 0x7E and c != 0x5C:
            table.append(bytes((c,)))
        elif c in _SIMPLE_ESCAPES:
            table.append(_SIMPLE_ESCAPES[c])
        elif c < 8:
            table.append(b"\\%03o" % c)
        else:
            table.append(b"\\x%02x" % c)
    return table


_ESCAPE = _escape_table()


def sanitise(value: bytes) -> bytes:
    """``b"a\\tb\\x01"`` -> ``b"a\\\\tb\\\\001"``: the form xenstore-read prints."""
    return b"".join([_ESCAPE[c] for c in value])


def _scan_hex2(s: bytes, pos: int):
    """scanf ``"%2x%n"`` at ``s[pos:]``: ``(value, consumed)`` or None if nothing matched."""
    p = pos
    while p < len(s) and s[p] in _SPACES:
        p += 1
    width = 2
    negative = False
    if p < len(s) and s[p] in b"+-":
        negative = s[p] == ord("-")
        p += 1
        width -= 1
    digits = 0
    value = 0
    if width and p < len(s) and s[p] == ord("0"):
        p += 1
        width -= 1
        digits += 1
        if width and p < len(s) and s[p] in b"xX":
            p += 1
            width -= 1
    while width and p < len(s) and s[p] in _HEX:
        value = value * 16 + int(chr(s[p]), 16)
        p += 1
        width -= 1
        digits += 1
    if not digits:
        return None
    return (-value if negative else value), p - pos


def _scan_oct3(s: bytes, pos: int):
    """scanf ``"%3o%n"`` where ``s[pos]`` is an octal digit: ``(value, consumed)``."""
    p = pos
    value = 0
    while p < len(s) and p - pos < 3 and s[p] in _OCT:
        value = value * 8 + s[p] - 0x30
        p += 1
    return value, p - pos


def unsanitise(text: bytes) -> bytes:
    """The bytes ``xenstore-write`` (without ``-R``) stores for the argument ``text``."""
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        i += 1
        if c == 0x5C:
            if i >= n:                       # "\" at the very end: C stores the NUL
                out.append(0)
                break
            c = text[i]
            i += 1
            if c in _UNESCAPE:
                c = _UNESCAPE[c]
            elif c == ord("x"):
                got = _scan_hex2(text, i)
                if got is not None:
                    c, used = got
                    i += used
            elif c in _OCT:
                c, used = _scan_oct3(text, i - 1)
                i += used - 1
        out.append(c & 0xFF)
    return bytes(out)


def c_strtol(text: str, base: int = 10):
    """glibc ``strtol(text, &end, base)`` on a 64-bit long: ``(value, end_index)``.

    Leading blanks and a sign are accepted; out-of-range values clamp.  Base 0
    picks 16 for ``0x``, 8 for a leading ``0``, else 10.  No digits: ``(0, 0)``.
    """
    p = 0
    while p < len(text) and text[p] in " \t\n\v\f\r":
        p += 1
    negative = False
    if p < len(text) and text[p] in "+-":
        negative = text[p] == "-"
        p += 1
    if base in (0, 16) and text[p:p + 2].lower() == "0x" and p + 2 < len(text) \
            and text[p + 2] in "0123456789abcdefABCDEF":
        base = 16
        p += 2
    elif base == 0:
        base = 8 if text[p:p + 1] == "0" else 10
    start = p
    value = 0
    while p < len(text):
        digit = "0123456789abcdefghijklmnopqrstuvwxyz".find(text[p].lower())
        if digit < 0 or digit >= base:
            break
        value = value * base + digit
        p += 1
    if p == start:
        return 0, 0
    if negative:
        value = -value
    return max(-(1 << 63), min((1 << 63) - 1, value)), p


def c_atoi(text: str) -> int:
    """glibc ``atoi``: ``(int) strtol(text, NULL, 10)``, wrapped to 32 bits."""
    value = c_strtol(text)[0] & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def c_strtoul(text: str, base: int = 0) -> int:
    """glibc ``strtoul`` (64-bit): a negative number wraps; out of range gives ULONG_MAX."""
    value, end = c_strtol(text, base)
    if end == 0:
        return 0
    # strtol clamped; strtoul's own range check differs only beyond 64 bits.
    return value & 0xFFFFFFFFFFFFFFFF
