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
import socket
import struct
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Callable

from .. import wire
from ..io.signaling import ipv6_packet
from ..security import MMA_SUBTYPE          # HMAC-SHA256 under the peer's SPI
from ..transport import PMIP6_UDP_PORT
from ..wire.checksum import CHECKSUM_OFFSET, internet_checksum, mh_checksum
from ..wire.messages import FIXED_OFFSET
from ..wire.options import PAD1, PADN, encode_options, iter_tlv
from . import configs, topology as t
from .probe import RawSender

MAX_OCTETS = 1280 - 40 - 28        # fits any path: IPv6 minimum MTU, minus IPv6, IPv4 and UDP headers


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


# --- against the running daemons of the lab ---------------------------------------------------------------

TARGETS = ("lma", "mag1", "cn")
TRANSPORTS = ("ipv6", "udp4", "raw4")      # IPv6/MH; IPv4/UDP 5436/IPv6/MH (RFC 5844); IPv4 proto 41/IPv6/MH
# and "home_path": IPv6/MH to an MN, which the LMA tunnels to its MAG and the MAG's XDP punts
SPOOFED_PEER = {"lma": "mag1", "mag1": "lma", "cn": "mag1"}    # whose source a third of the mutants claim


def ipv4_packet(src: IPv4Address, dst: IPv4Address, protocol: int, payload: bytes, ttl: int = 64) -> bytes:
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, ttl, protocol, 0,
                                   src.packed, dst.packed))
    header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + payload


def carried(transport: str, mh: bytes, src6: IPv6Address, dst6: IPv6Address, src4: IPv4Address | None = None,
            dst4: IPv4Address | None = None, sport: int = PMIP6_UDP_PORT) -> tuple[bytes, str]:
    """The whole packet for a Mobility Header over `transport`, and where to send it."""
    inner = ipv6_packet(src6, dst6, mh)
    if transport == "ipv6":
        return inner, str(dst6)
    if transport == "udp4":
        udp = struct.pack("!HHHH", sport, PMIP6_UDP_PORT, 8 + len(inner), 0) + inner   # checksum 0: none (IPv4)
        return ipv4_packet(src4, dst4, socket.IPPROTO_UDP, udp), str(dst4)
    return ipv4_packet(src4, dst4, 41, inner), str(dst4)


def lab_hints(lab, now: float) -> Hints:
    """The lab's addresses, prefixes, NAIs and SPIs (pmip6ctl/lab/topology.py, configs.py)."""
    mns = getattr(lab, "mns", {}) or {}
    addresses6 = [IPv6Address(t.address6(n)) for n in t.DAEMONS] + [IPv6Address(t.CN6), IPv6Address(t.DENIED_CN)]
    addresses6 += [IPv6Address(mn["ipv6"]) for mn in mns.values() if mn.get("ipv6")]
    addresses4 = [IPv4Address(t.address4(n)) for n in t.DAEMONS] + [IPv4Address(t.CN4)]
    addresses4 += [IPv4Address(mn["ipv4"]) for mn in mns.values() if mn.get("ipv4")]
    prefixes = [IPv6Network(f"{mn['ipv6']}/64", strict=False) for mn in mns.values() if mn.get("ipv6")]
    prefixes += [IPv6Network(t.HNP_POOL)]
    nais = [f"{mn}@lab.example" for mn in t.HOME_MAG] + list(t.SECOND_NAIS.values())
    spis = [configs.pair_key(a, b, tag)[1] for a, b, tag in (("lma", "mag1", "signaling"), ("lma", "mag2", "signaling"),
                                                             ("mag1", "mag2", "quick-mode"), ("lma", "lma2", "inter-lma"))]
    return Hints(tuple(addresses6), tuple(addresses4), tuple(prefixes), tuple(nais), tuple(spis), now)


def messages_in(rows: list[dict]) -> dict[tuple[str, str], int]:
    """A daemon's `signaling` rows of what came in: (type, result) -> count."""
    return {(r["type"], r["result"]): r["count"] for r in rows if r["direction"] == "in"}


def reached(counts: dict[tuple[str, str], int]) -> int:
    """Messages a daemon took off its sockets: each is counted once, by its
    kind and result (an RO rejection, type "ro", is counted on top)."""
    return sum(n for (kind, _), n in counts.items() if kind != "ro")


@dataclass
class LabFuzzReport:
    seed: int
    sent: dict[tuple[str, str], int] = field(default_factory=dict)        # (target, transport) -> packets
    received: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)   # target -> (type, result) -> n
    xdp: dict[str, dict[str, int]] = field(default_factory=dict)          # target -> "program reason" -> packets
    seconds: float = 0.0

    def reached(self, target: str) -> int:
        return reached(self.received.get(target, {}))

    def lines(self) -> list[str]:
        out = [f"seed {self.seed}: {sum(self.sent.values())} mutants in {self.seconds:.0f} s"]
        for target in TARGETS:
            sent = {tr: self.sent.get((target, tr), 0) for tr in (*TRANSPORTS, "home_path")
                    if (target, tr) in self.sent}
            out.append(f"  {target}: sent {sum(sent.values())} ({', '.join(f'{k} {v}' for k, v in sent.items())}), "
                       f"{self.reached(target)} taken off the daemon's sockets "
                       "(with its peers' own signaling and answers to spoofed ones)")
            results: dict[str, int] = {}
            for (_, result), n in self.received.get(target, {}).items():
                results[result] = results.get(result, 0) + n
            out.append("    results: " + ", ".join(f"{k} {v}" for k, v in sorted(results.items(), key=lambda kv: -kv[1])))
            xdp = {k: v for k, v in self.xdp.get(target, {}).items() if v}
            out.append("    data plane: " + (", ".join(f"{k} {v}" for k, v in sorted(xdp.items())) or "-"))
        return out


def fuzz_lab(lab, count: int, seed: int, *, chunk: int = 250, progress: Callable[[str], None] | None = None,
             settle: float = 0.3, home_path: int | None = None, punt_pace: float = 200.0) -> LabFuzzReport:
    """`count` mutants from namespace pmip-inet to the LMA, MAG1 and the CN
    agent, over IPv6, IPv4/UDP 5436 and IPv4 proto 41, evenly; from inet's
    own addresses or (a third) a signaling peer's. Then `home_path` more
    (count/20 by default) to MN1, which MAG1's XDP punts to its daemon, at
    `punt_pace` a second (under the punt budget). Paced by the daemons:
    after each chunk the sender waits until every target took what it was
    sent off its sockets (or its count stops growing for `settle` s, what
    the data plane drops never arrives), so that the socket buffers never
    overflow and what is sent reaches the parsers."""
    started = time.monotonic()
    home_path = count // 20 if home_path is None else home_path
    fuzzer = Fuzzer(seed, lab_hints(lab, time.time()))
    rng = random.Random(seed)
    report = LabFuzzReport(seed)

    def inbound(target):
        return messages_in(lab.client(target, timeout=30).call("signaling"))

    def xdp(target):
        return {f'{c["program"]} {c["reason"]}': c["packets"] for c in lab.client(target, timeout=30).call("counters")}

    base = {target: inbound(target) for target in TARGETS}
    base_xdp = {target: xdp(target) for target in TARGETS}
    sent_to = dict.fromkeys(TARGETS, 0)
    with RawSender(lab.ns("inet")) as sender:
        done, next_report = 0, time.monotonic() + 10
        while done < count:
            for _ in range(min(chunk, count - done)):
                target, transport = rng.choice(TARGETS), rng.choice(TRANSPORTS)
                source = SPOOFED_PEER[target] if rng.random() < 1 / 3 else None
                src6 = IPv6Address(t.address6(source) if source else t.gateway6(target))
                src4 = IPv4Address(t.address4(source) if source else t.gateway4(target))
                dst6, dst4 = IPv6Address(t.address6(target)), IPv4Address(t.address4(target))
                mutant = fuzzer.mutant(src6, dst6)
                packet, destination = carried(transport, mutant.data, src6, dst6, src4, dst4,
                                              rng.choice((PMIP6_UDP_PORT, 40000 + rng.randrange(1000))))
                while not sender.send(packet, destination):
                    time.sleep(0.001)
                report.sent[target, transport] = report.sent.get((target, transport), 0) + 1
                sent_to[target] += 1
                done += 1
            _wait_taken(lambda target: reached(inbound(target)) - reached(base[target]), sent_to, settle)
            if progress is not None and (time.monotonic() >= next_report or done == count):
                took = {target: reached(inbound(target)) - reached(base[target]) for target in TARGETS}
                progress(f"{done}/{count} sent, taken off the sockets: "
                         + ", ".join(f"{k} {v}/{sent_to[k]}" for k, v in took.items()))
                next_report = time.monotonic() + 10
        # the home path: to MN1 from outside, through the LMA's tunnel to MAG1, whose
        # XDP punts it (proxy RR, draft §3): under the punt budget, at `punt_pace` a second
        mn1 = (getattr(lab, "mns", None) or {}).get("mn1", {}).get("ipv6")
        if mn1 and home_path:
            dst6 = IPv6Address(mn1)
            for _ in range(home_path):
                src6 = IPv6Address(t.CN6) if rng.random() < 1 / 3 else IPv6Address(t.gateway6("lma"))
                packet, destination = carried("ipv6", fuzzer.mutant(src6, dst6).data, src6, dst6)
                time.sleep(1 / punt_pace)        # never faster, never a catch-up burst past the budget
                while not sender.send(packet, destination):
                    time.sleep(0.001)
                report.sent["mag1", "home_path"] = report.sent.get(("mag1", "home_path"), 0) + 1
                sent_to["mag1"] += 1
            _wait_taken(lambda target: reached(inbound(target)) - reached(base[target]), sent_to, settle)
            if progress is not None:
                progress(f"{home_path} to MN1 along the home path, punted by MAG1's XDP")
    for target in TARGETS:
        now = inbound(target)
        report.received[target] = {k: n - base[target].get(k, 0) for k, n in now.items() if n - base[target].get(k, 0)}
        now_xdp = xdp(target)
        report.xdp[target] = {k: n - base_xdp[target].get(k, 0) for k, n in now_xdp.items()}
    report.seconds = time.monotonic() - started
    return report


def _wait_taken(taken: Callable[[str], int], sent_to: dict[str, int], settle: float, timeout: float = 30.0) -> None:
    """Until each target took all it was sent, or its count stood still for `settle` s."""
    end = time.monotonic() + timeout
    last = {target: (-1, time.monotonic()) for target in sent_to}
    waiting = set(sent_to)
    while waiting and time.monotonic() < end:
        for target in list(waiting):
            n = taken(target)
            if n >= sent_to[target]:
                waiting.discard(target)
            elif n != last[target][0]:
                last[target] = (n, time.monotonic())
            elif time.monotonic() - last[target][1] >= settle:
                waiting.discard(target)
        if waiting:
            time.sleep(0.02)
