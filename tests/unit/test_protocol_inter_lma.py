"""The RO query between LMAs (scenario 2, docs/protocol.md §8): LMA1 asks
its peer LMAs about a CN it does not anchor, relays and caches the answer,
and forgets it on the anchoring LMA's notice. Every message goes through the
wire codec, checksum and RFC 4285 authenticator included, under a fake
clock."""

from ipaddress import IPv4Address, IPv6Address

import pytest
from protocol_helpers import (CN, CN4, CN_AT_MAG2, CN_HNP, FIRST_HNP, LMA, LMA4, MAG1, MAG1_4, MAG2, MAG2_4, T0,
                              binding_lookup, carry)

from pmip6ctl import security
from pmip6ctl.transport import Send, UdpEndpoint
from pmip6ctl.protocol.inter_lma import QUERY_TIMEOUT, InterLmaQuery, Relayed
from pmip6ctl.security import PeerKey
from pmip6ctl.wire import (CNAddress, CNIPv4Address, HomeNetworkPrefix, IPv4CareofAddress, LocalizedRoutingAck,
                           LocalizedRoutingInitiation, LRAStatus, MAGIPv6Address, MobilityMessageAuthentication)

LMA2 = IPv6Address("2001:db8:ffff:5::2")
LMA3 = IPv6Address("2001:db8:ffff:6::2")
KEY_12 = PeerKey(0x2001, b"LMA1 and LMA2 share this key....")
KEY_13 = PeerKey(0x3001, b"LMA1 and LMA3 share this one.....")
NOBODY = binding_lookup()


def lri(cn_option=CNAddress(CN), sequence=77, lifetime=420) -> LocalizedRoutingInitiation:
    return LocalizedRoutingInitiation(sequence, lifetime,
                                      options=[HomeNetworkPrefix(64, FIRST_HNP.network_address), cn_option])


class Domain:
    """LMA1 (MN1's), LMA2 (anchors the CN through MAG2) and LMA3 (anchors
    nothing of interest), each with the others it shares a key with."""

    def __init__(self, lma3_key: PeerKey = KEY_13):
        self.lma1 = InterLmaQuery(LMA, {LMA2: KEY_12, LMA3: KEY_13})
        self.lma2 = InterLmaQuery(LMA2, {LMA: KEY_12})
        self.lma3 = InterLmaQuery(LMA3, {LMA: lma3_key})
        self.at = {LMA2: (self.lma2, binding_lookup(CN_AT_MAG2)), LMA3: (self.lma3, NOBODY)}

    def ask(self, query=None, now=T0, **arrival) -> list:
        """MAG1's LRI reaches LMA1: what LMA1 does with it."""
        message, at_lma1 = carry(Send(query or lri(), MAG1, LMA, **arrival))
        return self.lma1.ask_peers(message, at_lma1, now)

    def answer(self, to_peer: Send) -> list:
        """A peer LMA answers LMA1's LRI from its own binding cache."""
        peer, binding_for = self.at[to_peer.dst]
        message, arrival = carry(to_peer)
        return peer.answer_peer(message, arrival, binding_for)

    def deliver(self, to_lma1: Send, now=T0) -> list:
        message, arrival = carry(to_lma1)
        return self.lma1.on_peer_lra(message, arrival, now)

    def resolve(self, now=T0, **arrival) -> list:
        """The whole exchange: LMA1's actions once every peer has answered."""
        actions = []
        for to_peer in self.ask(now=now, **arrival):
            send, _ = self.answer(to_peer)
            actions += self.deliver(send, now)
        return actions


def to_mag(actions) -> LocalizedRoutingAck:
    (send,) = [a for a in actions if isinstance(a, Send)]
    assert (send.src, send.dst) == (LMA, MAG1)
    message, _ = carry(send)
    return message


def outcomes(actions) -> list[str]:
    return [a.outcome for a in actions if isinstance(a, Relayed)]


def test_a_query_for_a_foreign_cn_goes_to_every_peer_lma_with_its_own_authenticator():
    domain = Domain()
    sends = domain.ask(lri(sequence=77))
    assert sorted(str(s.dst) for s in sends) == sorted([str(LMA2), str(LMA3)])
    for send in sends:
        key = {LMA2: KEY_12, LMA3: KEY_13}[send.dst]
        message, arrival = carry(send)
        assert security.verify_mma(message, {key.spi: key.key}, arrival.src, arrival.dst)
        assert message.sequence != 77                     # LMA1's own numbering
        assert CNAddress(CN) in message.options and message.lifetime == 420


def test_the_positive_answer_reaches_the_mag_with_the_serving_mags_addresses_and_is_cached():
    domain = Domain()
    actions = domain.resolve()
    lra = to_mag(actions)
    assert (lra.sequence, lra.status, lra.lifetime) == (77, LRAStatus.SUCCESS, 420)
    assert lra.options == [MAGIPv6Address(MAG2)]                # MAG2 has no IPv4 address here
    assert outcomes(actions) == ["answered_by_peer"]
    # the same CN again, within the answer's lifetime: from the cache, nobody asked
    again = domain.ask(lri(sequence=78), now=T0 + 10)
    assert outcomes(again) == ["answered_from_cache"] and to_mag(again).sequence == 78
    # after it: the peers are asked again
    assert all(s.dst in (LMA2, LMA3) for s in domain.ask(now=T0 + 421))


def test_the_serving_mags_ipv4_address_is_relayed_in_option_32():
    from protocol_helpers import Anchored
    domain = Domain()
    domain.at[LMA2] = (domain.lma2, binding_lookup(Anchored(CN_HNP, MAG2, CN4, ipv4_proxy_coa=MAG2_4)))
    assert to_mag(domain.resolve()).options == [MAGIPv6Address(MAG2), IPv4CareofAddress(MAG2_4)]


def test_a_mag_on_ipv4_transport_gets_its_answer_in_udp():
    domain = Domain()
    actions = domain.resolve(ipv4_src=MAG1_4, ipv4_dst=UdpEndpoint(LMA4))
    (send,) = [a for a in actions if isinstance(a, Send)]
    assert (send.ipv4_dst, send.ipv4_src) == (UdpEndpoint(MAG1_4), LMA4)


def test_an_ipv4_cn_is_looked_up_by_its_home_address():
    domain = Domain()
    sends = domain.ask(lri(cn_option=CNIPv4Address(CN4)))
    actions = []
    for to_peer in sends:
        send, _ = domain.answer(to_peer)
        actions += domain.deliver(send)
    assert to_mag(actions).status == LRAStatus.SUCCESS


def test_when_no_peer_anchors_the_cn_the_mag_gets_129():
    domain = Domain()
    domain.at[LMA2] = (domain.lma2, NOBODY)
    actions = domain.resolve()
    lra = to_mag(actions)
    assert (lra.status, lra.lifetime) == (LRAStatus.MN_NOT_ATTACHED, 0)
    assert outcomes(actions) == ["no_peer_anchors_it"]
    assert not domain.lma1.pending


def test_a_peer_that_never_answers_costs_the_mag_at_most_the_query_timeout():
    domain = Domain()
    sends = domain.ask()
    send, _ = domain.answer(next(s for s in sends if s.dst == LMA3))    # 129 from LMA3, silence from LMA2
    assert domain.deliver(send) == []
    assert domain.lma1.next_deadline() == T0 + QUERY_TIMEOUT
    actions = domain.lma1.on_timer(T0 + QUERY_TIMEOUT)
    assert to_mag(actions).status == LRAStatus.MN_NOT_ATTACHED
    assert outcomes(actions) == ["peers_did_not_answer"]


def test_without_peers_the_lma_answers_the_query_itself():
    alone = InterLmaQuery(LMA, {})
    message, arrival = carry(Send(lri(), MAG1, LMA))
    assert alone.ask_peers(message, arrival, T0) is None


def test_a_peer_answers_only_from_its_own_cache_and_never_asks_further():
    domain = Domain()
    domain.lma2.peers = {LMA: KEY_12, LMA3: KEY_13}          # LMA2 has peers of its own
    domain.at[LMA2] = (domain.lma2, NOBODY)
    to_lma2 = next(s for s in domain.ask() if s.dst == LMA2)
    actions = domain.answer(to_lma2)
    (send,) = [a for a in actions if isinstance(a, Send)]
    assert send.dst == LMA                                    # only the answer, back to the asker
    assert outcomes(actions) == ["not_anchored_here"] and not domain.lma2.pending


@pytest.mark.parametrize("wrong", ["key", "spi"])
def test_a_query_or_an_answer_under_the_wrong_key_is_refused(wrong):
    bad = PeerKey(KEY_13.spi, b"not the key LMA1 holds for LMA3..") if wrong == "key" else PeerKey(0x9999, KEY_13.key)
    domain = Domain(lma3_key=bad)
    to_lma3 = next(s for s in domain.ask() if s.dst == LMA3)
    assert outcomes(domain.answer(to_lma3)) == ["unauthenticated_peer_query"]
    # an answer signed with the wrong key does not settle LMA1's query either
    lra = LocalizedRoutingAck(sequence=next(iter(next(iter(domain.lma1.pending)).sequences)), status=LRAStatus.SUCCESS,
                              lifetime=420, options=[MAGIPv6Address(IPv6Address("2001:db8:bad::1"))])
    forged = Send(security.sign_mma(lra, bad.spi, bad.key, LMA3, LMA), LMA3, LMA)
    assert outcomes(domain.deliver(forged)) == ["unauthenticated_peer_answer"]
    assert domain.lma1.cache == {}


def test_an_unsigned_answer_is_refused():
    domain = Domain()
    domain.ask()
    sequence = next(iter(next(iter(domain.lma1.pending)).sequences))
    lra = LocalizedRoutingAck(sequence=sequence, status=LRAStatus.SUCCESS, lifetime=420,
                              options=[MAGIPv6Address(MAG2)])
    assert outcomes(domain.deliver(Send(lra, LMA2, LMA))) == ["unauthenticated_peer_answer"]
    assert not any(isinstance(o, MobilityMessageAuthentication) for o in lra.options)


def test_the_anchoring_lma_tells_the_askers_when_the_cn_moves_and_they_forget_it():
    domain = Domain()
    domain.resolve()
    assert CN in domain.lma1.cache
    notices = domain.lma2.binding_changed(CN_HNP, CN4, T0)
    (notice,) = notices
    assert notice.dst == LMA
    message, _ = carry(notice)
    assert message.unsolicited and message.lifetime == 0
    assert outcomes(domain.deliver(notice)) == ["cache_invalidated_by_peer"]
    assert domain.lma1.cache == {}
    # told once: a second change of the same binding has nobody to tell
    assert domain.lma2.binding_changed(CN_HNP, CN4, T0) == []


def test_an_ipv4_answer_is_forgotten_on_the_notice_naming_the_ipv4_home_address():
    domain = Domain()
    sends = domain.ask(lri(cn_option=CNIPv4Address(CN4)))
    for to_peer in sends:
        send, _ = domain.answer(to_peer)
        domain.deliver(send)
    assert CN4 in domain.lma1.cache
    (notice,) = domain.lma2.binding_changed(CN_HNP, CN4, T0)
    assert outcomes(domain.deliver(notice)) == ["cache_invalidated_by_peer"]
    assert CN4 not in domain.lma1.cache


def test_a_notice_from_another_peer_leaves_the_answer_in_place():
    domain = Domain()
    domain.resolve()
    domain.lma3.askers[CN_HNP] = {LMA}                        # LMA3 claims CN's prefix too
    (notice,) = domain.lma3.binding_changed(CN_HNP, None, T0)
    assert outcomes(domain.deliver(notice)) == []
    assert CN in domain.lma1.cache


def test_unrelated_prefixes_are_not_invalidated():
    domain = Domain()
    domain.resolve()
    from ipaddress import IPv6Network
    domain.lma2.askers[IPv6Network("2001:db8:300::/64")] = {LMA}
    (notice,) = domain.lma2.binding_changed(IPv6Network("2001:db8:300::/64"), IPv4Address("192.0.2.250"), T0)
    assert domain.deliver(notice) == [] and CN in domain.lma1.cache
