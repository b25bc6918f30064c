"""Dissect captured mobility signaling with Wireshark (tshark), an
implementation nobody here wrote, and check each message: no malformed
packet, no expert warning or error, and the MH checksum that scapy computes
independently."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.packet import bind_layers
from scapy.utils import rdpcap

# RFC 5844: IPv6 (carrying the MH) directly inside UDP port 5436.
bind_layers(UDP, IPv6, dport=5436)
bind_layers(UDP, IPv6, sport=5436)

TSHARK = shutil.which("tshark")
# Wireshark 4.0 wants option 51 to be 16 octets but itself dissects 18 (RFC 6705 §10.3).
KNOWN_EXPERT_WARNINGS = {"MAG IPv6 Address (with option length = 18 bytes; should be 16)"}


@dataclass
class Dissected:
    number: int
    mh_type: str
    mh: bytes = b""
    fields: dict = field(default_factory=dict)
    experts: list = field(default_factory=list)
    malformed: bool = False
    checksum_ok: bool = False

    def wireshark_lri_lra_bug(self) -> bool:
        """Wireshark 4.0 reads the LRI/LRA fixed fields from MH offset 0
        instead of 6 (RFC 6705 §10.1-2): its Sequence # is our first two
        octets. tests/unit checks those layouts against the RFC figures."""
        name = {"17": "mip6.lri.sequence", "18": "mip6.lra.sequence"}.get(self.mh_type)
        return name is not None and self.fields.get(name, [None])[0] == str(int.from_bytes(self.mh[:2], "big"))

    def problems(self) -> list[str]:
        found = []
        dissector_bug = self.wireshark_lri_lra_bug()
        if self.malformed and not dissector_bug:
            found.append("malformed")
        found += [f"{sev}: {msg}" for sev, msg in self.experts
                  if ("Warning" in sev or "Error" in sev) and msg not in KNOWN_EXPERT_WARNINGS and not dissector_bug]
        if not self.checksum_ok:
            found.append(f"checksum {self.fields.get('mip6.csum')} is not what scapy computes")
        return found


def _mobility_headers(pcap: Path) -> list[tuple[IPv6, bytes] | None]:
    """Per frame: the IPv6 header and the MH octets (None if no MH)."""
    found = []
    for packet in rdpcap(str(pcap)):
        ipv6 = packet.getlayer(IPv6, nb=1)
        while ipv6 is not None and ipv6.nh != 135:
            inner = ipv6.payload.getlayer(IPv6) if ipv6.payload else None
            ipv6 = inner if inner is not ipv6 else None
        found.append((ipv6, bytes(ipv6.payload)) if ipv6 is not None else None)
    return found


def dissect(pcap: Path) -> list[Dissected]:
    """Every frame of pcap that carries a Mobility Header, as Wireshark sees it."""
    pdml = subprocess.run([TSHARK, "-r", str(pcap), "-T", "pdml", "-d", "udp.port==5436,ipv6",
                           "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"],
                          check=True, capture_output=True, text=True).stdout
    headers = _mobility_headers(pcap)
    result = []
    for number, (element, header) in enumerate(zip(ET.fromstring(pdml).iter("packet"), headers), start=1):
        if header is None:
            continue
        fields = {}
        for f in element.iter("field"):
            fields.setdefault(f.get("name"), []).append(f.get("show"))
        experts = [(e.find("field[@name='_ws.expert.severity']").get("showname"),
                    e.find("field[@name='_ws.expert.message']").get("show"))
                   for e in element.iter("field") if e.get("name") == "_ws.expert"]
        ipv6, mh = header
        expected = in6_chksum(135, ipv6, mh[:4] + b"\0\0" + mh[6:]) if len(mh) >= 6 else None
        result.append(Dissected(
            number=number,
            mh_type=(fields.get("mip6.mhtype") or ["?"])[0],
            mh=mh,
            fields=fields,
            experts=experts,
            malformed=any(p.get("name") == "_ws.malformed" for p in element.iter("proto")),
            checksum_ok=expected is not None and fields.get("mip6.csum") == [f"0x{expected:04x}"],
        ))
    return result
