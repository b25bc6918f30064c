"""The LMA's answer to the RO query (DESIGN §2: an LRI naming the MN and the
CN, an LRA naming the CN's serving MAG), with a stub binding lookup. The LRI
and the LRA go through the wire codec."""

from ipaddress import IPv4Address, IPv6Address

import pytest
from protocol_helpers import (CN, CN4, CN_AT_MAG2, CN_HNP, FIRST_HNP, FIRST_HOA, LMA, LMA4, MAG1, MAG1_4, MAG2,
                              MAG2_4, MN, MN_AT_MAG1, NAT, Anchored, binding_lookup, carry)

from pmip6ctl.transport import Send, UdpEndpoint
from pmip6ctl.protocol.ro_query import answer_lri, named_addresses
from pmip6ctl.wire import (CNAddress, CNIPv4Address, HomeNetworkPrefix, IPv4CareofAddress, IPv4HomeAddress,
                           LocalizedRoutingAck, LocalizedRoutingInitiation, LRAStatus, MAGIPv6Address)

ELSEWHERE = IPv6Address("2001:db8:ee::1")     # no binding at this LMA


def lri(mn_option=HomeNetworkPrefix(64, FIRST_HNP.network_address), cn_option=CNAddress(CN), sequence=4242,
        lifetime=420) -> LocalizedRoutingInitiation:
    return LocalizedRoutingInitiation(sequence, lifetime, options=[o for o in (mn_option, cn_option) if o])


def ask(query, *anchored, src=MAG1, allowed=lambda mn, cn: True, **arrival):
    """MAG `src` asks; returns (the LRA as MAG1 decodes it, the Send, the outcome)."""
    message, at_lma = carry(Send(query, src, LMA, **arrival))
    send, outcome = answer_lri(message, at_lma, LMA, binding_lookup(*(anchored or (MN_AT_MAG1, CN_AT_MAG2))),
                               allowed, settling=lambda address: False)
    lra, _ = carry(send)
    assert isinstance(lra, LocalizedRoutingAck)
    return lra, send, outcome


def test_the_serving_mags_proxy_coa_in_option_51():
    lra, send, outcome = ask(lri())
    assert (send.src, send.dst, send.ipv4_dst, send.ipv4_src) == (LMA, MAG1, None, None)
    assert (lra.sequence, lra.status, lra.lifetime, lra.options) == (4242, LRAStatus.SUCCESS, 420,
                                                                    [MAGIPv6Address(MAG2)])
    assert outcome == "answered"


def test_the_serving_mags_ipv4_proxy_coa_in_option_32_when_it_has_one():
    serving = Anchored(CN_HNP, MAG2, ipv4_proxy_coa=MAG2_4, mag_ipv4=UdpEndpoint(IPv4Address("203.0.113.50"), 4500))
    lra, _, _ = ask(lri(), MN_AT_MAG1, serving)
    assert lra.options == [MAGIPv6Address(MAG2), IPv4CareofAddress(MAG2_4)]


def test_without_option_32_from_the_mag_the_address_it_registered_from_is_given():
    serving = Anchored(CN_HNP, MAG2, mag_ipv4=UdpEndpoint(MAG2_4))
    lra, _, _ = ask(lri(), MN_AT_MAG1, serving)
    assert lra.options == [MAGIPv6Address(MAG2), IPv4CareofAddress(MAG2_4)]


@pytest.mark.parametrize("sequence", [0, 1, 0x8000, 0xFFFF])
def test_the_lra_mirrors_the_lri_sequence(sequence):
    for anchored in [(MN_AT_MAG1, CN_AT_MAG2), (MN_AT_MAG1,)]:
        lra, _, _ = ask(lri(sequence=sequence), *anchored)
        assert lra.sequence == sequence


def test_129_when_no_binding_anchors_the_cn():
    lra, _, outcome = ask(lri(cn_option=CNAddress(ELSEWHERE)))
    assert (lra.status, lra.lifetime, lra.options, outcome) == (LRAStatus.MN_NOT_ATTACHED, 0, [],
                                                               "cn_not_anchored")


def test_128_when_policy_forbids_ro_for_the_pair():
    asked = []

    def allowed(mn, cn):
        asked.append((mn, cn))
        return False
    lra, _, outcome = ask(lri(), allowed=allowed)
    assert (lra.status, lra.lifetime, lra.options, outcome) == (LRAStatus.LOCALIZED_ROUTING_NOT_ALLOWED, 0, [],
                                                               "denied_by_policy")
    assert asked == [(FIRST_HNP.network_address, CN)]


@pytest.mark.parametrize("src, anchored", [
    (MAG2, (MN_AT_MAG1, CN_AT_MAG2)),      # another MAG asks about MAG1's MN
    (MAG1, (CN_AT_MAG2,)),                  # the MN has no binding here at all
])
def test_128_when_the_asking_mag_does_not_serve_the_mn(src, anchored):
    lra, send, outcome = ask(lri(), *anchored, src=src)
    assert (lra.status, lra.options, outcome) == (LRAStatus.LOCALIZED_ROUTING_NOT_ALLOWED, [],
                                                  "not_the_serving_mag")
    assert send.dst == src


@pytest.mark.parametrize("query", [lri(mn_option=None), lri(cn_option=None)])
def test_128_for_a_query_that_names_no_mn_or_no_cn(query):
    lra, _, outcome = ask(query)
    assert (lra.status, outcome) == (LRAStatus.LOCALIZED_ROUTING_NOT_ALLOWED, "malformed_query")


def test_an_ipv4_mn_and_cn_are_found_by_their_ipv4_home_addresses():
    query = lri(mn_option=IPv4HomeAddress(FIRST_HOA), cn_option=CNIPv4Address(CN4))
    assert named_addresses(carry(Send(query, MAG1, LMA))[0]) == (FIRST_HOA, CN4)
    lra, _, _ = ask(query)
    assert (lra.status, lra.options) == (LRAStatus.SUCCESS, [MAGIPv6Address(MAG2)])


def test_an_mn_named_by_its_address_finds_its_prefix():
    lra, _, _ = ask(lri(mn_option=HomeNetworkPrefix(128, MN)))
    assert lra.status == LRAStatus.SUCCESS


def test_over_ipv4_transport_the_lra_goes_back_to_where_the_lri_came_from():
    message, at_lma = carry(Send(lri(), MAG1, LMA, ipv4_dst=UdpEndpoint(LMA4), ipv4_src=MAG1_4), nat=NAT)
    send, _ = answer_lri(message, at_lma, LMA, binding_lookup(MN_AT_MAG1, CN_AT_MAG2), lambda mn, cn: True,
                         settling=lambda address: False)
    assert (send.src, send.dst, send.ipv4_dst, send.ipv4_src) == (LMA, MAG1, NAT, LMA4)
