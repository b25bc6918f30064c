"""Local routing (RFC 6705) when both MNs are attached to the same MAG: the
MAG's RO query (LRI) names the CN, the LMA answers with the MAG's own proxy
CoA (status 0: consent, 128: its policy forbids it), and MAG1's node core
installs a local route for that direction only, which ends when either MN
leaves. Node cores joined through the codec with a fake clock (RoNetwork)."""

from protocol_helpers import (CN_AT_MAG2, CNS_AT_MAG2, FIRST_HNP, KCN, LMA, MAG1, MAG2, MAG2_4, MN, MN_AT_MAG1, MN_B,
                              MN_B_AT_MAG1, MNS_AT_MAG1, SECOND_HNP, Anchored, RoNetwork, initiator_policy, lma_node,
                              mag_node, registered, responder_policy, seeded)

from pmip6ctl.protocol.lma import QueryAnswered
from pmip6ctl.protocol.ro import (LocalRouteInstalled, LocalRouteRemoved, Phase, RoFailed, RoInstalled, RoPair,
                                  RoRemoved)
from pmip6ctl.protocol.vocabulary import FailReason, QueryOutcome, StopReason
from pmip6ctl.transport import Send
from pmip6ctl.wire import (BindingError, BindingUpdate, CareofTestInit, HomeTestInit, LocalizedRoutingAck,
                           LocalizedRoutingInitiation, LRAStatus, MAGIPv6Address, Timestamp)

LOCAL = RoPair(MN, MN_B)            # MN → MN_B, both attached at MAG1
BACK = RoPair(MN_B, MN)
LIFETIME = 420


def network(*, lma_local=True, mag_local=True, attached=MNS_AT_MAG1, anchored=(MN_AT_MAG1, MN_B_AT_MAG1, CN_AT_MAG2),
            **initiator) -> RoNetwork:
    mag1 = mag_node(initiator=initiator_policy(local_routing=mag_local, **initiator), attached=attached,
                    random=seeded(1))
    mag2 = mag_node(MAG2, MAG2_4, name="mag2", responder=responder_policy(), attached=CNS_AT_MAG2, kcn=KCN,
                    random=seeded(2))
    lma = lma_node(*anchored)
    lma.policy.local_routing = lambda mn, cn: lma_local
    return RoNetwork(mag1, mag2, lma)


def local_route(net: RoNetwork, pair: RoPair = LOCAL) -> LocalRouteInstalled:
    since, _ = net.mark()
    net.start(pair.local, pair.remote, mn_prefix=FIRST_HNP if pair.local == MN else SECOND_HNP)
    net.run()
    (installed,) = net.actions("initiator", LocalRouteInstalled, since=since)
    return installed


def test_the_lmas_consent_installs_a_local_route_toward_the_other_mns_link():
    net = network()
    installed = local_route(net)
    assert installed.pair == LOCAL and installed.link == "acc1" and installed.lifetime == LIFETIME
    assert installed.setup_seconds == 0.0
    attempt = net.initiator.attempts[LOCAL]
    assert attempt.phase is Phase.LOCAL and attempt.local and attempt.peer is None
    # one LRI, one LRA: no return routability, no binding, no tunnel
    assert len(net.messages(LocalizedRoutingInitiation)) == 1
    lra = net.messages(LocalizedRoutingAck)[0]
    assert lra.status == LRAStatus.SUCCESS
    assert not net.messages(HomeTestInit) and not net.messages(CareofTestInit) and not net.messages(BindingUpdate)
    assert not net.actions("initiator", RoInstalled) and not net.actions("initiator", RoFailed)
    assert net.actions("lma", QueryAnswered)[-1].outcome is QueryOutcome.LOCAL_ROUTING
    assert net.mag1.initiator.local_routes == 1
    assert [b.held for b in net.mag1.bounded() if b.table == "local_routes"] == [1]


def test_each_direction_is_its_own_consent():
    net = network()
    local_route(net, LOCAL)
    assert BACK not in net.initiator.attempts           # one LRA installs one direction
    local_route(net, BACK)
    assert net.initiator.attempts[BACK].phase is Phase.LOCAL
    assert len(net.messages(LocalizedRoutingInitiation)) == 2


def test_the_lma_policy_forbids_it_with_status_128():
    net = network(lma_local=False)
    net.start(MN, MN_B, mn_prefix=FIRST_HNP)
    net.run()
    assert net.messages(LocalizedRoutingAck)[0].status == LRAStatus.LOCALIZED_ROUTING_NOT_ALLOWED
    assert net.actions("lma", QueryAnswered)[-1].outcome is QueryOutcome.LOCAL_ROUTING_DENIED
    (failed,) = net.actions("initiator", RoFailed)
    assert failed.reason is FailReason.LMA_REFUSED and failed.detail == "localized_routing_not_allowed"
    assert not net.actions("initiator", LocalRouteInstalled)
    assert net.initiator.attempts[LOCAL].phase is Phase.BACKOFF and not net.initiator.attempts[LOCAL].local


def test_the_mag_may_refuse_local_routing_itself():
    net = network(mag_local=False)
    net.start(MN, MN_B, mn_prefix=FIRST_HNP)
    net.run()
    (failed,) = net.actions("initiator", RoFailed)
    assert failed.reason is FailReason.LOCAL_ROUTING_OFF
    assert not net.actions("initiator", LocalRouteInstalled)


def test_an_lra_naming_us_for_a_cn_our_binding_update_list_lacks_installs_nothing():
    # The LMA says MN_B is at MAG1, but MAG1 has no registration for it (yet):
    # the LRA alone never points the data plane at an access link.
    net = network(attached=MNS_AT_MAG1[:1])
    net.start(MN, MN_B, mn_prefix=FIRST_HNP)
    net.run()
    (failed,) = net.actions("initiator", RoFailed)
    assert failed.reason is FailReason.CN_NOT_BOUND_HERE
    assert failed.retry_at == net.now + 30                # a short backoff: its registration may be under way
    assert not net.actions("initiator", LocalRouteInstalled)


def test_an_lra_from_anyone_but_our_lma_installs_nothing():
    net = network()
    net.hold = lambda origin, action: True
    net.start(MN, MN_B, mn_prefix=FIRST_HNP)
    lri = net.messages(LocalizedRoutingInitiation)[0]
    stamp = next(o for o in lri.options if isinstance(o, Timestamp))
    forged = LocalizedRoutingAck(lri.sequence, 0, LIFETIME, options=[MAGIPv6Address(MAG1), stamp])
    for src in (MAG2, MN_B):
        assert net.initiator.receive(*RoNetwork.decoded(Send(forged, src, MAG1)), net.now) == []
    assert net.initiator.attempts[LOCAL].phase is Phase.QUERY and not net.initiator.attempts[LOCAL].local


def test_the_remote_mn_leaving_removes_the_route_and_tells_nobody():
    net = network()
    local_route(net)
    since, traffic = net.mark()
    net.call("initiator", "detach", "mn-b@example.org")
    (removed,) = net.actions("initiator", LocalRouteRemoved, since=since)
    assert removed == LocalRouteRemoved(LOCAL, StopReason.CN_DETACHED)
    assert LOCAL not in net.initiator.attempts and net.initiator.local_routes == 0
    # no deregistration BU or Binding Error to anyone but the LMA (MN_B's PBU): no RO peer holds anything
    sent = net.sent(BindingUpdate, "initiator", since=traffic) + net.sent(BindingError, "initiator", since=traffic)
    assert sent and {action.dst for _, action, _, _ in sent} == {LMA}
    assert not net.actions("initiator", RoRemoved, since=since)


def test_the_local_mn_leaving_removes_its_route():
    net = network()
    local_route(net)
    local_route(net, BACK)
    since, _ = net.mark()
    net.call("initiator", "detach", "mn@example.org")
    removed = net.actions("initiator", LocalRouteRemoved, since=since)
    assert sorted(removed, key=str) == sorted([LocalRouteRemoved(LOCAL, StopReason.MN_DETACHED),
                                               LocalRouteRemoved(BACK, StopReason.CN_DETACHED)], key=str)
    assert net.initiator.local_routes == 0 and not net.initiator.attempts


def test_after_the_cn_moves_to_another_mag_the_next_trigger_optimizes_toward_it():
    net = network()
    local_route(net)
    net.call("initiator", "detach", "mn-b@example.org")
    # MN_B is registered at MAG2 now (an LMA whose binding cache says so)
    net.lma = net.nodes["lma"] = lma_node(MN_AT_MAG1, Anchored(SECOND_HNP, MAG2), CN_AT_MAG2, now=net.now)
    net.peer.restore([*CNS_AT_MAG2, registered("mn-b@example.org", SECOND_HNP)], net.now)
    net.peer.responder.policy.serves = net.peer.serves
    since, _ = net.mark()
    net.start(MN, MN_B, mn_prefix=FIRST_HNP)
    net.run(5)
    assert not net.actions("initiator", LocalRouteInstalled, since=since)
    (installed,) = net.actions("initiator", RoInstalled, since=since)
    assert installed.pair == LOCAL and installed.peer == MAG2


def test_a_local_route_is_queried_again_before_its_lifetime_ends():
    net = network()
    first = local_route(net)
    since, _ = net.mark()
    net.run(LIFETIME * 0.8 + 1)
    assert len(net.messages(LocalizedRoutingInitiation)) == 2
    (again,) = net.actions("initiator", LocalRouteInstalled, since=since)
    assert again.expires > first.expires and again.setup_seconds is None
    assert not net.actions("initiator", LocalRouteRemoved, since=since)
    assert net.initiator.attempts[LOCAL].phase is Phase.LOCAL


def test_the_lma_withdrawing_its_consent_ends_the_route_at_the_refresh():
    net = network()
    local_route(net)
    net.lma.policy.local_routing = lambda mn, cn: False        # [lma] local_routing = false, reloaded
    since, _ = net.mark()
    net.run(LIFETIME * 0.8 + 1)
    (removed,) = net.actions("initiator", LocalRouteRemoved, since=since)
    assert removed.pair == LOCAL and removed.reason is FailReason.LMA_REFUSED
    assert net.initiator.local_routes == 0


def test_an_unanswered_refresh_keeps_the_route_until_it_expires():
    net = network()
    installed = local_route(net)
    net.drop = lambda origin, action: isinstance(action.message, LocalizedRoutingInitiation)
    net.run(LIFETIME * 0.8 + 60)
    assert net.initiator.attempts[LOCAL].phase is Phase.LOCAL          # refresh abandoned, route kept
    assert not net.actions("initiator", LocalRouteRemoved)
    net.run_until(installed.expires + 1)
    (removed,) = net.actions("initiator", LocalRouteRemoved)
    assert removed.reason is FailReason.LIFETIME_EXPIRED


def test_local_routes_are_bounded_by_the_data_plane_table():
    net = network(max_local_routes=1)
    local_route(net)
    net.start(MN_B, MN, mn_prefix=SECOND_HNP)
    net.run()
    failed = net.actions("initiator", RoFailed)[-1]
    assert failed.pair == BACK and failed.reason is FailReason.LOCAL_ROUTE_LIMIT
    assert [b.refused for b in net.mag1.bounded() if b.table == "local_routes"] == [{"local_route_limit": 1}]


def test_a_restart_takes_the_local_route_back():
    net = network()
    local_route(net)
    saved = net.initiator.snapshot()
    assert [s.local for s in saved] == [True]
    mag = mag_node(initiator=initiator_policy(), attached=MNS_AT_MAG1, random=seeded(3))
    actions = mag.restore_ro({"initiator": saved}, net.now + 10)
    (installed,) = [a for a in actions if isinstance(a, LocalRouteInstalled)]
    assert installed.pair == LOCAL and installed.link == "acc1"
    assert mag.initiator.attempts[LOCAL].phase is Phase.LOCAL and mag.initiator.local_routes == 1
    # without the other MN registered, nothing comes back
    alone = mag_node(initiator=initiator_policy(), attached=MNS_AT_MAG1[:1], random=seeded(3))
    assert not [a for a in alone.restore_ro({"initiator": saved}, net.now + 10) if isinstance(a, LocalRouteInstalled)]


def test_ipv4_mns_at_one_mag_are_routed_locally_by_their_home_addresses():
    from ipaddress import IPv4Address
    from protocol_helpers import FIRST_HOA
    second_hoa = IPv4Address("192.0.2.130")
    attached = (registered("mn@example.org", FIRST_HNP, FIRST_HOA),
                registered("mn-b@example.org", SECOND_HNP, second_hoa, link="acc2"))
    net = network(attached=attached, anchored=(MN_AT_MAG1, Anchored(SECOND_HNP, MAG1, second_hoa), CN_AT_MAG2))
    since, _ = net.mark()
    net.call("initiator", "flow_seen", FIRST_HOA, second_hoa)
    net.run()
    (installed,) = net.actions("initiator", LocalRouteInstalled, since=since)
    assert installed.pair == RoPair(FIRST_HOA, second_hoa) and installed.link == "acc2"
    assert net.messages(LocalizedRoutingInitiation)[0].options[0].address == FIRST_HOA    # IPv4 HAO (RFC 5844)
    net.call("initiator", "detach", "mn-b@example.org")
    assert net.actions("initiator", LocalRouteRemoved)[-1] == LocalRouteRemoved(RoPair(FIRST_HOA, second_hoa),
                                                                                  StopReason.CN_DETACHED)
