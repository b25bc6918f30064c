"""Mobility options: type-length-value fields after a message's fixed part.

RFC 6275 §6.2: each option is Type (8 bits), Length (8 bits, octets of data
after these two), data. Each option type has an alignment requirement xn+y:
its Type octet must sit y octets past a multiple of x, counted from the start
of the Mobility Header. The sender meets it with Pad1/PadN, which the receiver
skips; the whole header is padded to a multiple of 8 octets (§6.1.1).

Every option is a small dataclass with the RFC's field names, registered by
type code in OPTION_TYPES. Options pmip6ctl adds for the draft travel inside
the Experimental Mobility Option (type 18, RFC 5096); the first data octet is
a pmip6ctl subtype (docs/protocol.md), registered in EXPERIMENTAL_SUBTYPES.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, Iterator

from .errors import WireError

PAD1 = 0
PADN = 1


class Option:
    """Base of every mobility option.

    Subclasses set ``type``, ``name`` (the RFC's name, for error messages) and
    ``align`` (x, y) for xn+y, and implement ``_encode_data`` (the octets after
    Length) and ``_decode_data``. ``size`` is the data length when it is fixed:
    a received option of a known type with another length is malformed.
    """

    type: ClassVar[int]
    name: ClassVar[str]
    align: ClassVar[tuple[int, int]] = (1, 0)  # no alignment requirement
    size: ClassVar[int | None] = None
    min_size: ClassVar[int] = 0
    # The option authenticates the message: it must be the last option, its
    # authenticator starts auth_offset octets into the data (see messages.auth_data).
    authenticates: ClassVar[bool] = False
    auth_offset: ClassVar[int] = 0

    def encode_data(self) -> bytes:
        data = self._encode_data()
        if len(data) > 255:
            raise ValueError(f"{self.name} option: {len(data)} octets of data, at most 255 fit")
        return data

    @classmethod
    def decode_data(cls, data: bytes, offset: int) -> Option:
        """``offset``: where the option's Type octet sits in the Mobility Header."""
        if cls.size is not None and len(data) != cls.size:
            raise WireError(f"{cls.name} option Length", offset + 1,
                            f"{len(data)} octets, the option has {cls.size}")
        if len(data) < cls.min_size:
            raise WireError(f"{cls.name} option Length", offset + 1,
                            f"{len(data)} octets, the option has at least {cls.min_size}")
        return cls._decode_data(data)

    def _encode_data(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def _decode_data(cls, data: bytes) -> Option:
        raise NotImplementedError


OPTION_TYPES: dict[int, type[Option]] = {}
EXPERIMENTAL_SUBTYPES: dict[int, type[Option]] = {}


def _register(cls):
    OPTION_TYPES[cls.type] = cls
    return cls


def _register_experimental(cls):
    EXPERIMENTAL_SUBTYPES[cls.subtype] = cls
    return cls


def _octets(value: bytes, size: int, what: str) -> bytes:
    """Refuse to encode a fixed-size field of the wrong size (struct would pad silently)."""
    if len(value) != size:
        raise ValueError(f"{what} must be {size} octets, got {len(value)}")
    return value


def _packed(address, family: type, what: str) -> bytes:
    if not isinstance(address, family):
        raise ValueError(f"{what} must be an {family.__name__}, got {address!r}")
    return address.packed


def _bits(value: int, width: int, what: str) -> int:
    if not 0 <= value < 1 << width:
        raise ValueError(f"{what} {value} does not fit in {width} bits")
    return value


# --- Shared layouts ----------------------------------------------------------


class _AddressOption(Option):
    """Two octets of small fields, then an IPv4 or IPv6 address.

    The shape of HNP (RFC 5213 §8.3), MAG IPv6 Address (RFC 6705 §10.3), the
    six-octet IPv4 options of RFC 5555 §3.1/§3.2 and RFC 5844 §3.3, and the
    pmip6ctl CN options. Subclasses map their fields to and from the two
    leading octets and the address.
    """

    family: ClassVar[type] = IPv6Address

    def _head(self) -> tuple[int, int, IPv4Address | IPv6Address]:
        raise NotImplementedError

    @classmethod
    def _from_head(cls, octet0: int, octet1: int, address):
        raise NotImplementedError

    def _encode_data(self) -> bytes:
        octet0, octet1, address = self._head()
        return bytes((octet0, octet1)) + _packed(address, self.family, f"{self.name} address")

    @classmethod
    def _decode_data(cls, data: bytes):
        return cls._from_head(data[0], data[1], cls.family(data[2:]))


class _IPv4AddressOption(_AddressOption):
    # RFC 5555 §3.1.1 and siblings: 4n, so the address lands on 4n+4.
    family = IPv4Address
    align = (4, 0)
    size = 6


class _IPv6AddressOption(_AddressOption):
    # Like HNP (RFC 5213 §8.3): 8n+4, so the address lands on an 8-octet boundary.
    family = IPv6Address
    align = (8, 4)
    size = 18


# --- Padding (RFC 6275 §6.2.2, §6.2.3): layout only, never decoded -----------


def padding(n: int) -> bytes:
    """``n`` octets of padding: Pad1 for one octet, else one PadN."""
    if n == 0:
        return b""
    if n == 1:
        return bytes((PAD1,))
    return bytes((PADN, n - 2)) + bytes(n - 2)


# --- RFC 6275 §6.2 -----------------------------------------------------------


@_register
@dataclass
class BindingRefreshAdvice(Option):
    """RFC 6275 §6.2.4: Refresh Interval, in 4-second units."""

    refresh_interval: int

    type = 2
    name = "Binding Refresh Advice"
    align = (2, 0)
    size = 2

    def _encode_data(self) -> bytes:
        return struct.pack("!H", self.refresh_interval)

    @classmethod
    def _decode_data(cls, data: bytes):
        return cls(*struct.unpack("!H", data))


@_register
@dataclass
class AlternateCareofAddress(Option):
    """RFC 6275 §6.2.5."""

    address: IPv6Address

    type = 3
    name = "Alternate Care-of Address"
    align = (8, 6)
    size = 16

    def _encode_data(self) -> bytes:
        return _packed(self.address, IPv6Address, f"{self.name} address")

    @classmethod
    def _decode_data(cls, data: bytes):
        return cls(IPv6Address(data))


@_register
@dataclass
class NonceIndices(Option):
    """RFC 6275 §6.2.6: which nonces the keygen tokens in a BU were made from."""

    home_nonce_index: int
    careof_nonce_index: int

    type = 4
    name = "Nonce Indices"
    align = (2, 0)
    size = 4

    def _encode_data(self) -> bytes:
        return struct.pack("!HH", self.home_nonce_index, self.careof_nonce_index)

    @classmethod
    def _decode_data(cls, data: bytes):
        return cls(*struct.unpack("!HH", data))


@_register
@dataclass
class BindingAuthorizationData(Option):
    """RFC 6275 §6.2.7: First(96, HMAC_SHA1(Kbm, ...)); the last option of a BU/BA."""

    authenticator: bytes

    type = 5
    name = "Binding Authorization Data"
    align = (8, 2)
    size = 12
    authenticates = True
    auth_offset = 0

    def _encode_data(self) -> bytes:
        return _octets(self.authenticator, 12, "Authenticator")

    @classmethod
    def _decode_data(cls, data: bytes):
        return cls(bytes(data))


@_register
@dataclass
class MobileNodeIdentifier(Option):
    """RFC 4283 §3: Subtype (1 = NAI, RFC 4282), then the identifier."""

    identifier: bytes
    subtype: int = 1

    type = 8
    name = "Mobile Node Identifier"
    min_size = 1

    @property
    def nai(self) -> str:
        return self.identifier.decode("utf-8")

    @classmethod
    def from_nai(cls, nai: str) -> MobileNodeIdentifier:
        return cls(nai.encode("utf-8"))

    def _encode_data(self) -> bytes:
        return bytes((self.subtype,)) + self.identifier

    @classmethod
    def _decode_data(cls, data: bytes):
        return cls(bytes(data[1:]), data[0])


@_register
@dataclass
class MobilityMessageAuthentication(Option):
    """RFC 4285 §5: Subtype, Mobility SPI, Authentication Data; the last option.

    Alignment 4n+1 puts the SPI on a 4-octet boundary.
    """

    subtype: int
    spi: int
    authenticator: bytes

    type = 9
    name = "Mobility Message Authentication"
    align = (4, 1)
    min_size = 5
    authenticates = True
    auth_offset = 5  # RFC 4285 §5.1: MH Data runs "up to and including the SPI"

    def _encode_data(self) -> bytes:
        return struct.pack("!BI", self.subtype, self.spi) + self.authenticator

    @classmethod
    def _decode_data(cls, data: bytes):
        subtype, spi = struct.unpack_from("!BI", data)
        return cls(subtype, spi, bytes(data[5:]))


# --- RFC 5213 §8 (Proxy Mobile IPv6) ----------------------------------------


@_register
@dataclass
class HomeNetworkPrefix(_IPv6AddressOption):
    """RFC 5213 §8.3: Reserved, Prefix Length, Home Network Prefix."""

    prefix_length: int
    prefix: IPv6Address

    type = 22
    name = "Home Network Prefix"

    def _head(self):
        return 0, self.prefix_length, self.prefix

    @classmethod
    def _from_head(cls, reserved, prefix_length, prefix):
        return cls(prefix_length, prefix)


class _OneOctetOption(Option):
    """Reserved octet, then a one-octet code (RFC 5213 §8.4, §8.5); no alignment."""

    size = 2

    @classmethod
    def _decode_data(cls, data: bytes):
        return cls(data[1])


@_register
@dataclass
class HandoffIndicator(_OneOctetOption):
    """RFC 5213 §8.4 (values: HandoffIndicatorValue)."""

    handoff_indicator: int

    type = 23
    name = "Handoff Indicator"

    def _encode_data(self) -> bytes:
        return bytes((0, self.handoff_indicator))


@_register
@dataclass
class AccessTechnologyType(_OneOctetOption):
    """RFC 5213 §8.5 (values: AccessTechnologyTypeValue)."""

    access_technology_type: int

    type = 24
    name = "Access Technology Type"

    def _encode_data(self) -> bytes:
        return bytes((0, self.access_technology_type))


@_register
@dataclass
class LinkLocalAddress(Option):
    """RFC 5213 §8.6."""

    address: IPv6Address

    type = 26
    name = "Link-local Address"
    align = (8, 6)
    size = 16

    def _encode_data(self) -> bytes:
        return _packed(self.address, IPv6Address, f"{self.name} address")

    @classmethod
    def _decode_data(cls, data: bytes):
        return cls(IPv6Address(data))


@_register
@dataclass
class Timestamp(Option):
    """RFC 5213 §8.8: seconds since 1970-01-01 00:00 UTC in fixed point.

    ``timestamp`` is the raw wire value: 48 bits of seconds and 16 bits of
    1/65536 second. RFC 5213 §8.8 counts from the Unix epoch (1970), not
    from NTP's 1900; Wireshark's dissector reads it the same way.
    """

    timestamp: int

    type = 27
    name = "Timestamp"
    align = (8, 2)
    size = 8

    @classmethod
    def from_unix(cls, t: float) -> Timestamp:
        return cls(round(t * 65536))

    def to_unix(self) -> float:
        return self.timestamp / 65536

    def _encode_data(self) -> bytes:
        return struct.pack("!Q", self.timestamp)

    @classmethod
    def _decode_data(cls, data: bytes):
        return cls(*struct.unpack("!Q", data))


# --- RFC 5555 §3 and RFC 5844 §3.3 (IPv4) -------------------------------------


@_register
@dataclass
class IPv4HomeAddress(_IPv4AddressOption):
    """RFC 5555 §3.1.1: Prefix-len (6 bits), P (1 bit), Reserved (9 bits), address."""

    address: IPv4Address
    prefix_length: int = 32
    prefix_requested: bool = False

    type = 29
    name = "IPv4 Home Address"

    def _head(self):
        return (_bits(self.prefix_length, 6, "Prefix-len") << 2
                | self.prefix_requested << 1), 0, self.address

    @classmethod
    def _from_head(cls, octet0, octet1, address):
        return cls(address, octet0 >> 2, bool(octet0 & 0x02))


@_register
@dataclass
class IPv4AddressAck(_IPv4AddressOption):
    """RFC 5555 §3.2.1: Status, Pref-len (6 bits), Reserved (2 bits), IPv4 home address."""

    status: int
    address: IPv4Address
    prefix_length: int = 32

    type = 30
    name = "IPv4 Address Acknowledgement"

    def _head(self):
        return self.status, _bits(self.prefix_length, 6, "Pref-len") << 2, self.address

    @classmethod
    def _from_head(cls, status, octet1, address):
        return cls(status, address, octet1 >> 2)


@_register
@dataclass
class NATDetection(Option):
    """RFC 5555 §3.2.2: F (force UDP), 15 reserved bits, Refresh time (seconds)."""

    refresh_time: int
    force_udp: bool = False

    type = 31
    name = "NAT Detection"
    align = (4, 0)
    size = 6

    def _encode_data(self) -> bytes:
        return struct.pack("!HI", self.force_udp << 15, self.refresh_time)

    @classmethod
    def _decode_data(cls, data: bytes):
        flags, refresh_time = struct.unpack("!HI", data)
        return cls(refresh_time, bool(flags & 0x8000))


@_register
@dataclass
class IPv4CareofAddress(_IPv4AddressOption):
    """RFC 5555 §3.1.2: 16 reserved bits, IPv4 care-of address."""

    address: IPv4Address

    type = 32
    name = "IPv4 Care-of Address"

    def _head(self):
        return 0, 0, self.address

    @classmethod
    def _from_head(cls, octet0, octet1, address):
        return cls(address)


@_register
@dataclass
class IPv4HomeAddressRequest(_IPv4AddressOption):
    """RFC 5844 §3.3.1: Prefix-len (6 bits), Reserved (10 bits), IPv4 home address."""

    address: IPv4Address
    prefix_length: int = 32

    type = 36
    name = "IPv4 Home Address Request"

    def _head(self):
        return _bits(self.prefix_length, 6, "Prefix-len") << 2, 0, self.address

    @classmethod
    def _from_head(cls, octet0, octet1, address):
        return cls(address, octet0 >> 2)


@_register
@dataclass
class IPv4HomeAddressReply(_IPv4AddressOption):
    """RFC 5844 §3.3.2: Status, Prefix-len (6 bits), Reserved (2 bits), IPv4 home address."""

    status: int
    address: IPv4Address
    prefix_length: int = 32

    type = 37
    name = "IPv4 Home Address Reply"

    def _head(self):
        return self.status, _bits(self.prefix_length, 6, "Prefix-len") << 2, self.address

    @classmethod
    def _from_head(cls, status, octet1, address):
        return cls(status, address, octet1 >> 2)


# --- RFC 6705 §10.3 -------------------------------------------------------------


@_register
@dataclass
class MAGIPv6Address(_IPv6AddressOption):
    """RFC 6705 §10.3: Reserved, Address Length (always 128), MAG IPv6 Address.

    Laid out like HNP, 8n+4, so the address lands on an 8-octet boundary.
    """

    address: IPv6Address

    type = 51
    name = "MAG IPv6 Address"

    def _head(self):
        return 0, 128, self.address

    @classmethod
    def _from_head(cls, reserved, address_length, address):
        return cls(address)

    @classmethod
    def decode_data(cls, data: bytes, offset: int):
        option = super().decode_data(data, offset)
        if data[1] != 128:
            # The only length RFC 6705 defines; anything else is no address we can use.
            raise WireError("MAG IPv6 Address option Address Length", offset + 3,
                            f"{data[1]}, must be 128")
        return option


# --- RFC 5096 Experimental Mobility Option (type 18) and pmip6ctl subtypes ----
#
# The first data octet is a pmip6ctl subtype (DESIGN.md §2, docs/protocol.md).
# Subtypes 1-6 decode as the classes below, with their fixed lengths checked;
# any other subtype, no data at all, or one of ours that does not decode as
# ours (another experiment's option), decodes as ExperimentalOption.

EXPERIMENTAL = 18


@dataclass
class ExperimentalOption(Option):
    """RFC 5096 §2: opaque data (subtype octet included), any subtype not ours."""

    data: bytes

    type = EXPERIMENTAL
    name = "Experimental"

    def _encode_data(self) -> bytes:
        if self.data and self.data[0] in EXPERIMENTAL_SUBTYPES:
            owner = EXPERIMENTAL_SUBTYPES[self.data[0]].__name__
            raise ValueError(f"Experimental subtype {self.data[0]} is {owner}: use that class")
        return self.data

    @classmethod
    def _decode_data(cls, data: bytes):
        return cls(bytes(data))


class _ExperimentalIPv6(_IPv6AddressOption):
    type = EXPERIMENTAL  # 8n+4, like HNP: subtype and one octet, then the address


class _ExperimentalIPv4(_IPv4AddressOption):
    type = EXPERIMENTAL  # 4n: subtype and one octet, then the address on 4n+4


@_register_experimental
@dataclass
class CNAddress(_ExperimentalIPv6):
    """Subtype 1, IPv6 CN Address: Subtype, Reserved, CN's IPv6 address."""

    address: IPv6Address

    subtype: ClassVar[int] = 1
    name = "IPv6 CN Address"

    def _head(self):
        return self.subtype, 0, self.address

    @classmethod
    def _from_head(cls, subtype, reserved, address):
        return cls(address)


@_register_experimental
@dataclass
class CNIPv4Address(_ExperimentalIPv4):
    """Subtype 2, IPv4 Alt CN Address (draft fig. 2, 3): Subtype, Reserved, CN's IPv4 address."""

    address: IPv4Address

    subtype: ClassVar[int] = 2
    name = "IPv4 Alt CN Address"

    def _head(self):
        return self.subtype, 0, self.address

    @classmethod
    def _from_head(cls, subtype, reserved, address):
        return cls(address)


@_register_experimental
@dataclass
class CNHomeNetworkPrefix(_ExperimentalIPv6):
    """Subtype 3, IPv6_CN-HNP (draft fig. 4): Subtype, Prefix Length, prefix."""

    prefix_length: int
    prefix: IPv6Address

    subtype: ClassVar[int] = 3
    name = "CN Home Network Prefix"

    def _head(self):
        return self.subtype, self.prefix_length, self.prefix

    @classmethod
    def _from_head(cls, subtype, prefix_length, prefix):
        return cls(prefix_length, prefix)


@_register_experimental
@dataclass
class CNIPv4HomeAddress(_ExperimentalIPv4):
    """Subtype 4, IPv4_CN-HAO (draft fig. 4): Subtype, Prefix Length, CN's IPv4 home address."""

    prefix_length: int
    address: IPv4Address

    subtype: ClassVar[int] = 4
    name = "IPv4 CN Home Address"

    def _head(self):
        return self.subtype, self.prefix_length, self.address

    @classmethod
    def _from_head(cls, subtype, prefix_length, address):
        return cls(prefix_length, address)


class _ROAck(Option):
    """Subtype, Status, Lifetime (16 bits, 4-second units as in the BA, RFC 6275 §6.1.8).

    2n: the Lifetime lands on an even offset.
    """

    type = EXPERIMENTAL
    align = (2, 0)
    size = 4

    def _encode_data(self) -> bytes:
        return struct.pack("!BBH", self.subtype, self.status, self.lifetime)

    @classmethod
    def _decode_data(cls, data: bytes):
        _, status, lifetime = struct.unpack("!BBH", data)
        return cls(status, lifetime)


@_register_experimental
@dataclass
class ROAcknowledgement(_ROAck):
    """Subtype 5, IPv6 RO Acknowledgement (draft fig. 5, 7)."""

    status: int
    lifetime: int

    subtype: ClassVar[int] = 5
    name = "IPv6 RO Acknowledgement"


@_register_experimental
@dataclass
class IPv4ROAcknowledgement(_ROAck):
    """Subtype 6, IPv4 RO Acknowledgement (draft fig. 5, 7)."""

    status: int
    lifetime: int

    subtype: ClassVar[int] = 6
    name = "IPv4 RO Acknowledgement"


# --- Unknown types (RFC 6275 §6.2.1: skip, keep going) -----------------------


@dataclass
class UnknownOption(Option):
    """An option type we do not implement, kept as received."""

    type: int
    data: bytes

    name = "Unknown"

    def _encode_data(self) -> bytes:
        return self.data


# --- Layout and the option area of a message -------------------------------


def decode_option(option_type: int, data: bytes, offset: int) -> Option:
    if option_type == EXPERIMENTAL:
        cls = EXPERIMENTAL_SUBTYPES.get(data[0]) if data else None
        if cls is not None:
            try:
                return cls.decode_data(data, offset)
            except WireError:
                # RFC 5096 leaves the data to each experiment: another one's
                # option whose first octet happens to be one of our subtypes is
                # not ours, and no reason to drop the whole message (issue 16)
                pass
        return ExperimentalOption.decode_data(data, offset)
    cls = OPTION_TYPES.get(option_type)
    if cls is None:
        return UnknownOption(option_type, bytes(data))
    return cls.decode_data(data, offset)


def iter_tlv(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, bytes]]:
    """Yield (offset, type, data) for each option in data[start:end], padding included."""
    pos = start
    while pos < end:
        option_type = data[pos]
        if option_type == PAD1:
            yield pos, PAD1, b""
            pos += 1
            continue
        if pos + 2 > end:
            raise WireError("Option Length", pos + 1, f"option type {option_type} has no Length octet")
        length = data[pos + 1]
        if pos + 2 + length > end:
            raise WireError("Option Length", pos + 1,
                            f"option type {option_type} claims {length} octets, {end - pos - 2} left")
        yield pos, option_type, data[pos + 2:pos + 2 + length]
        pos += 2 + length


def decode_options(data: bytes, start: int, end: int) -> list[Option]:
    """The options in data[start:end], without Pad1/PadN (iter_tlv's walk,
    inlined: it runs for every option of every message received)."""
    options = []
    pos = start
    while pos < end:
        option_type = data[pos]
        if option_type == PAD1:
            pos += 1
            continue
        if pos + 2 > end:
            raise WireError("Option Length", pos + 1, f"option type {option_type} has no Length octet")
        following = pos + 2 + data[pos + 1]
        if following > end:
            raise WireError("Option Length", pos + 1,
                            f"option type {option_type} claims {data[pos + 1]} octets, {end - pos - 2} left")
        if option_type != PADN:
            options.append(decode_option(option_type, data[pos + 2:following], pos))
        pos = following
    return options


_PADDING = [b"", bytes((PAD1,))] + [bytes((PADN, n - 2)) + bytes(n - 2) for n in range(2, 16)]


def encode_options(options: list[Option], start: int) -> bytes:
    """Lay out ``options`` from MH offset ``start``: padding before each option
    for its alignment, and after the last up to a multiple of 8 octets."""
    out = []
    pos = start
    last = len(options) - 1
    for i, option in enumerate(options):
        data = option.encode_data()
        x, y = option.align
        pad = (y - pos) % x
        if i == last and option.authenticates:
            # End the header with the authenticator when the alignment allows
            # (always, for 12- and 32-octet ones): RFC 6275 §6.2.7 and RFC 4285
            # §5 want it last, with no padding after.
            pad = next((p for p in range(pad, pad + 8, x) if (pos + p + 2 + len(data)) % 8 == 0), pad)
        out.append(_PADDING[pad])
        out.append(bytes((option.type, len(data))))
        out.append(data)
        pos += pad + 2 + len(data)
    out.append(_PADDING[-pos % 8])
    return b"".join(out)


def find_options(msg_or_options, cls: type[Option]) -> list:
    """Every option of class ``cls`` in a message (or a list of options)."""
    options = getattr(msg_or_options, "options", msg_or_options)
    return [option for option in options if isinstance(option, cls)]


def find_option(msg_or_options, cls: type[Option] | tuple[type[Option], ...]):
    """The first option of class ``cls`` (or of one of them), or None (a plain loop: a PBU's
    processing asks this some thirty times, issue 14)."""
    for option in getattr(msg_or_options, "options", msg_or_options):
        if isinstance(option, cls):
            return option
    return None
