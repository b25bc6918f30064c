"""What every node core (MagNode, LmaNode, CnNode) shares.

A node core is the whole protocol of one role, sans-I/O, in the shape of
aioquic's connection and h11's Connection: fed decoded messages
(`receive`), timer ticks (`on_timer`, due at `next_deadline()`) and the
events its data plane and links report, it returns typed actions
(pmip6ctl.actions): commands for the daemon to carry out, notifications to
count. It owns the smaller cores it combines and holds every rule that
joins them; the daemon around it only moves bytes and writes maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Callable, ClassVar

from .. import wire
from ..actions import Command, Notification
from ..transport import Arrival, Send, SendHomePath
from .limits import ANSWERS_TO_STRANGERS, Bounded, PrefixRateLimiter
from .ro.actions import LocalRouteInstalled, LocalRouteRemoved, RoInstalled, RoRemoved
from .common import Deadlines
from .auth import GUARDED, KeyChanges, NodeKeys, SignalingGuard, SignalingRefused, is_request, rekeyed
from .vocabulary import MessageKind, message_kind


class NodeError(ValueError):
    """An operator request the node cannot carry out, in one line."""


@dataclass(frozen=True)
class StateChanged(Command):
    """What the node keeps across a restart changed: save it now, before
    the messages that follow tell anyone about it (a PBA is sent only for a
    binding that is saved)."""


def with_state_change(actions: list) -> list:
    """actions with StateChanged before the first message they send."""
    first = next((i for i, a in enumerate(actions) if isinstance(a, (Send, SendHomePath))), len(actions))
    return actions[:first] + [StateChanged()] + actions[first:]


_RO_CHANGES = (RoInstalled, RoRemoved, LocalRouteInstalled, LocalRouteRemoved)


def saved_on_ro_change(actions: list) -> list:
    """actions, with StateChanged when an RO pair comes or goes: the state
    file keeps the RO pairs (a restart takes them back)."""
    return with_state_change(actions) if any(isinstance(a, _RO_CHANGES) for a in actions) else actions


@dataclass(frozen=True)
class NotSent(Notification):
    """A message the node meant to send but could not (counted, logged)."""
    kind: MessageKind
    reason: str                           # metric label, e.g. no_home_tunnel
    detail: str = ""


class Node:
    """Dispatch by message type behind the signaling guard (auth.py), and
    the answer to a message type nobody here knows."""

    role: ClassVar[str] = ""
    _HANDLERS: ClassVar[dict[type, Callable]] = {}
    guard: SignalingGuard | None = None          # None: security.auth = "none"
    _keys_retire_at: Deadlines | None = None     # peer -> when its replaced quick-mode/inter-LMA key expires
    answer_limit: PrefixRateLimiter | None = None   # None: answers to strangers unlimited (limit_answers)

    def limit_answers(self, rate: float, burst: int, prefixes: int = 65536) -> None:
        """Answers to input anyone could have sent (HoT, CoT, BE) go out at
        most `rate` a second per destination prefix (limits.py), `prefixes`
        of them tracked; 0: no limit."""
        self.answer_limit = PrefixRateLimiter(rate, burst, prefixes) if rate > 0 else None

    def bounded(self) -> list[Bounded]:
        """The node's tables that others fill, each with its limit (issue 13;
        docs/operations.md): what `status` and the metrics show."""
        limit = self.answer_limit
        if limit is None:
            return []
        return [Bounded("answer_prefixes", "security.answer_prefixes", len(limit), limit.max_prefixes,
                        {"least_recently_seen": limit.forgotten})]

    def limited(self, actions: list, now: float) -> list:
        """actions, with each answer to a stranger over its prefix's rate
        replaced by a counted NotSent."""
        if self.answer_limit is None:
            return actions
        out = []
        for action in actions:
            if isinstance(action, (Send, SendHomePath)) and isinstance(action.message, ANSWERS_TO_STRANGERS):
                destination = action.ipv4_dst.address if getattr(action, "ipv4_dst", None) else action.dst
                if not self.answer_limit.allow(destination, now):
                    action = NotSent(message_kind(action.message), "rate_limited", str(destination))
            out.append(action)
        return out

    def receive(self, msg: wire.Message, arrival: Arrival, now: float) -> list:
        self._retire_keys(now)
        refused = self._refused(msg, arrival, now)
        if refused is not None:
            return [refused]
        handler = self._HANDLERS.get(type(msg))
        return self.limited(handler(self, msg, arrival, now) if handler else [], now)

    def _refused(self, msg: wire.Message, arrival: Arrival, now: float) -> SignalingRefused | None:
        """Signaling between MAGs and LMAs that must not be believed."""
        kind = message_kind(msg)
        if self.guard is None or kind not in GUARDED:
            return None
        failure = self.guard.check(msg, arrival, now, is_request(msg, kind))
        return None if failure is None else SignalingRefused(kind, arrival.src, failure)

    def _sealed(self, actions: list, now: float) -> list:
        """Our signaling to MAGs and LMAs, stamped and signed."""
        if self.guard is None:
            return actions
        return [sealed for a in actions for sealed in (self.guard.seal(a, now) if isinstance(a, Send) else [a])]

    # --- key rotation (auth.py) -------------------------------------------------------------------
    def key_tables(self) -> list[tuple[str, dict]]:
        """The node's own key tables (mutable, shared with its cores), each
        with the NodeKeys field that refills it."""
        return []

    def rekey(self, keys: NodeKeys, now: float, grace: float) -> KeyChanges:
        """New keys from a reloaded config; bindings, RO entries and replay
        state stay. A replaced key is believed for grace seconds more, or
        (between signaling peers) until the peer uses the new one."""
        changes = self.guard.rekey(keys.signaling, now, grace) if self.guard else KeyChanges()
        self._retire_keys(now)
        if self._keys_retire_at is None:
            self._keys_retire_at = Deadlines()
        for name, table in self.key_tables():
            replaced, changed = rekeyed(table, getattr(keys, name))
            table.clear()
            table.update(replaced)
            for address in changed.rotated:
                self._keys_retire_at.set(address, now + grace)
            changes |= changed
        return changes

    def keys_in_grace(self) -> list[IPv6Address]:
        """Peers whose replaced key is still believed (a rotation under way)."""
        tables = [{a: p.key for a, p in self.guard.peers.items()}] if self.guard else []
        tables += [table for _, table in self.key_tables()]
        return sorted({a for table in tables for a, key in table.items() if key.previous is not None})

    def _retire_keys(self, now: float) -> None:
        if self._keys_retire_at is None:
            return
        for address in self._keys_retire_at.pop_due(now):     # a heap: no walk per message
            for _, table in self.key_tables():
                if address in table:
                    table[address] = table[address].retired()

    def unknown_message(self, mh_type: int, arrival: Arrival, now: float) -> list:
        """RFC 6275 §9.2: a Binding Error with status 2 (unrecognized MH type)
        back to the sender."""
        error = wire.BindingError(status=wire.BindingErrorStatus.UNRECOGNIZED_MH_TYPE, home_address=arrival.src)
        return self.limited([arrival.reply(error, arrival.dst)], now)

    # --- liveness (RFC 5847, heartbeat.py) ----------------------------------------------------
    def configure_heartbeats(self, peers, ro, now: float) -> None:
        """New heartbeat settings (HeartbeatPolicy) toward the signaling peers and the RO peers."""

    def liveness_rows(self, now: float) -> list[dict]:
        """Each peer watched by heartbeats, as `status` shows it."""
        return []

    def on_timer(self, now: float) -> list:
        return []

    def next_deadline(self) -> float | None:
        return None
