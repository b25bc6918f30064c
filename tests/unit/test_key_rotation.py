"""Key rotation by reload (protocol/auth.py, Node.rekey): whichever side
reloads first, signaling goes on; bindings, RO entries and replay state
stay; the replaced key stops working once the peer uses the new one, or
when the grace period ends."""

import dataclasses

from protocol_helpers import (CN, CNS_AT_MAG2, KCN, LMA, LMA4, MAG1, MAG1_4, MAG2, MAG2_4, MN, MNS_AT_MAG1, QUICK_SPI,
                              Domain, carry, initiator_policy, lma_node, mag_node, only, pbu, quick_keys,
                              responder_policy)

from pmip6ctl import wire
from pmip6ctl.protocol.auth import AuthFailure, NodeKeys, SignalingGuard, SignalingPeer, SignalingRefused
from pmip6ctl.protocol.binding_update_list import BindingState
from pmip6ctl.protocol.lma import LmaNode, LmaNodePolicy
from pmip6ctl.protocol.ro import RoPair
from pmip6ctl.security import PeerKey
from pmip6ctl.transport import Send
from protocol_helpers import lma_policy

OLD = PeerKey(0x4101, b"MAG1 and the LMA, the first key..")
NEW = PeerKey(0x4101, b"MAG1 and the LMA, after rotation.")
NEW_SPI = PeerKey(0x4201, b"MAG1 and the LMA, with a new SPI.")
GRACE = 300.0
MAG2_KEY = PeerKey(0x4102, b"MAG2 and the LMA share this one..")
MAC = "02:00:00:00:00:01"


def lma_keys(key: PeerKey) -> NodeKeys:
    return NodeKeys(signaling={MAG1: SignalingPeer(MAG1, key, MAG1_4)})


def mag_keys(key: PeerKey) -> NodeKeys:
    return NodeKeys(signaling={LMA: SignalingPeer(LMA, key, LMA4)})


def domain() -> Domain:
    lma = LmaNode(LmaNodePolicy(binding_cache=lma_policy()),
                  guard=SignalingGuard(dict(lma_keys(OLD).signaling)))
    d = Domain({"mag1": mag_node(guard=SignalingGuard(dict(mag_keys(OLD).signaling))), "lma": lma})
    register(d, "mn1@example.org")
    return d


def register(d: Domain, mn_id: str) -> None:
    d.call("mag1", "attach", mn_id, "acc1")
    d.run(0.5)
    assert d.nodes["mag1"].bul.entries[mn_id].state is BindingState.REGISTERED, f"{mn_id} did not register"


def refused(d: Domain) -> list[AuthFailure]:
    return [a.reason for a in d.actions(cls=SignalingRefused)]


def forged_with(key: PeerKey, d: Domain):
    """A PBU signed with key, as someone who stole it would send it."""
    message = key.sign(pbu("mn1@example.org", d.now, sequence=77, lifetime=0,
                           hnp=d.nodes["lma"].bindings["mn1@example.org"].hnp), MAG1, LMA)
    return d.nodes["lma"].receive(*carry(Send(message, MAG1, LMA)), d.now)


def test_the_lma_reloads_first_and_the_mag_still_registers():
    d = domain()
    before = d.nodes["lma"].bindings["mn1@example.org"]
    changes = d.nodes["lma"].rekey(lma_keys(NEW), d.now, GRACE)
    assert changes.rotated == {MAG1} and not changes.added and not changes.removed
    assert d.nodes["lma"].bindings["mn1@example.org"] == before         # nothing dropped
    register(d, "mn2@example.org")               # MAG1 signs with OLD; the PBA comes back under OLD
    d.nodes["mag1"].rekey(mag_keys(NEW), d.now, GRACE)
    register(d, "mn3@example.org")               # both on NEW
    # MAG1's PBU went out under NEW and again under OLD: the LMA took the first, and
    # having seen NEW, believes OLD no more
    assert refused(d) == [AuthFailure.BAD_AUTHENTICATOR]
    # MAG1 was seen using NEW: the LMA believes OLD no more, grace or not
    assert refusal(forged_with(OLD, d)) is AuthFailure.BAD_AUTHENTICATOR
    assert "mn1@example.org" in d.nodes["lma"].bindings


def test_the_mag_reloads_first_and_still_believes_the_lmas_answers():
    d = domain()
    d.nodes["mag1"].rekey(mag_keys(NEW_SPI), d.now, GRACE)
    assert refusal(forged_with(NEW_SPI, d)) is AuthFailure.WRONG_SPI           # the LMA knows only OLD yet
    d.nodes["lma"].rekey(lma_keys(NEW_SPI), d.now, GRACE)
    register(d, "mn2@example.org")
    assert refused(d) == [AuthFailure.WRONG_SPI]          # the copy under the old SPI, once NEW was seen
    ba = d.messages(wire.BindingAck)[-1]
    assert ba.options[-1].spi == NEW_SPI.spi


def test_mid_rotation_the_lmas_revocation_still_reaches_a_mag_that_has_not_reloaded():
    """The LMA reloaded, MAG1 not yet. Another MAG claims MN1 (an RS with
    its MAC): the BRI goes to MAG1 under both keys, MAG1 believes the old
    one's copy and answers 132, and the binding stays. (Under the new key
    alone, MAG1 would stay silent and the LMA would move the binding.)"""
    lma = LmaNode(LmaNodePolicy(binding_cache=lma_policy()), guard=SignalingGuard({
        MAG1: SignalingPeer(MAG1, OLD, MAG1_4), MAG2: SignalingPeer(MAG2, MAG2_KEY, MAG2_4)}))
    d = Domain({"mag1": mag_node(mn_ids={MAC: "mn1@example.org"}, guard=SignalingGuard(dict(mag_keys(OLD).signaling))),
                "mag2": mag_node(MAG2, MAG2_4, name="mag2", mn_ids={MAC: "mn1@example.org"},
                                 guard=SignalingGuard(dict(mag_keys(MAG2_KEY).signaling))),
                "lma": lma})
    d.call("mag1", "router_solicitation", "acc1", MAC)
    d.run(0.5)
    lma.rekey(NodeKeys(signaling={MAG1: SignalingPeer(MAG1, NEW, MAG1_4),
                                  MAG2: SignalingPeer(MAG2, MAG2_KEY, MAG2_4)}), d.now, GRACE)
    d.call("mag2", "router_solicitation", "acc1", MAC)
    d.run(10)
    assert lma.bindings["mn1@example.org"].proxy_coa == MAG1
    assert [m.code for m in d.messages(wire.BindingRevocation, origin="mag1")] == [
        wire.RevocationStatus.REVOCATION_FAILED_MN_IS_ATTACHED]


def test_the_replaced_key_expires_after_the_grace_period():
    d = domain()
    d.nodes["lma"].rekey(lma_keys(NEW), d.now, GRACE)
    d.run(GRACE + 1)                              # MAG1 never reloaded
    assert refusal(forged_with(OLD, d)) is AuthFailure.BAD_AUTHENTICATOR
    assert "mn1@example.org" in d.nodes["lma"].bindings


def test_each_peers_grace_period_is_its_own():
    """A later reload that rotates another peer's key does not stretch the
    grace of the first."""
    d = domain()
    lma = d.nodes["lma"]
    lma.rekey(lma_keys(NEW), d.now, GRACE)
    d.run(200)
    both = NodeKeys(signaling={**lma_keys(NEW).signaling, MAG2: SignalingPeer(MAG2, MAG2_KEY, MAG2_4)})
    lma.rekey(both, d.now, GRACE)                                   # MAG2 added: no rotation
    lma.rekey(NodeKeys(signaling={**both.signaling, MAG2: SignalingPeer(MAG2, NEW_SPI, MAG2_4)}), d.now, GRACE)
    d.run(GRACE - 200 + 1)                                          # MAG1's grace is over, MAG2's is not
    assert refusal(forged_with(OLD, d)) is AuthFailure.BAD_AUTHENTICATOR
    assert lma.keys_in_grace() == [MAG2]


def test_replay_protection_survives_a_reload():
    d = domain()
    (_, captured_send, _, _), = d.sent(wire.BindingUpdate)[:1]
    d.nodes["lma"].rekey(lma_keys(NEW), d.now, GRACE)          # OLD still believed ...
    again = d.nodes["lma"].receive(*carry(captured_send), d.now)
    assert refusal(again) is AuthFailure.REPLAYED                 # ... but its old PBUs are no newer


def test_a_removed_peer_is_a_stranger_and_an_added_one_is_believed():
    d = domain()
    mag2_key = PeerKey(0x4102, b"MAG2 and the LMA share this one..")
    changes = d.nodes["lma"].rekey(NodeKeys(signaling={MAG2: SignalingPeer(MAG2, mag2_key, MAG2_4)}), d.now, GRACE)
    assert changes.added == {MAG2} and changes.removed == {MAG1}
    assert refusal(forged_with(OLD, d)) is AuthFailure.UNKNOWN_PEER
    assert d.nodes["lma"].guard.is_peer(MAG2)


def test_an_unchanged_key_is_no_rotation():
    d = domain()
    same = dataclasses.replace(OLD)
    assert not d.nodes["lma"].rekey(lma_keys(same), d.now, GRACE)
    assert d.nodes["lma"].guard.retire_at is None


def refusal(actions) -> AuthFailure:
    return only(a for a in actions if isinstance(a, SignalingRefused)).reason


# --- quick mode between MAGs ------------------------------------------------------------------------

QUICK_NEW = b"MAG1 and MAG2, the rotated quick key"


def quick_domain() -> Domain:
    return Domain({"mag1": mag_node(attached=MNS_AT_MAG1, initiator=initiator_policy(
                       mode="quick", peer_keys=quick_keys(MAG2))),
                   "mag2": mag_node(MAG2, MAG2_4, name="mag2", attached=CNS_AT_MAG2, kcn=KCN,
                                    responder=responder_policy(peer_keys=quick_keys(MAG1))),
                   "lma": lma_node()})


def established(d: Domain) -> bool:
    attempt = d.nodes["mag1"].initiator.attempts.get(RoPair(MN, CN))
    return attempt is not None and attempt.established


def test_quick_mode_goes_on_while_only_the_responder_has_reloaded():
    d = quick_domain()
    d.nodes["mag2"].rekey(NodeKeys(quick_mode=quick_keys(MAG1, key=QUICK_NEW)), d.now, GRACE)
    d.call("mag1", "flow_seen", MN, CN)
    d.run(1)
    assert established(d)                        # BU under the old key, BA answered under it too
    ba = d.messages(wire.BindingAck, origin="mag2")[-1]
    assert PeerKey(QUICK_SPI, b"quick-mode key shared by MAG1 and MAG2").verify(ba, MAG2, MAG1)


def test_quick_mode_refuses_the_old_key_after_the_grace_period():
    d = quick_domain()
    d.nodes["mag2"].rekey(NodeKeys(quick_mode=quick_keys(MAG1, key=QUICK_NEW)), d.now, GRACE)
    d.run(GRACE + 1)
    d.call("mag1", "flow_seen", MN, CN)
    d.run(1)
    assert not established(d)
    assert d.nodes["mag2"].responder.bindings == {}
