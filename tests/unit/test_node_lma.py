"""LmaNode: the rules that join the binding cache, the RO query and the
query between LMAs, driven through the node's own inputs with a fake clock."""

from ipaddress import IPv4Address, IPv6Address, IPv6Network

from protocol_helpers import (CN, CN_AT_MAG2, CN_HNP, FIRST_HNP, LMA, LMA4, MAG1, MAG1_4, MAG2, MN, MN1, MN2, NAT, T0,
                              Anchored, MN_AT_MAG1, carry, lma_node, lma_policy, of_type, only, pbu)

from pmip6ctl.protocol.binding_cache import PbuRejected
from pmip6ctl.protocol.inter_lma import Relayed
from pmip6ctl.protocol.lma import (InstallBinding, LmaNode, LmaNodePolicy, QueryAnswered, RemoveBinding,
                                   RouteMagAddress)
from pmip6ctl.protocol.node import StateChanged
from pmip6ctl.protocol.pools import PrefixPool
from pmip6ctl.protocol.vocabulary import QueryOutcome, RelayOutcome
from pmip6ctl.security import PeerKey
from pmip6ctl.transport import Arrival, Encap, Send, Tunnel, UdpEndpoint
from pmip6ctl.wire import (BindingRevocation, CNAddress, HandoffIndicator, HomeNetworkPrefix, Timestamp, find_option, IPv4CareofAddress, LocalizedRoutingAck,
                           LocalizedRoutingInitiation, LRAStatus, MAGIPv6Address, Status)

LMA2 = IPv6Address("2001:db8:ffff::2")
MAG3 = IPv6Address("2001:db8:a3::1")
PEER_KEY = PeerKey(0x2001, b"LMA1 and LMA2 share this key....")
ELSEWHERE = IPv6Address("2001:db8:300::30")      # a CN no LMA here anchors


def empty_lma(**changes) -> LmaNode:
    return LmaNode(LmaNodePolicy(binding_cache=lma_policy(**changes)))


def register(node: LmaNode, mn_id: str = MN1, mag: IPv6Address = MAG1, now: float = T0, **pbu_args) -> list:
    """A PBU from mag; when the MN is bound at another MAG, that MAG answers
    the LMA's BRI: the MN left it (RFC 5846)."""
    actions = node.receive(*carry(Send(pbu(mn_id, now, **pbu_args), mag, LMA)), now)
    for bri in [s for s in of_type(actions, Send) if isinstance(s.message, BindingRevocation)]:
        message, _ = carry(bri)
        bra = BindingRevocation.acknowledgement(message.sequence, 0, [find_option(message, Timestamp)])
        actions += node.receive(*carry(Send(bra, bri.dst, LMA)), now)
    return actions


def lri(cn=CN, mn_prefix=FIRST_HNP, sequence=7) -> LocalizedRoutingInitiation:
    return LocalizedRoutingInitiation(sequence=sequence, lifetime=420,
                                      options=[HomeNetworkPrefix(mn_prefix.prefixlen, mn_prefix.network_address),
                                               CNAddress(cn)])


def test_an_accepted_pbu_installs_the_binding_and_the_mags_address_then_answers():
    node = empty_lma()
    actions = register(node)
    entry = node.bindings[MN1]
    tunnel = Tunnel(Encap.IP6, LMA, MAG1)
    assert actions[:3] == [InstallBinding(MN1, entry.hnp, entry.ipv4_hoa, tunnel, MAG1),
                           RouteMagAddress(MAG1, tunnel), StateChanged()]
    assert only(of_type(actions, Send)).message.status == Status.ACCEPTED


def test_a_refused_pbu_changes_nothing_and_saves_nothing():
    node = empty_lma()
    actions = register(node, omit=(HandoffIndicator,))
    assert only(of_type(actions, PbuRejected)).status == Status.MISSING_HANDOFF_INDICATOR_OPTION
    assert only(of_type(actions, Send)).message.status == Status.MISSING_HANDOFF_INDICATOR_OPTION
    assert StateChanged() not in actions and not of_type(actions, InstallBinding)
    assert node.bindings == {}


def test_a_refresh_keeps_the_mags_address_entry_as_it_is():
    node = empty_lma()
    register(node, sequence=1)
    entry = node.bindings[MN1]
    again = register(node, now=T0 + 10, sequence=2, hnp=entry.hnp)
    assert of_type(again, RouteMagAddress) == []
    assert only(of_type(again, InstallBinding)).moved is False


def test_a_handover_moves_the_tunnel_and_the_mag_address_entries():
    node = empty_lma()
    register(node, MN1, MAG1)
    register(node, MN2, MAG1)
    hnp = node.bindings[MN1].hnp
    actions = register(node, MN1, MAG2, now=T0 + 1, hnp=hnp, hi=2)
    install = only(of_type(actions, InstallBinding))
    assert (install.tunnel, install.moved) == (Tunnel(Encap.IP6, LMA, MAG2), True)
    # MAG1 still serves MN2: its entry stays; MAG2 gets one
    assert of_type(actions, RouteMagAddress) == [RouteMagAddress(MAG2, Tunnel(Encap.IP6, LMA, MAG2))]
    actions = register(node, MN2, MAG2, now=T0 + 2, hnp=node.bindings[MN2].hnp, hi=2)
    assert RouteMagAddress(MAG1, None) in actions


def test_a_deregistration_removes_the_mag_address_entry_before_the_binding():
    node = empty_lma()
    register(node)
    actions = register(node, now=T0 + 1, sequence=2, lifetime=0, hnp=node.bindings[MN1].hnp)
    route, remove = of_type(actions, RouteMagAddress), of_type(actions, RemoveBinding)
    assert route == [RouteMagAddress(MAG1, None)] and len(remove) == 1
    assert actions.index(route[0]) < actions.index(remove[0])      # the entry never names a released tunnel
    assert StateChanged() in actions


def test_over_ipv4_the_tunnel_goes_to_the_ipv4_coa_or_through_the_nat_in_udp():
    node = empty_lma()
    plain = node.receive(*carry(Send(pbu(MN1, T0, extra=(IPv4CareofAddress(MAG1_4),)), MAG1, LMA,
                                     ipv4_dst=UdpEndpoint(LMA4), ipv4_src=MAG1_4)), T0)
    assert only(of_type(plain, InstallBinding)).tunnel == Tunnel(Encap.IP4, LMA4, MAG1_4)
    natted = node.receive(*carry(Send(pbu(MN2, T0, extra=(IPv4CareofAddress(MAG1_4),)), MAG1, LMA,
                                      ipv4_dst=UdpEndpoint(LMA4), ipv4_src=MAG1_4), nat=NAT), T0)
    assert only(of_type(natted, InstallBinding)).tunnel == Tunnel(Encap.UDP4, LMA4, NAT.address, 5436, NAT.port)


def test_a_mags_query_for_an_anchored_cn_is_answered_with_its_mag():
    node = lma_node(MN_AT_MAG1, CN_AT_MAG2)
    actions = node.receive(*carry(Send(lri(), MAG1, LMA)), T0)
    assert actions[0] == QueryAnswered(MAG1, QueryOutcome.ANSWERED)
    lra = only(of_type(actions, Send)).message
    assert (lra.status, lra.options[0]) == (LRAStatus.SUCCESS, MAGIPv6Address(MAG2))


def test_a_query_for_a_cn_anchored_nowhere_is_answered_129_without_peers():
    node = lma_node(MN_AT_MAG1, CN_AT_MAG2)
    actions = node.receive(*carry(Send(lri(ELSEWHERE), MAG1, LMA)), T0)
    assert actions[0] == QueryAnswered(MAG1, QueryOutcome.CN_NOT_ANCHORED)
    assert only(of_type(actions, Send)).message.status == LRAStatus.MN_NOT_ATTACHED


def test_a_query_for_a_cn_between_two_mags_waits_for_the_new_one_instead_of_naming_the_old():
    node = empty_lma()
    register(node, MN1, MAG1)
    register(node, MN2, MAG2)
    hnp = node.bindings[MN2].hnp
    cn = hnp.network_address + 0x210

    def ask(now: float) -> tuple:
        actions = node.receive(*carry(Send(lri(cn, node.bindings[MN1].hnp), MAG1, LMA)), now)
        sends = of_type(actions, Send)
        return actions[0].outcome, sends[0].message if sends else None
    assert ask(T0)[1].options[0] == MAGIPv6Address(MAG2)
    # MAG2 let the CN go: where it is next is not known yet, so no answer (MAG1 asks again)
    register(node, MN2, MAG2, now=T0 + 1, sequence=2, lifetime=0, hnp=hnp)
    assert ask(T0 + 1) == (QueryOutcome.CN_BETWEEN_MAGS, None)
    register(node, MN2, MAG3, now=T0 + 1.2, hnp=hnp, hi=2)
    outcome, lra = ask(T0 + 1.3)
    assert (outcome, lra.options[0]) == (QueryOutcome.ANSWERED, MAGIPv6Address(MAG3))
    # a new MAG claims the CN while the old one has not let it go (our BRI is out): no answer either
    node.receive(*carry(Send(pbu(MN2, T0 + 2, hnp=hnp, hi=2), MAG2, LMA)), T0 + 2)
    assert node.cache.pending and ask(T0 + 2) == (QueryOutcome.CN_BETWEEN_MAGS, None)
    # a CN that went for good is not anchored here, once MinDelayBeforeBCEDelete is over
    node = empty_lma()
    register(node, MN1, MAG1)
    register(node, MN2, MAG2)
    register(node, MN2, MAG2, now=T0 + 1, sequence=2, lifetime=0, hnp=hnp)
    assert ask(T0 + 10)[0] is QueryOutcome.CN_BETWEEN_MAGS
    node.on_timer(T0 + 11.1)
    outcome, lra = ask(T0 + 11.1)
    assert (outcome, lra.status) == (QueryOutcome.CN_NOT_ANCHORED, LRAStatus.MN_NOT_ATTACHED)


def test_a_query_for_a_cn_anchored_nowhere_here_goes_on_to_the_peer_lmas():
    node = lma_node(MN_AT_MAG1, CN_AT_MAG2, peers={LMA2: PEER_KEY})
    actions = node.receive(*carry(Send(lri(ELSEWHERE), MAG1, LMA)), T0)
    assert actions[0] == QueryAnswered(MAG1, RelayOutcome.ASKING_PEERS)
    asked = only(of_type(actions, Send))
    assert (asked.src, asked.dst) == (LMA, LMA2) and PEER_KEY.verify(asked.message, LMA, LMA2)


def test_queries_out_to_the_peers_are_bounded_and_one_past_the_limit_waits_for_its_retry():
    node = lma_node(MN_AT_MAG1, CN_AT_MAG2, peers={LMA2: PEER_KEY})
    node.inter_lma.max_pending = 2
    outcomes = []
    for n in range(3):
        actions = node.receive(*carry(Send(lri(IPv6Address(f"2001:db8:300::{n + 1}"), sequence=n), MAG1, LMA)), T0)
        outcomes.append((actions[0].outcome, len(of_type(actions, Send))))
    assert outcomes == [(RelayOutcome.ASKING_PEERS, 1), (RelayOutcome.ASKING_PEERS, 1),
                        (RelayOutcome.PENDING_LIMIT, 0)]         # no LRI out, no answer: the MAG asks again
    node.on_timer(T0 + 1.5)                                     # the two time out (129 to the MAG)
    actions = node.receive(*carry(Send(lri(IPv6Address("2001:db8:300::3"), sequence=9), MAG1, LMA)), T0 + 1.5)
    assert actions[0].outcome is RelayOutcome.ASKING_PEERS


def test_a_peer_lmas_query_is_answered_from_the_binding_cache_and_a_move_tells_the_peer():
    node = lma_node(MN_AT_MAG1, peers={LMA2: PEER_KEY})
    asked = PEER_KEY.sign(lri(MN), LMA2, LMA)
    actions = node.receive(asked, Arrival(LMA2, LMA), T0)
    answer = only(of_type(actions, Send))
    assert answer.dst == LMA2 and answer.message.status == LRAStatus.SUCCESS
    assert PEER_KEY.verify(answer.message, LMA, LMA2)
    assert only(of_type(actions, Relayed)).outcome == RelayOutcome.ANSWERED_PEER
    # the MN's binding ends: the peer that asked is told (unsolicited LRA)
    actions = node.on_timer(T0 + 10**8)
    notice = only(a for a in of_type(actions, Send) if isinstance(a.message, LocalizedRoutingAck))
    assert (notice.dst, notice.message.unsolicited) == (LMA2, True)
    assert of_type(actions, RemoveBinding) and StateChanged() in actions


def test_restore_installs_every_live_binding_and_its_mag_address():
    node = empty_lma(hnp_pool=PrefixPool(IPv6Network("2001:db8::/32")))
    source = lma_node(MN_AT_MAG1, Anchored(CN_HNP, MAG1))
    actions, refused = node.restore(list(source.bindings.values()), T0)
    assert refused == [] and len(of_type(actions, InstallBinding)) == 2
    assert of_type(actions, RouteMagAddress) == [RouteMagAddress(MAG1, Tunnel(Encap.IP6, LMA, MAG1))]
    assert node.cache.binding_for_address(CN).hnp == CN_HNP
    assert node.cache.binding_for_address(IPv4Address("192.0.2.129")).hnp == FIRST_HNP
