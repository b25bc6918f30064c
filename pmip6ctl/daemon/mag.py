"""The MAG daemon: detects MNs on its access links (Router Solicitations),
registers them with the LMA through the binding-update-list core, and
drives the data plane and the routes for them."""

from __future__ import annotations

import logging
import time

from ..dataplane import Encap, PeerKind, Tunnel
from ..io.control import CommandError
from ..io.ndp import NdpSocket, build_router_advertisement
from ..protocol import mag as core
from ..protocol.common import PMIP6_UDP_PORT
from ..statefile import from_jsonable
from .base import Daemon, status_label

log = logging.getLogger("pmip6ctl.mag")

# Octets the largest tunnel header we may push takes from the MN's MTU.
TUNNEL_OVERHEAD = {"ipv6": 40, "ipv4": 28}


class MagDaemon(Daemon):
    role = "mag"

    def setup(self) -> None:
        c = self.config
        t = c.timers
        self.core = core.MobileAccessGateway(core.MagPolicy(
            proxy_coa=c.addresses.ipv6,
            ipv4_proxy_coa=c.addresses.ipv4,
            lma_address=c.mag.lma,
            lma_ipv4=c.mag.lma_ipv4,
            ipv4_transport=c.mag.transport == "ipv4",
            lifetime=c.mag.lifetime,
            refresh_fraction=t.refresh_fraction,
            initial_bindack_timeout=t.initial_bindack_timeout,
            max_bindack_timeout=t.max_bindack_timeout,
            request_ipv4=c.mag.request_ipv4,
        ))
        self.installed: dict[str, int] = {}      # mn_id -> tunnel id toward the LMA
        self.open_signaling(c.addresses.ipv4)
        self.ndp = NdpSocket()
        self._loop.add_reader(self.ndp.fileno(), self._on_router_solicitation)
        self.access = {self.netlink.ifindex(name): name for name in c.interfaces.access}
        overhead = TUNNEL_OVERHEAD["ipv6"]       # RO may use IPv6 outer headers even over IPv4 transport
        self.ra_mtu = c.mag.advertise_mtu or min(self.netlink.mtu(n) for n in c.interfaces.access) - overhead

    def attachments(self):
        c = self.config.interfaces
        return [("xdp_mag_access", i) for i in c.access] + [("xdp_mag_transport", i) for i in c.transport]

    # --- the core -------------------------------------------------------------------
    def receive(self, msg, arrival, now):
        return self.core.receive(msg, arrival, now)

    def on_timer(self, now):
        return self.core.on_timer(now)

    def next_deadline(self):
        return self.core.next_deadline()

    def apply_action(self, action) -> None:
        if isinstance(action, core.MobileNodeRegistered):
            self.install(action.entry)
        elif isinstance(action, core.MobileNodeDeregistered):
            self.uninstall(action.entry)
        elif isinstance(action, core.RegistrationRejected):
            log.warning("the LMA rejected %s: %s", action.entry.mn_id, status_label(action.status))
        else:
            super().apply_action(action)

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

    def advertise(self, entry, withdraw: bool = False) -> None:
        """An RA for the MN's home network prefix on its link (valid lifetime
        0 withdraws it, RFC 4862 §5.5.3)."""
        lifetimes = {"valid_lifetime": 0, "preferred_lifetime": 0, "router_lifetime": 0} if withdraw else {}
        ra = build_router_advertisement([entry.hnp], self.ra_mtu, mac=self.netlink.mac(entry.link), **lifetimes)
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
        if previous is not None and previous != tunnel_id:
            self.tunnels.release(previous, entry.mn_id)
        self.tables.set_mn(entry.hnp, tunnel_id)
        self.netlink.replace_route(entry.hnp, ifname=entry.link)
        if entry.ipv4_hoa:
            self.tables.set_mn(f"{entry.ipv4_hoa}/32", tunnel_id)
            self.netlink.replace_route(f"{entry.ipv4_hoa}/32", ifname=entry.link)
        self.advertise(entry)
        log.info("%s registered: %s%s on %s", entry.mn_id, entry.hnp,
                 f", {entry.ipv4_hoa}" if entry.ipv4_hoa else "", entry.link)

    def uninstall(self, entry) -> None:
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

    def control_handlers(self):
        return {"bindings": lambda args: self.binding_rows(),
                "attach": self.attach_command, "detach": self.detach_command}

    def gauges(self):
        states = {}
        for e in self.core.entries.values():
            states[e.state.name.lower()] = states.get(e.state.name.lower(), 0) + 1
        for state, n in states.items():
            yield ("pmip6_mobile_nodes", "Mobile nodes in the binding update list, by state", {"state": state}, n)
        yield ("pmip6_bindings", "Bindings held, by kind", {"kind": "pmip"},
               states.get("registered", 0))
