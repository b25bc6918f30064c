"""The LMA daemon: the binding cache core, plus the data plane it drives —
one tunnel per serving MAG, the MN's prefix and IPv4 HoA pointed at it."""

from __future__ import annotations

import logging
import time

from .. import wire
from ..dataplane import Encap, PeerKind, Tunnel
from ..protocol import lma as core
from ..protocol.common import PMIP6_UDP_PORT, earliest
from ..protocol.inter_lma import InterLmaQuery, Relayed
from ..protocol.ro import PeerKey
from ..protocol.ro_query import answer_lri
from ..protocol.pools import AddressPool, PrefixPool
from ..statefile import from_jsonable
from .base import Daemon, status_label

log = logging.getLogger("pmip6ctl.lma")


class LmaDaemon(Daemon):
    role = "lma"

    def setup(self) -> None:
        c = self.config
        self.core = core.LocalMobilityAnchor(core.LmaPolicy(
            address=c.addresses.ipv6,
            ipv4_address=c.addresses.ipv4,
            hnp_pool=PrefixPool(c.lma.hnp_pool, c.lma.hnp_length),
            ipv4_pool=AddressPool(c.lma.ipv4_pool) if c.lma.ipv4_pool else None,
            max_lifetime=c.lma.max_lifetime,
            timestamp_window=c.lma.timestamp_window,
            allowed_mags=set(c.lma.allowed_mags) if c.lma.allowed_mags else None,
            nat_keepalive=c.lma.nat_keepalive,
        ))
        self.inter_lma = InterLmaQuery(c.addresses.ipv6, {p.address: PeerKey(p.spi, p.key) for p in c.peers})
        self.installed: dict[str, int] = {}      # mn_id -> tunnel id in use
        self.mag_entries: set = set()            # MAG proxy CoAs with an entry of their own
        self.open_signaling(c.addresses.ipv4)

    def attachments(self):
        return [("xdp_lma", ifname) for ifname in self.config.interfaces.transport]

    # --- the core ---------------------------------------------------------------
    def receive(self, msg, arrival, now):
        if isinstance(msg, wire.LocalizedRoutingInitiation):
            return self.on_ro_query(msg, arrival, now)
        if isinstance(msg, wire.LocalizedRoutingAck):
            return self.inter_lma.on_peer_lra(msg, arrival, now)
        return self.core.receive(msg, arrival, now)

    def on_ro_query(self, lri, arrival, now) -> list:
        """A MAG's RO query (DESIGN §2), or a peer LMA's (scenario 2)."""
        if arrival.src in self.inter_lma.peers:
            return self.inter_lma.answer_peer(lri, arrival, self.core.binding_for_address)
        send, outcome = answer_lri(lri, arrival, self.config.addresses.ipv6, self.core.binding_for_address,
                                   self.config.lma.ro_allowed)
        if outcome == "cn_not_anchored":
            relayed = self.inter_lma.ask_peers(lri, arrival, now)
            if relayed is not None:
                log.info("RO query from %s for a CN anchored elsewhere: asking %d peer LMA(s)",
                         arrival.src, len(self.inter_lma.peers))
                return relayed
        log.info("RO query from %s: %s", arrival.src, outcome)
        return [send]

    def on_timer(self, now):
        return self.core.on_timer(now) + self.inter_lma.on_timer(now)

    def next_deadline(self):
        return earliest(self.core.next_deadline(), self.inter_lma.next_deadline())

    def apply_action(self, action) -> None:
        if isinstance(action, core.BindingUpdated):
            self.install(action.entry)
            self.reconcile_mag_addresses()
            if action.previous_proxy_coa is not None:          # a handover: peers' answers are stale
                self.apply(self.inter_lma.binding_changed(action.entry.hnp, action.entry.ipv4_hoa))
        elif isinstance(action, core.BindingRemoved):
            self.uninstall(action.entry)
            self.reconcile_mag_addresses()
            self.apply(self.inter_lma.binding_changed(action.entry.hnp, action.entry.ipv4_hoa))
        elif isinstance(action, Relayed):
            log.info("inter-LMA RO query for %s: %s", action.cn, action.outcome)
            self.metrics.count_message("lri", "relay", action.outcome)
        elif isinstance(action, core.PbuRejected):
            log.info("rejected a PBU from %s for %s: %s", action.proxy_coa, action.mn_id, status_label(action.status))
        else:
            super().apply_action(action)

    # --- data plane -------------------------------------------------------------------
    def mag_tunnel(self, entry: core.BindingCacheEntry) -> Tunnel:
        c = self.config.addresses
        if entry.mag_ipv4 is None:
            return Tunnel(Encap.IP6, c.ipv6, entry.proxy_coa)
        if entry.nat_detected:
            return Tunnel(Encap.UDP4, c.ipv4, entry.mag_ipv4.address, PMIP6_UDP_PORT, entry.mag_ipv4.port)
        return Tunnel(Encap.IP4, c.ipv4, entry.ipv4_proxy_coa or entry.mag_ipv4.address)

    def install(self, entry: core.BindingCacheEntry) -> None:
        tunnel_id = self.tunnels.acquire(self.mag_tunnel(entry), entry.mn_id, PeerKind.MAG)
        self.tables.set_mn(entry.hnp, tunnel_id)
        if entry.ipv4_hoa:
            self.tables.set_mn(f"{entry.ipv4_hoa}/32", tunnel_id)
        previous = self.installed.get(entry.mn_id)
        self.installed[entry.mn_id] = tunnel_id
        if previous is not None and previous != tunnel_id:
            self.tunnels.release(previous, entry.mn_id)
            log.info("%s moved to %s (handover)", entry.mn_id, entry.proxy_coa)
        else:
            log.info("%s bound: %s via %s", entry.mn_id, entry.hnp, entry.proxy_coa)

    def uninstall(self, entry: core.BindingCacheEntry) -> None:
        self.tables.remove_mn(entry.hnp)
        if entry.ipv4_hoa:
            self.tables.remove_mn(f"{entry.ipv4_hoa}/32")
        tunnel_id = self.installed.pop(entry.mn_id, None)
        if tunnel_id is not None:
            self.tunnels.release(tunnel_id, entry.mn_id)
        log.info("%s unbound (%s)", entry.mn_id, entry.hnp)

    def reconcile_mag_addresses(self) -> None:
        """Each serving MAG's own IPv6 proxy CoA, as an entry toward its
        tunnel. Over IPv4 transport the CoTI (from a MAG's proxy CoA) and the
        CoT (to it) travel the LMA tunnels (draft §2.1.1.2): the inner-source
        check must know them, and the CoT must find its way back."""
        wanted = {e.proxy_coa: self.installed[e.mn_id] for e in self.core.bindings.values()
                  if e.mn_id in self.installed}
        for address in self.mag_entries - set(wanted):
            self.tables.remove_mn(f"{address}/128")
        for address, tunnel_id in wanted.items():
            self.tables.set_mn(f"{address}/128", tunnel_id)
        self.mag_entries = set(wanted)

    # --- state --------------------------------------------------------------------------
    def snapshot(self) -> dict:
        return {"bindings": list(self.core.bindings.values())}

    def restore(self, state: dict) -> None:
        entries = [from_jsonable(core.BindingCacheEntry, e) for e in state.get("bindings", [])]
        entries = [e for e in entries if e.expires > time.time()]
        self.core.restore(entries)
        for entry in entries:
            self.install(entry)
        self.reconcile_mag_addresses()

    # --- operator view ----------------------------------------------------------------------
    def binding_rows(self) -> list[dict]:
        now = time.time()
        rows = []
        for e in sorted(self.core.bindings.values(), key=lambda e: e.mn_id):
            transport = "ipv6" if e.mag_ipv4 is None else ("ipv4/udp (nat)" if e.nat_detected else "ipv4")
            rows.append({"mn_id": e.mn_id, "state": "bound", "hnp": str(e.hnp),
                         "ipv4_hoa": str(e.ipv4_hoa) if e.ipv4_hoa else None, "mag": str(e.proxy_coa),
                         "transport": transport, "lifetime": e.lifetime,
                         "expires_in": round(e.expires - now, 1)})
        return rows

    def control_handlers(self):
        return {"bindings": lambda args: self.binding_rows()}

    def gauges(self):
        yield ("pmip6_bindings", "Bindings held, by kind", {"kind": "pmip"}, len(self.core.bindings))
