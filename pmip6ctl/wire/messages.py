"""Mobility Header messages (RFC 6275 §6.1) and the encode/decode entry points.

RFC 6275 §6.1.1, every message:

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    | Payload Proto |  Header Len   |   MH Type     |   Reserved    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Checksum            |                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               |
    .                       Message Data                            .

Header Len counts 8-octet units after the first 8 octets. Each message is a
dataclass with the RFC's field names: its fixed part (a struct layout right
after the Checksum) and ``options``. Sans-I/O: bytes in, objects out.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import ClassVar

from .checksum import CHECKSUM_OFFSET, mh_checksum, mh_checksum_ok
from .errors import ChecksumError, PayloadProtoError, UnknownMessageType, WireError
from .options import PAD1, PADN, _octets, _packed, decode_options, encode_options

IPPROTO_NONE = 59  # RFC 6275 §6.1.1: Payload Proto SHOULD be IPPROTO_NONE
FIXED_OFFSET = 6  # message data starts after the Checksum
MAX_LENGTH = (255 + 1) * 8


class BUFlags(enum.IntFlag):
    """Binding Update flags (16-bit word after the Sequence #)."""

    A = 0x8000  # Acknowledge, RFC 6275 §6.1.7
    H = 0x4000  # Home Registration
    L = 0x2000  # Link-Local Address Compatibility
    K = 0x1000  # Key Management Mobility Capability
    M = 0x0800  # MAP Registration, RFC 5380
    R = 0x0400  # Mobile Router, RFC 3963
    P = 0x0200  # Proxy Registration, RFC 5213 §8.1
    F = 0x0100  # Force UDP encapsulation, RFC 5555 §3.1.3
    T = 0x0080  # TLV-header format, RFC 5845


class BAFlags(enum.IntFlag):
    """Binding Acknowledgement flags (octet after the Status)."""

    K = 0x80  # RFC 6275 §6.1.8
    R = 0x40  # RFC 3963
    P = 0x20  # RFC 5213 §8.2
    T = 0x10  # RFC 5845


class Status(enum.IntEnum):
    """Binding Acknowledgement Status (IANA "Status Codes")."""

    # RFC 6275 §6.1.8
    ACCEPTED = 0
    ACCEPTED_PREFIX_DISCOVERY_NECESSARY = 1
    UNSPECIFIED = 128
    ADMIN_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    HOME_REGISTRATION_NOT_SUPPORTED = 131
    NOT_HOME_SUBNET = 132
    NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE = 133
    DUPLICATE_ADDRESS_DETECTION_FAILED = 134
    SEQUENCE_OUT_OF_WINDOW = 135
    EXPIRED_HOME_NONCE_INDEX = 136
    EXPIRED_CAREOF_NONCE_INDEX = 137
    EXPIRED_BOTH_NONCE_INDEX = 138
    REGISTRATION_TYPE_CHANGE_DISALLOWED = 139
    # RFC 5213 §8.9
    PROXY_REG_NOT_ENABLED = 152
    NOT_LMA_FOR_THIS_MOBILE_NODE = 153
    MAG_NOT_AUTHORIZED_FOR_PROXY_REG = 154
    NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX = 155
    TIMESTAMP_MISMATCH = 156
    TIMESTAMP_LOWER_THAN_PREV_ACCEPTED = 157
    MISSING_HOME_NETWORK_PREFIX_OPTION = 158
    BCE_PBU_PREFIX_SET_DO_NOT_MATCH = 159
    MISSING_MN_IDENTIFIER_OPTION = 160
    MISSING_HANDOFF_INDICATOR_OPTION = 161
    MISSING_ACCESS_TECH_TYPE_OPTION = 162
    # RFC 5844
    NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE = 170
    NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS = 171
    NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE = 172
    MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED = 173


class BindingErrorStatus(enum.IntEnum):
    """RFC 6275 §6.1.9."""

    UNKNOWN_BINDING_FOR_HOME_ADDRESS_DESTINATION_OPTION = 1
    UNRECOGNIZED_MH_TYPE = 2


class LRAStatus(enum.IntEnum):
    """Localized Routing Acknowledgement Status, RFC 6705 §10.2."""

    SUCCESS = 0
    LOCALIZED_ROUTING_NOT_ALLOWED = 128
    MN_NOT_ATTACHED = 129


class HandoffIndicatorValue(enum.IntEnum):
    """RFC 5213 §8.4."""

    NEW_INTERFACE = 1
    HANDOFF_BETWEEN_INTERFACES = 2
    HANDOFF_BETWEEN_MAGS = 3
    HANDOFF_STATE_UNKNOWN = 4
    HANDOFF_STATE_NOT_CHANGED = 5


class AccessTechnologyTypeValue(enum.IntEnum):
    """RFC 5213 §8.5."""

    VIRTUAL = 1
    PPP = 2
    IEEE_802_3 = 3
    IEEE_802_11 = 4
    IEEE_802_16E = 5


@dataclass
class Message:
    """Base of every Mobility Header message.

    Subclasses set ``mh_type``, ``name`` and ``layout`` (the struct of the
    fixed part after the Checksum) and map their fields to and from it with
    ``_fields`` / ``_from_fields``.
    """

    mh_type: ClassVar[int]
    name: ClassVar[str]
    layout: ClassVar[struct.Struct]

    payload_proto: int = field(default=IPPROTO_NONE, kw_only=True, repr=False)
    # The octets this message was decoded from (b"" when built locally), so
    # that an authenticator is checked over what the peer sent (auth_data);
    # also the octets a signature was computed over, which encode() reuses.
    wire: bytes = field(default=b"", init=False, repr=False, compare=False)
    # What `wire` stands for (_state() when it was set): a message changed since
    # no longer matches its octets. Options are values, replaced and never
    # changed in place, so a comparison costs an identity check per option.
    _wire_state: tuple = field(default=(), init=False, repr=False, compare=False)
    _wire_ours: bool = field(default=False, init=False, repr=False, compare=False)    # laid out here

    def _fields(self) -> tuple:
        return ()

    def _state(self) -> tuple:
        return self._fields(), self.payload_proto, *self.options

    def _keep_wire(self, data: bytes, ours: bool = False) -> None:
        """data are this message's octets: received, or (ours) laid out
        here, which encode() then reuses while the message stays as it is."""
        self.wire = data
        self._wire_state = self._state()
        self._wire_ours = ours

    @property
    def as_sent(self) -> bytes | None:
        """The octets this message stands for (received, or signed here),
        Checksum as it was; None once it changed or when it has none."""
        if self.wire and self._wire_state == self._state():
            return self.wire
        return None

    @classmethod
    def _from_fields(cls, fields: tuple, options: list) -> Message:
        return cls(*fields, options=options)

    def _encode_body(self, start: int) -> bytes:
        return self.layout.pack(*self._fields()) + encode_options(self.options, start + self.layout.size)

    @classmethod
    def _decode_body(cls, data: bytes, end: int) -> Message:
        fixed_end = FIXED_OFFSET + cls.layout.size
        if fixed_end > end:
            raise WireError(f"{cls.name} message data", FIXED_OFFSET,
                            f"{end - FIXED_OFFSET} octets, the fixed fields need {cls.layout.size}")
        fields = cls.layout.unpack_from(data, FIXED_OFFSET)
        return cls._from_fields(fields, decode_options(data, fixed_end, end))


MESSAGE_TYPES: dict[int, type[Message]] = {}


def _register(cls):
    MESSAGE_TYPES[cls.mh_type] = cls
    return cls


@_register
@dataclass
class BindingRefreshRequest(Message):
    """RFC 6275 §6.1.2: 16 reserved bits."""

    options: list = field(default_factory=list)

    mh_type = 0
    name = "Binding Refresh Request"
    layout = struct.Struct("!2x")


@_register
@dataclass
class HomeTestInit(Message):
    """RFC 6275 §6.1.3: Reserved (16), Home Init Cookie (64)."""

    home_init_cookie: bytes
    options: list = field(default_factory=list)

    mh_type = 1
    name = "Home Test Init"
    layout = struct.Struct("!2x8s")

    def _fields(self):
        return (_octets(self.home_init_cookie, 8, "Home Init Cookie"),)


@_register
@dataclass
class CareofTestInit(Message):
    """RFC 6275 §6.1.4: Reserved (16), Care-of Init Cookie (64)."""

    careof_init_cookie: bytes
    options: list = field(default_factory=list)

    mh_type = 2
    name = "Care-of Test Init"
    layout = struct.Struct("!2x8s")

    def _fields(self):
        return (_octets(self.careof_init_cookie, 8, "Care-of Init Cookie"),)


@_register
@dataclass
class HomeTest(Message):
    """RFC 6275 §6.1.5: Home Nonce Index (16), Home Init Cookie (64), Home Keygen Token (64)."""

    home_nonce_index: int
    home_init_cookie: bytes
    home_keygen_token: bytes
    options: list = field(default_factory=list)

    mh_type = 3
    name = "Home Test"
    layout = struct.Struct("!H8s8s")

    def _fields(self):
        return (self.home_nonce_index,
                _octets(self.home_init_cookie, 8, "Home Init Cookie"),
                _octets(self.home_keygen_token, 8, "Home Keygen Token"))


@_register
@dataclass
class CareofTest(Message):
    """RFC 6275 §6.1.6: Care-of Nonce Index (16), Care-of Init Cookie (64), Care-of Keygen Token (64)."""

    careof_nonce_index: int
    careof_init_cookie: bytes
    careof_keygen_token: bytes
    options: list = field(default_factory=list)

    mh_type = 4
    name = "Care-of Test"
    layout = struct.Struct("!H8s8s")

    def _fields(self):
        return (self.careof_nonce_index,
                _octets(self.careof_init_cookie, 8, "Care-of Init Cookie"),
                _octets(self.careof_keygen_token, 8, "Care-of Keygen Token"))


@_register
@dataclass
class BindingUpdate(Message):
    """RFC 6275 §6.1.7: Sequence # (16), flags (16, BUFlags), Lifetime (16, 4-second units).

    A Proxy Binding Update (RFC 5213 §8.1) is a BU with the P flag.
    """

    sequence: int
    flags: BUFlags
    lifetime: int
    options: list = field(default_factory=list)

    mh_type = 5
    name = "Binding Update"
    layout = struct.Struct("!HHH")

    @property
    def lifetime_seconds(self) -> int:
        return self.lifetime * 4

    def _fields(self):
        return self.sequence, self.flags, self.lifetime

    @classmethod
    def _from_fields(cls, fields, options):
        sequence, flags, lifetime = fields
        return cls(sequence, BUFlags(flags), lifetime, options)


@_register
@dataclass
class BindingAck(Message):
    """RFC 6275 §6.1.8: Status (8), flags (8, BAFlags), Sequence # (16), Lifetime (16, 4-second units)."""

    status: int
    flags: BAFlags
    sequence: int
    lifetime: int
    options: list = field(default_factory=list)

    mh_type = 6
    name = "Binding Acknowledgement"
    layout = struct.Struct("!BBHH")

    @property
    def lifetime_seconds(self) -> int:
        return self.lifetime * 4

    def _fields(self):
        return self.status, self.flags, self.sequence, self.lifetime

    @classmethod
    def _from_fields(cls, fields, options):
        status, flags, sequence, lifetime = fields
        return cls(status, BAFlags(flags), sequence, lifetime, options)


@_register
@dataclass
class BindingError(Message):
    """RFC 6275 §6.1.9: Status (8), Reserved (8), Home Address (128)."""

    status: int
    home_address: IPv6Address
    options: list = field(default_factory=list)

    mh_type = 7
    name = "Binding Error"
    layout = struct.Struct("!Bx16s")

    def _fields(self):
        return self.status, _packed(self.home_address, IPv6Address, "Home Address")

    @classmethod
    def _from_fields(cls, fields, options):
        status, home_address = fields
        return cls(status, IPv6Address(home_address), options)


@_register
@dataclass
class ExperimentalMessage(Message):
    """RFC 5096 §3: opaque Message Data after the Checksum.

    RFC 5096 defines no options here, so ``options`` stays empty and the
    experiment owns its padding: 6 + len(data) must be a multiple of 8.
    """

    data: bytes
    options: list = field(default_factory=list)

    mh_type = 11
    name = "Experimental Mobility Header"
    layout = struct.Struct("!")

    def _encode_body(self, start: int) -> bytes:
        if self.options:
            raise ValueError("an Experimental Mobility Header carries no options (RFC 5096 §3)")
        if (start + len(self.data)) % 8:
            raise ValueError(f"Message Data of {len(self.data)} octets does not end the header "
                             "on an 8-octet boundary (RFC 6275 §6.1.1)")
        return self.data

    @classmethod
    def _decode_body(cls, data: bytes, end: int):
        return cls(bytes(data[FIXED_OFFSET:end]))


@_register
@dataclass
class Heartbeat(Message):
    """RFC 5847 §6.1.1: Reserved (14), U, R, Sequence Number (32)."""

    unsolicited: bool
    response: bool
    sequence: int
    options: list = field(default_factory=list)

    mh_type = 13
    name = "Heartbeat"
    layout = struct.Struct("!HI")

    def _fields(self):
        return self.unsolicited << 1 | self.response, self.sequence

    @classmethod
    def _from_fields(cls, fields, options):
        flags, sequence = fields
        return cls(bool(flags & 0x2), bool(flags & 0x1), sequence, options)


@_register
@dataclass
class LocalizedRoutingInitiation(Message):
    """RFC 6705 §10.1: Sequence # (16), Reserved (16), Lifetime (16, seconds)."""

    sequence: int
    lifetime: int
    options: list = field(default_factory=list)

    mh_type = 17
    name = "Localized Routing Initiation"
    layout = struct.Struct("!H2xH")

    def _fields(self):
        return self.sequence, self.lifetime


@_register
@dataclass
class LocalizedRoutingAck(Message):
    """RFC 6705 §10.2: Sequence # (16), U + 7 reserved bits, Status (8), Lifetime (16, seconds)."""

    sequence: int
    status: int
    lifetime: int
    unsolicited: bool = False
    options: list = field(default_factory=list)

    mh_type = 18
    name = "Localized Routing Acknowledgment"
    layout = struct.Struct("!HBBH")

    def _fields(self):
        return self.sequence, self.unsolicited << 7, self.status, self.lifetime

    @classmethod
    def _from_fields(cls, fields, options):
        sequence, flags, status, lifetime = fields
        return cls(sequence, status, lifetime, bool(flags & 0x80), options)


class BRType(enum.IntEnum):
    """RFC 5846 §6.1: what a Binding Revocation message is."""
    INDICATION = 1       # BRI
    ACKNOWLEDGEMENT = 2  # BRA


class RevocationTrigger(enum.IntEnum):
    """RFC 5846 §8.1: why a BRI revokes (below 128: per MN)."""
    UNSPECIFIED = 0
    ADMINISTRATIVE_REASON = 1
    INTER_MAG_HANDOVER_SAME_ACCESS_TYPE = 2
    INTER_MAG_HANDOVER_DIFFERENT_ACCESS_TYPE = 3
    INTER_MAG_HANDOVER_UNKNOWN = 4
    USER_INITIATED_SESSION_TERMINATION = 5
    ACCESS_NETWORK_SESSION_TERMINATION = 6
    POSSIBLE_OUT_OF_SYNC_BCE_STATE = 7


class RevocationStatus(enum.IntEnum):
    """RFC 5846 §8.2: a BRA's Status (128 and above: the BRI was refused)."""
    SUCCESS = 0
    PARTIAL_SUCCESS = 1
    BINDING_DOES_NOT_EXIST = 128
    IPV4_HOME_ADDRESS_OPTION_REQUIRED = 129
    GLOBAL_REVOCATION_NOT_AUTHORIZED = 130
    REVOKED_MOBILE_NODES_IDENTITY_REQUIRED = 131
    REVOCATION_FAILED_MN_IS_ATTACHED = 132
    REVOCATION_TRIGGER_NOT_SUPPORTED = 133
    REVOCATION_FUNCTION_NOT_SUPPORTED = 134
    PROXY_BINDING_REVOCATION_NOT_SUPPORTED = 135


class BRFlags(enum.IntFlag):
    """RFC 5846 §6.1: P proxy binding, V IPv4 HoA binding only, G global."""
    P = 0x8000
    V = 0x4000
    G = 0x2000


@_register
@dataclass
class BindingRevocation(Message):
    """RFC 5846 §6.1-6.2: B.R. Type (8), R. Trigger (BRI) or Status (BRA) (8),
    Sequence # (16), P V G and 13 reserved bits (16). One MH type for both
    the indication and its acknowledgement."""

    br_type: int
    code: int  # the Revocation Trigger of a BRI, the Status of a BRA
    sequence: int
    flags: BRFlags = BRFlags.P
    options: list = field(default_factory=list)

    mh_type = 16
    name = "Binding Revocation"
    layout = struct.Struct("!BBHH")

    @classmethod
    def indication(cls, sequence: int, trigger: int, options: list, flags: BRFlags = BRFlags.P):
        return cls(BRType.INDICATION, trigger, sequence, flags, options)

    @classmethod
    def acknowledgement(cls, sequence: int, status: int, options: list, flags: BRFlags = BRFlags.P):
        return cls(BRType.ACKNOWLEDGEMENT, status, sequence, flags, options)

    @property
    def is_indication(self) -> bool:
        return self.br_type == BRType.INDICATION

    def _fields(self):
        return self.br_type, self.code, self.sequence, int(self.flags) & 0xE000

    @classmethod
    def _from_fields(cls, fields, options):
        br_type, code, sequence, flags = fields
        return cls(br_type, code, sequence, BRFlags(flags & 0xE000), options)


# --- Entry points ----------------------------------------------------------------


def encode(msg: Message, src: IPv6Address | None = None, dst: IPv6Address | None = None) -> bytes:
    """The Mobility Header for ``msg``; the Checksum is filled when src and dst
    (the IPv6 addresses of the packet that carries it) are given, else 0.

    Raises ValueError for a message that cannot be encoded (a field out of range).
    """
    mh = msg.as_sent if msg._wire_ours else None    # signed here: laid out already
    if mh is None:
        mh = _encode(msg)
    if src is not None and dst is not None:
        mh = mh[:CHECKSUM_OFFSET] + mh_checksum(src, dst, mh).to_bytes(2, "big") + mh[CHECKSUM_OFFSET + 2:]
    elif mh[CHECKSUM_OFFSET:CHECKSUM_OFFSET + 2] != b"\0\0":
        mh = mh[:CHECKSUM_OFFSET] + b"\0\0" + mh[CHECKSUM_OFFSET + 2:]
    return mh


def _encode(msg: Message) -> bytes:
    """msg laid out afresh, Checksum 0."""
    try:
        body = msg._encode_body(FIXED_OFFSET)
    except struct.error as e:
        raise ValueError(f"{msg.name}: {e}") from None
    length = FIXED_OFFSET + len(body)
    if length > MAX_LENGTH:
        raise ValueError(f"{msg.name}: {length} octets, a Mobility Header holds at most {MAX_LENGTH}")
    return bytes((msg.payload_proto, length // 8 - 1, msg.mh_type, 0, 0, 0)) + body


def decode(data: bytes, src: IPv6Address | None = None, dst: IPv6Address | None = None) -> Message:
    """The message in ``data``, one whole Mobility Header.

    The Checksum is verified when src and dst are given (ChecksumError).
    Raises WireError, and nothing else, for any malformed input.
    """
    data = bytes(data)
    if len(data) < 8:
        raise WireError("Mobility Header", 0, f"{len(data)} octets, the header has at least 8")
    length = (data[1] + 1) * 8
    if length != len(data):
        # Covers a Header Len beyond the data, octets after its end, and
        # any length that is not a multiple of 8.
        raise WireError("Header Len", 1, f"claims {length} octets, {len(data)} present")
    if src is not None and dst is not None and not mh_checksum_ok(src, dst, data):
        received = int.from_bytes(data[CHECKSUM_OFFSET:CHECKSUM_OFFSET + 2], "big")
        raise ChecksumError("Checksum", CHECKSUM_OFFSET,
                            f"0x{received:04x}, expected 0x{mh_checksum(src, dst, data):04x}")
    if data[0] != IPPROTO_NONE:
        raise PayloadProtoError(data[0])      # RFC 6275 §9.2, before the MH Type is looked at
    cls = MESSAGE_TYPES.get(data[2])
    if cls is None:
        raise UnknownMessageType(data[2])
    msg = cls._decode_body(data, length)
    msg._keep_wire(data)
    return msg


def auth_data(msg: Message, src: IPv6Address | None = None, dst: IPv6Address | None = None) -> bytes:
    """The Mobility Header octets an authenticator covers.

    The message encoded with Checksum 0, cut at its last option, which must
    be the authenticating one: RFC 6275 §6.2.7 "MH Data" (everything but the
    Authenticator field), RFC 4285 §5.1 (up to and including the SPI).

    A decoded message uses the octets it arrived in (as long as it still
    equals them), so padding choices of the sender do not matter. src and dst
    are accepted for symmetry with encode; the Checksum is zero regardless.
    """
    wire, start, end = auth_span(msg)
    if msg.options[-1].auth_offset:  # RFC 4285 §5.1: up to and including the SPI
        return wire[:start]
    return wire[:start] + wire[end:]  # RFC 6275 §6.2.7: all but the Authenticator


def auth_span(msg: Message) -> tuple[bytes, int, int]:
    """(the message's octets with Checksum 0, where its authenticator
    starts, where it ends): what a signer fills in."""
    if not msg.options or not msg.options[-1].authenticates:
        raise ValueError("the authenticating option must be the last option")
    last = msg.options[-1]
    wire = msg.as_sent or _encode(msg)
    wire = wire[:CHECKSUM_OFFSET] + b"\0\0" + wire[CHECKSUM_OFFSET + 2:]
    start = _last_option(wire, FIXED_OFFSET + msg.layout.size) + 2 + last.auth_offset
    return wire, start, start + len(last.authenticator)


def _last_option(wire: bytes, pos: int) -> int:
    """The offset of the last option that is no padding (the octets were
    checked when they were decoded or laid out)."""
    last, end = pos, len(wire)
    while pos < end:
        if wire[pos] == PAD1:
            pos += 1
            continue
        if wire[pos] != PADN:
            last = pos
        pos += 2 + wire[pos + 1]
    return last
