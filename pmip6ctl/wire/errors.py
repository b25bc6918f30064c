"""Exceptions raised by the Mobility Header codec.

Decoding untrusted octets raises WireError and nothing else, so a receiver
needs exactly one ``except`` clause around ``decode``.
"""

from __future__ import annotations


class WireError(ValueError):
    """A malformed Mobility Header: which field, where, and why.

    ``offset`` counts octets from the first octet of the Mobility Header
    (the Payload Proto field), like the RFC 6275 §6.2 alignment rules do.
    """

    def __init__(self, field: str, offset: int, reason: str):
        super().__init__(f"{field} at offset {offset}: {reason}")
        self.field = field
        self.offset = offset
        self.reason = reason


class UnknownMessageType(WireError):
    """The MH Type is not one we implement.

    RFC 6275 §9.2: the receiver answers with a Binding Error, status 2
    (Unrecognized MH Type value).
    """

    def __init__(self, mh_type: int):
        super().__init__("MH Type", 2, f"unknown MH Type {mh_type}")
        self.mh_type = mh_type


class PayloadProtoError(WireError):
    """The Payload Proto is not IPPROTO_NONE (59): RFC 6275 §9.2 has the
    message discarded. Its ICMP Parameter Problem (a SHOULD) is not sent:
    the source may be forged, and an answer would make the node a reflector
    (docs/protocol.md §4)."""

    def __init__(self, payload_proto: int):
        super().__init__("Payload Proto", 0, f"{payload_proto}, RFC 6275 §9.2 allows only 59 (IPPROTO_NONE)")
        self.payload_proto = payload_proto


class ChecksumError(WireError):
    """The Checksum does not cover the IPv6 pseudo-header and the MH (RFC 6275 §6.1.1)."""
