"""The wire codec's one promise: any input is parsed or rejected with ProtocolError, nothing else.

Checked as h11/wsproto check theirs: the same bytes fed in one piece and one
byte at a time give the same packets (or the same error).
"""
import struct

from hypothesis import given, settings, strategies as st

from xenstore_protocol import Decoder, Op, Packet, PAYLOAD_MAX, ProtocolError, split_fields
from xenstore_protocol import paths, perms, XenstoreError


def decode_all(chunks):
    decoder = Decoder()
    out = []
    try:
        for chunk in chunks:
            out += decoder.feed(chunk)
    except ProtocolError as err:
        return out + err.packets, "error"
    return out, decoder.pending


packet_strategy = st.builds(
    Packet, st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=300))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_whole_or_bytewise(data):
    whole = decode_all([data])
    bytewise = decode_all([data[i:i + 1] for i in range(len(data))])
    assert whole == bytewise


@settings(max_examples=200, deadline=None)
@given(st.lists(packet_strategy, max_size=8), st.binary(max_size=40))
def test_encoded_packets_roundtrip_and_trailing_garbage_waits(packets, tail):
    data = b"".join(p.encode() for p in packets)
    got, pending = decode_all([data])
    assert got == packets and pending == 0
    got, state = decode_all([data + tail])
    assert got[:len(packets)] == packets
    assert decode_all([data + tail]) == decode_all([bytes([b]) for b in data + tail])
    assert state == "error" or isinstance(state, int)


@settings(max_examples=100, deadline=None)
@given(st.integers(PAYLOAD_MAX + 1, 0xFFFFFFFF))
def test_oversized_length_is_the_protocol_error(length):
    got, state = decode_all([struct.pack("=IIII", Op.READ, 1, 0, length)])
    assert got == [] and state == "error"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_field_and_path_parsers_raise_only_xenstore_errors(raw):
    split_fields(raw)
    try:
        paths.canonicalize(paths.decode(raw), 3, allow_special=True)
    except XenstoreError as err:
        assert err.name == "EINVAL"
    try:
        perms.parse(raw)
    except XenstoreError as err:
        assert err.name == "EINVAL"
