"""Liveness (RFC 5847): the Liveness monitor's rules, heartbeats between a
MAG and its LMA behind the signaling guard, and between the two ends of an
RO binding under the pair's key; a dead RO peer sends the pair back to the
LMA path. Node cores through the real codec and a fake clock."""

from ipaddress import IPv6Address

import pytest
from protocol_helpers import LMA, MAG1, MAG2, MN, CN, OUTSIDE_CN, T0, Domain, carry, lma_policy, mag_node
from test_key_rotation import OLD, lma_keys, mag_keys, register
from test_protocol_ro import network, quick_network

from pmip6ctl import wire
from pmip6ctl.protocol.auth import AuthFailure, SignalingGuard, SignalingRefused
from pmip6ctl.protocol.heartbeat import (OFF, HeartbeatIgnored, HeartbeatPolicy, Ignored, Liveness, PeerAlive,
                                         PeerDead, PeerKind)
from pmip6ctl.protocol.lma import LmaNode, LmaNodePolicy
from pmip6ctl.protocol.ro import RoFailed, RoInstalled, RoPair, RoRemoved
from pmip6ctl.protocol.vocabulary import FailReason, Role, StopReason
from pmip6ctl.security import PeerKey
from pmip6ctl.transport import Arrival, Send

FAST = HeartbeatPolicy(1.0, 3)
PEER = IPv6Address("2001:db8:ffff::1")


def counter(n: int = 0):
    return lambda size: n.to_bytes(size, "big")


# --- the monitor ---------------------------------------------------------------------------------

def test_requests_every_interval_with_increasing_sequence_numbers():
    live = Liveness(FAST, counter(41))
    live.watch(PEER, PeerKind.LMA, T0)
    assert live.next_deadline() == T0 + 1
    assert live.on_timer(T0 + 0.5) == ([], [])
    sent = []
    for t in (1, 2, 3):
        requests, notes = live.on_timer(T0 + t)
        sent += requests
        assert live.response(PEER, requests[0][1], T0 + t + 0.1) == []
        assert notes == []
    assert sent == [(PEER, 42), (PEER, 43), (PEER, 44)]
    assert live.peers[PEER].alive and live.peers[PEER].missed == 0


def test_many_peers_each_on_its_own_schedule_and_only_the_due_ones_are_touched():
    live = Liveness(FAST, counter())
    peers = [IPv6Address(int(PEER) + i) for i in range(1000)]
    for i, peer in enumerate(peers):
        live.watch(peer, PeerKind.RO_PEER, T0 + i / 1000)
    live.unwatch(peers[0])
    assert live.next_deadline() == (T0 + 1 / 1000) + 1.0

    requests, _ = live.on_timer(T0 + 1.0105)

    assert [peer for peer, _ in requests] == peers[1:11]
    assert live.next_deadline() == (T0 + 11 / 1000) + 1.0      # the next peer in line
    assert len(live._due._live) == 999                         # one deadline per peer watched


def test_missed_heartbeats_make_a_peer_dead_and_an_answer_alive_again():
    live = Liveness(FAST, counter())
    live.watch(PEER, PeerKind.RO_PEER, T0)
    notes = []
    for t in range(1, 5):
        requests, n = live.on_timer(T0 + t)
        notes += n
        if t < 4:
            assert notes == [], f"dead after {t - 1} missed"
    assert notes == [PeerDead(PEER, PeerKind.RO_PEER, 3, None)]
    assert not live.peers[PEER].alive
    # later requests go on, and an answer to the one outstanding brings it back
    requests, notes = live.on_timer(T0 + 5)
    assert notes == []
    assert live.response(PEER, requests[0][1], T0 + 5.2) == [PeerAlive(PEER, PeerKind.RO_PEER, T0 + 4)]
    assert live.peers[PEER].alive and live.peers[PEER].missed == 0


def test_only_the_answer_to_the_request_outstanding_counts():
    live = Liveness(HeartbeatPolicy(1.0, 2), counter())
    live.watch(PEER, PeerKind.LMA, T0)
    (first,), _ = live.on_timer(T0 + 1)
    assert live.response(PEER, first[1], T0 + 1.1) == []
    # an old answer replayed, a guessed number, another address: nothing
    (second,), _ = live.on_timer(T0 + 2)
    for address, sequence in ((PEER, first[1]), (PEER, second[1] + 1), (MAG2, second[1])):
        (ignored,) = live.response(address, sequence, T0 + 2.1)
        assert isinstance(ignored, HeartbeatIgnored) and ignored.reason is Ignored.UNMATCHED_RESPONSE
    _, notes = live.on_timer(T0 + 3)
    _, notes2 = live.on_timer(T0 + 4)
    assert [type(n) for n in notes + notes2] == [PeerDead]


def test_off_watches_nobody_and_unwatch_forgets():
    live = Liveness(OFF)
    live.watch(PEER, PeerKind.LMA, T0)
    assert live.peers == {} and live.next_deadline() is None
    live.configure(FAST, T0)
    live.watch(PEER, PeerKind.LMA, T0)
    live.sync({}, T0)
    assert live.peers == {}


# --- MAG and LMA, behind the guard -------------------------------------------------------------

def guarded_domain() -> Domain:
    lma = LmaNode(LmaNodePolicy(binding_cache=lma_policy()), guard=SignalingGuard(dict(lma_keys(OLD).signaling)))
    d = Domain({"mag1": mag_node(guard=SignalingGuard(dict(mag_keys(OLD).signaling))), "lma": lma})
    register(d, "mn1@example.org")
    for node in d.nodes.values():
        node.configure_heartbeats(FAST, OFF, d.now)
    return d


def beats(d: Domain, origin: str, response: bool, since: int = 0) -> list:
    return [m for m in d.messages(wire.Heartbeat, origin, since) if m.response == response]


def test_mag_and_lma_watch_each_other_with_signed_heartbeats():
    d = guarded_domain()
    d.run(10)
    for origin in ("mag1", "lma"):
        requests, answers = beats(d, origin, False), beats(d, origin, True)
        assert len(requests) >= 8 and len(answers) >= 8, origin
        for hb in requests + answers:       # stamped and signed with the pair's key (RFC 4285)
            assert isinstance(hb.options[-1], wire.MobilityMessageAuthentication)
            assert wire.find_option(hb, wire.Timestamp) is not None
    assert d.actions(cls=SignalingRefused) == [] and d.actions(cls=HeartbeatIgnored) == []
    (mag_row,) = d.nodes["mag1"].liveness_rows(d.now)
    assert (mag_row["peer"], mag_row["kind"], mag_row["state"]) == (str(LMA), "lma", "alive")
    (lma_row,) = d.nodes["lma"].liveness_rows(d.now)
    assert (lma_row["peer"], lma_row["kind"], lma_row["state"]) == (str(MAG1), "mag", "alive")


def test_a_silent_lma_is_declared_dead_and_alive_when_it_answers_again():
    d = guarded_domain()
    d.run(3)
    d.drop = lambda origin, action: origin == "lma"
    d.run(6)
    (dead,) = d.actions("mag1", PeerDead)
    assert (dead.peer, dead.kind, dead.missed) == (LMA, PeerKind.LMA, 3)
    # RFC 5847 leaves the action to policy: the MAG reports it, its bindings stay
    assert d.actions("mag1", RoRemoved) == []
    assert d.nodes["mag1"].bul.entries["mn1@example.org"] is not None
    d.drop = lambda origin, action: False
    d.run(3)
    (alive,) = d.actions("mag1", PeerAlive)
    assert alive.peer == LMA
    # the LMA did hear the MAG's requests all along, but its own went unanswered: dead, then alive
    assert [type(a) for a in d.actions("lma") if isinstance(a, (PeerDead, PeerAlive))] == [PeerDead, PeerAlive]


def test_forged_responses_keep_no_dead_lma_alive():
    d = guarded_domain()
    d.run(2.5)
    captured = beats(d, "lma", True)[-1]             # an authentic answer, replayed later
    d.drop = lambda origin, action: origin == "lma"
    mag = d.nodes["mag1"]
    for t in range(8):
        d.run(0.5)
        outstanding = mag.lma_liveness.outstanding(LMA)
        forged = [
            wire.Heartbeat(False, True, outstanding),                                     # unsigned
            PeerKey(OLD.spi, b"not the key shared with the LMA..").sign(
                wire.Heartbeat(False, True, outstanding, [wire.Timestamp.from_unix(d.now)]), LMA, MAG1),
            captured,                                                                     # replayed
        ]
        for message in forged:
            d.post("mag1", mag.receive(*carry(Send(message, LMA, MAG1)), d.now))
    assert len(d.actions("mag1", PeerDead)) == 1 and d.actions("mag1", PeerAlive) == []
    reasons = {a.reason for a in d.actions("mag1", SignalingRefused)}
    assert reasons == {AuthFailure.UNAUTHENTICATED, AuthFailure.BAD_AUTHENTICATOR, AuthFailure.REPLAYED}


def test_without_auth_the_lma_answers_only_its_serving_mags():
    d = Domain({"mag1": mag_node(), "lma": LmaNode(LmaNodePolicy(binding_cache=lma_policy()))})
    register(d, "mn1@example.org")
    lma = d.nodes["lma"]
    stranger = IPv6Address("2001:db8:bad::1")
    (refused,) = lma.receive(wire.Heartbeat(False, False, 7), Arrival(stranger, LMA), d.now)
    assert isinstance(refused, SignalingRefused) and refused.reason is AuthFailure.UNKNOWN_PEER
    (answer,) = lma.receive(wire.Heartbeat(False, False, 7), Arrival(MAG1, LMA), d.now)
    assert answer.dst == MAG1 and answer.message == wire.Heartbeat(False, True, 7)


# --- RO peers ----------------------------------------------------------------------------------------

def ro_up(net, remote=CN, seconds: float = 1.0):
    net.start(MN, remote)
    net.run(seconds)
    assert net.actions("initiator", RoInstalled)
    for node in (net.mag1, net.peer):
        node.configure_heartbeats(OFF, FAST, net.now)


@pytest.mark.parametrize("make", [network, quick_network], ids=["rr", "quick"])
def test_both_ends_of_an_ro_binding_watch_each_other(make):
    net = make()
    ro_up(net)
    net.run(10)
    for origin in ("initiator", "responder"):
        requests, answers = beats(net, origin, False), beats(net, origin, True)
        assert len(requests) >= 8 and len(answers) >= 8, origin
        for hb in requests + answers:
            assert isinstance(hb.options[-1], (wire.BindingAuthorizationData, wire.MobilityMessageAuthentication))
            assert wire.find_option(hb, wire.HomeNetworkPrefix).prefix == MN
            assert wire.find_option(hb, wire.CNHomeNetworkPrefix).prefix == CN
    assert net.actions(cls=SignalingRefused) == [] and net.actions(cls=PeerDead) == []
    (row,) = net.mag1.ro_heartbeats.rows(net.now)
    assert (row["peer"], row["kind"], row["state"], row["pairs"]) == (str(MAG2), "ro_peer", "alive", 1)


@pytest.mark.parametrize("make", [network, quick_network], ids=["rr", "quick"])
def test_a_dead_ro_peer_sends_the_pair_back_to_the_lma_path_on_both_ends(make):
    net = make()
    ro_up(net)
    net.run(2)
    net.drop = lambda origin, action: origin == "responder"      # MAG2 sends nothing any more
    net.run(6)
    (dead,) = net.actions("initiator", PeerDead)
    assert (dead.peer, dead.kind) == (MAG2, PeerKind.RO_PEER)
    (removed,) = net.actions("initiator", RoRemoved)
    assert (removed.pair, removed.role, removed.reason) == (RoPair(MN, CN), Role.INITIATOR, FailReason.PEER_DEAD)
    assert only_failure(net).reason is FailReason.PEER_DEAD
    assert net.mag1.ro_heartbeats.pairs == {} and net.mag1.ro_heartbeats.liveness.peers == {}
    # MAG2 heard nothing back either: its side of the pair ends too
    (removed2,) = net.actions("responder", RoRemoved)
    assert (removed2.role, removed2.reason) == (Role.RESPONDER, StopReason.PEER_DEAD)
    assert net.peer.responder.bindings == {}


def only_failure(net):
    (failed,) = net.actions("initiator", RoFailed)
    return failed


def test_forged_and_replayed_ro_heartbeats_change_nothing():
    net = network()
    ro_up(net)
    net.run(2.5)
    captured_response = beats(net, "responder", True)[-1]
    net.drop = lambda origin, action: origin == "responder"
    mag1 = net.mag1
    for _ in range(10):
        net.run(0.5)
        outstanding = mag1.ro_heartbeats.liveness.outstanding(MAG2)
        if outstanding is None:
            break
        options = [wire.HomeNetworkPrefix(128, MN), wire.CNHomeNetworkPrefix(128, CN),
                   wire.Timestamp.from_unix(net.now)]
        forged = [
            wire.Heartbeat(False, True, outstanding, list(options)),                        # unsigned
            wire.Heartbeat(False, True, outstanding, [*options, wire.BindingAuthorizationData(bytes(12))]),
            captured_response,                                                              # replayed answer
        ]
        for message in forged:
            net.post("initiator", mag1.receive(*carry(Send(message, MAG2, MAG1)), net.now))
    assert len(net.actions("initiator", PeerDead)) == 1
    reasons = {a.reason for a in net.actions("initiator", (SignalingRefused, HeartbeatIgnored))}
    assert {AuthFailure.UNAUTHENTICATED, AuthFailure.BAD_AUTHENTICATOR} <= reasons
    # the MAG1 that still holds the pair: a replayed request draws no answer
    net2 = network()
    ro_up(net2)
    net2.run(2.5)
    replay = beats(net2, "responder", False)[-1]
    (refused,) = net2.mag1.receive(*carry(Send(replay, MAG2, MAG1)), net2.now)
    assert isinstance(refused, SignalingRefused) and refused.reason is AuthFailure.REPLAYED


def test_heartbeats_from_a_stranger_or_naming_a_pair_we_do_not_hold_get_no_answer():
    net = network()
    ro_up(net)
    stranger = IPv6Address("2001:db8:bad::1")
    hb = wire.Heartbeat(False, False, 1, [wire.Timestamp.from_unix(net.now)])
    (refused,) = net.mag1.receive(hb, Arrival(stranger, MAG1), net.now)
    assert isinstance(refused, SignalingRefused) and refused.reason is AuthFailure.UNKNOWN_PEER
    other = wire.Heartbeat(False, False, 2, [wire.HomeNetworkPrefix(128, MN),
                                             wire.CNHomeNetworkPrefix(128, IPv6Address("2001:db8:200::99")),
                                             wire.Timestamp.from_unix(net.now), wire.BindingAuthorizationData(bytes(12))])
    (refused,) = net.mag1.receive(*carry(Send(other, MAG2, MAG1)), net.now)
    assert refused.reason is AuthFailure.UNKNOWN_PEER


def test_the_cn_agent_watches_its_initiator():
    net = network(cn_agent=True)
    ro_up(net, OUTSIDE_CN)
    net.run(5)
    assert beats(net, "responder", True) and beats(net, "initiator", True)
    assert net.actions(cls=PeerDead) == []
    net.drop = lambda origin, action: origin == "initiator"
    net.run(6)
    (removed,) = net.actions("responder", RoRemoved)
    assert (removed.reason, removed.role) == (StopReason.PEER_DEAD, Role.RESPONDER)


def test_a_reload_changes_the_interval_and_off_stops_watching():
    net = network()
    ro_up(net)
    net.mag1.configure_heartbeats(OFF, HeartbeatPolicy(0.5, 2), net.now)
    assert net.mag1.ro_heartbeats.next_deadline() <= net.now + 0.5
    net.mag1.configure_heartbeats(OFF, OFF, net.now)
    assert net.mag1.ro_heartbeats.next_deadline() is None


def test_over_ipv4_transport_and_a_nat_ro_heartbeats_go_in_udp_and_keepalives_prove_nothing():
    from ipaddress import IPv4Address
    from pmip6ctl.transport import UdpEndpoint
    from protocol_helpers import MAG1_4, MAG2_4
    from test_protocol_ro import over_ipv4_network
    nat = UdpEndpoint(IPv4Address("203.0.113.7"), 40001)
    net = over_ipv4_network(nat=nat)
    ro_up(net)
    net.run(45)                                # past two NAT keepalives (20 s)
    mine = [a for _, n, a in net.log if n == "initiator" and isinstance(a, Send)
            and isinstance(a.message, wire.Heartbeat) and a.message.options and not a.message.response]
    assert mine and all((a.ipv4_src, a.ipv4_dst.address) == (MAG1_4, MAG2_4) for a in mine)
    theirs = [a for _, n, a in net.log if n == "responder" and isinstance(a, Send)
              and isinstance(a.message, wire.Heartbeat) and not a.message.response]
    assert theirs and all(a.ipv4_dst == nat for a in theirs)        # to the NAT's mapping
    assert net.actions(cls=PeerDead) == [] and net.actions(cls=SignalingRefused) == []
    keepalives = [a for a in net.actions("responder", HeartbeatIgnored)]
    assert len(keepalives) >= 2 and {a.reason for a in keepalives} == {Ignored.UNAUTHENTICATED_KEEPALIVE}
    assert {r["state"] for r in net.mag1.liveness_rows(net.now) + net.peer.liveness_rows(net.now)} == {"alive"}


def test_a_quick_mode_key_rotation_loses_no_heartbeat():
    from pmip6ctl.protocol.auth import NodeKeys
    from protocol_helpers import quick_keys
    net = quick_network()
    ro_up(net)
    new = b"the quick-mode key after rotation"
    net.mag1.rekey(NodeKeys(quick_mode=quick_keys(MAG2, key=new)), net.now, 300.0)
    net.run(8)                                   # MAG1 reloaded, MAG2 not yet: 8 intervals
    net.peer.rekey(NodeKeys(quick_mode=quick_keys(MAG1, key=new)), net.now, 300.0)
    net.run(8)
    assert net.actions(cls=PeerDead) == [] and net.actions(cls=RoRemoved) == []
    assert {r["missed"] for r in net.mag1.liveness_rows(net.now) + net.peer.liveness_rows(net.now)} <= {0, 1}
