"""Route optimization cores (draft-jeong-netlmm-ro-support-for-pmip6-00): MAG1's
RoInitiator against MAG2's (or a CN agent's) RoResponder and the LMA's RO
query answer, through the wire codec and a fake clock (RoNetwork).

Keygen tokens, Kbm and authenticators are recomputed here from the RFC 6275
§5.2.5 / §6.2.7 and docs/protocol.md §6 formulas with hmac and hashlib, never
by calling pmip6ctl.security.
"""

import hashlib
import hmac
import random
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings, strategies as st
from protocol_helpers import (CN, CN4, CN_AT_MAG2, CN_HNP, CNS_AT_MAG2, FIRST_HNP, FIRST_HOA, SECOND_HNP, KCN, LMA, MAG1, MAG1_4, MAG2,
                              MAG2_4, MN, MN_AT_MAG1, MN_B, MN_B_AT_MAG1, MNS_AT_MAG1, OUTSIDE_CN, QUICK_KEY, QUICK_SPI,
                              T0, Anchored, RoNetwork, cn_node, initiator_policy, lma_node, mag_node, quick_keys,
                              responder_policy, seeded)

from pmip6ctl.protocol.node import StateChanged
from pmip6ctl.transport import Arrival, Send, UdpEndpoint
from pmip6ctl.protocol.ro import Phase, RoFailed, RoInitiator, RoInstalled, RoPair, RoRejected, RoRemoved, RoResponder
from pmip6ctl.protocol.vocabulary import FailReason, Mode, RejectReason, Role, StopReason
from pmip6ctl.transport import SendHomePath
from pmip6ctl import security
from pmip6ctl.security import MAX_NONCE_LIFETIME, NonceTable
from pmip6ctl.wire import (BAFlags, BindingAck, BindingAuthorizationData, BindingError, BindingUpdate, BUFlags,
                           CareofTest, CareofTestInit, CNAddress, CNHomeNetworkPrefix, CNIPv4Address, CNIPv4HomeAddress,
                           Heartbeat, IPv4CareofAddress, NATDetection,
                           HomeNetworkPrefix, HomeTest, HomeTestInit, IPv4HomeAddress, IPv4ROAcknowledgement,
                           LocalizedRoutingAck, LocalizedRoutingInitiation, MAGIPv6Address,
                           MobilityMessageAuthentication, NonceIndices, ROAcknowledgement, Status, Timestamp, WireError,
                           decode, encode, find_option, mh_checksum)

PAIR = RoPair(MN, CN)               # as MAG1 names it
REVERSED = RoPair(CN, MN)           # as MAG2 names it
CN_OTHER = IPv6Address("2001:db8:200::21")   # a second CN at MAG2
OUTSIDE_CN4 = IPv4Address("203.0.113.9")
LIFETIME = 420                      # MAX_RR_BINDING_LIFETIME, the default
RESPONDER_SEED = 1001


def network(*, initiator=None, responder=None, hop=0.0, seed=1, anchored=(), allowed=None,
            cn_agent=False) -> RoNetwork:
    """MAG1's and MAG2's node cores (defaults: RR mode, MN and MN_B attached
    at MAG1; CN_HNP, so CN and CN_OTHER, and CN4 at MAG2, unless the
    responder's `serves` is empty) and the LMA's (`anchored`: its binding
    cache), each message taking `hop` seconds. cn_agent: the peer is a CN
    agent for OUTSIDE_CN instead of MAG2."""
    responder = dict(responder or {})
    serves = responder.pop("serves", (CN,))
    mag1 = mag_node(initiator=initiator_policy(**(initiator or {})), attached=MNS_AT_MAG1, random=seeded(seed))
    if cn_agent:
        peer = cn_node(OUTSIDE_CN, responder=responder_policy(address=OUTSIDE_CN, **responder), kcn=KCN,
                       random=seeded(RESPONDER_SEED))
    else:
        peer = mag_node(MAG2, MAG2_4, name="mag2", responder=responder_policy(**responder),
                        attached=CNS_AT_MAG2 if serves else (), kcn=KCN, random=seeded(seed + 1),
                        responder_random=seeded(RESPONDER_SEED))
    result = RoNetwork(mag1, peer, lma_node(*anchored, allowed=allowed))
    result.delay = lambda origin, action: hop
    return result


def quick_network(initiator_keys=None, responder_keys=None, **kwargs) -> RoNetwork:
    return network(initiator={"mode": "quick", "peer_keys": quick_keys(MAG2) if initiator_keys is None
                              else initiator_keys},
                   responder={"peer_keys": quick_keys(MAG1) if responder_keys is None else responder_keys},
                   **kwargs)


def established(net: RoNetwork, local=MN, remote=CN, seconds: float = 0.0) -> RoInstalled:
    since, _ = net.mark()
    net.start(local, remote)
    net.run(seconds)
    (installed,) = net.actions("initiator", RoInstalled, since=since)
    return installed


def timed(net: RoNetwork, node: str, cls) -> list:
    """(time, action) for every `cls` action of `node`."""
    return [(t, a) for t, n, a in net.log if n == node and isinstance(a, cls)]


def near(t: float):
    """Equal to within a microsecond (pytest.approx is relative: too loose at wall-clock times)."""
    return pytest.approx(t, rel=0, abs=1e-6)


def only(items):
    (item,) = items
    return item


# --- RFC 6275 and RFC 4285 formulas, computed here ------------------------------------------------

def first_nonces(count: int) -> list[tuple[int, bytes]]:
    """The responder's first nonces (index, nonce): its NonceTable draws a 2-octet
    first index and then 8 octets per nonce from the seeded random."""
    rng = random.Random(RESPONDER_SEED)
    index = int.from_bytes(rng.randbytes(2), "big")
    return [((index + i) & 0xFFFF, rng.randbytes(8)) for i in range(count)]


def keygen_token(address, nonce: bytes, which: int) -> bytes:
    """RFC 6275 §5.2.5: First(64, HMAC_SHA1(Kcn, address | nonce | 0 or 1))."""
    return hmac.new(KCN, address.packed + nonce + bytes((which,)), hashlib.sha1).digest()[:8]


def mh_data(message, cut: int) -> bytes:
    """The octets as received with the Checksum zeroed, less the last `cut` octets."""
    mh = message.wire
    return mh[:4] + b"\0\0" + mh[6:len(mh) - cut]


def rr_authenticator(kbm: bytes, careof: IPv6Address, correspondent: IPv6Address, message) -> bytes:
    """RFC 6275 §6.2.7; the BAD ends the header, so its 12 octets are the last 12."""
    return hmac.new(kbm, careof.packed + correspondent.packed + mh_data(message, 12), hashlib.sha1).digest()[:12]


def quick_authenticator(key: bytes, src: IPv6Address, dst: IPv6Address, message) -> bytes:
    """docs/protocol.md §6: HMAC-SHA256 over src | dst | the MH up to and including the SPI."""
    return hmac.new(key, src.packed + dst.packed + mh_data(message, 32), hashlib.sha256).digest()


def tampered(action, bit: int):
    """(message, arrival) as received after one bit of the MH flipped (-1: the
    last bit), with the checksum made good again as an attacker would; None
    when the codec refuses the result."""
    src, dst = action.src, action.dst
    mh = bytearray(encode(action.message, src, dst))
    position = bit % (len(mh) * 8)
    if 32 <= position < 48:                      # not the Checksum itself
        position += 16
    mh[position // 8] ^= 0x80 >> position % 8
    mh[4:6] = mh_checksum(src, dst, bytes(mh)).to_bytes(2, "big")
    try:
        return decode(bytes(mh), src, dst), Arrival(src, dst)
    except WireError:
        return None


# --- The whole exchange -------------------------------------------------------------------------------

def test_full_return_routability_exchange_installs_the_pair_on_both_sides():
    net = network(hop=0.01)
    net.start()
    net.run(1)
    (_, lri_send, lri, _), = net.sent(LocalizedRoutingInitiation)
    assert (lri_send.src, lri_send.dst, lri_send.ipv4_dst) == (MAG1, LMA, None)
    assert (lri.lifetime, lri.options) == (LIFETIME, [HomeNetworkPrefix(128, MN), CNAddress(CN), Timestamp.from_unix(T0)])
    lra = only(net.messages(LocalizedRoutingAck))
    assert (lra.sequence, lra.status, lra.lifetime, lra.options) == (lri.sequence, 0, LIFETIME,
                                                                    [MAGIPv6Address(MAG2), lri.options[-1]])
    # HoTI along the home path (inner MN-HoA → CN-HoA), CoTI directly between proxy CoAs.
    (_, hoti_send, hoti, _), = net.sent(HomeTestInit)
    assert isinstance(hoti_send, SendHomePath) and (hoti_send.src, hoti_send.dst) == (MN, CN)
    (_, coti_send, coti, _), = net.sent(CareofTestInit)
    assert isinstance(coti_send, Send) and (coti_send.src, coti_send.dst) == (MAG1, MAG2)
    (_, hot_send, hot, _), = net.sent(HomeTest)
    assert isinstance(hot_send, SendHomePath) and (hot_send.src, hot_send.dst) == (CN, MN)
    (_, cot_send, cot, _), = net.sent(CareofTest)
    assert isinstance(cot_send, Send) and (cot_send.src, cot_send.dst) == (MAG2, MAG1)
    assert (hot.home_init_cookie, cot.careof_init_cookie) == (hoti.home_init_cookie, coti.careof_init_cookie)
    # The BU (fig. 4): P and A, the two exact home addresses, Timestamp, Nonce Indices, BAD last.
    (t_bu, bu_send, bu, _), = net.sent(BindingUpdate)
    assert (bu_send.src, bu_send.dst) == (MAG1, MAG2)
    assert (bu.flags, bu.lifetime_seconds) == (BUFlags.A | BUFlags.P, LIFETIME)
    assert bu.options[:4] == [HomeNetworkPrefix(128, MN), CNHomeNetworkPrefix(128, CN), Timestamp.from_unix(t_bu),
                              NonceIndices(hot.home_nonce_index, cot.careof_nonce_index)]
    assert len(bu.options) == 5 and isinstance(bu.options[-1], BindingAuthorizationData)
    # MAG2 installs (and saves its state) before its BA leaves, so MAG1's first
    # optimized packet finds the entry.
    at_bu = [a for t, n, a in net.log if n == "responder" and t == near(T0 + 0.05)]
    assert [type(a) for a in at_bu] == [RoInstalled, StateChanged, Send]
    assert at_bu[0] == RoInstalled(REVERSED, MAG1, None, T0 + 0.05 + LIFETIME, LIFETIME, "rr", "responder")
    assert isinstance(at_bu[2].message, BindingAck) and (at_bu[2].src, at_bu[2].dst) == (MAG2, MAG1)
    ba = only(net.messages(BindingAck))
    assert (ba.status, ba.flags, ba.sequence, ba.lifetime_seconds) == (0, BAFlags.P, bu.sequence, LIFETIME)
    assert ba.options[:2] == [ROAcknowledgement(0, LIFETIME // 4), find_option(bu, Timestamp)]   # the BU's, echoed
    assert len(ba.options) == 3 and isinstance(ba.options[-1], BindingAuthorizationData)
    ((t_installed, installed),) = timed(net, "initiator", RoInstalled)
    assert t_installed == near(T0 + 0.06)
    assert installed == RoInstalled(PAIR, MAG2, None, t_bu + LIFETIME, LIFETIME, "rr", "initiator",
                                    setup_seconds=t_installed - T0)
    attempt = net.initiator.attempts[PAIR]
    assert (attempt.phase, attempt.established, attempt.binding.refresh_at) == (Phase.ESTABLISHED, True,
                                                                        near(t_bu + 0.8 * LIFETIME))
    assert set(net.responder.bindings) == {REVERSED}


def test_the_lri_names_the_mns_prefix_when_the_trigger_gives_it():
    net = network()
    net.start(mn_prefix=FIRST_HNP)
    lri = only(net.messages(LocalizedRoutingInitiation))
    assert lri.options[:2] == [HomeNetworkPrefix(64, FIRST_HNP.network_address), CNAddress(CN)]
    net.run()
    assert net.actions("initiator", RoInstalled)


def test_an_ipv4_mn_and_cn_are_named_by_ipv4_options():
    net = network()
    installed = established(net, FIRST_HOA, CN4)
    lri = only(net.messages(LocalizedRoutingInitiation))
    assert lri.options[:2] == [IPv4HomeAddress(FIRST_HOA), CNIPv4Address(CN4)]
    assert only(net.messages(LocalizedRoutingAck)).options[:-1] == [MAGIPv6Address(MAG2)]
    (t_bu, _, bu, _), = net.sent(BindingUpdate)
    assert bu.options[:2] == [IPv4HomeAddress(FIRST_HOA), CNIPv4HomeAddress(32, CN4)]
    assert isinstance(bu.options[2], Timestamp)
    ba = only(net.messages(BindingAck))
    assert ba.options[0] == IPv4ROAcknowledgement(0, LIFETIME // 4)
    assert installed.pair == RoPair(FIRST_HOA, CN4)
    assert only(net.actions("responder", RoInstalled)).pair == RoPair(CN4, FIRST_HOA)


def test_an_ipv4_mns_home_keygen_token_covers_its_4_octet_home_address():
    # docs/protocol.md §4 decision 1 and §6: the 4 octets of option 29.
    net = network()
    established(net, FIRST_HOA, CN4)
    ((_, nonce),) = first_nonces(1)
    assert only(net.messages(HomeTest)).home_keygen_token == keygen_token(FIRST_HOA, nonce, 0)


def test_the_keygen_tokens_kbm_and_authenticators_follow_rfc_6275():
    net = network()
    established(net)
    ((home_index, home_nonce),) = first_nonces(1)
    hot, cot = only(net.messages(HomeTest)), only(net.messages(CareofTest))
    # Both tests ran at the same instant: one nonce for both (RFC 6275 §5.2.2).
    assert hot.home_nonce_index == cot.careof_nonce_index == home_index
    home_token, careof_token = keygen_token(MN, home_nonce, 0), keygen_token(MAG1, home_nonce, 1)
    assert (hot.home_keygen_token, cot.careof_keygen_token) == (home_token, careof_token)
    kbm = hashlib.sha1(home_token + careof_token).digest()
    bu, ba = only(net.messages(BindingUpdate)), only(net.messages(BindingAck))
    assert bu.options[-1].authenticator == rr_authenticator(kbm, MAG1, MAG2, bu)
    assert ba.options[-1].authenticator == rr_authenticator(kbm, MAG1, MAG2, ba)


def test_a_bu_with_one_flipped_authenticator_bit_is_refused_and_nothing_installed():
    net = network()
    net.hold = lambda origin, action: isinstance(action.message, BindingUpdate)
    net.start()
    net.run()
    flight = only(net.held)
    forged = tampered(flight.action, -1)           # the last bit of the authenticator
    actions = net.deliver(flight, forged)
    assert actions == [RoRejected(REVERSED, MAG1, RejectReason.BAD_AUTHORIZATION)]
    assert net.responder.bindings == {} and net.responder.next_deadline() is None
    assert not net.actions(cls=RoInstalled)


def test_a_ba_with_a_bad_authenticator_is_ignored_and_the_bu_sent_again():
    net = network()
    net.hold = lambda origin, action: isinstance(action.message, BindingAck)
    net.start()
    net.run()
    flight = net.held.pop()
    assert net.deliver(flight, tampered(flight.action, -1)) == [RoRejected(PAIR, MAG2, RejectReason.BAD_AUTHORIZATION, "binding ack")]
    assert net.initiator.attempts[PAIR].phase is Phase.BINDING
    net.hold = lambda origin, action: False
    net.run(1)
    t_bus = [t for t, *_ in net.sent(BindingUpdate)]
    assert t_bus == [T0, T0 + 1]
    bus = net.messages(BindingUpdate)
    assert bus[1].sequence == (bus[0].sequence + 1) & 0xFFFF      # RFC 6275 §11.8: a new sequence number
    installed = only(net.actions("initiator", RoInstalled))
    assert installed.expires == T0 + 1 + LIFETIME


def test_each_mn_and_each_attempt_gets_its_own_cookies():
    net = network()
    net.drop = lambda origin, action: isinstance(action.message, CareofTestInit)
    net.start(MN, CN)
    net.start(MN_B, CN)
    net.run()
    first = [m.home_init_cookie for m in net.messages(HomeTestInit)] + \
            [m.careof_init_cookie for m in net.messages(CareofTestInit)]
    assert len(first) == 4 and len(set(first)) == 4 and all(len(c) == 8 for c in first)
    net.run(20)                                   # no CoT: both attempts fail
    assert {f.pair for f in net.actions("initiator", RoFailed)} == {PAIR, RoPair(MN_B, CN)}
    since, traffic = net.mark()
    net.drop = lambda origin, action: False
    net.start(MN, CN, operator=True)
    net.run()
    again = [m.home_init_cookie for m in net.messages(HomeTestInit, since=traffic)] + \
            [m.careof_init_cookie for m in net.messages(CareofTestInit, since=traffic)]
    assert len(again) == 2 and not set(again) & set(first)
    assert only(net.actions("initiator", RoInstalled, since=since)).pair == PAIR


def test_two_mns_at_mag1_get_their_own_bindings_with_the_same_cn():
    net = network()
    net.start(MN, CN)
    net.start(MN_B, CN)
    net.run()
    assert {a.pair for a in net.actions("initiator", RoInstalled)} == {PAIR, RoPair(MN_B, CN)}
    assert set(net.responder.bindings) == {REVERSED, RoPair(CN, MN_B)}


# --- Expired nonces (RFC 6275 §5.2.7, §9.5.1) -------------------------------------------------------

@pytest.mark.parametrize("late, status", [
    (None, Status.EXPIRED_BOTH_NONCE_INDEX),      # both tests in the same nonce period
    (CareofTestInit, Status.EXPIRED_HOME_NONCE_INDEX),  # the CoTI a rotation later: the home nonce is older
    (HomeTestInit, Status.EXPIRED_CAREOF_NONCE_INDEX),
])
def test_a_bu_after_the_nonces_expired_gets_136_137_or_138_and_the_initiator_redoes_the_rr(late, status):
    # Long timeouts so that nothing is retransmitted while the clock jumps.
    net = network(initiator={"initial_timeout": 300.0, "max_timeout": 300.0}, responder={"nonce_rotation": 30.0})
    held_once = set()

    def hold(origin, action):
        kind = type(action.message)
        if kind in (late, BindingUpdate) and kind not in held_once:
            held_once.add(kind)
            return True
        return False
    net.hold = hold
    net.start()
    net.run()
    if late is not None:
        net.run(31)                                # the table starts a new nonce after 30 s
        net.release(0)
        net.run()
    hot, cot = only(net.messages(HomeTest)), only(net.messages(CareofTest))
    assert (hot.home_nonce_index == cot.careof_nonce_index) == (late is None)
    held_bu = only(net.held)
    net.run_until(held_bu.due + MAX_NONCE_LIFETIME + 1 - (31 if late is not None else 0))
    since, traffic = net.mark()
    actions = net.release(0)
    assert actions[0] == RoRejected(REVERSED, MAG1, RejectReason.EXPIRED_NONCE, status.name.lower())
    assert net.responder.bindings == {}
    ba = only(net.messages(BindingAck, since=traffic))
    # Without nonces there is no Kbm: this BA cannot carry a BAD (RFC 6275 §9.5.4).
    assert (ba.status, ba.lifetime) == (status, 0)
    assert ba.options[0] == ROAcknowledgement(status, 0) and not find_option(ba, BindingAuthorizationData)
    net.run()
    # MAG1 ran a fresh RR (new cookies, fresh nonces) and bound with it.
    hotis = net.messages(HomeTestInit)
    assert len(hotis) == 2 and hotis[0].home_init_cookie != hotis[1].home_init_cookie
    installed = only(net.actions("initiator", RoInstalled, since=since))
    assert installed.setup_seconds == net.now - T0
    assert set(net.responder.bindings) == {REVERSED}


def test_nonces_that_expire_again_after_a_fresh_rr_end_the_attempt_instead_of_looping():
    # The home test answered by someone else than the peer (the CN moved on
    # after the LMA answered): every BU names a home nonce the peer never gave.
    net = network()

    def forget_nonces(origin, action):
        if isinstance(getattr(action, "message", None), BindingUpdate):
            net.responder.nonces = NonceTable(rotation=30.0)
        return False
    net.hold = forget_nonces
    net.start()
    net.run(5)
    assert len(net.messages(HomeTestInit)) == 2 and len(net.messages(BindingUpdate)) == 2    # one RR again, no more
    failed = only(net.actions("initiator", RoFailed))
    assert (failed.reason, failed.retry_at) == (FailReason.NONCES_EXPIRED_AGAIN, T0 + 30)
    assert not net.actions("initiator", RoInstalled)


# --- Replay protection (docs/protocol.md §4 decision 2) -------------------------------------------------

def test_the_same_bu_twice_gets_157_and_changes_nothing():
    net = network()
    net.hold = lambda origin, action: isinstance(action.message, BindingUpdate)
    net.start()
    net.run()
    flight = only(net.held)
    first = net.deliver(flight)
    assert [type(a) for a in first] == [RoInstalled, StateChanged, Send]
    binding = net.responder.bindings[REVERSED]
    net.run(2)
    since, traffic = net.mark()
    second = net.deliver(flight)
    assert second[0] == RoRejected(REVERSED, MAG1, RejectReason.REPLAYED)
    assert net.responder.bindings == {REVERSED: binding}
    ba = only(net.messages(BindingAck, since=traffic))
    assert (ba.status, find_option(ba, ROAcknowledgement).status) == (157, 157)
    net.run()
    assert len(net.actions("initiator", RoInstalled)) == 1 and not net.actions("initiator", RoFailed)


def test_a_bu_whose_timestamp_is_outside_the_window_gets_156():
    net = network()
    net.hold = lambda origin, action: isinstance(action.message, BindingUpdate)
    net.start()
    net.run(8)                                   # BUs at 0, 1, 3 and 7 s, all held
    assert [f.due - T0 for f in net.held] == [0, 1, 3, 7]
    since, traffic = net.mark()
    actions = net.release(0)                     # 8 s old: the window is 7 s
    assert actions[0] == RoRejected(REVERSED, MAG1, RejectReason.TIMESTAMP_MISMATCH)
    ba = only(net.messages(BindingAck, since=traffic))
    assert ba.status == Status.TIMESTAMP_MISMATCH and isinstance(ba.options[-1], BindingAuthorizationData)
    net.run()
    assert net.responder.bindings == {} and not net.actions("initiator", RoFailed)   # a stale sequence
    net.release(-1)                              # the latest BU, 1 s old, is fine
    net.run()
    assert only(net.actions("initiator", RoInstalled)).expires == T0 + 7 + LIFETIME


def test_the_responder_forgets_replay_timestamps_once_the_window_has_passed():
    # A BU as old as a forgotten Timestamp fails the window check anyway (156).
    net = network()
    established(net)
    net.run(1)
    net.stop()
    net.run(1)
    established(net, MN_B, CN)
    assert len(net.responder._last_timestamp) == 2
    net.run(8)
    net.stop(MN_B, CN)
    net.run()
    assert list(net.responder._last_timestamp) == [RoPair(CN, MN_B)]


# --- Retransmission and backoff (RFC 6275 §11.8) ---------------------------------------------------------

def test_an_unanswered_lri_is_resent_after_1_2_4_s_then_the_attempt_fails():
    net = network()
    net.drop = lambda origin, action: action.dst == LMA
    net.start()
    net.run(40)
    sent = net.sent(LocalizedRoutingInitiation)
    assert [t - T0 for t, *_ in sent] == [0, 1, 3, 7]
    assert len({m.sequence for _, _, m, _ in sent}) == 1
    ((t_failed, failed),) = timed(net, "initiator", RoFailed)
    assert t_failed == T0 + 15                   # 4 transmissions, the last one waited for 8 s
    assert failed == RoFailed(PAIR, FailReason.NO_ANSWER, t_failed + 30, detail="in phase query")


def test_a_flow_trigger_during_backoff_does_nothing_an_operator_start_restarts_at_once():
    net = network()
    net.drop = lambda origin, action: action.dst == LMA
    net.start()
    net.run(20)
    assert net.initiator.attempts[PAIR].phase is Phase.BACKOFF
    assert net.start() == []
    net.drop = lambda origin, action: False
    restarted = net.start(operator=True)
    assert isinstance(only(restarted).message, LocalizedRoutingInitiation)
    net.run()
    assert only(net.actions("initiator", RoInstalled)).setup_seconds == 0


def test_each_further_failure_doubles_the_backoff_up_to_16_times():
    net = network(initiator={"retry_interval": 10.0})
    net.drop = lambda origin, action: action.dst == LMA
    for _ in range(6):
        net.start()
        net.run(20)
        # The initiator's timer forgets the pair at its retry time; the flow asks again just after.
        net.run_until(net.actions("initiator", RoFailed)[-1].retry_at + 1)
        assert PAIR not in net.initiator.attempts
    failures = timed(net, "initiator", RoFailed)
    assert [f.retry_at - t for t, f in failures] == [10, 20, 40, 80, 160, 160]


def test_a_pair_whose_flow_stops_asking_forgets_its_failures():
    net = network(initiator={"retry_interval": 10.0})
    net.drop = lambda origin, action: action.dst == LMA
    net.start()
    net.run(20)
    net.run_until(net.actions("initiator", RoFailed)[-1].retry_at + 16 * 10)   # the longest backoff
    assert net.initiator.next_deadline() is None
    net.start()
    net.run(20)
    assert [f.retry_at - t for t, f in timed(net, "initiator", RoFailed)] == [10, 10]


def test_a_success_resets_the_backoff():
    net = network(initiator={"retry_interval": 10.0})
    net.drop = lambda origin, action: action.dst == LMA
    net.start()
    net.run(100)
    net.drop = lambda origin, action: False
    established(net)
    net.stop()
    net.drop = lambda origin, action: action.dst == LMA
    net.start()
    net.run(100)
    assert [f.retry_at - t for t, f in timed(net, "initiator", RoFailed)] == [10, 10]


def test_an_unanswered_hoti_is_retransmitted_alone():
    net = network()
    net.drop = lambda origin, action: isinstance(action, SendHomePath)
    net.start()
    net.run(40)
    hotis, cotis = net.sent(HomeTestInit), net.sent(CareofTestInit)
    assert [t - T0 for t, *_ in hotis] == [0, 1, 3, 7]
    # RFC 6275 §5.2.3, §11.6.1: a new cookie on each, a retransmission too
    assert len({m.home_init_cookie for _, _, m, _ in hotis}) == 4
    assert [t - T0 for t, *_ in cotis] == [0] and len(net.messages(CareofTest)) == 1
    failed = only(net.actions("initiator", RoFailed))
    assert (failed.reason, failed.detail) == (FailReason.NO_ANSWER, "in phase rr")
    assert not net.messages(BindingUpdate)


def test_a_late_hot_for_a_retransmitted_hotis_old_cookie_is_ignored_the_newest_counts():
    # RFC 6275 §11.6.2: the Home Init Cookie must be the one of the HoTI sent last.
    net = network()
    net.hold = lambda origin, action: isinstance(action.message, HomeTest)
    net.start()
    net.run(1.5)                                  # the HoTI went again at T0 + 1: the first HoT is held
    hotis = net.messages(HomeTestInit)
    assert len(hotis) == 2 and hotis[0].home_init_cookie != hotis[1].home_init_cookie
    cotis = net.messages(CareofTestInit)
    assert len(cotis) == 1                        # its CoT came: no CoTI again, its cookie kept
    first, second = net.held
    assert net.decoded(first.action)[0].home_init_cookie == hotis[0].home_init_cookie
    net.deliver(first)                            # the answer to the old cookie: nothing
    assert not net.messages(BindingUpdate)
    net.deliver(second)                           # the answer to the newest: the BU
    net.run()
    assert only(net.messages(BindingUpdate)) and only(net.actions("initiator", RoInstalled))


# --- Refresh and expiry ----------------------------------------------------------------------------------------

def test_a_refresh_runs_a_new_rr_and_bu_while_the_binding_stays():
    net = network()
    established(net)
    refresh_at = net.initiator.attempts[PAIR].binding.refresh_at
    assert refresh_at == near(T0 + 0.8 * LIFETIME)
    net.run_until(refresh_at - 1)
    since, traffic = net.mark()
    assert net.log[since - 1][0] == T0           # nothing happened in between
    net.run(2)
    assert [t for t, *_ in net.sent(HomeTestInit, since=traffic)] == [refresh_at]
    assert [t for t, *_ in net.sent(CareofTestInit, since=traffic)] == [refresh_at]
    assert not net.actions(cls=RoRemoved) and not net.actions(cls=RoFailed)
    again = only(net.actions("initiator", RoInstalled, since=since))
    assert again.setup_seconds is None and again.expires == refresh_at + LIFETIME
    assert only(net.actions("responder", RoInstalled, since=since)).expires == refresh_at + LIFETIME
    assert net.initiator.attempts[PAIR].binding.refresh_at == near(refresh_at + 0.8 * LIFETIME)


def test_an_unanswered_refresh_keeps_the_entry_until_it_expires_then_falls_back():
    net = network()
    installed = established(net)
    net.drop = lambda origin, action: True
    net.run_until(installed.expires - 0.5)
    assert len(net.messages(HomeTestInit)) == 5  # the first RR, then the refresh and its 3 retransmissions
    assert not net.actions("initiator", RoRemoved) and not net.actions("initiator", RoFailed)
    assert net.initiator.attempts[PAIR].established
    net.run(1)
    ((t_removed, removed),) = timed(net, "initiator", RoRemoved)
    assert t_removed == installed.expires
    assert removed == RoRemoved(PAIR, MAG2, Role.INITIATOR, FailReason.LIFETIME_EXPIRED)
    assert only(net.actions("initiator", RoFailed)) == RoFailed(PAIR, FailReason.LIFETIME_EXPIRED, installed.expires + 30)


def test_the_responder_removes_a_binding_when_its_lifetime_is_over():
    net = network()
    established(net)
    net.drop = lambda origin, action: True
    binding = net.responder.bindings[REVERSED]
    net.run(net.responder.policy.timestamp_window + 1)        # the BU's replay Timestamp leaves the window
    assert net.responder.next_deadline() == binding.expires == T0 + LIFETIME
    net.run_until(binding.expires - 0.001)
    assert not net.actions("responder", RoRemoved)
    net.run(1)
    ((t_removed, removed),) = timed(net, "responder", RoRemoved)
    assert (t_removed, removed) == (binding.expires, RoRemoved(REVERSED, MAG1, Role.RESPONDER, StopReason.LIFETIME_EXPIRED))
    assert net.responder.bindings == {} and net.responder.next_deadline() is None


def test_the_initiators_lifetime_counts_from_when_its_bu_left():
    # A slow BA must not stretch MAG1's entry past MAG2's: MAG2 stops taking
    # MAG1's tunnelled packets when its binding ends (DESIGN §4).
    net = network()
    net.delay = lambda origin, action: 0.5 if isinstance(action.message, BindingAck) else 0.0
    installed = established(net, seconds=1)
    binding = net.responder.bindings[REVERSED]
    assert installed.expires == T0 + LIFETIME == binding.expires
    assert net.initiator.attempts[PAIR].binding.refresh_at == near(T0 + 0.8 * LIFETIME)


# --- Teardown ------------------------------------------------------------------------------------------------------

def test_stop_deregisters_and_both_sides_remove_the_binding():
    net = network()
    established(net)
    net.run(10)
    since, traffic = net.mark()
    actions = net.stop()
    # our traffic leaves the tunnel before MAG2 hears (it lets nothing of ours in after)
    assert actions[0] == RoRemoved(PAIR, MAG2, Role.INITIATOR, StopReason.STOPPED)
    assert [type(a.message) for a in actions if isinstance(a, Send)] == [BindingUpdate]
    (_, send, bu, _), = net.sent(BindingUpdate, since=traffic)
    assert (send.src, send.dst, bu.lifetime, bu.flags) == (MAG1, MAG2, 0, BUFlags.A | BUFlags.P)
    net.run()
    assert net.actions("responder", RoRemoved, since=since) == [
        RoRemoved(REVERSED, MAG1, Role.RESPONDER, StopReason.DEREGISTERED_BY_PEER)]
    ba = only(net.messages(BindingAck, since=traffic))
    assert (ba.status, ba.lifetime) == (0, 0)
    assert net.responder.bindings == {} and net.initiator.attempts == {}
    net.run(net.responder.policy.timestamp_window + 1)        # the replay Timestamps leave the window
    assert net.responder.replay_entries == 0
    assert net.initiator.next_deadline() is None and net.responder.next_deadline() is None


def test_the_deregistration_is_signed_with_kbm_from_the_home_keygen_token_alone_over_the_home_address():
    # RFC 6275 §5.2.5: Kbm = SHA1(home keygen token) when deleting a binding; §6.2.7 and §5.2.6:
    # its Authenticator covers the home address in place of the care-of address, and so does
    # the BA's. Recomputed here from the formulas, with the responder's Kcn and its nonce.
    net = network()
    established(net)
    hot = only(net.messages(HomeTest))
    since, traffic = net.mark()
    net.stop()
    bu = only(net.messages(BindingUpdate, since=traffic))
    assert bu.lifetime == 0
    index = find_option(bu, NonceIndices).home_nonce_index
    assert index == hot.home_nonce_index
    nonce = dict(first_nonces(4))[index]
    kbm = hashlib.sha1(keygen_token(MN, nonce, 0)).digest()
    assert bu.options[-1].authenticator == rr_authenticator(kbm, MN, MAG2, bu)
    assert bu.options[-1].authenticator != rr_authenticator(kbm, MAG1, MAG2, bu)
    net.run()
    ba = only(net.messages(BindingAck, since=traffic))
    assert ba.options[-1].authenticator == rr_authenticator(kbm, MN, MAG2, ba)


def test_a_deregistration_signed_over_the_proxy_coa_is_dropped_and_the_binding_stays():
    # The form before issue 16 (and what an RFC 6275 correspondent would refuse): silently dropped.
    net = network()
    established(net)
    hot = only(net.messages(HomeTest))
    since, traffic = net.mark()
    kbm = hashlib.sha1(hot.home_keygen_token).digest()
    net.hold = lambda origin, action: isinstance(action.message, BindingUpdate)
    net.stop()
    (flight,) = net.held
    bu, arrival = net.decoded(flight.action)
    old_form = decode(encode(security.sign_binding_update(bu, kbm, MAG1, MAG2), MAG1, MAG2), MAG1, MAG2)
    assert old_form.options[-1].authenticator == rr_authenticator(kbm, MAG1, MAG2, old_form)
    log = len(net.log)
    net.deliver(flight, message=(old_form, arrival))
    assert net.actions("responder", RoRejected, since=log) == [
        RoRejected(REVERSED, MAG1, RejectReason.BAD_AUTHORIZATION)]
    assert REVERSED in net.responder.bindings and net.messages(BindingAck, since=traffic) == []


def test_a_deregistration_needs_only_the_home_nonce():
    # RFC 6275 §6.2.6: the care-of nonce index is ignored when deleting a binding.
    net = network(initiator={"initial_timeout": 300.0, "max_timeout": 300.0}, responder={"nonce_rotation": 30.0})
    net.hold = lambda origin, action: isinstance(action.message, HomeTestInit) and net.now == T0
    net.start()
    net.run(40)
    net.release()                                # a nonce period later: the home nonce is 40 s younger
    net.run()
    hot, cot = only(net.messages(HomeTest)), only(net.messages(CareofTest))
    assert hot.home_nonce_index != cot.careof_nonce_index
    net.run_until(T0 + MAX_NONCE_LIFETIME + 1)   # the care-of nonce has expired, the home one not
    net.stop()
    net.run()
    assert net.actions("responder", RoRemoved) == [RoRemoved(REVERSED, MAG1, Role.RESPONDER,
                                                             StopReason.DEREGISTERED_BY_PEER)]


def test_stop_without_a_binding_sends_nothing():
    net = network()
    net.drop = lambda origin, action: action.dst == LMA
    net.start()
    since, traffic = net.mark()
    assert net.stop() == [] and net.initiator.attempts == {}
    assert net.stop() == []
    net.run(100)
    assert net.traffic[traffic:] == []


def test_mn_detach_stops_every_pair_of_that_mn_and_only_those():
    net = network()
    established(net, MN, CN)
    established(net, MN, CN_OTHER)
    established(net, MN_B, CN)
    net.run(1)
    since, traffic = net.mark()
    actions = net.post("initiator", net.initiator.mn_detached(MN, net.now))
    assert {a.pair for a in actions if isinstance(a, RoRemoved)} == {PAIR, RoPair(MN, CN_OTHER)}
    assert all(a.reason == StopReason.MN_DETACHED for a in actions if isinstance(a, RoRemoved))
    assert {m.lifetime for m in net.messages(BindingUpdate, since=traffic)} == {0}
    net.run()
    assert set(net.responder.bindings) == {RoPair(CN, MN_B)}
    assert set(net.initiator.attempts) == {RoPair(MN_B, CN)}


def test_cn_detach_tells_mag1_with_a_binding_error_and_mag1_falls_back():
    net = network()
    established(net)
    established(net, MN_B, CN_OTHER)
    since, traffic = net.mark()
    actions = net.post("responder", net.responder.cn_detached(CN))
    assert actions[0] == RoRemoved(REVERSED, MAG1, Role.RESPONDER, StopReason.CN_DETACHED)
    be_send = actions[1]
    assert (be_send.src, be_send.dst) == (MAG2, MAG1)
    be = only(net.messages(BindingError, since=traffic))
    assert (be.status, be.home_address) == (1, MN)
    net.run()
    # no backoff: the CN moved or left, which is no failure of the attempt;
    # the flow's next trigger looks for the CN's new MAG at once (handover)
    assert net.actions("initiator", since=since) == [
        RoRemoved(PAIR, MAG2, Role.INITIATOR, FailReason.BINDING_ERROR),
        RoFailed(PAIR, FailReason.BINDING_ERROR, net.now), StateChanged()]
    assert net.initiator.start(MN, CN, net.now) != []                   # a flow trigger restarts it
    assert net.initiator.attempts[PAIR].failures == 0
    assert net.initiator.attempts[RoPair(MN_B, CN_OTHER)].established    # another MN's pair stays
    assert set(net.responder.bindings) == {RoPair(CN_OTHER, MN_B)}


def test_a_binding_error_names_only_the_mn_so_all_its_pairs_with_that_peer_fall_back():
    # RFC 6275 §6.1.9: a BE carries a home address, not the correspondent's.
    net = network()
    established(net)
    established(net, MN, CN_OTHER)
    since, _ = net.mark()
    net.post("responder", net.responder.cn_detached(CN))
    net.run()
    assert {a.pair for a in net.actions("initiator", RoRemoved, since=since)} == {PAIR, RoPair(MN, CN_OTHER)}


def test_a_binding_error_from_another_node_is_ignored():
    net = network()
    established(net)
    be = BindingError(1, MN)
    assert net.initiator.receive(*RoNetwork.decoded(Send(be, LMA, MAG1)), net.now) == []
    assert net.initiator.receive(*RoNetwork.decoded(Send(BindingError(1, MN_B), MAG2, MAG1)), net.now) == []
    assert net.initiator.attempts[PAIR].established


def test_a_binding_error_for_a_pair_in_backoff_changes_nothing():
    net = network()
    net.drop = lambda origin, action: isinstance(action.message, BindingUpdate)
    net.start()
    net.run(20)
    attempt = net.initiator.attempts[PAIR]
    retry_at = attempt.retry_at
    assert attempt.phase is Phase.BACKOFF
    assert net.initiator.receive(*RoNetwork.decoded(Send(BindingError(1, MN), MAG2, MAG1)), net.now) == []
    assert (attempt.retry_at, attempt.failures) == (retry_at, 1)


# --- The LMA's answer decides the peer ----------------------------------------------------------------------------

def cn_agent_network(**kwargs) -> RoNetwork:
    return network(cn_agent=True, **kwargs)


def test_a_cn_outside_the_domain_is_asked_directly_and_its_hot_comes_back_plainly():
    net = cn_agent_network()
    net.start(MN, OUTSIDE_CN)
    net.run()
    assert only(net.messages(LocalizedRoutingAck)).status == 129
    (_, hoti_send, _, _), = net.sent(HomeTestInit)
    assert isinstance(hoti_send, SendHomePath) and (hoti_send.src, hoti_send.dst) == (MN, OUTSIDE_CN)
    (_, coti_send, _, _), = net.sent(CareofTestInit)
    assert (coti_send.src, coti_send.dst) == (MAG1, OUTSIDE_CN)
    (_, hot_send, _, _), = net.sent(HomeTest)
    assert type(hot_send) is Send and (hot_send.src, hot_send.dst) == (OUTSIDE_CN, MN)
    (_, bu_send, _, _), = net.sent(BindingUpdate)
    assert bu_send.dst == OUTSIDE_CN
    installed = only(net.actions("initiator", RoInstalled))
    assert (installed.pair, installed.peer) == (RoPair(MN, OUTSIDE_CN), OUTSIDE_CN)
    assert only(net.actions("responder", RoInstalled)).pair == RoPair(OUTSIDE_CN, MN)
    assert net.initiator.attempts[RoPair(MN, OUTSIDE_CN)].peer.outside


def test_an_ipv4_cn_outside_the_domain_is_not_tried():
    net = network()
    net.start(FIRST_HOA, OUTSIDE_CN4)
    net.run()
    ((t, failed),) = timed(net, "initiator", RoFailed)
    assert failed == RoFailed(RoPair(FIRST_HOA, OUTSIDE_CN4), FailReason.IPV4_CN_OUTSIDE, t + 16 * 30)
    assert not net.messages(HomeTestInit) and not net.messages(CareofTestInit)


def test_an_lra_128_fails_with_the_long_backoff():
    net = network(allowed=lambda mn, cn: False)
    net.start()
    net.run()
    ((t, failed),) = timed(net, "initiator", RoFailed)
    assert failed == RoFailed(PAIR, FailReason.LMA_REFUSED, t + 16 * 30, detail="localized_routing_not_allowed")


def test_an_lra_naming_our_own_proxy_coa_for_a_cn_not_registered_here_installs_nothing():
    # (local routing itself: test_local_routing.py)
    net = network(anchored=(MN_AT_MAG1, Anchored(CN_HNP, MAG1)))
    net.start()
    net.run()
    ((t, failed),) = timed(net, "initiator", RoFailed)
    assert failed == RoFailed(PAIR, FailReason.CN_NOT_BOUND_HERE, t + 30)
    assert not net.messages(CareofTestInit)


def test_an_lra_not_from_the_lma_is_ignored():
    net = network()
    net.hold = lambda origin, action: True
    net.start()
    lri = only(net.messages(LocalizedRoutingInitiation))
    forged = LocalizedRoutingAck(lri.sequence, 0, LIFETIME, options=[MAGIPv6Address(OUTSIDE_CN)])
    assert net.initiator.receive(*RoNetwork.decoded(Send(forged, OUTSIDE_CN, MAG1)), net.now) == []
    assert net.initiator.attempts[PAIR].phase is Phase.QUERY


def test_an_lra_for_another_query_is_ignored():
    net = network()
    net.hold = lambda origin, action: True
    net.start()
    lri = only(net.messages(LocalizedRoutingInitiation))
    stamp = find_option(lri, Timestamp)
    stale = LocalizedRoutingAck((lri.sequence + 1) & 0xFFFF, 0, LIFETIME, options=[MAGIPv6Address(MAG2), stamp])
    assert net.initiator.receive(*RoNetwork.decoded(Send(stale, LMA, MAG1)), net.now) == []
    # the right number, but the Timestamp of another LRI: an old answer, once the sequence came round
    replayed = LocalizedRoutingAck(lri.sequence, 0, LIFETIME,
                                   options=[MAGIPv6Address(MAG2), Timestamp(stamp.timestamp - 65536 * 60)])
    assert net.initiator.receive(*RoNetwork.decoded(Send(replayed, LMA, MAG1)), net.now) == []
    assert net.initiator.attempts[PAIR].phase is Phase.QUERY


# --- Quick mode (draft §2.2) ---------------------------------------------------------------------------------------

def test_quick_mode_binds_without_rr_and_authenticates_with_option_9():
    net = quick_network()
    installed = established(net)
    assert not net.messages(HomeTestInit) and not net.messages(CareofTestInit)
    (t_bu, _, bu, _), = net.sent(BindingUpdate)
    assert bu.options[:2] == [HomeNetworkPrefix(128, MN), CNHomeNetworkPrefix(128, CN)]
    # the BU's Timestamp: its own instant, one 1/65536 s after the LRI's when both leave at once
    assert find_option(bu, Timestamp).timestamp - Timestamp.from_unix(t_bu).timestamp in (0, 1)
    assert len(bu.options) == 4 and not find_option(bu, NonceIndices)
    mma = bu.options[-1]
    assert isinstance(mma, MobilityMessageAuthentication) and (mma.subtype, mma.spi) == (255, QUICK_SPI)
    assert mma.authenticator == quick_authenticator(QUICK_KEY, MAG1, MAG2, bu)
    ba = only(net.messages(BindingAck))
    assert ba.options[:2] == [ROAcknowledgement(0, LIFETIME // 4), find_option(bu, Timestamp)]   # the BU's, echoed
    assert ba.options[-1].authenticator == quick_authenticator(QUICK_KEY, MAG2, MAG1, ba)
    assert (installed.mode, only(net.actions("responder", RoInstalled)).mode) == ("quick", "quick")


@pytest.mark.parametrize("responder_keys, reason", [
    (quick_keys(MAG1, key=b"another key"), RejectReason.BAD_QUICK_MODE_AUTHENTICATOR),
    (quick_keys(MAG1, spi=QUICK_SPI + 1), RejectReason.BAD_QUICK_MODE_AUTHENTICATOR),
    ({}, RejectReason.NO_KEY_FOR_PEER),
])
def test_quick_mode_refuses_a_bu_it_cannot_authenticate(responder_keys, reason):
    net = quick_network(responder_keys=responder_keys)
    net.start()
    net.run()
    assert net.actions("responder") == [RoRejected(REVERSED, MAG1, reason)]
    assert net.responder.bindings == {} and not net.messages(BindingAck)


def test_quick_mode_ignores_a_ba_with_a_bad_authenticator():
    net = quick_network()
    net.hold = lambda origin, action: isinstance(action.message, BindingAck)
    net.start()
    net.run()
    flight = net.held.pop()
    assert net.deliver(flight, tampered(flight.action, -1)) == [RoRejected(PAIR, MAG2, RejectReason.BAD_QUICK_MODE_AUTHENTICATOR,
                                                                            "binding ack")]
    assert not net.actions("initiator", RoInstalled)


def test_quick_mode_falls_back_to_rr_with_a_peer_without_a_key():
    net = quick_network(initiator_keys=quick_keys(OUTSIDE_CN))
    installed = established(net)
    assert installed.mode == "rr" and net.messages(HomeTestInit)


def test_a_bu_for_a_cn_the_responder_does_not_serve_gets_129():
    net = quick_network()
    net.responder.policy.serves = lambda address: False
    net.start()
    net.run()
    rejected, _ = net.actions("responder")
    assert rejected == RoRejected(REVERSED, MAG1, RejectReason.CN_NOT_SERVED, "binding update")
    ba = only(net.messages(BindingAck))
    assert (ba.status, find_option(ba, ROAcknowledgement).status) == (129, 129)
    assert net.responder.bindings == {}
    failed = only(net.actions("initiator", RoFailed))
    assert (failed.reason, failed.detail) == (FailReason.PEER_REFUSED, "admin_prohibited")


def test_an_rr_bu_for_a_cn_that_left_since_its_rr_gets_a_signed_129():
    net = network()
    net.hold = lambda origin, action: isinstance(action.message, BindingUpdate)
    net.start()
    net.run()
    net.responder.policy.serves = lambda address: False   # the CN left MAG2 between the RR and the BU
    net.release()
    net.run()
    ba = only(net.messages(BindingAck))
    assert ba.status == 129 and isinstance(ba.options[-1], BindingAuthorizationData)
    failed = only(net.actions("initiator", RoFailed))
    assert (failed.reason, failed.detail) == (FailReason.PEER_REFUSED, "admin_prohibited")


def test_a_hoti_for_a_cn_not_served_here_is_refused():
    net = network(responder={"serves": ()})
    net.start()
    net.run()
    assert RoRejected(REVERSED, MN, RejectReason.CN_NOT_SERVED, "hoti") in net.actions("responder")
    assert not net.messages(HomeTest)


def test_an_unauthenticated_refusal_is_ignored():
    # RFC 6275 §11.7.3: only the expired-nonce statuses may come without a BAD.
    net = network()
    net.hold = lambda origin, action: isinstance(action.message, BindingAck)
    net.start()
    net.run()
    bu = only(net.messages(BindingUpdate))
    for options in ([ROAcknowledgement(129, 0)],
                    [ROAcknowledgement(129, 0), BindingAuthorizationData(bytes(12))]):
        forged = BindingAck(129, BAFlags.P, bu.sequence, 0, options=options)
        assert net.initiator.receive(*RoNetwork.decoded(Send(forged, MAG2, MAG1)), net.now) \
            == [RoRejected(PAIR, MAG2, RejectReason.UNMATCHED_BA, f"sequence {forged.sequence}")]
    assert net.initiator.attempts[PAIR].phase is Phase.BINDING
    net.release()
    net.run()
    assert net.actions("initiator", RoInstalled)


# --- Property: any interleaving keeps the invariants ----------------------------------------------------------------

PAIRS = [PAIR, RoPair(MN_B, CN)]

deliveries = st.tuples(st.just("deliver"), st.integers(0, 31))
ro_events = st.lists(st.one_of(
    *[deliveries] * 10,                            # about half the steps move a message along
    st.tuples(st.just("start"), st.sampled_from(PAIRS), st.booleans()),
    st.tuples(st.just("stop"), st.sampled_from(PAIRS)),
    st.tuples(st.just("drop"), st.integers(0, 31)),
    st.tuples(st.just("duplicate"), st.integers(0, 31)),
    st.tuples(st.just("corrupt"), st.integers(0, 31), st.integers(0, 4095)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("wait"), st.floats(0.01, 5)),
    st.tuples(st.just("wait"), st.floats(5, 500)),
    st.tuples(st.just("cn_detached")),
    st.tuples(st.just("mn_detached"), st.sampled_from([MN, MN_B])),
), min_size=5, max_size=40)


class Checked:
    """RoNetwork with everything held until the test delivers, drops,
    duplicates or corrupts it, and an independent check of each BU the
    responder accepts."""

    def __init__(self, mode: str):
        keys = {"initiator": {}, "responder": {}}
        if mode == "quick":
            keys = {"initiator": {"mode": "quick", "peer_keys": quick_keys(MAG2)},
                    "responder": {"peer_keys": quick_keys(MAG1)}}
        self.net = network(initiator={"lifetime": 60} | keys["initiator"],
                           responder={"max_lifetime": 60} | keys["responder"],
                           anchored=(MN_AT_MAG1, MN_B_AT_MAG1, CN_AT_MAG2))
        self.net.hold = lambda origin, action: True
        self.accepted: dict[RoPair, float] = {}   # newest Timestamp accepted, per pair
        self.cn_left = False                        # MAG2 dropped bindings on its own (cn_detached)

    def step(self, event) -> None:
        net = self.net
        net.run(0.01)                               # no two events at the same instant
        kind, *args = event
        if kind == "start":
            pair, operator = args
            net.start(pair.local, pair.remote, operator=operator)
        elif kind == "stop":
            net.stop(args[0].local, args[0].remote)
        elif kind == "cn_detached":
            self.cn_left = True
            net.post("responder", net.responder.cn_detached(CN))
        elif kind == "mn_detached":
            net.post("initiator", net.initiator.mn_detached(args[0], net.now))
        elif kind == "wait":
            net.run(args[0])
        elif kind == "flush":
            while net.held:
                self.deliver(net.held.pop(0))
        elif net.held:
            flight = net.held[args[0] % len(net.held)]
            if kind == "deliver":
                net.held.remove(flight)
                self.deliver(flight)
            elif kind == "drop":
                net.held.remove(flight)
            elif kind == "duplicate":
                self.deliver(flight)
            elif kind == "corrupt":
                net.held.remove(flight)
                message = tampered(flight.action, args[1])
                if message is not None:
                    self.deliver(flight, message)

    def deliver(self, flight, message=None) -> None:
        message, arrival = message or RoNetwork.decoded(flight.action)
        to_responder = self.net.destination(flight) == "responder"
        valid = to_responder and isinstance(message, BindingUpdate) and self.verifies(message, arrival)
        actions = self.net.deliver(flight, (message, arrival))
        installed = [a for a in actions if isinstance(a, RoInstalled) and to_responder]
        if installed:
            # The responder installs a pair only for a BU that verifies, is fresh and is no replay.
            assert valid, f"installed after a BU that does not verify: {message}"
            stamp = find_option(message, Timestamp).to_unix()
            pair = installed[0].pair
            assert abs(stamp - self.net.now) <= 7 and stamp > self.accepted.get(pair, float("-inf"))
            self.accepted[pair] = stamp

    def verifies(self, bu: BindingUpdate, arrival: Arrival) -> bool:
        last = bu.options[-1]
        if isinstance(last, MobilityMessageAuthentication):
            return (last.spi == QUICK_SPI
                    and last.authenticator == quick_authenticator(QUICK_KEY, arrival.src, arrival.dst, bu))
        indices = find_option(bu, NonceIndices)
        mn = find_option(bu, HomeNetworkPrefix)
        if not isinstance(last, BindingAuthorizationData) or indices is None or mn is None:
            return False
        home_nonce = self.net.responder.nonces.lookup(indices.home_nonce_index, self.net.now)
        careof_nonce = self.net.responder.nonces.lookup(indices.careof_nonce_index, self.net.now)
        if home_nonce is None:
            return False
        home = keygen_token(mn.prefix, home_nonce, 0)
        if bu.lifetime == 0:
            kbm = hashlib.sha1(home).digest()
        elif careof_nonce is None:
            return False
        else:
            kbm = hashlib.sha1(home + keygen_token(arrival.src, careof_nonce, 1)).digest()
        return last.authenticator == rr_authenticator(kbm, arrival.src, arrival.dst, bu)

    def check(self) -> None:
        net = self.net
        for pair, attempt in net.initiator.attempts.items():
            if attempt.established:
                assert attempt.expires is not None and attempt.expires > net.now
                # MAG1 tunnels to MAG2 only while MAG2 holds the binding, unless MAG2 dropped it itself.
                there = net.responder.bindings.get(RoPair(pair.remote, pair.local))
                assert self.cn_left or (there is not None and there.expires >= attempt.expires)
        # Every install at MAG1 follows one at MAG2 for the same pair, which lasts at least as long.
        latest: dict[RoPair, RoInstalled] = {}
        for _, node, action in net.log:
            if isinstance(action, RoInstalled) and node == "responder":
                latest[action.pair] = action
            elif isinstance(action, RoInstalled):
                there = latest.get(RoPair(action.pair.remote, action.pair.local))
                assert there is not None, f"{action} before the responder installed"
                assert there.expires >= action.expires

    def settle(self) -> None:
        for pair in PAIRS:
            self.step(("stop", pair))
        for _ in range(5):
            self.step(("flush",))
            self.net.run(1000)
        assert not self.net.held


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["rr", "quick"]), ro_events)
def test_any_interleaving_of_ro_messages_keeps_the_invariants(mode, events):
    checked = Checked(mode)
    checked.step(("start", PAIR, False))           # the flow of the first pair is there from the start
    for event in events:
        checked.step(event)
        checked.check()
    checked.settle()
    checked.check()
    assert checked.net.responder.bindings == {} and checked.net.initiator.attempts == {}
    assert checked.net.initiator.next_deadline() is None and checked.net.responder.next_deadline() is None


# --- IPv4 (issue 6: the draft's fig. 2, 3, 6, 7 and §2.3.2) --------------------------------------

def test_an_ipv4_mns_hoti_and_coti_follow_fig_2_and_3():
    net = network()
    established(net, FIRST_HOA, CN4)
    (hoti,) = [a for _, n, a in net.log if n == "initiator" and isinstance(a, SendHomePath)
               and isinstance(a.message, HomeTestInit)]
    # fig. 2: IPv4 (MN → CN) / IPv6 (MAG1 pCoA → MAG2 pCoA) / HoTI + IPv4 HAO + IPv4 Alt CN Address,
    # into the IPv4 MN's own LMA tunnel
    assert (hoti.src, hoti.dst, hoti.anchor, hoti.wrap_ipv4) == (MAG1, MAG2, FIRST_HOA, (FIRST_HOA, CN4))
    assert hoti.message.options == [IPv4HomeAddress(FIRST_HOA), CNIPv4Address(CN4)]
    (coti,) = [a for _, n, a in net.log if n == "initiator" and isinstance(a, Send)
               and isinstance(a.message, CareofTestInit)]
    # fig. 3: IPv4 (MAG1's IPv4 pCoA → CN) / IPv6 (pCoA → pCoA) / CoTI + IPv4 CoA + IPv4 Alt CN Address
    assert (coti.src, coti.dst, coti.wrap_ipv4) == (MAG1, MAG2, (MAG1_4, CN4))
    assert coti.message.options == [IPv4CareofAddress(MAG1_4), CNIPv4Address(CN4)]


def test_mag2_answers_fig_2_in_kind_from_the_addresses_in_the_options():
    net = network()
    established(net, FIRST_HOA, CN4)
    (hot,) = [a for _, n, a in net.log if n == "responder" and isinstance(a, SendHomePath)]
    assert (hot.src, hot.dst, hot.anchor, hot.wrap_ipv4) == (MAG2, MAG1, CN4, (CN4, FIRST_HOA))
    (cot,) = [a for _, n, a in net.log if n == "responder" and isinstance(a, Send)
              and isinstance(a.message, CareofTest)]
    assert (cot.src, cot.dst) == (MAG2, MAG1)       # the care-of address is MAG1's proxy CoA


def test_option_recovery_trusts_the_options_of_a_fig_2_hoti():
    res = RoResponder(responder_policy(serves=(CN4,)), kcn=KCN)
    hoti = HomeTestInit(home_init_cookie=bytes(8), options=[IPv4HomeAddress(FIRST_HOA), CNIPv4Address(CN4)])
    arrival = Arrival(IPv6Address("::ffff:192.0.2.99"), IPv6Address(f"::ffff:{CN4}"), proxy_src=MAG1,
                      proxy_dst=MAG2, home_path=True)
    (hot,) = res.receive(hoti, arrival, T0)
    assert hot.wrap_ipv4 == (CN4, FIRST_HOA)


def over_ipv4_network(nat=None) -> RoNetwork:
    net = network(initiator={"ipv4_transport": True},
                  anchored=(MN_AT_MAG1, MN_B_AT_MAG1, Anchored(CN_HNP, MAG2, CN4, ipv4_proxy_coa=MAG2_4)))
    if nat is not None:
        net.behind_nat(MAG1, nat)
    return net


def test_over_ipv4_transport_the_coti_goes_through_the_lma_and_the_bu_in_udp():
    net = over_ipv4_network()
    installed = established(net)
    (coti,) = [a for _, n, a in net.log if n == "initiator" and isinstance(a, SendHomePath)
               and isinstance(a.message, CareofTestInit)]
    assert (coti.src, coti.dst, coti.anchor) == (MAG1, CN, MN)       # routed by the LMA to the CN's MAG
    (cot,) = [a for _, n, a in net.log if n == "responder" and isinstance(a, SendHomePath)
              and isinstance(a.message, CareofTest)]
    assert (cot.src, cot.dst, cot.anchor) == (MAG2, MAG1, CN)        # and back through the CN's tunnel
    (bu,) = [a for _, n, a in net.log if n == "initiator" and isinstance(a, Send)
             and isinstance(a.message, BindingUpdate)]
    assert (bu.ipv4_src, bu.ipv4_dst.address) == (MAG1_4, MAG2_4)    # fig. 6
    assert find_option(bu.message, IPv4CareofAddress) == IPv4CareofAddress(MAG1_4)
    assert installed.nat is False and installed.peer_ipv4.address == MAG2_4


def test_no_nat_means_no_udp_and_no_keepalive():
    net = over_ipv4_network()
    established(net)
    ba = only(net.messages(BindingAck))
    assert find_option(ba, NATDetection) is None
    assert only(net.actions("responder", RoInstalled)).nat is False
    net.run(60)
    assert net.messages(Heartbeat) == []


def test_a_nat_on_the_path_is_detected_by_the_responder_and_kept_alive_by_the_initiator():
    nat = UdpEndpoint(IPv4Address("203.0.113.7"), 40001)
    net = over_ipv4_network(nat=nat)
    installed = established(net)
    ba = only(net.messages(BindingAck))
    assert find_option(ba, NATDetection) == NATDetection(refresh_time=20)
    responder_side = only(net.actions("responder", RoInstalled))
    assert (responder_side.nat, responder_side.peer_ipv4) == (True, nat)   # tunnel to the NAT's mapping
    assert installed.nat is True
    since, _ = net.mark()
    net.run(61)
    keepalives = [a for t, n, a in net.log[since:] if n == "initiator" and isinstance(a, Send)
                  and isinstance(a.message, Heartbeat)]
    assert len(keepalives) == 3 and all(k.ipv4_dst.address == MAG2_4 for k in keepalives)


# --- the initiator's transition table -------------------------------------------------------------

def test_every_phase_change_is_a_row_of_the_transition_table():
    from pmip6ctl.protocol.ro import Attempt, Binding, Event, IllegalTransition
    from pmip6ctl.protocol.ro.initiator import _TRANSITIONS
    legal = {(phase, event) for phase, row in _TRANSITIONS.items() for event in row}
    for phase in Phase:
        for event in Event:
            attempt = Attempt(PAIR, started=T0, triggered=T0, phase=phase,
                              binding=Binding(expires=T0 + 420, refresh_at=T0 + 336))
            if (phase, event) in legal:
                attempt.move(event)
                assert attempt.phase is _TRANSITIONS[phase][event]
            else:
                with pytest.raises(IllegalTransition):
                    attempt.move(event)
    # nothing is established without the binding the peer granted
    with pytest.raises(IllegalTransition):
        Attempt(PAIR, started=T0, triggered=T0, phase=Phase.BINDING).move(Event.BINDING_ACCEPTED)


def test_established_is_derived_from_the_granted_binding():
    net = network()
    installed = established(net)
    attempt = net.initiator.attempts[PAIR]
    assert attempt.established and attempt.expires == installed.expires
    net.stop()
    assert PAIR not in net.initiator.attempts


# --- Bounded state (issue 13, item 2) -------------------------------------------------------------

def test_attempts_are_bounded_per_mn_and_in_all_and_the_oldest_in_backoff_makes_room():
    initiator = RoInitiator(initiator_policy(max_attempts_per_mn=2, max_attempts=3), random=seeded(1))
    cns = [IPv6Address(f"2001:db8:200::{n}") for n in range(1, 6)]

    def start(mn, prefix, cn, now):
        return initiator.start(mn, cn, now, mn_prefix=prefix)
    assert start(MN, FIRST_HNP, cns[0], T0) and start(MN, FIRST_HNP, cns[1], T0 + 1)
    # the MN holds its two, none of them idle: a third starts nothing
    assert start(MN, FIRST_HNP, cns[2], T0 + 2) == [RoFailed(RoPair(MN, cns[2]), FailReason.ATTEMPT_LIMIT_PER_MN,
                                                           T0 + 2 + 30, Mode.RR)]
    assert start(MN_B, SECOND_HNP, cns[0], T0 + 2)                      # another MN has its own budget
    assert start(MN_B, SECOND_HNP, cns[1], T0 + 2)[0].reason is FailReason.ATTEMPT_LIMIT    # 3 in all
    assert len(initiator.attempts) == 3 and initiator.held_by(MN, FIRST_HNP) == 2
    # unanswered, they fail into backoff; then the oldest of the MN's makes room
    for step in range(36):
        initiator.on_timer(T0 + step / 2)
    assert all(a.phase is Phase.BACKOFF for a in initiator.attempts.values())
    actions = start(MN, FIRST_HNP, cns[3], T0 + 18)
    assert actions[0] == RoFailed(RoPair(MN, cns[0]), FailReason.PUSHED_OUT, T0 + 18, Mode.RR,
                                  FailReason.ATTEMPT_LIMIT_PER_MN.text)
    assert RoPair(MN, cns[0]) not in initiator.attempts and RoPair(MN, cns[3]) in initiator.attempts
    assert initiator.held_by(MN, FIRST_HNP) == 2 and len(initiator.attempts) == 3
    # stop and the end of a backoff give the room back
    initiator.stop(RoPair(MN, cns[3]), T0 + 19)
    assert initiator.held_by(MN, FIRST_HNP) == 1
    initiator.on_timer(T0 + 17 + 30 + 1)
    assert initiator.attempts == {} and initiator.held_by(MN, FIRST_HNP) == 0
