"""The MAG binding update list core (RFC 5213 §6, RFC 5844), on its own and
talking to the LMA core through the wire codec, with a fake clock."""

from ipaddress import IPv4Address, IPv6Address, IPv6Network

from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st
from protocol_helpers import (FIRST_HNP, FIRST_HOA, LMA, LMA4, MAG1, MAG1_4, MAG2, MAG2_4, MN1, MN2, NAT,
                              SECOND_HNP, T0, carry, exchange, make_lma, make_mag, mag_policy, of_type, only_send,
                              run_until, sends)

from pmip6ctl.transport import PMIP6_UDP_PORT, Send, UdpEndpoint
from pmip6ctl.protocol.binding_cache import BindingRemoved, BindingUpdated
from pmip6ctl.protocol.binding_update_list import (BindingState, BindingUpdateList, IPv4ServiceDeclined,
                                                   MobileNodeDeregistered, MobileNodeRegistered,
                                                   RegistrationRejected)
from pmip6ctl.protocol.pools import PrefixPool
from pmip6ctl.wire import (AccessTechnologyType, BAFlags, BindingAck, BindingUpdate, BUFlags, HandoffIndicator,
                           HomeNetworkPrefix, IPv4CareofAddress, IPv4HomeAddressReply, IPv4HomeAddressRequest,
                           MobileNodeIdentifier, Status, Timestamp, find_option)

ALL_ZERO_HNP = HomeNetworkPrefix(0, IPv6Address("::"))
ASK_IPV4 = IPv4HomeAddressRequest(IPv4Address("0.0.0.0"), prefix_length=0)


def pbu_of(actions) -> BindingUpdate:
    """The PBU in the MAG's actions, as the LMA decodes it."""
    message, _ = carry(only_send(actions))
    return message


def registered(mag=None, lma=None, mn_id=MN1, now=T0, link="eth1"):
    """A MAG and an LMA with mn_id registered at `now`."""
    mag = mag or make_mag()
    lma = lma or make_lma()
    _, at_mag = exchange(mag, lma, mag.attach(mn_id, link, now), now)
    assert of_type(at_mag, MobileNodeRegistered)
    return mag, lma


def answer(mag, status, sequence, lifetime=3600, options=(), mn_id=MN1, src=LMA, flags=BAFlags.P, now=T0,
           timestamp=None):
    """Hand the MAG a PBA built in the test, with the Timestamp of the PBU
    it answers (RFC 5213 §5.3.6), as an LMA copies it."""
    if timestamp is None:
        entry = mag.entries.get(MN1)
        sent = [t.timestamp for t in (entry.outstanding if entry else ()) if t.sequence == sequence]
        timestamp = Timestamp(sent[0]) if sent else Timestamp.from_unix(now)
    ack = BindingAck(status, flags, sequence, lifetime // 4,
                     [MobileNodeIdentifier.from_nai(mn_id), *options, timestamp])
    return mag.receive(*carry(Send(ack, src, MAG1)), now)


# --- Attach and the PBU -------------------------------------------------------------


def test_a_mag_without_an_ipv4_address_sends_no_ipv4_coa():
    mag = make_mag(ipv4_proxy_coa=None)
    assert find_option(pbu_of(mag.attach(MN1, "eth1", T0)), IPv4CareofAddress) is None


def test_attach_sends_a_pbu_asking_for_a_prefix_and_an_ipv4_home_address():
    mag = make_mag()
    actions = mag.attach(MN1, "eth1", T0, mac="02:00:00:00:00:01")
    send = only_send(actions)
    assert (send.src, send.dst, send.ipv4_dst, send.ipv4_src) == (MAG1, LMA, None, None)
    message = pbu_of(actions)
    # RFC 5213 §8.1: A, H and P set; lifetime in 4-second units.
    assert (message.sequence, message.flags, message.lifetime_seconds) == (1, BUFlags.A | BUFlags.H | BUFlags.P, 3600)
    # ... and the IPv4 CoA (32) even over IPv6 transport: the LMA then knows
    # our IPv4 proxy CoA for its RO answers (DESIGN §2)
    assert message.options == [MobileNodeIdentifier.from_nai(MN1), ALL_ZERO_HNP, HandoffIndicator(1),
                               AccessTechnologyType(3), Timestamp.from_unix(T0), ASK_IPV4,
                               IPv4CareofAddress(MAG1_4)]
    entry = mag.entries[MN1]
    assert (entry.link, entry.mac, entry.state, entry.sequence) == ("eth1", "02:00:00:00:00:01",
                                                                    BindingState.REGISTERING, 1)
    assert mag.next_deadline() == T0 + 1


def test_without_ipv4_the_pbu_asks_for_no_ipv4_home_address():
    message = pbu_of(make_mag(request_ipv4=False).attach(MN1, "eth1", T0))
    assert find_option(message, IPv4HomeAddressRequest) is None


def test_access_technology_type_comes_from_policy():
    message = pbu_of(make_mag(access_technology_type=4).attach(MN1, "wlan0", T0))
    assert find_option(message, AccessTechnologyType) == AccessTechnologyType(4)


def test_attach_after_a_handoff_says_so():
    message = pbu_of(make_mag().attach(MN1, "eth1", T0, handoff=True))
    assert find_option(message, HandoffIndicator).handoff_indicator == 3  # between MAGs


@pytest.mark.parametrize("state", ["registering", "registered"])
def test_attaching_again_on_the_same_link_is_idempotent(state):
    mag, _ = registered() if state == "registered" else (make_mag(), None)
    if state == "registering":
        mag.attach(MN1, "eth1", T0)
    assert mag.attach(MN1, "eth1", T0 + 1) == []


def test_attaching_on_another_link_is_a_handoff_between_interfaces():
    mag, lma = registered()
    actions = mag.attach(MN1, "eth2", T0 + 1)
    (gone,) = of_type(actions, MobileNodeDeregistered)
    assert (gone.entry.link, gone.entry.hnp) == ("eth1", FIRST_HNP)
    assert find_option(pbu_of(actions), HandoffIndicator).handoff_indicator == 2
    _, at_mag = exchange(mag, lma, actions, T0 + 1)
    (up,) = of_type(at_mag, MobileNodeRegistered)
    assert (up.entry.link, up.entry.hnp) == ("eth2", FIRST_HNP)


# --- Registration through the LMA -------------------------------------------------------


def test_registration_through_the_lma_installs_the_prefix_and_ipv4_home_address():
    mag, lma = make_mag(), make_lma()
    at_lma, at_mag = exchange(mag, lma, mag.attach(MN1, "eth1", T0), T0)
    (update,) = of_type(at_lma, BindingUpdated)
    assert (update.entry.hnp, update.entry.ipv4_hoa, update.entry.proxy_coa) == (FIRST_HNP, FIRST_HOA, MAG1)
    (up,) = at_mag
    assert isinstance(up, MobileNodeRegistered)
    assert (up.entry.mn_id, up.entry.hnp, up.entry.ipv4_hoa, up.entry.state) == (
        MN1, FIRST_HNP, FIRST_HOA, BindingState.REGISTERED)
    entry = mag.entries[MN1]
    assert (entry.lifetime, entry.expires, entry.refresh_at, entry.registered) == (3600, T0 + 3600, T0 + 2880, T0)
    assert (entry.last_status, entry.nat_detected, entry.nat_refresh) == (0, False, None)
    assert entry.retransmission.due is None and mag.next_deadline() == T0 + 2880


def test_an_lma_without_ipv4_service_answers_170_and_the_mag_registers_the_mn_for_ipv6_alone():
    # RFC 5844 §3.1.2: status 170 refuses the PBU for its IPv4 HoA Request; the MN keeps
    # its IPv6 service: the MAG asks again at once, without the request.
    mag, lma = make_mag(), make_lma(ipv4_pool=None)
    first = mag.attach(MN1, "eth1", T0)
    assert find_option(pbu_of(first), IPv4HomeAddressRequest) is not None
    at_lma, at_mag = exchange(mag, lma, first, T0)
    assert not of_type(at_lma, BindingUpdated)
    (declined,) = of_type(at_mag, IPv4ServiceDeclined)
    assert declined.status == Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE
    assert not of_type(at_mag, RegistrationRejected)
    again = pbu_of(at_mag)                                    # sent at once, not after a backoff
    assert find_option(again, IPv4HomeAddressRequest) is None
    at_lma, at_mag = exchange(mag, lma, at_mag, T0)
    (update,) = of_type(at_lma, BindingUpdated)
    assert (update.entry.hnp, update.entry.ipv4_hoa) == (FIRST_HNP, None)
    (up,) = of_type(at_mag, MobileNodeRegistered)
    assert (up.entry.hnp, up.entry.ipv4_hoa, up.entry.state) == (FIRST_HNP, None, BindingState.REGISTERED)
    # its refreshes stay IPv6 only; a later 170 for this attachment is a plain rejection
    refreshed = [pbu_of(actions) for _, _, actions in run_until([mag], T0 + 2881)]
    assert refreshed and all(find_option(p, IPv4HomeAddressRequest) is None for p in refreshed)


def test_a_second_170_in_the_same_attachment_is_a_rejection_not_a_loop():
    mag = make_mag()
    first = pbu_of(mag.attach(MN1, "eth1", T0))
    at_mag = answer(mag, Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE, first.sequence)
    again = pbu_of(at_mag)
    at_mag = answer(mag, Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE, again.sequence)
    (rejected,) = of_type(at_mag, RegistrationRejected)
    assert rejected.status == Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE
    assert mag.entries[MN1].state is BindingState.FAILED


def test_a_new_attachment_asks_for_ipv4_again():
    mag = make_mag()
    first = pbu_of(mag.attach(MN1, "eth1", T0))
    answer(mag, Status.NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE, first.sequence)
    mag.detach(MN1, T0 + 1)
    mag.entries.pop(MN1, None)
    assert find_option(pbu_of(mag.attach(MN1, "eth2", T0 + 2)), IPv4HomeAddressRequest) is not None


def test_the_granted_lifetime_counts_from_when_the_pbu_left():
    mag, lma = make_mag(), make_lma(max_lifetime=1200)
    actions = mag.attach(MN1, "eth1", T0)
    answer_ = sends(lma.receive(*carry(only_send(actions)), T0 + 0.5))
    mag.receive(*carry(answer_[0]), T0 + 0.7)
    entry = mag.entries[MN1]
    assert (entry.lifetime, entry.expires, entry.refresh_at) == (1200, T0 + 1200, T0 + 960)


def test_the_action_keeps_the_entry_as_it_was():
    mag, _ = registered()
    (gone,) = of_type(mag.detach(MN1, T0 + 1), MobileNodeDeregistered)
    assert gone.entry.state is BindingState.REGISTERED
    assert mag.entries[MN1].state is BindingState.DEREGISTERING


# --- Retransmission (RFC 6275 §11.8) ---------------------------------------------------------


def test_unanswered_pbus_are_retransmitted_at_1_2_4_8_16_32_32_seconds():
    mag = make_mag()
    first = pbu_of(mag.attach(MN1, "eth1", T0))
    fired = run_until([mag], T0 + 95)
    times = [T0] + [t for t, _, _ in fired]
    assert [b - a for a, b in zip(times, times[1:])] == [1, 2, 4, 8, 16, 32, 32]
    assert mag.next_deadline() == T0 + 95 + 32  # and on at the cap
    retransmitted = [pbu_of(actions) for _, _, actions in fired]
    # Each with a new sequence number and timestamp, otherwise the same request.
    assert [m.sequence for m in retransmitted] == list(range(2, 9))
    assert [find_option(m, Timestamp).to_unix() for m in retransmitted] == times[1:]
    for message in retransmitted:
        assert message.options[:4] == first.options[:4] and message.options[5:] == first.options[5:]
    assert mag.entries[MN1].state is BindingState.REGISTERING


def test_a_pba_for_an_earlier_transmission_still_completes_the_registration():
    mag, lma = make_mag(), make_lma()
    first = mag.attach(MN1, "eth1", T0)
    ((_, _, second),) = run_until([mag], T0 + 1)
    _, at_mag = exchange(mag, lma, first, T0 + 1.5)
    assert of_type(at_mag, MobileNodeRegistered)
    assert mag.next_deadline() == T0 + 2880  # retransmission stopped
    # The answer to the retransmission comes later: stale, ignored.
    _, at_mag = exchange(mag, lma, second, T0 + 1.6)
    assert at_mag == [] and mag.entries[MN1].expires == T0 + 3600


def test_custom_retransmission_timers():
    mag = make_mag(initial_bindack_timeout=0.5, max_bindack_timeout=2.0)
    mag.attach(MN1, "eth1", T0)
    times = [t for t, _, _ in run_until([mag], T0 + 10)]
    assert times == [T0 + 0.5, T0 + 1.5, T0 + 3.5, T0 + 5.5, T0 + 7.5, T0 + 9.5]


# --- Refresh and expiry -------------------------------------------------------------------


def test_refresh_before_expiry_with_handoff_state_not_changed():
    mag, lma = registered()
    ((when, _, actions),) = run_until([mag], T0 + 2880)
    assert when == T0 + 2880
    message = pbu_of(actions)
    assert message.lifetime_seconds == 3600
    assert find_option(message, HandoffIndicator).handoff_indicator == 5
    assert find_option(message, HomeNetworkPrefix) == HomeNetworkPrefix(64, FIRST_HNP.network_address)
    assert find_option(message, IPv4HomeAddressRequest) == IPv4HomeAddressRequest(FIRST_HOA)
    at_lma, at_mag = exchange(mag, lma, actions, T0 + 2880)
    assert at_mag == []  # a refresh changes nothing on the access side
    assert of_type(at_lma, BindingUpdated)[0].entry.expires == T0 + 2880 + 3600
    entry = mag.entries[MN1]
    assert (entry.expires, entry.refresh_at, entry.registered) == (T0 + 2880 + 3600, T0 + 2 * 2880, T0)


def test_when_refreshes_go_unanswered_the_binding_expires_on_both_sides_at_once():
    mag, lma = registered()
    fired = run_until([lma, mag], T0 + 3600)
    refreshes = [pbu_of(actions) for t, core, actions in fired if core is mag and t < T0 + 3600]
    assert {find_option(m, HandoffIndicator).handoff_indicator for m in refreshes} == {5}
    at_expiry = [(core, actions) for t, core, actions in fired if t == T0 + 3600]
    assert [type(a) for core, actions in at_expiry for a in actions] == [BindingRemoved, MobileNodeDeregistered]
    entry = mag.entries[MN1]
    assert (entry.state, entry.hnp, entry.ipv4_hoa, entry.expires) == (BindingState.REGISTERING, None, None, None)
    # The MN is still on its link: the MAG keeps asking, now for a new registration.
    ((when, _, actions),) = run_until([mag], mag.next_deadline())
    assert pbu_of(actions).options[1:3] == [ALL_ZERO_HNP, HandoffIndicator(1)]
    _, at_mag = exchange(mag, lma, actions, when)
    assert [type(a) for a in at_mag] == [MobileNodeRegistered]


def test_a_pba_for_a_binding_already_over_is_ignored():
    mag = make_mag()
    mag.attach(MN1, "eth1", T0)
    prefix = HomeNetworkPrefix(64, FIRST_HNP.network_address)
    assert answer(mag, 0, 1, lifetime=8, options=[prefix], now=T0 + 8) == []
    assert mag.entries[MN1].state is BindingState.REGISTERING


def test_a_new_prefix_on_refresh_replaces_the_routes():
    mag, _ = registered()
    ((_, _, actions),) = run_until([mag], T0 + 2880)
    sequence = pbu_of(actions).sequence
    new = [HomeNetworkPrefix(64, SECOND_HNP.network_address), IPv4HomeAddressReply(0, FIRST_HOA, 25)]
    gone, up = answer(mag, 0, sequence, options=new, now=T0 + 2880)
    assert isinstance(gone, MobileNodeDeregistered) and gone.entry.hnp == FIRST_HNP
    assert isinstance(up, MobileNodeRegistered) and up.entry.hnp == SECOND_HNP


# --- Rejection and stale answers ---------------------------------------------------------------


def test_a_rejected_registration_fails_and_stops():
    mag, lma = make_mag(), make_lma(allowed_mags={MAG2})
    _, at_mag = exchange(mag, lma, mag.attach(MN1, "eth1", T0), T0)
    (rejected,) = at_mag
    assert isinstance(rejected, RegistrationRejected)
    assert (rejected.status, rejected.entry.state) == (Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG, BindingState.FAILED)
    # tried again 30 s later (the refusal may pass), then 60, 120 ... up to 16x
    assert mag.entries[MN1].last_status == 154 and mag.next_deadline() == T0 + 30
    # Attaching again tries afresh at once.
    assert pbu_of(mag.attach(MN1, "eth1", T0 + 5)).sequence == 2


def test_a_refused_registration_is_tried_again_later_with_backoff():
    """The LMA refused because another MAG holds the MN (RFC 5846: its link is
    live there). Once that MAG lets it go, the retry registers the MN: the MN
    that was here all along is not shut out until its link flaps."""
    mag, lma = make_mag(), make_lma(allowed_mags={MAG2})
    exchange(mag, lma, mag.attach(MN1, "eth1", T0), T0)
    assert run_until([mag], T0 + 29.9) == []
    fired = run_until([mag], T0 + 30)
    assert [t for t, _, acts in fired if acts] == [T0 + 30]                  # a new PBU
    assert mag.entries[MN1].state is BindingState.REGISTERING
    lma.policy = replace(lma.policy, allowed_mags=None)                      # the obstacle is gone
    ((_, _, actions),) = fired
    _, at_mag = exchange(mag, lma, actions, T0 + 30)
    assert mag.entries[MN1].state is BindingState.REGISTERED


def test_retries_after_refusals_back_off_to_sixteen_times():
    mag, lma = make_mag(), make_lma(allowed_mags={MAG2})
    actions, now, delays = mag.attach(MN1, "eth1", T0), T0, []
    for _ in range(6):
        exchange(mag, lma, actions, now)
        delays.append(mag.entries[MN1].retry_at - now)
        ((now, _, actions),) = run_until([mag], mag.entries[MN1].retry_at)
    assert delays == [30, 60, 120, 240, 480, 480]


def test_a_rejected_refresh_tears_the_routes_down():
    mag, _ = registered()
    ((_, _, actions),) = run_until([mag], T0 + 2880)
    rejected, gone = answer(mag, Status.TIMESTAMP_MISMATCH, pbu_of(actions).sequence, now=T0 + 2880)
    assert isinstance(rejected, RegistrationRejected) and rejected.status == Status.TIMESTAMP_MISMATCH
    assert isinstance(gone, MobileNodeDeregistered) and gone.entry.hnp == FIRST_HNP
    assert mag.entries[MN1].state is BindingState.FAILED and mag.next_deadline() == T0 + 2880 + 30


def test_a_pba_with_the_right_number_but_another_pbus_timestamp_is_ignored():
    """The 16-bit sequence number comes round; the Timestamp does not: a PBA
    captured earlier names an older PBU (issue: replayed answers)."""
    mag = make_mag()
    pbu = pbu_of(mag.attach(MN1, "eth1", T0))
    ok = [HomeNetworkPrefix(64, FIRST_HNP.network_address)]
    old = find_option(pbu, Timestamp).timestamp - 65536 * 120
    assert answer(mag, 0, pbu.sequence, options=ok, timestamp=Timestamp(old)) == []
    assert answer(mag, 0, pbu.sequence, options=ok, timestamp=None) != []


def test_sequence_numbers_start_anywhere_after_a_start():
    firsts = {pbu_of(BindingUpdateList(mag_policy()).attach(MN1, "eth1", T0)).sequence for _ in range(8)}
    assert len(firsts) > 1


@pytest.mark.parametrize("case", ["unknown mn", "wrong sequence", "no P flag", "not from the lma", "not a pba"])
def test_stale_or_unknown_answers_are_ignored(case):
    mag = make_mag()
    mag.attach(MN1, "eth1", T0)
    ok = [HomeNetworkPrefix(64, FIRST_HNP.network_address)]
    if case == "unknown mn":
        assert answer(mag, 0, 1, options=ok, mn_id=MN2) == []
    elif case == "wrong sequence":
        assert answer(mag, 0, 2, options=ok) == []
    elif case == "no P flag":
        assert answer(mag, 0, 1, options=ok, flags=BAFlags(0)) == []
    elif case == "not from the lma":
        assert answer(mag, 0, 1, options=ok, src=MAG2) == []
    else:
        assert mag.receive(*carry(Send(BindingUpdate(1, BUFlags.P, 1), LMA, MAG1)), T0) == []
    assert mag.entries[MN1].state is BindingState.REGISTERING


def test_an_accepting_pba_without_a_prefix_is_ignored():
    mag = make_mag()
    mag.attach(MN1, "eth1", T0)
    assert answer(mag, 0, 1) == []
    assert answer(mag, 0, 1, options=[HomeNetworkPrefix(0, IPv6Address("::"))]) == []
    assert mag.entries[MN1].state is BindingState.REGISTERING


def test_sequence_out_of_window_continues_from_the_lmas_number():
    # RFC 6275 §11.7.3; an LMA that orders by sequence number, after a MAG restart.
    mag = make_mag()
    mag.attach(MN1, "eth1", T0)
    actions = answer(mag, Status.SEQUENCE_OUT_OF_WINDOW, 500)
    assert pbu_of(actions).sequence == 501
    assert mag.entries[MN1].state is BindingState.REGISTERING and mag.next_deadline() == T0 + 1


# --- Detach ---------------------------------------------------------------------------


def test_detach_removes_the_routes_at_once_and_deregisters():
    mag, lma = registered()
    actions = mag.detach(MN1, T0 + 60)
    assert [type(a) for a in actions] == [MobileNodeDeregistered, Send]
    message = pbu_of(actions)
    assert message.lifetime == 0 and message.flags == BUFlags.A | BUFlags.H | BUFlags.P
    assert message.options == [MobileNodeIdentifier.from_nai(MN1), HomeNetworkPrefix(64, FIRST_HNP.network_address),
                               HandoffIndicator(5), AccessTechnologyType(3), Timestamp.from_unix(T0 + 60),
                               IPv4HomeAddressRequest(FIRST_HOA), IPv4CareofAddress(MAG1_4)]
    at_lma, at_mag = exchange(mag, lma, actions, T0 + 60)
    assert of_type(at_lma, BindingRemoved) and at_mag == []
    assert mag.entries == {} and lma.bindings == {}


def test_an_unanswered_deregistration_is_tried_three_times_then_forgotten():
    mag, _ = registered()
    mag.detach(MN1, T0 + 60)
    fired = run_until([mag], T0 + 100)
    assert [t for t, _, _ in fired] == [T0 + 61, T0 + 63]
    assert [pbu_of(actions).lifetime for _, _, actions in fired] == [0, 0]
    assert mag.entries == {} and mag.next_deadline() is None


def test_detach_of_an_unknown_or_leaving_mn_does_nothing():
    mag, _ = registered()
    assert mag.detach(MN2, T0) == []
    mag.detach(MN1, T0 + 1)
    assert mag.detach(MN1, T0 + 2) == []


def test_detach_while_still_registering_still_tells_the_lma():
    mag = make_mag()
    mag.attach(MN1, "eth1", T0)
    actions = mag.detach(MN1, T0 + 0.5)
    assert [type(a) for a in actions] == [Send] and pbu_of(actions).lifetime == 0


def test_reattach_while_deregistering_starts_over():
    mag, lma = registered()
    dereg = mag.detach(MN1, T0 + 10)
    attach = mag.attach(MN1, "eth1", T0 + 11)
    _, at_mag = exchange(mag, lma, attach, T0 + 11)
    assert [type(a) for a in at_mag] == [MobileNodeRegistered]
    # The deregistration arrives late: older than the registration, refused.
    at_lma, at_mag = exchange(mag, lma, dereg, T0 + 12)
    assert at_mag == [] and lma.bindings[MN1].hnp == FIRST_HNP
    assert mag.entries[MN1].state is BindingState.REGISTERED


# --- IPv4 transport (RFC 5844 §4) ---------------------------------------------------------------


def test_over_ipv4_the_pbu_goes_to_the_lmas_udp_port_with_the_ipv4_care_of_address():
    mag = make_mag(ipv4_transport=True)
    actions = mag.attach(MN1, "eth1", T0)
    send = only_send(actions)
    assert (send.src, send.dst) == (MAG1, LMA)
    assert (send.ipv4_dst, send.ipv4_src) == (UdpEndpoint(LMA4, PMIP6_UDP_PORT), MAG1_4)
    assert pbu_of(actions).options[-1] == IPv4CareofAddress(MAG1_4)


def test_ipv4_transport_needs_the_addresses():
    with pytest.raises(ValueError):
        make_mag(ipv4_transport=True, lma_ipv4=None)


@pytest.mark.parametrize("nat", [None, NAT], ids=["no nat", "behind a nat"])
def test_ipv4_transport_through_the_lma_and_nat_detection(nat):
    mag, lma = make_mag(ipv4_transport=True), make_lma(nat_keepalive=15)
    at_lma, at_mag = exchange(mag, lma, mag.attach(MN1, "eth1", T0), T0, nat=nat)
    entry = of_type(at_lma, BindingUpdated)[0].entry
    assert entry.mag_ipv4 == (nat or UdpEndpoint(MAG1_4)) and entry.nat_detected == (nat is not None)
    (up,) = at_mag
    assert (up.entry.nat_detected, up.entry.nat_refresh) == ((True, 15) if nat else (False, None))


# --- Handover between MAGs -------------------------------------------------------------------------


def test_handover_to_a_new_mag_keeps_the_prefix_and_the_old_mags_late_deregistration_is_harmless():
    lma = make_lma()
    mag1, _ = registered(lma=lma)
    mag2 = make_mag(MAG2, MAG2_4)
    at_lma, at_mag2 = exchange(mag2, lma, mag2.attach(MN1, "eth1", T0 + 30, handoff=True), T0 + 30)
    (update,) = of_type(at_lma, BindingUpdated)
    assert (update.previous_proxy_coa, update.entry.proxy_coa) == (MAG1, MAG2)
    (up,) = at_mag2
    assert (up.entry.hnp, up.entry.ipv4_hoa) == (FIRST_HNP, FIRST_HOA)
    # MAG1 notices the MN left only now.
    at_lma, _ = exchange(mag1, lma, mag1.detach(MN1, T0 + 31), T0 + 31)
    assert of_type(at_lma, BindingRemoved) == []
    assert lma.bindings[MN1].proxy_coa == MAG2 and mag1.entries == {}


def test_a_pbu_stamped_before_the_old_mags_deregistration_is_sent_again_at_once_with_a_new_stamp():
    """The handover race the lab's handover bench met (a move cost ~0.6 s):
    MAG2 stamps its PBU as the MN appears; MAG1, a few milliseconds behind in
    noticing the carrier go, stamps its deregistration after that, and the
    LMA hears it first. The LMA keeps the MN's newest Timestamp whichever MAG
    sent it, so MAG2's PBU is 157. MAG2 sends it again at once with a fresh
    stamp, once; it does not wait for the MN's next Router Solicitation."""
    lma = make_lma()
    mag1, _ = registered(lma=lma)
    mag2 = make_mag(MAG2, MAG2_4)
    pbu2 = only_send(mag2.attach(MN1, "eth1", T0 + 30.000, handoff=True))
    dereg = only_send(mag1.detach(MN1, T0 + 30.005))
    for answer in sends(lma.receive(*carry(dereg), T0 + 30.006)):
        mag1.receive(*carry(answer), T0 + 30.007)
    [pba] = sends(lma.receive(*carry(pbu2), T0 + 30.008))
    assert pba.message.status == Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED
    again = only_send(mag2.receive(*carry(pba), T0 + 30.009))
    at_lma, at_mag2 = exchange(mag2, lma, [again], T0 + 30.010)
    assert mag2.entries[MN1].state is BindingState.REGISTERED and lma.bindings[MN1].proxy_coa == MAG2
    # only once: a second 157 in a row is a rejection like any other
    mag3 = make_mag(IPv6Address("2001:db8:a3::1"), IPv4Address("198.51.100.3"))
    first = only_send(mag3.attach(MN2, "eth1", T0 + 40))
    stale = BindingAck(Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED, BAFlags.P, first.message.sequence, 0,
                       [o for o in first.message.options if isinstance(o, (MobileNodeIdentifier, Timestamp))])
    second = only_send(mag3.receive(*carry(Send(stale, LMA, first.src)), T0 + 40.001))
    stale.sequence = second.message.sequence
    stale.options = [o for o in second.message.options if isinstance(o, (MobileNodeIdentifier, Timestamp))]
    assert sends(mag3.receive(*carry(Send(stale, LMA, first.src)), T0 + 40.002)) == []
    assert mag3.entries[MN2].state is BindingState.FAILED


# --- Restart ------------------------------------------------------------------------------------------


def test_restore_after_a_restart_keeps_refreshing():
    old, lma = registered()
    registered(old, lma, MN2)
    new = make_mag()
    new.restore(list(old.entries.values()))
    assert new.next_deadline() == T0 + 2880
    ((_, _, actions),) = run_until([new], T0 + 2880)
    assert sorted(carry(send)[0].sequence for send in sends(actions)) == [3, 4]  # after the restored ones
    _, at_mag = exchange(new, lma, actions, T0 + 2880)
    assert at_mag == [] and new.entries[MN1].expires == T0 + 2880 + 3600


# --- Any sequence of events keeps the invariants ----------------------------------------------------

MNS = [f"mn{i}@example.org" for i in range(4)]
events = st.lists(st.one_of(
    st.tuples(st.just("attach"), st.sampled_from(MNS), st.integers(0, 1)),
    st.tuples(st.just("detach"), st.sampled_from(MNS)),
    st.tuples(st.just("deliver"), st.integers(0, 31)),  # one message, in any order
    st.tuples(st.just("flush")),  # everything in flight, answers included
    st.tuples(st.just("lose"), st.integers(0, 31)),
    st.tuples(st.just("wait"), st.floats(0.1, 5)),
    st.tuples(st.just("wait"), st.floats(5, 300)),
), max_size=60)


class Domain:
    """Two MAGs and an LMA with few prefixes and short lifetimes, joined by a
    network that delivers, delays or loses each message as told."""

    def __init__(self):
        self.now = T0
        self.lma = make_lma(hnp_pool=PrefixPool(IPv6Network("2001:db8:100::/63")), max_lifetime=120)
        self.mags = [make_mag(MAG1, MAG1_4, lifetime=120), make_mag(MAG2, MAG2_4, lifetime=120)]
        self.in_flight: list[Send] = []
        self.location: dict[str, int] = {}  # where each MN is attached

    def step(self, event) -> None:
        self.now += 0.01  # no two events at the same instant
        self.wait(0)
        kind, *args = event
        if kind == "attach":
            mn_id, m = args
            previous = self.location.get(mn_id)
            if previous is not None and previous != m:
                self.post(self.mags[previous].detach(mn_id, self.now))  # the MN moved
            self.location[mn_id] = m
            self.post(self.mags[m].attach(mn_id, "eth1", self.now, handoff=previous not in (None, m)))
        elif kind == "detach" and args[0] in self.location:
            self.post(self.mags[self.location.pop(args[0])].detach(args[0], self.now))
        elif kind == "deliver" and self.in_flight:
            self.deliver(self.in_flight.pop(args[0] % len(self.in_flight)))
        elif kind == "flush":
            self.flush()
        elif kind == "lose" and self.in_flight:
            self.in_flight.pop(args[0] % len(self.in_flight))
        elif kind == "wait":
            self.wait(args[0])

    def flush(self) -> None:
        while self.in_flight:
            self.deliver(self.in_flight.pop(0))

    def post(self, actions) -> None:
        self.in_flight += sends(actions)

    def deliver(self, send: Send) -> None:
        if send.dst == LMA:
            self.post(self.lma.receive(*carry(send), self.now))
        else:
            mag = next(m for m in self.mags if m.policy.proxy_coa == send.dst)
            self.post(mag.receive(*carry(send), self.now))

    def wait(self, seconds: float) -> None:
        self.now += seconds
        for _, _, actions in run_until([self.lma, *self.mags], self.now):
            self.post(actions)

    def check(self) -> None:
        pool = self.lma.policy.hnp_pool
        for entry in self.lma.bindings.values():
            assert pool.owner_of(entry.hnp) == entry.mn_id  # so no two MNs share a prefix
            assert entry.expires > self.now
        routed = {}
        for mag in self.mags:
            for entry in mag.entries.values():
                if entry.state is BindingState.REGISTERED:
                    assert entry.hnp is not None and entry.expires is not None
                    assert entry.refresh_at is not None or entry.retransmission.due is not None
                    # The MAG routes a prefix only while the LMA holds it for that MN.
                    assert pool.owner_of(entry.hnp) == entry.mn_id
                    assert routed.setdefault(entry.hnp, entry.mn_id) == entry.mn_id
                elif entry.state is not BindingState.FAILED:
                    assert entry.retransmission.due is not None

    def settle(self) -> None:
        """Detach everyone and let the network and the timers run dry."""
        for mn_id in list(self.location):
            self.step(("detach", mn_id))
        for _ in range(20):
            self.flush()
            self.wait(1000)
        assert not self.in_flight


@settings(max_examples=500, deadline=None)
@given(events)
def test_any_sequence_of_events_keeps_the_binding_invariants(sequence):
    domain = Domain()
    for event in sequence:
        domain.step(event)
        domain.check()
    domain.settle()
    assert domain.lma.bindings == {} and all(mag.entries == {} for mag in domain.mags)
    assert len(domain.lma.policy.hnp_pool) == 0 and len(domain.lma.policy.ipv4_pool) == 0
