#!/usr/bin/env python3
"""Data-plane benchmark: every figure is a ratio against a baseline measured
in the same run (these machines are noisy).

1. Forwarding rate through a namespace: our MAG access program (RO-path
   encapsulation + FIB lookup + devmap redirect, native XDP) against the
   kernel's own IPv6 forwarding on the same veths, and against the limit:
   a bare program that only pushes the outer header and redirects. The
   generator is BPF_PROG_TEST_RUN in live-frames mode, a sink counts with
   XDP_DROP.
2. BPF_PROG_TEST_RUN ns/packet of the MAG access program on the RO path
   against a trivial XDP_PASS program.
3. The same with 1,000,000 RO entries against 1.
4. bcc compile time and the loader's memory.

    .venv/bin/python bench/dataplane.py [--packets N] [--rounds R] [--json]

Run as root; about a minute at the defaults, with progress on stderr.
Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scapy.layers.inet import UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402

from pmip6ctl import netns  # noqa: E402
from pmip6ctl.dataplane import Dataplane, DataplaneSettings, Encap, RoEntry, Tunnel  # noqa: E402
from pmip6ctl.dataplane.tables import Tables  # noqa: E402
from pmip6ctl.dataplane.testrun import BPF_F_TEST_XDP_LIVE_FRAMES, run_xdp  # noqa: E402
from pmip6ctl.lab.netlab import NetLab  # noqa: E402

HERE = Path(__file__).resolve().parent
PIN_ROOT = Path("/sys/fs/bpf/pmip6-bench")
MN, CN = "2001:db8:100:1::10", "2001:db8:cc::2"
LOCAL, PEER, SINK = "2001:db8:ffff:1::1", "2001:db8:ffff:3::1", "2001:db8:ffff:1::2"
SINK_MAC, IN_MAC, OUT_MAC = "02:00:00:00:5e:01", "02:00:00:00:1e:01", "02:00:00:00:1e:02"
FRAME_LEN = 126
STARTED = time.monotonic()


def say(line: str) -> None:
    """Progress on stderr, with the seconds since the start."""
    print(f"  [{time.monotonic() - STARTED:6.1f} s] {line}", file=sys.stderr, flush=True)


def frame() -> bytes:
    pkt = Ether(dst=IN_MAC, src="02:00:00:00:9e:01") / IPv6(src=MN, dst=CN, hlim=64) / UDP(sport=9, dport=9)
    return bytes(pkt / bytes(FRAME_LEN - len(pkt)))


def build_lab() -> NetLab:
    lab = NetLab(prefix="pmip-b-")
    lab.destroy(["gen", "fwd", "sink"])
    for name in ("gen", "fwd", "sink"):
        lab.add_namespace(name)
    lab.veth("gen", "gen0", "fwd", "in0", mac_b=IN_MAC)
    lab.veth("fwd", "out0", "sink", "sink0", mac_a=OUT_MAC, mac_b=SINK_MAC)
    lab.router("fwd")
    lab.ip("fwd", "addr add 2001:db8:b::1/64 dev in0 nodad", f"addr add {LOCAL}/64 dev out0 nodad",
           f"route add ::/0 via {SINK} dev out0",
           f"neigh add {SINK} lladdr {SINK_MAC} dev out0 nud permanent")
    lab.ip("sink", f"addr add {SINK}/64 dev sink0 nodad")
    return lab


class Bench:
    def __init__(self, packets: int, rounds: int):
        from bcc import BPF

        self.packets, self.rounds = packets, rounds
        self.lab = build_lab()
        with netns.entered("pmip-b-fwd"):
            out0 = socket.if_nametoindex("out0")

        def octets(raw: bytes) -> str:
            return ",".join(str(b) for b in raw)

        limit = [f"-DLIMIT_DMAC={octets(bytes.fromhex(SINK_MAC.replace(':', '')))}",
                 f"-DLIMIT_SMAC={octets(bytes.fromhex(OUT_MAC.replace(':', '')))}",
                 f"-DLIMIT_SADDR={octets(ipaddress.IPv6Address(LOCAL).packed)}",
                 f"-DLIMIT_DADDR={octets(ipaddress.IPv6Address(PEER).packed)}"]
        self.helpers = BPF(src_file=str(HERE / "traffic_gen.c"), cflags=limit)
        self.encap_only = self.helpers.load_func("xdp_encap_only", BPF.XDP)
        with netns.entered("pmip-b-fwd"):     # a devmap takes ifindexes of the caller's namespace
            self.helpers["encap_out"][0] = self.helpers["encap_out"].Leaf(out0)
        self.gen = self.helpers.load_func("xdp_gen", BPF.XDP)
        self.sink = self.helpers.load_func("xdp_sink", BPF.XDP)
        self.trivial = self.helpers.load_func("xdp_pass", BPF.XDP)
        self.restore_only = self.helpers.load_func("xdp_restore_only", BPF.XDP)
        template = self.helpers["template"].Leaf()
        for i, byte in enumerate(frame()[:64]):
            template.bytes[i] = byte
        self.helpers["template"][0] = template
        with netns.entered("pmip-b-gen"):
            self.helpers["target"][0] = self.helpers["target"].Leaf(socket.if_nametoindex("gen0"))
        with netns.entered("pmip-b-sink"):
            BPF.attach_xdp("sink0", self.sink, 1 << 2)

        settings = DataplaneSettings(node="bench-mag", role="mag", pin_root=PIN_ROOT,
                                     ro_trigger_packets=0, max_ro_entries=1 << 20)
        self.mag = Dataplane(settings)
        started = time.monotonic()
        self.mag.load()
        self.compile_seconds = time.monotonic() - started
        t = self.mag.tables
        with netns.entered("pmip-b-fwd"):
            t.set_tx_ports(index for index, _ in socket.if_nameindex())
            self.in0 = socket.if_nametoindex("in0")
        t.set_local_addresses([LOCAL])
        t.set_tunnel(1, Tunnel(Encap.IP6, LOCAL, PEER))
        t.set_tunnel(2, Tunnel(Encap.IP6, LOCAL, PEER))    # toward the LMA (not taken)
        t.set_mn(MN + "/128", 2, self.in0)
        t.set_ro(MN, CN, 1)

    def close(self):
        with netns.entered("pmip-b-fwd"):
            Dataplane.detach("in0")
        self.mag.close()
        self.lab.destroy()
        shutil.rmtree(PIN_ROOT, ignore_errors=True)

    # --- 1. forwarding rate ------------------------------------------------
    def _sunk(self) -> int:
        return sum(int(v) for v in self.helpers["sunk"].getvalue(self.helpers["sunk"].Key(0)))

    def _pump(self) -> float:
        """Sends self.packets frames at line rate; returns delivered pps."""
        result = {}

        def generate():
            os.sched_setaffinity(0, {1 % os.cpu_count()})
            with netns.entered("pmip-b-gen"):
                start = time.monotonic()
                run_xdp(self.gen.fd, frame(), repeat=self.packets,
                        flags=BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=64)
                result["seconds"] = time.monotonic() - start

        before = self._sunk()
        thread = threading.Thread(target=generate)
        thread.start()
        thread.join()
        time.sleep(0.05)
        return (self._sunk() - before) / result["seconds"]

    def forwarding(self) -> dict:
        """Alternates, round by round: the kernel (baseline), our MAG access
        program, and the limit (xdp_encap_only: push the outer header and
        redirect, no lookup). Ratios are the medians of each round's ratio:
        the rounds of one kind move together with the machine's load."""
        from bcc import BPF

        kernel, xdp, limit = [], [], []
        for r in range(self.rounds):
            with netns.entered("pmip-b-fwd"):
                Dataplane.detach("in0")
            kernel.append(self._pump())
            with netns.entered("pmip-b-fwd"):
                self.mag.attach("xdp_mag_access", "in0")
            xdp.append(self._pump())
            with netns.entered("pmip-b-fwd"):
                Dataplane.detach("in0")
                BPF.attach_xdp("in0", self.encap_only, 1 << 2)
            limit.append(self._pump())
            say(f"forwarding round {r + 1}/{self.rounds}: kernel {kernel[-1]:,.0f} pps, "
                f"MAG {xdp[-1]:,.0f} pps, encapsulate-only limit {limit[-1]:,.0f} pps")
        with netns.entered("pmip-b-fwd"):
            Dataplane.detach("in0")
        k, x, m = statistics.median(kernel), statistics.median(xdp), statistics.median(limit)
        return {"kernel_ipv6_forwarding_pps": k, "mag_ro_encap_pps": x,
                "ratio": statistics.median(b / a for a, b in zip(kernel, xdp)), "target": ">= 3.0",
                "encap_only_limit_pps": m,
                "fraction_of_limit": statistics.median(b / c for b, c in zip(xdp, limit)),
                "target_of_limit": ">= 0.95"}

    # --- 2./3. per-packet cost ------------------------------------------------
    def _ns_per_packet(self, prog_fd: int) -> float:
        runs = []
        with netns.entered("pmip-b-fwd"):
            for _ in range(2 * self.rounds + 1):
                runs.append(run_xdp(prog_fd, frame(), ingress_ifindex=self.in0, repeat=1_000_000).duration_ns)
        return statistics.median(runs)

    def _restoring_mag_program(self):
        """The MAG access program wrapped so that every repetition sees the
        same frame: BPF_PROG_TEST_RUN does not reset the packet, so the
        wrapper undoes the encapsulation (which makes our figure slightly
        worse, never better)."""
        from bcc import BPF

        source = self.mag.source().replace(
            "int xdp_mag_access(struct xdp_md *ctx)", "static __always_inline int mag_access_body(struct xdp_md *ctx)")
        source += """
BPF_ARRAY(original, struct { unsigned char bytes[64]; }, 1);
int xdp_bench_ro(struct xdp_md *ctx)
{
    int zero = 0, action = mag_access_body(ctx);
    void *data, *data_end;
    typeof(original.leaf) *orig = (void *)original.lookup(&zero);

    if (bpf_xdp_adjust_head(ctx, OUTER_IP6_LEN) || !orig)
        return XDP_ABORTED;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    if (data + 64 > data_end)
        return XDP_ABORTED;
    __builtin_memcpy(data, orig->bytes, 64);
    return action;
}
"""
        bpf = BPF(text=source, cflags=self.mag.cflags())
        leaf = bpf["original"].Leaf()
        for i, byte in enumerate(frame()[:64]):
            leaf.bytes[i] = byte
        bpf["original"][0] = leaf
        with netns.entered("pmip-b-fwd"):
            Tables(bpf).set_tx_ports(index for index, _ in socket.if_nameindex())
        return bpf, bpf.load_func("xdp_bench_ro", BPF.XDP)

    def per_packet(self) -> dict:
        bpf, wrapped = self._restoring_mag_program()
        check = None
        with netns.entered("pmip-b-fwd"):
            check = run_xdp(wrapped.fd, frame(), ingress_ifindex=self.in0)
        assert check.action == "redirect" and check.packet == frame(), "the wrapper must restore the frame"
        say("per-packet: compiled the wrapped MAG program")
        trivial = self._ns_per_packet(self.trivial.fd)
        restore = self._ns_per_packet(self.restore_only.fd) - trivial
        one = self._ns_per_packet(wrapped.fd)
        say(f"per-packet: XDP_PASS {trivial:.1f} ns, MAG RO path {one:.1f} ns")

        started = time.monotonic()
        filler = (
            RoEntry(ipaddress.IPv6Address(int(ipaddress.IPv6Address("2001:db8:100::")) + i), CN, 1)
            for i in range(1, 1_000_000)
        )
        batch = []
        for entry in filler:
            batch.append(entry)
            if len(batch) == 65536:
                self.mag.tables.set_ro_batch(batch)
                batch = []
        self.mag.tables.set_ro_batch(batch)
        fill_seconds = time.monotonic() - started
        say(f"per-packet: 1,000,000 RO entries installed in {fill_seconds:.1f} s")
        million = self._ns_per_packet(wrapped.fd)
        say(f"per-packet: with 1,000,000 entries {million:.1f} ns")
        self.mag.tables.clear_ro()
        say("per-packet: entries cleared")
        return {
            "trivial_xdp_pass_ns": trivial,
            "mag_ro_path_ns": one,
            "ratio_vs_xdp_pass": one / trivial, "target_vs_xdp_pass": "<= 2.5",
            "restore_wrapper_ns": restore,
            "ratio_vs_xdp_pass_without_wrapper": (one - restore) / trivial,
            "mag_ro_path_1m_entries_ns": million,
            "ratio_1m_vs_1": million / one, "target_1m_vs_1": "<= 1.3",
            "seconds_to_install_1m_entries": fill_seconds,
        }


def loader_footprint() -> dict:
    code = (
        "import resource,time,sys\n"
        f"sys.path.insert(0, {str(HERE.parent)!r})\n"
        "from pathlib import Path\n"
        "from pmip6ctl.dataplane import Dataplane, DataplaneSettings\n"
        "t=time.monotonic()\n"
        f"d=Dataplane(DataplaneSettings(node='bench-footprint', role='mag', pin_root=Path({str(PIN_ROOT)!r})))\n"
        "d.load()\n"
        "print(time.monotonic()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    seconds, rss_kib = out.split()
    return {"compile_and_load_seconds": float(seconds), "loader_peak_rss_mib": int(rss_kib) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=3_000_000, help="frames per forwarding round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    say("building the namespaces and compiling the programs")
    bench = Bench(args.packets, args.rounds)
    say(f"ready (MAG programs compiled in {bench.compile_seconds:.1f} s)")
    try:
        results = {"forwarding": bench.forwarding(), "per_packet": bench.per_packet()}
    finally:
        bench.close()
        say("namespaces and pins removed")
    results["loader"] = loader_footprint()
    say("loader footprint measured")
    shutil.rmtree(PIN_ROOT, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    f, p, l = results["forwarding"], results["per_packet"], results["loader"]
    print(f"{'measure':<52}{'value':>14}{'ratio':>10}  target")
    print(f"{'kernel IPv6 forwarding (baseline), pps':<52}{f['kernel_ipv6_forwarding_pps']:>14,.0f}")
    print(f"{'MAG RO encap + FIB + redirect, pps':<52}{f['mag_ro_encap_pps']:>14,.0f}{f['ratio']:>9.2f}x  >= 3.0x")
    print(f"{'encapsulate + redirect only (the limit), pps':<52}{f['encap_only_limit_pps']:>14,.0f}")
    print(f"{'MAG as a fraction of the limit':<52}{'':>14}{f['fraction_of_limit']:>9.1%}   >= 95 %")
    print(f"{'trivial XDP_PASS (baseline), ns/packet':<52}{p['trivial_xdp_pass_ns']:>14.1f}")
    print(f"{'MAG access, RO path, 1 entry, ns/packet':<52}{p['mag_ro_path_ns']:>14.1f}{p['ratio_vs_xdp_pass']:>9.2f}x  <= 2.5x")
    print(f"{'  of which the frame-restoring wrapper, ns':<52}{p['restore_wrapper_ns']:>14.1f}"
          f"{p['ratio_vs_xdp_pass_without_wrapper']:>9.2f}x  (net of it)")
    print(f"{'MAG access, RO path, 1,000,000 entries, ns/packet':<52}{p['mag_ro_path_1m_entries_ns']:>14.1f}{p['ratio_1m_vs_1']:>9.2f}x  <= 1.3x")
    print(f"{'bcc compile + load of the MAG programs, s':<52}{l['compile_and_load_seconds']:>14.2f}")
    print(f"{'loader peak RSS, MiB':<52}{l['loader_peak_rss_mib']:>14.0f}")


if __name__ == "__main__":
    main()
