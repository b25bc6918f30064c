"""Emulated MAGs: the load generator of bench/scale.py and tests/lab/test_scale.py (issue 14).

An emulated MAG borrows one lab MAG's identity: its namespace, its IPv6
proxy CoA, and the SPI and key its config shares with the LMA. It opens a
raw Mobility Header socket in that namespace and speaks the real,
authenticated signaling to the real LMA daemon, as the MAG daemon would:

- Proxy Binding Updates exactly as `BindingUpdateList._proxy_binding_update`
  builds them for a MAG with `request_ipv4 = false` (MN-ID NAI, HNP, Handoff
  Indicator, Access Technology Type, Timestamp, the A, H and P flags), signed
  as `SignalingGuard.seal` signs them (RFC 4285 option, HMAC-SHA256 under
  the pair's key). They are stamped and signed at send time (the guard's
  Timestamp window is 7 s), from a template per NAI length: building one
  costs a few microseconds, not a codec round trip (tests/unit/test_loadgen.py
  holds them byte for byte to what a real BindingUpdateList sends);
- PBAs are read at fixed offsets (status, sequence) and by a walk of their
  options (HNP, Timestamp, the authenticator, which is checked); a PBA whose
  authenticator or Timestamp echo is wrong is counted and ignored;
- a Binding Revocation Indication (RFC 5846, the LMA asks the old MAG of an
  MN another MAG claims) is answered as MagNode answers it: success for an
  MN that left this MAG, 128 for one it never had, 132 for one still here;
- Heartbeats (RFC 5847) are answered; an LRI (the MAG's RO query, what
  RoInitiator._lri sends) is timed to its LRA;
- as an RO initiator in quick mode (draft §2.2), RO BUs to a real MAG
  (what RoInitiator._binding_update sends once the LRA named the peer),
  signed with the pair of MAGs' key; the peer's BAs and its RO heartbeats
  are checked, and the heartbeats answered, under that key.

It also reads what the LMA holds: its `bindings`, and its pinned mn_table
and tunnels without bcc (each MN's HNP into the tunnel to its MAG).

Only the generator runs the emulated MAGs' side: the lab's real MAG daemons
must be stopped first (`borrow_mags`), or the LMA would see both.

The MNs are `<prefix>-<i>@lab`; a generator remembers, per MN, where it is
and the prefix the LMA gave it.

Lab code: it imports the wire codec, security and protocol/auth (for
signing and the guard), never a daemon.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import hmac
import os
import random
import resource
import select
import shutil
import signal
import socket
import struct
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Callable, Iterable

from .. import netns, wire
from ..protocol.auth import SignalingGuard, SignalingPeer, is_request
from ..protocol.common import Stamper
from ..security import MAX_RR_BINDING_LIFETIME, MMA_AUTHENTICATOR_SIZE, MMA_SUBTYPE, PeerKey
from ..transport import IPPROTO_MH, Arrival, Send
from ..wire.checksum import CHECKSUM_OFFSET, internet_checksum
from ..wire.options import PAD1, PADN, iter_tlv
from . import topology as t
from .configs import lma_config, pair_key

MAGS = ("mag1", "mag2", "mag3")
IPV6_CHECKSUM = 7
FLAGS = wire.BUFlags.A | wire.BUFlags.H | wire.BUFlags.P          # what a MAG's PBU carries
ACCEPTED_BELOW = 128
_MH_BA = 6                                     # Binding Acknowledgement: the only one read without a decode
_OPT_HNP, _OPT_TIMESTAMP, _OPT_MMA = 22, 27, 9


def mn_id(index: int, prefix: str = "scale") -> str:
    return f"{prefix}-{index}@lab"


# --- who the emulated MAGs are ----------------------------------------------------------------------
@dataclass(frozen=True)
class MagIdentity:
    """A lab MAG as its LMA knows it: where it sits and how it signs."""
    name: str
    namespace: str
    address: IPv6Address           # its IPv6 proxy CoA
    lma: IPv6Address
    spi: int
    key: bytes = field(repr=False)
    quick: dict = field(default_factory=dict, repr=False, compare=False)   # RO peer's address -> quick-mode PeerKey

    @classmethod
    def of_lab(cls, lab, mag: str, lma: str = "lma") -> MagIdentity:
        """From the key files the lab wrote for its pairs (what the daemons' configs name)."""
        def read(other: str, tag: str) -> tuple[int, bytes]:
            key_file, spi, _ = pair_key(mag, other, tag)
            return spi, bytes.fromhex((lab.lab_dir / key_file).read_text().strip())
        spi, key = read(lma, "signaling")
        quick = {IPv6Address(t.address6(other)): PeerKey(*read(other, "quick-mode")) for other in MAGS if other != mag}
        return cls(mag, lab.ns(mag), IPv6Address(t.address6(mag)), IPv6Address(t.address6(lma)), spi, key, quick)


# --- PBUs, built fast -------------------------------------------------------------------------------
class PbuBuilder:
    """The signed PBU octets (checksum filled) of one MAG, from a template per
    NAI length laid out once by the wire codec."""

    def __init__(self, identity: MagIdentity,
                 access_technology: int = wire.AccessTechnologyTypeValue.IEEE_802_3):
        self.identity = identity
        self.access_technology = access_technology
        self._pseudo = identity.address.packed + identity.lma.packed       # the HMAC's src | dst
        self._templates: dict[int, tuple] = {}

    def _template(self, length: int) -> tuple:
        cached = self._templates.get(length)
        if cached is not None:
            return cached
        options = [wire.MobileNodeIdentifier(b"\0" * length), wire.HomeNetworkPrefix(0, IPv6Address(0)),
                   wire.HandoffIndicator(0), wire.AccessTechnologyType(self.access_technology), wire.Timestamp(0),
                   wire.MobilityMessageAuthentication(MMA_SUBTYPE, self.identity.spi,
                                                      bytes(MMA_AUTHENTICATOR_SIZE))]
        data = wire.encode(wire.BindingUpdate(0, FLAGS, 0, options))
        offsets = {}
        for offset, option_type, _ in iter_tlv(data, 12, len(data)):
            offsets.setdefault(option_type, offset + 2)          # where the option's data starts
        cached = (bytes(data), offsets[wire.MobileNodeIdentifier.type] + 1, offsets[wire.HomeNetworkPrefix.type] + 1,
                  offsets[wire.HandoffIndicator.type] + 1, offsets[wire.Timestamp.type],
                  offsets[wire.MobilityMessageAuthentication.type] + 5)
        self._templates[length] = cached
        return cached

    def build(self, sequence: int, nai: bytes, *, lifetime: int, timestamp: int, handoff: int,
              hnp: bytes | None = None, hnp_length: int = 0) -> bytes:
        """lifetime in seconds (0: deregistration); hnp: the packed prefix
        the MN holds (None: all zero, the LMA picks)."""
        data, at_nai, at_hnp, at_hi, at_stamp, at_auth = self._template(len(nai))
        mh = bytearray(data)
        struct.pack_into("!HHH", mh, 6, sequence, FLAGS, min(lifetime // 4, 0xFFFF))
        mh[at_nai:at_nai + len(nai)] = nai
        if hnp is not None:
            mh[at_hnp] = hnp_length
            mh[at_hnp + 1:at_hnp + 17] = hnp
        mh[at_hi] = handoff
        struct.pack_into("!Q", mh, at_stamp, timestamp)
        mh[at_auth:at_auth + MMA_AUTHENTICATOR_SIZE] = hmac.digest(
            self.identity.key, self._pseudo + bytes(mh[:at_auth]), hashlib.sha256)
        checksum = internet_checksum(self._pseudo + len(mh).to_bytes(4, "big") + bytes((0, 0, 0, IPPROTO_MH))
                                     + bytes(mh))
        struct.pack_into("!H", mh, CHECKSUM_OFFSET, checksum)
        return bytes(mh)


@dataclass(frozen=True)
class Pba:
    """What the generator reads of a PBA."""
    status: int
    sequence: int
    lifetime: int                  # seconds
    hnp: bytes | None              # packed, or None
    hnp_length: int
    timestamp: int | None
    authentic: bool


def read_pba(mh: bytes, key: bytes, pseudo: bytes) -> Pba:
    """A PBA at fixed offsets and one walk of its options; pseudo = the
    LMA's address | ours (the HMAC's src | dst). ValueError if it is none."""
    if len(mh) < 12 or mh[2] != _MH_BA or (mh[1] + 1) * 8 != len(mh):
        raise ValueError("not a Binding Acknowledgement")
    status, _flags, sequence, lifetime = struct.unpack_from("!BBHH", mh, 6)
    hnp = stamp = auth_at = None
    hnp_length = 0
    for offset, option_type, body in iter_tlv(mh, 12, len(mh)):
        if option_type == _OPT_HNP and hnp is None and len(body) == 18:
            hnp_length, hnp = body[1], bytes(body[2:18])
        elif option_type == _OPT_TIMESTAMP and len(body) == 8:
            stamp = struct.unpack("!Q", body)[0]
        elif option_type not in (PAD1, PADN):
            auth_at = offset + 7 if option_type == _OPT_MMA and len(body) == 5 + MMA_AUTHENTICATOR_SIZE \
                and body[0] == MMA_SUBTYPE else None          # the authenticator must be the last option
    authentic = False
    if auth_at is not None:
        zeroed = mh[:CHECKSUM_OFFSET] + b"\0\0" + mh[CHECKSUM_OFFSET + 2:auth_at]
        authentic = hmac.compare_digest(hmac.digest(key, pseudo + zeroed, hashlib.sha256),
                                        mh[auth_at:auth_at + MMA_AUTHENTICATOR_SIZE])
    return Pba(status, sequence, lifetime * 4, hnp, hnp_length, stamp, authentic)


# --- one emulated MAG ------------------------------------------------------------------------------
@dataclass
class Request:
    """One PBU exchange: its transmissions share nothing but the MN (RFC 6275
    §11.8: a retransmission has a new sequence number and Timestamp)."""
    index: int                     # the MN's; for ro_start and ro_stop, the RO pair's
    kind: str                      # attach, move, refresh, detach, ro_start, ro_stop
    mag: int                       # position of the emulated MAG that sends it
    first_sent: float = 0.0
    sent: float = 0.0
    sequence: int = 0
    timestamp: int = 0
    attempts: int = 0
    done: bool = False


class EmulatedMag:
    def __init__(self, identity: MagIdentity, position: int):
        self.identity = identity
        self.position = position
        with netns.entered(identity.namespace):
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
        self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, -1)     # ours to fill, as MhSocket's
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((str(identity.address), 0))
        self.sock.setblocking(False)
        self.destination = (str(identity.lma), 0)
        self.lma = str(identity.lma)
        self.pseudo_in = identity.lma.packed + identity.address.packed
        self.builder = PbuBuilder(identity)
        self.stamper = Stamper()
        key = PeerKey(identity.spi, identity.key)
        self.guard = SignalingGuard({identity.lma: SignalingPeer(identity.lma, key)}, stamper=self.stamper)
        self._sequence = int.from_bytes(os.urandom(2), "big")
        self.waiting: dict[int, Request] = {}           # PBU sequence -> its request

    def next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) & 0xFFFF
        return self._sequence

    def send_raw(self, mh: bytes, to: tuple | None = None) -> None:
        while True:
            try:
                self.sock.sendto(mh, to or self.destination)
                return
            except BlockingIOError:
                select.select([], [self.sock], [], 0.1)

    def seal_and_send(self, message: wire.Message, now: float) -> wire.Message:
        """A message to the LMA, stamped (a request) and signed as the MAG's guard does."""
        sealed = self.guard.seal(Send(message, self.identity.address, self.identity.lma), now)[0]
        self.send_raw(wire.encode(sealed.message, sealed.src, sealed.dst))
        return sealed.message

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class RoSpec:
    """An RO pair an emulated MAG sets up as the initiator, in quick mode
    (draft §2.2), with the MAG that serves the correspondent."""
    mag: int                       # the emulated MAG (position) whose MN it is
    mn: IPv6Address                # our MN's address
    cn: IPv6Address                # the correspondent, an MN at the peer
    peer: IPv6Address              # the peer MAG's proxy CoA


def ro_binding_update(spec: RoSpec, sequence: int, timestamp: int, lifetime: int, key: PeerKey,
                      src: IPv6Address) -> wire.BindingUpdate:
    """The RO BU of RoInitiator._binding_update in quick mode: the MN and
    the correspondent as /128 prefixes, a Timestamp, the pair of MAGs' key."""
    bu = wire.BindingUpdate(sequence, wire.BUFlags.A | wire.BUFlags.P, lifetime // 4, [
        wire.HomeNetworkPrefix(128, spec.mn), wire.CNHomeNetworkPrefix(128, spec.cn), wire.Timestamp(timestamp)])
    return key.sign(bu, src, spec.peer)


# --- results ----------------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class PhaseResult:
    """One phase: what went out, what came back, how fast."""
    phase: str
    requests: int = 0
    answered: int = 0
    statuses: Counter = field(default_factory=Counter)    # answer status -> count
    latencies_ms: list = field(default_factory=list)
    seconds: float = 0.0
    retransmitted: int = 0
    lost: int = 0                                          # no answer after every attempt
    forged: int = 0                                        # answers that failed the authenticator or Timestamp
    cpu_seconds: float = 0.0                               # the generator's own
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    @property
    def refused(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= ACCEPTED_BELOW)

    def summary(self) -> dict:
        return {"phase": self.phase, "requests": self.requests, "answered": self.answered,
                "seconds": round(self.seconds, 3), "per_second": round(self.rate, 1),
                "p50_ms": _round(percentile(self.latencies_ms, 50)),
                "p99_ms": _round(percentile(self.latencies_ms, 99)),
                "max_ms": _round(max(self.latencies_ms, default=None)),
                "refused": self.refused, "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "retransmitted": self.retransmitted, "lost": self.lost, "forged": self.forged,
                "generator_cpu_us_per_request": round(self.cpu_seconds / self.requests * 1e6, 1)
                if self.requests else None, **self.extra}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


# --- the generator ----------------------------------------------------------------------------------
class LoadGenerator:
    """Emulated MAGs (one per identity) and the MNs they serve.

    window: PBUs outstanding at once, over all MAGs; timeout: seconds
    before a PBU is sent again (new sequence number and Timestamp), at most
    attempts times in all; lifetime: what each PBU asks for, seconds."""

    def __init__(self, identities: Iterable[MagIdentity], *, window: int = 32, timeout: float = 10.0,
                 attempts: int = 3, lifetime: int = 3600, prefix: str = "scale",
                 named_prefix: Callable[[int], IPv6Network] | None = None,
                 progress: Callable[[str], None] = lambda line: None, progress_every: float = 2.0):
        self.mags = [EmulatedMag(identity, i) for i, identity in enumerate(identities)]
        if not self.mags:
            raise ValueError("a load generator needs at least one MAG identity")
        self.window, self.timeout, self.attempts, self.lifetime = window, timeout, attempts, lifetime
        self.prefix = prefix
        # None: a first registration asks for any prefix (all-zero HNP); else the prefix it names
        self.named_prefix = named_prefix
        self.progress, self.progress_every = progress, progress_every
        self.where: dict[int, int] = {}            # MN -> the MAG serving it (bound at the LMA)
        self.hnp: dict[int, tuple[bytes, int]] = {}   # MN -> its prefix, packed, and length
        self.left: dict[int, set[int]] = {}        # MN -> MAGs it left without deregistering (moves)
        self._nai: dict[int, bytes] = {}
        self._poll = select.poll()
        for mag in self.mags:
            self._poll.register(mag.sock.fileno(), select.POLLIN)
        self._by_fd = {mag.sock.fileno(): mag for mag in self.mags}
        self._phase: PhaseResult | None = None
        self._outstanding = 0
        self._timeouts: deque[Request] = deque()
        self.unsolicited = Counter()               # messages answered outside any exchange of ours, by kind
        self._lri_waiting: dict[tuple[int, int], list] = {}   # (MAG, LRI sequence) -> [timestamp, sent, answer]
        self.ro_specs: list[RoSpec] = []
        self.ro_up: set[int] = set()               # RO pairs the peer accepted and we have not ended
        self.ro_lifetime = MAX_RR_BINDING_LIFETIME

    # --- identities of MNs ---------------------------------------------------------------------
    def nai(self, index: int) -> bytes:
        value = self._nai.get(index)
        if value is None:
            value = self._nai[index] = mn_id(index, self.prefix).encode()
        return value

    def index_of(self, nai: bytes | str) -> int | None:
        text = nai.decode(errors="replace") if isinstance(nai, bytes) else nai
        head, _, tail = text.rpartition("@")
        stem, _, number = head.rpartition("-")
        if tail != "lab" or stem != self.prefix or not number.isdigit():
            return None
        return int(number)

    def prefix_of(self, index: int) -> IPv6Network | None:
        held = self.hnp.get(index)
        return None if held is None else IPv6Network((IPv6Address(held[0]), held[1]))

    # --- operations ---------------------------------------------------------------------------
    def attach(self, indices: Iterable[int], phase: str = "attach") -> PhaseResult:
        """New MNs, each at MAG index % MAGs (all-zero HNP: the LMA picks)."""
        return self._run(phase, ((i, "attach", i % len(self.mags)) for i in indices))

    def refresh(self, indices: Iterable[int], phase: str = "refresh") -> PhaseResult:
        return self._run(phase, ((i, "refresh", self.where[i]) for i in indices if i in self.where))

    def detach(self, indices: Iterable[int], phase: str = "detach") -> PhaseResult:
        """Deregistrations (lifetime 0) from each MN's MAG."""
        return self._run(phase, ((i, "detach", self.where[i]) for i in indices if i in self.where))

    def move(self, indices: Iterable[int], phase: str = "move") -> PhaseResult:
        """Handovers: each MN appears at the next MAG, whose PBU (all-zero
        HNP, Handoff Indicator 3) makes the LMA ask the old one (BRI) first."""
        return self._run(phase, ((i, "move", (self.where[i] + 1) % len(self.mags))
                                 for i in indices if i in self.where))

    def ro_start(self, specs: Iterable[RoSpec], phase: str = "ro_start") -> PhaseResult:
        """RO BUs in quick mode (what RoInitiator._binding_update sends once
        the LRA named the peer), signed with the pair of MAGs' key: the peer
        MAG's responder installs each pair and answers with a BA."""
        first = len(self.ro_specs)
        self.ro_specs.extend(specs)
        return self._run(phase, ((i, "ro_start", self.ro_specs[i].mag) for i in range(first, len(self.ro_specs))))

    def ro_stop(self, indices: Iterable[int], phase: str = "ro_stop") -> PhaseResult:
        """Lifetime-0 RO BUs for pairs set up before (RoInitiator's stop)."""
        return self._run(phase, ((i, "ro_stop", self.ro_specs[i].mag) for i in list(indices) if i in self.ro_up))

    # --- the exchange loop ----------------------------------------------------------------------
    def _run(self, phase: str, work: Iterable[tuple[int, str, int]]) -> PhaseResult:
        result = self._phase = PhaseResult(phase)
        work = iter(work)
        exhausted = False
        started = time.monotonic()
        cpu = _cpu()
        reported = started
        self._outstanding = 0
        self._timeouts.clear()
        while True:
            while not exhausted and self._outstanding < self.window:
                item = next(work, None)
                if item is None:
                    exhausted = True
                    break
                index, kind, mag = item
                request = Request(index, kind, mag)
                result.requests += 1
                if kind == "move":
                    self.left.setdefault(index, set()).add(self.where[index])
                self._transmit(request)
                self._outstanding += 1
            if exhausted and self._outstanding == 0:
                break
            self._pump(self._wait_for())
            self._expire()
            now = time.monotonic()
            if now - reported >= self.progress_every:
                reported = now
                self.progress(f"{phase}: {result.answered}/{result.requests}{'' if exhausted else '+'} answered, "
                              f"{result.answered / (now - started):.0f}/s, {result.refused} refused, "
                              f"{result.lost} lost")
        result.seconds = time.monotonic() - started
        result.cpu_seconds = _cpu() - cpu
        self._phase = None
        return result

    def _transmit(self, request: Request) -> None:
        mag = self.mags[request.mag]
        now_wall = time.time()
        request.sequence = mag.next_sequence()
        request.timestamp = mag.stamper.stamp(now_wall).timestamp
        request.attempts += 1
        if request.kind.startswith("ro_"):
            return self._transmit_ro(mag, request)
        index = request.index
        held = self.hnp.get(index) if request.kind in ("refresh", "detach") else None
        if request.kind == "attach" and self.named_prefix is not None:
            named = self.named_prefix(index)
            held = (named.network_address.packed, named.prefixlen)
        handoff = {"attach": wire.HandoffIndicatorValue.NEW_INTERFACE,
                   "move": wire.HandoffIndicatorValue.HANDOFF_BETWEEN_MAGS}.get(
            request.kind, wire.HandoffIndicatorValue.HANDOFF_STATE_NOT_CHANGED)
        mh = mag.builder.build(request.sequence, self.nai(index), lifetime=0 if request.kind == "detach" else
                               self.lifetime, timestamp=request.timestamp, handoff=handoff,
                               hnp=held[0] if held else None, hnp_length=held[1] if held else 0)
        mag.waiting[request.sequence] = request
        request.sent = time.monotonic()
        if not request.first_sent:
            request.first_sent = request.sent
        mag.send_raw(mh)
        self._timeouts.append(request)

    def _transmit_ro(self, mag: EmulatedMag, request: Request) -> None:
        spec = self.ro_specs[request.index]
        bu = ro_binding_update(spec, request.sequence, request.timestamp,
                               0 if request.kind == "ro_stop" else self.ro_lifetime,
                               mag.identity.quick[spec.peer], mag.identity.address)
        mag.waiting[request.sequence] = request
        request.sent = time.monotonic()
        request.first_sent = request.first_sent or request.sent
        mag.send_raw(wire.encode(bu, mag.identity.address, spec.peer), (str(spec.peer), 0))
        self._timeouts.append(request)

    def _wait_for(self) -> float:
        """How long to block in poll: until the oldest PBU times out, at most 50 ms."""
        while self._timeouts and self._timeouts[0].done:
            self._timeouts.popleft()
        if not self._timeouts:
            return 0.05
        return max(0.0, min(0.05, self._timeouts[0].sent + self.timeout - time.monotonic()))

    def _expire(self) -> None:
        now = time.monotonic()
        result = self._phase
        while self._timeouts and (self._timeouts[0].done or self._timeouts[0].sent + self.timeout <= now):
            request = self._timeouts.popleft()
            if request.done:
                continue
            mag = self.mags[request.mag]
            mag.waiting.pop(request.sequence, None)
            if request.attempts < self.attempts:
                result.retransmitted += 1
                self._transmit(request)
            else:
                request.done = True
                result.lost += 1
                self._outstanding -= 1

    def _pump(self, timeout: float) -> None:
        """Everything the MAG sockets hold, waiting up to timeout for the first."""
        for fd, _ in self._poll.poll(timeout * 1000):
            mag = self._by_fd[fd]
            while True:
                try:
                    mh, address = mag.sock.recvfrom(4096)
                except BlockingIOError:
                    break
                if len(mh) < 8:
                    continue
                if address[0] != mag.lma:
                    self._from_ro_peer(mag, IPv6Address(address[0].split("%")[0]), mh)
                elif mh[2] == _MH_BA:
                    self._on_pba(mag, mh)
                else:
                    self._on_other(mag, mh)

    def _on_pba(self, mag: EmulatedMag, mh: bytes) -> None:
        try:
            pba = read_pba(mh, mag.identity.key, mag.pseudo_in)
        except (ValueError, wire.WireError):
            self.unsolicited["malformed"] += 1
            return
        request = mag.waiting.get(pba.sequence)
        result = self._phase
        if request is None or result is None:
            self.unsolicited["stray_pba"] += 1
            return
        if not pba.authentic or pba.timestamp != request.timestamp:
            result.forged += 1                  # as a MAG: not the answer to our PBU
            return
        self._answered(mag, request, result, pba.sequence, pba.status)
        index = request.index
        if pba.status >= ACCEPTED_BELOW:
            return
        if request.kind == "detach":
            self.where.pop(index, None)
            self.hnp.pop(index, None)
            self.left.pop(index, None)
        else:
            self.where[index] = request.mag
            if pba.hnp is not None:
                self.hnp[index] = (pba.hnp, pba.hnp_length)

    def _answered(self, mag: EmulatedMag, request, result, sequence: int, status: int) -> None:
        """A request's answer came (a PBA, or a BA to an RO BU): counted, timed."""
        del mag.waiting[sequence]
        request.done = True
        self._outstanding -= 1
        result.answered += 1
        result.statuses[status] += 1
        result.latencies_ms.append((time.monotonic() - request.first_sent) * 1000)

    def _on_other(self, mag: EmulatedMag, mh: bytes) -> None:
        """A BRI, a Heartbeat or an LRA: decoded in full and put past the
        MAG's guard, as MagNode takes them."""
        try:
            msg = wire.decode(mh)
        except wire.WireError:
            self.unsolicited["malformed"] += 1
            return
        now = time.time()
        arrival = Arrival(src=mag.identity.lma, dst=mag.identity.address)
        if mag.guard.check(msg, arrival, now, is_request(msg)) is not None:
            self.unsolicited["refused_by_guard"] += 1
            return
        if isinstance(msg, wire.BindingRevocation) and msg.is_indication:
            self._answer_revocation(mag, msg, now)
        elif isinstance(msg, wire.Heartbeat) and not msg.response:
            mag.seal_and_send(wire.Heartbeat(unsolicited=False, response=True, sequence=msg.sequence), now)
            self.unsolicited["heartbeat"] += 1
        elif isinstance(msg, wire.LocalizedRoutingAck):
            waiting = self._lri_waiting.get((mag.position, msg.sequence))
            stamp = wire.find_option(msg, wire.Timestamp)
            if waiting is not None and stamp is not None and stamp.timestamp == waiting[0] and waiting[2] is None:
                waiting[2] = (time.monotonic(), msg)
        else:
            self.unsolicited[type(msg).__name__] += 1

    def _from_ro_peer(self, mag: EmulatedMag, peer: IPv6Address, mh: bytes) -> None:
        """A peer MAG's BA to our RO BU, or its heartbeat for the pairs we
        hold with it (ro/heartbeat.py: signed with the quick-mode key, naming
        a pair): each checked under that key, as RoInitiator checks them."""
        key = mag.identity.quick.get(peer)
        if key is None:
            self.unsolicited["from_stranger"] += 1
            return
        try:
            msg = wire.decode(mh)
        except wire.WireError:
            self.unsolicited["malformed"] += 1
            return
        if not key.verify(msg, peer, mag.identity.address):
            self.unsolicited["ro_bad_authenticator"] += 1
            return
        if isinstance(msg, wire.Heartbeat) and not msg.response:
            names = [o for o in msg.options if isinstance(o, (wire.HomeNetworkPrefix, wire.CNHomeNetworkPrefix))]
            answer = wire.Heartbeat(unsolicited=False, response=True, sequence=msg.sequence,
                                    options=[*names, mag.stamper.stamp(time.time())])
            answer = key.sign(answer, mag.identity.address, peer)
            mag.send_raw(wire.encode(answer, mag.identity.address, peer), (str(peer), 0))
            self.unsolicited["ro_heartbeat"] += 1
            return
        request = mag.waiting.get(msg.sequence) if isinstance(msg, wire.BindingAck) else None
        result = self._phase
        if request is None or result is None or not request.kind.startswith("ro_"):
            self.unsolicited[f"ro_{type(msg).__name__}"] += 1
            return
        stamp = wire.find_option(msg, wire.Timestamp)
        if stamp is None or stamp.timestamp != request.timestamp:
            result.forged += 1
            return
        self._answered(mag, request, result, msg.sequence, msg.status)
        if request.kind == "ro_stop":
            self.ro_up.discard(request.index)
        elif msg.status < ACCEPTED_BELOW:
            self.ro_up.add(request.index)

    def _answer_revocation(self, mag: EmulatedMag, bri: wire.BindingRevocation, now: float) -> None:
        """MagNode._on_revocation: an MN that left us goes (success); one we
        never had, 128; one still here, 132 (the LMA then refuses the move)."""
        option = wire.find_option(bri, wire.MobileNodeIdentifier)
        index = self.index_of(option.identifier) if option is not None else None
        if index is not None and mag.position in self.left.get(index, ()):
            status = wire.RevocationStatus.SUCCESS
            self.left[index].discard(mag.position)
        elif index is not None and self.where.get(index) == mag.position:
            status = wire.RevocationStatus.REVOCATION_FAILED_MN_IS_ATTACHED
        else:
            status = wire.RevocationStatus.BINDING_DOES_NOT_EXIST
        options = [o for o in (option, wire.find_option(bri, wire.Timestamp)) if o is not None]
        bra = wire.BindingRevocation.acknowledgement(bri.sequence, status, options, flags=bri.flags)
        mag.seal_and_send(bra, now)
        self.unsolicited[f"bri_answered_{int(status)}"] += 1

    def serve(self, seconds: float) -> None:
        """Answer what the LMA sends (BRIs, Heartbeats) for a while, with nothing of ours outstanding."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._pump(min(left, 0.05))

    # --- RO queries ---------------------------------------------------------------------------
    def lri_latency(self, samples: int = 200, timeout: float = 2.0, seed: int = 14) -> PhaseResult:
        """The MAG's RO query, one at a time: an LRI from an MN's MAG naming
        its HNP and an address in the HNP of an MN at another MAG; the LRA
        must name that MAG."""
        result = PhaseResult("lri")
        rng = random.Random(seed)
        bound = [i for i in self.where if i in self.hnp]
        if len(self.mags) < 2 or not bound:
            return result
        started, cpu, sequence = time.monotonic(), _cpu(), rng.randrange(0x10000)
        wrong = 0
        for _ in range(samples):
            local = rng.choice(bound)
            remote = rng.choice(bound)
            while self.where[remote] == self.where[local]:
                remote = rng.choice(bound)
            mag = self.mags[self.where[local]]
            sequence = (sequence + 1) & 0xFFFF
            lprefix, rprefix = self.prefix_of(local), self.prefix_of(remote)
            lri = wire.LocalizedRoutingInitiation(sequence=sequence, lifetime=MAX_RR_BINDING_LIFETIME, options=[
                wire.HomeNetworkPrefix(lprefix.prefixlen, lprefix.network_address),
                wire.CNAddress(rprefix.network_address + 1)])
            result.requests += 1
            key = (mag.position, sequence)
            sent = time.monotonic()
            sealed = mag.seal_and_send(lri, time.time())
            waiting = self._lri_waiting[key] = [wire.find_option(sealed, wire.Timestamp).timestamp, sent, None]
            while waiting[2] is None and time.monotonic() - sent < timeout:
                self._pump(0.05)
            del self._lri_waiting[key]
            if waiting[2] is None:
                result.lost += 1
                continue
            answered_at, lra = waiting[2]
            result.answered += 1
            result.statuses[lra.status] += 1
            result.latencies_ms.append((answered_at - sent) * 1000)
            named = wire.find_option(lra, wire.MAGIPv6Address)
            if lra.status == wire.LRAStatus.SUCCESS and (named is None or
                                                         named.address != self.mags[self.where[remote]].identity.address):
                wrong += 1
        result.seconds = time.monotonic() - started
        result.cpu_seconds = _cpu() - cpu
        result.extra["wrong_mag"] = wrong
        return result

    # --- what the LMA holds ------------------------------------------------------------------
    def expected_bindings(self) -> dict[str, tuple[str, str]]:
        """MN-ID -> (HNP, serving MAG's address) of every MN bound through us."""
        return {mn_id(i, self.prefix): (str(self.prefix_of(i)), str(self.mags[m].identity.address))
                for i, m in self.where.items() if i in self.hnp}

    def check_bindings(self, rows: list[dict]) -> dict:
        """The LMA's `bindings` rows against ours: missing (or with another
        HNP or MAG) and extra (MN-IDs of ours the LMA holds that we do not)."""
        expected = self.expected_bindings()
        held = {r["mn_id"]: (r["hnp"], r["mag"]) for r in rows if self.index_of(r["mn_id"]) is not None}
        return {"expected": len(expected), "held": len(held),
                "missing": sorted(mn for mn, b in expected.items() if held.get(mn) != b),
                "extra": sorted(mn for mn in held if mn not in expected)}

    def check_forwarding(self, pin_dir: Path, pool: str | IPv6Network) -> dict:
        """The LMA's pinned mn_table against ours: every bound MN's HNP must
        be there, into the tunnel to its MAG, and nothing else of the pool."""
        held = forwarding(pin_dir, pool)
        bound = {self.prefix_of(i): self.mags[m].identity.address for i, m in self.where.items() if i in self.hnp}
        return {"entries": len(held),
                "bindings_without_entry": sum(1 for p in bound if p not in held),
                "wrong_tunnel": sum(1 for p, mag in bound.items() if p in held and held[p] != mag),
                "entries_without_binding": sum(1 for p in held if p not in bound)}

    # --- probes -------------------------------------------------------------------------------
    def probe(self, index: int, every: float = 0.2, give_up: float = 300.0) -> float | None:
        """A PBU for one MN (a refresh if it is bound, else its first
        registration), sent again every `every` seconds (another sequence
        number and Timestamp each time) until answered: the seconds it took;
        None if nothing answered within give_up."""
        saved = (self.timeout, self.attempts)
        self.timeout, self.attempts = every, max(1, int(give_up / every))
        try:
            if index in self.where:
                result = self.refresh([index], phase="probe")
            else:
                result = self.attach([index], phase="probe")
        finally:
            self.timeout, self.attempts = saved
        return result.seconds if result.answered else None

    def close(self) -> None:
        for mag in self.mags:
            mag.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the LMA's side: its config, process and maps ------------------------------------------------------
SCALE_POOL_PREFIX = "2001:db8:100::"          # the lab pool's start; widened as the bench needs


def scale_pool(mns: int) -> str:
    """The lab's HNP pool, widened (a shorter prefix, same start) until it
    holds mns /64s and a quarter more: /48 up to 52,000, /44 to 838,000."""
    length = 48
    while (1 << (64 - length)) < mns * 1.25:
        length -= 4
    return f"{SCALE_POOL_PREFIX}/{length}"


def scale_lma_config(lab, mns: int, heartbeat_interval: float | None = None) -> str:
    """The lab LMA's config with room for mns bindings: `[lma] hnp_pool`
    widened and `[dataplane] max_mn_entries` raised (one entry per HNP and
    one per serving MAG, with a margin); everything else as the lab has it."""
    text = lma_config(str(lab.run_dir), str(lab.pin_root), "lma")
    text = text.replace(f'hnp_pool = "{t.HNP_POOL}"', f'hnp_pool = "{scale_pool(mns)}"', 1)
    entries = max(65536, int(mns * 1.1) + 1024)
    text = text.replace("[dataplane]\n", f"[dataplane]\nmax_mn_entries = {entries}\n", 1)
    if heartbeat_interval is not None:
        text += f"\n[heartbeat]\ninterval = {heartbeat_interval}\n"
    return text


def lma_state_files(lab) -> list[Path]:
    """What the LMA keeps across a restart: its SQLite store with its WAL
    files (`[store] path`, the lab's `<run dir>/lma.db`), or the JSON state
    file of a pmip6ctl from before the store."""
    db = lab.socket("lma").with_suffix(".db")
    return [db, Path(f"{db}-wal"), Path(f"{db}-shm"), lab.socket("lma").with_suffix(".state.json")]


def _forget_lma_state(lab) -> None:
    for path in lma_state_files(lab):
        path.unlink(missing_ok=True)


def restart_lma(lab, config: str | None, *, fresh: bool, timeout: float = 120.0) -> None:
    """Stop the lab's LMA, write its config (None: the lab's own), and start
    it again; fresh: without its saved state and pinned maps (a new map size
    needs new maps: a pinned map keeps the size it was made with)."""
    lab.stop_daemon("lma")
    path = lab.lab_dir / "lma.toml"
    if config is None:
        lab.write_configs(t.IPV4_TRANSPORT_MAGS, 0, only="lma")
    else:
        path.write_text(config)
    if fresh:
        _forget_lma_state(lab)
        shutil.rmtree(lab.pin_root / "lma", ignore_errors=True)
    lab.start_daemon("lma")
    lab.wait_ready("lma", timeout=timeout)


def stop_lma_saving_state(lab) -> dict[Path, bytes]:
    """Stop the LMA (SIGTERM: it saves or commits its state) and return
    that state, to put back with `restore_lma` once the bench is done."""
    lab.stop_daemon("lma")
    return {path: path.read_bytes() for path in lma_state_files(lab) if path.exists()}


def restore_lma(lab, state: dict[Path, bytes]) -> None:
    """The lab's LMA as it was: its own config, fresh maps, and the state
    `stop_lma_saving_state` returned (the lab MNs' bindings come back)."""
    lab.stop_daemon("lma")
    lab.write_configs(t.IPV4_TRANSPORT_MAGS, 0, only="lma")
    _forget_lma_state(lab)
    shutil.rmtree(lab.pin_root / "lma", ignore_errors=True)
    for path, data in state.items():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)     # root's only, as the daemon keeps it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    lab.start_daemon("lma")
    lab.wait_ready("lma", timeout=120)


def kill_lma(lab) -> None:
    """kill -9: no state saved on the way out, no socket closed."""
    pid = lab.pid("lma")
    if pid is None:
        return
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lab.pid("lma") is not None and time.monotonic() < deadline:
        time.sleep(0.01)


def rss_bytes(pid: int) -> int:
    """VmRSS of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- pinned maps, read without bcc ----------------------------------------------------------------------
_libbpf = None


def _bpf():
    global _libbpf
    if _libbpf is None:
        lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
        lib.bpf_obj_get.argtypes = [ctypes.c_char_p]
        lib.bpf_obj_get.restype = ctypes.c_int
        lib.bpf_map_get_next_key.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.bpf_map_get_next_key.restype = ctypes.c_int
        lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.bpf_map_lookup_elem.restype = ctypes.c_int
        _libbpf = lib
    return _libbpf


_PREFIX_KEY = struct.Struct("=I16s")           # struct prefix_key (bpf/types.h)
_MN_ENTRY = struct.Struct("=II")               # struct mn_entry: tunnel_id, ifindex
_TUNNEL = struct.Struct("=BxHHxxI16s16s")      # struct tunnel: type, sport, dport, generation, local, remote


def _open_pin(path: Path) -> int:
    fd = _bpf().bpf_obj_get(str(path).encode())
    if fd < 0:
        err = ctypes.get_errno()
        raise FileNotFoundError(err, f"cannot open {path}: {os.strerror(err)}")
    return fd


def mn_table(pin_dir: Path) -> dict[IPv6Network, int]:
    """Every IPv6 prefix in a node's pinned mn_table with its tunnel id (an
    LPM trie walk, one lookup per entry); IPv4 entries (/96 + n) are left out."""
    lib = _bpf()
    fd = _open_pin(pin_dir / "mn_table")
    try:
        found = {}
        key, following = ctypes.create_string_buffer(_PREFIX_KEY.size), ctypes.create_string_buffer(_PREFIX_KEY.size)
        value = ctypes.create_string_buffer(_MN_ENTRY.size)
        previous = None
        while lib.bpf_map_get_next_key(fd, previous, following) == 0:
            length, address = _PREFIX_KEY.unpack(following.raw)
            if not address.startswith(bytes(10) + b"\xff\xff") and lib.bpf_map_lookup_elem(fd, following, value) == 0:
                found[IPv6Network((IPv6Address(address), length))] = _MN_ENTRY.unpack(value.raw)[0]
            ctypes.memmove(key, following, _PREFIX_KEY.size)
            previous = key
        return found
    finally:
        os.close(fd)


def tunnel_remotes(pin_dir: Path, ids: Iterable[int]) -> dict[int, IPv6Address | None]:
    """tunnel id -> the remote end its entry in the pinned tunnels array
    names (None: an unused slot)."""
    lib = _bpf()
    fd = _open_pin(pin_dir / "tunnels")
    try:
        found = {}
        value = ctypes.create_string_buffer(_TUNNEL.size)
        for tunnel_id in set(ids):
            key = ctypes.c_uint32(tunnel_id)
            if lib.bpf_map_lookup_elem(fd, ctypes.byref(key), value) != 0:
                found[tunnel_id] = None
                continue
            kind, _, _, _, _, remote = _TUNNEL.unpack(value.raw)
            found[tunnel_id] = IPv6Address(remote) if kind else None
        return found
    finally:
        os.close(fd)


def forwarding(pin_dir: Path, pool: str | IPv6Network) -> dict[IPv6Network, IPv6Address | None]:
    """Each prefix of the pool in a node's pinned mn_table -> the remote end
    of the tunnel it forwards into (a MAG's proxy CoA, IPv4-mapped for an
    IPv4 tunnel)."""
    pool = IPv6Network(pool)
    entries = {prefix: tunnel for prefix, tunnel in mn_table(pin_dir).items() if prefix.subnet_of(pool)}
    remotes = tunnel_remotes(pin_dir, entries.values())
    return {prefix: remotes[tunnel] for prefix, tunnel in entries.items()}


def pinned_count(pin_dir: Path, name: str, key_size: int) -> int:
    """How many keys a node's pinned hash-like map holds (a walk of its keys)."""
    lib = _bpf()
    fd = _open_pin(pin_dir / name)
    try:
        count = 0
        key, following = ctypes.create_string_buffer(key_size), ctypes.create_string_buffer(key_size)
        previous = None
        while lib.bpf_map_get_next_key(fd, previous, following) == 0:
            count += 1
            ctypes.memmove(key, following, key_size)
            previous = key
        return count
    finally:
        os.close(fd)


RO_KEY_SIZE = 32                               # struct ro_key: local, remote


def pinned_entries(pin_dir: Path, pool: str | IPv6Network) -> int:
    """How many of the pinned mn_table's prefixes lie in the pool."""
    pool = IPv6Network(pool)
    return sum(1 for p in mn_table(pin_dir) if p.subnet_of(pool))


# --- the lab around it -------------------------------------------------------------------------------
def borrow_mags(lab, mags: Iterable[str] = MAGS) -> None:
    """Stop the lab's MAG daemons whose identities the generator takes
    (their state is saved; their XDP programs stay and pass signaling)."""
    for mag in mags:
        lab.stop_daemon(mag)


def return_mags(lab, mags: Iterable[str] = MAGS) -> None:
    """Start them again: each takes back its saved binding update list."""
    for mag in mags:
        if lab.pid(mag) is None:
            lab.start_daemon(mag)
    for mag in mags:
        lab.wait_ready(mag)
