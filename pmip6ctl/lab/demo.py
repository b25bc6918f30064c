"""`pmip6ctl lab demo`: the lab's guided tour.

MN1 and MN2 attach by Router Solicitation and get addresses by SLAAC (IPv4
HoAs configured from the LMA's allocation), then traffic MN1⇄MN2 and
MN1⇄CN flows through the LMA, and the LMA's counters prove it."""

from __future__ import annotations

import re
import threading
import time

import click

from ..tables_fmt import render_table
from . import topology as t
from .probe import SteadyPing
from .runner import Lab, poll


def say(text: str) -> None:
    click.echo(click.style(f"\n== {text}", bold=True))


def forwarded_by(lab: Lab, node: str) -> int:
    """Packets the node's XDP programs have forwarded so far (verdict redirect)."""
    return sum(c["packets"] for c in lab.client(node).call("counters") if c["verdict"] == "redirect")


def ping(lab: Lab, src: str, dst: str, count: int = 5, source: str | None = None,
         interval: float = 0.05) -> tuple[int, int, float | None]:
    out = lab.net.sh_ok(src, "ping", "-c", str(count), "-i", str(interval), "-W", "1",
                        *(["-I", source] if source else []), dst)
    sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
    rtt = re.search(r"= [\d.]+/([\d.]+)/", out)
    return sent, received, float(rtt.group(1)) if rtt else None


def reaches(lab: Lab, src: str, dst: str) -> bool:
    """One ping answered (False also when ping cannot even send: no route yet)."""
    try:
        return ping(lab, src, dst, count=1)[1] == 1
    except AttributeError:
        return False


def attach_mobile_nodes(lab: Lab) -> dict[str, dict]:
    """Links up → RS → PBU/PBA → RA → SLAAC; then the static IPv4 HoA."""
    found = {}
    for mn, mag in (("mn1", "mag1"), ("mn2", "mag2")):
        started = time.monotonic()
        lab.link_up(mn)
        address = lab.wait_mn_address(mn)
        took = time.monotonic() - started
        binding = next(b for b in lab.client(mag).call("bindings") if b["state"] == "registered")
        if binding.get("ipv4_hoa"):
            lab.configure_mn_ipv4(mn, binding["ipv4_hoa"])
        found[mn] = {"ipv6": address, "ipv4": binding.get("ipv4_hoa"), "mag": mag, "seconds": took,
                     "mn_id": binding["mn_id"]}
        click.echo(f"  {mn} at {mag}: {address}, {binding.get('ipv4_hoa') or 'no IPv4'}"
                   f"  ({binding['mn_id']}, address in {took:.1f} s)")
    return found


def traffic_through_the_lma(lab: Lab, mns: dict[str, dict]) -> None:
    flows = [("MN1 → MN2", mns["mn2"]["ipv6"]), ("MN1 → MN2 (IPv4)", mns["mn2"]["ipv4"]),
             ("MN1 → CN", t.CN6), ("MN1 → CN (IPv4)", t.CN4)]
    rows = []
    for name, target in flows:
        if not target:
            continue
        before = forwarded_by(lab, "lma")
        sent, received, rtt = ping(lab, "mn1", target)
        rows.append({"flow": name, "sent": sent, "received": received, "rtt_ms": rtt,
                     "lma_packets": forwarded_by(lab, "lma") - before})
    click.echo(render_table(rows, [("flow", "flow"), ("sent", "pings"), ("received", "replies"),
                                   ("rtt_ms", "avg rtt ms"), ("lma_packets", "forwarded by the lma")]))
    click.echo("  path: MN1 → MAG1 ⇒ (tunnel) ⇒ LMA ⇒ (tunnel) ⇒ MAG2 → MN2;  MN1 → MAG1 ⇒ LMA → inet → CN")


def ro_row(lab: Lab, node: str, local: str, remote: str) -> dict | None:
    return next((r for r in lab.client(node).call("ro_list") if (r["local"], r["remote"]) == (local, remote)), None)


def optimize(lab: Lab, title: str, mn: str, cn: str, peer_node: str, mode: str = "rr", initiator: str = "mag1",
             ping_from: str = "mn1", source: str | None = None) -> None:
    """One scenario: the path before, the signaling, the path after."""
    say(title)
    lab.client(initiator).call("ro_settings", mode=mode)
    before = forwarded_by(lab, "lma")
    sent, received, _ = ping(lab, ping_from, cn, count=10, source=source)
    via_lma_before = forwarded_by(lab, "lma") - before

    lab.client(initiator).call("ro_start", mn=mn, cn=cn)
    row = poll(lambda: (r := ro_row(lab, initiator, mn, cn)) and r.get("roles") and r)
    if not row:
        row = ro_row(lab, initiator, mn, cn) or {}
        click.echo(f"  route optimization did not complete: {row.get('last_failure') or row.get('phase')}")
        return
    click.echo(f"  signaling timeline at {initiator.upper()}:")
    for ms, what in row.get("timeline", []):
        click.echo(f"    {ms:>8.2f} ms  {what}")

    mag_before, lma_before = counters_of(lab, initiator), forwarded_by(lab, "lma")
    sent2, received2, _ = ping(lab, ping_from, cn, count=10, source=source)
    via_lma_after = forwarded_by(lab, "lma") - lma_before
    optimized = counters_of(lab, initiator).get("fwd_encap_ro", 0) - mag_before.get("fwd_encap_ro", 0)
    click.echo(render_table([
        {"when": "before RO", "replies": f"{received}/{sent}", "lma": via_lma_before, "ro": 0},
        {"when": "after RO", "replies": f"{received2}/{sent2}", "lma": via_lma_after, "ro": optimized},
    ], [("when", ""), ("replies", "ping replies"), ("lma", "forwarded by the lma"),
        ("ro", f"{initiator} → peer, optimized")]))
    click.echo("  RO entries, both ends:")
    entries = [dict(r, node=initiator) for r in lab.client(initiator).call("ro_list") if r.get("roles")]
    entries += [dict(r, node=peer_node) for r in lab.client(peer_node).call("ro_list") if r.get("roles")]
    click.echo(render_table(entries, [("node", "node"), ("local", "local"), ("remote", "remote"),
                                      ("peer", "tunnel to"), ("transport", "tunnel"), ("mode", "mode"),
                                      ("roles", "role"), ("expires_in", "expires in")]))
    lab.client(initiator).call("ro_stop", mn=mn, cn=cn)


def attach_mn3(lab: Lab) -> str:
    """mn1's second link, at MAG3 (IPv4-only transport): a third MN, with a
    source route so that its prefix leaves through that link."""
    lab.link_up("mn1", "eth1")
    address = lab.wait_mn_address("mn1", ifname="eth1")
    prefix = next(b["hnp"] for b in lab.client("mag3").call("bindings") if b["state"] == "registered")
    lab.net.ip("mn1", f"rule add from {prefix} table 100", "route replace ::/0 via fe80::1 dev eth1 table 100",
               family=6)
    return address


def detach_mn3(lab: Lab) -> None:
    lab.net.ip("mn1", "rule del table 100", "route flush table 100", family=6)
    for b in lab.client("mag3").call("bindings"):
        lab.client("mag3").call("detach", mn_id=b["mn_id"])
    lab.link_down("mn1", "eth1")


def counters_of(lab: Lab, node: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for c in lab.client(node).call("counters"):
        totals[c["reason"]] = totals.get(c["reason"], 0) + c["packets"]
    return totals


def scenario_2(lab: Lab, mns: dict[str, dict]) -> None:
    """MAG2 re-anchors MN2 at pmip-lma2: LMA1 must ask LMA2 where MN2 is."""
    say("scenario 2: MN2 re-anchored at a second LMA (pmip-lma2), which LMA1 asks for MAG2's address")
    lab.set_anchor("lma2")
    try:
        mn2 = poll(lambda: lab.mn_current_address("mn2"), timeout=20)
        if not mn2:
            click.echo("  MN2 got no address from LMA2's pool")
            return
        click.echo(f"  MN2 now {mn2}, anchored at lma2; MN1 → MN2 goes LMA1 → Internet → LMA2 until optimized")
        before = forwarded_by(lab, "lma2")
        optimize(lab, "route optimization across two LMAs (LRI relayed LMA1 → LMA2, authenticated with "
                      "RFC 4285)", mns["mn1"]["ipv6"], mn2, "mag2")
        relayed = [r for r in lab.client("lma").call("signaling") if r["type"] == "lri" and r["direction"] == "relay"]
        click.echo("  LMA1's inter-LMA queries: " + ", ".join(f"{r['result']} {r['count']}" for r in relayed))
        click.echo(f"  packets LMA2 forwarded during the scenario: {forwarded_by(lab, 'lma2') - before} "
                   "(before RO and the HoTI/HoT)")
    finally:
        lab.set_anchor("lma")
        lab.wait_mn_address("mn2")
        poll(lambda: lab.mn_current_address("mn2"), timeout=20)
        lab.configure_mn_ipv4("mn2", mns["mn2"]["ipv4"])


def local_routing(lab: Lab, mns: dict[str, dict]) -> None:
    """RFC 6705: MN1 and MN2 both at MAG3. MAG3 asks the LMA (LRI), which
    names MAG3 itself and consents (LRA status 0); MAG3's XDP then forwards
    between its two access links, and the LMA forwards nothing."""
    say("local routing (RFC 6705): MN1 and MN2 both at MAG3, forwarded between MAG3's access links in XDP")
    mn1, mn2 = mns["mn1"]["ipv6"], mns["mn2"]["ipv6"]
    try:
        for mn in ("mn1", "mn2"):
            lab.move(mn, "mag3")
        if not poll(lambda: len([b for b in lab.client("mag3").call("bindings") if b["state"] == "registered"
                                 and b["mn_id"] in ("mn1@lab.example", "mn2@lab.example")]) == 2
                    and reaches(lab, "mn1", mn2), timeout=20):
            click.echo("  MN1 and MN2 did not both attach at MAG3")
            return
        before = forwarded_by(lab, "lma")
        sent, received, _ = ping(lab, "mn1", mn2, count=10)
        via_lma_before = forwarded_by(lab, "lma") - before
        for local, remote in ((mn1, mn2), (mn2, mn1)):       # each direction: its own LRI/LRA
            lab.client("mag3").call("ro_start", mn=local, cn=remote)
        def both_local():
            local = [r for r in lab.client("mag3").call("ro_list") if r.get("phase") == "local"
                     and (r["local"], r["remote"]) in ((mn1, mn2), (mn2, mn1))]
            return local if len(local) == 2 else None
        rows = poll(both_local, timeout=10)
        if not rows or len(rows) < 2:
            click.echo("  local routing did not come up: " + "; ".join(
                f"{r['local']} → {r['remote']}: {r.get('last_failure') or r.get('phase')}"
                for r in lab.client("mag3").call("ro_list")))
            return
        click.echo("  signaling timeline at MAG3 (MN1 → MN2):")
        for ms, what in next(r for r in rows if r["local"] == mn1).get("timeline", []):
            click.echo(f"    {ms:>8.2f} ms  {what}")
        mag_before, lma_before = counters_of(lab, "mag3"), forwarded_by(lab, "lma")
        sent2, received2, _ = ping(lab, "mn1", mn2, count=10)
        local = counters_of(lab, "mag3").get("fwd_local", 0) - mag_before.get("fwd_local", 0)
        click.echo(render_table([
            {"when": "before", "replies": f"{received}/{sent}", "lma": via_lma_before, "local": 0},
            {"when": "local routing", "replies": f"{received2}/{sent2}", "lma": forwarded_by(lab, "lma") - lma_before,
             "local": local},
        ], [("when", ""), ("replies", "ping replies"), ("lma", "forwarded by the lma"),
            ("local", "mag3 access → access (fwd_local)")]))
        click.echo(render_table(rows, [("local", "local"), ("remote", "remote"), ("transport", "path"),
                                       ("phase", "phase"), ("expires_in", "expires in")]))
    finally:
        for mn in ("mn1", "mn2"):
            lab.move(mn, t.HOME_MAG[mn])
        left = poll(lambda: not lab.client("mag3").call("tables")["local_routes"], timeout=10)
        click.echo("  both MNs back home: MAG3 saw them leave and " +
                   ("removed its local routes" if left else "still holds local routes"))
        poll(lambda: all(any(b["state"] == "registered" for b in lab.client(mag).call("bindings"))
                         for mag in ("mag1", "mag2")), timeout=20)


def handover(lab: Lab, mns: dict[str, dict]) -> None:
    """MN1 moves to MAG3 and back during a TCP transfer to MN2 and a 2-ms
    ping, with the MAGs optimizing every flow they see. bench/handover.py
    times it from packet captures; here the time back is polled."""
    say("handover with RO active: MN1 moves MAG1 → MAG3 → MAG1 during a TCP transfer and a 2-ms ping to MN2")
    mn1, mn2 = mns["mn1"]["ipv6"], mns["mn2"]["ipv6"]
    mags = ("mag1", "mag2", "mag3")
    for node in mags:
        lab.client(node).call("ro_settings", trigger_packets=1)
    try:
        ping(lab, "mn1", mn2, count=3)
        poll(lambda: (r := ro_row(lab, "mag1", mn1, mn2)) and r.get("roles"))
        rows = [move_during_traffic(lab, mn1, mn2, target) for target in ("mag3", "mag1")]
        click.echo(render_table(rows, [("move", "move"), ("lost", "pings lost"), ("back", "optimized again after"),
                                       ("peer", "new path, to"), ("transport", "tunnel"), ("tcp", "TCP transfer"),
                                       ("old", "RO entries left at the old MAG")]))
        click.echo("  the old MAG saw the carrier go, deregistered MN1 and ended its RO pairs (BU lifetime 0 "
                   "or BE);\n  the new MAG's PBU moved the LMA path, and its data plane triggered RO again")
    finally:
        lab.move("mn1", "mag1")
        for node in mags:
            lab.client(node).call("ro_settings", trigger_packets=0)


def move_during_traffic(lab: Lab, mn1: str, mn2: str, target: str) -> dict:
    old = lab.where("mn1")
    result = {}
    transfer = threading.Thread(target=lambda: result.update(tcp=lab.tcp_transfer("mn1", "mn2", mn2, seconds=3)))
    transfer.start()
    pinger = SteadyPing(lab.ns("mn1"), mn2, count=1500, interval=0.002).start()
    time.sleep(1.0)
    lab.move("mn1", target)
    moved = time.monotonic()
    row = poll(lambda: (r := ro_row(lab, target, mn1, mn2)) and r.get("roles") and r, timeout=5, interval=0.002) or {}
    back = (time.monotonic() - moved) * 1000 if row else None
    sent, received = pinger.result()
    transfer.join(timeout=30)
    tcp = result.get("tcp", {}).get("end", {})
    megabytes = tcp.get("sum_received", {}).get("bytes", 0) / 1e6
    return {"move": f"{old} → {target}", "lost": f"{sent - received} of {sent}",
            "back": f"≈ {back:.0f} ms" if back is not None else "not within 5 s",
            "peer": row.get("peer", "-"), "transport": row.get("transport", "-"),
            "tcp": f"{megabytes:.0f} MB, {tcp.get('sum_sent', {}).get('retransmits', '?')} retransmits",
            "old": len(lab.client(old).call("ro_list"))}


def run_demo(lab: Lab, keep: bool = True) -> None:
    if not lab.namespaces():
        say("bringing the lab up")
        lab.up()
    say("mobile nodes attach (Router Solicitation → PBU/PBA → Router Advertisement)")
    mns = attach_mobile_nodes(lab)
    say("the LMA's binding cache")
    rows = lab.client("lma").call("bindings")
    click.echo(render_table(rows, [("mn_id", "mn-id"), ("hnp", "home prefix"), ("ipv4_hoa", "ipv4 hoa"),
                                   ("mag", "serving mag"), ("transport", "transport"), ("expires_in", "expires in")]))
    pbus = {r["result"]: r["count"] for r in lab.client("lma").call("signaling") if r["type"] == "pbu"}
    click.echo(f"  every PBU/PBA carried HMAC-SHA256 under the MAG's key and a Timestamp (docs/security.md): "
               f"the LMA believed {pbus.get('ok', 0)}, refused {sum(pbus.values()) - pbus.get('ok', 0)}")
    say("traffic through the LMA (the default PMIPv6 path)")
    traffic_through_the_lma(lab, mns)
    say("LMA data-plane counters")
    rows = [c for c in lab.client("lma").call("counters") if c["packets"]]
    click.echo(render_table(rows, [("verdict", "verdict"), ("reason", "reason"), ("packets", "packets"),
                                   ("bytes", "bytes")]))
    mn1, mn2 = mns["mn1"]["ipv6"], mns["mn2"]["ipv6"]
    optimize(lab, "route optimization, scenario 1 (MN1 ⇄ MN2 at MAG2), return routability", mn1, mn2, "mag2", "rr")
    optimize(lab, "route optimization, scenario 1, quick mode (pre-shared keys between MAGs)", mn1, mn2, "mag2",
             "quick")
    optimize(lab, "route optimization, scenario 3 (MN1 ⇄ the RO-capable CN outside the domain)", mn1, t.CN6, "cn",
             "rr")
    lab.client("mag1").call("ro_settings", mode="rr")
    optimize(lab, "route optimization for IPv4 MNs (fig. 2-5): MN1 ⇄ MN2 by their IPv4 home addresses, "
                  "IPv4-in-IPv6 between the MAGs", mns["mn1"]["ipv4"], mns["mn2"]["ipv4"], "mag2")
    mn3 = attach_mn3(lab)
    try:
        optimize(lab, "route optimization over IPv4-only transport (§2.1.1.2, fig. 6-7): MN3 at MAG3 ⇄ MN2",
                 mn3, mn2, "mag2", initiator="mag3", source=mn3)
    finally:
        detach_mn3(lab)
    say("NAT on the path: MAG2 behind a real nftables masquerade, on IPv4 transport")
    lab.set_nat(True)
    try:
        mn2 = lab.wait_mn_address("mn2")
        click.echo("  " + "; ".join(f"{b['mn_id']} at the LMA via {b['transport']}" for b in lab.client("lma").call(
            "bindings") if b["mn_id"].startswith("mn2")))
        optimize(lab, "route optimization through the NAT (§2.3.2): MAG2 starts, MAG1 detects the NAT, UDP "
                      "encapsulation and keepalives", mn2, mn1, "mag1", initiator="mag2", ping_from="mn2")
    finally:
        lab.set_nat(False)
        lab.wait_mn_address("mn2")
        lab.configure_mn_ipv4("mn2", mns["mn2"]["ipv4"])
    scenario_2(lab, mns)
    local_routing(lab, mns)
    handover(lab, mns)
    say("where to look next")
    click.echo("  pmip6ctl --node mag1 bindings | counters | peers      (any node: lma, mag1, mag2, mag3, cn)")
    click.echo(f"  pmip6ctl --node mag1 ro start {mn1} {mn2}   then: ro list, ro show, ro stop")
    click.echo("  metrics (from this host): " + "  ".join(f"{n} http://{a}/metrics"
                                                         for n, a in lab.metrics_targets().items()))
    click.echo("  Prometheus for the lab: pmip6ctl lab prometheus > lab.yml; dashboard: grafana/")
    click.echo(f"  logs: {lab.lab_dir / 'logs'}")
    click.echo("  pmip6ctl lab down    removes everything")
