"""Local routes (RFC 6705) in the MAG's data plane: the entries of
bpf/local_route.h, one per direction of a pair whose MNs are both attached
here, written from the node core's LocalRouteInstalled / LocalRouteRemoved.
Bookkeeping of the map only: which pairs get one is the core's rule
(protocol/ro/initiator.py, phase LOCAL)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..dataplane.tables import deadline_ns
from ..protocol.ro import LocalRouteInstalled, RoPair

log = logging.getLogger("pmip6ctl.ro")


@dataclass
class LocalRoute:
    pair: RoPair
    link: str
    ifindex: int
    expires: float                      # wall clock
    installed: float


class LocalRoutes:
    def __init__(self, tables, ifindex_of):
        """ifindex_of(link name) -> its ifindex (netlink)."""
        self.tables = tables
        self.ifindex_of = ifindex_of
        self.routes: dict[RoPair, LocalRoute] = {}

    def install(self, action: LocalRouteInstalled) -> bool:
        """True when new (False: a refresh)."""
        ifindex = self.ifindex_of(action.link)
        # the XDP program itself ignores the entry once the LRA's lifetime is over
        expires_ns = deadline_ns(action.expires - time.time())
        self.tables.set_local_route(action.pair.local, action.pair.remote, ifindex, expires_ns)
        previous = self.routes.get(action.pair)
        self.routes[action.pair] = LocalRoute(action.pair, action.link, ifindex, action.expires,
                                              previous.installed if previous else time.time())
        if previous is None:
            log.info("local routing %s → %s onto %s (RFC 6705: both attached here, the LMA consented; %d s)",
                     action.pair.local, action.pair.remote, action.link, action.lifetime)
        return previous is None

    def remove(self, pair: RoPair, reason) -> bool:
        """True when there was an entry."""
        self.tables.remove_local_route(pair.local, pair.remote)
        route = self.routes.pop(pair, None)
        if route is not None:
            log.info("local routing %s → %s removed (%s): LMA path, or RO from the MN's new MAG",
                     pair.local, pair.remote, getattr(reason, "text", reason))
        return route is not None

    def forget_unknown(self) -> list[RoPair]:
        """After the store is restored: entries of pairs no restored attempt holds leave the map."""
        stale = [RoPair(local, remote) for local, remote, _, _ in self.tables.list_local_routes()]
        stale = [pair for pair in stale if pair not in self.routes]
        for pair in stale:
            self.tables.remove_local_route(pair.local, pair.remote)
        return stale

    def rows(self) -> list[dict]:
        now = time.time()
        return [{"local": str(r.pair.local), "remote": str(r.pair.remote), "peer": "local",
                 "transport": f"local ({r.link})", "mode": "local", "roles": ["local"],
                 "expires_in": round(r.expires - now, 1)} for r in self.routes.values()]
