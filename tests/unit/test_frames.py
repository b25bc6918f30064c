"""The draft's IPv4 layerings, byte for byte against scapy: fig. 2/3 (IPv4 /
IPv6 / MH, as MAG1 sends the proxy HoTI and CoTI of an IPv4 MN), fig. 6/7
(IPv4 / UDP 5436 / IPv6 / MH between IPv4 proxy CoAs), and their recovery
from the frames the data plane punts."""

from ipaddress import IPv4Address, IPv6Address

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from pmip6ctl import wire
from pmip6ctl.io.frames import inner_ipv6, ipv4_header, parse_punted_frame

MAG1, MAG2, LMA = IPv6Address("2001:db8:ffff:1::2"), IPv6Address("2001:db8:ffff:2::2"), IPv6Address("2001:db8:ffff:3::2")
MN4, CN4, MAG1_4 = IPv4Address("198.51.100.1"), IPv4Address("198.51.100.2"), IPv4Address("192.0.2.2")


def hoti() -> bytes:
    msg = wire.HomeTestInit(home_init_cookie=bytes(range(8)),
                            options=[wire.IPv4HomeAddress(MN4), wire.CNIPv4Address(CN4)])
    return wire.encode(msg, MAG1, MAG2)


def test_fig_2_hoti_layering_matches_scapy():
    mh = hoti()
    packet = inner_ipv6(MAG1, MAG2, mh)
    ours = ipv4_header(MN4, CN4, 41, len(packet)) + packet

    theirs = IP(src=str(MN4), dst=str(CN4), proto=41, ttl=64, id=0, flags="DF") / \
        IPv6(src=str(MAG1), dst=str(MAG2), nh=135, hlim=64) / Raw(mh)

    assert ours == bytes(theirs)
    assert IP(ours).chksum == IP(bytes(theirs)).chksum       # a valid IPv4 header checksum


def test_fig_6_bu_in_udp_matches_scapy():
    bu = wire.BindingUpdate(sequence=7, flags=wire.BUFlags.A | wire.BUFlags.P, lifetime=105,
                            options=[wire.HomeNetworkPrefix(128, IPv6Address("2001:db8:100::10")),
                                     wire.CNHomeNetworkPrefix(128, IPv6Address("2001:db8:100:1::20")),
                                     wire.IPv4CareofAddress(MAG1_4), wire.Timestamp.from_unix(1.7e9)])
    mh = wire.encode(bu, MAG1, MAG2)
    payload = inner_ipv6(MAG1, MAG2, mh)          # what the UDP signaling socket sends

    assert payload == bytes(IPv6(src=str(MAG1), dst=str(MAG2), nh=135, hlim=64) / Raw(mh))


def test_mag2_recovers_a_punted_fig_2_hoti_and_its_options():
    mh = hoti()
    frame = bytes(Ether() / IPv6(src=str(LMA), dst=str(MAG2), nh=4) /
                  IP(src=str(MN4), dst=str(CN4), proto=41) / IPv6(src=str(MAG1), dst=str(MAG2), nh=135) / Raw(mh))

    punted = parse_punted_frame(frame)

    assert (punted.outer_src, punted.ipv4_wrapper, punted.src, punted.dst) == (LMA, (MN4, CN4), MAG1, MAG2)
    msg = wire.decode(punted.mh, punted.src, punted.dst)                 # the checksum holds
    assert wire.find_option(msg, wire.IPv4HomeAddress).address == MN4
    assert wire.find_option(msg, wire.CNIPv4Address).address == CN4


def test_a_punted_frame_from_a_udp_tunnel_names_the_nat_port():
    mh = hoti()
    frame = bytes(Ether() / IP(src="192.0.2.10", dst="192.0.2.2") / UDP(sport=40000, dport=5436) /
                  IPv6(src=str(MAG2), dst=str(MAG1), nh=135) / Raw(mh))
    punted = parse_punted_frame(frame)
    assert (str(punted.outer_src), punted.outer_port, punted.ipv4_wrapper) == ("192.0.2.10", 40000, None)
