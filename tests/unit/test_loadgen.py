"""The load generator's fast paths (pmip6ctl/lab/loadgen.py) against the
real cores: its PBUs are, octet for octet, what a MAG's binding update list
sends once its guard has signed it, and its PBA reader finds in what an
LMA's binding cache answers what a full decode finds."""

from ipaddress import IPv6Address, IPv6Network

import pytest

from pmip6ctl import wire
from pmip6ctl.lab import loadgen
from pmip6ctl.lab.loadgen import MagIdentity, PbuBuilder, read_pba
from pmip6ctl.protocol.auth import SignalingGuard, SignalingPeer
from pmip6ctl.protocol.binding_cache import BindingCache, LmaPolicy
from pmip6ctl.protocol.binding_update_list import BindingUpdateList, MagPolicy
from pmip6ctl.protocol.pools import PrefixPool
from pmip6ctl.security import PeerKey
from pmip6ctl.transport import Arrival, Send

MAG, LMA = IPv6Address("2001:db8:ffff:1::2"), IPv6Address("2001:db8:ffff:3::2")
KEY = PeerKey(4242, bytes(range(32)))
IDENTITY = MagIdentity("mag1", "pmip-mag1", MAG, LMA, KEY.spi, KEY.key)
NOW = 1_700_000_000.0


def mag_side(lifetime=3600):
    """A real binding update list and the guard that signs what it sends."""
    bul = BindingUpdateList(MagPolicy(proxy_coa=MAG, lma_address=LMA, lifetime=lifetime, request_ipv4=False))
    guard = SignalingGuard({LMA: SignalingPeer(LMA, KEY)}, stamper=bul.stamper)
    return bul, guard


def sent(actions, guard) -> tuple[bytes, wire.BindingUpdate]:
    send = next(a for a in actions if isinstance(a, Send))
    sealed = guard.seal(send, NOW)[0]
    return wire.encode(sealed.message, sealed.src, sealed.dst), sealed.message


@pytest.mark.parametrize("nai", ["scale-0@lab", "scale-12345@lab", "scale-99999999@lab", "x@lab"])
def test_a_first_registration_is_what_a_mag_sends(nai):
    bul, guard = mag_side()
    expected, pbu = sent(bul.attach(nai, "acc1", NOW), guard)
    stamp = wire.find_option(pbu, wire.Timestamp).timestamp
    built = PbuBuilder(IDENTITY).build(pbu.sequence, nai.encode(), lifetime=3600, timestamp=stamp,
                                       handoff=wire.HandoffIndicatorValue.NEW_INTERFACE)
    assert built == expected


def test_a_refresh_a_handover_and_a_deregistration_are_what_a_mag_sends():
    bul, guard = mag_side(lifetime=600)
    nai = "scale-7@lab"
    _, pbu = sent(bul.attach(nai, "acc1", NOW), guard)
    hnp = IPv6Network("2001:db8:100:7::/64")
    stamp = wire.find_option(pbu, wire.Timestamp)
    pba = wire.BindingAck(0, wire.BAFlags.P, pbu.sequence, 150, [wire.MobileNodeIdentifier.from_nai(nai),
                          wire.HomeNetworkPrefix(64, hnp.network_address), stamp])
    bul.receive(pba, Arrival(LMA, MAG), NOW + 0.01)
    builder = PbuBuilder(IDENTITY)
    refresh, pbu = sent(bul.on_timer(NOW + 481), guard)           # at 80% of the lifetime
    assert pbu.lifetime == 150
    assert builder.build(pbu.sequence, nai.encode(), lifetime=600, hnp=hnp.network_address.packed, hnp_length=64,
                         timestamp=wire.find_option(pbu, wire.Timestamp).timestamp,
                         handoff=wire.HandoffIndicatorValue.HANDOFF_STATE_NOT_CHANGED) == refresh
    dereg, pbu = sent(bul.detach(nai, NOW + 482), guard)
    assert pbu.lifetime == 0
    assert builder.build(pbu.sequence, nai.encode(), lifetime=0, hnp=hnp.network_address.packed, hnp_length=64,
                         timestamp=wire.find_option(pbu, wire.Timestamp).timestamp,
                         handoff=wire.HandoffIndicatorValue.HANDOFF_STATE_NOT_CHANGED) == dereg
    bul2, guard2 = mag_side(lifetime=600)
    moved, pbu = sent(bul2.attach(nai, "acc1", NOW, handoff=True), guard2)
    assert builder.build(pbu.sequence, nai.encode(), lifetime=600,
                         timestamp=wire.find_option(pbu, wire.Timestamp).timestamp,
                         handoff=wire.HandoffIndicatorValue.HANDOFF_BETWEEN_MAGS) == moved


def lma_answer(pbu_octets: bytes):
    """What a real binding cache answers, signed as the LMA's guard signs it."""
    cache = BindingCache(LmaPolicy(address=LMA, hnp_pool=PrefixPool(IPv6Network("2001:db8:100::/48"))))
    pbu = wire.decode(pbu_octets, MAG, LMA)
    guard = SignalingGuard({MAG: SignalingPeer(MAG, KEY)})
    assert guard.check(pbu, Arrival(MAG, LMA), pbu_time(pbu), request=True) is None    # the LMA believes it
    send = next(a for a in cache.receive(pbu, Arrival(MAG, LMA), pbu_time(pbu)) if isinstance(a, Send))
    sealed = guard.seal(send, pbu_time(pbu))[0]
    return wire.encode(sealed.message, sealed.src, sealed.dst), sealed.message


def pbu_time(pbu) -> float:
    return wire.find_option(pbu, wire.Timestamp).to_unix()


def test_the_pba_reader_finds_what_a_full_decode_finds():
    stamp = round(NOW * 65536)
    octets, pba = lma_answer(PbuBuilder(IDENTITY).build(4711, b"scale-3@lab", lifetime=3600, timestamp=stamp,
                                                        handoff=1))
    read = read_pba(octets, KEY.key, LMA.packed + MAG.packed)
    hnp = wire.find_option(pba, wire.HomeNetworkPrefix)
    assert (read.status, read.sequence, read.lifetime, read.timestamp) == (0, 4711, 3600, stamp)
    assert (IPv6Address(read.hnp), read.hnp_length) == (hnp.prefix, 64) and hnp.prefix != IPv6Address(0)
    assert read.authentic


def test_a_refused_pbu_is_read_with_its_status():
    stamp = round(NOW * 65536)
    octets, _ = lma_answer(PbuBuilder(IDENTITY).build(9, b"scale-3@lab", lifetime=3600, timestamp=stamp, handoff=1,
                                                      hnp=IPv6Address("2001:db8:999::").packed, hnp_length=64))
    read = read_pba(octets, KEY.key, LMA.packed + MAG.packed)
    assert read.status == wire.Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX and read.authentic


def test_a_pba_that_is_not_the_lmas_is_not_authentic():
    stamp = round(NOW * 65536)
    octets, _ = lma_answer(PbuBuilder(IDENTITY).build(9, b"scale-3@lab", lifetime=3600, timestamp=stamp, handoff=1))
    tampered = bytearray(octets)
    tampered[7] ^= 0x01                          # a flag bit, inside the authenticated part
    assert not read_pba(bytes(tampered), KEY.key, LMA.packed + MAG.packed).authentic
    assert not read_pba(octets, bytes(32), LMA.packed + MAG.packed).authentic        # another key
    assert not read_pba(octets, KEY.key, MAG.packed + LMA.packed).authentic          # other addresses
    with pytest.raises(ValueError):
        read_pba(octets[:-8], KEY.key, LMA.packed + MAG.packed)


def test_mn_identities_and_pools():
    assert loadgen.mn_id(17) == "scale-17@lab"
    assert loadgen.scale_pool(5_000) == "2001:db8:100::/48"
    assert loadgen.scale_pool(100_000) == "2001:db8:100::/44"
    assert IPv6Network(loadgen.scale_pool(100_000)).num_addresses >> 64 >= 125_000
    assert IPv6Network(loadgen.scale_pool(1_000_000)).prefixlen == 40


def test_an_ro_binding_update_is_taken_by_a_real_responder():
    from pmip6ctl.protocol.ro.actions import RoInstalled, RoRemoved
    from pmip6ctl.protocol.ro.responder import ResponderPolicy, RoResponder

    peer, mn, cn = IPv6Address("2001:db8:ffff:4::2"), IPv6Address("2001:db8:100:8000::1"), IPv6Address("2001:db8:100::5")
    quick = PeerKey(7777, bytes(range(1, 33)))
    responder = RoResponder(ResponderPolicy(address=peer, serves=lambda a: a == cn, peer_keys={MAG: quick}))
    spec = loadgen.RoSpec(0, mn, cn, peer)
    stamp = round(NOW * 65536)
    bu = loadgen.ro_binding_update(spec, 10, stamp, 420, quick, MAG)
    actions = responder.receive(wire.decode(wire.encode(bu, MAG, peer), MAG, peer), Arrival(MAG, peer), NOW)
    installed = [a for a in actions if isinstance(a, RoInstalled)]
    ba = next(a.message for a in actions if isinstance(a, Send))
    assert [(a.pair.local, a.pair.remote) for a in installed] == [(cn, mn)]
    assert ba.status == 0 and ba.sequence == 10 and wire.find_option(ba, wire.Timestamp).timestamp == stamp
    assert quick.verify(ba, peer, MAG)
    bu = loadgen.ro_binding_update(spec, 11, stamp + 1, 0, quick, MAG)
    actions = responder.receive(wire.decode(wire.encode(bu, MAG, peer), MAG, peer), Arrival(MAG, peer), NOW + 1)
    assert any(isinstance(a, RoRemoved) for a in actions)
    forged = loadgen.ro_binding_update(spec, 12, stamp + 2, 420, PeerKey(7777, bytes(32)), MAG)
    actions = responder.receive(wire.decode(wire.encode(forged, MAG, peer), MAG, peer), Arrival(MAG, peer), NOW + 2)
    assert not any(isinstance(a, (RoInstalled, Send)) for a in actions)
