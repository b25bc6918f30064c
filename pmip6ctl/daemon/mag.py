"""The MAG daemon: detects MNs on its access links (Router Solicitations),
registers them with the LMA through the binding-update-list core, and
drives the data plane and the routes for them."""

from __future__ import annotations

import ipaddress
import logging
import time

from .. import wire
from ..dataplane import Encap, FlowEvent, PeerKind, PuntEvent, Tunnel
from ..io.control import CommandError
from ..io.frames import parse_punted_frame
from ..io.ndp import NdpSocket, build_router_advertisement
from ..protocol import mag as core
from ..protocol import ro
from ..protocol.common import PMIP6_UDP_PORT, Arrival, Send, UdpEndpoint, earliest
from ..statefile import from_jsonable
from .base import Daemon, message_kind, pair_from, status_label
from .ro_entries import RoEntries

log = logging.getLogger("pmip6ctl.mag")

# Octets the largest tunnel header we may push takes from the MN's MTU.
TUNNEL_OVERHEAD = {"ipv6": 40, "ipv4": 28}


class MagDaemon(Daemon):
    role = "mag"

    def setup(self) -> None:
        c = self.config
        t = c.timers
        ipv4_transport = c.mag.transport == "ipv4"
        self.core = core.MobileAccessGateway(core.MagPolicy(
            proxy_coa=c.addresses.ipv6,
            ipv4_proxy_coa=c.addresses.ipv4,
            lma_address=c.mag.lma,
            lma_ipv4=c.mag.lma_ipv4,
            ipv4_transport=ipv4_transport,
            lifetime=c.mag.lifetime,
            refresh_fraction=t.refresh_fraction,
            initial_bindack_timeout=t.initial_bindack_timeout,
            max_bindack_timeout=t.max_bindack_timeout,
            request_ipv4=c.mag.request_ipv4,
        ))
        self.installed: dict[str, int] = {}      # mn_id -> tunnel id toward the LMA
        self.open_signaling(c.addresses.ipv4)
        keys = {p.address: ro.PeerKey(p.spi, p.key) for p in c.peers if p.quick_mode}
        self.initiator = ro.RoInitiator(ro.InitiatorPolicy(
            proxy_coa=c.addresses.ipv6, lma_address=c.mag.lma, lifetime=c.ro.lifetime, mode=c.ro.mode,
            peer_keys=keys, refresh_fraction=t.refresh_fraction, initial_timeout=t.initial_bindack_timeout,
            max_timeout=t.max_bindack_timeout, retry_interval=c.ro.retry_interval,
            lma_ipv4=UdpEndpoint(c.mag.lma_ipv4) if ipv4_transport else None,
            ipv4_proxy_coa=c.addresses.ipv4, ipv4_transport=ipv4_transport))
        self.responder = ro.RoResponder(ro.ResponderPolicy(
            address=c.addresses.ipv6, serves=self.serves, max_lifetime=c.ro.lifetime, peer_keys=keys,
            nat_keepalive=c.ro.nat_keepalive))
        self.ro_entries = RoEntries(self.tables, self.tunnels, c.addresses.ipv6, c.addresses.ipv4)
        self.lma_keepalive_at: float | None = None
        self.ndp = NdpSocket()
        self._loop.add_reader(self.ndp.fileno(), self._on_router_solicitation)
        self.access = {self.netlink.ifindex(name): name for name in c.interfaces.access}
        # the RA's source link-layer address; looked up once, not on the RA's critical path
        self.access_macs = {name: self.netlink.mac(name) for name in c.interfaces.access}
        self.netlink.watch_links(lambda *change: self._loop.call_soon_threadsafe(self.on_link, *change))
        overhead = TUNNEL_OVERHEAD["ipv6"]       # RO may use IPv6 outer headers even over IPv4 transport
        self.ra_mtu = c.mag.advertise_mtu or min(self.netlink.mtu(n) for n in c.interfaces.access) - overhead

    def attachments(self):
        c = self.config.interfaces
        return [("xdp_mag_access", i) for i in c.access] + [("xdp_mag_transport", i) for i in c.transport]

    # --- the cores -------------------------------------------------------------------
    def receive(self, msg, arrival, now):
        """PBAs go to the binding update list; RO messages to the initiator
        (answers to what we asked for our MNs) or the responder (questions
        about our CNs)."""
        kind = message_kind(msg)
        if kind == "pba":
            return self.core.receive(msg, arrival, now)
        if kind in ("lra", "hot", "cot", "ro_ba"):
            return self.initiator.receive(msg, arrival, now)
        if kind in ("hoti", "coti", "ro_bu"):
            return self.responder.receive(msg, arrival, now)
        if kind == "be":
            return self.initiator.receive(msg, arrival, now) + self.responder.receive(msg, arrival, now)
        return []

    def on_timer(self, now):
        return (self.core.on_timer(now) + self.initiator.on_timer(now) + self.responder.on_timer(now)
                + self.keep_nat_mapping(now))

    def next_deadline(self):
        return earliest(self.core.next_deadline(), self.initiator.next_deadline(), self.responder.next_deadline(),
                        self.lma_keepalive_at)

    def keep_nat_mapping(self, now: float) -> list:
        """Behind a NAT toward the LMA (its PBA carried NAT Detection): a
        Heartbeat in UDP at the refresh time keeps the NAT's mapping, and so
        the LMA's downlink tunnel, alive while no MN sends (RFC 5844 §4.1,
        RFC 5555 §4.1, RFC 5847)."""
        refresh = [e.nat_refresh for e in self.core.entries.values()
                   if e.state == core.BindingState.REGISTERED and e.nat_detected and e.nat_refresh]
        if not refresh:
            self.lma_keepalive_at = None
            return []
        if self.lma_keepalive_at is None:
            self.lma_keepalive_at = now + min(refresh)
            return []
        if now < self.lma_keepalive_at:
            return []
        self.lma_keepalive_at = now + min(refresh)
        c = self.config
        return [Send(wire.Heartbeat(unsolicited=False, response=False, sequence=int(now) & 0xFFFFFFFF),
                     c.addresses.ipv6, c.mag.lma, ipv4_dst=UdpEndpoint(c.mag.lma_ipv4), ipv4_src=c.addresses.ipv4)]

    def apply_action(self, action) -> None:
        if isinstance(action, core.MobileNodeRegistered):
            self.install(action.entry)
        elif isinstance(action, core.MobileNodeDeregistered):
            self.uninstall(action.entry)
        elif isinstance(action, core.RegistrationRejected):
            log.warning("the LMA rejected %s: %s", action.entry.mn_id, status_label(action.status))
        elif isinstance(action, ro.SendHomePath):
            self.send_home_path(action)
        elif isinstance(action, ro.RoInstalled):
            self.ro_entries.install(action)
            if action.setup_seconds is not None:
                self.metrics.ro_setup.labels(self.node, action.mode).observe(action.setup_seconds)
                self.metrics.ro_attempts.labels(self.node, action.mode, "established").inc()
        elif isinstance(action, ro.RoRemoved):
            self.ro_entries.remove(action.pair, action.role, action.reason)
        elif isinstance(action, ro.RoFailed):
            log.info("RO %s failed: %s (retry after %.0f s)", action.pair, action.reason, action.retry_at - time.time())
            self.metrics.ro_attempts.labels(self.node, self.config.ro.mode, "failed").inc()
        else:
            super().apply_action(action)

    # --- route optimization -----------------------------------------------------------
    def entry_for(self, address) -> core.BindingUpdateListEntry | None:
        """The registered MN that address belongs to."""
        address = ipaddress.ip_address(address)
        for entry in self.core.entries.values():
            if entry.state != core.BindingState.REGISTERED:
                continue
            if (entry.hnp and address.version == 6 and address in entry.hnp) or entry.ipv4_hoa == address:
                return entry
        return None

    def serves(self, address) -> bool:
        return self.entry_for(address) is not None

    def home_tunnel(self, address):
        entry = self.entry_for(address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address)
                               and address.ipv4_mapped else address)
        return self.tunnels.tunnel(self.installed.get(entry.mn_id, 0)) if entry else None

    def on_dataplane_event(self, event) -> None:
        now = time.time()
        if isinstance(event, PuntEvent):
            self.on_punted(event)
        elif event.kind == "flow_trigger":
            self.on_flow_trigger(event, now)
        elif event.kind == "no_ro_binding" and event.peer is not None:
            # RFC 6275 §9.3.3: tell the peer we hold no binding. A BE names the
            # initiating side's MN, which is the inner destination when the peer
            # was the responder and the inner source when it was the initiator:
            # with no state left to tell, name both (the peer ignores the other).
            self.apply([self.responder.binding_error(event.dst, event.peer),
                        self.responder.binding_error(event.src, event.peer)])

    def on_punted(self, event: PuntEvent) -> None:
        try:
            punted = parse_punted_frame(event.frame)
        except ValueError as exc:
            self.metrics.count_message("punted", "in", "malformed")
            log.warning("undecodable punted frame: %s", exc)
            return
        if punted.ipv4_wrapper is not None:
            # fig. 2/3: the IPv4 header names MN and CN, the IPv6 one the proxy CoAs
            src4, dst4 = punted.ipv4_wrapper
            arrival = Arrival(src=ipaddress.IPv6Address(f"::ffff:{src4}"), dst=ipaddress.IPv6Address(f"::ffff:{dst4}"),
                              proxy_src=punted.src, proxy_dst=punted.dst, home_path=True)
        else:
            arrival = Arrival(src=punted.src, dst=punted.dst, home_path=True)
        self.handle_signaling(punted.mh, arrival)

    def on_flow_trigger(self, event: FlowEvent, now: float) -> None:
        """The data plane saw an MN→destination flow pass the threshold."""
        entry = self.entry_for(event.src)
        if entry is None or not self.config.ro.enabled or event.dst.is_multicast or event.dst.is_link_local:
            return
        pair = ro.RoPair(event.src, event.dst)
        if pair in self.ro_entries.pairs:
            return                        # optimized already (perhaps as the responder)
        self.apply(self.initiator.start(event.src, event.dst, now, mn_prefix=entry.hnp))

    # --- attach detection -------------------------------------------------------------------
    def mn_id_for(self, mac: str | None, link: str) -> str:
        return self.config.mn_id(mac) if mac else f"{link}@{self.node}"

    def _on_router_solicitation(self) -> None:
        while (rs := self.ndp.receive()) is not None:
            link = self.access.get(rs.ifindex)
            if link is None:
                continue
            self.metrics.count_message("rs", "in")
            mn_id = self.mn_id_for(rs.mac, link)
            entry = self.core.entries.get(mn_id)
            if entry is not None and entry.state == core.BindingState.REGISTERED and entry.link == link:
                self.advertise(entry)              # a solicited RA for a known MN
            else:
                log.info("router solicitation from %s on %s: attaching %s", rs.mac, link, mn_id)
                self.apply(self.core.attach(mn_id, link, time.time(), mac=rs.mac))

    def on_link(self, ifname: str, up: bool, mac: str | None = None) -> None:
        """An access link lost its carrier: the MNs on it left (RFC 5213
        §6.9.1.2 detach detection from the link layer). The MAC comes with
        the event (a re-created link has a new one): no netlink round trip
        in the loop just as an MN attaches."""
        if ifname not in self.config.interfaces.access:
            return
        if mac:
            self.access_macs[ifname] = mac
        if up:
            return
        now = time.time()
        for entry in [e for e in self.core.entries.values() if e.link == ifname]:
            log.info("%s left: %s lost its carrier", entry.mn_id, ifname)
            self.apply(self.core.detach(entry.mn_id, now))

    def advertise(self, entry, withdraw: bool = False) -> None:
        """An RA for the MN's home network prefix on its link (valid lifetime
        0 withdraws it, RFC 4862 §5.5.3). We stop being the default router
        only when no other registered MN shares the link."""
        lifetimes = {}
        if withdraw:
            lifetimes = {"valid_lifetime": 0, "preferred_lifetime": 0}
            if not any(e.link == entry.link and e.mn_id != entry.mn_id and e.state == core.BindingState.REGISTERED
                       for e in self.core.entries.values()):
                lifetimes["router_lifetime"] = 0
        ra = build_router_advertisement([entry.hnp], self.ra_mtu, mac=self.access_macs[entry.link], **lifetimes)
        try:
            self.ndp.send_advertisement(ra, self.netlink.ifindex(entry.link))
            self.metrics.count_message("ra", "out")
        except OSError as exc:
            log.warning("cannot send an RA on %s: %s", entry.link, exc)

    # --- data plane --------------------------------------------------------------------------
    def lma_tunnel(self, entry) -> Tunnel:
        c = self.config
        if c.mag.transport == "ipv4":
            if entry.nat_detected:
                return Tunnel(Encap.UDP4, c.addresses.ipv4, c.mag.lma_ipv4, PMIP6_UDP_PORT, PMIP6_UDP_PORT)
            return Tunnel(Encap.IP4, c.addresses.ipv4, c.mag.lma_ipv4)
        return Tunnel(Encap.IP6, c.addresses.ipv6, c.mag.lma)

    def install(self, entry) -> None:
        tunnel_id = self.tunnels.acquire(self.lma_tunnel(entry), entry.mn_id, PeerKind.LMA)
        previous = self.installed.get(entry.mn_id)
        self.installed[entry.mn_id] = tunnel_id
        self.tables.set_mn(entry.hnp, tunnel_id)
        self.netlink.replace_route(entry.hnp, ifname=entry.link)
        if entry.ipv4_hoa:
            self.tables.set_mn(f"{entry.ipv4_hoa}/32", tunnel_id)
            self.netlink.replace_route(f"{entry.ipv4_hoa}/32", ifname=entry.link)
        if previous is not None and previous != tunnel_id:     # only once nothing points at it
            self.tunnels.release(previous, entry.mn_id)
        self.advertise(entry)
        self.keep_nat_mapping(time.time())           # schedules the keepalives when a NAT was seen
        log.info("%s registered: %s%s on %s", entry.mn_id, entry.hnp,
                 f", {entry.ipv4_hoa}" if entry.ipv4_hoa else "", entry.link)

    def uninstall(self, entry) -> None:
        self.apply(self.stop_route_optimization(entry))
        if entry.hnp:
            self.tables.remove_mn(entry.hnp)
            self.netlink.delete_route(entry.hnp)
            self.advertise(entry, withdraw=True)
        if entry.ipv4_hoa:
            self.tables.remove_mn(f"{entry.ipv4_hoa}/32")
            self.netlink.delete_route(f"{entry.ipv4_hoa}/32")
        tunnel_id = self.installed.pop(entry.mn_id, None)
        if tunnel_id is not None:
            self.tunnels.release(tunnel_id, entry.mn_id)
        log.info("%s deregistered", entry.mn_id)

    def stop_route_optimization(self, entry) -> list:
        """An MN that leaves takes its RO bindings along, on both sides."""
        now = time.time()
        actions = []
        for pair in {*self.initiator.attempts, *self.ro_entries.pairs, *self.responder.bindings}:
            if (entry.hnp and isinstance(pair.local, ipaddress.IPv6Address) and pair.local in entry.hnp) \
                    or pair.local == entry.ipv4_hoa:
                actions += self.initiator.stop(pair, now, "mn detached")
                actions += self.responder.cn_detached(pair.local)
        return actions

    # --- state ---------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        return {"entries": list(self.core.entries.values())}

    def restore(self, state: dict) -> None:
        entries = [from_jsonable(core.BindingUpdateListEntry, e) for e in state.get("entries", [])]
        self.core.restore(entries)
        for entry in entries:
            if entry.state == core.BindingState.REGISTERED and entry.hnp:
                self.install(entry)

    # --- operator view and commands ----------------------------------------------------------------
    def binding_rows(self) -> list[dict]:
        now = time.time()
        rows = []
        for e in sorted(self.core.entries.values(), key=lambda e: e.mn_id):
            rows.append({"mn_id": e.mn_id, "state": e.state.name.lower(), "hnp": str(e.hnp) if e.hnp else None,
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
        self.apply(self.core.attach(mn_id, link, time.time(), mac=args.get("mac")))
        return {"mn_id": mn_id, "state": self.core.entries[mn_id].state.name.lower()}

    def detach_command(self, args: dict) -> dict:
        mn_id = args["mn_id"]
        if mn_id not in self.core.entries:
            raise CommandError(f"{mn_id} is not attached here")
        self.apply(self.core.detach(mn_id, time.time()))
        return {"mn_id": mn_id}

    def ro_rows(self) -> list[dict]:
        """Every pair we know of: installed entries and attempts in progress."""
        rows = {(r["local"], r["remote"]): r for r in self.ro_entries.rows()}
        for pair, attempt in self.initiator.attempts.items():
            row = rows.setdefault((str(pair.local), str(pair.remote)), {
                "local": str(pair.local), "remote": str(pair.remote),
                "peer": str(attempt.peer) if attempt.peer else None, "roles": []})
            start = attempt.timeline[0][0] if attempt.timeline else attempt.started
            row.update({"phase": attempt.phase.value, "mode": attempt.mode,
                        "scenario": "outside" if attempt.outside else "domain",
                        "last_failure": attempt.last_failure or None,
                        "retry_in": round(attempt.retry_at - time.time(), 1) if attempt.retry_at else None,
                        "timeline": [[round((t - start) * 1000, 2), what] for t, what in attempt.timeline]})
        for row in rows.values():
            row.setdefault("phase", "established" if row.get("roles") else "-")
        return sorted(rows.values(), key=lambda r: (r["local"], r["remote"]))

    def ro_start_command(self, args: dict) -> dict:
        pair = pair_from(args)
        entry = self.entry_for(pair.local)
        if entry is None:
            raise CommandError(f"{pair.local} belongs to no MN registered here")
        self.apply(self.initiator.start(pair.local, pair.remote, time.time(), mn_prefix=entry.hnp, operator=True))
        return next((r for r in self.ro_rows() if (r["local"], r["remote"]) == (str(pair.local), str(pair.remote))),
                    {"local": str(pair.local), "remote": str(pair.remote), "phase": "-"})

    def ro_stop_command(self, args: dict) -> dict:
        pair = pair_from(args)
        now = time.time()
        actions = self.initiator.stop(pair, now) + self.responder.remove(pair, "stopped by the operator")
        if not actions and pair not in self.ro_entries.pairs:
            raise CommandError(f"no route optimization for {pair}")
        self.apply(actions)
        for role in ("initiator", "responder"):
            self.ro_entries.remove(pair, role, "stopped by the operator")
        return {"local": str(pair.local), "remote": str(pair.remote), "phase": "stopped"}

    def ro_settings_command(self, args: dict) -> dict:
        """Change the RO trigger threshold or mode of a running MAG."""
        if args.get("trigger_packets") is not None:
            packets = int(args["trigger_packets"])
            if packets < 0:
                raise CommandError("the trigger threshold is a packet count, 0 or more (0: only `ro start`)")
            config = self.tables.get_config()
            config["ro_trigger_packets"] = packets
            self.tables.set_config(**config)
        if args.get("mode") is not None:
            if args["mode"] not in ("rr", "quick"):
                raise CommandError("mode is rr or quick")
            self.initiator.policy.mode = args["mode"]
        if args.get("lifetime") is not None:
            lifetime = int(args["lifetime"])
            if not 4 <= lifetime <= 420:
                raise CommandError("an RO lifetime is 4 to 420 s (MAX_RR_BINDING_LIFETIME)")
            self.initiator.policy.lifetime = lifetime
        return {"trigger_packets": self.tables.get_config()["ro_trigger_packets"],
                "mode": self.initiator.policy.mode, "lifetime": self.initiator.policy.lifetime,
                "quick_mode_peers": sorted(str(a) for a in self.initiator.policy.peer_keys)}

    def control_handlers(self):
        return {"bindings": lambda args: self.binding_rows(),
                "attach": self.attach_command, "detach": self.detach_command,
                "ro_list": lambda args: self.ro_rows(), "ro_start": self.ro_start_command,
                "ro_stop": self.ro_stop_command, "ro_settings": self.ro_settings_command}

    def gauges(self):
        roles = {}
        for entry in self.ro_entries.pairs.values():
            for role in entry.roles:
                roles[role] = roles.get(role, 0) + 1
        for role in ("initiator", "responder"):
            yield ("pmip6_bindings", "Bindings held, by kind", {"kind": f"ro_{role}"}, roles.get(role, 0))
        states = {}
        for e in self.core.entries.values():
            states[e.state.name.lower()] = states.get(e.state.name.lower(), 0) + 1
        for state, n in states.items():
            yield ("pmip6_mobile_nodes", "Mobile nodes in the binding update list, by state", {"state": state}, n)
        yield ("pmip6_bindings", "Bindings held, by kind", {"kind": "pmip"},
               states.get("registered", 0))
