"""The MAG daemon: MagNode (protocol/mag.py) with its I/O. It hears Router
Solicitations and carrier changes on the access links, punted mobility
messages and flow triggers from the data plane, signaling from the
sockets, and applies what the node returns: the MN's routes and map
entries, Router Advertisements, RO entries, messages."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time

from ..dataplane import PeerKind, PuntEvent
from ..io.control import CommandError
from ..io.frames import ip_packet_of, punted_arrival
from ..io.ndp import NdpSocket, build_router_advertisement
from ..io.netlink import LinkEvent
from ..protocol import handover, mag, ro
from ..protocol.binding_update_list import (BindingState, BindingUpdateListEntry, IPv4ServiceDeclined,
                                            RegistrationRejected)
from ..protocol.vocabulary import Role, StopReason, status_label
from ..statefile import from_jsonable
from ..transport import Encap, mac_text
from .local_routes import LocalRoutes
from .base import Daemon, heartbeat_policies, host_route, node_keys, pair_from, signaling_guard
from .held import HeldPackets
from .persist import Table
from .ro_entries import RoEntries, ro_tables, saved_ro

log = logging.getLogger("pmip6ctl.mag")


class MagDaemon(Daemon):
    role = "mag"

    def setup(self) -> None:
        c = self.config
        t = c.timers
        # what an MN's route must never cover: our own networks and our peers
        infrastructure = [*self.netlink.local_networks(),
                          *(ipaddress.ip_network(a) for p in c.peers for a in (p.address, p.ipv4) if a)]
        self.node = mag.MagNode(mag.MagNodePolicy.build(
            name=self.node_name, proxy_coa=c.addresses.ipv6, ipv4_proxy_coa=c.addresses.ipv4, lma=c.mag.lma,
            lma_ipv4=c.mag.lma_ipv4, ipv4_transport=c.mag.transport == "ipv4", lifetime=c.mag.lifetime,
            refresh_fraction=t.refresh_fraction, initial_bindack_timeout=t.initial_bindack_timeout,
            max_bindack_timeout=t.max_bindack_timeout, request_ipv4=c.mag.request_ipv4, ro_enabled=c.ro.enabled,
            ro_mode=c.ro.mode, ro_lifetime=c.ro.lifetime, ro_retry_interval=c.ro.retry_interval,
            ro_max_attempts=c.ro.max_attempts, ro_max_attempts_per_mn=c.ro.max_attempts_per_mn,
            ro_max_remembered_failures=c.ro.max_remembered_failures, ro_max_replay_entries=c.ro.max_replay_entries,
            peer_keys=node_keys(c).quick_mode,
            nat_keepalive=c.ro.nat_keepalive, mn_ids=c.mag.mn_ids, ro_allowed=c.ro.allowed,
            reserved={p.address for p in c.peers_of("lma")}, hnp_lengths=c.mag.hnp_lengths,
            infrastructure=infrastructure, retry_after_rejection=c.mag.retry_after_rejection,
            max_ro_pairs=c.dataplane.max_ro_entries,
            max_ro_peers=max(c.dataplane.max_tunnels - 2, 1), heartbeat=heartbeat_policies(c)[0],
            ro_heartbeat=heartbeat_policies(c)[1], local_routing=c.ro.local_routing,
            buffer=buffer_policy(c.mag)), guard=signaling_guard(c))
        self.installed: dict[str, int] = {}      # mn_id -> tunnel id toward the LMA
        m = self.metrics
        self.buffered = HeldPackets(self, "handover buffer", m.handover_held, m.handover_released,
                                    m.handover_dropped, quiet=(handover.DropReason.NOT_ATTACHING,
                                                               handover.DropReason.DISABLED))
        self.open_signaling(c.addresses.ipv4)
        self.ro_entries = RoEntries(self.tables, self.tunnels, c.addresses.ipv6, c.addresses.ipv4,
                                    later=self._loop.call_later)
        self.ro_entries.forget_lapsed()
        self.local_routes = LocalRoutes(self.tables, self.netlink.ifindex)
        self.ndp = NdpSocket()
        self._loop.add_reader(self.ndp.fileno(), self._on_router_solicitation)
        self.access = {self.netlink.ifindex(name): name for name in c.interfaces.access}
        # the RA's source link-layer address; looked up once, not on the RA's critical path
        if c.mag.access_mac:                     # the domain's one access link-layer address (RFC 5213 §6.9.3)
            for name in c.interfaces.access:
                self.netlink.set_mac(name, c.mag.access_mac)
        self.access_macs = {name: self.netlink.mac(name) for name in c.interfaces.access}
        for name in c.interfaces.access:         # whose carrier is up: an MN there is still attached
            (self.node.link_up if self.netlink.carrier(name) else self.node.link_down)(name, time.time())
        # RO may use IPv6 outer headers even over IPv4 transport: leave room for the largest
        self.ra_mtu = c.mag.advertise_mtu or min(self.netlink.mtu(n) for n in c.interfaces.access) - Encap.IP6.outer_len

    def reload_role(self, config) -> None:
        """New MNs in [mag.mn_ids] may attach from now on; an MN taken off the
        table stays registered until it detaches (or `pmip6ctl mn detach`)."""
        self.node.policy.mn_ids = mag.identities(config.mag.mn_ids)
        self.set_buffering(buffer_policy(config.mag))

    def set_buffering(self, policy: handover.BufferPolicy) -> None:
        """The handover buffer's limits, and whether XDP hands it unknown
        sources' frames at all (off: the notice of issue 13 only)."""
        self.node.buffer.policy = policy
        config = self.tables.get_config()
        if config.get("handover") != policy.enabled:
            self.tables.set_config(**(config | {"handover": policy.enabled}))

    def attachments(self):
        c = self.config.interfaces
        return [("xdp_mag_access", i) for i in c.access] + [("xdp_mag_transport", i) for i in c.transport]

    # --- what the node asks for ------------------------------------------------------
    def apply_action(self, action) -> None:
        if isinstance(action, mag.InstallMobileNode):
            self.install(action)
        elif isinstance(action, mag.RemoveMobileNode):
            self.uninstall(action)
        elif isinstance(action, mag.Advertise):
            self.advertise(action)
        elif isinstance(action, ro.RoInstalled):
            self.ro_entries.install(action)
            if action.setup_seconds is not None:
                self.metrics.ro_setup.labels(self.node_name, action.mode).observe(action.setup_seconds)
                self.metrics.ro_attempts.labels(self.node_name, action.mode, "established").inc()
        elif isinstance(action, ro.RoRemoved):
            self.ro_entries.remove(action.pair, action.role, action.reason)
        elif isinstance(action, ro.LocalRouteInstalled):
            new = self.local_routes.install(action)
            self.metrics.local_routes.labels(self.node_name, "installed" if new else "refreshed",
                                             "lma_consented").inc()
            if action.setup_seconds is not None:
                self.metrics.ro_setup.labels(self.node_name, "local").observe(action.setup_seconds)
        elif isinstance(action, ro.LocalRouteRemoved):
            if self.local_routes.remove(action.pair, action.reason):
                self.metrics.local_routes.labels(self.node_name, "removed", action.reason).inc()
        elif isinstance(action, ro.RoSendOnlyOnceHeard):
            self.ro_entries.send_only_once_heard(action.pair)
        elif isinstance(action, IPv4ServiceDeclined):
            log.warning("the LMA gives %s no IPv4 service (%s): registering it for IPv6 alone",
                        action.entry.mn_id, status_label(action.status))
        elif isinstance(action, RegistrationRejected):
            log.warning("the LMA rejected %s: %s", action.entry.mn_id, status_label(action.status))
        elif isinstance(action, mag.MobileNodeAttaching):
            log.info("%s from %s on %s: attaching %s", action.by, action.mac, action.link, action.mn_id)
        elif isinstance(action, mag.RouterSolicitationRefused):
            self.metrics.count_message("rs", "in", action.reason)
            log.warning("router solicitation from %s on %s refused: %s%s", action.mac, action.link,
                        action.reason.replace("_", " "), f" ({action.mn_id})" if action.mn_id else "")
        elif self.buffered.apply(action):       # the handover buffer's (held.py)
            pass
        elif isinstance(action, mag.MobileNodeLeft):
            log.info("%s left: %s lost its carrier", action.mn_id, action.link)
        else:
            super().apply_action(action)

    def install(self, action: mag.InstallMobileNode) -> None:
        tunnel_id = self.tunnels.acquire(action.tunnel, action.mn_id, PeerKind.LMA)
        previous = self.installed.get(action.mn_id)
        self.installed[action.mn_id] = tunnel_id
        link = self.netlink.ifindex(action.link)         # its packets come from this link only
        self.tables.set_mn(action.hnp, tunnel_id, ifindex=link)
        self.netlink.replace_route(action.hnp, ifname=action.link)
        if action.ipv4_hoa:
            self.tables.set_mn(f"{action.ipv4_hoa}/32", tunnel_id, ifindex=link)
            self.netlink.replace_route(f"{action.ipv4_hoa}/32", ifname=action.link)
        if previous is not None and previous != tunnel_id:     # only once nothing points at it
            self.tunnels.release(previous, action.mn_id)
        log.info("%s registered: %s%s on %s", action.mn_id, action.hnp,
                 f", {action.ipv4_hoa}" if action.ipv4_hoa else "", action.link)

    def uninstall(self, action: mag.RemoveMobileNode) -> None:
        for prefix in ([action.hnp] if action.hnp else []) + ([f"{action.ipv4_hoa}/32"] if action.ipv4_hoa else []):
            self.tables.remove_mn(prefix)
            self.netlink.delete_route(prefix)
        tunnel_id = self.installed.pop(action.mn_id, None)
        if tunnel_id is not None:
            self.tunnels.release(tunnel_id, action.mn_id)
        log.info("%s deregistered", action.mn_id)

    def advertise(self, action: mag.Advertise) -> None:
        lifetimes = {}
        if action.withdraw:
            lifetimes = {"valid_lifetime": 0, "preferred_lifetime": 0}
            if action.last_router:
                lifetimes["router_lifetime"] = 0
        ra = build_router_advertisement([action.prefix], self.ra_mtu, mac=self.access_macs[action.link], **lifetimes)
        try:
            self.ndp.send_advertisement(ra, self.netlink.ifindex(action.link))
            self.metrics.count_message("ra", "out")
        except (OSError, LookupError) as exc:
            log.warning("cannot send an RA on %s: %s", action.link, exc)

    # --- what the access links, the data plane and the operator report ----------------------
    def _on_router_solicitation(self) -> None:
        while (rs := self.ndp.receive()) is not None:
            link = self.access.get(rs.ifindex)
            if link is None:
                continue
            actions = self.node.router_solicitation(link, rs.mac, time.time())
            if not any(isinstance(a, mag.RouterSolicitationRefused) for a in actions):
                self.metrics.count_message("rs", "in")
            self.apply(actions)

    def on_link(self, event: LinkEvent) -> None:
        """An access link lost its carrier: the MNs on it left (RFC 5213
        §6.9.1.2). The MAC comes with the event (a re-created link has a
        new one): no netlink round trip in the loop just as an MN attaches."""
        if event.ifname not in self.config.interfaces.access:
            return
        if event.mac:
            self.access_macs[event.ifname] = event.mac
        self.access = {i: name for i, name in self.access.items() if name != event.ifname}
        if not event.deleted:
            self.access[event.ifindex] = event.ifname     # a re-created link has a new ifindex
        now = time.time()
        self.apply(self.node.link_up(event.ifname, now) if event.up else self.node.link_down(event.ifname, now))

    def on_dataplane_event(self, event) -> None:
        now = time.time()
        if isinstance(event, PuntEvent) and event.kind == "held":
            link = self.access.get(event.ifindex)
            packet = ip_packet_of(event.frame)
            if link is None or packet is None or len(event.frame) < 14:
                self.buffered.drop(handover.DropReason.MALFORMED.value)
                return
            mac = mac_text(event.frame[6:12])
            self.apply(self.node.uplink_held(link, mac, packet, now))
        elif isinstance(event, PuntEvent):
            try:
                mh, arrival = punted_arrival(event.frame)
            except ValueError as exc:
                self.metrics.count_message("punted", "in", "malformed")
                log.warning("undecodable punted frame: %s", exc)
                return
            self.handle_signaling(mh, arrival)
        elif event.kind == "flow_trigger":
            self.apply(self.node.flow_seen(event.src, event.dst, now))
        elif event.kind == "unknown_source" and event.mac and event.ifindex in self.access:
            self.apply(self.node.unknown_source(self.access[event.ifindex], event.mac, now))
        elif event.kind == "no_ro_binding" and event.peer is not None:
            self.apply(self.node.missing_binding(event.src, event.dst, event.peer, now))

    # --- state ---------------------------------------------------------------------------------
    def persisted_tables(self):
        bul = self.node.bul
        return [Table("mn", ("entries",), bul.changed, bul.entries.get),
                *ro_tables(initiator=self.node.initiator, responder=self.node.responder)]

    def restore(self, state: dict) -> None:
        now = time.time()
        entries = [from_jsonable(BindingUpdateListEntry, e) for e in state.get("entries", [])]
        for action in self.node.restore(entries, now):
            self._apply_one(action)
        saved = saved_ro(state.get("ro") or {})
        for action in self.node.restore_ro(saved, now):
            self._apply_one(action)
        if saved["initiator"] or saved["responder"]:
            log.info("restored %d RO pairs as the initiator, %d as the responder",
                     len(self.node.initiator.attempts), len(self.node.responder.bindings))

    def reconcile(self) -> None:
        """What the maps and routes hold that no restored MN or RO pair
        explains goes (an MN registered, but not committed, before a crash)."""
        wanted = set()
        for e in self.node.bul.entries.values():
            if e.state is BindingState.REGISTERED and e.hnp:
                wanted.add(e.hnp)
                if e.ipv4_hoa:
                    wanted.add(host_route(e.ipv4_hoa))
        stale = [prefix for prefix in self.tables.list_mns() if prefix not in wanted]
        for prefix in stale:
            self.tables.remove_mn(prefix)
        routes = [prefix for prefix in self.netlink.our_routes() if prefix not in wanted]
        for prefix in routes:
            self.netlink.delete_route(str(prefix))
        pairs = self.ro_entries.forget_unknown() + self.local_routes.forget_unknown()
        if stale or routes or pairs:
            log.warning("reconciled the data plane with the store: removed %d MN entries, %d routes and %d RO "
                        "entries that no saved MN or pair explains", len(stale), len(routes), len(pairs))

    # --- operator view and commands ----------------------------------------------------------------
    def binding_rows(self) -> list[dict]:
        now = time.time()
        rows = []
        for e in sorted(self.node.bul.entries.values(), key=lambda e: e.mn_id):
            rows.append({"mn_id": e.mn_id, "state": e.state.value, "hnp": str(e.hnp) if e.hnp else None,
                         "ipv4_hoa": str(e.ipv4_hoa) if e.ipv4_hoa else None, "link": e.link, "mac": e.mac,
                         "mag": str(self.config.addresses.ipv6), "transport": self.config.mag.transport,
                         "lifetime": e.lifetime, "expires_in": round(e.expires - now, 1) if e.expires else None,
                         "last_status": e.last_status})
        return rows

    def attach_command(self, args: dict) -> dict:
        link = args.get("link")
        if link not in self.config.interfaces.access:
            raise CommandError(f"{link!r} is not one of this MAG's access links ({', '.join(self.config.interfaces.access)})")
        mn_id = args["mn_id"]
        self.apply(self.node.attach(mn_id, link, time.time(), mac=args.get("mac")))
        return {"mn_id": mn_id, "state": self.node.bul.entries[mn_id].state.value}

    def detach_command(self, args: dict) -> dict:
        self.apply(self.node.detach(args["mn_id"], time.time()))
        return {"mn_id": args["mn_id"]}

    def ro_rows(self) -> list[dict]:
        """Every pair we know of: installed entries and attempts in progress."""
        rows = {(r["local"], r["remote"]): r for r in self.ro_entries.rows() + self.local_routes.rows()}
        for pair, attempt in self.node.initiator.attempts.items():
            row = rows.setdefault((str(pair.local), str(pair.remote)), {
                "local": str(pair.local), "remote": str(pair.remote),
                "peer": str(attempt.peer.address) if attempt.peer else None, "roles": []})
            start = attempt.timeline[0][0] if attempt.timeline else attempt.started
            local = attempt.local or pair in self.local_routes.routes
            row.update({"phase": attempt.phase.value, "mode": "local" if local else attempt.mode.value,
                        "scenario": "local" if local else "outside" if attempt.peer and attempt.peer.outside
                        else "domain",
                        "last_failure": attempt.last_failure or None,
                        "retry_in": round(attempt.retry_at - time.time(), 1) if attempt.retry_at else None,
                        "timeline": [[round((t - start) * 1000, 2), what] for t, what in attempt.timeline]})
        for row in rows.values():
            row.setdefault("phase", "established" if row.get("roles") else "-")
        return sorted(rows.values(), key=lambda r: (r["local"], r["remote"]))

    def ro_start_command(self, args: dict) -> dict:
        pair = pair_from(args)
        self.apply(self.node.start_ro(pair.local, pair.remote, time.time()))
        return next((r for r in self.ro_rows() if (r["local"], r["remote"]) == (str(pair.local), str(pair.remote))),
                    {"local": str(pair.local), "remote": str(pair.remote), "phase": "-"})

    def ro_stop_command(self, args: dict) -> dict:
        pair = pair_from(args)
        actions = self.node.stop_ro(pair, time.time())
        if not actions and pair not in self.ro_entries.pairs:
            raise CommandError(f"no route optimization for {pair}")
        self.apply(actions)
        for role in Role:                  # entries the data plane holds without the node knowing them
            self.ro_entries.remove(pair, role, StopReason.STOPPED)
        return {"local": str(pair.local), "remote": str(pair.remote), "phase": "stopped"}

    def ro_settings_command(self, args: dict) -> dict:
        """Change the RO trigger threshold, mode or lifetime of a running MAG."""
        if args.get("trigger_packets") is not None:
            packets = int(args["trigger_packets"])
            if packets < 0:
                raise CommandError("the trigger threshold is a packet count, 0 or more (0: only `ro start`)")
            config = self.tables.get_config()
            config["ro_trigger_packets"] = packets
            self.tables.set_config(**config)
        lifetime = args.get("lifetime")
        self.node.configure_ro(mode=args.get("mode"), lifetime=int(lifetime) if lifetime is not None else None)
        policy = self.node.initiator.policy
        return {"trigger_packets": self.tables.get_config()["ro_trigger_packets"],
                "mode": policy.mode.value, "lifetime": policy.lifetime,
                "quick_mode_peers": sorted(str(a) for a in policy.peer_keys)}

    def buffer_settings_command(self, args: dict) -> dict:
        """Turn the handover buffer on or off on a running MAG (bench/handover.py's
        baseline); limits as in the config. Returns the settings in force."""
        policy = self.node.buffer.policy
        if args.get("enabled") is not None:
            self.set_buffering(dataclasses.replace(policy, enabled=bool(args["enabled"])))
        policy = self.node.buffer.policy
        return {**policy.settings(), "holding": self.node.buffer.count, **self.buffered.counts,
                "handover": self.tables.get_config()["handover"]}

    def control_handlers(self):
        return {"bindings": lambda args: self.binding_rows(),
                "attach": self.attach_command, "detach": self.command(self.detach_command),
                "ro_list": lambda args: self.ro_rows(), "ro_start": self.command(self.ro_start_command),
                "ro_stop": self.ro_stop_command, "ro_settings": self.command(self.ro_settings_command),
                "buffer_settings": self.command(self.buffer_settings_command)}

    def limits(self) -> dict:
        policy = self.node.initiator.policy
        limits = super().limits()
        limits["limits"]["ro_attempts"]["per_mn"] = policy.max_attempts_per_mn
        # the flows XDP counts toward the RO trigger: an LRU map, the kernel pushes out the least recent
        flows, capacity = self.tables.map_entries("flows")      # (not the other five maps' walks)
        limits["limits"]["flows"] = {"held": flows, "capacity": capacity, "setting": "dataplane.max_flows",
                                     "pushed_out": "least recently used, by the kernel (not counted)"}
        return limits

    def gauges(self):
        roles = {}
        for entry in self.ro_entries.pairs.values():
            for role in entry.roles:
                roles[role] = roles.get(role, 0) + 1
        for role in Role:
            yield ("pmip6_bindings", "Bindings held, by kind", {"kind": f"ro_{role}"}, roles.get(role, 0))
        yield ("pmip6_bindings", "Bindings held, by kind", {"kind": "local"}, len(self.local_routes.routes))
        states = mobile_node_states(self.node.bul.entries.values())
        for state, n in states.items():
            yield ("pmip6_mobile_nodes", "Mobile nodes in the binding update list, by state", {"state": state}, n)
        yield ("pmip6_bindings", "Bindings held, by kind", {"kind": "pmip"}, states["registered"])
        for setting, value in self.node.buffer.policy.settings().items():
            yield ("pmip6_handover_buffer_setting", "The handover buffer's settings ([mag] buffer_*)",
                   {"setting": setting}, value)


def buffer_policy(section) -> handover.BufferPolicy:
    return handover.BufferPolicy(enabled=section.buffer_uplink, per_mn=section.buffer_packets,
                                 total=section.buffer_total, max_age=section.buffer_seconds)


def mobile_node_states(entries) -> dict[str, int]:
    """MNs by binding state, every state present: a state nobody is in is
    0, not a series that vanishes (a rule on it would see "no data")."""
    states = {state.value: 0 for state in BindingState}
    for e in entries:
        states[e.state.value] += 1
    return states
