"""The LMA binding cache core (RFC 5213 §5, RFC 5844), driven with PBUs that go
through the wire codec and a fake clock."""

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from protocol_helpers import (FIRST_HNP, FIRST_HOA, LMA, LMA4, MAG1, MAG1_4, MAG2, MN1, MN2, NAT, SECOND_HNP, T0, carry,
                              make_lma, of_type, old_mag_lets_go, only, only_send, pbu, run_until, sends, to_lma)

from pmip6ctl.transport import Send, UdpEndpoint
from pmip6ctl.protocol.binding_cache import BindingRemoved, BindingUpdated, MoveRefused, PbuRejected
from pmip6ctl.protocol.pools import AddressPool, PrefixPool
from pmip6ctl.wire import (AccessTechnologyType, BAFlags, BindingAck, BindingRevocation, BUFlags, CNHomeNetworkPrefix,
                           HandoffIndicator, HomeNetworkPrefix, HomeTestInit, IPv4CareofAddress,
                           IPv4HomeAddressReply, MobileNodeIdentifier, NATDetection, RevocationStatus, Status,
                           Timestamp, find_option)

ANY_IPV4 = IPv4Address("0.0.0.0")


def pba(actions) -> BindingAck:
    """The PBA in the LMA's answer, as the MAG decodes it."""
    message, _ = carry(only(s for s in sends(actions) if isinstance(s.message, BindingAck)))
    return message


def register(lma, mn_id=MN1, now=T0, src=MAG1, **kw):
    """A PBU from src accepted (a move from another MAG: the old one lets the MN go)."""
    actions = old_mag_lets_go(lma, to_lma(lma, pbu(mn_id, now, **kw), now, src), now)
    assert pba(actions).status == Status.ACCEPTED, pba(actions)
    return actions


# --- First registration -------------------------------------------------------


def test_first_registration_allocates_a_prefix_and_answers_with_a_pba():
    lma = make_lma()
    actions = to_lma(lma, pbu(MN1, T0, sequence=7, hi=1, att=4), T0)

    (update,) = of_type(actions, BindingUpdated)
    assert update == BindingUpdated(lma.bindings[MN1])  # new binding: no previous MAG
    entry = update.entry
    assert (entry.mn_id, entry.hnp, entry.proxy_coa, entry.ipv4_hoa) == (MN1, FIRST_HNP, MAG1, None)
    assert (entry.lifetime, entry.expires, entry.sequence, entry.timestamp) == (3600, T0 + 3600, 7, T0)
    assert (entry.access_technology_type, entry.handoff_indicator, entry.registered) == (4, 1, T0)
    assert entry.mag_ipv4 is None and not entry.nat_detected

    send = only_send(actions)
    assert (send.src, send.dst, send.ipv4_dst) == (LMA, MAG1, None)
    ack = pba(actions)
    assert (ack.status, ack.flags, ack.sequence, ack.lifetime_seconds) == (0, BAFlags.P, 7, 3600)
    # RFC 5213 §5.3.6: the PBU's options mirrored, the HNP the one assigned.
    assert ack.options == [MobileNodeIdentifier.from_nai(MN1), HomeNetworkPrefix(64, FIRST_HNP.network_address),
                           HandoffIndicator(1), AccessTechnologyType(4), Timestamp.from_unix(T0)]


def test_the_data_plane_change_comes_before_the_answer():
    actions = to_lma(make_lma(), pbu(), T0)
    assert [type(a) for a in actions] == [BindingUpdated, Send]


def test_the_next_mobile_node_gets_the_next_prefix():
    lma = make_lma()
    register(lma, MN1)
    register(lma, MN2)
    assert lma.bindings[MN2].hnp == SECOND_HNP


def test_ipv4_home_address_request_is_answered_with_an_address():
    lma = make_lma()
    actions = to_lma(lma, pbu(ipv4=ANY_IPV4), T0)
    assert lma.bindings[MN1].ipv4_hoa == FIRST_HOA
    assert find_option(pba(actions), IPv4HomeAddressReply) == IPv4HomeAddressReply(0, FIRST_HOA, 25)


def test_a_specific_free_ipv4_home_address_is_granted():
    lma = make_lma()
    to_lma(lma, pbu(ipv4=IPv4Address("192.0.2.200")), T0)
    assert lma.bindings[MN1].ipv4_hoa == IPv4Address("192.0.2.200")


def test_ipv4_home_address_without_an_ipv4_pool_is_refused_170():
    lma = make_lma(ipv4_pool=None)
    actions = to_lma(lma, pbu(ipv4=ANY_IPV4), T0)
    assert pba(actions).status == Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE
    assert lma.bindings == {} and len(lma.policy.hnp_pool) == 0  # the prefix it took is given back


def test_another_mobile_nodes_ipv4_home_address_is_refused_171():
    lma = make_lma()
    register(lma, MN1, ipv4=ANY_IPV4)
    actions = to_lma(lma, pbu(MN2, ipv4=FIRST_HOA), T0)
    assert pba(actions).status == Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS


def test_a_specific_prefix_that_is_free_in_the_pool_is_granted():
    # A MAG that outlived an LMA restart asks for the prefix its MN had.
    lma = make_lma()
    wanted = IPv6Network("2001:db8:100:5::/64")
    register(lma, hnp=wanted)
    assert lma.bindings[MN1].hnp == wanted


def test_lifetime_is_capped_by_policy():
    lma = make_lma(max_lifetime=600)
    actions = to_lma(lma, pbu(lifetime=7200), T0)
    assert pba(actions).lifetime_seconds == 600
    assert lma.bindings[MN1].expires == T0 + 600


def test_a_pbu_without_the_a_flag_is_bound_but_not_acknowledged():
    # RFC 6275 §9.5.1: acceptance is acknowledged only when asked.
    lma = make_lma()
    actions = to_lma(lma, pbu(flags=BUFlags.H | BUFlags.P), T0)
    assert [type(a) for a in actions] == [BindingUpdated]


# --- Refresh and expiry -----------------------------------------------------------


def test_refresh_extends_the_lifetime_and_keeps_everything_else():
    lma = make_lma()
    register(lma, ipv4=ANY_IPV4)
    later = T0 + 2880
    actions = to_lma(lma, pbu(MN1, later, sequence=2, hi=5, hnp=FIRST_HNP, ipv4=FIRST_HOA), later)
    entry = lma.bindings[MN1]
    assert of_type(actions, BindingUpdated) == [BindingUpdated(entry)]  # same MAG: nothing moved
    assert (entry.hnp, entry.ipv4_hoa, entry.expires, entry.registered) == (FIRST_HNP, FIRST_HOA, later + 3600, T0)
    assert (entry.sequence, entry.timestamp, entry.handoff_indicator) == (2, later, 5)
    assert find_option(pba(actions), HomeNetworkPrefix).prefix == FIRST_HNP.network_address


def test_a_refresh_that_does_not_ask_for_ipv4_keeps_the_ipv4_home_address():
    lma = make_lma()
    register(lma, ipv4=ANY_IPV4)
    actions = to_lma(lma, pbu(MN1, T0 + 10, hi=5), T0 + 10)
    assert lma.bindings[MN1].ipv4_hoa == FIRST_HOA
    assert find_option(pba(actions), IPv4HomeAddressReply) is None


def test_a_binding_expires_and_its_prefix_goes_back_to_the_pool():
    lma = make_lma()
    register(lma, ipv4=ANY_IPV4)
    entry = lma.bindings[MN1]
    assert lma.next_deadline() == T0 + 3600
    assert lma.on_timer(T0 + 3599.9) == []
    assert lma.on_timer(T0 + 3600) == [BindingRemoved(entry)]
    assert lma.bindings == {} and lma.next_deadline() is None
    assert lma.policy.hnp_pool.owner_of(FIRST_HNP) is None
    assert lma.policy.ipv4_pool.owner_of(FIRST_HOA) is None


# --- Refusals ---------------------------------------------------------------------


def test_a_stale_timestamp_is_refused_156_with_the_lmas_time():
    lma = make_lma()
    actions = to_lma(lma, pbu(MN1, T0, timestamp=T0 - 7.5), T0)
    ack = pba(actions)
    assert ack.status == Status.TIMESTAMP_MISMATCH
    assert find_option(ack, Timestamp) == Timestamp.from_unix(T0)  # RFC 5213 §5.5
    assert of_type(actions, PbuRejected) == [PbuRejected(MN1, Status.TIMESTAMP_MISMATCH, MAG1)]
    assert lma.bindings == {}


def test_a_timestamp_within_the_window_is_accepted_either_side():
    lma = make_lma()
    register(lma, MN1, timestamp=T0 + 6.9)
    register(lma, MN2, timestamp=T0 - 6.9)


@pytest.mark.parametrize("offset", [0.0, -1.0])
def test_a_timestamp_not_newer_than_the_last_accepted_is_refused_157(offset):
    lma = make_lma()
    register(lma, now=T0 + 2)
    actions = to_lma(lma, pbu(MN1, T0 + 3, sequence=2, timestamp=T0 + 2 + offset), T0 + 3)
    assert pba(actions).status == Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED
    assert lma.bindings[MN1].sequence == 1


def test_without_timestamps_an_old_sequence_number_is_refused_135_with_the_last_accepted():
    lma = make_lma()
    register(lma, sequence=100, omit=(Timestamp,))
    actions = to_lma(lma, pbu(MN1, T0 + 1, sequence=100, omit=(Timestamp,)), T0 + 1)
    ack = pba(actions)
    assert (ack.status, ack.sequence) == (Status.SEQUENCE_OUT_OF_WINDOW, 100)
    actions = to_lma(lma, pbu(MN1, T0 + 1, sequence=99, omit=(Timestamp,)), T0 + 1)
    assert (pba(actions).status, pba(actions).sequence) == (Status.SEQUENCE_OUT_OF_WINDOW, 100)


def test_sequence_numbers_compare_modulo_2_16():
    lma = make_lma()
    register(lma, sequence=0xFFFF, omit=(Timestamp,))
    register(lma, now=T0 + 1, sequence=0, omit=(Timestamp,))
    register(lma, now=T0 + 2, sequence=0x7FFF, omit=(Timestamp,))
    actions = to_lma(lma, pbu(MN1, T0 + 3, sequence=0xFFFF, omit=(Timestamp,)), T0 + 3)  # 2**15 ahead: behind
    assert pba(actions).status == Status.SEQUENCE_OUT_OF_WINDOW


def test_a_new_mag_starts_its_own_sequence_numbers():
    lma = make_lma()
    register(lma, sequence=500, omit=(Timestamp,))
    register(lma, src=MAG2, sequence=1, hi=3, omit=(Timestamp,))
    assert lma.bindings[MN1].proxy_coa == MAG2


@pytest.mark.parametrize("option, status", [
    (HomeNetworkPrefix, Status.MISSING_HOME_NETWORK_PREFIX_OPTION),
    (MobileNodeIdentifier, Status.MISSING_MN_IDENTIFIER_OPTION),
    (HandoffIndicator, Status.MISSING_HANDOFF_INDICATOR_OPTION),
    (AccessTechnologyType, Status.MISSING_ACCESS_TECH_TYPE_OPTION),
])
def test_a_missing_mandatory_option_is_refused(option, status):
    lma = make_lma()
    actions = to_lma(lma, pbu(omit=(option,)), T0)
    ack = pba(actions)
    assert ack.status == status and ack.flags == BAFlags.P and ack.lifetime == 0
    mn_id = None if option is MobileNodeIdentifier else MN1
    assert of_type(actions, PbuRejected) == [PbuRejected(mn_id, status, MAG1)]
    assert lma.bindings == {} and len(lma.policy.hnp_pool) == 0


@pytest.mark.parametrize("identifier", [b"", b"\xff\xfe"])
def test_an_unusable_mn_identifier_counts_as_missing(identifier):
    message = pbu(omit=(MobileNodeIdentifier,), extra=(MobileNodeIdentifier(identifier),))
    assert pba(to_lma(make_lma(), message)).status == Status.MISSING_MN_IDENTIFIER_OPTION


def test_another_mobile_nodes_prefix_is_refused_155():
    lma = make_lma()
    register(lma, MN1)
    actions = to_lma(lma, pbu(MN2, hnp=FIRST_HNP), T0)
    assert pba(actions).status == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX
    assert of_type(actions, PbuRejected) == [PbuRejected(MN2, Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, MAG1)]
    assert lma.policy.hnp_pool.owner_of(FIRST_HNP) == MN1


@pytest.mark.parametrize("prefix", ["2001:db8:999::/64", "2001:db8:100:1::/80"])
def test_a_prefix_outside_the_pool_is_refused_155(prefix):
    actions = to_lma(make_lma(), pbu(hnp=IPv6Network(prefix)))
    assert pba(actions).status == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX


def test_a_registered_mobile_node_cannot_switch_to_another_prefix():
    lma = make_lma()
    register(lma)
    actions = to_lma(lma, pbu(MN1, T0 + 1, sequence=2, hnp=SECOND_HNP), T0 + 1)
    assert pba(actions).status == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX
    assert lma.bindings[MN1].hnp == FIRST_HNP


def test_a_prefix_length_beyond_128_is_refused_not_raised():
    message = pbu(omit=(HomeNetworkPrefix,), extra=(HomeNetworkPrefix(200, IPv6Address("2001:db8:100::")),))
    assert pba(to_lma(make_lma(), message)).status == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX


def test_a_mag_outside_the_allowed_set_is_refused_154():
    lma = make_lma(allowed_mags={MAG2})
    actions = to_lma(lma, pbu(), T0, src=MAG1)
    assert pba(actions).status == Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG
    register(lma, src=MAG2)


def test_a_binding_update_without_the_p_flag_is_refused_152():
    actions = to_lma(make_lma(), pbu(flags=BUFlags.A | BUFlags.H))
    ack = pba(actions)
    assert (ack.status, ack.flags) == (Status.PROXY_REG_NOT_ENABLED, BAFlags(0))


def test_an_exhausted_prefix_pool_is_refused_130():
    lma = make_lma(hnp_pool=PrefixPool(IPv6Network("2001:db8:100::/64")))
    register(lma, MN1)
    actions = to_lma(lma, pbu(MN2), T0)
    assert pba(actions).status == Status.INSUFFICIENT_RESOURCES
    assert of_type(actions, PbuRejected) == [PbuRejected(MN2, Status.INSUFFICIENT_RESOURCES, MAG1)]


def test_an_exhausted_ipv4_pool_is_refused_130_and_the_prefix_is_given_back():
    lma = make_lma(ipv4_pool=AddressPool(IPv4Network("192.0.2.128/32")))
    register(lma, MN1, ipv4=ANY_IPV4)
    actions = to_lma(lma, pbu(MN2, ipv4=ANY_IPV4), T0)
    assert pba(actions).status == Status.INSUFFICIENT_RESOURCES
    assert lma.policy.hnp_pool.owner_of(SECOND_HNP) is None
    assert MN2 not in lma.bindings


def test_messages_that_are_not_pbus_are_left_to_the_daemon():
    lma = make_lma()
    assert to_lma(lma, HomeTestInit(bytes(8))) == []
    assert to_lma(lma, BindingAck(0, BAFlags.P, 1, 10)) == []
    ro_bu = pbu(extra=(CNHomeNetworkPrefix(128, IPv6Address("2001:db8:100:1::1")),))
    assert to_lma(lma, ro_bu) == []  # an RO BU (docs/protocol.md §4) goes between MAGs
    assert lma.bindings == {}


# --- Handover and deregistration ------------------------------------------------------


def test_handover_moves_the_binding_to_the_new_mag_with_the_same_prefix():
    lma = make_lma()
    register(lma, ipv4=ANY_IPV4)
    actions = to_lma(lma, pbu(MN1, T0 + 5, hi=3, ipv4=ANY_IPV4), T0 + 5, src=MAG2)
    # RFC 5846: MAG1 is asked first (a BRI); only its "the MN left" moves the binding
    assert of_type(actions, BindingUpdated) == [] and lma.bindings[MN1].proxy_coa == MAG1
    bri = only_send(actions)
    assert (bri.dst, bri.message.is_indication, find_option(bri.message, MobileNodeIdentifier).nai) == (MAG1, True, MN1)
    actions = old_mag_lets_go(lma, actions, T0 + 5)
    entry = lma.bindings[MN1]
    assert of_type(actions, BindingUpdated) == [BindingUpdated(entry, previous_proxy_coa=MAG1)]
    assert (entry.proxy_coa, entry.hnp, entry.ipv4_hoa, entry.registered) == (MAG2, FIRST_HNP, FIRST_HOA, T0)
    assert pba(actions).status == Status.ACCEPTED


def test_a_move_the_old_mag_refuses_leaves_the_binding_and_refuses_the_new_mag():
    """An RS is not an identity: MAG1 says MN1 is still attached there (132)."""
    lma = make_lma()
    register(lma)
    actions = old_mag_lets_go(lma, to_lma(lma, pbu(MN1, T0 + 5, hi=3), T0 + 5, src=MAG2), T0 + 5,
                              status=RevocationStatus.REVOCATION_FAILED_MN_IS_ATTACHED)
    assert lma.bindings[MN1].proxy_coa == MAG1 and not of_type(actions, BindingUpdated)
    assert pba(actions).status == Status.ADMIN_PROHIBITED
    assert only(of_type(actions, MoveRefused)) == MoveRefused(MN1, MAG2, MAG1)


def test_a_move_goes_ahead_when_the_old_mag_never_answers():
    lma = make_lma()
    register(lma)
    actions = to_lma(lma, pbu(MN1, T0 + 5, hi=3), T0 + 5, src=MAG2)
    assert len(sends(actions)) == 1
    fired = run_until([lma], T0 + 10)
    bris = [s for _, _, acts in fired for s in sends(acts) if isinstance(s.message, BindingRevocation)]
    # BRIs again 0.5 s and 1 s later; 2 s on, the move goes ahead
    assert [t for t, _, acts in fired if sends(acts)][:3] == [T0 + 5.5, T0 + 6.5, T0 + 8.5]
    assert len(bris) == 2 and lma.bindings[MN1].proxy_coa == MAG2


def test_a_slow_answer_to_the_first_bri_still_counts():
    """The old MAG's 132 arrives after the LMA has sent the BRI again: it
    answers a BRI of this move all the same, and the binding stays."""
    lma = make_lma()
    register(lma)
    (first,) = sends(to_lma(lma, pbu(MN1, T0 + 5, hi=3), T0 + 5, src=MAG2))
    run_until([lma], T0 + 6.6)                                     # two more BRIs went out
    message, _ = carry(first)
    late = BindingRevocation.acknowledgement(message.sequence, RevocationStatus.REVOCATION_FAILED_MN_IS_ATTACHED,
                                             [find_option(message, Timestamp)])
    actions = lma.receive_revocation(*carry(Send(late, MAG1, LMA)), T0 + 6.6)
    assert [type(a).__name__ for a in actions][:1] == ["MoveRefused"]
    run_until([lma], T0 + 20)
    assert lma.bindings[MN1].proxy_coa == MAG1


def test_the_new_mags_deregistration_cancels_its_held_move():
    lma = make_lma()
    register(lma)
    to_lma(lma, pbu(MN1, T0 + 5, hi=3), T0 + 5, src=MAG2)           # held: BRI to MAG1
    to_lma(lma, pbu(MN1, T0 + 5.2, sequence=2, lifetime=0), T0 + 5.2, src=MAG2)   # MAG2 lets the MN go
    assert lma.pending == {}
    run_until([lma], T0 + 20)                                       # no answer from MAG1: nothing moves
    assert lma.bindings[MN1].proxy_coa == MAG1


def test_a_forged_bra_moves_nothing():
    lma = make_lma()
    register(lma)
    (bri,) = sends(to_lma(lma, pbu(MN1, T0 + 5, hi=3), T0 + 5, src=MAG2))
    message, _ = carry(bri)
    stale = BindingRevocation.acknowledgement(message.sequence, 0, [Timestamp.from_unix(T0 - 60)])
    assert lma.receive_revocation(*carry(Send(stale, MAG1, LMA)), T0 + 5) == []     # not the BRI's Timestamp
    wrong_sender = BindingRevocation.acknowledgement(message.sequence, 0, [find_option(message, Timestamp)])
    assert lma.receive_revocation(*carry(Send(wrong_sender, MAG2, LMA)), T0 + 5) == []  # not the old MAG
    assert lma.bindings[MN1].proxy_coa == MAG1


def test_the_old_mags_deregistration_lets_a_held_move_go_ahead():
    lma = make_lma()
    register(lma)
    to_lma(lma, pbu(MN1, T0 + 5, hi=3), T0 + 5, src=MAG2)
    actions = to_lma(lma, pbu(MN1, T0 + 5.1, sequence=2, lifetime=0, hi=4, hnp=FIRST_HNP), T0 + 5.1)
    assert lma.bindings[MN1].proxy_coa == MAG2 and MN1 not in lma.pending
    assert [s.dst for s in sends(actions)] == [MAG1, MAG2]        # MAG1's PBA, then MAG2's


@pytest.mark.parametrize("sent", [T0 + 4, T0 + 6], ids=["sent before the handover", "sent after it"])
def test_a_late_deregistration_from_the_previous_mag_leaves_the_binding(sent):
    lma = make_lma()
    register(lma)
    register(lma, now=T0 + 5, src=MAG2, hi=3)
    actions = to_lma(lma, pbu(MN1, T0 + 7, sequence=2, lifetime=0, hi=5, hnp=FIRST_HNP, timestamp=sent),
                     T0 + 7, src=MAG1)
    assert of_type(actions, BindingRemoved) == []
    assert lma.bindings[MN1].proxy_coa == MAG2
    assert lma.policy.hnp_pool.owner_of(FIRST_HNP) == MN1
    # Older than the handover: a replay as far as the LMA can tell (157);
    # newer: accepted, and nothing changes (RFC 5213 §5.3.5).
    expected = Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED if sent < T0 + 5 else Status.ACCEPTED
    assert pba(actions).status == expected


def test_deregistration_removes_the_binding_and_the_prefix_goes_to_the_next_mn_after_the_delay():
    lma = make_lma(min_delay_before_bce_delete=10.0)
    register(lma, ipv4=ANY_IPV4)
    entry = lma.bindings[MN1]
    actions = to_lma(lma, pbu(MN1, T0 + 60, sequence=2, lifetime=0, hi=5, hnp=FIRST_HNP, ipv4=FIRST_HOA), T0 + 60)
    assert of_type(actions, BindingRemoved) == [BindingRemoved(entry)]
    ack = pba(actions)
    assert (ack.status, ack.lifetime, ack.sequence) == (Status.ACCEPTED, 0, 2)
    assert lma.bindings == {}
    assert lma.binding_for_address(IPv6Address("2001:db8:100::1")) is None
    # RFC 5213 §5.3.5: the entry waits MinDelayBeforeBCEDelete before it goes.
    assert lma.next_deadline() == T0 + 70
    register(lma, MN2, now=T0 + 61, ipv4=ANY_IPV4)
    assert lma.bindings[MN2].hnp == SECOND_HNP
    assert lma.on_timer(T0 + 70) == []  # the tunnel already went
    assert lma.policy.hnp_pool.owner_of(FIRST_HNP) is None
    assert lma.policy.ipv4_pool.owner_of(FIRST_HOA) is None
    register(lma, "mn3@example.org", now=T0 + 71, ipv4=ANY_IPV4)
    assert lma.bindings["mn3@example.org"].hnp == FIRST_HNP
    assert lma.bindings["mn3@example.org"].ipv4_hoa == FIRST_HOA


def test_a_pbu_from_the_next_mag_within_the_delay_keeps_the_prefix():
    lma = make_lma()
    register(lma)
    to_lma(lma, pbu(MN1, T0 + 5, sequence=2, lifetime=0, hi=5, hnp=FIRST_HNP), T0 + 5)
    actions = to_lma(lma, pbu(MN1, T0 + 6, hi=3), T0 + 6, src=MAG2)
    entry = lma.bindings[MN1]
    assert entry.hnp == FIRST_HNP and entry.proxy_coa == MAG2
    assert of_type(actions, BindingUpdated) == [BindingUpdated(entry, previous_proxy_coa=MAG1)]
    assert lma.on_timer(T0 + 20) == [] and lma.bindings[MN1] == entry
    assert lma.next_deadline() == T0 + 6 + 3600


def test_a_replayed_registration_after_deregistration_is_refused():
    lma = make_lma()
    register(lma, now=T0)
    to_lma(lma, pbu(MN1, T0 + 5, sequence=2, lifetime=0, hnp=FIRST_HNP), T0 + 5)
    actions = to_lma(lma, pbu(MN1, T0 + 6, timestamp=T0), T0 + 6)
    assert pba(actions).status == Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED


def test_deregistration_of_an_unknown_mobile_node_is_acknowledged():
    lma = make_lma()
    actions = to_lma(lma, pbu(lifetime=0, hnp=FIRST_HNP))
    assert [type(a) for a in actions] == [Send]
    assert pba(actions).status == Status.ACCEPTED


# --- IPv4 transport (RFC 5844 §4) ----------------------------------------------------------


def ipv4_pbu(careof=MAG1_4, now=T0, **kw):
    extra = (IPv4CareofAddress(careof),) if careof is not None else ()
    return pbu(MN1, now, ipv4=ANY_IPV4, extra=extra, **kw)


def test_over_ipv4_the_pba_goes_back_to_the_observed_endpoint():
    lma = make_lma()
    mag_endpoint = UdpEndpoint(MAG1_4)
    actions = to_lma(lma, ipv4_pbu(), T0, ipv4_dst=UdpEndpoint(LMA4), ipv4_src=MAG1_4)
    send = only_send(actions)
    assert (send.src, send.dst, send.ipv4_dst, send.ipv4_src) == (LMA, MAG1, mag_endpoint, LMA4)
    entry = lma.bindings[MN1]
    assert (entry.mag_ipv4, entry.ipv4_proxy_coa, entry.nat_detected) == (mag_endpoint, MAG1_4, False)
    assert find_option(pba(actions), NATDetection) is None


def test_a_nat_is_detected_when_the_ipv4_care_of_address_is_not_the_source_seen():
    lma = make_lma(nat_keepalive=25)
    message, arrival = carry(Send(ipv4_pbu(), MAG1, LMA, ipv4_dst=UdpEndpoint(LMA4), ipv4_src=MAG1_4), nat=NAT)
    actions = lma.receive(message, arrival, T0)
    entry = lma.bindings[MN1]
    assert (entry.mag_ipv4, entry.ipv4_proxy_coa, entry.nat_detected) == (NAT, MAG1_4, True)
    assert only_send(actions).ipv4_dst == NAT
    ack = pba(actions)
    assert find_option(ack, NATDetection) == NATDetection(25)
    assert ack.options[-2:] == [IPv4HomeAddressReply(0, FIRST_HOA, 25), NATDetection(25)]


def test_a_new_nat_mapping_moves_the_tunnel():
    lma = make_lma()
    first = carry(Send(ipv4_pbu(), MAG1, LMA, ipv4_dst=UdpEndpoint(LMA4), ipv4_src=MAG1_4), nat=NAT)
    lma.receive(*first, T0)
    moved = replace(NAT, port=40002)
    refresh = Send(ipv4_pbu(now=T0 + 1, hi=5), MAG1, LMA, ipv4_dst=UdpEndpoint(LMA4), ipv4_src=MAG1_4)
    actions = lma.receive(*carry(refresh, nat=moved), T0 + 1)
    (update,) = of_type(actions, BindingUpdated)
    assert (update.previous_proxy_coa, update.previous_mag_ipv4, update.entry.mag_ipv4) == (MAG1, NAT, moved)


def test_without_an_lma_ipv4_address_the_pba_leaves_from_the_address_the_pbu_reached():
    lma = make_lma(ipv4_address=None)
    actions = to_lma(lma, ipv4_pbu(), T0, ipv4_dst=UdpEndpoint(IPv4Address("192.0.2.9")), ipv4_src=MAG1_4)
    assert only_send(actions).ipv4_src == IPv4Address("192.0.2.9")


# --- Lookups and restart ---------------------------------------------------------------------


def test_binding_for_address_finds_the_mn_by_any_address_it_holds():
    lma = make_lma()
    register(lma, MN1, ipv4=ANY_IPV4)
    register(lma, MN2)
    assert lma.binding_for_address(IPv6Address("2001:db8:100::abcd")).mn_id == MN1
    assert lma.binding_for_address(IPv6Address("2001:db8:100:1::1")).mn_id == MN2
    assert lma.binding_for_address(FIRST_HOA).mn_id == MN1
    assert lma.binding_for_address(IPv6Address("2001:db8:100:2::1")) is None
    assert lma.binding_for_address(IPv4Address("192.0.2.130")) is None
    assert lma.binding_for_address(IPv4Address("0.0.0.1")) is None  # no mixing of families


def test_restore_after_a_restart_keeps_serving_refreshes():
    before = make_lma()
    register(before, MN1, ipv4=ANY_IPV4)
    register(before, MN2)
    saved = list(before.bindings.values())

    after = make_lma()
    assert after.restore(saved) == []
    assert after.bindings == before.bindings
    assert after.next_deadline() == T0 + 3600
    # A replay of an old PBU is still refused.
    actions = to_lma(after, pbu(MN2, T0 + 3, timestamp=T0), T0 + 3)
    assert pba(actions).status == Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED
    # The pools hold the restored prefixes: a new MN gets the next free one.
    register(after, "mn3@example.org")
    assert after.bindings["mn3@example.org"].hnp == IPv6Network("2001:db8:100:2::/64")
    # A refresh of a restored binding is a refresh, not a new registration.
    later = T0 + 2880
    actions = to_lma(after, pbu(MN1, later, sequence=2, hi=5, hnp=FIRST_HNP, ipv4=FIRST_HOA), later)
    assert pba(actions).status == Status.ACCEPTED
    assert of_type(actions, BindingUpdated) == [BindingUpdated(after.bindings[MN1])]
    assert after.bindings[MN1].registered == T0 and after.bindings[MN1].expires == later + 3600


def test_restore_refuses_entries_that_no_longer_fit_the_pools():
    before = make_lma()
    register(before, MN1, ipv4=ANY_IPV4)
    register(before, MN2)
    after = make_lma(ipv4_pool=None)
    assert after.restore(list(before.bindings.values())) == [before.bindings[MN1]]
    assert list(after.bindings) == [MN2]
    assert after.policy.hnp_pool.owner_of(FIRST_HNP) is None
