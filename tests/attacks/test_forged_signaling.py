"""Issue 12's attacks against the node cores, with a fake clock: each forged
message is refused, counted by its reason, and changes nothing (the binding
is where it was; no tunnel, no RO entry, no answer to the forger).

The same attacks run against the daemons in tests/attacks/test_lab_attacks.py."""

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from protocol_helpers import (CN, CN_HNP, CNS_AT_MAG2, KCN, LMA, LMA4, MAG1, MAG1_4, MAG2,
                              MAG2_4, MN, MNS_AT_MAG1, QUICK_KEY, QUICK_SPI, T0, Domain, carry, initiator_policy,
                              lma_node, lma_policy, mag_node, only, pbu, quick_keys, responder_policy, seeded)

from pmip6ctl import statefile, wire
from pmip6ctl.protocol.auth import AuthFailure, SignalingGuard, SignalingPeer, SignalingRefused
from pmip6ctl.protocol.binding_update_list import BindingState, RegistrationRejected
from pmip6ctl.protocol.lma import LmaNode, LmaNodePolicy, RemoveBinding
from pmip6ctl.protocol.mag import InstallMobileNode
from pmip6ctl.protocol.ro import Phase, RoInstalled, RoPair, RoRejected, RoSendOnlyOnceHeard
from pmip6ctl.protocol.ro.initiator import BE_REFRESH_INTERVAL
from pmip6ctl.protocol.vocabulary import MessageKind, RejectReason
from pmip6ctl.security import PeerKey
from pmip6ctl.transport import Arrival, Send, SendHomePath, UdpEndpoint

MAG1_KEY = PeerKey(0x4101, b"the key MAG1 shares with the LMA")
MAG2_KEY = PeerKey(0x4102, b"the key MAG2 shares with the LMA")
ATTACKER = IPv6Address("2001:db8:bad::66")
ATTACKER4 = IPv4Address("203.0.113.66")
MN1_AT = "mn1@example.org"


def lma_guard() -> SignalingGuard:
    return SignalingGuard({MAG1: SignalingPeer(MAG1, MAG1_KEY, MAG1_4), MAG2: SignalingPeer(MAG2, MAG2_KEY, MAG2_4)})


def mag_guard(mag=MAG1, key=MAG1_KEY) -> SignalingGuard:
    return SignalingGuard({LMA: SignalingPeer(LMA, key, LMA4)})


def domain() -> Domain:
    """MAG1 and MAG2 with their keys and an LMA that knows both; MN1
    registered through MAG1 (authenticated), its binding at the LMA."""
    lma = LmaNode(LmaNodePolicy(binding_cache=lma_policy()), guard=lma_guard())
    d = Domain({"mag1": mag_node(mn_ids={"02:00:00:00:00:01": MN1_AT}, guard=mag_guard()),
                "mag2": mag_node(MAG2, MAG2_4, name="mag2", guard=mag_guard(MAG2, MAG2_KEY)),
                "lma": lma})
    d.call("mag1", "router_solicitation", "acc1", "02:00:00:00:00:01")
    d.run(0.1)
    assert d.nodes["lma"].bindings[MN1_AT].proxy_coa == MAG1
    return d


def lma_sees(d: Domain, message, src=MAG1, **arrival) -> list:
    """The LMA's answer to a message built by the attacker."""
    return d.post("lma", d.nodes["lma"].receive(*carry(Send(message, src, LMA, **arrival)), d.now))


def refusal(actions) -> AuthFailure:
    return only(a for a in actions if isinstance(a, SignalingRefused)).reason


def binding_unchanged(d: Domain, before) -> None:
    assert d.nodes["lma"].bindings[MN1_AT] == before
    assert d.nodes["mag1"].bul.entries[MN1_AT].state is BindingState.REGISTERED


# --- attack 1: a forged PBU in IPv4/UDP 5436, inner source MAG1 -------------------------------------

@pytest.mark.parametrize("outer, sign", [
    (ATTACKER4, None),                                # from the attacker's host, no key
    (MAG1_4, None),                                   # from MAG1's own IPv4 address, no key
    (MAG1_4, PeerKey(MAG1_KEY.spi, b"a key the attacker guessed.....")),
    (MAG1_4, PeerKey(0x9999, b"the attacker's own key.........")),
], ids=["outer from the attacker", "unsigned", "wrong key", "wrong spi"])
def test_a_forged_pbu_moves_nothing_and_gets_no_answer(outer, sign):
    d = domain()
    before = d.nodes["lma"].bindings[MN1_AT]
    forged = pbu(MN1_AT, d.now, sequence=7, hnp=before.hnp)
    if sign is not None:
        forged = sign.sign(forged, MAG1, LMA)
    actions = lma_sees(d, forged, ipv4_dst=UdpEndpoint(LMA4), ipv4_src=outer)
    expected = {ATTACKER4: AuthFailure.WRONG_OUTER_SOURCE}.get(outer) or (
        AuthFailure.UNAUTHENTICATED if sign is None else
        AuthFailure.WRONG_SPI if sign.spi != MAG1_KEY.spi else AuthFailure.BAD_AUTHENTICATOR)
    assert refusal(actions) == expected
    assert actions == [SignalingRefused(MessageKind.PBU, MAG1, expected)]     # nothing else: no PBA to the forger
    binding_unchanged(d, before)


# --- attack 2: a deregistration with a spoofed source ---------------------------------------------------

def test_a_spoofed_deregistration_leaves_the_binding_in_place():
    d = domain()
    before = d.nodes["lma"].bindings[MN1_AT]
    actions = lma_sees(d, pbu(MN1_AT, d.now, sequence=9, lifetime=0, hnp=before.hnp))
    assert refusal(actions) == AuthFailure.UNAUTHENTICATED
    assert not [a for a in actions if isinstance(a, RemoveBinding)]
    binding_unchanged(d, before)


def test_a_captured_pbu_replayed_later_is_refused():
    d = domain()
    before = d.nodes["lma"].bindings[MN1_AT]
    (_, _, captured, _), = [s for s in d.sent(wire.BindingUpdate) if s[1].dst == LMA][:1]
    again = lma_sees(d, captured)                   # the same signed PBU, one more time
    assert refusal(again) == AuthFailure.REPLAYED
    d.run(30)                                       # and much later: out of the window
    assert refusal(lma_sees(d, captured)) in (AuthFailure.STALE_TIMESTAMP, AuthFailure.REPLAYED)
    binding_unchanged(d, before)


def test_a_pbu_replayed_just_after_the_lma_restarted_is_refused():
    """Found by review: the newest Timestamp per peer lived in memory only, so a
    PBU captured seconds before an LMA restart was fresh again after it. It
    is saved with the node's state (Daemon._save_state) and restored."""
    d = domain()
    (_, _, captured, _), = [s for s in d.sent(wire.BindingUpdate) if s[1].dst == LMA][:1]
    saved = json.loads(json.dumps(statefile.to_jsonable(d.nodes["lma"].guard.replay_state())))
    restarted = LmaNode(LmaNodePolicy(binding_cache=lma_policy()), guard=lma_guard())
    restarted.guard.restore_replay(saved)
    assert refusal(restarted.receive(captured, Arrival(MAG1, LMA), d.now + 1)) is AuthFailure.REPLAYED
    fresh = LmaNode(LmaNodePolicy(binding_cache=lma_policy()), guard=lma_guard())       # without the state
    assert not [a for a in fresh.receive(captured, Arrival(MAG1, LMA), d.now + 1) if isinstance(a, SignalingRefused)]


@pytest.mark.parametrize("flags", [wire.BUFlags.A | wire.BUFlags.H, wire.BUFlags.A],
                         ids=["home registration", "plain BU"])
def test_a_bu_that_is_no_pbu_from_a_stranger_is_not_answered(flags):
    """RFC 5213 would answer 152 (proxy registration not enabled): to a
    spoofed source, that is a reflected BA. From a peer it still is."""
    d = domain()
    plain = pbu(MN1_AT, d.now, sequence=4)
    plain.flags = flags
    assert refusal(lma_sees(d, plain, src=ATTACKER)) == AuthFailure.UNKNOWN_PEER
    answered = lma_sees(d, plain, src=MAG2)
    (ba,) = [a for a in answered if isinstance(a, Send)]
    assert ba.message.status == wire.Status.PROXY_REG_NOT_ENABLED and ba.dst == MAG2


def test_an_unknown_mobility_header_type_from_a_stranger_is_not_answered():
    d = domain()
    assert d.nodes["lma"].unknown_message(99, Arrival(ATTACKER, LMA), d.now) == []
    (error,) = d.nodes["lma"].unknown_message(99, Arrival(MAG1, LMA), d.now)
    assert error.dst == MAG1 and error.message.status == wire.BindingErrorStatus.UNRECOGNIZED_MH_TYPE


def test_a_mag_sends_binding_errors_to_its_lma_and_ro_peers_only():
    d = domain()
    mag1 = d.nodes["mag1"]
    assert mag1.unknown_message(99, Arrival(ATTACKER, MAG1), d.now) == []
    (error,) = mag1.unknown_message(99, Arrival(LMA, MAG1), d.now)
    assert error.dst == LMA


# --- attack 3: a PBU from an access link, source MAG2, for mn2 ------------------------------------------

def test_a_pbu_an_mn_sends_with_mag2s_source_is_unauthenticated():
    d = domain()
    d.call("mag2", "attach", "mn2@example.org", "acc1")
    d.run(0.1)
    before = d.nodes["lma"].bindings["mn2@example.org"]
    actions = lma_sees(d, pbu("mn2@example.org", d.now, sequence=3, lifetime=0, hnp=before.hnp), src=MAG2)
    assert refusal(actions) == AuthFailure.UNAUTHENTICATED
    assert d.nodes["lma"].bindings["mn2@example.org"] == before


# --- the MAG's side: only its LMA's answers to its own PBUs ------------------------------------------

def test_a_forged_pba_never_registers_anything():
    d = Domain({"mag1": mag_node(mn_ids={"02:00:00:00:00:01": MN1_AT}, guard=mag_guard()),
                "lma": LmaNode(LmaNodePolicy(binding_cache=lma_policy()), guard=lma_guard())})
    d.hold = lambda origin, action: True
    d.call("mag1", "router_solicitation", "acc1", "02:00:00:00:00:01")
    pbu_sent = only(d.held).action.message
    stamp = wire.find_option(pbu_sent, wire.Timestamp)
    pba = wire.BindingAck(0, wire.BAFlags.P, pbu_sent.sequence, 900,
                          [wire.MobileNodeIdentifier.from_nai(MN1_AT), wire.HomeNetworkPrefix(64, IPv6Network(
                              "2001:db8:666::/64").network_address), stamp])
    node = d.nodes["mag1"]
    for forged, arrival in [(pba, Arrival(LMA, MAG1)),                                          # unsigned
                            (PeerKey(MAG1_KEY.spi, b"not the key......").sign(pba, LMA, MAG1), Arrival(LMA, MAG1)),
                            (MAG1_KEY.sign(pba, LMA, MAG1), Arrival(ATTACKER, MAG1))]:         # not the LMA
        actions = node.receive(*carry(Send(forged, arrival.src, MAG1)), d.now)
        assert isinstance(only(actions), SignalingRefused)
    assert node.bul.entries[MN1_AT].state is BindingState.REGISTERING


@pytest.mark.parametrize("hnp, ipv4, why", [
    (IPv6Network("::/0"), None, None),                                         # "assign one": not a prefix
    (IPv6Network("2001:db8:ffff::/64"), None, "overlaps"),                      # the transport network
    (IPv6Network("2001:db8:100::/56"), None, "/56"),
    (IPv6Network("2001:db8:100::/64"), IPv4Address("198.51.100.5"), "lies in"),
], ids=["all zero", "infrastructure", "length", "ipv4 in infrastructure"])
def test_a_pba_granting_an_uninstallable_prefix_installs_nothing(hnp, ipv4, why):
    infrastructure = (IPv6Network("2001:db8:ffff::/64"), IPv6Network("2001:db8:a1::/64"),
                      IPv4Network("198.51.100.0/24"))
    d = Domain({"mag1": mag_node(mn_ids={"02:00:00:00:00:01": MN1_AT}, infrastructure=infrastructure),
                "lma": LmaNode(LmaNodePolicy(binding_cache=lma_policy()))})
    d.hold = lambda origin, action: True
    d.call("mag1", "router_solicitation", "acc1", "02:00:00:00:00:01")
    sent = only(d.held).action.message
    options = [wire.MobileNodeIdentifier.from_nai(MN1_AT), wire.HomeNetworkPrefix(hnp.prefixlen, hnp.network_address),
               wire.find_option(sent, wire.Timestamp)]
    if ipv4:
        options.append(wire.IPv4HomeAddressReply(0, ipv4, 32))
    actions = d.nodes["mag1"].receive(*carry(Send(wire.BindingAck(0, wire.BAFlags.P, sent.sequence, 900, options),
                                                  LMA, MAG1)), d.now)
    assert not [a for a in actions if isinstance(a, InstallMobileNode)]
    if why:
        assert why in only(a for a in actions if isinstance(a, RegistrationRejected)).reason


# --- attack 5: the RR responder cut-off ----------------------------------------------------------------

def ro_peers() -> Domain:
    return Domain({"mag1": mag_node(attached=MNS_AT_MAG1, random=seeded(1)),
                   "mag2": mag_node(MAG2, MAG2_4, name="mag2", attached=CNS_AT_MAG2, kcn=KCN, random=seeded(2)),
                   "lma": lma_node()})


def test_a_coti_in_udp_gets_no_care_of_token_back():
    d = ro_peers()
    coti = wire.CareofTestInit(careof_init_cookie=bytes(8))
    arrival = Arrival(LMA, MAG2, ipv4_src=UdpEndpoint(ATTACKER4, 40000), ipv4_dst=MAG2_4)
    actions = d.nodes["mag2"].receive(coti, arrival, d.now)
    assert actions == [RoRejected(None, LMA, RejectReason.COTI_IN_UDP)]       # no CoT to the attacker


def test_an_rr_binding_update_from_the_lmas_address_never_takes_the_lma_tunnel():
    d = ro_peers()
    bu = wire.BindingUpdate(5, wire.BUFlags.A | wire.BUFlags.P, 105, [
        wire.HomeNetworkPrefix(128, IPv6Address("2001:db8:100::66")), wire.CNHomeNetworkPrefix(128, CN),
        wire.Timestamp.from_unix(d.now), wire.NonceIndices(1, 2), wire.BindingAuthorizationData(bytes(12))])
    actions = d.nodes["mag2"].receive(*carry(Send(bu, LMA, MAG2)), d.now)
    assert only(a for a in actions if isinstance(a, RoRejected)).reason is RejectReason.RESERVED_CAREOF
    assert not [a for a in actions if isinstance(a, (RoInstalled, Send))]


def test_a_home_path_message_through_another_tunnel_is_refused():
    d = ro_peers()
    hoti = wire.HomeTestInit(home_init_cookie=bytes(8))
    arrival = Arrival(MN, CN, home_path=True, tunnel_src=ATTACKER)      # punted from an RO peer's tunnel
    assert only(d.nodes["mag2"].receive(hoti, arrival, d.now)).reason is RejectReason.NOT_HOME_PATH
    fine = d.nodes["mag2"].receive(hoti, Arrival(MN, CN, home_path=True, tunnel_src=LMA), d.now)
    assert isinstance(only(fine), SendHomePath)                           # the HoT, into the LMA tunnel


# --- attack 6: a replayed quick-mode BA once the sequence number came round ------------------------

def test_a_replayed_quick_mode_ba_never_installs_a_binding_the_peer_did_not_grant():
    d = Domain({"mag1": mag_node(attached=MNS_AT_MAG1, random=seeded(1),
                                 initiator=initiator_policy(
                                     mode="quick", peer_keys=quick_keys(MAG2))),
                "mag2": mag_node(MAG2, MAG2_4, name="mag2", attached=CNS_AT_MAG2, kcn=KCN,
                                 responder=responder_policy(peer_keys=quick_keys(MAG1))),
                "lma": lma_node()})
    d.call("mag1", "flow_seen", MN, CN)
    d.run(1)
    initiator = d.nodes["mag1"].initiator
    attempt = initiator.attempts[RoPair(MN, CN)]
    (_, captured_send, captured, _), = d.sent(wire.BindingAck)
    assert attempt.established
    # Later the pair is stopped and started again; the new BU is lost on the way
    d.call("mag1", "stop_ro", RoPair(MN, CN))
    d.run(120)
    d.drop = lambda origin, action: isinstance(action.message, wire.BindingUpdate)
    d.call("mag1", "flow_seen", MN, CN)
    d.run(0.5)
    attempt = initiator.attempts[RoPair(MN, CN)]
    assert attempt.phase is Phase.BINDING
    # ... and MAG1's 16-bit sequence has come round to the captured BA's number
    initiator._ask(attempt, "bu", captured.sequence)
    actions = d.nodes["mag1"].receive(*carry(captured_send), d.now)
    assert not [a for a in actions if isinstance(a, RoInstalled)]
    assert [a.reason for a in actions if isinstance(a, RoRejected)] == [RejectReason.UNMATCHED_BA]   # counted
    assert not attempt.established


# --- a forged Binding Error (found by review): RO ends only under the pair's key -------------------------

def ro_domain(mode: str = "rr") -> Domain:
    keys = {"initiator": initiator_policy(mode=mode, peer_keys=quick_keys(MAG2)),
            "responder": responder_policy(peer_keys=quick_keys(MAG1))} if mode == "quick" else {}
    d = Domain({"mag1": mag_node(attached=MNS_AT_MAG1, random=seeded(1), **({"initiator": keys["initiator"]}
                                                                           if keys else {})),
                "mag2": mag_node(MAG2, MAG2_4, name="mag2", attached=CNS_AT_MAG2, kcn=KCN,
                                 **({"responder": keys["responder"]} if keys else {})),
                "lma": lma_node()})
    d.call("mag1", "flow_seen", MN, CN)
    d.run(1)
    assert d.nodes["mag1"].initiator.attempts[RoPair(MN, CN)].established
    return d


@pytest.mark.parametrize("mode", ["rr", "quick"])
@pytest.mark.parametrize("signed_with", [None, PeerKey(QUICK_SPI, b"a key the attacker made up.....")],
                         ids=["unsigned", "wrong key"])
def test_a_forged_binding_error_ends_no_ro_entry_on_either_side(mode, signed_with):
    d = ro_domain(mode)
    be = wire.BindingError(1, MN)
    if signed_with is not None:
        be = signed_with.sign(be, MAG2, MAG1)
    to_mag1 = d.post("mag1", d.nodes["mag1"].receive(*carry(Send(be, MAG2, MAG1)), d.now))
    to_mag2 = d.post("mag2", d.nodes["mag2"].receive(*carry(Send(wire.BindingError(1, MN), MAG1, MAG2)), d.now))
    assert [a.reason for a in to_mag1 if isinstance(a, RoRejected)] == [RejectReason.UNAUTHENTICATED_BE]
    assert [a.reason for a in to_mag2 if isinstance(a, RoRejected)] == [RejectReason.UNAUTHENTICATED_BE]
    # the responder side sends by the LMA path until MAG1's next tunnelled packet
    # (the data plane's RO_RX_ONLY): the binding stays, traffic arrives either way
    assert [a for a in to_mag2 if isinstance(a, RoSendOnlyOnceHeard)] == [RoSendOnlyOnceHeard(RoPair(CN, MN), MAG1)]
    assert not any(isinstance(a, RoSendOnlyOnceHeard) for a in to_mag1)      # the initiator refreshes instead
    d.run(5)
    assert d.nodes["mag1"].initiator.attempts[RoPair(MN, CN)].established          # still optimized
    assert RoPair(CN, MN) in d.nodes["mag2"].responder.bindings
    # a stream of them: each refused, the entry sent back at most once per interval
    again = [a for _ in range(20) for a in d.nodes["mag2"].receive(
        *carry(Send(wire.BindingError(1, MN), MAG1, MAG2)), d.now)]
    assert [a.reason for a in again if isinstance(a, RoRejected)] == [RejectReason.UNAUTHENTICATED_BE] * 20
    assert not any(isinstance(a, RoSendOnlyOnceHeard) for a in again)
    d.run(BE_REFRESH_INTERVAL)
    later = d.nodes["mag2"].receive(*carry(Send(wire.BindingError(1, MN), MAG1, MAG2)), d.now)
    assert [a for a in later if isinstance(a, RoSendOnlyOnceHeard)] == [RoSendOnlyOnceHeard(RoPair(CN, MN), MAG1)]


def test_an_unsigned_binding_error_refreshes_and_so_mends_a_peer_that_lost_the_binding():
    """MAG2 restarted without its RO state: its BEs cannot be signed. MAG1
    refreshes at once (at most every 10 s), which puts the binding back."""
    d = ro_domain("quick")
    d.nodes["mag2"].responder.bindings.clear()
    d.post("mag2", d.nodes["mag2"].missing_binding(MN, CN, MAG1, d.now))
    d.run(1)
    assert RoPair(CN, MN) in d.nodes["mag2"].responder.bindings
    assert d.nodes["mag1"].initiator.attempts[RoPair(MN, CN)].established
    refreshes = len(d.sent(wire.BindingUpdate, origin="mag1"))
    for _ in range(20):                                   # a stream of them is no amplifier
        d.post("mag1", d.nodes["mag1"].receive(*carry(Send(wire.BindingError(1, MN), MAG2, MAG1)), d.now))
    d.run(1)
    assert len(d.sent(wire.BindingUpdate, origin="mag1")) == refreshes


def test_a_refresh_an_unsigned_binding_error_asked_for_retries_after_a_quarter_second():
    """The peer that lost its state may not serve the CN again yet (it learns
    the MN from its next packet): the flow is black-holed meanwhile, so the
    refresh does not wait the routine 1 s before it asks again."""
    d = ro_domain("quick")
    d.drop = lambda origin, action: origin == "mag1" and isinstance(getattr(action, "message", None),
                                                                    wire.BindingUpdate)
    at = d.now
    d.post("mag1", d.nodes["mag1"].receive(*carry(Send(wire.BindingError(1, MN), MAG2, MAG1)), at))
    assert d.nodes["mag1"].initiator.attempts[RoPair(MN, CN)].retransmission.due == at + 0.25


@pytest.mark.parametrize("mode", ["rr", "quick"])
def test_the_peers_signed_binding_error_still_ends_ro_at_once(mode):
    """The CN leaves MAG2 (handover): MAG2's BE, signed, makes MAG1 fall back."""
    d = ro_domain(mode)
    d.post("mag2", d.nodes["mag2"].responder.cn_detached(CN))
    d.run(0.1)
    assert RoPair(MN, CN) not in d.nodes["mag1"].initiator.attempts or \
        not d.nodes["mag1"].initiator.attempts[RoPair(MN, CN)].established


@pytest.mark.parametrize("mode", ["rr", "quick"])
def test_the_ba_to_our_own_deregistration_is_no_refusal(mode):
    """`ro stop` sends a lifetime-0 BU; its BA is expected, not counted as an
    old or forged one."""
    d = ro_domain(mode)
    since = len(d.log)
    d.call("mag1", "stop_ro", RoPair(MN, CN))
    d.run(1)
    assert d.messages(wire.BindingAck, origin="mag2")[-1].lifetime == 0
    assert [a for a in d.actions("mag1", RoRejected, since=since)] == []


# --- RO responder policy ----------------------------------------------------------------------------------

def test_a_quick_mode_key_binds_only_the_prefixes_configured_for_it():
    narrow = {MAG1: PeerKey(QUICK_SPI, QUICK_KEY, (IPv6Network("2001:db8:100:1::/64"),))}   # MN_B's, not MN's
    d = Domain({"mag1": mag_node(attached=MNS_AT_MAG1, initiator=initiator_policy(
                    mode="quick", peer_keys=quick_keys(MAG2))),
                "mag2": mag_node(MAG2, MAG2_4, name="mag2", attached=CNS_AT_MAG2, kcn=KCN,
                                 responder=responder_policy(peer_keys=narrow)),
                "lma": lma_node()})
    d.call("mag1", "flow_seen", MN, CN)
    d.run(1)
    assert RejectReason.KEY_NOT_FOR_THIS_MN in [a.reason for a in d.actions("mag2", RoRejected)]
    assert d.nodes["mag2"].responder.bindings == {}


def test_the_ro_policy_binds_the_responder_as_the_initiator():
    deny = {"ro_allowed": lambda mn, cn: False}
    d = Domain({"mag1": mag_node(attached=MNS_AT_MAG1),
                "mag2": mag_node(MAG2, MAG2_4, name="mag2", attached=CNS_AT_MAG2, kcn=KCN, node_policy=deny),
                "lma": lma_node()})
    d.call("mag1", "flow_seen", MN, CN)
    d.run(1)
    assert RejectReason.DENIED_BY_POLICY in [a.reason for a in d.actions("mag2", RoRejected)]
    assert d.nodes["mag2"].responder.bindings == {}
    assert d.nodes["mag2"].flow_seen(CN, MN, d.now) == []                 # and its own initiator


def test_a_full_ro_table_answers_130_instead_of_black_holing():
    d = Domain({"mag1": mag_node(attached=MNS_AT_MAG1),
                "mag2": mag_node(MAG2, MAG2_4, name="mag2", attached=CNS_AT_MAG2, kcn=KCN,
                                 node_policy={"max_ro_pairs": 0}),
                "lma": lma_node()})
    d.call("mag1", "flow_seen", MN, CN)
    d.run(1)
    ba = only(d.messages(wire.BindingAck))
    assert ba.status == wire.Status.INSUFFICIENT_RESOURCES
    assert d.nodes["mag2"].responder.bindings == {}
    assert not d.nodes["mag1"].initiator.attempts[RoPair(MN, CN)].established


# --- attack on the inter-LMA query: replayed notices ------------------------------------------------------

def test_a_replayed_unsolicited_lra_is_refused():
    lma2 = IPv6Address("2001:db8:ffff::2")
    key = PeerKey(0x2001, b"LMA1 and LMA2 share this key....")
    guard = SignalingGuard({lma2: SignalingPeer(lma2, key)})
    lma = lma_node(peers={lma2: key}, guard=guard)
    notice = key.sign(wire.LocalizedRoutingAck(sequence=1, status=129, lifetime=0, unsolicited=True, options=[
        wire.CNHomeNetworkPrefix(64, CN_HNP.network_address), wire.Timestamp.from_unix(T0)]), lma2, LMA)
    first = lma.receive(notice, Arrival(lma2, LMA), T0)
    assert not [a for a in first if isinstance(a, SignalingRefused)]
    assert refusal(lma.receive(notice, Arrival(lma2, LMA), T0 + 1)) == AuthFailure.REPLAYED


# --- attack 4: an RS is not an identity, across MAGs (RFC 5846 Binding Revocation) -----------------

MAG3 = IPv6Address("2001:db8:a3::1")
MAG3_KEY = PeerKey(0x4103, b"the key MAG3 shares with the LMA")


def two_mags() -> Domain:
    """MN1 registered through MAG1, whose link to it is up; MAG3 also lists
    MN1's link-layer address (the MN may move there)."""
    guard = SignalingGuard({MAG1: SignalingPeer(MAG1, MAG1_KEY), MAG3: SignalingPeer(MAG3, MAG3_KEY)})
    d = Domain({"mag1": mag_node(mn_ids={"02:00:00:00:00:01": MN1_AT}, guard=mag_guard()),
                "mag3": mag_node(MAG3, None, name="mag3", mn_ids={"02:00:00:00:00:01": MN1_AT},
                                 guard=mag_guard(MAG3, MAG3_KEY)),
                "lma": LmaNode(LmaNodePolicy(binding_cache=lma_policy()), guard=guard)})
    d.call("mag1", "link_up", "acc1")
    d.call("mag1", "router_solicitation", "acc1", "02:00:00:00:00:01")
    d.run(0.1)
    return d


def test_an_rs_with_a_victims_mac_at_another_mag_does_not_move_a_live_binding():
    d = two_mags()
    before = d.nodes["lma"].bindings[MN1_AT]
    d.call("mag3", "router_solicitation", "acc1", "02:00:00:00:00:01")      # the attacker's RS at MAG3
    d.run(0.1)
    # the LMA asked MAG1 (a BRI); MAG1 still sees MN1 on a live link and said so (132)
    (bra,) = [m for m in d.messages(wire.BindingRevocation) if not m.is_indication]
    assert bra.code == wire.RevocationStatus.REVOCATION_FAILED_MN_IS_ATTACHED
    assert d.nodes["lma"].bindings[MN1_AT] == before                         # the binding stayed
    assert d.nodes["mag3"].bul.entries[MN1_AT].state is BindingState.FAILED  # MAG3's PBU was refused
    assert d.nodes["mag1"].bul.entries[MN1_AT].state is BindingState.REGISTERED


def test_a_real_move_goes_ahead_once_the_old_mag_lost_the_mn():
    d = two_mags()
    d.drop = lambda origin, action: origin == "mag1" and isinstance(action.message, wire.BindingUpdate)
    d.call("mag1", "link_down", "acc1")          # MN1 left MAG1; its deregistration is lost
    d.call("mag3", "router_solicitation", "acc1", "02:00:00:00:00:01")
    d.run(0.1)
    (bra,) = [m for m in d.messages(wire.BindingRevocation) if not m.is_indication]
    assert bra.code == wire.RevocationStatus.SUCCESS
    assert d.nodes["lma"].bindings[MN1_AT].proxy_coa == MAG3
    assert d.nodes["mag3"].bul.entries[MN1_AT].state is BindingState.REGISTERED
    assert MN1_AT not in d.nodes["mag1"].bul.entries


def test_a_forged_bri_ends_no_mns_session():
    d = two_mags()
    bri = wire.BindingRevocation.indication(1, wire.RevocationTrigger.ADMINISTRATIVE_REASON, [
        wire.MobileNodeIdentifier.from_nai(MN1_AT), wire.Timestamp.from_unix(d.now)])
    actions = d.nodes["mag1"].receive(*carry(Send(bri, LMA, MAG1)), d.now)        # unsigned, "from" the LMA
    assert refusal(actions) == AuthFailure.UNAUTHENTICATED
    assert d.nodes["mag1"].bul.entries[MN1_AT].state is BindingState.REGISTERED


# --- local routing (RFC 6705): only our LMA's authenticated answer to our own query ------------------

def test_a_forged_lra_naming_the_mag_itself_installs_no_local_route():
    """An attacker who sees MAG1 query about MN → MN_B (both attached at
    MAG1) answers first, naming MAG1: unsigned, with a guessed key, or signed
    but from another source. The guard refuses each; no local route points
    MAG1's data plane at an access link, and the query stays outstanding."""
    from protocol_helpers import MN_B
    from pmip6ctl.protocol.ro import LocalRouteInstalled
    node = mag_node(attached=MNS_AT_MAG1, guard=mag_guard())
    lri = only(a for a in node.flow_seen(MN, MN_B, T0) if isinstance(a, Send)).message
    assert isinstance(lri, wire.LocalizedRoutingInitiation)
    lra = wire.LocalizedRoutingAck(lri.sequence, 0, 420, options=[wire.MAGIPv6Address(MAG1),
                                                                   wire.find_option(lri, wire.Timestamp)])
    for forged, src in [(lra, LMA),                                                              # unsigned
                        (PeerKey(MAG1_KEY.spi, b"not the key......").sign(lra, LMA, MAG1), LMA),  # guessed key
                        (MAG1_KEY.sign(lra, LMA, MAG1), ATTACKER)]:                             # not the LMA
        actions = node.receive(*carry(Send(forged, src, MAG1)), T0 + 0.01)
        assert isinstance(only(actions), SignalingRefused)
        assert not [a for a in actions if isinstance(a, LocalRouteInstalled)]
    assert node.initiator.attempts[RoPair(MN, MN_B)].phase is Phase.QUERY
    assert node.initiator.local_routes == 0
    # the LMA's own answer, signed with its key, is what installs it
    actions = node.receive(*carry(Send(MAG1_KEY.sign(lra, LMA, MAG1), LMA, MAG1)), T0 + 0.02)
    assert only(a for a in actions if isinstance(a, LocalRouteInstalled)).pair == RoPair(MN, MN_B)
