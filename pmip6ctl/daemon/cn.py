"""The CN agent daemon: CnNode (protocol/cn.py) with its I/O (draft §4,
scenario 3). xdp_cn decapsulates the MAG's IPv6-in-IPv6 on the network
interface, and replies to an optimized MN leave through the egress veth,
whose far end runs xdp_cn_egress to encapsulate them toward the MAG."""

from __future__ import annotations

import ipaddress
import logging
import subprocess
import time
from pathlib import Path

from ..io.control import CommandError
from ..protocol import ro
from ..protocol.cn import CnNode, CnNodePolicy
from .base import Daemon, heartbeat_policies, node_keys, pair_from
from .ro_entries import RoEntries, ro_tables, saved_ro

log = logging.getLogger("pmip6ctl.cn")

EGRESS_GATEWAY = ipaddress.IPv6Address("fe80::1")      # next hop on the egress veth


class CnDaemon(Daemon):
    role = "cn"

    @property
    def egress(self) -> str:
        return self.config.cn.egress_interface

    @property
    def egress_peer(self) -> str:
        return f"{self.egress[:10]}-xdp"

    def setup(self) -> None:
        c = self.config
        self.netlink.ensure_veth(self.egress, self.egress_peer)
        # The CN's own replies enter the veth with checksums left to offload,
        # which XDP on the far end would forward unfilled: fill them here.
        subprocess.run(["ethtool", "-K", self.egress, "tx", "off"], check=True, capture_output=True)
        # bpf_fib_lookup on the far end needs forwarding there (only there). With
        # all.forwarding = 1 (a prerequisite) a new veth has it already; /proc/sys
        # is read-only in an unprivileged container, so write only when needed.
        forwarding = Path(f"/proc/sys/net/ipv6/conf/{self.egress_peer}/forwarding")
        if forwarding.read_text().strip() != "1":
            forwarding.write_text("1")
        self.netlink.replace_neighbour(EGRESS_GATEWAY, self.netlink.mac(self.egress_peer), self.egress)
        self.set_tx_ports(self.netlink.ifindexes())             # the veth pair made just now
        keys = dict(node_keys(c).quick_mode)
        self.node = CnNode(CnNodePolicy(
            address=c.addresses.ipv6, ipv4_address=c.addresses.ipv4,
            max_ro_pairs=c.dataplane.max_ro_entries, max_ro_peers=max(c.dataplane.max_tunnels - 1, 1),
            responder=ro.ResponderPolicy(address=c.addresses.ipv6, serves=lambda a: False, home_path=False,
                                         max_lifetime=c.ro.lifetime, peer_keys=keys,
                                         nat_keepalive=c.ro.nat_keepalive,
                                         max_replay_entries=c.ro.max_replay_entries),
            ro_heartbeat=heartbeat_policies(c)[1]))
        self.ro_entries = RoEntries(self.tables, self.tunnels, c.addresses.ipv6, c.addresses.ipv4,
                                    later=self._loop.call_later)
        self.ro_entries.forget_lapsed()
        self.open_signaling(c.addresses.ipv4)

    def persisted_tables(self):
        return ro_tables(responder=self.node.responder)

    def restore(self, state: dict) -> None:
        for action in self.node.restore_ro(saved_ro(state.get("ro") or {}), time.time()):
            self._apply_one(action)

    def reconcile(self) -> None:
        """RO entries (and their routes) of pairs the store does not hold go."""
        for pair in self.ro_entries.forget_unknown():
            self.netlink.delete_route(f"{pair.remote}/128")
            log.warning("reconciled the data plane with the store: removed the RO entry of %s", pair)

    def attachments(self):
        return ([("xdp_cn", i) for i in self.config.interfaces.transport]
                + [("xdp_cn_egress", self.egress_peer)])

    def apply_action(self, action) -> None:
        if isinstance(action, ro.RoInstalled):
            self.ro_entries.install(action)
            self.netlink.replace_route(f"{action.pair.remote}/128", ifname=self.egress, gateway=EGRESS_GATEWAY)
        elif isinstance(action, ro.RoRemoved):
            if self.ro_entries.remove(action.pair, action.role, action.reason):
                self.netlink.delete_route(f"{action.pair.remote}/128")
        elif isinstance(action, ro.RoSendOnlyOnceHeard):
            self.ro_entries.send_only_once_heard(action.pair)
        else:
            super().apply_action(action)

    def on_dataplane_event(self, event) -> None:
        if getattr(event, "kind", None) == "no_ro_binding" and event.peer is not None:
            self.apply(self.node.missing_binding(event.src, event.dst, event.peer, time.time()))

    def ro_stop_command(self, args: dict) -> dict:
        pair = pair_from(args, local="cn", remote="mn")
        actions = self.node.stop_ro(pair, time.time())
        if not actions:
            raise CommandError(f"no route optimization for {pair}")
        self.apply(actions)
        return {"local": str(pair.local), "remote": str(pair.remote), "phase": "stopped"}

    def control_handlers(self):
        return {"ro_list": lambda args: self.ro_entries.rows(), "ro_stop": self.ro_stop_command,
                "bindings": lambda args: [
                    {"mn_id": str(b.pair.remote), "state": "ro", "mag": str(b.peer), "lifetime": b.lifetime,
                     "expires_in": round(b.expires - time.time(), 1)} for b in self.node.responder.bindings.values()]}

    def gauges(self):
        yield ("pmip6_bindings", "Bindings held, by kind", {"kind": "ro_responder"}, len(self.node.responder.bindings))
