"""Route optimization for IPv4 (issue 6; the draft's fig. 2, 3, 6, 7 and
§2.3.2): IPv4 MN ⇄ IPv4 CN over IPv6 transport, IPv6 MNs over IPv4-only
transport between the MAGs, and MAG2 behind a real nftables NAT."""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

from pmip6ctl.lab import topology as t

from ..tshark_check import TSHARK, dissect
from .conftest import MN3_ID, Capture, binding, counters, delta, established, iperf, ping, wait_for
from .test_ro import clean_ro, lma_forwarded, packets_with  # noqa: F401  (clean_ro is a fixture)

pytestmark = pytest.mark.root


def start(lab, node: str, mn: str, cn: str) -> dict:
    lab.client(node).call("ro_start", mn=mn, cn=cn)
    return wait_for(lambda: established(lab, node, mn, cn), timeout=10, what=f"RO {mn} ⇄ {cn}")


def lossless_pings_during(lab, src: str, dst: str, action, count: int = 150, bind: str | None = None
                          ) -> tuple[str, str]:
    result = {}
    source = ["-I", bind] if bind else []

    def pinger():
        out = lab.net.sh_ok(src, "ping", *source, "-c", str(count), "-i", "0.01", "-W", "2", dst)
        result["ping"] = re.search(r"(\d+) packets transmitted, (\d+) received", out).groups()

    thread = threading.Thread(target=pinger)
    thread.start()
    time.sleep(0.3)
    action()
    thread.join(timeout=30)
    return result["ping"]


def ipv4_packets_with(pcap, *addresses: str) -> int:
    wanted = set(addresses)
    return sum(1 for p in rdpcap(str(pcap)) if p.haslayer(IP) and {p[IP].src, p[IP].dst} & wanted)


def test_ipv4_mn_and_cn_are_optimized_over_ipv6_transport(lab, clean_ro, tmp_path):
    mn1, mn2 = lab.mns["mn1"]["ipv4"], lab.mns["mn2"]["ipv4"]
    with Capture(lab, "inet", tmp_path / "setup.pcap", "ip6 or ip", interface="mag1") as setup:
        sent, received = lossless_pings_during(lab, "mn1", mn2, lambda: start(lab, "mag1", mn1, mn2))
        setup.stop()
    assert sent == received
    row = established(lab, "mag1", mn1, mn2)
    assert row["transport"] == "ip6" and established(lab, "mag2", mn2, mn1)["roles"] == ["responder"]

    # fig. 2: into MAG1's LMA tunnel, IPv6 (MAG1 → LMA) / IPv4 (MN → CN) / IPv6 (pCoA → pCoA) / HoTI
    hoti = [p for p in rdpcap(str(setup.path)) if p.haslayer(IP) and p[IP].proto == 41
            and p[IP].payload.haslayer(IPv6) and bytes(p[IP].payload)[40 + 2:40 + 3] == b"\x01"]
    assert hoti, "no fig. 2 HoTI seen on MAG1's link"
    outer, v4, inner = hoti[0][IPv6], hoti[0][IP], hoti[0][IP].payload
    assert (outer.src, outer.dst, outer.nh) == (t.address6("mag1"), t.LMA6, 4)
    assert (v4.src, v4.dst) == (mn1, mn2)
    assert (inner.src, inner.dst, inner.nh) == (t.address6("mag1"), t.address6("mag2"), 135)
    # fig. 3: the CoTI in its own IPv4 header from MAG1's IPv4 proxy CoA, routed to the CN's address
    coti = [p for p in rdpcap(str(setup.path)) if p.haslayer(IP) and p[IP].src == t.address4("mag1")
            and p[IP].proto == 41]
    assert coti and coti[0][IP].dst == mn2

    lma0, mag1_0 = lma_forwarded(lab), counters(lab, "mag1")
    with Capture(lab, "inet", tmp_path / "lma.pcap", "ip", interface="lma") as capture:
        result = iperf(lab, "mn1", "mn2", mn2, seconds=2)
        capture.stop()
    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert lma_forwarded(lab) == lma0
    assert packets_with(capture.path, mn1, mn2) == 0 and ipv4_packets_with(capture.path, mn1, mn2) == 0
    assert delta(counters(lab, "mag1"), mag1_0, "mag_access", "fwd_encap_ro") > 500


@pytest.fixture
def mn3(lab):
    """mn1's second interface at MAG3, which reaches everything over IPv4 only."""
    lab.link_up("mn1", "eth1")
    entry = wait_for(lambda: binding(lab, "lma", MN3_ID), what="MN3's binding")
    address = lab.wait_mn_address("mn1", ifname="eth1")
    lab.net.ip("mn1", f"rule add from {entry['hnp']} table 100",
               "route add ::/0 via fe80::1 dev eth1 table 100", family=6)
    yield address
    lab.net.ip("mn1", f"rule del from {entry['hnp']} table 100", "route flush table 100", family=6)
    if binding(lab, "mag3", MN3_ID):
        lab.client("mag3").call("detach", mn_id=MN3_ID)
    lab.link_down("mn1", "eth1")


def test_ipv6_mns_are_optimized_over_ipv4_only_transport(lab, clean_ro, mn3, tmp_path):
    mn2 = lab.mns["mn2"]["ipv6"]
    with Capture(lab, "inet", tmp_path / "setup.pcap", "udp port 5436", interface="mag3") as setup:
        sent, received = lossless_pings_during(lab, "mn1", mn2, lambda: start(lab, "mag3", mn3, mn2), bind=mn3)
        setup.stop()
    assert sent == received
    row = established(lab, "mag3", mn3, mn2)
    assert row["transport"] == "ip4"
    assert established(lab, "mag2", mn2, mn3)["transport"] == "ip4"
    # fig. 6/7: BU and BA as IPv4 (proxy CoA ⇄ proxy CoA) / UDP 5436 / IPv6 / MH
    bus = [p for p in rdpcap(str(setup.path)) if p.haslayer(UDP) and p[UDP].payload.haslayer(IPv6)
           and p[IP].src == t.address4("mag3") and p[IP].dst == t.address4("mag2")]
    assert bus and bus[0][UDP].payload.nh == 135

    lma0 = lma_forwarded(lab)
    result = iperf(lab, "mn1", "mn2", mn2, seconds=2, bind=mn3)
    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert lma_forwarded(lab) == lma0
    assert counters(lab, "mag3")[("mag_access", "fwd_encap_ro")] > 500


@pytest.fixture
def nat(lab):
    lab.set_nat(True)
    lab.mns["mn2"].update(ipv6=lab.wait_mn_address("mn2"))
    wait_for(lambda: (b := binding(lab, "lma", "mn2@lab.example")) and "nat" in b["transport"] and b,
             what="MN2 registered through the NAT")
    try:
        yield
    finally:
        subprocess.run(["nsenter", f"--net=/run/netns/{lab.ns('nat')}", "nft", "delete", "table", "ip",
                        "pmip6test"], capture_output=True)
        lab.set_nat(False)
        wait_for(lambda: (b := binding(lab, "lma", "mn2@lab.example")) and b["transport"] == "ipv6",
                 what="MN2 back on IPv6 transport")
        lab.configure_mn_ipv4("mn2", lab.mns["mn2"]["ipv4"])


def mapping_ports(lab, toward: str) -> set[str]:
    out = subprocess.run(["nsenter", f"--net=/run/netns/{lab.ns('nat')}", "conntrack", "-L", "-p", "udp",
                          "--dst", toward], capture_output=True, text=True).stdout
    return set(re.findall(r"dst=192\.0\.2\.10 sport=\d+ dport=(\d+)", out))


def test_through_the_nat_udp_encapsulation_keepalives_and_fallback(lab, clean_ro, nat, tmp_path):
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    lab.client("mag2").call("ro_settings", lifetime=30)
    # MAG2, behind the NAT, starts: MAG1 sees the NAT's address, not the IPv4 CoA in the BU
    sent, received = lossless_pings_during(lab, "mn2", mn1, lambda: start(lab, "mag2", mn2, mn1))
    assert sent == received
    row = established(lab, "mag2", mn2, mn1)
    assert row["transport"] == "udp4"
    assert established(lab, "mag1", mn1, mn2)["transport"] == "udp4"
    assert any("NAT on the path" in what for _, what in row["timeline"])

    with Capture(lab, "inet", tmp_path / "nat.pcap", "udp port 5436", interface="nat") as through_nat, \
            Capture(lab, "inet", tmp_path / "lma.pcap", "ip6 or ip", interface="lma") as at_lma:
        result = iperf(lab, "mn2", "mn1", mn1, seconds=2)
        through_nat.stop()
        at_lma.stop()
    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert len(rdpcap(str(through_nat.path))) > 500                 # all of it in UDP through the NAT
    assert packets_with(at_lma.path, mn1, mn2) == 0                  # none of it by the LMA

    # idle past the NAT's UDP timeout: the keepalives keep both mappings
    ports = mapping_ports(lab, t.address4("mag1"))
    time.sleep(t.NAT_UDP_TIMEOUT + 3)
    assert mapping_ports(lab, t.address4("mag1")) == ports and ports
    assert mapping_ports(lab, t.LMA4)                                 # MAG2 ⇄ LMA kept alive as well
    with Capture(lab, "inet", tmp_path / "idle.pcap", "ip6 or ip", interface="lma") as capture:
        assert ping(lab, "mn1", mn2, count=10, interval=0.05) == 10   # MAG1 → NAT mapping → MAG2
        capture.stop()
    assert packets_with(capture.path, mn1, mn2) == 0

    # the mapping is lost and RR cannot repair it: the flow falls back to the LMA path
    lma0 = lma_forwarded(lab)
    block = (f"table ip pmip6test {{\n  chain block {{\n    type filter hook forward priority 0;\n"
             f"    ip daddr {t.address4('mag1')} drop\n    ip saddr {t.address4('mag1')} drop\n  }}\n}}\n")
    subprocess.run(["nsenter", f"--net=/run/netns/{lab.ns('nat')}", "nft", "-f", "-"], check=True, text=True,
                   input=block)
    subprocess.run(["nsenter", f"--net=/run/netns/{lab.ns('nat')}", "conntrack", "-D", "-p", "udp",
                    "--dst", t.address4("mag1")], capture_output=True)
    wait_for(lambda: lab.client("mag2").call("tables")["ro_entries"] == [], timeout=45,
             what="MAG2 to give the binding up")
    wait_for(lambda: lab.client("mag1").call("tables")["ro_entries"] == [], timeout=45,
             what="MAG1's entry to lapse")
    assert ping(lab, "mn2", mn1, count=10, interval=0.05) == 10
    assert lma_forwarded(lab) - lma0 >= 20


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_ipv4_ro_signaling_decodes_in_wireshark(lab, clean_ro, mn3, tmp_path):
    with Capture(lab, "inet", tmp_path / "v4.pcap", "ip6 or ip") as capture:
        start(lab, "mag1", lab.mns["mn1"]["ipv4"], lab.mns["mn2"]["ipv4"])
        start(lab, "mag3", mn3, lab.mns["mn2"]["ipv6"])
        capture.stop()
    messages = dissect(capture.path)
    assert {"1", "2", "3", "4", "5", "6"} <= {m.mh_type for m in messages}
    assert {m.number: (m.mh_type, m.problems()) for m in messages if m.problems()} == {}
