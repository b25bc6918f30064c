"""MagNode: the rules that join the binding update list, the RO initiator
and the RO responder at a MAG, driven through the node's own inputs with a
fake clock (Domain: every message encoded, decoded and handed to the
receiving node's receive(), as the daemons do)."""

from ipaddress import IPv6Address

import pytest
from protocol_helpers import (CN, CNS_AT_MAG2, FIRST_HNP, FIRST_HOA, KCN, LMA, LMA4, MAG1, MAG1_4, MAG2,
                              MAG2_4, MN, MN_B, MNS_AT_MAG1, NAT, T0, Domain, lma_node, lma_policy,
                              mag_node, only, only_send, carry, registered, seeded)

from pmip6ctl.protocol.binding_update_list import BindingState
from pmip6ctl.protocol.lma import InstallBinding, LmaNode, LmaNodePolicy, RouteMagAddress
from pmip6ctl.protocol.mag import (Advertise, InstallMobileNode, MnIdentity, MobileNodeAttaching, MobileNodeLeft,
                                   RemoveMobileNode, RouterSolicitationRefused)
from pmip6ctl.daemon.persist import Persistence
from pmip6ctl.daemon.ro_entries import ro_tables, saved_ro
from pmip6ctl.io.store import Store
from pmip6ctl.protocol.node import NodeError, StateChanged
from pmip6ctl.protocol.ro import RoInstalled, RoPair, RoRemoved
from pmip6ctl.protocol.vocabulary import FailReason, RejectReason, Role, StopReason
from pmip6ctl.transport import Arrival, Encap, Send, SendHomePath, Tunnel, UdpEndpoint
from pmip6ctl.wire import (BAFlags, BindingAck, BindingError, BindingErrorStatus, BindingUpdate,
                           Heartbeat, HomeTestInit, LocalizedRoutingInitiation, MobileNodeIdentifier,
                           ROAcknowledgement, find_option)

MAC1, MAC2, MAC3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
MN1_NAI = "mn1@example.org"
CN_OTHER = IPv6Address("2001:db8:200::21")


def registration_domain(**mag) -> Domain:
    """MAG1, nothing attached, and an LMA with an empty binding cache."""
    lma = LmaNode(LmaNodePolicy(binding_cache=lma_policy()))
    return Domain({"mag1": mag_node(**({"mn_ids": {MAC1: MN1_NAI}} | mag)), "lma": lma})


def ro_domain() -> Domain:
    """MN and MN_B registered at MAG1, the CN prefix and CN4 at MAG2; the
    LMA's binding cache says the same."""
    return Domain({"mag1": mag_node(attached=MNS_AT_MAG1, random=seeded(1)),
                   "mag2": mag_node(MAG2, MAG2_4, name="mag2", attached=CNS_AT_MAG2, kcn=KCN, random=seeded(2)),
                   "lma": lma_node()})


def of(d: Domain, node: str, cls, since: int = 0) -> list:
    return d.actions(node, cls, since)


# --- attach and detach -------------------------------------------------------------------------

def test_an_rs_from_a_new_mn_registers_it_at_the_lma_then_the_ra_carries_its_prefix():
    d = registration_domain()
    actions = d.call("mag1", "router_solicitation", "acc1", MAC1)
    assert actions[0] == MobileNodeAttaching(MN1_NAI, "acc1", MAC1)
    pbu = only(a for a in actions if isinstance(a, Send)).message
    assert isinstance(pbu, BindingUpdate) and find_option(pbu, MobileNodeIdentifier).nai == MN1_NAI
    assert StateChanged() in actions
    d.run(0.1)
    entry = d.nodes["mag1"].bul.entries[MN1_NAI]
    assert entry.state is BindingState.REGISTERED
    assert of(d, "mag1", InstallMobileNode) == [
        InstallMobileNode(MN1_NAI, "acc1", entry.hnp, entry.ipv4_hoa, Tunnel(Encap.IP6, MAG1, LMA))]
    assert of(d, "mag1", Advertise) == [Advertise("acc1", entry.hnp)]
    assert of(d, "lma", InstallBinding) == [
        InstallBinding(MN1_NAI, entry.hnp, entry.ipv4_hoa, Tunnel(Encap.IP6, LMA, MAG1), MAG1)]
    assert of(d, "lma", RouteMagAddress) == [RouteMagAddress(MAG1, Tunnel(Encap.IP6, LMA, MAG1))]


def test_an_rs_from_a_registered_mn_on_its_link_is_answered_with_an_ra_alone():
    d = registration_domain()
    d.call("mag1", "router_solicitation", "acc1", MAC1)
    d.run(0.1)
    entry = d.nodes["mag1"].bul.entries[MN1_NAI]
    assert d.call("mag1", "router_solicitation", "acc1", MAC1) == [Advertise("acc1", entry.hnp)]


def test_a_forgotten_mns_traffic_attaches_it_again_as_its_rs_would():
    """Issue 13, item 7: a MAG restarted without its state learns its MNs
    from their next packet (XDP reports the unknown source with its MAC):
    only MNs of the MN-ID table, only on their links, only once."""
    d = registration_domain(mn_ids={MAC1: MnIdentity(MN1_NAI, ("acc1",))})
    assert d.call("mag1", "unknown_source", "acc1", MAC3) == []           # a stranger: nothing
    assert d.call("mag1", "unknown_source", "acc2", MAC1) == []           # not its link
    actions = d.call("mag1", "unknown_source", "acc1", MAC1.upper())
    assert actions[0] == MobileNodeAttaching(MN1_NAI, "acc1", MAC1.upper(), by="traffic")
    assert isinstance(only(a for a in actions if isinstance(a, Send)).message, BindingUpdate)
    d.run(0.1)
    entry = d.nodes["mag1"].bul.entries[MN1_NAI]
    assert entry.state is BindingState.REGISTERED and Advertise("acc1", entry.hnp) in d.actions("mag1", Advertise)
    assert d.call("mag1", "unknown_source", "acc1", MAC1) == []           # attached: a spoofed source, not it


def test_an_rs_names_an_mn_only_through_the_mn_id_table_and_only_on_its_links():
    d = registration_domain(mn_ids={MAC1: MnIdentity(MN1_NAI, ("acc1",)), MAC2: "any@example.org"})
    node = d.nodes["mag1"]
    assert node.mn_id_for(MAC1.upper(), "acc1") == MN1_NAI
    assert node.mn_id_for(MAC1, "acc2") is None                  # not a link it may appear on
    assert node.mn_id_for(MAC2, "acc2") == "any@example.org"     # no links listed: any
    assert node.mn_id_for(MAC3, "acc1") is None and node.mn_id_for(None, "acc1") is None
    assert d.call("mag1", "router_solicitation", "acc1", MAC3) == [
        RouterSolicitationRefused("acc1", MAC3, "unknown_mn")]
    assert d.call("mag1", "router_solicitation", "acc2", MAC1) == [
        RouterSolicitationRefused("acc2", MAC1, "not_on_this_link")]
    assert node.bul.entries == {}


def test_an_rs_for_an_mn_whose_link_is_still_up_is_refused_until_the_carrier_goes():
    """Attack 4 of issue 12 within one MAG: another link's RS with MN1's MAC."""
    d = registration_domain()
    d.call("mag1", "link_up", "acc1")
    d.call("mag1", "router_solicitation", "acc1", MAC1)
    d.run(0.1)
    hnp = d.nodes["mag1"].bul.entries[MN1_NAI].hnp
    assert d.call("mag1", "router_solicitation", "acc2", MAC1) == [
        RouterSolicitationRefused("acc2", MAC1, "attached_elsewhere", MN1_NAI)]
    assert d.nodes["mag1"].bul.entries[MN1_NAI].link == "acc1"
    # the MN really moves: acc1's carrier goes first, then its RS on acc2 attaches it there
    since, _ = d.mark()
    gone = d.call("mag1", "link_down", "acc1")
    assert RemoveMobileNode(MN1_NAI, "acc1", hnp, FIRST_HOA) in gone
    assert Advertise("acc1", hnp, withdraw=True, last_router=True) in gone
    d.run(0.1)
    actions = d.call("mag1", "router_solicitation", "acc2", MAC1)
    assert isinstance(only(a for a in actions if isinstance(a, Send)).message, BindingUpdate)
    d.run(0.1)
    assert of(d, "mag1", InstallMobileNode, since)[-1].link == "acc2"


def test_carrier_loss_detaches_the_mns_of_that_link_and_the_last_one_withdraws_the_router():
    d = registration_domain(mn_ids={MAC1: "a@example.org", MAC2: "b@example.org", MAC3: "c@example.org"})
    for mac, link in ((MAC1, "acc1"), (MAC2, "acc1"), (MAC3, "acc2")):
        d.call("mag1", "router_solicitation", link, mac)
    d.run(0.1)
    bul = d.nodes["mag1"].bul.entries
    actions = d.call("mag1", "link_down", "acc1")
    assert [a for a in actions if isinstance(a, MobileNodeLeft)] == [
        MobileNodeLeft("a@example.org", "acc1"), MobileNodeLeft("b@example.org", "acc1")]
    # the first to go leaves b on the link: the MAG stays its default router
    assert [a for a in actions if isinstance(a, Advertise)] == [
        Advertise("acc1", bul["a@example.org"].hnp, withdraw=True, last_router=False),
        Advertise("acc1", bul["b@example.org"].hnp, withdraw=True, last_router=True)]
    deregistrations = [a.message for a in actions if isinstance(a, Send)]
    assert [m.lifetime for m in deregistrations] == [0, 0]
    assert bul["c@example.org"].state is BindingState.REGISTERED
    d.run(0.1)
    assert set(bul) == {"c@example.org"}
    assert set(d.nodes["lma"].bindings) == {"c@example.org"}


def test_detaching_an_mn_that_is_not_here_is_an_operator_error():
    d = registration_domain()
    with pytest.raises(NodeError, match="not attached here"):
        d.call("mag1", "detach", "nobody@example.org")


def test_a_ba_with_an_ro_acknowledgement_never_completes_a_registration():
    d = registration_domain()
    d.hold = lambda origin, action: origin == "lma"          # the real PBA waits
    d.call("mag1", "router_solicitation", "acc1", MAC1)
    d.run(0.1)
    pba = only(d.held)
    forged = BindingAck(0, BAFlags.P, pba.action.message.sequence, 1000,
                        [*pba.action.message.options, ROAcknowledgement(0, 1000)])
    actions = d.nodes["mag1"].receive(forged, Arrival(LMA, MAG1), d.now)
    # the initiator knows no such BU: nothing but the refusal, counted
    assert [a.reason for a in actions] == [RejectReason.UNMATCHED_BA]
    assert d.nodes["mag1"].bul.entries[MN1_NAI].state is BindingState.REGISTERING
    d.release()
    assert d.nodes["mag1"].bul.entries[MN1_NAI].state is BindingState.REGISTERED


# --- route optimization across the cores -----------------------------------------------------------

def test_a_flow_starts_ro_only_for_a_registered_mn_toward_a_unicast_address_not_optimized_yet():
    d = ro_domain()
    node = d.nodes["mag1"]
    assert node.flow_seen(IPv6Address("2001:db8:999::1"), CN, d.now) == []      # no MN of ours
    assert node.flow_seen(MN, IPv6Address("ff02::1"), d.now) == []
    assert node.flow_seen(MN, IPv6Address("fe80::1"), d.now) == []
    lri = only(node.flow_seen(MN, CN, d.now))
    assert isinstance(lri.message, LocalizedRoutingInitiation) and lri.dst == LMA
    assert node.flow_seen(MN, CN, d.now) == []                                  # in progress already


def test_a_flow_the_mag_holds_as_the_responder_is_not_started_again():
    d = ro_domain()
    d.call("mag2", "flow_seen", CN, MN)                 # MAG2 optimizes CN → MN first
    d.run(1)
    assert RoPair(MN, CN) in d.nodes["mag1"].responder.bindings
    assert d.call("mag1", "flow_seen", MN, CN) == []


def test_ro_with_ro_disabled_never_starts():
    d = Domain({"mag1": mag_node(attached=MNS_AT_MAG1, ro_enabled=False), "lma": lma_node()})
    assert d.call("mag1", "flow_seen", MN, CN) == []


def test_home_path_messages_take_the_tunnel_of_the_mn_they_are_anchored_at():
    d = ro_domain()
    d.call("mag1", "flow_seen", MN, CN)
    d.run(1)
    hoti = only(a for a in of(d, "mag1", SendHomePath) if isinstance(a.message, HomeTestInit))
    assert hoti.tunnel == Tunnel(Encap.IP6, MAG1, LMA)
    hot = only(of(d, "mag2", SendHomePath))
    assert hot.tunnel == Tunnel(Encap.IP6, MAG2, LMA)
    assert only(of(d, "mag1", RoInstalled)).pair == RoPair(MN, CN)


def test_over_ipv4_transport_behind_a_nat_the_home_path_is_the_udp_tunnel():
    node = mag_node(ipv4_transport=True, attached=(registered("mn@example.org", FIRST_HNP, FIRST_HOA,
                                                             nat_detected=True, nat_refresh=20),))
    assert node.lma_tunnel(node.bul.entries["mn@example.org"]) == Tunnel(Encap.UDP4, MAG1_4, LMA4, 5436, 5436)
    plain = mag_node(ipv4_transport=True, attached=(registered("mn@example.org", FIRST_HNP),))
    assert plain.lma_tunnel(plain.bul.entries["mn@example.org"]) == Tunnel(Encap.IP4, MAG1_4, LMA4)


def test_an_mn_that_leaves_takes_its_ro_bindings_along_on_both_sides():
    d = ro_domain()
    d.call("mag1", "flow_seen", MN, CN)            # MAG1 initiates for MN
    d.call("mag2", "flow_seen", CN_OTHER, MN)      # and answers for MN as MAG2's CN_OTHER's correspondent
    d.call("mag1", "flow_seen", MN_B, CN)          # another MN's pair, which stays
    d.run(1)
    mag1, mag2 = d.nodes["mag1"], d.nodes["mag2"]
    assert mag1.initiator.attempts[RoPair(MN, CN)].established
    assert RoPair(MN, CN_OTHER) in mag1.responder.bindings
    since, _ = d.mark()
    actions = d.call("mag1", "detach", "mn@example.org")
    removed = [a for a in actions if isinstance(a, RoRemoved)]
    assert removed == [RoRemoved(RoPair(MN, CN), MAG2, Role.INITIATOR, StopReason.MN_DETACHED),
                       RoRemoved(RoPair(MN, CN_OTHER), MAG2, Role.RESPONDER, StopReason.CN_DETACHED)] or \
        removed == [RoRemoved(RoPair(MN, CN_OTHER), MAG2, Role.RESPONDER, StopReason.CN_DETACHED),
                    RoRemoved(RoPair(MN, CN), MAG2, Role.INITIATOR, StopReason.MN_DETACHED)]
    to_peer = [a.message for a in actions if isinstance(a, Send) and a.dst == MAG2]
    assert any(isinstance(m, BindingUpdate) and m.lifetime == 0 for m in to_peer)     # the deregistration BU
    assert any(isinstance(m, BindingError) and m.home_address == CN_OTHER for m in to_peer)
    # the RO entries go before the MN's own
    assert actions.index(removed[-1]) < actions.index(only(a for a in actions if isinstance(a, RemoveMobileNode)))
    # and the LMA hears first: a peer that asks it again at once finds the MN gone from here
    sends = [a for a in actions if isinstance(a, Send)]
    assert isinstance(sends[0].message, BindingUpdate) and sends[0].dst == LMA and sends[0].message.lifetime == 0
    d.run(1)
    # MAG2 falls back at once, on both of its sides
    assert RoPair(CN, MN) not in mag2.responder.bindings
    attempt = mag2.initiator.attempts.get(RoPair(CN_OTHER, MN))
    assert attempt is None or not attempt.established
    assert {(a.pair, a.reason) for a in of(d, "mag2", RoRemoved, since)} == {
        (RoPair(CN, MN), StopReason.DEREGISTERED_BY_PEER), (RoPair(CN_OTHER, MN), FailReason.BINDING_ERROR)}
    assert mag1.initiator.attempts[RoPair(MN_B, CN)].established


def test_ro_traffic_for_a_pair_we_do_not_hold_gets_a_binding_error_naming_both_ends():
    node = mag_node(attached=MNS_AT_MAG1)
    first, second = node.missing_binding(CN, MN, MAG2, T0)
    assert (first.src, first.dst, second.src, second.dst) == (MAG1, MAG2, MAG1, MAG2)
    assert (first.message.status, first.message.home_address, second.message.home_address) == (
        BindingErrorStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS_DESTINATION_OPTION, MN, CN)


def test_an_unknown_mobility_header_type_gets_a_binding_error_status_2():
    node = mag_node()
    (send,) = node.unknown_message(99, Arrival(MN, MAG1), T0)
    assert (send.src, send.dst, send.message.status, send.message.home_address) == (
        MAG1, MN, BindingErrorStatus.UNRECOGNIZED_MH_TYPE, MN)


# --- the operator ---------------------------------------------------------------------------------

def test_ro_start_needs_an_mn_registered_here():
    node = mag_node(attached=MNS_AT_MAG1)
    with pytest.raises(NodeError, match="belongs to no MN registered here"):
        node.start_ro(IPv6Address("2001:db8:999::1"), CN, T0)
    assert isinstance(only(node.start_ro(MN, CN, T0)).message, LocalizedRoutingInitiation)


@pytest.mark.parametrize("settings, error", [({"mode": "fast"}, "mode is rr or quick"),
                                             ({"lifetime": 421}, "4 to 420 s"), ({"lifetime": 3}, "4 to 420 s")])
def test_ro_settings_are_checked(settings, error):
    node = mag_node()
    with pytest.raises(NodeError, match=error):
        node.configure_ro(**settings)
    node.configure_ro(mode="quick", lifetime=60)
    assert (node.initiator.policy.mode, node.initiator.policy.lifetime) == ("quick", 60)


# --- the NAT keepalive toward the LMA (RFC 5555 §4.1) ------------------------------------------------

def test_behind_a_nat_the_node_keeps_the_lmas_mapping_alive_at_the_refresh_time():
    lma = LmaNode(LmaNodePolicy(binding_cache=lma_policy(nat_keepalive=20)))
    d = Domain({"mag1": mag_node(ipv4_transport=True, mn_ids={MAC1: MN1_NAI}), "lma": lma})
    d.behind_nat(MAG1, NAT)
    d.call("mag1", "router_solicitation", "acc1", MAC1)
    d.run(0.1)
    registered_at = d.now
    entry = d.nodes["mag1"].bul.entries[MN1_NAI]
    assert (entry.nat_detected, entry.nat_refresh) == (True, 20)
    assert of(d, "mag1", InstallMobileNode)[0].tunnel == Tunnel(Encap.UDP4, MAG1_4, LMA4, 5436, 5436)
    assert of(d, "lma", InstallBinding)[0].tunnel == Tunnel(Encap.UDP4, LMA4, NAT.address, 5436, NAT.port)
    d.run(61)
    beats = [(t, a) for t, n, a in d.log if n == "mag1" and isinstance(a, Send) and isinstance(a.message, Heartbeat)]
    assert [round(t - registered_at) for t, _ in beats] == [20, 40, 60]
    assert all(a.ipv4_dst == UdpEndpoint(LMA4) and a.dst == LMA for _, a in beats)


def test_without_a_nat_there_is_no_keepalive():
    d = registration_domain(ipv4_transport=True)
    d.call("mag1", "router_solicitation", "acc1", MAC1)
    d.run(100)
    assert d.nodes["mag1"].lma_keepalive_at is None
    assert not [a for a in d.actions("mag1", Send) if isinstance(a.message, Heartbeat)]


# --- across a restart --------------------------------------------------------------------------

def through_the_store(path, node) -> dict:
    """The node's RO pairs written to a store (as daemon/mag.py keeps them)
    and read back by a new process: what restore_ro gets after a restart."""
    tables = ro_tables(initiator=node.initiator, responder=node.responder)
    Persistence(Store(path), tables).flush()
    return saved_ro(Persistence(Store(path), tables).load()["ro"])


def test_ro_pairs_survive_a_restart_through_the_store_and_are_refreshed_before_they_lapse(tmp_path):
    """Issue 13, item 7: a MAG restarted with its state file takes its RO
    pairs back (both roles), puts their entries in again (which keeps their
    tunnels), and refreshes them in time; one whose MN is gone is left out."""
    d = ro_domain()
    d.call("mag1", "flow_seen", MN, CN)
    d.run(1)
    mag1, mag2 = d.nodes["mag1"], d.nodes["mag2"]
    attempt = mag1.initiator.attempts[RoPair(MN, CN)]
    assert attempt.established and RoPair(CN, MN) in mag2.responder.bindings
    # the store, as the daemons write and read it
    saved1 = through_the_store(tmp_path / "mag1.db", mag1)
    saved2 = through_the_store(tmp_path / "mag2.db", mag2)

    restarted = mag_node(attached=MNS_AT_MAG1, random=seeded(3))
    installed = restarted.restore_ro(saved1, d.now)
    assert [(a.pair, a.peer, a.role, a.expires) for a in installed if isinstance(a, RoInstalled)] == [
        (RoPair(MN, CN), MAG2, Role.INITIATOR, attempt.binding.expires)]
    again = restarted.initiator.attempts[RoPair(MN, CN)]
    assert again.established and again.binding.kbm == attempt.binding.kbm
    responder = mag_node(MAG2, MAG2_4, name="mag2", attached=CNS_AT_MAG2, kcn=KCN, random=seeded(4))
    assert [a.role for a in responder.restore_ro(saved2, d.now) if isinstance(a, RoInstalled)] == [Role.RESPONDER]
    assert responder.responder.bindings[RoPair(CN, MN)].kbm == mag2.responder.bindings[RoPair(CN, MN)].kbm
    # the restarted MAG1 refreshes with MAG2 before the binding lapses
    d.nodes["mag1"] = restarted
    since, _ = d.mark()
    d.run(again.binding.refresh_at - d.now + 1)
    refreshed = [a for a in of(d, "mag1", RoInstalled, since) if a.role is Role.INITIATOR]
    assert refreshed and refreshed[-1].expires > attempt.binding.expires
    # an MN no longer registered here: its pair stays out
    gone = mag_node(attached=(), random=seeded(5))
    assert gone.restore_ro(saved1, d.now) == [] and gone.initiator.attempts == {}


def test_a_revocation_naming_an_mn_id_that_is_no_utf8_names_no_mn():
    """Found by the fuzz (tests/unit/test_fuzz.py): the BRI handler read the
    NAI without a guard and raised UnicodeDecodeError. It names no MN: the
    answer is "binding does not exist", and the MNs stay."""
    from pmip6ctl.wire import BindingRevocation, RevocationStatus, Timestamp
    mag = mag_node(attached=MNS_AT_MAG1)
    before = dict(mag.bul.entries)
    bri = BindingRevocation.indication(5, 2, [MobileNodeIdentifier(b"mn\xe7\xb7@example.org"), Timestamp.from_unix(T0)])
    answer = only_send(mag.receive(*carry(Send(bri, LMA, MAG1)), T0))
    assert answer.message.code == RevocationStatus.BINDING_DOES_NOT_EXIST and answer.dst == LMA
    assert mag.bul.entries == before
