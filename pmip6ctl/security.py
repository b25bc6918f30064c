"""Return routability crypto (RFC 6275 §5.2) and quick-mode authentication (RFC 4285).

Sans-I/O: pure functions over bytes and addresses, plus NonceTable, which is
fed the current time instead of reading a clock.

Return routability, RFC 6275 §5.2.5 and §6.2.7 ("|" is concatenation):

    home keygen token    = First(64, HMAC_SHA1(Kcn, home address | nonce | 0))
    care-of keygen token = First(64, HMAC_SHA1(Kcn, care-of address | nonce | 1))
    Kbm                  = SHA1(home keygen token | care-of keygen token)
                           SHA1(home keygen token)          for deregistration
    Authenticator        = First(96, HMAC_SHA1(Kbm, care-of address |
                                                    correspondent | MH Data))

Quick mode (draft §2.2) and the signaling between MAGs and LMAs
(docs/protocol.md §6): a Mobility Message Authentication option (RFC 4285
§5, subtype 255, unassigned) keyed from the peer authentication database,
with HMAC-SHA256 and the full 32-octet output:

    Authenticator = HMAC_SHA256(key, src | dst | MH Data up to and including the SPI)

where src and dst are the IPv6 source and destination of the signaling packet
(RFC 4285 names the care-of and home agent addresses; between proxies those
are the packet's two addresses).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv6Address

from .wire.messages import Message, auth_data, auth_span
from .wire.options import BindingAuthorizationData, MobilityMessageAuthentication

# RFC 6275 §12 protocol constants, in seconds.
MAX_NONCE_LIFETIME = 240
MAX_TOKEN_LIFETIME = 210
MAX_RR_BINDING_LIFETIME = 420

KCN_SIZE = 20  # RFC 6275 §5.2.3: Kcn is 20 octets
NONCE_SIZE = 8
TOKEN_SIZE = 8
AUTHENTICATOR_SIZE = 12

# The subtype of our RFC 4285 option (type 9): HMAC-SHA256, all 32 octets.
# IANA assigns 1 (MN-HA) and 2 (MN-AAA), both with HMAC-SHA1-96 (RFC 4285
# §5.5); reusing either for another algorithm would have a receiver that
# follows RFC 4285 misread it. 255 is unassigned: docs/protocol.md §6.
MMA_SUBTYPE = 255
MMA_AUTHENTICATOR_SIZE = 32


def new_peer_key() -> bytes:
    """A key for a [[peers]] pair (HMAC-SHA256: 32 octets)."""
    return os.urandom(32)


def new_kcn() -> bytes:
    """A fresh node key for a correspondent (RFC 6275 §5.2.3)."""
    return os.urandom(KCN_SIZE)


def _keygen_token(kcn: bytes, address: IPv6Address | IPv4Address, nonce: bytes, which: int) -> bytes:
    digest = hmac.new(kcn, address.packed + nonce + bytes((which,)), hashlib.sha1).digest()
    return digest[:TOKEN_SIZE]


def home_keygen_token(kcn: bytes, home_address: IPv6Address | IPv4Address, nonce: bytes) -> bytes:
    """RFC 6275 §5.2.5: the final "0" is a single zero octet."""
    return _keygen_token(kcn, home_address, nonce, 0)


def careof_keygen_token(kcn: bytes, careof_address: IPv6Address | IPv4Address, nonce: bytes) -> bytes:
    """RFC 6275 §5.2.5: the final "1" is a single octet of value 1."""
    return _keygen_token(kcn, careof_address, nonce, 1)


def binding_management_key(home_token: bytes, careof_token: bytes | None = None) -> bytes:
    """Kbm (RFC 6275 §5.2.5); without a care-of token, the deregistration form."""
    return hashlib.sha1(home_token + (careof_token or b"")).digest()


def binding_authenticator(kbm: bytes, careof_address: IPv6Address, correspondent_address: IPv6Address,
                          mh_data: bytes) -> bytes:
    """RFC 6275 §6.2.7."""
    mobility_data = careof_address.packed + correspondent_address.packed + mh_data
    return hmac.new(kbm, mobility_data, hashlib.sha1).digest()[:AUTHENTICATOR_SIZE]


def authorized_careof(careof_address: IPv6Address, home_address: IPv6Address | IPv4Address,
                      lifetime: int) -> IPv6Address:
    """The address a Binding Authorization Data covers in the care-of slot
    (RFC 6275 §6.2.7, §5.2.6): the care-of address being registered, or the
    home address when the BU, and the BA that answers it, delete the binding
    (lifetime 0). An IPv4 home address (an RFC 5844 MN; RFC 6275 has no form
    for one) keeps the care-of address: docs/protocol.md §6."""
    if lifetime == 0 and isinstance(home_address, IPv6Address):
        return home_address
    return careof_address


def _with_last_option(msg: Message, option, cls) -> Message:
    """A copy of msg whose options end with ``option``, other ``cls`` options removed."""
    signed = copy.copy(msg)       # (not dataclasses.replace: no __init__ run again, issue 14)
    signed.options = [o for o in msg.options if not isinstance(o, cls)] + [option]
    return signed


def sign_binding_update(msg: Message, kbm: bytes, careof_address: IPv6Address,
                        correspondent_address: IPv6Address) -> Message:
    """A copy of ``msg`` ending with its Binding Authorization Data option.

    Works for a BU and for the correspondent's BA (RFC 6275 §9.5.4), both
    keyed by Kbm. ``msg`` itself is not changed.
    """
    signed = _with_last_option(msg, BindingAuthorizationData(bytes(AUTHENTICATOR_SIZE)),
                               BindingAuthorizationData)
    wire, start, end = auth_span(signed)
    authenticator = binding_authenticator(kbm, careof_address, correspondent_address, wire[:start] + wire[end:])
    return _filled_in(signed, BindingAuthorizationData(authenticator), wire, start, end)


def verify_binding_authorization(msg: Message, kbm: bytes, careof_address: IPv6Address,
                                 correspondent_address: IPv6Address) -> bool:
    """True when the last option is a Binding Authorization Data that checks out."""
    if not msg.options or not isinstance(msg.options[-1], BindingAuthorizationData):
        return False
    expected = binding_authenticator(kbm, careof_address, correspondent_address, auth_data(msg))
    return hmac.compare_digest(expected, msg.options[-1].authenticator)


class NonceTable:
    """A correspondent's nonces (RFC 6275 §5.2.2, §5.2.7), sans-I/O.

    ``current`` hands out the newest (index, nonce) and starts a new one every
    ``rotation`` seconds; ``lookup`` finds a nonce by index for as long as it
    is younger than MAX_NONCE_LIFETIME. Time is whatever the caller passes
    as ``now`` (seconds, any monotonic origin).
    """

    def __init__(self, rotation: float = 30.0, random: Callable[[int], bytes] = os.urandom):
        self.rotation = rotation
        self._random = random
        self._next_index = int.from_bytes(random(2), "big")
        self._nonces: dict[int, tuple[float, bytes]] = {}  # index -> (created, nonce)
        self._newest: int | None = None

    def current(self, now: float) -> tuple[int, bytes]:
        newest = self._nonces.get(self._newest) if self._newest is not None else None
        if newest is None or now - newest[0] >= self.rotation:
            self._expire(now)
            index = self._next_index
            self._next_index = (index + 1) & 0xFFFF
            self._nonces[index] = (now, self._random(NONCE_SIZE))
            self._newest = index
        return self._newest, self._nonces[self._newest][1]

    def lookup(self, index: int, now: float) -> bytes | None:
        entry = self._nonces.get(index)
        if entry is None or now - entry[0] > MAX_NONCE_LIFETIME:
            return None
        return entry[1]

    def _expire(self, now: float) -> None:
        for index in [i for i, (created, _) in self._nonces.items() if now - created > MAX_NONCE_LIFETIME]:
            del self._nonces[index]


def mma_authenticator(key: bytes, mobility_data: bytes) -> bytes:
    """Quick mode: HMAC-SHA256, all 32 octets."""
    return hmac.new(key, mobility_data, hashlib.sha256).digest()


def _mma_mobility_data(msg: Message, src: IPv6Address, dst: IPv6Address) -> bytes:
    return src.packed + dst.packed + auth_data(msg)


def sign_mma(msg: Message, spi: int, key: bytes, src: IPv6Address, dst: IPv6Address) -> Message:
    """A copy of ``msg`` ending with its Mobility Message Authentication option."""
    placeholder = MobilityMessageAuthentication(MMA_SUBTYPE, spi, bytes(MMA_AUTHENTICATOR_SIZE))
    signed = _with_last_option(msg, placeholder, MobilityMessageAuthentication)
    wire, start, end = auth_span(signed)
    authenticator = mma_authenticator(key, src.packed + dst.packed + wire[:start])
    return _filled_in(signed, MobilityMessageAuthentication(MMA_SUBTYPE, spi, authenticator), wire, start, end)


def _filled_in(signed: Message, option, wire: bytes, start: int, end: int) -> Message:
    """signed with its authenticating option in place, laid out once: the
    octets around the authenticator do not change, so the copy keeps them
    for encode() (wire.Message.as_sent)."""
    signed.options[-1] = option
    signed._keep_wire(wire[:start] + option.authenticator + wire[end:], ours=True)
    return signed


def verify_mma(msg: Message, keys: Mapping[int, bytes], src: IPv6Address, dst: IPv6Address) -> bool:
    """True when the last option is a quick-mode MMA option whose SPI we know and whose
    authenticator checks out."""
    if not msg.options or not isinstance(msg.options[-1], MobilityMessageAuthentication):
        return False
    option = msg.options[-1]
    key = keys.get(option.spi)
    if option.subtype != MMA_SUBTYPE or key is None:
        return False
    expected = mma_authenticator(key, _mma_mobility_data(msg, src, dst))
    return hmac.compare_digest(expected, option.authenticator)


@dataclasses.dataclass(frozen=True)
class PeerKey:
    """A peer authentication database entry (draft §2.2, RFC 4285): the SPI
    and key one peer shares with us."""
    spi: int
    key: bytes = dataclasses.field(repr=False)
    # Quick mode: the MN prefixes this key may bind (the peer's own MNs); empty: any.
    prefixes: tuple = ()

    def covers(self, address) -> bool:
        return not self.prefixes or any(address.version == p.version and address in p for p in self.prefixes)

    # Key rotation (docs/security.md): after a reload changed the key, the one it
    # replaced, still believed until the peer is seen using the new one or the
    # grace period ends. Never used to sign a request.
    previous: PeerKey | None = dataclasses.field(default=None, repr=False, compare=False)

    def sign(self, msg: Message, src: IPv6Address, dst: IPv6Address) -> Message:
        return sign_mma(msg, self.spi, self.key, src, dst)

    def verify(self, msg: Message, src: IPv6Address, dst: IPv6Address) -> bool:
        return self.verifying_key(msg, src, dst) is not None

    def verifying_key(self, msg: Message, src: IPv6Address, dst: IPv6Address) -> PeerKey | None:
        """The key msg was signed with: this one, or the one it replaced; None if neither."""
        for key in (self, self.previous):
            if key is not None and verify_mma(msg, {key.spi: key.key}, src, dst):
                return key
        return None

    def answering(self, request: Message, src: IPv6Address, dst: IPv6Address) -> PeerKey:
        """The key to sign the answer to request with: the one the peer used
        (a peer that has not reloaded yet must still believe our answer)."""
        return self.verifying_key(request, src, dst) or self

    @property
    def spis(self) -> tuple[int, ...]:
        return (self.spi,) if self.previous is None else (self.spi, self.previous.spi)

    def same_secret(self, other: PeerKey) -> bool:
        return self.spi == other.spi and hmac.compare_digest(self.key, other.key)

    def replaced_by(self, new: PeerKey) -> PeerKey:
        """new, remembering this key as previous if the secret changed."""
        if self.same_secret(new):
            return dataclasses.replace(new, previous=self.previous)
        return dataclasses.replace(new, previous=dataclasses.replace(self, previous=None))

    def retired(self) -> PeerKey:
        return self if self.previous is None else dataclasses.replace(self, previous=None)
