"""Raw requests to xsd and to Debian's C xenstored: byte-identical replies and events.

Generation numbers and transaction ids are daemon-internal; the cases avoid them.
"""

from xenstore_protocol import Op

from tests.wire import RawClient

W = Op.WRITE
CASES = [
    (W, b"/a/b\0v"), (Op.READ, b"/a/b\0"), (Op.READ, b"/a/b"), (Op.READ, b"/a\0"),
    (Op.READ, b"/nope\0"), (Op.READ, b"\0"), (Op.READ, b""), (Op.READ, b"/a/\0"),
    (Op.READ, b"//\0"), (Op.READ, b"/a.b\0"), (W, b"/nonul"), (W, b"/x\0"),
    (Op.DIRECTORY, b"/\0"), (Op.DIRECTORY, b"/a\0"), (Op.DIRECTORY, b"/none\0"),
    (Op.MKDIR, b"/a\0"), (Op.MKDIR, b"/m/n\0"), (Op.READ, b"/m\0"),
    (Op.RM, b"/m/none\0"), (Op.RM, b"/zz/none\0"), (Op.RM, b"/\0"), (Op.RM, b"/m\0"),
    (Op.GET_PERMS, b"/a\0"), (Op.SET_PERMS, b"/a\0n0\0r1\0"), (Op.GET_PERMS, b"/a/b\0"),
    (Op.SET_PERMS, b"/a\0"), (Op.SET_PERMS, b"/a\0q1\0"), (Op.SET_PERMS, b"/none\0n0\0"),
    (Op.SET_PERMS, b"/a\0r5\0"), (Op.GET_PERMS, b"/a\0"),
    (Op.WATCH, b"/a\0tok\0"), (Op.WATCH, b"/a\0tok\0"), (Op.WATCH, b"/a\0"),
    (Op.WATCH, b"/a\0t\0x\0"), (W, b"/a/c\0w"), (Op.UNWATCH, b"/a\0tok\0"),
    (Op.UNWATCH, b"/a\0tok\0"), (Op.WATCH, b"rel\0r\0"), (W, b"/local/domain/0/rel/k\0v"),
    (Op.WATCH, b"@introduceDomain\0i\0"), (Op.WATCH, b"@releaseDomain\0r\0"),
    (Op.INTRODUCE, b"5\0" b"1\0" b"1\0"), (Op.INTRODUCE, b"5\0" b"1\0" b"1\0"),
    (Op.IS_DOMAIN_INTRODUCED, b"5\0"), (Op.IS_DOMAIN_INTRODUCED, b"0\0"),
    (Op.GET_DOMAIN_PATH, b"5\0"), (Op.GET_DOMAIN_PATH, b"x\0"), (Op.RESUME, b"0\0"),
    (Op.RELEASE, b"0\0"), (Op.RELEASE, b"8\0"), (Op.SET_TARGET, b"8\0" b"0\0"),
    (Op.TRANSACTION_END, b"T\0"), (Op.ERROR, b"x\0"), (Op.WATCH_EVENT, b"x\0"),
    (20, b"x\0"), (30, b"\0"), (Op.RESET_WATCHES, b""), (W, b"/a/d\0after-reset"),
    (Op.CONTROL, b"bogus\0"), (Op.CONTROL, b"check\0"),
]


def replay(socket_path):
    out = []
    with RawClient(socket_path) as xs:
        for op, payload in CASES:
            packet = xs.call(op, payload=payload)
            out.append((op, payload, packet.op, packet.payload, xs.quiet_events(0.05)))
    return out


def test_raw_replies_match_c_xenstored(daemon_factory, cxenstored):
    ours = replay(daemon_factory("--no-domain-init").socket_path)
    theirs = replay(cxenstored.socket_path)
    mismatches = [(mine, ref) for mine, ref in zip(ours, theirs) if mine != ref]
    assert not mismatches, "\n".join(f"xsd {m}\ncx  {r}" for m, r in mismatches)
