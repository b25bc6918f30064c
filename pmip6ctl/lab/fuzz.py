"""Mutated Mobility Header messages, for fuzzing the codec, the node cores
and the running daemons (issue 13, item 8; docs/security.md "Fuzzing").

`Fuzzer(seed, hints)` starts from valid encodings of every MH type the codec
knows (wire.MESSAGE_TYPES, a type it has no builder for gets random fixed
fields) carrying every option it knows (wire.OPTION_TYPES and the pmip6ctl
experimental subtypes), with plausible values drawn from `hints` (the
addresses, NAIs and SPIs of the network under test), authenticated-shape
messages among them (a PBU, LRI, BRI or Heartbeat ending in a Mobility
Message Authentication option, an RO BU in Binding Authorization Data),
then mutates them: options dropped, duplicated, reordered or unknown ones
added, fields randomized, and on the octets truncation, extension, bit
flips, option Length lies, Header Len lies, MH Type changes and garbage
TLVs. Most mutants get their Header Len repaired and the right Checksum for
the IPv6 addresses they travel with, so that they reach the parsers behind
the length and checksum checks.

Mutant number i of a seed depends on (seed, i, src, dst) only:
`Fuzzer(seed).mutant(src, dst, index=i)` rebuilds it, so a failure is
reproduced from the seed and the index it prints.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Callable

from .. import wire
from ..wire.checksum import CHECKSUM_OFFSET, mh_checksum
from ..wire.messages import FIXED_OFFSET
from ..wire.options import PAD1, PADN, encode_options, iter_tlv

MAX_OCTETS = 1280 - 40 - 28        # fits any path: IPv6 minimum MTU, minus IPv6, IPv4 and UDP headers
MMA_SUBTYPE = 255                  # security.py: HMAC-SHA256 under the peer's SPI


@dataclass(frozen=True)
class Hints:
    """What the fuzzed nodes know, so that mutants look like their traffic:
    addresses of nodes and MNs, prefixes, NAIs, SPIs."""
    addresses6: tuple[IPv6Address, ...] = (IPv6Address("2001:db8:ffff::1"), IPv6Address("2001:db8:a1::1"),
                                           IPv6Address("2001:db8:a2::1"), IPv6Address("2001:db8:100::10"),
                                           IPv6Address("2001:db8:200::20"))
    addresses4: tuple[IPv4Address, ...] = (IPv4Address("192.0.2.1"), IPv4Address("198.51.100.1"),
                                           IPv4Address("192.0.2.129"), IPv4Address("192.0.2.200"))
    prefixes: tuple[IPv6Network, ...] = (IPv6Network("2001:db8:100::/64"), IPv6Network("2001:db8:200::/64"))
    nais: tuple[str, ...] = ("mn@example.org", "mn1@example.org", "cn@example.org")
    spis: tuple[int, ...] = (0x1001, 0x4101)
    now: float = 1_700_000_000.0   # Timestamps near this time (wall clock of the target)


@dataclass(frozen=True)
class Mutant:
    seed: int
    index: int
    mutations: tuple[str, ...]     # what was done, in order ("valid" for none)
    data: bytes                    # the Mobility Header octets
    src: IPv6Address               # the addresses its Checksum was computed for
    dst: IPv6Address

    def describe(self) -> str:
        """Everything needed to reproduce it."""
        return (f"seed {self.seed} index {self.index} ({', '.join(self.mutations)}) {self.src} -> {self.dst}: "
                f"{self.data.hex()}")


# --- valid messages ------------------------------------------------------------------------------------

class _Draw:
    """Plausible field values from the hints, and now and then an extreme."""

    def __init__(self, rng: random.Random, hints: Hints):
        self.rng, self.hints = rng, hints

    def u(self, bits: int) -> int:
        r = self.rng.random()
        if r < 0.15:
            return self.rng.choice((0, 1, (1 << bits) - 1, 1 << (bits - 1)))
        if r < 0.6:
            return self.rng.randrange(min(1 << bits, 16))
        return self.rng.getrandbits(bits)

    def octets(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def addr6(self) -> IPv6Address:
        h, r = self.hints, self.rng.random()
        if r < 0.6:
            return self.rng.choice(h.addresses6)
        if r < 0.8:
            return self.rng.choice(h.prefixes)[self.rng.randrange(256)]
        return self.rng.choice((IPv6Address("::"), IPv6Address("::1"), IPv6Address("ff02::1"),
                                IPv6Address("fe80::1"), IPv6Address(f"::ffff:{self.addr4()}"),
                                IPv6Address(self.rng.getrandbits(128))))

    def addr4(self) -> IPv4Address:
        if self.rng.random() < 0.7:
            return self.rng.choice(self.hints.addresses4)
        return self.rng.choice((IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255"),
                                IPv4Address("127.0.0.1"), IPv4Address(self.rng.getrandbits(32))))

    def prefix(self) -> tuple[int, IPv6Address]:
        r = self.rng.random()
        if r < 0.5:
            net = self.rng.choice(self.hints.prefixes)
            return net.prefixlen, net.network_address
        if r < 0.65:
            return 0, IPv6Address("::")
        return self.rng.choice((0, 48, 64, 127, 128, 129, 200, 255)), self.addr6()

    def nai(self) -> bytes:
        r = self.rng.random()
        if r < 0.7:
            return self.rng.choice(self.hints.nais).encode()
        if r < 0.8:
            return b""
        if r < 0.9:
            return self.octets(self.rng.randrange(1, 40))          # not UTF-8, mostly
        return ("\u00e9" * self.rng.randrange(1, 30)).encode()

    def timestamp(self) -> int:
        r = self.rng.random()
        if r < 0.7:
            return round((self.hints.now + self.rng.uniform(-10, 10)) * 65536)
        return self.u(64)

    def spi(self) -> int:
        return self.rng.choice(self.hints.spis) if self.rng.random() < 0.7 else self.u(32)

    def mma(self) -> wire.MobilityMessageAuthentication:
        """RFC 4285, subtype 255 (HMAC-SHA256, 32 octets) mostly."""
        subtype = MMA_SUBTYPE if self.rng.random() < 0.8 else self.u(8)
        return wire.MobilityMessageAuthentication(subtype, self.spi(),
                                                  self.octets(32 if self.rng.random() < 0.8 else self.rng.randrange(40)))


def _option_builders(d: _Draw) -> dict[type, Callable[[], wire.Option]]:
    """One builder per option class the codec knows."""
    w = wire
    return {
        w.BindingRefreshAdvice: lambda: w.BindingRefreshAdvice(d.u(16)),
        w.AlternateCareofAddress: lambda: w.AlternateCareofAddress(d.addr6()),
        w.NonceIndices: lambda: w.NonceIndices(d.u(16), d.u(16)),
        w.BindingAuthorizationData: lambda: w.BindingAuthorizationData(d.octets(12)),
        w.MobileNodeIdentifier: lambda: w.MobileNodeIdentifier(d.nai(), 1 if d.rng.random() < 0.9 else d.u(8)),
        w.MobilityMessageAuthentication: d.mma,
        w.HomeNetworkPrefix: lambda: w.HomeNetworkPrefix(*d.prefix()),
        w.HandoffIndicator: lambda: w.HandoffIndicator(d.u(8)),
        w.AccessTechnologyType: lambda: w.AccessTechnologyType(d.u(8)),
        w.LinkLocalAddress: lambda: w.LinkLocalAddress(d.addr6()),
        w.Timestamp: lambda: w.Timestamp(d.timestamp()),
        w.IPv4HomeAddress: lambda: w.IPv4HomeAddress(d.addr4(), d.u(6), d.rng.random() < 0.5),
        w.IPv4AddressAck: lambda: w.IPv4AddressAck(d.u(8), d.addr4(), d.u(6)),
        w.NATDetection: lambda: w.NATDetection(d.u(32), d.rng.random() < 0.5),
        w.IPv4CareofAddress: lambda: w.IPv4CareofAddress(d.addr4()),
        w.IPv4HomeAddressRequest: lambda: w.IPv4HomeAddressRequest(d.addr4(), d.u(6)),
        w.IPv4HomeAddressReply: lambda: w.IPv4HomeAddressReply(d.u(8), d.addr4(), d.u(6)),
        w.MAGIPv6Address: lambda: w.MAGIPv6Address(d.addr6()),
        w.CNAddress: lambda: w.CNAddress(d.addr6()),
        w.CNIPv4Address: lambda: w.CNIPv4Address(d.addr4()),
        w.CNHomeNetworkPrefix: lambda: w.CNHomeNetworkPrefix(*d.prefix()),
        w.CNIPv4HomeAddress: lambda: w.CNIPv4HomeAddress(d.u(8) if d.rng.random() < 0.3 else 32, d.addr4()),
        w.ROAcknowledgement: lambda: w.ROAcknowledgement(d.u(8), d.u(16)),
        w.IPv4ROAcknowledgement: lambda: w.IPv4ROAcknowledgement(d.u(8), d.u(16)),
        w.ExperimentalOption: lambda: w.ExperimentalOption(
            bytes([d.rng.choice([s for s in range(256) if s not in w.EXPERIMENTAL_SUBTYPES])])
            + d.octets(d.rng.randrange(20)) if d.rng.random() < 0.9 else b""),
        w.UnknownOption: lambda: w.UnknownOption(
            d.rng.choice([t for t in range(2, 256) if t not in w.OPTION_TYPES and t != 18]),
            d.octets(d.rng.randrange(24))),
    }


def _known_option_classes() -> list[type]:
    """Every option class of the codec, so that a new one fails the unit test until it has a builder."""
    return [*wire.OPTION_TYPES.values(), *wire.EXPERIMENTAL_SUBTYPES.values(), wire.ExperimentalOption,
            wire.UnknownOption]


def _templates(d: _Draw, options: dict[type, Callable]) -> dict[str, Callable[[], wire.Message]]:
    """Valid messages, as each role sends them, by name."""
    w, rng, o = wire, d.rng, options

    def some(*classes) -> list:
        return [o[cls]() for cls in classes]

    def maybe(*classes) -> list:
        return [o[cls]() for cls in classes if rng.random() < 0.5]

    def pbu_options() -> list:
        return (some(w.MobileNodeIdentifier, w.HomeNetworkPrefix, w.HandoffIndicator, w.AccessTechnologyType,
                     w.Timestamp)
                + maybe(w.IPv4HomeAddressRequest, w.IPv4CareofAddress, w.LinkLocalAddress, w.NATDetection))

    def sealed(opts: list) -> list:
        return opts + [d.mma()] if rng.random() < 0.85 else opts

    pbu_flags = w.BUFlags.A | w.BUFlags.H | w.BUFlags.P
    return {
        "brr": lambda: w.BindingRefreshRequest(maybe(w.Timestamp)),
        "hoti": lambda: w.HomeTestInit(d.octets(8), maybe(w.CNAddress, w.CNIPv4Address)),
        "coti": lambda: w.CareofTestInit(d.octets(8), maybe(w.CNAddress, w.CNIPv4Address)),
        "hot": lambda: w.HomeTest(d.u(16), d.octets(8), d.octets(8)),
        "cot": lambda: w.CareofTest(d.u(16), d.octets(8), d.octets(8)),
        "pbu": lambda: w.BindingUpdate(d.u(16), w.BUFlags(pbu_flags | (d.u(16) & 0x00FF if rng.random() < 0.2 else 0)),
                                       d.u(16), sealed(pbu_options())),
        "pba": lambda: w.BindingAck(d.u(8), w.BAFlags.P, d.u(16), d.u(16),
                                    sealed(some(w.MobileNodeIdentifier, w.HomeNetworkPrefix, w.HandoffIndicator,
                                                w.AccessTechnologyType, w.Timestamp)
                                           + maybe(w.IPv4AddressAck, w.IPv4HomeAddressReply, w.NATDetection,
                                                   w.BindingRefreshAdvice))),
        "ro_bu_rr": lambda: w.BindingUpdate(d.u(16), w.BUFlags(w.BUFlags.A | (d.u(16) & 0xFF80)), d.u(16),
                                            some(w.CNAddress) + maybe(w.CNIPv4Address, w.CNHomeNetworkPrefix,
                                                                      w.CNIPv4HomeAddress, w.AlternateCareofAddress,
                                                                      w.IPv4CareofAddress, w.Timestamp)
                                            + some(w.NonceIndices, w.BindingAuthorizationData)),
        "ro_bu_quick": lambda: w.BindingUpdate(d.u(16), w.BUFlags.A, d.u(16),
                                               some(w.CNAddress, w.Timestamp) + maybe(w.CNHomeNetworkPrefix,
                                                                                      w.CNIPv4Address)
                                               + [d.mma()]),
        "ro_ba": lambda: w.BindingAck(d.u(8), w.BAFlags(d.u(8) & 0xF0), d.u(16), d.u(16),
                                      maybe(w.ROAcknowledgement, w.IPv4ROAcknowledgement, w.CNAddress,
                                            w.BindingRefreshAdvice, w.Timestamp)
                                      + (some(w.BindingAuthorizationData) if rng.random() < 0.5 else [d.mma()])),
        "be": lambda: w.BindingError(d.u(8) if rng.random() < 0.3 else rng.choice((1, 2)), d.addr6(),
                                     maybe(w.CNAddress)),
        "experimental": lambda: w.ExperimentalMessage(d.octets(2 + 8 * rng.randrange(4))),
        "heartbeat": lambda: w.Heartbeat(rng.random() < 0.5, rng.random() < 0.5, d.u(32),
                                         sealed(some(w.Timestamp))),
        "lri": lambda: w.LocalizedRoutingInitiation(d.u(16), d.u(16),
                                                    sealed(some(w.MobileNodeIdentifier, w.HomeNetworkPrefix)
                                                           + maybe(w.MAGIPv6Address, w.CNAddress,
                                                                   w.CNHomeNetworkPrefix, w.CNIPv4Address)
                                                           + some(w.Timestamp))),
        "lra": lambda: w.LocalizedRoutingAck(d.u(16), d.u(8), d.u(16), rng.random() < 0.3,
                                             sealed(maybe(w.MobileNodeIdentifier, w.HomeNetworkPrefix,
                                                          w.MAGIPv6Address, w.CNAddress, w.CNHomeNetworkPrefix,
                                                          w.CNIPv4HomeAddress)
                                                    + some(w.Timestamp))),
        "bri": lambda: w.BindingRevocation.indication(d.u(16), d.u(8), sealed(
            maybe(w.MobileNodeIdentifier, w.HomeNetworkPrefix, w.IPv4HomeAddress) + some(w.Timestamp)),
            w.BRFlags(d.u(16) & 0xE000)),
        "bra": lambda: w.BindingRevocation.acknowledgement(d.u(16), d.u(8), sealed(
            maybe(w.MobileNodeIdentifier, w.HomeNetworkPrefix) + some(w.Timestamp)), w.BRFlags(d.u(16) & 0xE000)),
    }


def _raw(mh_type: int, fixed: bytes, options: list, payload_proto: int = wire.IPPROTO_NONE) -> bytes:
    """A Mobility Header of any type: fixed fields as given, then options laid out by the codec."""
    body = fixed + encode_options(options, FIXED_OFFSET + len(fixed))
    if (FIXED_OFFSET + len(body)) % 8:
        body += bytes(-(FIXED_OFFSET + len(body)) % 8)
    length = FIXED_OFFSET + len(body)
    return bytes((payload_proto, length // 8 - 1, mh_type, 0, 0, 0)) + body


# --- mutations -------------------------------------------------------------------------------------------

def _option_offsets(data: bytes) -> list[int]:
    """Where each option's Type octet sits, as far as the option area parses."""
    cls = wire.MESSAGE_TYPES.get(data[2]) if len(data) > 2 else None
    start = FIXED_OFFSET + (cls.layout.size if cls is not None else 0)
    found = []
    try:
        for offset, option_type, _ in iter_tlv(data, start, len(data)):
            if option_type != PAD1:
                found.append(offset)
    except wire.WireError:
        pass
    return found


def _flip_bits(rng, data: bytearray) -> None:
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        i = rng.randrange(len(data))
        if CHECKSUM_OFFSET <= i < CHECKSUM_OFFSET + 2:
            continue
        data[i] ^= 1 << rng.randrange(8)


def _set_bytes(rng, data: bytearray) -> None:
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(data))
        data[i] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))


def _option_length_lie(rng, data: bytearray) -> None:
    offsets = _option_offsets(bytes(data))
    if offsets:
        i = rng.choice(offsets) + 1
        if i < len(data):
            data[i] = rng.choice((0, 1, 2, data[i] - 1 & 0xFF, data[i] + 1 & 0xFF, 255, rng.randrange(256)))


def _tlv_garbage(rng, data: bytearray) -> None:
    length = rng.randrange(0, 12)
    option_type = rng.choice((PAD1, PADN, 18, rng.randrange(256), *wire.OPTION_TYPES))
    tlv = bytes((option_type, length)) + rng.randbytes(length)
    where = rng.randrange(min(FIXED_OFFSET, len(data)), len(data) + 1)
    data[where:where] = tlv


def _truncate(rng, data: bytearray) -> None:
    del data[rng.randrange(0, len(data)):]


def _extend(rng, data: bytearray) -> None:
    data += rng.choice((bytes(rng.randrange(1, 17)), rng.randbytes(rng.randrange(1, 65))))


def _header_len(rng, data: bytearray) -> None:
    if len(data) > 1:
        data[1] = rng.choice((0, 1, data[1] - 1 & 0xFF, data[1] + 1 & 0xFF, 255, rng.randrange(256)))


def _mh_type(rng, data: bytearray) -> None:
    if len(data) > 2:
        data[2] = rng.choice((rng.choice(list(wire.MESSAGE_TYPES)), rng.randrange(256)))


def _payload_proto(rng, data: bytearray) -> None:
    if data:
        data[0] = rng.choice((0, 6, 41, 58, 135, rng.randrange(256)))


OCTET_MUTATIONS: dict[str, Callable[[random.Random, bytearray], None]] = {
    "bit_flips": _flip_bits, "bytes_set": _set_bytes, "option_length_lie": _option_length_lie,
    "tlv_garbage": _tlv_garbage, "truncated": _truncate, "extended": _extend, "header_len_lie": _header_len,
    "mh_type": _mh_type, "payload_proto": _payload_proto,
}


def _mutate_options(rng, options: list, builders: dict) -> tuple[list, str]:
    options = list(options)
    how = rng.choice(("options_shuffled", "option_duplicated", "option_dropped", "unknown_option",
                      "any_option_added", "auth_not_last"))
    if how == "options_shuffled":
        rng.shuffle(options)
    elif how == "option_duplicated" and options:
        options.insert(rng.randrange(len(options) + 1), rng.choice(options))
    elif how == "option_dropped" and options:
        del options[rng.randrange(len(options))]
    elif how == "unknown_option":
        options.insert(rng.randrange(len(options) + 1), builders[wire.UnknownOption]())
    elif how == "any_option_added":
        for _ in range(rng.randrange(1, 4)):
            options.insert(rng.randrange(len(options) + 1), rng.choice(list(builders.values()))())
    elif how == "auth_not_last" and options:
        options.append(options.pop(0))
    return options, how


class Fuzzer:
    """Mutants of valid Mobility Header messages, reproducible from (seed, index)."""

    def __init__(self, seed: int, hints: Hints | None = None, *, checksum_ok: float = 0.9,
                 repair_length: float = 0.8):
        self.seed, self.hints = seed, hints or Hints()
        self.checksum_ok, self.repair_length = checksum_ok, repair_length
        self.index = 0

    def templates(self, rng: random.Random) -> tuple[_Draw, dict, dict]:
        d = _Draw(rng, self.hints)
        builders = _option_builders(d)
        return d, builders, _templates(d, builders)

    def mutant(self, src: IPv6Address, dst: IPv6Address, index: int | None = None) -> Mutant:
        """The next mutant (or mutant `index`), its Checksum computed for src -> dst."""
        if index is None:
            index, self.index = self.index, self.index + 1
        rng = random.Random(f"pmip6ctl-fuzz:{self.seed}:{index}")
        d, builders, templates = self.templates(rng)
        mutations: list[str] = []
        # a valid message of a type (every type of the codec, by template or with random fixed fields)
        name = rng.choice([*templates, "any_type"])
        if name == "any_type":
            cls = rng.choice(list(wire.MESSAGE_TYPES.values()))
            message = None
            fixed = rng.randbytes(cls.layout.size)
            options = [rng.choice(list(builders.values()))() for _ in range(rng.randrange(4))]
            mutations.append(f"any_type_{cls.mh_type}")
        else:
            message = templates[name]()
            options = message.options
            mutations.append(name)
        if rng.random() < 0.3 and not isinstance(message, wire.ExperimentalMessage):
            options, how = _mutate_options(rng, options, builders)
            mutations.append(how)
        try:
            if message is not None:
                message.options = options
                data = bytearray(wire.encode(message))
            else:
                data = bytearray(_raw(cls.mh_type, fixed, options))
        except ValueError:
            mutations.append("not_encodable_fallback")
            data = bytearray(_raw(wire.BindingRefreshRequest.mh_type, b"\0\0", []))
        # octet-level mutations for most
        if rng.random() < 0.75:
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                how = rng.choice(list(OCTET_MUTATIONS))
                if data or how == "extended":
                    OCTET_MUTATIONS[how](rng, data)
                    mutations.append(how)
        if len(data) > MAX_OCTETS:
            del data[MAX_OCTETS:]
        # most get their length repaired, so that they reach the option parsers
        if rng.random() < self.repair_length and "header_len_lie" not in mutations:
            if len(data) < 8 or len(data) % 8:
                data += bytes(-len(data) % 8 if len(data) >= 8 else 8 - len(data))
            data[1] = len(data) // 8 - 1
        if len(data) >= CHECKSUM_OFFSET + 2:
            r = rng.random()
            if r < self.checksum_ok:
                data[CHECKSUM_OFFSET:CHECKSUM_OFFSET + 2] = mh_checksum(src, dst, bytes(data)).to_bytes(2, "big")
            elif r < self.checksum_ok + (1 - self.checksum_ok) / 2:
                data[CHECKSUM_OFFSET:CHECKSUM_OFFSET + 2] = rng.randbytes(2)
                mutations.append("bad_checksum")
            else:
                mutations.append("no_checksum")
        return Mutant(self.seed, index, tuple(mutations) if len(mutations) > 1 else (mutations[0], "valid"),
                      bytes(data), src, dst)


def option_classes_without_builder() -> list[type]:
    """Option classes of the codec the fuzzer cannot build (a unit test keeps this empty)."""
    d = _Draw(random.Random(0), Hints())
    return [cls for cls in _known_option_classes() if cls not in _option_builders(d)]


@dataclass
class Tally:
    """How many mutants of each first mutation, and how they fared."""
    by_outcome: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str) -> None:
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1
