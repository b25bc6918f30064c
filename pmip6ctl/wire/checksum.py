"""Internet checksum of the Mobility Header (RFC 6275 §6.1.1, RFC 8200 §8.1)."""

from __future__ import annotations

from ipaddress import IPv6Address

from .. import defs

IPPROTO_MH = defs.constants()["IPPROTO_MH"]  # bpf/constants.h, shared with the XDP programs
CHECKSUM_OFFSET = 4  # Payload Proto, Header Len, MH Type, Reserved, then Checksum


def internet_checksum(data: bytes) -> int:
    """RFC 1071: one's complement of the one's complement sum of 16-bit words.

    2**16 ≡ 1 (mod 0xffff), so the one's complement sum of the words is the
    whole buffer read as one big integer, modulo 0xffff. The one exception is
    one's complement's "negative zero": a non-zero buffer whose sum is a
    multiple of 0xffff sums to 0xffff, not 0.
    """
    if len(data) % 2:
        data += b"\0"
    value = int.from_bytes(data, "big")
    total = value % 0xFFFF
    if total == 0 and value:
        total = 0xFFFF
    return 0xFFFF - total


def pseudo_header(src: IPv6Address, dst: IPv6Address, length: int) -> bytes:
    """RFC 8200 §8.1: source, destination, upper-layer length, 3 zero octets, next header."""
    return src.packed + dst.packed + length.to_bytes(4, "big") + bytes((0, 0, 0, IPPROTO_MH))


def mh_checksum(src: IPv6Address, dst: IPv6Address, mh: bytes) -> int:
    """The Checksum field value for ``mh``; its current Checksum octets count as zero."""
    mh = mh[:CHECKSUM_OFFSET] + b"\0\0" + mh[CHECKSUM_OFFSET + 2:]
    return internet_checksum(pseudo_header(src, dst, len(mh)) + mh)


def mh_checksum_ok(src: IPv6Address, dst: IPv6Address, mh: bytes) -> bool:
    """True when the received Checksum is right.

    Summing the pseudo-header and the MH *with* its checksum gives zero; this
    accepts both one's complement zeros (0x0000 and 0xffff) a sender may use.
    """
    return internet_checksum(pseudo_header(src, dst, len(mh)) + mh) == 0
