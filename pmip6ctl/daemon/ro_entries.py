"""RO entries in the data plane, shared by the MAG (initiator and responder)
and the CN agent.

A pair may be held by both roles at once (both MAGs saw the flow and both
started RO): the entry stays while either role holds it. The tunnel toward
the peer is shared by every pair with that peer, and its peer entry lets the
peer's tunnelled traffic in (PeerKind.RO)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..dataplane import Encap, PeerKind, Tunnel
from ..protocol.common import PMIP6_UDP_PORT
from ..protocol.ro import RoInstalled, RoPair

log = logging.getLogger("pmip6ctl.ro")


@dataclass
class InstalledPair:
    pair: RoPair
    peer: object
    tunnel_id: int
    expires: float
    mode: str
    transport: str = "ipv6"
    roles: set[str] = field(default_factory=set)
    installed: float = field(default_factory=time.time)


class RoEntries:
    def __init__(self, tables, tunnels, local_ipv6, local_ipv4=None):
        self.tables = tables
        self.tunnels = tunnels
        self.local_ipv6 = local_ipv6
        self.local_ipv4 = local_ipv4
        self.pairs: dict[RoPair, InstalledPair] = {}

    def tunnel_for(self, action: RoInstalled) -> Tunnel:
        """IPv6 between proxy CoAs; IPv6/IPv4-in-IPv4 between the IPv4 proxy
        CoAs when the exchange ran over IPv4, inside UDP toward the NAT's
        mapping when a NAT is on the path (draft §2.3.2, DESIGN §3)."""
        endpoint = action.peer_ipv4
        if endpoint is None or self.local_ipv4 is None:
            return Tunnel(Encap.IP6, self.local_ipv6, action.peer)
        if action.nat:
            return Tunnel(Encap.UDP4, self.local_ipv4, endpoint.address, PMIP6_UDP_PORT, endpoint.port)
        return Tunnel(Encap.IP4, self.local_ipv4, endpoint.address)

    def install(self, action: RoInstalled) -> InstalledPair:
        pair = action.pair
        user = f"ro {pair}"
        tunnel_id = self.tunnels.acquire(self.tunnel_for(action), user, PeerKind.RO)
        current = self.pairs.get(pair)
        if current is not None and current.tunnel_id != tunnel_id:
            self.tunnels.release(current.tunnel_id, user)
        entry = current or InstalledPair(pair, action.peer, tunnel_id, action.expires, action.mode)
        entry.peer, entry.tunnel_id, entry.mode = action.peer, tunnel_id, action.mode
        entry.transport = self.tunnels.tunnel(tunnel_id).encap.name.lower()
        entry.expires = max(action.expires, entry.expires) if current else action.expires
        entry.roles.add(action.role)
        self.pairs[pair] = entry
        # the XDP programs drop the entry themselves once its lifetime is over
        expires_ns = time.monotonic_ns() + int(max(entry.expires - time.time(), 0) * 1e9)
        # The responder installs before its BA reaches the initiator: it sends
        # nothing into the tunnel until the initiator's first packet arrives
        # there, else its packets would meet a peer that does not know it yet.
        self.tables.set_ro(pair.local, pair.remote, tunnel_id, expires_ns,
                           rx_only="initiator" not in entry.roles)
        log.info("RO %s via %s (%s, %s, %d s)", pair, action.peer, action.role, action.mode, action.lifetime)
        return entry

    def remove(self, pair: RoPair, role: str, reason: str) -> bool:
        """True when the entry is gone from the data plane."""
        entry = self.pairs.get(pair)
        if entry is None:
            return False
        entry.roles.discard(role)
        if entry.roles:
            return False
        del self.pairs[pair]
        self.tables.remove_ro(pair.local, pair.remote)
        self.tunnels.release(entry.tunnel_id, f"ro {pair}")
        log.info("RO %s removed (%s): back to the LMA path", pair, reason)
        return True

    def rows(self) -> list[dict]:
        now = time.time()
        return [{"local": str(e.pair.local), "remote": str(e.pair.remote), "peer": str(e.peer),
                 "tunnel": e.tunnel_id, "transport": e.transport, "mode": e.mode, "roles": sorted(e.roles),
                 "expires_in": round(e.expires - now, 1)} for e in self.pairs.values()]
