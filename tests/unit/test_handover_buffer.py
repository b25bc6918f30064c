"""The new MAG's handover buffer (protocol/handover.py, MagNode.uplink_held):
what an arriving MN sends while its PBU is in flight waits for the PBA and
then leaves in order, into its tunnel; only packets whose source the PBA
granted leave; a failed or abandoned registration, a full buffer, an old
packet and a stranger's packet are dropped, each under its reason."""

from ipaddress import IPv4Address, IPv6Address

from protocol_helpers import FIRST_HNP, FIRST_HOA, LMA, MAG1, SECOND_HNP, Domain, lma_policy, mag_node, only

from pmip6ctl.protocol.binding_update_list import BindingState
from pmip6ctl.protocol.handover import (BufferPolicy, DropReason, HeldDropped, PacketsHeld, ReleaseHeld,
                                        UplinkBuffer, source_of)
from pmip6ctl.protocol.lma import LmaNode, LmaNodePolicy
from pmip6ctl.protocol.mag import InstallMobileNode, MnIdentity, MobileNodeAttaching
from pmip6ctl.transport import Encap, Send, Tunnel
from pmip6ctl.wire import BindingAck, BindingUpdate

MAC1, MAC2, MAC3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
NAI1, NAI2 = "mn1@example.org", "mn2@example.org"
CN = IPv6Address("2001:db8:cc::2")
MINE = FIRST_HNP.network_address + 0x10          # the first prefix the LMA's pool grants


def ipv6(src, dst=CN, next_header: int = 17, tag: int = 0) -> bytes:
    payload = bytes([0, 1, 0, 2, 0, 12, 0, 0]) + tag.to_bytes(4, "big")
    return (bytes([0x60, 0, 0, 0]) + len(payload).to_bytes(2, "big") + bytes([next_header, 64])
            + IPv6Address(src).packed + IPv6Address(dst).packed + payload)


def ipv4(src, dst="203.0.113.2") -> bytes:
    return bytes([0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0]) + IPv4Address(src).packed + \
        IPv4Address(dst).packed + bytes(8)


def domain(buffer: BufferPolicy | None = None) -> Domain:
    mag = mag_node(mn_ids={MAC1: MnIdentity(NAI1, ("acc1",)), MAC2: MnIdentity(NAI2, ("acc1",))},
                   node_policy={"buffer": buffer or BufferPolicy()})
    return Domain({"mag1": mag, "lma": LmaNode(LmaNodePolicy(binding_cache=lma_policy()))})


def held(d: Domain, mac: str, packet: bytes, link: str = "acc1") -> list:
    return d.call("mag1", "uplink_held", link, mac, packet)


def dropped(actions) -> dict:
    out = {}
    for a in actions:
        if isinstance(a, HeldDropped):
            out[a.reason] = out.get(a.reason, 0) + a.count
    return out


def test_what_an_arriving_mn_sends_during_its_pbu_leaves_in_order_into_its_tunnel_after_the_pba():
    d = domain()
    first = held(d, MAC1, ipv6(MINE, tag=0))
    assert first[0] == MobileNodeAttaching(NAI1, "acc1", MAC1, by="traffic")     # its first packet attaches it
    assert isinstance(only(a for a in first if isinstance(a, Send)).message, BindingUpdate)
    assert first[-1] == PacketsHeld(NAI1)
    for tag in (1, 2, 3):
        assert held(d, MAC1, ipv6(MINE, tag=tag)) == [PacketsHeld(NAI1)]            # no second PBU
    assert d.actions("mag1", ReleaseHeld) == [] and d.nodes["mag1"].buffer.held_for(NAI1) == 4
    since = len(d.log)
    d.run(0.1)                                                                      # PBU, PBA
    entry = d.nodes["mag1"].bul.entries[NAI1]
    assert entry.state is BindingState.REGISTERED and entry.hnp == FIRST_HNP
    release = only(d.actions("mag1", ReleaseHeld, since))
    assert release == ReleaseHeld(NAI1, tuple(ipv6(MINE, tag=t) for t in range(4)), Tunnel(Encap.IP6, MAG1, LMA))
    mag_actions = [a for _, n, a in d.log[since:] if n == "mag1"]
    assert mag_actions.index(release) > mag_actions.index(only(d.actions("mag1", InstallMobileNode, since)))
    assert d.nodes["mag1"].buffer.count == 0


def test_only_packets_whose_source_the_pba_granted_are_released():
    """Anti-spoofing as in XDP: an MN's held packets with another MN's
    prefix, or any other source, never leave through its tunnel."""
    d = domain()
    held(d, MAC1, ipv6(MINE))
    held(d, MAC1, ipv6(SECOND_HNP.network_address + 1))       # someone else's prefix
    held(d, MAC1, ipv4("198.51.100.99"))                      # not its IPv4 home address
    held(d, MAC1, ipv4(FIRST_HOA))                            # its own IPv4 home address
    since = len(d.log)
    d.run(0.1)
    entry = d.nodes["mag1"].bul.entries[NAI1]
    assert entry.ipv4_hoa == FIRST_HOA
    assert only(d.actions("mag1", ReleaseHeld, since)).packets == (ipv6(MINE), ipv4(FIRST_HOA))
    assert dropped(d.actions("mag1", HeldDropped, since)) == {DropReason.WRONG_SOURCE: 2}


def test_a_packet_punted_as_the_pba_came_leaves_at_once_if_it_is_the_mns():
    d = domain()
    held(d, MAC1, ipv6(MINE))
    d.run(0.1)
    late = held(d, MAC1, ipv6(MINE, tag=9))
    assert late[0] == PacketsHeld(NAI1) and late[1].packets == (ipv6(MINE, tag=9),)
    assert dropped(held(d, MAC1, ipv6(SECOND_HNP.network_address + 1))) == {DropReason.WRONG_SOURCE: 1}


def test_a_stranger_another_link_and_mobility_signaling_are_never_held():
    d = domain()
    assert dropped(held(d, MAC3, ipv6(MINE))) == {DropReason.NOT_ATTACHING: 1}      # no MN-ID: no attach either
    assert dropped(held(d, MAC1, ipv6(MINE), link="acc2")) == {DropReason.NOT_ATTACHING: 1}
    assert d.nodes["mag1"].bul.entries == {} and d.nodes["mag1"].buffer.count == 0
    held(d, MAC1, ipv6(MINE))
    assert dropped(held(d, MAC1, ipv6(MINE, next_header=135))) == {DropReason.MN_SIGNALING: 1}
    assert dropped(held(d, MAC1, b"\x00" * 40)) == {DropReason.MALFORMED: 1}
    assert d.nodes["mag1"].buffer.count == 1


def test_the_buffer_is_bounded_per_mn_and_in_all_and_reports_itself():
    d = domain(BufferPolicy(per_mn=2, total=3))
    assert [type(a) for a in held(d, MAC1, ipv6(MINE))][-1] is PacketsHeld
    held(d, MAC1, ipv6(MINE))
    assert dropped(held(d, MAC1, ipv6(MINE))) == {DropReason.FULL: 1}              # its share
    held(d, MAC2, ipv6(MINE))
    assert dropped(held(d, MAC2, ipv6(MINE))) == {DropReason.FULL: 1}              # the whole buffer
    report = next(b for b in d.nodes["mag1"].bounded() if b.table == "handover_buffer")
    assert (report.held, report.capacity, report.setting, dict(report.refused)) == (3, 3, "mag.buffer_total",
                                                                                    {"full": 2})


def test_packets_wait_no_longer_than_the_age_limit():
    d = domain(BufferPolicy(max_age=0.5))
    d.drop = lambda origin, action: isinstance(action.message, BindingAck)          # the PBA never comes
    held(d, MAC1, ipv6(MINE))
    d.run(0.3)
    held(d, MAC1, ipv6(MINE, tag=1))
    since = len(d.log)
    d.run(0.25)                                                                     # the first is 0.55 s old
    assert dropped(d.actions("mag1", HeldDropped, since)) == {DropReason.AGED: 1}
    d.run(1.0)
    assert d.nodes["mag1"].buffer.count == 0 and d.nodes["mag1"].buffer.next_deadline() is None


def test_an_mn_that_leaves_before_its_pba_takes_its_held_packets_along():
    d = domain()
    d.hold = lambda origin, action: isinstance(action.message, BindingAck)          # the PBA is in flight
    held(d, MAC1, ipv6(MINE))
    held(d, MAC1, ipv6(MINE, tag=1))
    assert dropped(d.call("mag1", "link_down", "acc1")) == {DropReason.REGISTRATION_FAILED: 2}
    assert d.nodes["mag1"].buffer.count == 0


def test_with_buffering_off_the_mn_still_attaches_by_its_traffic_and_nothing_is_held():
    d = domain(BufferPolicy(enabled=False))
    actions = held(d, MAC1, ipv6(MINE))
    assert actions[0] == MobileNodeAttaching(NAI1, "acc1", MAC1, by="traffic")
    assert dropped(actions) == {DropReason.DISABLED: 1} and d.nodes["mag1"].buffer.count == 0


def test_the_buffer_alone_releases_in_order_and_forgets_what_it_released():
    buffer = UplinkBuffer(BufferPolicy(per_mn=8))
    packets = [ipv6(MINE, tag=t) for t in range(5)]
    for p in packets:
        buffer.hold(NAI1, p, 0.0)
    tunnel = Tunnel(Encap.IP6, MAG1, LMA)
    assert buffer.release(NAI1, [FIRST_HNP], tunnel, 0.1) == [ReleaseHeld(NAI1, tuple(packets), tunnel)]
    assert buffer.release(NAI1, [FIRST_HNP], tunnel, 0.2) == [] and buffer.count == 0
    assert source_of(ipv4(FIRST_HOA)) == FIRST_HOA and source_of(b"\x10") is None
