"""CnNode: the CN agent (draft §4, scenario 3), sans-I/O: an RO-capable
correspondent outside the PMIPv6 domain. It answers the proxy RR for its own
addresses as an RFC 6275 correspondent (its own Kcn and nonces), accepts a
MAG's RO BU, and answers RO traffic for a pair it does not hold with a
Binding Error. The daemon (daemon/cn.py) applies what it returns.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Callable

from .. import wire
from ..transport import Arrival
from .common import earliest
from .heartbeat import OFF, HeartbeatPolicy
from .limits import Bounded, counts_of
from .node import Node, saved_on_ro_change
from .ro import Address, ResponderPolicy, RoPair, RoResponder
from .ro.heartbeat import RoHeartbeats
from .vocabulary import StopReason


@dataclass(kw_only=True)
class CnNodePolicy:
    address: IPv6Address                   # the CN's own address, which the RR tests
    ipv4_address: IPv4Address | None = None
    responder: ResponderPolicy             # its `serves` is the node's own; no home path here
    ro_heartbeat: HeartbeatPolicy = OFF    # liveness of the RO peers ([heartbeat] ro_interval, ro_missed)
    # RO table and tunnel room (dataplane.max_ro_entries, max_tunnels): past it, BA 130.
    max_ro_pairs: int = 65536
    max_ro_peers: int = 4094


class CnNode(Node):
    role = "cn"

    def __init__(self, policy: CnNodePolicy, random: Callable[[int], bytes] = os.urandom, kcn: bytes | None = None):
        self.policy = policy
        self.responder = RoResponder(dataclasses.replace(policy.responder, address=policy.address,
                                                         serves=self.serves, home_path=False,
                                                         has_room=self._has_room),
                                     kcn=kcn, random=random)
        self.ro_heartbeats = RoHeartbeats(policy.address, self.responder, None, None, policy.ro_heartbeat,
                                          policy.responder.timestamp_window, random)

    def key_tables(self) -> list[tuple[str, dict]]:
        return [("quick_mode", self.responder.policy.peer_keys)]

    def _has_room(self, pair: RoPair, peer: IPv6Address) -> bool:
        """Room for one more RO pair (and, for a new peer, one more tunnel):
        anyone who can answer the RR for its own address can ask for one."""
        r = self.responder
        return len(r.bindings) < self.policy.max_ro_pairs and (
            r.knows_peer(peer) or r.peers_bound < self.policy.max_ro_peers)

    def bounded(self) -> list[Bounded]:
        r = self.responder
        return super().bounded() + [
            Bounded("ro_bindings", "dataplane.max_ro_entries", len(r.bindings), self.policy.max_ro_pairs, {},
                    counts_of(r.refused, "ro_bindings")),
            Bounded("ro_replay", "ro.max_replay_entries", r.replay_entries, r.policy.max_replay_entries,
                    counts_of(r.pushed_out, "ro_replay"))]

    def serves(self, address: Address) -> bool:
        """The agent answers for its own addresses only."""
        return address in (self.policy.address, self.policy.ipv4_address)

    def _to_responder(self, msg, arrival: Arrival, now: float) -> list:
        return self._changed(self.responder.receive(msg, arrival, now), now)

    def _on_heartbeat(self, hb: wire.Heartbeat, arrival: Arrival, now: float) -> list:
        return self.ro_heartbeats.receive(hb, arrival, now)

    def _changed(self, actions: list, now: float) -> list:
        return saved_on_ro_change(self.ro_heartbeats.track(actions, now))

    _HANDLERS = {
        wire.Heartbeat: _on_heartbeat,
        wire.HomeTestInit: _to_responder,
        wire.CareofTestInit: _to_responder,
        wire.BindingUpdate: _to_responder,
        wire.BindingError: _to_responder,
    }

    def missing_binding(self, src: Address, dst: Address, peer: IPv6Address, now: float) -> list:
        """RO-tunnelled traffic from peer for a pair we hold no entry for: the
        MN is the inner source (RFC 6275 §9.3.3)."""
        return self.limited([self.responder.binding_error(src, peer)], now)

    def stop_ro(self, pair: RoPair, now: float) -> list:
        return self._changed(self.responder.remove(pair, StopReason.STOPPED), now)

    def on_timer(self, now: float) -> list:
        actions = self._changed(self.responder.on_timer(now), now)
        beats, dead = self.ro_heartbeats.on_timer(now)
        actions += beats
        for peer in dead:                 # its pairs end here: the CN answers by the plain route
            actions += self._changed(self.responder.peer_dead(peer), now)
        return actions

    def restore_ro(self, saved: dict, now: float) -> list:
        return self.ro_heartbeats.track(self.responder.restore(saved["responder"], now), now) \
            if saved.get("responder") else []

    def next_deadline(self) -> float | None:
        return earliest(self.responder.next_deadline(), self.ro_heartbeats.next_deadline())

    def configure_heartbeats(self, peers: HeartbeatPolicy, ro: HeartbeatPolicy, now: float) -> None:
        self.policy.ro_heartbeat = ro
        self.ro_heartbeats.configure(ro, now)

    def liveness_rows(self, now: float) -> list[dict]:
        return self.ro_heartbeats.rows(now)
