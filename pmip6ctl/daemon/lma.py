"""The LMA daemon: LmaNode (protocol/lma.py) with its I/O. It applies what
the node returns: one tunnel per serving MAG, the MN's prefix and IPv4 HoA
pointed at it, an entry for each serving MAG's proxy CoA, messages."""

from __future__ import annotations

import dataclasses
import logging
import time

from ..dataplane import PeerKind, PuntEvent
from ..dataplane.tables import LMA_MN_HELD
from ..io.frames import ip_packet_of
from ..protocol import handover, lma
from ..protocol.binding_cache import BindingCacheEntry, LmaPolicy, MoveRefused, PbuRejected
from ..protocol.inter_lma import Relayed
from ..protocol.pools import AddressPool, PrefixPool
from ..protocol.vocabulary import status_label
from ..statefile import from_jsonable
from .base import Daemon, heartbeat_policies, host_route, node_keys, signaling_guard
from .held import HeldPackets
from .persist import Table

log = logging.getLogger("pmip6ctl.lma")


class LmaDaemon(Daemon):
    role = "lma"

    def setup(self) -> None:
        c = self.config
        self.node = lma.LmaNode(lma.LmaNodePolicy(
            binding_cache=LmaPolicy(
                address=c.addresses.ipv6,
                ipv4_address=c.addresses.ipv4,
                hnp_pool=PrefixPool(c.lma.hnp_pool, c.lma.hnp_length),
                ipv4_pool=AddressPool(c.lma.ipv4_pool) if c.lma.ipv4_pool else None,
                max_lifetime=c.lma.max_lifetime,
                timestamp_window=c.lma.timestamp_window,
                allowed_mags=set(c.lma.allowed_mags) if c.lma.allowed_mags else None,
                nat_keepalive=c.lma.nat_keepalive),
            ro_allowed=c.lma.ro_allowed,
            peers=node_keys(c).inter_lma, max_pending_queries=c.lma.max_pending_queries,
            heartbeat=heartbeat_policies(c)[0], max_cached_answers=c.lma.max_cached_answers,
            local_routing=local_routing_policy(c), hold=hold_policy(c.lma),
            hold_release_delay=c.lma.hold_release_delay),
            guard=signaling_guard(c, window=c.lma.timestamp_window))
        self.installed: dict[str, int] = {}      # mn_id -> tunnel id in use
        # during a restart only: what the pinned map held (prefix -> tunnel id),
        # so that restoring writes only what differs, and reconcile removes the rest
        self._present: dict | None = None
        self._rewritten = 0
        self._held_marks: list = []              # during a restart: held marks a crash left in the map
        m = self.metrics
        self.holding = HeldPackets(self, "downlink hold", m.downlink_held, m.downlink_released, m.downlink_dropped,
                                   quiet=(handover.DropReason.NOT_HELD,))
        self.open_signaling(c.addresses.ipv4)

    def reload_role(self, config) -> None:
        """lma.local_routing: the next query of a MAG (a new pair, or a local
        route's refresh) gets the new answer."""
        self.node.policy.local_routing = local_routing_policy(config)

    def attachments(self):
        return [("xdp_lma", ifname) for ifname in self.config.interfaces.transport]

    # --- what the node asks for -----------------------------------------------------------
    def apply_action(self, action) -> None:
        if isinstance(action, lma.InstallBinding):
            self.install(action)
        elif isinstance(action, lma.HoldBinding):
            self.hold(action)
        elif self.holding.apply(action):        # the downlink hold's (held.py)
            pass
        elif isinstance(action, lma.RemoveBinding):
            self.uninstall(action)
        elif isinstance(action, lma.RouteMagAddress):
            if action.tunnel is None:
                self.tables.remove_mn(host_route(action.address))
            else:
                self._set_mn(host_route(action.address), self.tunnels.id_of(action.tunnel))
        elif isinstance(action, lma.QueryAnswered):
            log.info("RO query from %s: %s", action.mag, action.outcome.value)
        elif isinstance(action, Relayed):
            log.info("inter-LMA RO query for %s: %s", action.cn, action.outcome.value)
            self.metrics.count_message("lri", "relay", action.outcome)
        elif isinstance(action, MoveRefused):
            self.metrics.count_message("pbu", "in", "mn_attached_elsewhere")
            log.warning("%s claimed by %s, but %s says it is still attached there: refused",
                        action.mn_id, action.proxy_coa, action.old_proxy_coa)
        elif isinstance(action, PbuRejected):
            log.info("rejected a PBU from %s for %s: %s", action.proxy_coa, action.mn_id, status_label(action.status))
        else:
            super().apply_action(action)

    def install(self, action: lma.InstallBinding) -> None:
        tunnel_id = self.tunnels.acquire(action.tunnel, action.mn_id, PeerKind.MAG)
        # held: the marks stay (the MN's uplink from this tunnel passes) until the release
        ifindex = LMA_MN_HELD if action.held else 0
        self._set_mn(action.hnp, tunnel_id, ifindex)
        if action.ipv4_hoa:
            self._set_mn(host_route(action.ipv4_hoa), tunnel_id, ifindex)
        previous = self.installed.get(action.mn_id)
        self.installed[action.mn_id] = tunnel_id
        if previous is not None and previous != tunnel_id:     # only once nothing points at it
            self.tunnels.release(previous, action.mn_id)
        if action.moved:
            log.info("%s moved to %s (handover)", action.mn_id, action.proxy_coa)
        elif previous is None and self._present is None:
            log.info("%s bound: %s via %s", action.mn_id, action.hnp, action.proxy_coa)

    def _set_mn(self, prefix, tunnel_id: int, ifindex: int = 0) -> None:
        if self._present is None or self._present.get(prefix) != tunnel_id or ifindex:
            self.tables.set_mn(prefix, tunnel_id, ifindex)
            self._rewritten += self._present is not None

    def hold(self, action: lma.HoldBinding) -> None:
        """The MN between MAGs: its addresses marked held (bpf/lma.c punts
        what arrives for them), its tunnel released; keep_tunnel (a pending
        move): kept, and the MN's uplink from it passes meanwhile."""
        tunnel_id = self.installed.get(action.mn_id, 0) if action.keep_tunnel else 0
        self.tables.set_mn(action.hnp, tunnel_id, LMA_MN_HELD)
        if action.ipv4_hoa:
            self.tables.set_mn(host_route(action.ipv4_hoa), tunnel_id, LMA_MN_HELD)
        if not action.keep_tunnel and (tunnel_id := self.installed.pop(action.mn_id, None)) is not None:
            self.tunnels.release(tunnel_id, action.mn_id)
        log.info("%s between MAGs: its downlink held (%s)", action.mn_id, action.hnp)

    def on_dataplane_event(self, event) -> None:
        if not isinstance(event, PuntEvent) or event.kind != "held":
            return
        packet = ip_packet_of(event.frame)
        if packet is None:
            self.holding.drop(handover.DropReason.MALFORMED.value)
            return
        self.apply(self.node.downlink_held(packet, time.time()))

    def hold_settings_command(self, args: dict) -> dict:
        """Turn the downlink hold on or off on a running LMA (bench/handover.py's
        baseline); limits as in the config. Returns the settings in force."""
        if args.get("enabled") is not None:
            self.node.hold.policy = dataclasses.replace(self.node.hold.policy, enabled=bool(args["enabled"]))
        policy = self.node.hold.policy
        return {**policy.settings(), "release_delay": self.node.policy.hold_release_delay,
                "holding": self.node.hold.count, "between_mags": sorted(self.node.held), **self.holding.counts}

    def uninstall(self, action: lma.RemoveBinding) -> None:
        """Also the end of a hold whose entry was deleted (no tunnel then)."""
        self.tables.remove_mn(action.hnp)
        if action.ipv4_hoa:
            self.tables.remove_mn(host_route(action.ipv4_hoa))
        tunnel_id = self.installed.pop(action.mn_id, None)
        if tunnel_id is not None:
            self.tunnels.release(tunnel_id, action.mn_id)
        log.info("%s unbound (%s)", action.mn_id, action.hnp)

    # --- state --------------------------------------------------------------------------
    def persisted_tables(self):
        cache = self.node.cache
        return [Table("binding", ("bindings",), cache.changed, cache.bindings.get)]

    def restore(self, state: dict) -> None:
        # a mark held over a restart is written again (the hold's packets are gone)
        self._present = {prefix: tunnel_id for prefix, (tunnel_id, ifindex) in self.tables.list_mns(True).items()
                         if ifindex != LMA_MN_HELD}
        self._held_marks = [p for p, (_, ifindex) in self.tables.list_mns(True).items() if ifindex == LMA_MN_HELD]
        entries = [from_jsonable(BindingCacheEntry, e) for e in state.get("bindings", [])]
        actions, refused = self.node.restore(entries, time.time())
        for entry in refused:
            log.warning("binding of %s not restored: %s or its IPv4 home address is not free in today's pools",
                        entry.mn_id, entry.hnp)
        for action in actions:
            self._apply_one(action)

    def reconcile(self) -> None:
        """The pinned map's entries that no restored binding (or serving
        MAG's address) explains leave it: a binding made, but not committed,
        before a crash, or ended while no daemon ran. Bindings the map
        lacked were written by restore."""
        present, self._present = self._present or {}, None
        present = dict(present) | dict.fromkeys(self._held_marks, 0)
        wanted = {e.hnp for e in self.node.bindings.values()}
        wanted |= {host_route(e.ipv4_hoa) for e in self.node.bindings.values() if e.ipv4_hoa}
        wanted |= {host_route(address) for address in self.node.mag_routes}
        stale = [prefix for prefix in present if prefix not in wanted]
        for prefix in stale:
            self.tables.remove_mn(prefix)
        if stale or self._rewritten:
            log.warning("reconciled the data plane with the store: %d entries removed (no binding), "
                        "%d written (missing or changed)", len(stale), self._rewritten)

    # --- operator view ----------------------------------------------------------------------
    def binding_rows(self) -> list[dict]:
        now = time.time()
        rows = []
        for e in sorted(self.node.bindings.values(), key=lambda e: e.mn_id):
            transport = "ipv6" if e.mag_ipv4 is None else ("ipv4/udp (nat)" if e.nat_detected else "ipv4")
            rows.append({"mn_id": e.mn_id, "state": "bound", "hnp": str(e.hnp),
                         "ipv4_hoa": str(e.ipv4_hoa) if e.ipv4_hoa else None, "mag": str(e.proxy_coa),
                         "transport": transport, "lifetime": e.lifetime,
                         "expires_in": round(e.expires - now, 1)})
        return rows

    def control_handlers(self):
        return {"bindings": lambda args: self.binding_rows(),
                "hold_settings": self.command(self.hold_settings_command)}

    def gauges(self):
        yield ("pmip6_bindings", "Bindings held, by kind", {"kind": "pmip"}, len(self.node.bindings))
        settings = self.node.hold.policy.settings() | {"release_delay": self.node.policy.hold_release_delay}
        for setting, value in settings.items():
            yield ("pmip6_downlink_hold_setting", "The LMA's downlink hold settings ([lma] hold_*)",
                   {"setting": setting}, value)
        yield ("pmip6_downlink_hold_mobile_nodes", "MNs between two MAGs whose downlink the LMA holds",
               {}, len(self.node.held))


def hold_policy(section) -> handover.BufferPolicy:
    return handover.BufferPolicy(enabled=section.hold_downlink, per_mn=section.hold_packets,
                                 total=section.hold_total, max_age=section.hold_seconds)


def local_routing_policy(config):
    """[lma] local_routing as the node's rule (mn, cn) -> may the MAG route locally."""
    allowed = config.lma.local_routing
    return lambda mn, cn: allowed
