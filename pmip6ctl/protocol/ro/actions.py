"""What the RO cores return, and the pair they talk about.

Commands: RoInstalled and RoRemoved (the data plane's RO entry for a pair),
besides the Send and SendHomePath of pmip6ctl.transport. Notifications:
RoFailed (an initiator's attempt gave up) and RoRejected (a responder
refused a message); they change nothing and are counted by reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address

from ... import security, wire
from ...actions import Command, Notification
from ...security import PeerKey
from ...transport import UdpEndpoint
from ..vocabulary import FailReason, Mode, RejectReason, Role, StopReason

Address = IPv6Address | IPv4Address


def mapped(address: Address) -> IPv6Address:
    """IPv4 addresses as IPv4-mapped IPv6, where an IPv6 address field must hold them."""
    return IPv6Address(f"::ffff:{address}") if isinstance(address, IPv4Address) else address


def unmapped(address: IPv6Address) -> Address:
    return address.ipv4_mapped or address


def no_binding_error(mn_address: Address) -> wire.BindingError:
    """RFC 6275 §9.3.3: no binding for this home address (status 1)."""
    return wire.BindingError(status=wire.BindingErrorStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS_DESTINATION_OPTION,
                             home_address=mapped(mn_address))


@dataclass(frozen=True)
class BindingErrorKey:
    """What signs and checks a pair's Binding Errors (docs/security.md): the
    quick-mode key shared with the peer, else the Kbm of the BU the pair
    runs on, which covers (care-of address = the initiator, correspondent =
    the responder) as the BA does (RFC 6275 §9.5.4). Neither: unsigned."""
    quick: PeerKey | None
    kbm: bytes | None
    careof: IPv6Address
    correspondent: IPv6Address

    def sign(self, be: wire.BindingError, src: IPv6Address, dst: IPv6Address) -> wire.BindingError:
        if self.quick is not None:
            return self.quick.sign(be, src, dst)
        if self.kbm is not None:
            return security.sign_binding_update(be, self.kbm, self.careof, self.correspondent)
        return be

    def verify(self, be: wire.BindingError, src: IPv6Address, dst: IPv6Address) -> bool:
        return self.verified(be, src, dst) is not None

    def verified(self, msg: wire.Message, src: IPv6Address, dst: IPv6Address) -> BindingErrorKey | None:
        """The key that signed msg, to answer it with: mid rotation of a
        quick-mode key, the one the peer used; None if msg checks out under
        neither."""
        if self.quick is not None:
            used = self.quick.verifying_key(msg, src, dst)
            return None if used is None else replace(self, quick=used)
        if self.kbm is not None and security.verify_binding_authorization(msg, self.kbm, self.careof,
                                                                          self.correspondent):
            return self
        return None


@dataclass(frozen=True)
class RoPair:
    """A route-optimized pair seen from one node: local is the address served
    here (the MN at MAG1, the CN at MAG2 or the CN agent), remote the other."""
    local: Address
    remote: Address

    def __str__(self) -> str:
        return f"{self.local} ⇄ {self.remote}"


@dataclass(frozen=True)
class RoInstalled(Command):
    """Install (or refresh) the RO entry: pair → tunnel to peer."""
    pair: RoPair
    peer: IPv6Address                     # MAG2's (MAG1's) proxy CoA, or the CN's address
    peer_ipv4: UdpEndpoint | None         # set when the exchange ran over IPv4
    expires: float
    lifetime: int
    mode: Mode
    role: Role
    setup_seconds: float | None = None    # initiator: from the trigger to now (first install only)
    nat: bool = False                     # a NAT sits on the IPv4 path: tunnel in UDP to peer_ipv4


@dataclass(frozen=True)
class RoSendOnlyOnceHeard(Command):
    """An unsigned Binding Error named a pair we answer for: the peer may
    have lost its state (it restarted), or someone forged the BE. Our side
    sends through the LMA path until the peer's next tunnelled packet shows
    it still holds the binding (RO_RX_ONLY, as at install); the binding and
    the entry stay. Traffic arrives either way (docs/security.md)."""
    pair: RoPair
    peer: IPv6Address


@dataclass(frozen=True)
class RoRemoved(Command):
    """Remove the pair's RO entry for this role: back to the LMA path."""
    pair: RoPair
    peer: IPv6Address
    role: Role
    reason: FailReason | StopReason
    detail: str = ""


@dataclass(frozen=True)
class LocalRouteInstalled(Command):
    """Install (or refresh) local routing for pair (RFC 6705): both MNs are
    attached to this MAG and the LMA consented, so local → remote goes from
    the local MN's access link straight onto the remote MN's (`link`, which
    MagNode fills in from its binding update list), no tunnel. One direction:
    the other is its own attempt (docs/protocol.md §9)."""
    pair: RoPair
    expires: float
    lifetime: int
    link: str = ""
    setup_seconds: float | None = None    # from the trigger to now (first install only)


@dataclass(frozen=True)
class LocalRouteRemoved(Command):
    """Remove pair's local route: back to the LMA path (or RO from a new MAG)."""
    pair: RoPair
    reason: FailReason | StopReason
    detail: str = ""


@dataclass(frozen=True)
class RoFailed(Notification):
    """An attempt gave up; the flow stays on the LMA path until retry_at."""
    pair: RoPair
    reason: FailReason
    retry_at: float
    mode: Mode = Mode.RR
    detail: str = ""                      # the status or phase behind the reason

    @property
    def text(self) -> str:
        return f"{self.reason.text}: {self.detail}" if self.detail else self.reason.text


@dataclass(frozen=True)
class RoRejected(Notification):
    """A message the responder refused (counted by reason; nothing installed)."""
    pair: RoPair | None
    peer: IPv6Address
    reason: RejectReason
    detail: str = ""
