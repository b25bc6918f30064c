"""Issue 13, item 8, at unit level (quick, in CI): mutated Mobility Header
messages (pmip6ctl/lab/fuzz.py, the generator the lab fuzz uses too) fed to
the codec and to the node cores. The codec raises nothing but WireError; a
node core raises nothing at all, and behind the guard its state (binding
cache, binding update list, RO pairs) changes only through authenticated
messages, which a fuzzer cannot make.

Seeded and reproducible: PMIP6_FUZZ_SEED picks another seed,
PMIP6_FUZZ_COUNT another number of mutants; a failure prints the seed, the
index and the message in hex (Fuzzer(seed).mutant(src, dst, index) rebuilds it)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import pytest
from protocol_helpers import (CN, CN4, CN_HNP, CNS_AT_MAG2, FIRST_HNP, FIRST_HOA, KCN, LMA, LMA4, MAG1, MAG1_4, MAG2,
                              MAG2_4, MN, MN_B, MNS_AT_MAG1, OUTSIDE_CN, QUICK_SPI, SECOND_HNP, T0, RoNetwork, cn_node,
                              initiator_policy, lma_node, mag_node, quick_keys, responder_policy, seeded)

from pmip6ctl import wire
from pmip6ctl.lab.fuzz import Fuzzer, Hints, Mutant, option_classes_without_builder
from pmip6ctl.protocol.auth import SignalingGuard, SignalingPeer
from pmip6ctl.security import PeerKey
from pmip6ctl.transport import Arrival, Send, SendHomePath, UdpEndpoint

SEED = int(os.environ.get("PMIP6_FUZZ_SEED", "20261130"))
COUNT = int(os.environ.get("PMIP6_FUZZ_COUNT", "4000"))

MAG1_KEY = PeerKey(0x4101, b"the key MAG1 shares with the LMA")
STRANGER = IPv6Address("2001:db8:bad::66")
STRANGER4 = IPv4Address("203.0.113.66")
HINTS = Hints(addresses6=(LMA, MAG1, MAG2, MN, MN_B, CN, OUTSIDE_CN, STRANGER),
              addresses4=(LMA4, MAG1_4, MAG2_4, FIRST_HOA, CN4),
              prefixes=(FIRST_HNP, SECOND_HNP, CN_HNP),
              nais=("mn@example.org", "mn-b@example.org", "anchored-0@example.org", "cn@example.org"),
              spis=(MAG1_KEY.spi, QUICK_SPI), now=T0)


def guarded_nodes(guard: bool = True) -> dict:
    """The three roles, as the lab runs them: MAG1 with two MNs, the LMA
    anchoring them, the CN agent; MAG1 and the LMA share a key."""
    lma_guard = SignalingGuard({MAG1: SignalingPeer(MAG1, MAG1_KEY, MAG1_4)}) if guard else None
    mag_guard = SignalingGuard({LMA: SignalingPeer(LMA, MAG1_KEY, LMA4)}) if guard else None
    return {"mag1": mag_node(attached=MNS_AT_MAG1, kcn=KCN, guard=mag_guard, responder_random=seeded(2),
                             initiator=None, mn_ids={"02:00:00:00:00:01": "mn@example.org"}),
            "lma": lma_node(guard=lma_guard),
            "cn": cn_node(kcn=KCN)}


def quick_peer(nodes: dict) -> None:
    """MAG1 and the CN agent know MAG2's quick-mode key (a quick-mode BU reaches the check)."""
    nodes["mag1"].responder.policy.peer_keys.update(quick_keys(MAG2))
    nodes["cn"].responder.policy.peer_keys.update(quick_keys(MAG2))


ADDRESSES = {"mag1": (MAG1, MAG1_4), "lma": (LMA, LMA4), "cn": (OUTSIDE_CN, None)}


def arrivals(rng: random.Random, target: str) -> Arrival:
    """How a message may reach the target: from a signaling peer or a
    stranger, over IPv6, IPv4/UDP 5436, or the home path (an LMA tunnel, or
    the draft's IPv4 wrapping) toward an MN."""
    own, own4 = ADDRESSES[target]
    src = rng.choice((STRANGER, MAG1 if target != "mag1" else LMA, MAG2, MN, CN))
    how = rng.choice(("ipv6", "ipv6", "udp4", "home_path", "wrapped4") if target == "mag1" else ("ipv6", "udp4"))
    if how == "udp4" and own4 is not None:
        outer = rng.choice((STRANGER4, MAG1_4, MAG2_4, LMA4))
        return Arrival(src, own, ipv4_src=UdpEndpoint(outer, rng.choice((5436, 40001))), ipv4_dst=own4)
    if how == "home_path":
        return Arrival(src, rng.choice((MN, MN_B)), home_path=True, tunnel_src=rng.choice((LMA, LMA4, STRANGER)))
    if how == "wrapped4":
        return Arrival(IPv6Address(f"::ffff:{rng.choice((CN4, STRANGER4))}"), IPv6Address(f"::ffff:{FIRST_HOA}"),
                       proxy_src=rng.choice((MAG2, STRANGER)), proxy_dst=MAG1, home_path=True)
    return Arrival(src, own)


def state(node) -> str:
    """What only an authenticated message may change."""
    parts = []
    for name in ("bindings",):
        if hasattr(node, name):
            parts.append(repr(sorted(getattr(node, name).items())))
    if hasattr(node, "bul"):
        parts.append(repr(sorted(node.bul.entries.items())))
    if hasattr(node, "initiator"):
        parts.append(repr(node.initiator.snapshot()))
    if hasattr(node, "responder"):
        parts.append(repr(sorted(node.responder.bindings.items(), key=repr)))
    return "\n".join(parts)


@dataclass
class Fed:
    decoded: int = 0
    unknown_type: int = 0
    refused: int = 0
    sends: int = 0


def feed(node, mutant: Mutant, arrival: Arrival, now: float, fed: Fed) -> list:
    """What a daemon does with the octets (daemon/base.py handle_signaling)."""
    try:
        msg = wire.decode(mutant.data, arrival.checksum_src, arrival.checksum_dst)
    except wire.UnknownMessageType as exc:
        fed.unknown_type += 1
        return node.unknown_message(exc.mh_type, arrival, now)
    except wire.WireError:
        return []
    fed.decoded += 1
    actions = node.receive(msg, arrival, now)
    fed.refused += sum(type(a).__name__ == "SignalingRefused" for a in actions)
    fed.sends += sum(isinstance(a, (Send, SendHomePath)) for a in actions)
    return actions


def fail(mutant: Mutant, target: str, arrival: Arrival, what: str):
    pytest.fail(f"{what}\n  target {target}, arrival {arrival}\n  {mutant.describe()}\n"
                f"  rebuild: Fuzzer({mutant.seed}, HINTS).mutant(IPv6Address('{mutant.src}'), "
                f"IPv6Address('{mutant.dst}'), index={mutant.index})", pytrace=False)


# --- the generator --------------------------------------------------------------------------------------

def test_the_fuzzer_builds_every_option_and_message_type_of_the_codec():
    assert option_classes_without_builder() == []
    fuzzer = Fuzzer(SEED, HINTS)
    seen = set()
    for _ in range(3000):
        m = fuzzer.mutant(MAG1, LMA)
        seen.add(m.data[2] if len(m.data) > 2 else None)
    assert set(wire.MESSAGE_TYPES) <= seen
    assert len(seen - set(wire.MESSAGE_TYPES) - {None}) > 50          # unknown MH types too


def test_a_mutant_is_rebuilt_from_its_seed_and_index():
    first = [Fuzzer(SEED, HINTS).mutant(MAG1, LMA, index=i) for i in (0, 7, 999)]
    fuzzer = Fuzzer(SEED, HINTS)
    again = [fuzzer.mutant(MAG1, LMA) for _ in range(1000)]
    assert [again[0], again[7], again[999]] == first
    assert Fuzzer(SEED + 1, HINTS).mutant(MAG1, LMA, index=7) != first[1]


def test_most_mutants_reach_the_parsers():
    """Not a vacuous fuzz: most mutants pass the length and checksum checks."""
    fuzzer, outcome = Fuzzer(SEED, HINTS), {"decoded": 0, "checksum": 0, "other": 0}
    for _ in range(2000):
        m = fuzzer.mutant(MAG1, LMA)
        try:
            wire.decode(m.data, MAG1, LMA)
            outcome["decoded"] += 1
        except wire.ChecksumError:
            outcome["checksum"] += 1
        except wire.WireError:
            outcome["other"] += 1
    assert outcome["decoded"] > 700 and outcome["checksum"] < 300, outcome


# --- the codec --------------------------------------------------------------------------------------------

def test_the_codec_raises_only_wire_errors():
    fuzzer = Fuzzer(SEED, HINTS)
    for _ in range(COUNT):
        m = fuzzer.mutant(MAG1, LMA)
        try:
            msg = wire.decode(m.data, MAG1, LMA)
        except wire.WireError:
            continue
        except Exception as exc:                                 # noqa: BLE001  (reported with the mutant)
            fail(m, "codec", None, f"decode raised {exc!r}")
        try:  # what decodes is what a node may echo or re-encode
            wire.encode(msg, MAG1, LMA)
            if msg.options and msg.options[-1].authenticates:
                wire.auth_data(msg)
        except ValueError:
            pass                                             # a field no sender of ours would set
        except Exception as exc:                                 # noqa: BLE001
            fail(m, "codec", None, f"re-encoding raised {exc!r}")


# --- the node cores -----------------------------------------------------------------------------------------

def test_node_cores_behind_the_guard_raise_nothing_and_change_nothing():
    nodes = guarded_nodes()
    quick_peer(nodes)
    before = {name: state(node) for name, node in nodes.items()}
    fuzzer, rng, fed, now = Fuzzer(SEED, HINTS), random.Random(SEED), Fed(), T0
    for _ in range(COUNT):
        target = rng.choice(list(nodes))
        arrival = arrivals(rng, target)
        m = fuzzer.mutant(arrival.checksum_src, arrival.checksum_dst)
        now += 0.01
        try:
            feed(nodes[target], m, arrival, now, fed)
        except Exception as exc:                                 # noqa: BLE001
            fail(m, target, arrival, f"raised {exc!r}")
        if state(nodes[target]) != before[target]:
            fail(m, target, arrival, "changed the node's state")
    # it reached the cores: decoded, refused by the guard, and answered (RR, Binding Errors)
    assert fed.decoded > COUNT // 3 and fed.refused > COUNT // 20 and fed.sends > COUNT // 50, fed


def test_node_cores_without_the_guard_raise_nothing():
    """auth = "none": every message reaches the cores' rules (state may
    change: nothing is authenticated), and timers fire in between."""
    nodes = guarded_nodes(guard=False)
    quick_peer(nodes)
    fuzzer, rng, fed, now = Fuzzer(SEED + 1, HINTS), random.Random(SEED + 1), Fed(), T0
    for i in range(COUNT):
        target = rng.choice(list(nodes))
        arrival = arrivals(rng, target)
        m = fuzzer.mutant(arrival.checksum_src, arrival.checksum_dst)
        now += rng.choice((0.001, 0.1, 1.0, 30.0))
        try:
            feed(nodes[target], m, arrival, now, fed)
            if i % 50 == 0:
                for node in nodes.values():
                    if (deadline := node.next_deadline()) is not None and deadline <= now:
                        node.on_timer(now)
        except Exception as exc:                                 # noqa: BLE001
            fail(m, target, arrival, f"raised {exc!r}")
    assert fed.decoded > COUNT // 3 and fed.sends > COUNT // 50, fed


# --- the punted-frame parser (what XDP hands the MAG's daemon: io/frames.py) --------------------------------

def test_punted_frames_raise_only_value_errors_and_reach_the_mag_core():
    """Mutated whole frames (Ethernet / outer IPv6, IPv4, IPv4/UDP 5436 /
    [IPv4 /] IPv6 / MH) through punted_arrival, then decoded and handed to
    MagNode as daemon/mag.py does: ValueError (a malformed frame, counted)
    and WireError are the only errors."""
    from pmip6ctl.io.frames import punted_arrival
    from pmip6ctl.io.signaling import ipv6_packet
    from pmip6ctl.lab.fuzz import OCTET_MUTATIONS, ipv4_packet

    mag = guarded_nodes()["mag1"]
    fuzzer, rng, fed = Fuzzer(SEED + 2, HINTS), random.Random(SEED + 2), Fed()
    ethernet = bytes.fromhex("020000000001020000000002")
    for _ in range(COUNT // 2):
        src, dst = rng.choice((CN, STRANGER, MAG2)), rng.choice((MN, MN_B))
        inner = ipv6_packet(src, dst, fuzzer.mutant(src, dst).data)
        how = rng.choice(("ip6ip6", "udp4", "ip4", "wrapped4"))
        if how == "ip6ip6":
            frame = ethernet + b"\x86\xdd" + ipv6_packet(LMA, MAG1, inner, next_header=41)
        elif how == "udp4":
            udp = (5436).to_bytes(2, "big") * 2 + (8 + len(inner)).to_bytes(2, "big") + b"\0\0" + inner
            frame = ethernet + b"\x08\x00" + ipv4_packet(LMA4, MAG1_4, 17, udp)
        elif how == "ip4":
            frame = ethernet + b"\x08\x00" + ipv4_packet(LMA4, MAG1_4, 41, inner)
        else:
            frame = ethernet + b"\x08\x00" + ipv4_packet(LMA4, MAG1_4, 4, ipv4_packet(CN4, FIRST_HOA, 41, inner))
        frame = bytearray(frame)
        if rng.random() < 0.5:
            OCTET_MUTATIONS[rng.choice(("bit_flips", "bytes_set", "truncated", "extended"))](rng, frame)
        try:
            mh, arrival = punted_arrival(bytes(frame))
        except ValueError:
            continue
        except Exception as exc:                                 # noqa: BLE001
            pytest.fail(f"punted_arrival raised {exc!r} for frame {bytes(frame).hex()}", pytrace=False)
        m = Mutant(SEED + 2, -1, ("frame", how), mh, arrival.checksum_src, arrival.checksum_dst)
        try:
            feed(mag, m, arrival, T0, fed)
        except Exception as exc:                                 # noqa: BLE001
            fail(m, "mag1", arrival, f"raised {exc!r} (frame {bytes(frame).hex()})")
    assert fed.decoded > COUNT // 8, fed


# --- with route optimization established ----------------------------------------------------------------------

@pytest.mark.parametrize("cn_agent", [False, True], ids=["mag1-mag2", "mag1-cn-agent"])
def test_node_cores_with_an_ro_pair_up_raise_nothing(cn_agent):
    """MAG1's pair with MAG2 (or the CN agent) is established; mutants come
    from the real peers' addresses (the pair's peer, the LMA, along the home
    path), and what the nodes answer is delivered too, timers firing: the
    initiator's and responder's rules for a pair that exists (BE, BA, BU
    refresh) see every mutant. A BE may end the pair (RFC 6275: it is not
    authenticated); nothing may raise."""

    mag1 = mag_node(initiator=initiator_policy(), attached=MNS_AT_MAG1, random=seeded(1))
    if cn_agent:
        peer, remote = cn_node(OUTSIDE_CN, responder=responder_policy(address=OUTSIDE_CN), kcn=KCN,
                               random=seeded(1001)), OUTSIDE_CN
    else:
        peer, remote = mag_node(MAG2, MAG2_4, name="mag2", responder=responder_policy(), attached=CNS_AT_MAG2,
                                kcn=KCN, random=seeded(2), responder_random=seeded(1001)), CN
    net = RoNetwork(mag1, peer, lma_node())
    net.start(MN, remote)
    net.run(1.0)
    assert net.mag1.initiator.attempts[next(iter(net.mag1.initiator.attempts))].established
    peer_address = OUTSIDE_CN if cn_agent else MAG2
    fuzzer, rng, fed = Fuzzer(SEED + 3, HINTS), random.Random(SEED + 3), Fed()
    m = arrival = None
    try:
        for i in range(COUNT // 2):
            name = rng.choice(("initiator", "responder", "lma"))
            if name == "initiator":
                arrival = rng.choice((Arrival(peer_address, MAG1), Arrival(LMA, MAG1),
                                      Arrival(remote, MN, home_path=True, tunnel_src=LMA)))
            elif name == "responder":
                arrival = rng.choice((Arrival(MAG1, peer_address), Arrival(MN, remote, home_path=not cn_agent,
                                                                            tunnel_src=LMA if not cn_agent else None)))
            else:
                arrival = Arrival(rng.choice((MAG1, peer_address)), LMA)
            m = fuzzer.mutant(arrival.checksum_src, arrival.checksum_dst)
            net.post(name, feed(net.nodes[name], m, arrival, net.now, fed))
            net.run(rng.choice((0.0, 0.01, 1.0)))
            if i % 200 == 0:
                net.run(60.0)
    except Exception as exc:                                     # noqa: BLE001
        fail(m, "ro network", arrival, f"raised {exc!r} (this mutant, or the answers it drew)")
    assert fed.decoded > COUNT // 8 and fed.sends > 0, fed
