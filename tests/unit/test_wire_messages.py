"""Mobility Header messages: layouts from the RFC figures, round trips, and malformed input."""

import struct
from ipaddress import IPv6Address

import pytest

from pmip6ctl.wire import (MESSAGE_TYPES, PayloadProtoError, BAFlags, BindingAck, BindingRevocation, BRFlags, RevocationStatus,
                           RevocationTrigger, BindingAuthorizationData, BindingError,
                           BindingErrorStatus, BindingRefreshRequest, BindingUpdate, BUFlags, CareofTest,
                           CareofTestInit, ExperimentalMessage, Heartbeat, HomeTest,
                           HomeTestInit, LocalizedRoutingAck, LocalizedRoutingInitiation, LRAStatus,
                           MobilityMessageAuthentication, NonceIndices, Status, Timestamp,
                           UnknownMessageType, WireError, auth_data, decode, encode)

HOA = IPv6Address("2001:db8:1::10")
COOKIE = bytes(range(1, 9))
TOKEN = bytes(range(0xA1, 0xA9))

EVERY_MESSAGE = [
    BindingRefreshRequest(),
    HomeTestInit(COOKIE),
    CareofTestInit(COOKIE),
    HomeTest(0x1234, COOKIE, TOKEN),
    CareofTest(0x4321, COOKIE, TOKEN),
    BindingUpdate(0xBEEF, BUFlags.A | BUFlags.H | BUFlags.P, 0x0102),
    BindingAck(Status.TIMESTAMP_MISMATCH, BAFlags.P, 0xBEEF, 0x0102),
    BindingError(BindingErrorStatus.UNRECOGNIZED_MH_TYPE, HOA),
    ExperimentalMessage(b"pmip6ctl" + bytes(2)),
    Heartbeat(True, False, 0xDEADBEEF),
    LocalizedRoutingInitiation(0x0A0B, 40),
    LocalizedRoutingAck(0x0A0B, LRAStatus.MN_NOT_ATTACHED, 40, unsolicited=True),
    BindingRevocation.indication(0x0C0D, RevocationTrigger.INTER_MAG_HANDOVER_UNKNOWN, []),
]


def test_binding_revocation_layout_follows_rfc_5846_figures():
    """§6.1: B.R. Type, R. Trigger, Sequence #, P V G + reserved, then options."""
    bri = encode(BindingRevocation.indication(0x0C0D, RevocationTrigger.INTER_MAG_HANDOVER_UNKNOWN, []))
    assert (bri[2], bri[6:12]) == (16, bytes([1, 4, 0x0C, 0x0D, 0x80, 0x00]))
    bra = encode(BindingRevocation.acknowledgement(0x0C0D, RevocationStatus.REVOCATION_FAILED_MN_IS_ATTACHED, [],
                                                   flags=BRFlags.P | BRFlags.V))
    assert bra[6:12] == bytes([2, 132, 0x0C, 0x0D, 0xC0, 0x00])
    assert decode(bra).code == 132 and not decode(bra).is_indication


def test_every_registered_type_has_an_example():
    assert sorted(type(m).mh_type for m in EVERY_MESSAGE) == sorted(MESSAGE_TYPES)


@pytest.mark.parametrize("msg", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize("msg", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_common_header(msg):
    # RFC 6275 §6.1.1: Payload Proto, Header Len, MH Type, Reserved, Checksum.
    mh = encode(msg)
    assert len(mh) % 8 == 0
    assert mh[0] == 59
    assert (mh[1] + 1) * 8 == len(mh)
    assert mh[2] == type(msg).mh_type
    assert mh[3] == 0


def test_a_payload_proto_other_than_59_is_encoded_as_asked_and_refused_on_decode():
    # RFC 6275 §9.2: Payload Proto must be IPPROTO_NONE, else the message is discarded.
    # The encoder keeps what it is given (the fuzzer and the tests build such messages).
    msg = BindingRefreshRequest(payload_proto=41)
    assert encode(msg)[0] == 41
    with pytest.raises(PayloadProtoError) as refused:
        decode(encode(msg))
    assert (refused.value.field, refused.value.offset, refused.value.payload_proto) == ("Payload Proto", 0, 41)
    assert decode(encode(BindingRefreshRequest())).payload_proto == 59


def test_the_payload_proto_is_checked_before_the_mh_type():
    # RFC 6275 §9.2 lists it first: a message of an unknown type with a bad Payload Proto
    # is discarded, not answered with a Binding Error (status 2).
    data = bytearray(encode(BindingRefreshRequest()))
    data[0], data[2] = 6, 42
    with pytest.raises(PayloadProtoError):
        decode(bytes(data))


# --- Message data as drawn in the RFC figures (octets 6 onward) ---------------

def data(msg):
    return encode(msg)[6:]


def test_binding_refresh_request_layout():
    assert data(BindingRefreshRequest()) == bytes(2)  # RFC 6275 §6.1.2: Reserved


def test_home_test_init_layout():
    assert data(HomeTestInit(COOKIE)) == bytes(2) + COOKIE  # RFC 6275 §6.1.3: Reserved, cookie


def test_home_test_layout():
    assert data(HomeTest(0x1234, COOKIE, TOKEN)) == b"\x12\x34" + COOKIE + TOKEN


def test_binding_update_layout():
    # RFC 6275 §6.1.7: Sequence #, A|H|L|K + reserved (RFC 5213 P, RFC 5555 F...), Lifetime.
    msg = BindingUpdate(0xBEEF, BUFlags.A | BUFlags.P | BUFlags.T, 0x0102)
    assert data(msg)[:6] == struct.pack("!HHH", 0xBEEF, 0x8000 | 0x0200 | 0x0080, 0x0102)


def test_binding_ack_layout():
    # RFC 6275 §6.1.8: Status, K|R|P|T + reserved, Sequence #, Lifetime.
    msg = BindingAck(156, BAFlags.K | BAFlags.P, 0xBEEF, 0x0102)
    assert data(msg)[:6] == struct.pack("!BBHH", 156, 0x80 | 0x20, 0xBEEF, 0x0102)


def test_binding_error_layout():
    assert data(BindingError(2, HOA)) == bytes((2, 0)) + HOA.packed


def test_heartbeat_layout():
    # RFC 5847 §6.1.1: 14 reserved bits, U, R, then a 32-bit Sequence Number.
    assert data(Heartbeat(True, False, 7))[:6] == struct.pack("!HI", 0b10, 7)
    assert data(Heartbeat(False, True, 7))[:6] == struct.pack("!HI", 0b01, 7)


def test_localized_routing_initiation_layout():
    # RFC 6705 §10.1: Sequence #, Reserved (16), Lifetime.
    assert data(LocalizedRoutingInitiation(0x0A0B, 40))[:6] == struct.pack("!HHH", 0x0A0B, 0, 40)


def test_localized_routing_ack_layout():
    # RFC 6705 §10.2: Sequence #, U + 7 reserved bits, Status, Lifetime.
    msg = LocalizedRoutingAck(0x0A0B, 129, 40, unsolicited=True)
    assert data(msg)[:6] == struct.pack("!HBBH", 0x0A0B, 0x80, 129, 40)


def test_experimental_message_data_follows_the_checksum():
    assert data(ExperimentalMessage(b"pmip6ctl" + bytes(2))) == b"pmip6ctl" + bytes(2)


def test_lifetime_seconds_is_four_second_units():
    assert BindingUpdate(1, BUFlags.A, 100).lifetime_seconds == 400
    assert BindingAck(0, BAFlags(0), 1, 100).lifetime_seconds == 400


def test_flag_values():
    assert [f.value for f in BUFlags] == [0x8000, 0x4000, 0x2000, 0x1000, 0x0800, 0x0400, 0x0200, 0x0100, 0x0080]
    assert [f.value for f in BAFlags] == [0x80, 0x40, 0x20, 0x10]


def test_status_codes():
    assert (Status.ACCEPTED, Status.UNSPECIFIED, Status.ADMIN_PROHIBITED) == (0, 128, 129)
    assert (Status.SEQUENCE_OUT_OF_WINDOW, Status.EXPIRED_HOME_NONCE_INDEX,
            Status.EXPIRED_CAREOF_NONCE_INDEX, Status.EXPIRED_BOTH_NONCE_INDEX) == (135, 136, 137, 138)
    assert (Status.TIMESTAMP_MISMATCH, Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED) == (156, 157)
    assert [s for s in Status if 152 <= s <= 162] == list(range(152, 163))
    assert [s for s in Status if 170 <= s <= 173] == list(range(170, 174))
    assert BindingErrorStatus.UNRECOGNIZED_MH_TYPE == 2


def test_reserved_bits_are_ignored_on_receipt():
    mh = bytearray(encode(Heartbeat(False, True, 7)))
    mh[3] = 0xFF  # Reserved octet of the common header
    mh[6] = 0xFF  # high reserved bits of the Heartbeat
    assert decode(bytes(mh)) == Heartbeat(False, True, 7)


def test_unknown_flag_bits_survive_a_round_trip():
    msg = BindingUpdate(1, BUFlags(0x0041), 1)
    assert decode(encode(msg)).flags == 0x0041


# --- Malformed input -----------------------------------------------------------

def test_too_short_for_a_header():
    with pytest.raises(WireError) as e:
        decode(bytes((59, 0, 0)))
    assert (e.value.field, e.value.offset) == ("Mobility Header", 0)


def test_header_len_beyond_the_data():
    mh = encode(HomeTest(1, COOKIE, TOKEN))  # 24 octets
    with pytest.raises(WireError) as e:
        decode(mh[:16])
    assert (e.value.field, e.value.offset, e.value.reason) == ("Header Len", 1, "claims 24 octets, 16 present")
    assert str(e.value) == "Header Len at offset 1: claims 24 octets, 16 present"


def test_data_after_header_len_end():
    with pytest.raises(WireError) as e:
        decode(encode(BindingRefreshRequest()) + bytes(8))
    assert (e.value.field, e.value.offset) == ("Header Len", 1)


@pytest.mark.parametrize("extra", [1, 3, 7])
def test_length_not_a_multiple_of_8(extra):
    with pytest.raises(WireError) as e:
        decode(encode(BindingRefreshRequest()) + bytes(extra))
    assert e.value.field == "Header Len"


def test_unknown_mh_type_names_the_type():
    mh = bytearray(encode(BindingRefreshRequest()))
    mh[2] = 99
    with pytest.raises(UnknownMessageType) as e:
        decode(bytes(mh))
    assert e.value.mh_type == 99
    assert (e.value.field, e.value.offset) == ("MH Type", 2)
    assert isinstance(e.value, WireError)


def test_fixed_part_truncated():
    # A Binding Error needs 18 octets after the Checksum; Header Len 0 leaves 2.
    mh = bytes((59, 0, 7, 0, 0, 0, 2, 0))
    with pytest.raises(WireError) as e:
        decode(mh)
    assert (e.value.field, e.value.offset) == ("Binding Error message data", 6)


def test_option_running_past_the_end():
    mh = bytearray(encode(BindingUpdate(1, BUFlags.A, 1)))  # 12 octets + PadN(2)
    mh[13] = 20  # the PadN now claims 20 octets
    with pytest.raises(WireError) as e:
        decode(bytes(mh))
    assert (e.value.field, e.value.offset) == ("Option Length", 13)


def test_option_type_without_length_octet():
    mh = bytearray(encode(BindingUpdate(1, BUFlags.A, 1)))
    mh[12:16] = bytes((0, 0, 0, 5))  # Pad1 x3, then a type with no room for its Length
    with pytest.raises(WireError) as e:
        decode(bytes(mh))
    assert (e.value.field, e.value.offset) == ("Option Length", 16)


# --- Encoding refuses what it cannot represent --------------------------------

@pytest.mark.parametrize("msg", [
    HomeTestInit(b"short"),
    HomeTest(1, COOKIE, b"too long token"),
    BindingUpdate(0x10000, BUFlags.A, 1),
    BindingAck(256, BAFlags(0), 1, 1),
    BindingError(1, "2001:db8::1"),
    ExperimentalMessage(b"odd"),
    ExperimentalMessage(bytes(2), options=[Timestamp(0)]),
    BindingUpdate(1, BUFlags.A, 1, [NonceIndices(1, 2)] * 400),
], ids=str)
def test_unencodable_message_raises_value_error(msg):
    with pytest.raises(ValueError):
        encode(msg)


# --- auth_data: what an authenticator covers ----------------------------------

def test_auth_data_for_binding_authorization_data_drops_only_the_authenticator():
    # RFC 6275 §6.2.7: MH Data is the Mobility Header without the Authenticator,
    # computed with Checksum 0; Header Len and the option's Type and Length included.
    msg = BindingUpdate(1, BUFlags.A, 1, [NonceIndices(1, 2), BindingAuthorizationData(b"A" * 12)])
    mh = encode(msg, HOA, HOA)
    assert mh.endswith(b"A" * 12)
    assert auth_data(msg) == mh[:4] + b"\0\0" + mh[6:-12]


def test_auth_data_for_mma_ends_with_the_spi():
    # RFC 4285 §5.1: "up to and including the SPI".
    msg = BindingUpdate(1, BUFlags.A, 1, [MobilityMessageAuthentication(1, 0x01020304, b"B" * 32)])
    mh = encode(msg)
    assert auth_data(msg) == mh[:-32]
    assert auth_data(msg).endswith(b"\x01\x02\x03\x04")


def test_auth_data_needs_the_authenticating_option_last():
    msg = BindingUpdate(1, BUFlags.A, 1, [BindingAuthorizationData(bytes(12)), NonceIndices(1, 2)])
    with pytest.raises(ValueError):
        auth_data(msg)


def test_auth_data_of_a_decoded_message_uses_the_octets_received():
    # Another implementation may pad differently (six Pad1 instead of one PadN):
    # the authenticator covers what was sent, not what we would have sent.
    fixed = struct.pack("!BBBBHHHH", 59, 3, 5, 0, 0, 1, 0x8000, 1)
    received = fixed + bytes(6) + bytes((5, 12)) + b"A" * 12  # six Pad1: BAD at 8n+2
    msg = decode(received)
    assert msg == BindingUpdate(1, BUFlags.A, 1, [BindingAuthorizationData(b"A" * 12)])
    assert encode(msg) != received
    assert auth_data(msg) == received[:-12]


def test_auth_data_of_a_changed_decoded_message_is_re_encoded():
    msg = decode(encode(BindingUpdate(1, BUFlags.A, 1, [BindingAuthorizationData(b"A" * 12)])))
    msg.sequence = 2
    assert auth_data(msg) == encode(msg)[:-12]
