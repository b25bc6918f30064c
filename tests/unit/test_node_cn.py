"""CnNode: the CN agent (draft §4) answers for its own addresses only."""

from ipaddress import IPv6Address

from protocol_helpers import MAG1, MN, OUTSIDE_CN, T0, cn_node, only

from pmip6ctl.protocol.node import NotSent
from pmip6ctl.protocol.ro import RoPair, RoRejected
from pmip6ctl.protocol.vocabulary import RejectReason
from pmip6ctl.transport import Arrival, Send
from pmip6ctl.wire import BindingErrorStatus, HomeTest, HomeTestInit


def test_the_agent_answers_a_hoti_for_its_own_address_directly_not_by_a_home_path():
    node = cn_node()
    hot = only(node.receive(HomeTestInit(home_init_cookie=bytes(8)), Arrival(MN, OUTSIDE_CN), T0))
    assert isinstance(hot, Send) and isinstance(hot.message, HomeTest) and (hot.src, hot.dst) == (OUTSIDE_CN, MN)


def test_a_hoti_for_another_address_is_refused():
    node = cn_node()
    other = IPv6Address("2001:db8:ee::99")
    assert node.receive(HomeTestInit(home_init_cookie=bytes(8)), Arrival(MN, other), T0) == [
        RoRejected(RoPair(other, MN), MN, RejectReason.CN_NOT_SERVED, "hoti")]


def test_traffic_for_a_pair_the_agent_does_not_hold_gets_one_binding_error_naming_the_mn():
    node = cn_node()
    be = only(node.missing_binding(MN, OUTSIDE_CN, MAG1, T0))
    assert (be.src, be.dst, be.message.status, be.message.home_address) == (
        OUTSIDE_CN, MAG1, BindingErrorStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS_DESTINATION_OPTION, MN)


def test_stopping_a_pair_it_does_not_hold_does_nothing():
    assert cn_node().stop_ro(RoPair(OUTSIDE_CN, MN), T0) == []


def test_answers_to_forged_sources_are_rate_limited_per_prefix_and_counted():
    """A HoTI flood with a victim's source draws at most the burst, then the
    rate; another prefix has its own budget (docs/operations.md)."""
    node = cn_node()
    node.limit_answers(rate=2.0, burst=3)
    victim, other = MN, IPv6Address("2001:db8:999::1")

    def hots(src, now, n):
        out = [a for i in range(n) for a in node.receive(HomeTestInit(home_init_cookie=bytes(8)),
                                                         Arrival(src, OUTSIDE_CN), now)]
        return sum(isinstance(a, Send) for a in out), [a for a in out if isinstance(a, NotSent)]
    sent, refused = hots(victim, T0, 10)
    assert sent == 3 and len(refused) == 7
    assert refused[0] == NotSent("hot", "rate_limited", str(victim))
    assert hots(IPv6Address("2001:db8:100::99"), T0, 1)[0] == 0       # the same /64: the same budget
    assert hots(other, T0, 1)[0] == 1
    assert hots(victim, T0 + 1, 10)[0] == 2                           # two a second after that
    # Binding Errors to traffic we hold nothing for share the rule
    assert sum(isinstance(a, Send) for t in range(5) for a in node.missing_binding(MN, OUTSIDE_CN, MAG1, T0 + 2)) == 3
    assert node.answer_limit.refused == 7 + 1 + 8 + 2


def test_without_a_limit_every_answer_goes():
    node = cn_node()
    node.limit_answers(rate=0, burst=1)
    assert all(isinstance(only(node.receive(HomeTestInit(home_init_cookie=bytes(8)), Arrival(MN, OUTSIDE_CN), T0)),
                          Send) for _ in range(500))


def test_a_hoti_wrapped_in_ipv4_is_refused_for_the_agent_has_no_home_path_to_answer_it():
    """Fig. 2 (IPv4 / IPv6 / MH) is between MAGs; a CN agent that took one
    (its XDP hands it IPv4-wrapped signaling since issue 13) must not try to
    answer into an LMA tunnel it does not have (the fuzz run crashed on it)."""
    from dataclasses import replace
    from ipaddress import IPv4Address
    node = cn_node()
    node.policy = replace(node.policy, ipv4_address=IPv4Address("203.0.113.2"))
    mapped = lambda a: IPv6Address("::ffff:" + a)             # noqa: E731
    arrival = Arrival(mapped("198.51.100.1"), mapped("203.0.113.2"), proxy_src=MAG1, proxy_dst=OUTSIDE_CN)

    (action,) = node.receive(HomeTestInit(home_init_cookie=bytes(8)), arrival, T0)

    assert isinstance(action, RoRejected) and action.reason == RejectReason.NOT_HOME_PATH
