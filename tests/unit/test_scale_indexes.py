"""Issue 14: every lookup a message or a timer makes costs O(1) or O(log n),
whatever the number of bindings, pairs or peers. Each test here would fail
on the walk an index replaced: the table it used to walk is swapped for one
that refuses to be walked (NoWalk), or its steps are counted. No timing."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from pmip6ctl import wire
from pmip6ctl.protocol.auth import SignalingGuard, SignalingPeer
from pmip6ctl.protocol.binding_cache import PendingMoves
from pmip6ctl.protocol.common import Deadlines
from pmip6ctl.protocol.heartbeat import HeartbeatPolicy
from pmip6ctl.protocol.index import AddressGroups, Groups
from pmip6ctl.protocol.inter_lma import CachedAnswer, InterLmaQuery
from pmip6ctl.protocol.mag import MagNode
from pmip6ctl.protocol.pools import AddressPool, PrefixPool
from pmip6ctl.protocol.ro import RoPair
from pmip6ctl.protocol.vocabulary import RejectReason, RelayOutcome
from pmip6ctl.security import PeerKey
from pmip6ctl.transport import Arrival, Send

from protocol_helpers import (CN, CN4, CN_HNP, LMA, MAG1, MAG2, MAG2_4, T0, Anchored, Domain,
                               assert_pool_agrees, carry, lma_node, mag_node, pbu, registered, seeded)


class NoWalk(dict):
    """A table a message path may look into but not walk."""

    def _walked(self, *args):
        raise AssertionError(f"walked a {len(self)}-entry table on a message path")

    __iter__ = keys = values = items = _walked


def plain(table: dict) -> dict:
    """What a NoWalk table holds, for the test's own checks."""
    return dict(dict.items(table))


class NoWalkPending(PendingMoves):
    __iter__ = keys = values = items = NoWalk._walked


class Counted(dict):
    """A table whose walks are counted, entry by entry."""

    def __init__(self, *args):
        super().__init__(*args)
        self.steps = 0

    def _count(self, iterator):
        for item in iterator:
            self.steps += 1
            yield item

    def __iter__(self):
        return self._count(super().__iter__())

    def items(self):
        return self._count(super().items())


# --- the pools -----------------------------------------------------------------------------

class CountedProbes(dict):
    def __init__(self, *args):
        super().__init__(*args)
        self.probes = 0

    def __contains__(self, key):
        self.probes += 1
        return super().__contains__(key)


def test_an_allocation_after_churn_below_many_held_prefixes_does_not_scan_them():
    pool = PrefixPool(IPv6Network("2001:db8::/40"))
    held = [pool.allocate(f"mn{i}") for i in range(5000)]
    pool._owner_of_index = CountedProbes(pool._owner_of_index)
    pool.release("mn0")
    assert pool.allocate("new0") == held[0]                  # the lowest free first, as before
    assert pool.allocate("new1") == IPv6Network("2001:db8:0:1388::/64")    # index 5000: past the held ones
    assert pool._owner_of_index.probes <= 4                  # the old scan looked at 5,000


def test_restored_addresses_are_passed_once_not_on_every_allocation():
    pool = AddressPool(IPv4Network("10.0.0.0/16"))
    for i in range(1, 3001):
        assert pool.reserve(f"old{i}", IPv4Network("10.0.0.0/16")[i])
    pool._owner_of_index = CountedProbes(pool._owner_of_index)
    first = pool.allocate("new0")
    passed = pool._owner_of_index.probes                     # the restored ones, once
    pool.release("old7")
    assert [first, pool.allocate("new1"), pool.allocate("new2")] == [
        IPv4Address("10.0.11.185"), IPv4Address("10.0.0.7"), IPv4Address("10.0.11.186")]
    assert pool._owner_of_index.probes - passed <= 4
    assert_pool_agrees(pool)


def test_the_pool_keeps_lowest_free_first_through_any_churn():
    """Against the rule itself: the lowest index nobody holds."""
    import random
    rng = random.Random(7)
    pool = AddressPool(IPv4Network("10.0.0.0/24"))
    owners: dict[str, IPv4Address] = {}
    for step in range(3000):
        if owners and rng.random() < 0.45:
            gone = rng.choice(sorted(owners))
            pool.release(gone)
            del owners[gone]
        elif rng.random() < 0.1:
            wanted = IPv4Network("10.0.0.0/24")[rng.randrange(1, 255)]
            if pool.reserve(f"r{step}", wanted):
                owners[f"r{step}"] = wanted
        elif len(owners) < pool.capacity:
            held = set(owners.values())
            lowest = next(a for a in list(IPv4Network("10.0.0.0/24"))[1:255] if a not in held)
            owners[f"a{step}"] = pool.allocate(f"a{step}")
            assert owners[f"a{step}"] == lowest
        assert_pool_agrees(pool)


# --- the LMA -----------------------------------------------------------------------------------

def _lma_with(mags: int, per_mag: int):
    anchored = [Anchored(IPv6Network((int(IPv6Address("2001:db8:1000::")) + ((m * per_mag + i) << 64), 64)),
                         IPv6Address(int(IPv6Address("2001:db8:a000::1")) + (m << 16)))
                for m in range(mags) for i in range(per_mag)]
    return lma_node(*anchored), anchored


def test_a_binding_that_registers_moves_or_ends_finds_its_serving_mag_without_a_walk_of_them():
    node, anchored = _lma_with(mags=20, per_mag=3)
    node._through_mag = NoWalk(node._through_mag)
    mag_a, mag_b = anchored[0].proxy_coa, anchored[-1].proxy_coa
    # a new MN at mag_a
    node.receive(pbu("new@example.org", T0 + 1, hi=1), Arrival(mag_a, LMA), T0 + 1)
    assert node._mag_of["new@example.org"] == mag_a
    # it moves to mag_b: the old MAG is asked first (RFC 5846), its BRA lets it go
    node.cache.pending = NoWalkPending()
    actions = node.receive(pbu("new@example.org", T0 + 2, hi=3), Arrival(mag_b, LMA), T0 + 2)
    (bri,) = [a.message for a in actions if isinstance(a, Send)]
    bra = wire.BindingRevocation.acknowledgement(bri.sequence, wire.RevocationStatus.SUCCESS,
                                                 [wire.find_option(bri, wire.Timestamp)])
    node.receive(bra, Arrival(mag_a, LMA), T0 + 2.1)
    assert node.bindings["new@example.org"].proxy_coa == mag_b and node._mag_of["new@example.org"] == mag_b
    assert "new@example.org" not in node._through_mag[mag_a]
    # it deregisters
    node.receive(pbu("new@example.org", T0 + 3, lifetime=0, sequence=2), Arrival(mag_b, LMA), T0 + 3)
    assert "new@example.org" not in node._mag_of and "new@example.org" not in node._through_mag[mag_b]


def test_a_bra_is_matched_by_mag_sequence_and_timestamp():
    node, anchored = _lma_with(mags=2, per_mag=1)
    node.cache.pending = NoWalkPending()
    mn_id = "anchored-0@example.org"
    old, new = anchored[0].proxy_coa, anchored[1].proxy_coa
    actions = node.receive(pbu(mn_id, T0 + 1, hi=3), Arrival(new, LMA), T0 + 1)
    (bri,) = [a.message for a in actions if isinstance(a, Send)]
    stamp = wire.find_option(bri, wire.Timestamp)
    for wrong_src, wrong_sequence, wrong_stamp in ((new, bri.sequence, stamp), (old, bri.sequence + 1, stamp),
                                                   (old, bri.sequence, wire.Timestamp(stamp.timestamp + 1))):
        bra = wire.BindingRevocation.acknowledgement(wrong_sequence, wire.RevocationStatus.SUCCESS, [wrong_stamp])
        assert node.receive(bra, Arrival(wrong_src, LMA), T0 + 1.1) == []
    assert mn_id in node.cache.pending
    bra = wire.BindingRevocation.acknowledgement(bri.sequence, wire.RevocationStatus.SUCCESS, [stamp])
    node.receive(bra, Arrival(old, LMA), T0 + 1.2)
    assert mn_id not in node.cache.pending and node.bindings[mn_id].proxy_coa == new


def test_pending_moves_change_by_item_only():
    with pytest.raises(TypeError):
        PendingMoves().clear()


LMA2 = IPv6Address("2001:db8:ffff::2")


def test_a_peer_notice_finds_the_cached_answers_it_names_without_a_walk_of_the_cache():
    q = InterLmaQuery(LMA, {LMA2: PeerKey(0x77, bytes(32))})
    for i in range(200):
        q._cache(IPv6Address(int(IPv6Address("2001:db8:300::1")) + (i << 64)), CachedAnswer(MAG2, None, T0 + 99, LMA2))
    q._cache(IPv4Address("198.51.100.77"), CachedAnswer(MAG2, None, T0 + 99, LMA2))
    q.cache = NoWalk(q.cache)
    notice = wire.LocalizedRoutingAck(sequence=1, status=wire.LRAStatus.MN_NOT_ATTACHED, lifetime=0, unsolicited=True,
                                      options=[wire.CNHomeNetworkPrefix(64, IPv6Address("2001:db8:300:5::")),
                                               wire.CNIPv4HomeAddress(32, IPv4Address("198.51.100.77"))])
    relayed = q._on_notice(notice, LMA2)
    assert [(r.cn, r.outcome) for r in relayed] == [
        (IPv6Address("2001:db8:300:5::1"), RelayOutcome.CACHE_INVALIDATED_BY_PEER),
        (IPv4Address("198.51.100.77"), RelayOutcome.CACHE_INVALIDATED_BY_PEER)]
    assert len(q.cache) == 199
    # another peer's notice for the same prefix changes nothing of LMA2's
    assert q._on_notice(notice, IPv6Address("2001:db8:ffff::3")) == []


def test_a_notice_wider_than_a_group_still_finds_its_answers():
    q = InterLmaQuery(LMA, {LMA2: PeerKey(0x77, bytes(32))})
    inside = [IPv6Address("2001:db8:300::1"), IPv6Address("2001:db8:300:ff::1")]
    for cn in [*inside, IPv6Address("2001:db8:301::1")]:
        q._cache(cn, CachedAnswer(MAG2, None, T0 + 99, LMA2))
    notice = wire.LocalizedRoutingAck(sequence=1, status=wire.LRAStatus.MN_NOT_ATTACHED, lifetime=0, unsolicited=True,
                                      options=[wire.CNHomeNetworkPrefix(48, IPv6Address("2001:db8:300::"))])
    assert sorted(r.cn for r in q._on_notice(notice, LMA2)) == inside


def test_a_settled_peer_query_leaves_in_o1():
    q = InterLmaQuery(LMA, {})
    assert isinstance(q.pending, dict)                      # a list's remove() was O(max_pending)


def test_the_guard_retires_replaced_keys_from_a_heap():
    peers = {IPv6Address(int(MAG1) + i): SignalingPeer(IPv6Address(int(MAG1) + i), PeerKey(i + 1, bytes([i]) * 32))
             for i in range(50)}
    guard = SignalingGuard(peers)
    rotated = {a: dataclasses.replace(p, key=PeerKey(p.key.spi + 100, bytes([7]) * 32)) for a, p in peers.items()}
    changes = guard.rekey(rotated, T0, grace=30.0)
    assert len(changes.rotated) == 50
    assert isinstance(guard._retire_at, Deadlines) and guard.retire_at == T0 + 30.0
    guard.retire(T0 + 29)
    assert all(p.key.previous is not None for p in guard.peers.values())
    guard.retire(T0 + 30)
    assert guard.retire_at is None and all(p.key.previous is None for p in guard.peers.values())


# --- the MAG -----------------------------------------------------------------------------------

def _mn(i: int) -> tuple[str, IPv6Network]:
    return f"mn{i}@example.org", IPv6Network((int(IPv6Address("2001:db8:100::")) + (i << 64), 64))


def _ro_domain(mns: int = 6, **mag2_policy) -> Domain:
    """MAG1 with mns MNs on two links, each with a flow to the CN at MAG2, optimized."""
    attached = [registered(_mn(i)[0], _mn(i)[1], link=f"acc{i % 2}") for i in range(mns)]
    anchored = [Anchored(_mn(i)[1], MAG1) for i in range(mns)] + [Anchored(CN_HNP, MAG2, CN4)]
    d = Domain({"mag1": mag_node(attached=attached, random=seeded(1)),
                "mag2": mag_node(MAG2, MAG2_4, name="mag2", attached=(registered("cn@example.org", CN_HNP, CN4),),
                                 node_policy=mag2_policy),
                "lma": lma_node(*anchored)})
    for i in range(mns):
        d.call("mag1", "flow_seen", _mn(i)[1][0x10], CN)
    d.run(1)
    return d


def _no_walks(d: Domain, node: MagNode) -> None:
    d.check_tables = False                                 # (the helpers' own checks walk)
    node.bul.entries = NoWalk(node.bul.entries)
    node.initiator.attempts = NoWalk(node.initiator.attempts)
    node.responder.bindings = NoWalk(node.responder.bindings)


def test_an_mn_that_leaves_takes_its_pairs_along_without_a_walk_of_the_mns_or_the_pairs():
    d = _ro_domain()
    mag1, mag2 = d.nodes["mag1"], d.nodes["mag2"]
    assert len(mag1.initiator.attempts) == 6 and len(mag2.responder.bindings) == 6
    _no_walks(d, mag1)
    _no_walks(d, mag2)
    d.call("mag1", "detach", _mn(0)[0])                    # the routes, the RA, its pair, the LMA's watch
    d.call("mag1", "link_down", "acc1")                     # mn1, mn3, mn5 leave with their carrier
    d.run(2)
    assert {p.local for p in plain(mag1.initiator.attempts)} == {_mn(i)[1][0x10] for i in (2, 4)}
    assert {p.remote for p in plain(mag2.responder.bindings)} == {_mn(i)[1][0x10] for i in (2, 4)}
    # the CN itself leaves MAG2: its responder pairs go, found by its prefix
    d.call("mag2", "detach", "cn@example.org")
    d.run(2)
    assert not plain(mag2.responder.bindings) and not plain(mag1.initiator.attempts)


def test_the_last_mn_on_a_link_withdraws_the_router_as_a_walk_would_say():
    d = _ro_domain(mns=3)
    mag1 = d.nodes["mag1"]
    _no_walks(d, mag1)
    first = d.call("mag1", "detach", _mn(0)[0])             # acc0 keeps mn2
    last = d.call("mag1", "detach", _mn(2)[0])
    adverts = [a for a in first + last if type(a).__name__ == "Advertise"]
    assert [(a.link, a.withdraw, a.last_router) for a in adverts] == [("acc0", True, False), ("acc0", True, True)]


def test_room_for_an_ro_pair_is_counted_not_walked_and_agrees_with_the_tables():
    d = _ro_domain(mns=3, max_ro_pairs=4)
    mag1, mag2 = d.nodes["mag1"], d.nodes["mag2"]
    _no_walks(d, mag2)
    # a fourth pair fits, a fifth is refused with status 130 (no room)
    d.call("mag1", "flow_seen", _mn(0)[1][0x11], CN)
    d.call("mag1", "flow_seen", _mn(1)[1][0x11], CN)
    d.run(1)
    refused = [a for _, n, a in d.log if n == "mag2" and getattr(a, "reason", None) is RejectReason.NO_ROOM]
    assert len(refused) >= 1
    bindings = plain(mag2.responder.bindings)
    assert len(bindings) == 4 and mag2.ro_heartbeats.installed == {pair: 1 for pair in bindings}
    assert set(mag2.ro_heartbeats.pairs) == {MAG1}
    initiated = {p for p, a in plain(mag1.initiator.attempts).items() if a.established}
    assert mag1.ro_heartbeats.installed == {pair: 1 for pair in initiated} and len(initiated) == 4


def test_a_binding_error_finds_the_pairs_of_the_mn_it_names():
    d = _ro_domain(mns=4)
    mag1, mag2 = d.nodes["mag1"], d.nodes["mag2"]
    _no_walks(d, mag1)
    _no_walks(d, mag2)
    # every pair is with the same peer: the BE looks only at the pairs of the MN it names
    mag1.initiator._with_peer[MAG2] = with_mag2 = Counted(mag1.initiator._with_peer[MAG2])
    mag2.responder._with_peer[MAG1] = with_mag1 = Counted(mag2.responder._with_peer[MAG1])
    named = _mn(2)[1][0x10]
    to_mag2 = d.post("mag2", mag2.receive(*carry(Send(wire.BindingError(1, named), MAG1, MAG2)), d.now))
    to_mag1 = d.post("mag1", mag1.receive(*carry(Send(wire.BindingError(1, named), MAG2, MAG1)), d.now))
    assert [(a.pair, a.reason) for a in to_mag2 if type(a).__name__ == "RoRejected"] == [
        (RoPair(CN, named), RejectReason.UNAUTHENTICATED_BE)]
    assert [(a.pair, a.reason) for a in to_mag1 if type(a).__name__ == "RoRejected"] == [
        (RoPair(named, CN), RejectReason.UNAUTHENTICATED_BE)]
    assert with_mag2.steps == with_mag1.steps == 0           # the old filter went through all four


def test_stops_forget_old_deregistrations_from_the_front_not_by_a_rebuild():
    d = _ro_domain(mns=8)
    initiator = d.nodes["mag1"].initiator
    initiator._deregistered = Counted(initiator._deregistered)
    for i in range(8):
        d.call("mag1", "stop_ro", RoPair(_mn(i)[1][0x10], CN))
    assert len(initiator._deregistered) == 8
    assert initiator._deregistered.steps <= 8                # a rebuild per stop: 0+1+...+7 = 28


def test_an_ro_heartbeat_is_signed_by_the_oldest_pair_with_the_peer_without_a_sort():
    d = _ro_domain(mns=5, ro_heartbeat=HeartbeatPolicy(10.0, 3))
    mag2 = d.nodes["mag2"]
    held = mag2.ro_heartbeats.pairs[MAG1]
    counted = Counted(held)
    mag2.ro_heartbeats.pairs[MAG1] = counted
    d.check_tables = False
    d.run(11)
    beats = [m for m in d.messages(wire.Heartbeat, origin="mag2") if not m.response]
    assert beats and counted.steps == len(beats)            # sorted() took all five each time
    first_role, first_pair = next(iter(held))
    assert wire.find_option(beats[0], wire.HomeNetworkPrefix).prefix == first_pair.remote


# --- the index helpers --------------------------------------------------------------------------

def test_groups_and_address_groups():
    groups: Groups[str, int] = Groups()
    groups.add("a", 1)
    groups.add("a", 2)
    groups.discard("a", 1)
    groups.discard("b", 9)
    assert groups.get("a") == [2] and groups.count("a") == 1 and groups.holds("a", 2) and len(groups) == 1
    groups.discard("a", 2)
    assert "a" not in groups and groups.as_dict() == {}
    pairs: AddressGroups[str] = AddressGroups((64, 56))
    pairs.add(IPv6Address("2001:db8:1:2::1"), "x")
    pairs.add(IPv6Address("2001:db8:1:2::2"), "y")
    pairs.add(IPv6Address("2001:db8:1:3::1"), "z")
    pairs.add(IPv4Address("192.0.2.1"), "v4")
    assert pairs.within(IPv6Network("2001:db8:1:2::/64")) == ["x", "y"]
    assert sorted(pairs.within(IPv6Network("2001:db8:1::/56"))) == ["x", "y", "z"]
    assert pairs.within(IPv6Network("2001:db8:1:2::/80")) is None        # not a grouped length: walk
    assert pairs.at(IPv4Address("192.0.2.1")) == ["v4"]
    pairs.discard(IPv6Address("2001:db8:1:2::1"), "x")
    assert pairs.within(IPv6Network("2001:db8:1:2::/64")) == ["y"]


def test_hnp_lengths_reach_the_ro_cores():
    node = mag_node(hnp_lengths=(64, 56))
    assert node.initiator._by_local.lengths == node.responder._by_local.lengths == (56, 64)
