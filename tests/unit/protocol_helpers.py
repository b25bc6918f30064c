"""Builders for the protocol core tests: policies in documentation address
space, a PBU builder, node cores with MNs already registered, and a
"network" that passes every message through wire.encode and wire.decode
(checksum included) on its way between cores. For route optimization,
RoNetwork joins MAG1's MagNode, a peer (MAG2's MagNode or a CnNode) and the
LmaNode under a fake clock: every message reaches the node it is addressed
to through the node's own receive(), as in the daemons."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Callable

from pmip6ctl.protocol.binding_cache import BindingCache, BindingCacheEntry, LmaPolicy
from pmip6ctl.protocol.binding_update_list import (BindingState, BindingUpdateList, BindingUpdateListEntry,
                                                   MagPolicy)
from pmip6ctl.protocol.cn import CnNode, CnNodePolicy
from pmip6ctl.protocol.common import earliest
from pmip6ctl.protocol.inter_lma import _notice_key
from pmip6ctl.protocol.lma import LmaNode, LmaNodePolicy
from pmip6ctl.protocol.mag import MagNode, MagNodePolicy
from pmip6ctl.protocol.pools import AddressPool, PrefixPool
from pmip6ctl.protocol.ro import InitiatorPolicy, Phase, ResponderPolicy, RoPair
from pmip6ctl.protocol.vocabulary import StopReason
from pmip6ctl.security import PeerKey
from pmip6ctl.transport import Arrival, Send, SendHomePath, UdpEndpoint
from pmip6ctl.wire import (AccessTechnologyType, BindingRevocation, BindingUpdate, BUFlags, HandoffIndicator,
                           HomeNetworkPrefix, IPv4HomeAddressRequest, MobileNodeIdentifier, Timestamp, decode, encode,
                           find_option)

T0 = 1_700_000_000.0  # the fake clock starts here (wall-clock seconds)

LMA = IPv6Address("2001:db8:ffff::1")
LMA4 = IPv4Address("192.0.2.1")
MAG1 = IPv6Address("2001:db8:a1::1")
MAG1_4 = IPv4Address("198.51.100.1")
MAG2 = IPv6Address("2001:db8:a2::1")
MAG2_4 = IPv4Address("198.51.100.2")
NAT = UdpEndpoint(IPv4Address("203.0.113.7"), 40001)  # MAG1 as the LMA sees it behind a NAT
HNP_POOL = IPv6Network("2001:db8:100::/56")
IPV4_POOL = IPv4Network("192.0.2.128/25")
FIRST_HNP = IPv6Network("2001:db8:100::/64")
SECOND_HNP = IPv6Network("2001:db8:100:1::/64")
FIRST_HOA = IPv4Address("192.0.2.129")
MN1 = "mn1@example.org"
MN2 = "mn2@example.org"


def lma_policy(**changes) -> LmaPolicy:
    fields = dict(address=LMA, ipv4_address=LMA4, hnp_pool=PrefixPool(HNP_POOL),
                  ipv4_pool=AddressPool(IPV4_POOL))
    return LmaPolicy(**(fields | changes))


def make_lma(**changes) -> BindingCache:
    return BindingCache(lma_policy(**changes))


def mag_policy(proxy_coa: IPv6Address = MAG1, ipv4_proxy_coa: IPv4Address = MAG1_4, **changes) -> MagPolicy:
    fields = dict(proxy_coa=proxy_coa, ipv4_proxy_coa=ipv4_proxy_coa, lma_address=LMA, lma_ipv4=LMA4)
    return MagPolicy(**(fields | changes))


def zeros(n: int) -> bytes:
    """A "random" source that always says 0: sequence numbers from 1."""
    return bytes(n)


def make_mag(proxy_coa: IPv6Address = MAG1, ipv4_proxy_coa: IPv4Address = MAG1_4, **changes) -> BindingUpdateList:
    return BindingUpdateList(mag_policy(proxy_coa, ipv4_proxy_coa, **changes), random=zeros)


def pbu(mn_id: str | None = MN1, now: float = T0, *, sequence: int = 1, lifetime: int = 3600,
        hnp: IPv6Network = IPv6Network("::/0"), hi: int = 1, att: int = 3, timestamp: float | None = None,
        ipv4: IPv4Address | None = None, flags: BUFlags = BUFlags.A | BUFlags.H | BUFlags.P,
        omit: tuple[type, ...] = (), extra: tuple = ()) -> BindingUpdate:
    """A PBU as RFC 5213 §6.9.1.1 builds it; `omit` drops options by class,
    `extra` adds some at the end, `timestamp` defaults to `now`."""
    options = [
        MobileNodeIdentifier.from_nai(mn_id) if mn_id is not None else None,
        HomeNetworkPrefix(hnp.prefixlen, hnp.network_address),
        HandoffIndicator(hi),
        AccessTechnologyType(att),
        Timestamp.from_unix(now if timestamp is None else timestamp),
        IPv4HomeAddressRequest(ipv4) if ipv4 is not None else None,
    ]
    options = [o for o in options if o is not None and not isinstance(o, omit)] + list(extra)
    return BindingUpdate(sequence, flags, lifetime // 4, options)


def carry(send: Send, nat: UdpEndpoint | None = None):
    """What the receiver of `send` gets: the message encoded and decoded with
    its checksum, and its Arrival (over IPv4 from `nat` when given)."""
    message = decode(encode(send.message, send.src, send.dst), send.src, send.dst)
    if send.ipv4_dst is None:
        return message, Arrival(send.src, send.dst)
    return message, Arrival(send.src, send.dst, ipv4_src=nat or UdpEndpoint(send.ipv4_src),
                            ipv4_dst=send.ipv4_dst.address)


def to_lma(lma: BindingCache, message, now: float = T0, src: IPv6Address = MAG1, **arrival) -> list:
    """Hand a message built in the test to the LMA, as if MAG `src` sent it."""
    return lma.receive(*carry(Send(message, src, LMA, **arrival)), now)


def sends(actions) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def of_type(actions, cls) -> list:
    return [a for a in actions if isinstance(a, cls)]


def only(items):
    (item,) = items
    return item


def only_send(actions) -> Send:
    (send,) = sends(actions)
    return send


def exchange(mag: BindingUpdateList, lma: BindingCache, actions, now: float = T0,
             nat: UdpEndpoint | None = None) -> tuple[list, list]:
    """Deliver the MAG's PBUs in `actions` to the LMA and its answers back
    (a BRI to an old MAG is answered: the MN left it). Returns (the LMA's
    actions, the MAG's actions)."""
    at_lma, at_mag = [], []
    for send in sends(actions):
        answer = old_mag_lets_go(lma, lma.receive(*carry(send, nat), now), now)
        at_lma += answer
        for reply in sends(answer):
            at_mag += mag.receive(*carry(reply), now)
    return at_lma, at_mag


def old_mag_lets_go(lma: BindingCache, actions, now: float = T0, status: int = 0) -> list:
    """The old MAG's answer to each BRI the LMA sent in `actions` (RFC 5846):
    a BRA with the BRI's sequence number and Timestamp; status 0 says the MN
    left. Returns the LMA's actions, the BRI's own included."""
    out = list(actions)
    for send in sends(actions):
        if isinstance(send.message, BindingRevocation) and send.message.is_indication:
            bri, _ = carry(send)
            bra = BindingRevocation.acknowledgement(bri.sequence, status, [find_option(bri, Timestamp)])
            out += lma.receive_revocation(*carry(Send(bra, send.dst, send.src)), now)
    return out


def run_until(cores, until: float) -> list:
    """Fire every timer of `cores` up to `until`, in order, as a daemon would.
    Returns (time, core, actions) for each firing that did something."""
    fired = []
    for _ in range(100_000):  # a deadline that never moves is a bug, not a hang
        due = [(d, i) for i, core in enumerate(cores) if (d := core.next_deadline()) is not None and d <= until]
        if not due:
            return fired
        deadline, i = min(due)
        actions = cores[i].on_timer(deadline)
        if actions:
            fired.append((deadline, cores[i], actions))
    raise AssertionError("timers keep firing without time passing")


# --- Route optimization: MAG1's initiator, MAG2's (or a CN agent's) responder, the LMA's RO query -------

MN = IPv6Address("2001:db8:100::10")        # in FIRST_HNP, attached at MAG1
MN_B = IPv6Address("2001:db8:100:1::10")    # in SECOND_HNP, another MN at MAG1
CN_HNP = IPv6Network("2001:db8:200::/64")
CN = IPv6Address("2001:db8:200::20")        # attached at MAG2
CN4 = IPv4Address("192.0.2.200")            # an IPv4 CN at MAG2
OUTSIDE_CN = IPv6Address("2001:db8:ee::1")  # scenario 3: an RO-capable CN outside the domain (a CN agent)
KCN = bytes(range(1, 21))                   # the responder's node key, known to the tests
QUICK_KEY = b"quick-mode key shared by MAG1 and MAG2"
QUICK_SPI = 0x1001
FOREVER = 10**7                             # seconds: bindings that outlive any test


def seeded(seed: int = 1) -> Callable[[int], bytes]:
    """A reproducible stand-in for os.urandom."""
    return random.Random(seed).randbytes


@dataclass(frozen=True)
class Anchored:
    """What the RO query reads of an LMA binding cache entry (a stub of it)."""
    hnp: IPv6Network | None
    proxy_coa: IPv6Address
    ipv4_hoa: IPv4Address | None = None
    ipv4_proxy_coa: IPv4Address | None = None
    mag_ipv4: UdpEndpoint | None = None


MN_AT_MAG1 = Anchored(FIRST_HNP, MAG1, FIRST_HOA)
MN_B_AT_MAG1 = Anchored(SECOND_HNP, MAG1)
CN_AT_MAG2 = Anchored(CN_HNP, MAG2, CN4)


def binding_lookup(*anchored: Anchored) -> Callable:
    """A binding_for(address) over some stub entries: the one whose HNP holds
    the address, or whose IPv4 home address it is."""
    def binding_for(address):
        return next((a for a in anchored if (address.version == 6 and a.hnp is not None and address in a.hnp)
                     or address == a.ipv4_hoa), None)
    return binding_for


def initiator_policy(**changes) -> InitiatorPolicy:
    return InitiatorPolicy(**(dict(proxy_coa=MAG1, lma_address=LMA, ipv4_proxy_coa=MAG1_4) | changes))


def responder_policy(address: IPv6Address = MAG2, serves=(CN, CN4), **changes) -> ResponderPolicy:
    served = set(serves)
    return ResponderPolicy(**(dict(address=address, serves=lambda a: a in served) | changes))


def quick_keys(peer: IPv6Address, spi: int = QUICK_SPI, key: bytes = QUICK_KEY) -> dict:
    return {peer: PeerKey(spi, key)}


# --- node cores with their MNs registered ---------------------------------------------------------

def registered(mn_id: str, hnp: IPv6Network | None, ipv4_hoa: IPv4Address | None = None, link: str = "acc1",
               now: float = T0, **changes) -> BindingUpdateListEntry:
    """A binding update list entry as a MAG holds it once the LMA accepted it."""
    return BindingUpdateListEntry(mn_id, link, **(dict(state=BindingState.REGISTERED, hnp=hnp, ipv4_hoa=ipv4_hoa,
                                                       lifetime=FOREVER, expires=now + FOREVER, registered=now)
                                                  | changes))


def anchored_entry(anchored: Anchored, mn_id: str, now: float = T0) -> BindingCacheEntry:
    """An LMA binding cache entry for a stub."""
    return BindingCacheEntry(mn_id=mn_id, hnp=anchored.hnp, ipv4_hoa=anchored.ipv4_hoa, proxy_coa=anchored.proxy_coa,
                             mag_ipv4=anchored.mag_ipv4, ipv4_proxy_coa=anchored.ipv4_proxy_coa, lifetime=FOREVER,
                             expires=now + FOREVER, sequence=1, access_technology_type=3, handoff_indicator=1,
                             registered=now)


MNS_AT_MAG1 = (registered("mn@example.org", FIRST_HNP, FIRST_HOA), registered("mn-b@example.org", SECOND_HNP))
CNS_AT_MAG2 = (registered("cn@example.org", CN_HNP, CN4),)


def mag_node(proxy_coa: IPv6Address = MAG1, ipv4_proxy_coa: IPv4Address | None = MAG1_4, *, name: str = "mag1",
             initiator: InitiatorPolicy | None = None, responder: ResponderPolicy | None = None,
             attached: tuple[BindingUpdateListEntry, ...] = (), random=None, responder_random=None,
             kcn: bytes | None = None, now: float = T0, ro_enabled: bool = True, mn_ids=None, guard=None,
             node_policy: dict | None = None, **registration) -> MagNode:
    """A MagNode whose MNs `attached` are registered already."""
    policy = MagNodePolicy(
        name=name, ro_enabled=ro_enabled, mn_ids=mn_ids or {}, **(node_policy or {}),
        registration=mag_policy(proxy_coa, ipv4_proxy_coa, **registration),
        initiator=initiator or initiator_policy(proxy_coa=proxy_coa, ipv4_proxy_coa=ipv4_proxy_coa),
        responder=responder or responder_policy(address=proxy_coa))
    node = MagNode(policy, random=random or seeded(1), responder_random=responder_random, kcn=kcn, guard=guard)
    node.restore([copy_entry(e) for e in attached], now)
    return node


def copy_entry(entry: BindingUpdateListEntry) -> BindingUpdateListEntry:
    return copy.deepcopy(entry)


def lma_node(*anchored: Anchored, allowed: Callable | None = None, peers=None, now: float = T0, guard=None,
             **changes) -> LmaNode:
    """An LmaNode whose binding cache holds `anchored` (MN1 and MN_B at MAG1,
    the CN at MAG2 by default)."""
    policy = LmaNodePolicy(binding_cache=lma_policy(**(dict(hnp_pool=PrefixPool(IPv6Network("2001:db8::/32")))
                                                       | changes)),
                           ro_allowed=allowed or (lambda mn, cn: True), peers=peers or {})
    node = LmaNode(policy, guard=guard)
    entries = [anchored_entry(a, f"anchored-{i}@example.org", now)
               for i, a in enumerate(anchored or (MN_AT_MAG1, MN_B_AT_MAG1, CN_AT_MAG2))]
    _, refused = node.restore(entries, now)
    assert not refused, refused
    return node


def cn_node(address: IPv6Address = OUTSIDE_CN, *, responder: ResponderPolicy | None = None, random=None,
            kcn: bytes | None = None) -> CnNode:
    return CnNode(CnNodePolicy(address=address, responder=responder or responder_policy(address=address)),
                  random=random or seeded(1), kcn=kcn)


@dataclass
class Flight:
    """A message on its way: sent by `origin` (a node name), delivered at `due`."""
    due: float
    order: int
    origin: str
    action: Send | SendHomePath


def node_addresses(node) -> set:
    """The addresses a node core answers on."""
    if isinstance(node, MagNode):
        p = node.policy.registration
        return {p.proxy_coa, p.ipv4_proxy_coa} - {None}
    if isinstance(node, LmaNode):
        p = node.policy.binding_cache
        return {p.address, p.ipv4_address} - {None}
    return {node.policy.address, node.policy.ipv4_address} - {None}


def assert_timers_agree(node) -> None:
    """The node's timer heaps (protocol/common.py Deadlines) hold exactly
    what a walk of its tables finds: each key at its current deadline, and
    nothing more (issue 13: the heap replaced that walk)."""
    def agree(deadlines, wanted: dict, tampered: bool = False) -> None:
        wanted = {key: d for key, d in wanted.items() if d is not None}
        assert {key: deadlines.get(key) for key in wanted} == wanted
        if not tampered:
            assert len(deadlines) == len(wanted)
            assert deadlines.next() == earliest(*wanted.values())
    if isinstance(node, MagNode):
        agree(node.bul._timers, {mn_id: earliest(e.retransmission.due, e.refresh_at, e.expires, e.retry_at)
                                 for mn_id, e in node.bul.entries.items()})
        initiator = node.initiator
        agree(initiator._timers, {pair: a.next_deadline for pair, a in initiator.attempts.items()})
        agree(initiator._forget_at, {pair: until for pair, (_, until) in initiator._failures.items()})
        idle = {pair: a.started for pair, a in initiator.attempts.items() if a.phase is Phase.BACKOFF}
        agree(initiator._idle, idle)
        assert sum(len(d) for d in initiator._idle_per_mn.values()) == len(idle)
        with_peer = {}
        for pair, attempt in initiator.attempts.items():
            if attempt.peer is not None:
                with_peer.setdefault(attempt.peer.address, set()).add(pair)
        assert {peer: set(pairs) for peer, pairs in initiator._with_peer.items()} == with_peer
    if isinstance(node, LmaNode):
        cache = node.cache
        agree(cache._timers, {mn_id: earliest(*(table[mn_id].expires for table in (cache.bindings, cache._deregistered)
                                                if mn_id in table), cache.pending[mn_id].due if mn_id in cache.pending
                                              else None)
                              for mn_id in {*cache.bindings, *cache._deregistered, *cache.pending}})
        queries = node.inter_lma
        agree(queries._deadlines, {q: q.deadline for q in queries.pending})
        agree(queries._expiry, {cn: a.expires for cn, a in queries.cache.items()})
    if isinstance(node, (MagNode, CnNode)):
        # a test may clear the bindings behind the core's back (a peer that lost its state):
        # then the heap and the index hold more than the table, which the core skips
        responder = node.responder
        tampered = len(responder._expiry) > len(responder.bindings)
        agree(responder._expiry, {pair: b.expires for pair, b in responder.bindings.items()}, tampered)
        bound_with = {}
        for pair, binding in responder.bindings.items():
            bound_with.setdefault(binding.peer, set()).add(pair)
        if not tampered:
            assert {peer: set(pairs) for peer, pairs in responder._with_peer.items()} == bound_with


def _grouped(items) -> dict:
    """{key: {values}} of (key, value) pairs."""
    out: dict = {}
    for key, value in items:
        out.setdefault(key, set()).add(value)
    return out


def assert_pool_agrees(pool) -> None:
    """Every free index below the pool's high-water mark waits in its heap."""
    free_below = {i for i in range(pool._first, pool._high) if i not in pool._owner_of_index}
    assert free_below <= pool._freed_set == set(pool._freed)


def assert_indexes_agree(node) -> None:
    """The node's lookup indexes (issue 14) hold exactly what a walk of its
    tables finds: each one replaced that walk on a message path."""
    if isinstance(node, LmaNode):
        cache = node.cache
        assert node._mag_of == {mn_id: e.proxy_coa for mn_id, e in cache.bindings.items()}
        assert {mag: set(users) for mag, users in node._through_mag.items()} == _grouped(
            (e.proxy_coa, mn_id) for mn_id, e in cache.bindings.items())
        assert {key: set(mn_ids) for key, mn_ids in cache.pending._by_revocation.items()} == _grouped(
            ((m.old.proxy_coa, m.sequence), mn_id) for mn_id, m in cache.pending.items())
        for pool in (cache.policy.hnp_pool, cache.policy.ipv4_pool):
            if pool is not None:
                assert_pool_agrees(pool)
        queries = node.inter_lma
        assert {key: set(cns) for key, cns in queries._cached_from.items()} == _grouped(
            (_notice_key(a.peer, cn), cn) for cn, a in queries.cache.items())
    if isinstance(node, MagNode):
        bul = node.bul
        entries = bul.entries.values()
        registered = [e for e in entries if e.state is BindingState.REGISTERED]
        assert bul._on_link.as_dict() == _grouped((e.link, e.mn_id) for e in entries)
        assert bul._registered_on.as_dict() == _grouped((e.link, e.mn_id) for e in registered)
        assert bul.any_registered == bool(registered)
        refreshes = [e.nat_refresh for e in registered if e.nat_detected and e.nat_refresh]
        assert bul.nat_refresh() == (min(refreshes) if refreshes else None)
        initiator = node.initiator
        attempts = initiator.attempts.values()
        assert initiator._by_local.as_dict() == _grouped((a.pair.local, a.pair) for a in attempts)
        assert initiator._with_peer_at.as_dict() == _grouped(
            ((a.peer.address, a.pair.local), a.pair) for a in attempts if a.peer is not None)
        assert initiator._failed_at.as_dict() == _grouped((pair.local, pair) for pair in initiator._failures)
        assert initiator._local_to.as_dict() == _grouped((a.pair.remote, a.pair) for a in attempts if a.local)
        assert set(initiator._locals) == {a.pair for a in attempts if a.local}
    if isinstance(node, (MagNode, CnNode)):
        responder = node.responder
        if len(responder._expiry) <= len(responder.bindings):      # unless a test cleared the bindings
            bindings = responder.bindings.values()
            assert responder._by_local.as_dict() == _grouped((b.pair.local, b.pair) for b in bindings)
            assert responder._with_peer_for.as_dict() == _grouped(((b.peer, b.pair.remote), b.pair)
                                                                  for b in bindings)
        # the pairs installed, in either role, as learned from the cores' actions (a test
        # may drive a core directly: test_scale_indexes.py checks them against the tables)
        beats = node.ro_heartbeats
        keys = [key for held in beats.pairs.values() for key in held]
        assert beats._peer_of == {key: peer for peer, held in beats.pairs.items() for key in held}
        assert beats.installed == {pair: len(roles) for pair, roles in _grouped(
            (pair, role) for role, pair in keys).items()}


class Domain:
    """Node cores, by name, joined by a network with a fake clock.

    Every message goes through wire.encode and wire.decode with the checksum
    of the addresses it travels with, and reaches its node's receive(), as
    the daemons hand it over. A message goes to the node whose own address it
    is sent to, else to the MAG the LMA has a binding at for that address: a
    SendHomePath (HoTI, HoT, a CoTI/CoT over IPv4 transport) crosses the LMA
    tunnels and is punted there, arriving with its inner src/dst; one in an
    IPv4 wrapper (fig. 3) is routed by its IPv4 destination. `drop`, `delay`
    and `hold` (callables of (origin, action)) lose, delay or set aside
    messages; held ones wait in `held` until `release`d. `log` keeps every
    action any node returned, in order, as (time, node, action); `traffic`
    every message sent, as (time, origin, action, message as decoded, fate)."""

    def __init__(self, nodes: dict, now: float = T0):
        self.nodes = dict(nodes)
        self.lma = next(node for node in self.nodes.values() if isinstance(node, LmaNode))
        self.now = now
        self.flights: list[Flight] = []
        self.held: list[Flight] = []
        self.log: list[tuple[float, str, object]] = []
        self.traffic: list[tuple[float, str, object, object, str]] = []
        self.drop = lambda origin, action: False
        self.delay = lambda origin, action: 0.0
        self.hold = lambda origin, action: False
        self._order = 0

    def binding_for(self, address):
        return self.lma.cache.binding_for_address(address)

    def name_at(self, address) -> str | None:
        """The node answering on address, or the MAG the LMA anchors it at."""
        address = address.ipv4_mapped or address if isinstance(address, IPv6Address) else address
        for name, node in self.nodes.items():
            if address in node_addresses(node):
                return name
        binding = self.binding_for(address)
        if binding is not None:
            return self.name_at(binding.proxy_coa)
        return None

    # --- what the nodes do --------------------------------------------------------------
    # each node's timer heaps and indexes checked against a walk of its tables after
    # each step (off in a test that makes the tables refuse a walk: test_scale_indexes.py)
    check_tables = True

    def post(self, node: str, actions: list) -> list:
        if self.check_tables:
            assert_timers_agree(self.nodes[node])
            assert_indexes_agree(self.nodes[node])
        for action in actions:
            self.log.append((self.now, node, action))
            if isinstance(action, (Send, SendHomePath)):
                flight = Flight(self.now + self.delay(node, action), self._order, node, action)
                self._order += 1
                fate = ("dropped" if self.drop(node, action) else "held" if self.hold(node, action)
                        else "sent")
                self.traffic.append((self.now, node, action, self.decoded(action), fate))
                if fate == "held":
                    self.held.append(flight)
                elif fate == "sent":
                    self.flights.append(flight)
        return actions

    def call(self, node: str, method: str, *args, **kwargs) -> list:
        """One of a node's inputs (attach, flow_seen, link_down ...), now."""
        return self.post(node, getattr(self.nodes[node], method)(*args, self.now, **kwargs))

    @staticmethod
    def decoded(action):
        """The message as its receiver decodes it, and its Arrival: a message
        of the home path arrives punted from the LMA tunnel; one in an IPv4
        wrapper (fig. 2, 3) with the IPv4 addresses as src/dst and the IPv6
        header's as proxy_src/proxy_dst."""
        wrap = getattr(action, "wrap_ipv4", None)
        if isinstance(action, SendHomePath) or wrap is not None:
            message = decode(encode(action.message, action.src, action.dst), action.src, action.dst)
            if wrap is not None:
                return message, Arrival(IPv6Address(f"::ffff:{wrap[0]}"), IPv6Address(f"::ffff:{wrap[1]}"),
                                        proxy_src=action.src, proxy_dst=action.dst, home_path=True)
            return message, Arrival(action.src, action.dst, home_path=True)
        return carry(action)

    def behind_nat(self, node_address: IPv6Address, mapping: UdpEndpoint) -> None:
        """What node_address sends over IPv4 arrives from a NAT's mapping."""
        decoded = self.decoded

        def through_nat(action):
            message, arrival = decoded(action)
            if isinstance(action, Send) and action.ipv4_dst is not None and action.src == node_address:
                arrival = Arrival(arrival.src, arrival.dst, ipv4_src=mapping, ipv4_dst=arrival.ipv4_dst)
            return message, arrival
        self.decoded = through_nat

    def destination(self, flight: Flight) -> str | None:
        action = flight.action
        if getattr(action, "wrap_ipv4", None) is not None:
            return self.name_at(action.wrap_ipv4[1])
        if isinstance(action, SendHomePath):
            # into the LMA tunnel, out toward the MAG serving the inner destination
            return self.name_at(action.dst)
        if action.ipv4_dst is not None:      # an address of no node: a NAT's, which forwards it on
            return self.name_at(action.ipv4_dst.address) or self.name_at(action.dst)
        return self.name_at(action.dst)

    def deliver(self, flight: Flight, message=None) -> list:
        """Hand a message to its node now; `message` overrides the decoded one
        (a (message, arrival) pair built or tampered with by the test)."""
        node = self.destination(flight)
        if node is None:
            return []
        message, arrival = message or self.decoded(flight.action)
        return self.post(node, self.nodes[node].receive(message, arrival, self.now))

    def release(self, index: int = 0) -> list:
        """Deliver a held message now."""
        return self.deliver(self.held.pop(index))

    # --- the clock ----------------------------------------------------------------------------
    def run(self, seconds: float = 0.0) -> None:
        """Let `seconds` pass: deliver messages and fire timers in time order
        (a message due at the same instant as a timer goes first)."""
        until = self.now + seconds
        for _ in range(100_000):
            flight = min(self.flights, key=lambda f: (f.due, f.order), default=None)
            timer = earliest(*(node.next_deadline() for node in self.nodes.values()))
            if flight is not None and flight.due <= until and (timer is None or flight.due <= timer):
                self.flights.remove(flight)
                self.now = max(self.now, flight.due)
                self.deliver(flight)
            elif timer is not None and timer <= until:
                self.now = max(self.now, timer)
                for name, node in self.nodes.items():
                    deadline = node.next_deadline()
                    if deadline is not None and deadline <= self.now:
                        self.post(name, node.on_timer(self.now))
            else:
                self.now = max(self.now, until)
                return
        raise AssertionError("the network never settles")

    def run_until(self, when: float) -> None:
        self.run(max(when - self.now, 0.0))

    # --- what happened ---------------------------------------------------------------------
    def actions(self, node: str | None = None, cls=object, since: int = 0) -> list:
        """Actions of `cls` that `node` (any node when None) returned, from log index `since`."""
        return [a for _, n, a in self.log[since:] if (node is None or n == node) and isinstance(a, cls)]

    def sent(self, cls, origin: str | None = None, since: int = 0) -> list:
        """(time, action, decoded message, fate) of every message of `cls` sent, oldest first."""
        return [(t, action, message, fate) for t, o, action, (message, _), fate in self.traffic[since:]
                if isinstance(message, cls) and (origin is None or o == origin)]

    def messages(self, cls, origin: str | None = None, since: int = 0) -> list:
        return [message for _, _, message, _ in self.sent(cls, origin, since)]

    def mark(self) -> tuple[int, int]:
        """Where the log and the traffic stand now (to look at what follows)."""
        return len(self.log), len(self.traffic)


class RoNetwork(Domain):
    """MAG1's MagNode ("initiator"), its RO peer ("responder": MAG2's MagNode
    or a CnNode) and the LmaNode ("lma")."""

    def __init__(self, mag1: MagNode, peer: MagNode | CnNode, lma: LmaNode, now: float = T0):
        super().__init__({"initiator": mag1, "responder": peer, "lma": lma}, now)
        self.mag1, self.peer = mag1, peer

    @property
    def initiator(self):
        return self.mag1.initiator

    @property
    def responder(self):
        return self.peer.responder

    def start(self, local=MN, remote=CN, **kwargs) -> list:
        """The initiator's own input (a trigger, or the operator's start with
        operator=True)."""
        return self.post("initiator", self.initiator.start(local, remote, self.now, **kwargs))

    def stop(self, local=MN, remote=CN, reason: StopReason = StopReason.STOPPED) -> list:
        return self.post("initiator", self.initiator.stop(RoPair(local, remote), self.now, reason))
