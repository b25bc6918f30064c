"""Internet checksum and the Mobility Header checksum (RFC 1071, RFC 6275 §6.1.1, RFC 8200 §8.1)."""

import struct
from ipaddress import IPv6Address

import pytest
from hypothesis import given, strategies as st

from pmip6ctl.wire import (BindingRefreshRequest, BindingUpdate, BUFlags, ChecksumError, WireError, decode,
                           encode, internet_checksum, mh_checksum)

SRC = IPv6Address("2001:db8::1")
DST = IPv6Address("2001:db8::2")


def reference_checksum(data: bytes) -> int:
    """RFC 1071 §4.1, word by word with end-around carry."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_rfc1071_worked_example():
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is its complement.
    assert internet_checksum(bytes((0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7))) == 0xFFFF - 0xDDF2


def test_odd_length_is_padded_with_a_zero_octet():
    assert internet_checksum(b"\x12\x34\x56") == internet_checksum(b"\x12\x34\x56\x00")


def test_all_zero_data_has_checksum_ffff():
    assert internet_checksum(bytes(8)) == 0xFFFF


@given(st.binary(max_size=300))
def test_matches_word_by_word_reference(data):
    assert internet_checksum(data) == reference_checksum(data)


def test_mh_checksum_covers_the_ipv6_pseudo_header():
    mh = encode(BindingRefreshRequest())
    pseudo = SRC.packed + DST.packed + struct.pack("!I3xB", len(mh), 135)
    assert mh_checksum(SRC, DST, mh) == reference_checksum(pseudo + mh)


def test_mh_checksum_ignores_the_checksum_octets_already_in_the_header():
    mh = encode(BindingRefreshRequest(), SRC, DST)
    assert mh[4:6] != b"\0\0"
    assert mh_checksum(SRC, DST, mh) == int.from_bytes(mh[4:6], "big")


def test_encode_leaves_checksum_zero_without_addresses():
    assert encode(BindingRefreshRequest())[4:6] == b"\0\0"


def test_encode_fills_checksum_that_decode_verifies():
    msg = BindingUpdate(1, BUFlags.A, 10)
    assert decode(encode(msg, SRC, DST), SRC, DST) == msg


@pytest.mark.parametrize("src,dst", [(SRC, IPv6Address("2001:db8::3")), (IPv6Address("2001:db8::3"), DST)])
def test_checksum_for_other_addresses_is_rejected(src, dst):
    with pytest.raises(ChecksumError) as e:
        decode(encode(BindingRefreshRequest(), SRC, DST), src, dst)
    assert (e.value.field, e.value.offset) == ("Checksum", 4)
    assert isinstance(e.value, WireError)


def test_corrupted_octet_is_rejected():
    mh = bytearray(encode(BindingUpdate(1, BUFlags.A, 10), SRC, DST))
    mh[7] ^= 0x40
    with pytest.raises(ChecksumError):
        decode(bytes(mh), SRC, DST)


def test_checksum_is_not_verified_without_both_addresses():
    mh = encode(BindingRefreshRequest())  # checksum 0: wrong for any address pair
    assert decode(mh) == BindingRefreshRequest()
    assert decode(mh, SRC) == BindingRefreshRequest()


def test_negative_zero_checksum_is_accepted():
    # One's complement has two zeros; a sender may send 0xffff where we compute 0 (RFC 1624).
    # Find a Sequence # for which the computed checksum is 0, then send it as 0xffff.
    for sequence in range(0x10000):
        mh = encode(BindingUpdate(sequence, BUFlags(0), 0), SRC, DST)
        if mh[4:6] == b"\0\0":
            break
    else:
        pytest.fail("no sequence number gives checksum 0")
    negative_zero = mh[:4] + b"\xff\xff" + mh[6:]
    assert decode(negative_zero, SRC, DST).sequence == sequence
