"""Mobility options: round trips, RFC layouts, alignment (RFC 6275 §6.2), unknown and malformed options."""

import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

from pmip6ctl.wire import (EXPERIMENTAL_SUBTYPES, OPTION_TYPES, AccessTechnologyType, AlternateCareofAddress,
                           BindingAuthorizationData, BindingRefreshAdvice, BindingUpdate, BUFlags, CNAddress,
                           CNHomeNetworkPrefix, CNIPv4Address, CNIPv4HomeAddress, ExperimentalOption,
                           HandoffIndicator, HomeNetworkPrefix, IPv4AddressAck, IPv4CareofAddress,
                           IPv4HomeAddress, IPv4HomeAddressReply, IPv4HomeAddressRequest, IPv4ROAcknowledgement,
                           LinkLocalAddress, MAGIPv6Address, MobileNodeIdentifier, MobilityMessageAuthentication,
                           NATDetection, NonceIndices, ROAcknowledgement, Timestamp, UnknownOption, WireError,
                           decode, encode, find_option, find_options)
from pmip6ctl.wire.options import iter_tlv

V6 = IPv6Address("2001:db8:1::10")
V4 = IPv4Address("192.0.2.10")

EVERY_OPTION = [
    BindingRefreshAdvice(30),
    AlternateCareofAddress(V6),
    NonceIndices(0x0102, 0x0304),
    BindingAuthorizationData(bytes(range(12))),
    MobileNodeIdentifier.from_nai("mn1@example.com"),
    MobilityMessageAuthentication(1, 0x01020304, bytes(range(32))),
    HomeNetworkPrefix(64, IPv6Address("2001:db8:1::")),
    HandoffIndicator(1),
    AccessTechnologyType(4),
    LinkLocalAddress(IPv6Address("fe80::1")),
    Timestamp.from_unix(1_700_000_000.5),
    IPv4HomeAddress(V4, 24, prefix_requested=True),
    IPv4AddressAck(0, V4, 24),
    NATDetection(110, force_udp=True),
    IPv4CareofAddress(V4),
    IPv4HomeAddressRequest(IPv4Address("0.0.0.0"), 24),
    IPv4HomeAddressReply(0, V4, 24),
    MAGIPv6Address(V6),
    CNAddress(V6),
    CNIPv4Address(V4),
    CNHomeNetworkPrefix(128, V6),
    CNIPv4HomeAddress(32, V4),
    ROAcknowledgement(0, 105),
    IPv4ROAcknowledgement(129, 105),
    ExperimentalOption(b"\x99opaque"),
    UnknownOption(200, b"kept"),
]


def carry(*options):
    return BindingUpdate(1, BUFlags.A | BUFlags.P, 10, list(options))


def option_area(msg):
    """(offset, type, data) of each option in the encoded message, padding included."""
    mh = encode(msg)
    return list(iter_tlv(mh, 12, len(mh)))


def test_every_option_class_has_an_example():
    registered = set(OPTION_TYPES.values()) | set(EXPERIMENTAL_SUBTYPES.values())
    assert registered <= {type(o) for o in EVERY_OPTION}


@pytest.mark.parametrize("option", EVERY_OPTION, ids=lambda o: type(o).__name__)
def test_round_trip(option):
    msg = carry(option)
    assert decode(encode(msg)) == msg


def test_many_options_round_trip_in_order():
    msg = carry(*EVERY_OPTION[:3], *EVERY_OPTION[4:5], *EVERY_OPTION[6:])  # authenticating ones go last
    assert decode(encode(msg)).options == msg.options


# --- Byte layouts from the RFC figures (Type, Length, data) ------------------

def tlv(option):
    """Type, Length and data of ``option`` as encoded, found in a carrying BU."""
    [(_, option_type, data)] = [t for t in option_area(carry(option)) if t[1] > 1]
    return option_type, data


@pytest.mark.parametrize("option,expected", [
    (BindingRefreshAdvice(30), (2, struct.pack("!H", 30))),
    (NonceIndices(1, 2), (4, struct.pack("!HH", 1, 2))),
    (MobileNodeIdentifier(b"mn@x"), (8, b"\x01mn@x")),                            # RFC 4283: subtype 1 NAI
    (MobilityMessageAuthentication(1, 5, b"A" * 32), (9, struct.pack("!BI", 1, 5) + b"A" * 32)),
    (HomeNetworkPrefix(64, V6), (22, bytes((0, 64)) + V6.packed)),               # Reserved, Prefix Length
    (HandoffIndicator(3), (23, bytes((0, 3)))),                                    # Reserved, HI
    (AccessTechnologyType(4), (24, bytes((0, 4)))),                                # Reserved, ATT
    (Timestamp(0x0102030405060708), (27, bytes(range(1, 9)))),
    # RFC 5555 §3.1.1: Prefix-len (6 bits) | P | 9 reserved bits, address
    (IPv4HomeAddress(V4, 24, True), (29, struct.pack("!H", 24 << 10 | 1 << 9) + V4.packed)),
    # RFC 5555 §3.2.1: Status, Pref-len (6 bits) | 2 reserved bits, address
    (IPv4AddressAck(130, V4, 24), (30, bytes((130, 24 << 2)) + V4.packed)),
    # RFC 5555 §3.2.2: F | 15 reserved bits, Refresh time
    (NATDetection(110, True), (31, struct.pack("!HI", 0x8000, 110))),
    (IPv4CareofAddress(V4), (32, bytes(2) + V4.packed)),
    # RFC 5844 §3.3.1: Prefix-len (6 bits) | 10 reserved bits, address
    (IPv4HomeAddressRequest(V4, 24), (36, struct.pack("!H", 24 << 10) + V4.packed)),
    (IPv4HomeAddressReply(131, V4, 24), (37, bytes((131, 24 << 2)) + V4.packed)),
    (MAGIPv6Address(V6), (51, bytes((0, 128)) + V6.packed)),                       # RFC 6705 §10.3
    # pmip6ctl subtypes of the Experimental option (docs/protocol.md)
    (CNAddress(V6), (18, bytes((1, 0)) + V6.packed)),
    (CNIPv4Address(V4), (18, bytes((2, 0)) + V4.packed)),
    (CNHomeNetworkPrefix(128, V6), (18, bytes((3, 128)) + V6.packed)),
    (CNIPv4HomeAddress(32, V4), (18, bytes((4, 32)) + V4.packed)),
    (ROAcknowledgement(129, 0x0102), (18, bytes((5, 129, 1, 2)))),
    (IPv4ROAcknowledgement(0, 0x0102), (18, bytes((6, 0, 1, 2)))),
], ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else "")
def test_layout(option, expected):
    assert tlv(option) == expected


def test_timestamp_counts_seconds_since_1970_in_48_16_fixed_point():
    # RFC 5213 §8.8: 48 bits of seconds since 1970-01-01 00:00 UTC, 16 bits of 1/65536 s.
    ts = Timestamp.from_unix(1_700_000_000.25)
    assert ts.timestamp >> 16 == 1_700_000_000
    assert ts.timestamp & 0xFFFF == 0x4000
    assert ts.to_unix() == 1_700_000_000.25
    assert Timestamp.from_unix(0).timestamp == 0


def test_nai():
    mnid = MobileNodeIdentifier.from_nai("mn1@example.com")
    assert (mnid.subtype, mnid.identifier, mnid.nai) == (1, b"mn1@example.com", "mn1@example.com")


# --- Alignment: xn+y from the start of the Mobility Header (RFC 6275 §6.2) --

ALIGNED = [
    (BindingRefreshAdvice(1), (2, 0)),
    (AlternateCareofAddress(V6), (8, 6)),
    (NonceIndices(1, 2), (2, 0)),
    (BindingAuthorizationData(bytes(12)), (8, 2)),
    (MobilityMessageAuthentication(1, 1, bytes(32)), (4, 1)),
    (HomeNetworkPrefix(64, V6), (8, 4)),
    (LinkLocalAddress(V6), (8, 6)),
    (Timestamp(1), (8, 2)),
    (IPv4HomeAddress(V4), (4, 0)),
    (IPv4AddressAck(0, V4), (4, 0)),
    (NATDetection(1), (4, 0)),
    (IPv4CareofAddress(V4), (4, 0)),
    (IPv4HomeAddressRequest(V4), (4, 0)),
    (IPv4HomeAddressReply(0, V4), (4, 0)),
    (MAGIPv6Address(V6), (8, 4)),
    (CNAddress(V6), (8, 4)),
    (CNIPv4Address(V4), (4, 0)),
    (CNHomeNetworkPrefix(128, V6), (8, 4)),
    (CNIPv4HomeAddress(32, V4), (4, 0)),
    (ROAcknowledgement(0, 1), (2, 0)),
]


@pytest.mark.parametrize("option,align", ALIGNED, ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else "")
@pytest.mark.parametrize("shift", range(8))
def test_alignment(option, align, shift):
    # An MN-ID of 1..8 octets of NAI before the option walks it across every offset mod 8.
    x, y = align
    msg = carry(MobileNodeIdentifier(b"m" * (shift + 1)), option)
    offset, option_type, _ = [t for t in option_area(msg) if t[1] > 1][-1]
    assert option_type == option.type
    assert offset % x == y
    assert len(encode(msg)) % 8 == 0
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize("option", [
    BindingAuthorizationData(bytes(12)),
    MobilityMessageAuthentication(1, 1, bytes(32)),
    MobilityMessageAuthentication(1, 1, bytes(12)),
], ids=lambda o: f"{type(o).__name__}-{len(o.authenticator)}")
@pytest.mark.parametrize("shift", range(8))
def test_authenticating_option_ends_the_header(option, shift):
    # RFC 6275 §6.2.7, RFC 4285 §5: the last option, with no padding after it.
    msg = carry(MobileNodeIdentifier(b"m" * (shift + 1)), option)
    mh = encode(msg)
    assert mh.endswith(option.authenticator)
    offset = [t for t in option_area(msg) if t[1] > 1][-1][0]
    assert offset % option.align[0] == option.align[1]


def test_bad_lands_at_8n_plus_2_after_a_typical_pbu():
    msg = carry(MobileNodeIdentifier.from_nai("mn1@example.com"), HomeNetworkPrefix(64, V6), HandoffIndicator(1),
                AccessTechnologyType(4), Timestamp(1), NonceIndices(1, 2), BindingAuthorizationData(bytes(12)))
    offsets = {option_type: offset for offset, option_type, _ in option_area(msg)}
    assert offsets[5] % 8 == 2 and offsets[4] % 2 == 0 and offsets[22] % 8 == 4 and offsets[27] % 8 == 2
    assert len(encode(msg)) % 8 == 0


def test_padding_uses_pad1_for_one_octet_and_padn_otherwise():
    # Options start at offset 12. An MN-ID with a 2-octet NAI fills 12..17; the
    # BRA (2n) needs one octet: Pad1 at 17, BRA at 18..22; two octets end the
    # header: PadN with no data at 22.
    area = option_area(carry(MobileNodeIdentifier(b"mn"), BindingRefreshAdvice(1)))
    assert [(offset, option_type) for offset, option_type, _ in area] == [(12, 8), (17, 0), (18, 2), (22, 1)]
    # HI at 12..16, BRA at 16..20, the Timestamp (8n+2) after PadN(4) at 20, at 26..36, PadN(2) to 40.
    area = option_area(carry(HandoffIndicator(1), BindingRefreshAdvice(1), Timestamp(1)))
    assert [(offset, option_type) for offset, option_type, _ in area] == [(12, 23), (16, 2), (20, 1), (26, 27), (36, 1)]
    assert area[2][2] == bytes(4)


# --- Receiving --------------------------------------------------------------

def test_padding_never_appears_in_decoded_options():
    msg = carry(HandoffIndicator(1), Timestamp(1))
    assert decode(encode(msg)).options == [HandoffIndicator(1), Timestamp(1)]


def test_padn_contents_are_ignored():
    mh = bytearray(encode(carry()))  # 12 octets + PadN(2)
    mh[14:16] = b"\xff\xff"
    assert decode(bytes(mh)).options == []


def test_unknown_option_is_skipped_and_kept():
    # RFC 6275 §6.2.1: a receiver skips options it does not understand.
    msg = decode(encode(carry(UnknownOption(250, b"xyz"), HandoffIndicator(2))))
    assert msg.options == [UnknownOption(250, b"xyz"), HandoffIndicator(2)]


def test_experimental_option_with_another_subtype_is_opaque():
    assert decode(encode(carry(ExperimentalOption(b"\x40data")))).options == [ExperimentalOption(b"\x40data")]
    assert decode(encode(carry(ExperimentalOption(b"")))).options == [ExperimentalOption(b"")]


@pytest.mark.parametrize("data", [bytes((1,)) + bytes(4), bytes((5, 0, 1))])
def test_another_experiments_option_that_starts_with_one_of_our_subtypes_is_skipped_not_fatal(data):
    """Issue 16: RFC 5096 leaves option 18's data to each experiment. One whose
    first octet matches our CN Address (1) or RO Acknowledgement (5) subtype
    but not its length is someone else's: kept opaque, the message stands."""
    msg = decode(_bu_with_raw_option(18, data))
    assert msg.options == [ExperimentalOption(data)]


def test_experimental_option_cannot_impersonate_a_pmip6ctl_subtype():
    with pytest.raises(ValueError):
        encode(carry(ExperimentalOption(b"\x05\x00\x00\x01")))


@pytest.mark.parametrize("option_type,data,field", [
    (22, bytes(16), "Home Network Prefix option Length"),
    (27, bytes(7), "Timestamp option Length"),
    (4, bytes(2), "Nonce Indices option Length"),
    (5, bytes(16), "Binding Authorization Data option Length"),
    (8, b"", "Mobile Node Identifier option Length"),
    (9, bytes(4), "Mobility Message Authentication option Length"),
    (29, bytes(4), "IPv4 Home Address option Length"),
])
def test_known_option_with_wrong_length(option_type, data, field):
    mh = _bu_with_raw_option(option_type, data)
    with pytest.raises(WireError) as e:
        decode(mh)
    assert (e.value.field, e.value.offset) == (field, 13)


def test_mag_ipv6_address_length_other_than_128_is_malformed():
    mh = _bu_with_raw_option(51, bytes((0, 64)) + V6.packed)
    with pytest.raises(WireError) as e:
        decode(mh)
    assert (e.value.field, e.value.offset) == ("MAG IPv6 Address option Address Length", 15)


def _bu_with_raw_option(option_type, data):
    """A BU whose first option (at offset 12) is exactly these octets, then padding."""
    body = struct.pack("!HHH", 1, 0x8000, 1) + bytes((option_type, len(data))) + data
    body += bytes(-(6 + len(body)) % 8)  # Pad1s
    return bytes((59, (6 + len(body)) // 8 - 1, 5, 0, 0, 0)) + body


@pytest.mark.parametrize("option", [
    AlternateCareofAddress(V4),
    HomeNetworkPrefix(64, "2001:db8::"),
    IPv4CareofAddress(V6),
    IPv4HomeAddress(V4, 64),  # Prefix-len has 6 bits
    IPv4AddressAck(0, V4, 64),
    BindingAuthorizationData(bytes(20)),
    MobileNodeIdentifier(bytes(255)),
], ids=repr)
def test_unencodable_option_raises_value_error(option):
    with pytest.raises(ValueError):
        encode(carry(option))


# --- Lookup helpers ---------------------------------------------------------

def test_find_option_and_find_options():
    msg = carry(HomeNetworkPrefix(64, V6), Timestamp(1), HomeNetworkPrefix(48, V6))
    assert find_option(msg, Timestamp) == Timestamp(1)
    assert find_option(msg, NATDetection) is None
    assert find_options(msg, HomeNetworkPrefix) == [HomeNetworkPrefix(64, V6), HomeNetworkPrefix(48, V6)]
    assert find_option(msg.options, HomeNetworkPrefix) == HomeNetworkPrefix(64, V6)
    assert find_options([], Timestamp) == []
