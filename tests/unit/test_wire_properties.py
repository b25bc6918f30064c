"""Property tests: every message we can build survives a round trip, and no input
makes decode raise anything but WireError."""

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import example, given, settings, strategies as st

from pmip6ctl import wire as w
from pmip6ctl.wire import WireError, decode, encode

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u6 = st.integers(0, 63)
ipv6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
ipv4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
octets8 = st.binary(min_size=8, max_size=8)
unknown_types = st.integers(2, 255).filter(lambda t: t not in w.OPTION_TYPES and t != 18)
opaque_experimental = st.binary(max_size=40).filter(lambda d: not d or d[0] not in w.EXPERIMENTAL_SUBTYPES)

plain_options = st.one_of(
    st.builds(w.BindingRefreshAdvice, u16),
    st.builds(w.AlternateCareofAddress, ipv6),
    st.builds(w.NonceIndices, u16, u16),
    st.builds(w.MobileNodeIdentifier, st.binary(max_size=40), u8),
    st.builds(w.HomeNetworkPrefix, u8, ipv6),
    st.builds(w.HandoffIndicator, u8),
    st.builds(w.AccessTechnologyType, u8),
    st.builds(w.LinkLocalAddress, ipv6),
    st.builds(w.Timestamp, st.integers(0, 2**64 - 1)),
    st.builds(w.IPv4HomeAddress, ipv4, u6, st.booleans()),
    st.builds(w.IPv4AddressAck, u8, ipv4, u6),
    st.builds(w.NATDetection, u32, st.booleans()),
    st.builds(w.IPv4CareofAddress, ipv4),
    st.builds(w.IPv4HomeAddressRequest, ipv4, u6),
    st.builds(w.IPv4HomeAddressReply, u8, ipv4, u6),
    st.builds(w.MAGIPv6Address, ipv6),
    st.builds(w.CNAddress, ipv6),
    st.builds(w.CNIPv4Address, ipv4),
    st.builds(w.CNHomeNetworkPrefix, u8, ipv6),
    st.builds(w.CNIPv4HomeAddress, u8, ipv4),
    st.builds(w.ROAcknowledgement, u8, u16),
    st.builds(w.IPv4ROAcknowledgement, u8, u16),
    st.builds(w.ExperimentalOption, opaque_experimental),
    st.builds(w.UnknownOption, unknown_types, st.binary(max_size=40)),
)
authenticating_options = st.one_of(
    st.builds(w.BindingAuthorizationData, st.binary(min_size=12, max_size=12)),
    st.builds(w.MobilityMessageAuthentication, u8, u32, st.binary(max_size=40)),
)
option_lists = st.builds(
    lambda options, last: options + last,
    st.lists(plain_options, max_size=8),
    st.lists(authenticating_options, max_size=1),
)

messages = st.one_of(
    st.builds(w.BindingRefreshRequest, option_lists),
    st.builds(w.HomeTestInit, octets8, option_lists),
    st.builds(w.CareofTestInit, octets8, option_lists),
    st.builds(w.HomeTest, u16, octets8, octets8, option_lists),
    st.builds(w.CareofTest, u16, octets8, octets8, option_lists),
    st.builds(w.BindingUpdate, u16, u16.map(w.BUFlags), u16, option_lists),
    st.builds(w.BindingAck, u8, u8.map(w.BAFlags), u16, u16, option_lists),
    st.builds(w.BindingError, u8, ipv6, option_lists),
    st.builds(w.ExperimentalMessage, st.integers(0, 20).flatmap(lambda n: st.binary(min_size=8 * n + 2,
                                                                                    max_size=8 * n + 2))),
    st.builds(w.Heartbeat, st.booleans(), st.booleans(), u32, option_lists),
    st.builds(w.LocalizedRoutingInitiation, u16, u16, option_lists),
    st.builds(w.LocalizedRoutingAck, u16, u8, u16, st.booleans(), option_lists),
)
addresses = st.tuples(ipv6, ipv6)


@settings(max_examples=300)
@given(messages, addresses)
def test_decode_inverts_encode(msg, src_dst):
    src, dst = src_dst
    mh = encode(msg, src, dst)
    assert len(mh) % 8 == 0
    assert decode(mh, src, dst) == msg
    assert decode(mh) == msg


@settings(max_examples=100)
@given(messages, addresses, u8.filter(lambda p: p != w.IPPROTO_NONE))
def test_any_payload_proto_but_59_is_refused(msg, src_dst, payload_proto):
    # RFC 6275 §9.2
    msg.payload_proto = payload_proto
    src, dst = src_dst
    with pytest.raises(w.PayloadProtoError):
        decode(encode(msg, src, dst), src, dst)


@settings(max_examples=300)
@given(messages)
def test_encoding_a_decoded_message_gives_the_same_octets(msg):
    mh = encode(msg)
    assert encode(decode(mh)) == mh


def decodes_or_raises_wire_error(data, src=None, dst=None):
    try:
        decode(data, src, dst)
    except WireError:
        pass


@settings(max_examples=500)
@given(st.binary(max_size=120))
@example(b"")
@example(bytes(8))
def test_random_octets_raise_only_wire_error(data):
    decodes_or_raises_wire_error(data)


@settings(max_examples=1000)
@given(st.sampled_from(sorted(w.MESSAGE_TYPES)), st.integers(0, 6).flatmap(
    lambda n: st.binary(min_size=8 * n + 2, max_size=8 * n + 2)))
def test_well_framed_random_bodies_raise_only_wire_error(mh_type, body):
    # Right Header Len and a real MH Type, so decoding reaches the message and option parsers.
    decodes_or_raises_wire_error(bytes((59, (len(body) + 6) // 8 - 1, mh_type, 0, 0, 0)) + body)


@settings(max_examples=500)
@given(messages, st.data())
def test_mutated_encodings_raise_only_wire_error(msg, data):
    mh = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(mh) - 1))
        mh[position] = data.draw(u8)
    cut = data.draw(st.integers(0, len(mh)))
    extra = data.draw(st.binary(max_size=9))
    decodes_or_raises_wire_error(bytes(mh))
    decodes_or_raises_wire_error(bytes(mh[:cut]))
    decodes_or_raises_wire_error(bytes(mh) + extra)
    decodes_or_raises_wire_error(bytes(mh), IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2"))


@given(st.binary(max_size=64))
def test_decode_accepts_any_bytes_like(data):
    try:
        decode(bytearray(data))
        decode(memoryview(data))
    except WireError:
        pass
