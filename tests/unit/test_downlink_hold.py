"""The LMA's downlink hold (protocol/lma.py, protocol/handover.py's
HoldBuffer by destination): an MN deregistered by its old MAG has what
arrives for it held until a new MAG registers it, then released in order
into the tunnel to that MAG; deleted entries, age and limits drop it."""

from ipaddress import IPv4Address, IPv4Network, IPv6Address

from protocol_helpers import LMA, MAG1, MAG2, MN1, MN2, T0, carry, lma_policy, of_type, pbu

from pmip6ctl.protocol.handover import BufferPolicy, DropReason, HeldDropped, HoldBuffer, PacketsHeld, ReleaseHeld
from pmip6ctl.protocol.lma import HoldBinding, InstallBinding, LmaNode, LmaNodePolicy, RemoveBinding
from pmip6ctl.transport import Encap, Send, Tunnel

CN = IPv6Address("2001:db8:77::7")
CN4 = IPv4Address("198.51.100.77")


def packet6(src, dst, n: int = 0) -> bytes:
    payload = n.to_bytes(4, "big")
    return (bytes([0x60, 0, 0, 0]) + len(payload).to_bytes(2, "big") + bytes([59, 64])
            + IPv6Address(src).packed + IPv6Address(dst).packed + payload)


def packet4(src, dst) -> bytes:
    return bytes([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0]) + IPv4Address(src).packed + IPv4Address(dst).packed


def node(**hold) -> LmaNode:
    return LmaNode(LmaNodePolicy(binding_cache=lma_policy(min_delay_before_bce_delete=10.0),
                                 hold=BufferPolicy(**({"enabled": True} | hold)), hold_release_delay=0.05))


def send_pbu(lma: LmaNode, mag, now: float, **args) -> list:
    return lma.receive(*carry(Send(pbu(MN1, now, **args), mag, LMA)), now)


def between_mags(lma: LmaNode) -> tuple:
    """MN1 bound at MAG1, then deregistered by it: (its prefix, its IPv4 HoA)."""
    send_pbu(lma, MAG1, T0, ipv4=IPv4Address("0.0.0.0"))
    entry = lma.bindings[MN1]
    actions = send_pbu(lma, MAG1, T0 + 1, sequence=2, lifetime=0, hnp=entry.hnp)
    assert of_type(actions, HoldBinding) == [HoldBinding(MN1, entry.hnp, entry.ipv4_hoa)]
    assert not of_type(actions, RemoveBinding)
    return entry.hnp, entry.ipv4_hoa


def test_the_downlink_of_an_mn_between_mags_is_held_and_released_in_order_to_the_new_mag():
    lma = node()
    hnp, hoa = between_mags(lma)
    mn = hnp.network_address + 0x10
    packets = [packet6(CN, mn, i) for i in range(5)] + [packet4(CN4, hoa)]
    for p in packets:
        assert isinstance(lma.downlink_held(p, T0 + 1.01)[0], PacketsHeld)
    actions = send_pbu(lma, MAG2, T0 + 1.02, hnp=hnp)
    install = only_of(actions, InstallBinding)
    assert install.held and install.proxy_coa == MAG2          # the marks stay: nothing released yet
    assert not of_type(actions, ReleaseHeld)
    # a packet that arrives before the release waits behind the others
    late = packet6(CN, mn, 99)
    lma.downlink_held(late, T0 + 1.03)
    assert lma.next_deadline() <= T0 + 1.02 + 0.05
    actions = lma.on_timer(T0 + 1.08)
    release = only_of(actions, ReleaseHeld)
    assert release.packets == tuple(packets + [late])
    assert release.tunnel == Tunnel(Encap.IP6, LMA, MAG2)
    # then the prefix points at the tunnel (after the packets)
    assert actions.index(release) < actions.index(only_of(actions, InstallBinding))
    assert not only_of(actions, InstallBinding).held
    assert not lma.held and lma.hold.count == 0


def only_of(actions, cls):
    found = of_type(actions, cls)
    assert len(found) == 1, actions
    return found[0]


def test_a_packet_that_crossed_the_release_goes_at_once_to_the_bound_mag():
    lma = node()
    hnp, _ = between_mags(lma)
    send_pbu(lma, MAG2, T0 + 1.02, hnp=hnp)
    lma.on_timer(T0 + 1.1)
    actions = lma.downlink_held(packet6(CN, hnp.network_address + 1), T0 + 1.11)
    assert only_of(actions, ReleaseHeld).tunnel == Tunnel(Encap.IP6, LMA, MAG2)


def test_only_packets_for_a_held_mns_addresses_are_held():
    """An attacker who gets packets punted (or a stale punt) holds nothing
    for an address no MN between MAGs has."""
    lma = node()
    hnp, _ = between_mags(lma)
    assert lma.downlink_held(packet6(CN, "2001:db8:dead::1"), T0 + 2) == [HeldDropped(DropReason.NOT_HELD, 1)]
    assert lma.downlink_held(b"\x00" * 40, T0 + 2) == [HeldDropped(DropReason.MALFORMED, 1)]
    assert lma.hold.count == 0


def test_the_hold_is_bounded_per_mn_and_ages_out():
    lma = node(per_mn=3, max_age=0.5)
    hnp, _ = between_mags(lma)
    mn = hnp.network_address + 1
    results = [lma.downlink_held(packet6(CN, mn, i), T0 + 1.1)[0] for i in range(4)]
    assert [type(r) for r in results] == [PacketsHeld] * 3 + [HeldDropped]
    assert results[-1].reason is DropReason.FULL
    assert lma.bounded()[-1].table == "downlink_hold" and lma.bounded()[-1].held == 3
    actions = lma.on_timer(T0 + 1.7)
    assert HeldDropped(DropReason.AGED, 3, MN1) in actions
    assert lma.held                                              # still between MAGs: later packets are held


def test_the_deleted_entry_drops_what_was_held_and_removes_the_marks():
    lma = node(max_age=30.0)
    hnp, hoa = between_mags(lma)
    lma.downlink_held(packet6(CN, hnp.network_address + 1), T0 + 1.5)
    actions = lma.on_timer(T0 + 11.5)                            # MinDelayBeforeBCEDelete ran out
    assert HeldDropped(DropReason.BINDING_DELETED, 1, MN1) in actions
    assert only_of(actions, RemoveBinding) == RemoveBinding(MN1, hnp, hoa)
    assert not lma.held and lma.hold.count == 0


def test_hold_off_removes_the_binding_as_before():
    lma = LmaNode(LmaNodePolicy(binding_cache=lma_policy()))
    send_pbu(lma, MAG1, T0)
    hnp = lma.bindings[MN1].hnp
    actions = send_pbu(lma, MAG1, T0 + 1, sequence=2, lifetime=0, hnp=hnp)
    assert of_type(actions, RemoveBinding) and not of_type(actions, HoldBinding)


def test_an_expired_binding_is_not_held():
    lma = node()
    send_pbu(lma, MAG1, T0, lifetime=8)
    actions = lma.on_timer(T0 + 9)
    assert of_type(actions, RemoveBinding) and not of_type(actions, HoldBinding) and not lma.held


def test_held_packets_go_only_to_the_mn_they_were_held_for():
    """Two MNs between MAGs: each one's release carries its own packets."""
    lma = node()
    hnp1, _ = between_mags(lma)
    lma.receive(*carry(Send(pbu(MN2, T0), MAG1, LMA)), T0)
    hnp2 = lma.bindings[MN2].hnp
    lma.receive(*carry(Send(pbu(MN2, T0 + 1, sequence=2, lifetime=0, hnp=hnp2), MAG1, LMA)), T0 + 1)
    one, two = packet6(CN, hnp1.network_address + 1), packet6(CN, hnp2.network_address + 1)
    lma.downlink_held(one, T0 + 1.1)
    lma.downlink_held(two, T0 + 1.1)
    send_pbu(lma, MAG2, T0 + 1.2, hnp=hnp1)
    release = only_of(lma.on_timer(T0 + 1.3), ReleaseHeld)
    assert release.mn_id == MN1 and release.packets == (one,)
    assert lma.hold.held_for(MN2) == 1


def test_the_downlink_buffer_matches_destinations():
    hold = HoldBuffer(BufferPolicy(), "downlink", "downlink_hold", "lma.hold_total")
    mine, other = packet6(CN, "2001:db8:100::1"), packet6(CN, "2001:db8:999::1")
    hold.hold("mn", mine, T0)
    hold.hold("mn", other, T0)
    from ipaddress import IPv6Network
    actions = hold.release("mn", [IPv6Network("2001:db8:100::/64"), IPv4Network("192.0.2.1/32")], None, T0)
    assert only_of(actions, ReleaseHeld).packets == (mine,)
    assert HeldDropped(DropReason.WRONG_DESTINATION, 1, "mn") in actions


def claimed_by_mag2(lma: LmaNode) -> tuple[list, object]:
    """MN1 bound at MAG1; MAG2 claims it: the LMA asks MAG1 (BRI) and holds."""
    send_pbu(lma, MAG1, T0)
    hnp = lma.bindings[MN1].hnp
    actions = send_pbu(lma, MAG2, T0 + 1, hnp=hnp)
    hold = only_of(actions, HoldBinding)
    assert hold.keep_tunnel                                      # MAG1's tunnel stays (the MN may be there)
    bri = [a for a in actions if isinstance(a, Send)]
    assert bri and actions.index(hold) < actions.index(bri[0])
    return bri, hnp


def bra(lma: LmaNode, bri: Send, now: float, code: int = 0) -> list:
    from pmip6ctl.wire import BindingRevocation, Timestamp, find_option
    message, _ = carry(bri)
    answer = BindingRevocation.acknowledgement(message.sequence, code, [find_option(message, Timestamp)])
    return lma.receive(*carry(Send(answer, bri.dst, LMA)), now)


def test_while_the_old_mag_is_asked_the_downlink_is_held_then_goes_to_the_new_mag():
    """RFC 5846: MAG2 claims MN1 first; until MAG1's BRA, what arrives for
    MN1 is held, and after it released to MAG2."""
    lma = node()
    bri, hnp = claimed_by_mag2(lma)
    one = packet6(CN, hnp.network_address + 1)
    assert isinstance(lma.downlink_held(one, T0 + 1.01)[0], PacketsHeld)
    actions = bra(lma, bri[0], T0 + 1.02)
    assert only_of(actions, InstallBinding).held and only_of(actions, InstallBinding).proxy_coa == MAG2
    release = only_of(lma.on_timer(T0 + 1.1), ReleaseHeld)
    assert release.packets == (one,) and release.tunnel == Tunnel(Encap.IP6, LMA, MAG2)


def test_a_refused_move_releases_the_held_packets_to_the_mag_the_mn_stayed_at():
    """MAG1 says MN1 is still attached (BRA status 132): the claim was wrong
    (or forged by a MAG): the packets go to MAG1 at once."""
    lma = node()
    bri, hnp = claimed_by_mag2(lma)
    one = packet6(CN, hnp.network_address + 1)
    lma.downlink_held(one, T0 + 1.01)
    actions = bra(lma, bri[0], T0 + 1.02, code=132)      # REVOCATION_FAILED_MN_IS_ATTACHED
    release = only_of(actions, ReleaseHeld)
    assert release.packets == (one,) and release.tunnel == Tunnel(Encap.IP6, LMA, MAG1)
    assert only_of(actions, InstallBinding).proxy_coa == MAG1 and not lma.held


def test_the_old_mags_deregistration_during_the_bri_moves_the_hold_on_to_the_new_mag():
    lma = node()
    bri, hnp = claimed_by_mag2(lma)
    lma.downlink_held(packet6(CN, hnp.network_address + 1), T0 + 1.01)
    actions = send_pbu(lma, MAG1, T0 + 1.02, sequence=2, lifetime=0, hnp=hnp)
    assert not only_of(actions, HoldBinding).keep_tunnel and only_of(actions, InstallBinding).held
    release = only_of(lma.on_timer(T0 + 1.1), ReleaseHeld)
    assert release.tunnel == Tunnel(Encap.IP6, LMA, MAG2) and len(release.packets) == 1
