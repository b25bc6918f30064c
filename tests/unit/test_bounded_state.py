"""Bounded state (issue 13, item 2): every table others fill has a limit, at
the limit the oldest or least useful entry goes (or the newcomer is
refused) and that is counted; timers are heaps whose stale entries never
outgrow the live ones. The floods here are what an attacker can send:
strangers that complete the RR for addresses of their own, flows toward
spoofed destinations."""

import random
from ipaddress import IPv6Address

from prometheus_client import generate_latest
from protocol_helpers import (CN, CN_AT_MAG2, FIRST_HNP, LMA, MAG1, MN, OUTSIDE_CN, T0, carry, initiator_policy,
                              responder_policy, seeded)

from pmip6ctl import security, wire
from pmip6ctl.metrics import DataplaneCollector, Metrics
from pmip6ctl.protocol.cn import CnNode, CnNodePolicy
from pmip6ctl.protocol.common import Deadlines
from pmip6ctl.protocol.limits import Bounded, PrefixRateLimiter
from pmip6ctl.protocol.ro import RoInitiator, RoInstalled, RoPair, RoRejected
from pmip6ctl.protocol.vocabulary import RejectReason
from pmip6ctl.transport import Arrival, Send

from test_protocol_inter_lma import Domain as LmaDomain, lri, outcomes


# --- the timer heap -------------------------------------------------------------------------------

def test_deadlines_give_the_soonest_and_take_what_is_due_once():
    d = Deadlines()
    d.set("a", 5.0)
    d.set("b", 3.0)
    d.set("c", 9.0)
    d.set("b", 7.0)                     # moved: its old entry is stale
    d.discard("c")
    assert d.next() == 5.0 and len(d) == 2
    assert d.pop_due(6.0) == ["a"] and d.pop_due(6.0) == []
    assert d.next() == 7.0 and d.get("b") == 7.0 and d.get("a") is None
    assert d.pop_due(100.0) == ["b"] and d.next() is None


def test_stale_heap_entries_are_compacted_so_churn_never_grows_the_heap():
    """Each move of a deadline leaves a stale entry; once they outnumber the
    live ones the heap is rebuilt: it never holds more than twice the keys
    (or a small constant)."""
    d = Deadlines()
    rng = random.Random(7)
    keys = range(100)
    for step in range(50_000):
        key = rng.choice(keys)
        d.set(key, None if rng.random() < 0.1 else T0 + rng.random() * 1000)
        assert d.heap_size <= max(Deadlines.COMPACT_ABOVE, 2 * len(d)) + 1
    live = {k: d.get(k) for k in keys if d.get(k) is not None}
    assert d.next() == min(live.values())
    assert d.pop_due(T0 + 2000) == sorted(live, key=live.get)


def test_the_initiators_heap_stays_bounded_under_churn():
    """Flows come and go by the thousand (start, stop): the heap keeps at
    most twice the attempts held, and the attempts' timers stay exact."""
    initiator = RoInitiator(initiator_policy(), random=seeded(3))
    held = []
    for step in range(5_000):
        now = T0 + step * 0.01
        cn = IPv6Address(f"2001:db8:200::{step % 300 + 1:x}")
        initiator.start(MN, cn, now, mn_prefix=FIRST_HNP)
        held.append(RoPair(MN, cn))
        if len(held) > 20:
            initiator.stop(held.pop(0), now)
        initiator.on_timer(now)
        assert initiator._timers.heap_size <= max(Deadlines.COMPACT_ABOVE, 2 * len(initiator.attempts)) + 1
    assert initiator.next_deadline() == min(a.next_deadline for a in initiator.attempts.values())


# --- RO initiator: failures remembered ----------------------------------------------------------

def test_remembered_failures_are_bounded_and_the_soonest_to_be_forgotten_goes():
    """A spoofing MN's flows toward destinations nobody answers for each
    leave a failure behind (for a longer backoff next time): at most
    max_remembered_failures of them, counted as they go."""
    initiator = RoInitiator(initiator_policy(max_remembered_failures=3), random=seeded(1))
    cns = [IPv6Address(f"2001:db8:200::{n}") for n in range(1, 6)]
    for n, cn in enumerate(cns):
        initiator.start(MN, cn, T0 + n, mn_prefix=FIRST_HNP)        # the LMA never answers
    for step in range(200):
        initiator.on_timer(T0 + step)                # each fails at +15 s, is forgotten at its retry, +30 s
    assert initiator.attempts == {}
    assert sorted(p.remote for p in initiator._failures) == cns[2:]
    assert initiator.pushed_out == {("remembered_failures", "soonest_forgotten"): 2}


# --- The responder: RO bindings and replay memory at a CN agent ---------------------------------

STRANGERS = [IPv6Address(f"2001:db8:bad::{n:x}") for n in range(1, 40)]


def cn_agent(max_ro_pairs=65536, max_replay_entries=65536) -> CnNode:
    return CnNode(CnNodePolicy(address=OUTSIDE_CN, max_ro_pairs=max_ro_pairs,
                               responder=responder_policy(address=OUTSIDE_CN, max_replay_entries=max_replay_entries)),
                  random=seeded(1))


def rr_binding_update(node: CnNode, sender: IPv6Address, now: float, sequence: int = 1) -> tuple:
    """What anyone on the Internet can do: the RR for its own address as the
    home and the care-of address, then a BU under that Kbm (RFC 6275 §5.2.5)."""
    [hot] = node.receive(wire.HomeTestInit(home_init_cookie=bytes(8)), Arrival(sender, OUTSIDE_CN), now)
    [cot] = node.receive(wire.CareofTestInit(careof_init_cookie=bytes(8)), Arrival(sender, OUTSIDE_CN), now)
    hot, cot = hot.message, cot.message
    kbm = security.binding_management_key(hot.home_keygen_token, cot.careof_keygen_token)
    bu = wire.BindingUpdate(sequence=sequence, flags=wire.BUFlags.A | wire.BUFlags.P, lifetime=100, options=[
        wire.HomeNetworkPrefix(128, sender), wire.CNHomeNetworkPrefix(128, OUTSIDE_CN),
        wire.Timestamp.from_unix(now), wire.NonceIndices(hot.home_nonce_index, cot.careof_nonce_index)])
    return carry(Send(security.sign_binding_update(bu, kbm, sender, OUTSIDE_CN), sender, OUTSIDE_CN))


def test_a_flood_of_strangers_cannot_push_out_a_cn_agents_bindings_past_its_room_they_get_130():
    """Policy: a binding is state someone proved the RR for; a newcomer past
    dataplane.max_ro_entries is refused (BA 130, counted), never the held one
    pushed out."""
    node = cn_agent(max_ro_pairs=2)
    legit = [MN, IPv6Address("2001:db8:100::2")]
    for n, mn in enumerate(legit):
        assert any(isinstance(a, RoInstalled) for a in node.receive(*rr_binding_update(node, mn, T0 + n), T0 + n))
    held = dict(node.responder.bindings)
    for n, stranger in enumerate(STRANGERS):
        now = T0 + 2 + n * 0.1
        actions = node.receive(*rr_binding_update(node, stranger, now), now)
        assert actions[0] == RoRejected(RoPair(OUTSIDE_CN, stranger), stranger, RejectReason.NO_ROOM)
        assert actions[1].message.status == wire.Status.INSUFFICIENT_RESOURCES
    assert node.responder.bindings == held
    [bindings] = [b for b in node.bounded() if b.table == "ro_bindings"]
    assert (bindings.held, bindings.capacity, bindings.refused) == (2, 2, {"no_room": len(STRANGERS)})


def test_replay_memory_is_bounded_and_a_bound_pair_stays_protected_when_strangers_push_its_entry_out():
    node = cn_agent(max_replay_entries=4)
    mine = rr_binding_update(node, MN, T0)
    assert any(isinstance(a, RoInstalled) for a in node.receive(*mine, T0))
    for n, stranger in enumerate(STRANGERS[:10]):
        node.receive(*rr_binding_update(node, stranger, T0 + 1), T0 + 1)
    assert node.responder.replay_entries == 4 and RoPair(OUTSIDE_CN, MN) not in node.responder._last_timestamp
    [replay] = [b for b in node.bounded() if b.table == "ro_replay"]
    assert replay.pushed_out == {"oldest": 11 - 4}
    # MN's BU again, within the window: its binding's own Timestamp still refuses it
    assert node.receive(*mine, T0 + 2)[0] == RoRejected(RoPair(OUTSIDE_CN, MN), MN, RejectReason.REPLAYED)


def test_replay_timestamps_leave_by_the_timer_once_out_of_the_window():
    """Found by the soak (bench/scale.py): the responder's replay entries
    were dropped only when the next BU came, so after a burst its table
    stayed full. next_deadline now names when the oldest leaves the window."""
    node = cn_agent()
    for n, stranger in enumerate(STRANGERS[:5]):
        node.receive(*rr_binding_update(node, stranger, T0 + n * 0.1), T0 + n * 0.1)
    assert node.responder.replay_entries == 5
    window = node.responder.policy.timestamp_window
    due = node.next_deadline()
    assert T0 + window < due < T0 + window + 0.01       # the first stranger's Timestamp, and no binding before
    node.on_timer(due)
    assert node.responder.replay_entries == 4
    node.on_timer(T0 + 1 + window)
    assert node.responder.replay_entries == 0


# --- The LMA: peers' answers cached ---------------------------------------------------------------

def test_cached_peer_answers_are_bounded_and_the_oldest_goes():
    """Every address in a CN's /64 is a key of its own: MNs spoofing such
    destinations fill the cache, which keeps max_cached answers."""
    domain = LmaDomain()
    domain.lma1.max_cached = 3
    cns = [IPv6Address(int(CN) + n) for n in range(5)]                # all within the CN's HNP at LMA2
    for n, cn in enumerate(cns):
        actions = []
        for to_peer in domain.ask(lri(wire.CNAddress(cn), sequence=n), now=T0 + n):
            send, _ = domain.answer(to_peer)
            actions += domain.deliver(send, T0 + n)
        assert outcomes(actions) == ["answered_by_peer"]
    assert list(domain.lma1.cache) == cns[2:]
    assert domain.lma1.pushed_out == {("peer_answers", "oldest"): 2}
    assert domain.lma1.next_deadline() == T0 + 2 + 420      # the oldest answer left: the others' timers went too
    assert outcomes(domain.ask(lri(wire.CNAddress(cns[4])), now=T0 + 10)) == ["answered_from_cache"]
    assert CN_AT_MAG2.proxy_coa == domain.lma1.cache[cns[4]].mag


# --- answers to strangers: the prefixes tracked ------------------------------------------------------

def test_answer_prefixes_are_bounded_and_the_least_recently_seen_is_forgotten_counted():
    limit = PrefixRateLimiter(rate=1.0, burst=1, max_prefixes=3)
    victims = [IPv6Address(f"2001:db8:{n:x}::1") for n in range(1, 6)]
    for victim in victims:
        assert limit.allow(victim, T0)
    assert len(limit) == 3 and limit.forgotten == 2
    assert limit.allow(victims[0], T0)           # forgotten: a fresh bucket (a full burst) again
    node = cn_agent()
    node.limit_answers(rate=1.0, burst=1, prefixes=3)
    for victim in victims:
        node.receive(wire.HomeTestInit(home_init_cookie=bytes(8)), Arrival(victim, OUTSIDE_CN), T0)
    [prefixes] = [b for b in node.bounded() if b.table == "answer_prefixes"]
    assert (prefixes.held, prefixes.capacity, prefixes.setting, prefixes.pushed_out) == (
        3, 3, "security.answer_prefixes", {"least_recently_seen": 2})


# --- every node reports its bounded tables ---------------------------------------------------------

def test_each_node_reports_its_tables_with_their_config_keys():
    from protocol_helpers import lma_node, mag_node
    settings = {b.table: b.setting for node in (mag_node(), lma_node(), cn_agent()) for b in node.bounded()}
    assert settings == {"ro_attempts": "ro.max_attempts", "ro_remembered_failures": "ro.max_remembered_failures",
                        "ro_replay": "ro.max_replay_entries", "peer_queries": "lma.max_pending_queries",
                        "peer_answers": "lma.max_cached_answers", "ro_bindings": "dataplane.max_ro_entries",
                        "local_routes": "dataplane.max_ro_entries",
                        "handover_buffer": "mag.buffer_total", "downlink_hold": "lma.hold_total"}


def test_the_collector_exports_each_table_next_to_its_capacity_with_what_went_by_reason():
    metrics = Metrics("mag1", "mag")
    tables = [Bounded("ro_attempts", "ro.max_attempts", 3, 8, {"attempt_limit": 2}, {"attempt_limit_per_mn": 5})]
    metrics.add_collector(DataplaneCollector("mag1", lambda: None, lambda: [], bounded=lambda: tables))
    text = generate_latest(metrics.registry).decode()
    assert 'pmip6_table_entries{node="mag1",table="ro_attempts"} 3.0' in text
    assert 'pmip6_table_capacity{node="mag1",table="ro_attempts"} 8.0' in text
    assert 'pmip6_table_pushed_out_total{node="mag1",reason="attempt_limit",table="ro_attempts"} 2.0' in text
    assert 'pmip6_table_refused_total{node="mag1",reason="attempt_limit_per_mn",table="ro_attempts"} 5.0' in text


def test_an_unknown_mh_type_from_a_stranger_is_checked_against_the_peers_without_a_walk():
    """A MAG answers an unknown MH type only to its LMA and RO peers; the
    check is a lookup whatever the number of attempts (issue 13)."""
    from protocol_helpers import mag_node
    node = mag_node()
    node.initiator.start(MN, CN, T0, mn_prefix=FIRST_HNP)
    assert not node._knows(STRANGERS[0]) and node._knows(LMA) and not node._knows(MAG1)
