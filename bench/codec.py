"""Benchmark: the pmip6ctl Mobility Header codec against scapy, on a typical PBU.

    .venv/bin/python bench/codec.py [--check]

The PBU is what a MAG sends on attach (RFC 5213 §6.9.1.1): flags A|H|P,
MN-ID (NAI), HNP, Handoff Indicator, Access Technology Type, Timestamp.
Both sides compute the checksum over the IPv6 pseudo-header; ours also
verifies it on decode, scapy does not. Each figure is the best of several
timeit repeats. --check exits non-zero if ours is not at least 5x faster.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from ipaddress import IPv6Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scapy.layers.inet6 import (IPv6, MIP6MH_BU, MIP6OptMNID, MIP6OptMobNetPrefix,  # noqa: E402
                                MIP6OptReplayProtection, MIP6OptUnknown)

from pmip6ctl import wire  # noqa: E402

TARGET = 5.0
REPEATS = 7
MAG = IPv6Address("2001:db8:ff::1")
LMA = IPv6Address("2001:db8:ff::100")
NAI = "mn1@example.com"
HNP = IPv6Address("2001:db8:1::")
NOW = 1_700_000_000.0


def build_ours() -> wire.BindingUpdate:
    return wire.BindingUpdate(42, wire.BUFlags.A | wire.BUFlags.H | wire.BUFlags.P, 75, [
        wire.MobileNodeIdentifier.from_nai(NAI),
        wire.HomeNetworkPrefix(64, HNP),
        wire.HandoffIndicator(wire.HandoffIndicatorValue.NEW_INTERFACE),
        wire.AccessTechnologyType(wire.AccessTechnologyTypeValue.IEEE_802_3),
        wire.Timestamp.from_unix(NOW),
    ])


def build_scapy():
    # scapy has no PMIPv6 options: its NEMO prefix and replay-protection options
    # share the HNP and Timestamp layouts, HI and ATT go in as opaque options.
    return IPv6(src=str(MAG), dst=str(LMA)) / MIP6MH_BU(seq=42, flags="AHP", mhtime=75, options=[
        MIP6OptMNID(subtype=1, id=NAI.encode()),
        MIP6OptMobNetPrefix(otype=22, plen=64, prefix=str(HNP)),
        MIP6OptUnknown(otype=23, odata=bytes((0, 1))),
        MIP6OptUnknown(otype=24, odata=bytes((0, 3))),
        MIP6OptReplayProtection(otype=27, timestamp=round(NOW * 65536)),
    ])


PBU = build_ours()


def ours_round_trip():
    return wire.decode(wire.encode(PBU, MAG, LMA), MAG, LMA)


def ours_build_round_trip():
    return wire.decode(wire.encode(build_ours(), MAG, LMA), MAG, LMA)


def scapy_round_trip():
    return IPv6(bytes(build_scapy()))


def best_us(func) -> float:
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=REPEATS, number=number)) / number * 1e6


def same_message() -> None:
    """Both sides build the same PBU: ours decodes scapy's octets to our message."""
    scapy_mh = bytes(build_scapy())[40:]
    assert wire.decode(scapy_mh, MAG, LMA) == build_ours(), "scapy and pmip6ctl PBUs differ"
    assert ours_round_trip() == build_ours()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"fail unless ours is at least {TARGET:g}x faster")
    args = parser.parse_args()

    same_message()
    rows = [
        ("pmip6ctl  encode + decode", best_us(ours_round_trip)),
        ("pmip6ctl  build + encode + decode", best_us(ours_build_round_trip)),
        ("scapy     build + serialize + parse", best_us(scapy_round_trip)),
    ]
    ours, ours_with_build, scapy = (us for _, us in rows)
    size = len(wire.encode(build_ours()))

    print(f"PBU round trip ({size}-octet Mobility Header, best of {REPEATS} repeats)\n")
    print(f"{'codec':38} {'us/PBU':>9} {'x faster':>9}")
    print(f"{'-' * 38} {'-' * 9} {'-' * 9}")
    for name, us in rows:
        print(f"{name:38} {us:9.1f} {scapy / us:9.1f}")
    ratio = scapy / ours
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"\nratio scapy / pmip6ctl (encode + decode): {ratio:.1f}x (target >= {TARGET:g}x: {verdict}); "
          f"including building the message: {scapy / ours_with_build:.1f}x")
    return 1 if args.check and ratio < TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
