"""`pmip6ctl lab up|down|status`: build the lab, run its daemons, tear it all down.

Daemons run in their namespaces through nsenter (never `ip netns exec`,
which remounts /sys and hides the bpffs pins: DESIGN §4), with their control
sockets, stores, logs, configs, keys and pid files under one directory of
the lab's own, /run/pmip6ctl/lab/: never a production daemon's
/run/pmip6ctl/<node>.sock or /var/lib/pmip6ctl/<node>.db. `up` refuses to
start when a daemon that is not the lab's answers on a socket the lab would
use. `down` removes every namespace with the lab's prefix, the pins and what
the lab wrote in its directory, and it is safe after an `up` that failed
half-way."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .. import netns
from ..io.control import CommandError, ControlClient
from ..io.files import write_private
from . import topology as t
from .configs import lab_configs, lab_keys
from .netlab import LabError, NetLab, _run, list_namespaces

RUN_DIR = Path("/run/pmip6ctl")      # production daemons' sockets: the lab never writes here
LAB_RUN_DIR = RUN_DIR / "lab"        # the default lab's (the CLI's --node finds sockets here too)
DEFAULT_PREFIX = "pmip-"


VOID_MAC = "02:00:00:00:00:05"     # the MNs' last-resort next hop, on a link to nowhere


def socket_is_live(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket at path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def poll(predicate, timeout: float = 10.0, interval: float = 0.05):
    """predicate()'s first true value within timeout seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


class Lab:
    def __init__(self, prefix: str = DEFAULT_PREFIX, progress: Callable[[str], None] = lambda s: None):
        self.net = NetLab(prefix=prefix)
        self.progress = progress
        # Everything the lab writes outside its namespaces and pins lives in one
        # directory of its own, /run/pmip6ctl/lab/ (`pmip6ctl --node mag1` and
        # `--node lab-mag1` find its sockets there); another prefix gets its own
        # directory and pins, and no two labs, nor a production daemon, touch
        # each other's files.
        suffix = "" if prefix == DEFAULT_PREFIX else "-" + prefix.strip("-")
        self.run_dir = LAB_RUN_DIR if not suffix else RUN_DIR / f"lab{suffix}"
        self.lab_dir = self.run_dir
        self.pin_root = Path(f"/sys/fs/bpf/pmip6-lab{suffix}")

    # --- names -------------------------------------------------------------------
    def ns(self, node: str) -> str:
        return self.net.ns(node)

    def namespaces(self) -> list[str]:
        """The lab's namespaces that exist now."""
        ours = {self.ns(node) for node in t.NODES}
        return [name for name in list_namespaces(self.net.prefix) if name in ours]

    def socket(self, node: str) -> Path:
        return self.run_dir / f"{node}.sock"

    def client(self, node: str, timeout: float = 10.0) -> ControlClient:
        return ControlClient(self.socket(node), timeout=timeout)

    def sh(self, node: str, *argv: str) -> str:
        return self.net.sh(node, *argv)

    # --- up -------------------------------------------------------------------------
    def foreign_sockets(self) -> list[Path]:
        """The sockets the lab would use on which a daemon that is not the
        lab's answers (no lab daemon runs for that node)."""
        return [self.socket(node) for node in t.DAEMONS
                if self.pid(node) is None and socket_is_live(self.socket(node))]

    def up(self, *, ipv4_transport_mags: set[str] = t.IPV4_TRANSPORT_MAGS, trigger_packets: int = 0) -> None:
        if self.namespaces():
            raise LabError(f"a lab is already up ({', '.join(self.namespaces())}): run `pmip6ctl lab down` first")
        foreign = self.foreign_sockets()
        if foreign:                     # before anything is changed: nothing to clean up
            raise LabError(f"refusing to start: a daemon that is not the lab's answers on {foreign[0]} "
                           "(stop it, or give the lab another --prefix)")
        try:
            self.progress("building namespaces and links")
            self.build_network()
            self.progress("writing daemon configs")
            self.write_configs(ipv4_transport_mags, trigger_packets)
            for node in t.DAEMONS:
                self.progress(f"starting {node} ({t.DAEMONS[node]})")
                self.start_daemon(node)
            for node in t.DAEMONS:
                self.wait_ready(node)
                self.progress(f"{node} ready")
        except BaseException:
            self.progress("lab up failed: cleaning up")
            self.down(quiet=True)
            raise

    def build_network(self) -> None:
        net = self.net
        for node in t.NODES:
            net.add_namespace(node)
        for link in t.LINKS:
            net.veth(link.a, link.a_if, link.b, link.b_if)
            for side, node, ifname in (("a", link.a, link.a_if), ("b", link.b, link.b_if)):
                net.ip(node, f"addr add {link.addr6(side)}/64 dev {ifname} nodad",
                       f"addr add {link.addr4(side)}/{link.v4.split('/')[1]} dev {ifname}")
        # Each MN's one radio: eth0 into a bridge in its air, which has a port
        # per MAG it may reach; only the serving MAG's port is up (move()).
        # No learning: a hub, so nothing remembers which port a MAC was behind.
        for mn, air in t.AIR.items():
            # the air is no host: no IPv6 of its own (no RS, DAD or MLD of its ports reaches a MAG)
            net.sysctl(air, net__ipv6__conf__all__disable_ipv6=1, net__ipv6__conf__default__disable_ipv6=1)
            net.ip(air, f"link add {t.AIR_BRIDGE} type bridge stp_state 0 forward_delay 0 ageing_time 0 "
                        "mcast_snooping 0",
                   f"link set {t.AIR_BRIDGE} up")
            net.veth(mn, "eth0", air, t.AIR_MN_PORT, mac_a=t.MN_MACS[mn])
            net.ip(air, f"link set {t.AIR_MN_PORT} master {t.AIR_BRIDGE}")
            net.ip(mn, "link set eth0 down")                  # up once the MAG listens
        for link in t.ACCESS_LINKS:
            net.veth(link.a, link.a_if, link.b, link.b_if, mac_b=t.ACCESS_MAC)
            net.ip(link.a, f"link set {link.a_if} master {t.AIR_BRIDGE}")
            if link.b != t.HOME_MAG[t.mn_of_air(link.a)]:
                net.ip(link.a, f"link set {link.a_if} down")  # not there (yet)
        for link in t.SECOND_LINKS:
            net.veth(link.a, link.a_if, link.b, link.b_if, mac_a=t.SECOND_MACS[link.a], mac_b=t.ACCESS_MAC)
            net.ip(link.a, f"link set {link.a_if} down")      # up when the test wants MN3 (MN4)
        for link in (*t.ACCESS_LINKS, *t.SECOND_LINKS):
            net.ip(link.b, f"addr add {t.ACCESS_GATEWAY6}/64 dev {link.b_if} nodad",
                   f"addr add {t.ACCESS_GATEWAY4}/32 dev {link.b_if}")
        for node in ("inet", "lma", "lma2", "mag1", "mag2", "mag3", "nat"):
            net.router(node)
        for mn in ("mn1", "mn2"):
            for ifname in ("eth0", "eth1"):
                # keep_addr_on_down: an MN that moves keeps its address (and its
                # TCP connections) while its old link is down. accept_dad 0: on
                # a point-to-point access link with a prefix of its own (RFC 5213
                # §6.2) the MN cannot collide, and DAD would hold its first
                # Router Solicitation back for a second after every move.
                settings = {f"net__ipv6__conf__{ifname}__{k}": v for k, v in
                            (("accept_ra", 1), ("router_solicitation_delay", 0),
                             ("router_solicitation_interval", 1), ("accept_dad", 0),
                             ("keep_addr_on_down", 1))}
                net.sysctl(mn, **settings)
            # Between links, what an MN sends is lost, as over a radio in an L2
            # handover: last-resort routes into a veth that leads nowhere. With
            # no route at all (or a blackhole one) sends would fail locally,
            # which a real MN does not see, and applications would back off
            # (ping pauses 10 ms after a failed send).
            net.ip(mn, "link add void0 type veth peer name void1", "link set void0 up", "link set void1 up",
                   f"neigh add fe80::5 lladdr {VOID_MAC} dev void0 nud permanent",
                   f"neigh add 169.254.0.5 lladdr {VOID_MAC} dev void0 nud permanent",
                   "route add ::/0 via fe80::5 dev void0 metric 65535",
                   "route add 0.0.0.0/0 via 169.254.0.5 dev void0 onlink metric 65535")
        # The core: routes to the MN pools via the LMA, to MAG2's inside via the NAT.
        nat_link, _ = t.link_of("nat")
        mag2_link, _ = t.link_of("mag2")
        for lma in t.LMAS:
            hnp_pool, ipv4_pool = t.POOLS[lma]
            net.ip("inet", f"route add {hnp_pool} via {t.address6(lma)}", f"route add {ipv4_pool} via {t.address4(lma)}")
        net.ip("inet", f"route add {mag2_link.v6} via {nat_link.addr6('b')}",
               f"route add {mag2_link.v4} via {nat_link.addr4('b')}")
        for node in ("lma", "lma2", "mag1", "mag3", "cn", "nat"):
            net.ip(node, f"route add ::/0 via {t.gateway6(node) if node != 'nat' else nat_link.addr6('a')}",
                   f"route add 0.0.0.0/0 via {t.gateway4(node) if node != 'nat' else nat_link.addr4('a')}")
        net.ip("mag2", f"route add ::/0 via {mag2_link.addr6('a')}", f"route add 0.0.0.0/0 via {mag2_link.addr4('a')}")
        self.build_management_link()

    @property
    def mgmt_ifname(self) -> str:
        return f"{self.net.prefix}mgmt"

    def build_management_link(self) -> None:
        """host ⇄ pmip-inet, for Prometheus on the host (IPv6 only: the host's
        own IPv4 networks may overlap the lab's documentation prefixes)."""
        host_if = self.mgmt_ifname
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", "mgmt0",
                        "netns", self.ns("inet")], check=True, capture_output=True)
        subprocess.run(["ip", "-6", "addr", "add", f"{t.MGMT_HOST}/64", "dev", host_if, "nodad"], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        subprocess.run(["ethtool", "-K", host_if, "gro", "on", "tx", "off"], capture_output=True)
        self.net.ip("inet", f"addr add {t.MGMT_INET}/64 dev mgmt0 nodad", "link set mgmt0 up")
        self.net.sh("inet", "ethtool", "-K", "mgmt0", "gro", "on", "tx", "off")
        for route in t.MGMT_ROUTES:
            subprocess.run(["ip", "-6", "route", "replace", route, "via", t.MGMT_INET, "dev", host_if], check=True)

    def metrics_targets(self) -> dict[str, str]:
        """node -> host:port of its metrics endpoint, reachable from the host."""
        return {node: t.metrics_address(node) for node in t.DAEMONS}

    def prometheus_config(self, scrape_interval: str = "5s") -> str:
        """A Prometheus scrape config for the lab's daemons (one job per role)."""
        jobs = {}
        for node, role in t.DAEMONS.items():
            jobs.setdefault(role, []).append(self.metrics_targets()[node])
        text = f"global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\n" \
               "scrape_configs:\n"
        for role, targets in jobs.items():
            quoted = ", ".join(f"'{target}'" for target in targets)
            text += f"  - job_name: pmip6-{role}\n    static_configs:\n      - targets: [{quoted}]\n"
        return text

    # --- MAG2's variants: behind the NAT, anchored at the second LMA -------------------------
    def modes(self) -> dict:
        try:
            return json.loads((self.lab_dir / "modes.json").read_text())
        except (FileNotFoundError, ValueError):
            return {"nat": False, "mag2_lma": "lma"}

    def nat_enabled(self) -> bool:
        return self.modes()["nat"]

    def set_nat(self, on: bool) -> None:
        """MAG2 behind a real nftables masquerade, on IPv4 transport (RFC 5844
        through a NAT), or back to IPv6 transport with no NAT."""
        self.reconfigure_mag2(nat=on, lma=self.modes()["mag2_lma"])

    def set_anchor(self, lma: str) -> None:
        """MAG2 registers with `lma` (lma2: scenario 2, MN2 anchored at
        another LMA than MN1)."""
        self.reconfigure_mag2(nat=self.modes()["nat"], lma=lma)

    def reconfigure_mag2(self, *, nat: bool, lma: str) -> None:
        """MAG2 restarts with its new config; MN2 leaves its old LMA first
        (a deregistration) and attaches again by Router Solicitation."""
        if lma not in t.LMAS:
            raise LabError(f"no LMA called {lma!r} in the lab ({', '.join(t.LMAS)})")
        for binding in self.client("mag2").call("bindings"):
            self.client("mag2").call("detach", mn_id=binding["mn_id"])
        time.sleep(0.3)
        self._set_nat_rules(nat)
        (self.lab_dir / "modes.json").write_text(json.dumps({"nat": nat, "mag2_lma": lma}))
        self.write_configs(set(t.IPV4_TRANSPORT_MAGS) | ({"mag2"} if nat else set()), 0, only="mag2",
                           anchors={"mag2": lma})
        self.stop_daemon("mag2")
        (self.socket("mag2").with_suffix(".state.json")).unlink(missing_ok=True)
        self.start_daemon("mag2")
        self.wait_ready("mag2")
        self.link_down("mn2")
        self.link_up("mn2")

    def _set_nat_rules(self, on: bool) -> None:
        nft = [*netns.nsenter_prefix(self.ns("nat")), "nft"]
        subprocess.run([*nft, "delete", "table", "ip", "pmip6nat"], capture_output=True)
        subprocess.run([*netns.nsenter_prefix(self.ns("nat")), "conntrack", "-F"], capture_output=True)
        timeout = t.NAT_UDP_TIMEOUT if on else 30
        self.sysctl("nat", net__netfilter__nf_conntrack_udp_timeout=timeout,
                    net__netfilter__nf_conntrack_udp_timeout_stream=timeout if on else 120)
        if on:
            _run([*nft, "-f", "-"], stdin=f"""table ip pmip6nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "out0" ip saddr {t.NAT_INSIDE} masquerade
    }}
}}
""")

    def sysctl(self, node: str, **settings) -> None:
        self.net.sysctl(node, **settings)

    def write_configs(self, ipv4_transport_mags, trigger_packets, only: str | None = None,
                      anchors: dict | None = None) -> None:
        (self.lab_dir / "logs").mkdir(parents=True, exist_ok=True)
        for node, text in lab_configs(str(self.run_dir), str(self.pin_root), ipv4_transport_mags=set(ipv4_transport_mags),
                                      trigger_packets=trigger_packets, anchors=anchors).items():
            if only is None or node == only:
                (self.lab_dir / f"{node}.toml").write_text(text)
        for name, key in lab_keys().items():            # readable by root only, as the daemons demand
            path = self.lab_dir / name
            path.parent.mkdir(mode=0o700, exist_ok=True)
            write_private(path, key + "\n")

    # --- daemons ------------------------------------------------------------------------
    def start_daemon(self, node: str) -> None:
        log = open(self.lab_dir / "logs" / f"{node}.log", "ab")
        argv = [*netns.nsenter_prefix(self.ns(node)), sys.executable, "-m", "pmip6ctl",
                t.DAEMONS[node], "run", "-c", str(self.lab_dir / f"{node}.toml")]
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        (self.lab_dir / f"{node}.pid").write_text(str(proc.pid))

    def pid(self, node: str) -> int | None:
        try:
            pid = int((self.lab_dir / f"{node}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:      # our child, and it exited
                return None
        except ChildProcessError:
            pass                                            # started by another process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def wait_ready(self, node: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid(node) is None:
                raise LabError(f"{node} exited during start-up; last lines of its log:\n{self.log_tail(node)}")
            try:
                return self.client(node, timeout=2).call("status")
            except (ConnectionError, OSError, CommandError):
                time.sleep(0.2)
        raise LabError(f"{node} not ready after {timeout:.0f} s; last lines of its log:\n{self.log_tail(node)}")

    def stop_daemon(self, node: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        pid = self.pid(node)
        if pid is None:
            return
        os.killpg(pid, sig)
        if not poll(lambda: self.pid(node) is None, timeout):
            os.killpg(pid, signal.SIGKILL)
            poll(lambda: self.pid(node) is None, 5.0)    # gone, its socket closed (down checks)

    def restart_daemon(self, node: str) -> None:
        self.start_daemon(node)
        self.wait_ready(node)

    def store(self, node: str) -> Path:
        """The node's SQLite store (its [store] path in the lab's config)."""
        return self.socket(node).with_suffix(".db")

    def forget_state(self, node: str) -> None:
        """Remove what the node keeps across a restart (its store, and the
        JSON state file of an older pmip6ctl): a reboot that lost its disk."""
        db = self.store(node)
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), self.socket(node).with_suffix(".state.json")):
            path.unlink(missing_ok=True)

    def log_tail(self, node: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.lab_dir / "logs" / f"{node}.log").read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # --- mobile nodes ------------------------------------------------------------------------
    def link_up(self, mn: str, ifname: str = "eth0") -> None:
        self.net.ip(mn, f"link set {ifname} up")

    def link_down(self, mn: str, ifname: str = "eth0") -> None:
        self.net.ip(mn, f"link set {ifname} down")

    def mn_addresses(self, mn: str, ifname: str = "eth0") -> list[str]:
        out = self.sh(mn, "ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "global")
        return [line.split()[3].split("/")[0] for line in out.splitlines()]

    def wait_mn_address(self, mn: str, timeout: float = 20.0, ifname: str = "eth0") -> str:
        addresses = poll(lambda: self.mn_addresses(mn, ifname), timeout, interval=0.1)
        if not addresses:
            raise LabError(f"{mn} got no address by SLAAC within {timeout:.0f} s")
        return addresses[0]

    def tcp_transfer(self, client: str, server: str, target: str, seconds: float = 2,
                     bind: str | None = None) -> dict:
        """An iperf3 TCP transfer from client to an iperf3 server in the
        server's namespace, at target; returns iperf3's JSON result."""
        listener = subprocess.Popen([*netns.nsenter_prefix(self.ns(server)), "iperf3", "-s", "-1"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            argv = ["iperf3", "-c", target, "-t", str(seconds), "-J", *(["-B", bind] if bind else [])]
            return json.loads(self.net.sh_ok(client, *argv))
        finally:
            try:
                listener.wait(timeout=10)
            except subprocess.TimeoutExpired:
                listener.kill()

    def mn_current_address(self, mn: str) -> str | None:
        """The MN's address in the prefix its binding holds now (after a
        re-anchoring its link may still hold the old prefix's address)."""
        mag = self.where(mn)
        entry = next((b for b in self.client(mag).call("bindings")
                      if b["mn_id"] == f"{mn}@lab.example" and b["hnp"]), None)
        if entry is None:
            return None
        prefix = ipaddress.ip_network(entry["hnp"])
        return next((a for a in self.mn_addresses(mn) if ipaddress.ip_address(a) in prefix), None)

    def configure_mn_ipv4(self, mn: str, hoa: str, ifname: str = "eth0") -> None:
        """RFC 5844 leaves IPv4 address delivery to DHCP; the lab configures
        the LMA's allocation statically (README: 'IPv4 MNs'), with the link
        MTU DHCP's Interface MTU option would carry: the RA's, which leaves
        room for the tunnel header (XDP cannot fragment)."""
        mtu = self.sh(mn, "cat", f"/proc/sys/net/ipv6/conf/{ifname}/mtu").strip()
        self.net.ip(mn, f"link set {ifname} mtu {mtu}", f"addr replace {hoa}/32 dev {ifname}",
                    f"route replace {t.ACCESS_GATEWAY4}/32 dev {ifname}",
                    f"route replace 0.0.0.0/0 via {t.ACCESS_GATEWAY4} dev {ifname}")

    def where(self, mn: str) -> str:
        """The MAG the MN is attached to now: whose port of its air is up and
        carries the MN's frames (flood on)."""
        ports = self.sh(t.AIR[mn], "ip", "-d", "-o", "link", "show", "master", t.AIR_BRIDGE)
        up = [line.split(":")[1].strip().split("@")[0] for line in ports.splitlines()
              if "UP" in line.split("<", 1)[1].split(">", 1)[0].split(",") and " flood on " in line]
        return next((mag for mag in up if mag != t.AIR_MN_PORT), t.HOME_MAG[mn])

    def _forwarding(self, air: str, port: str) -> bool:
        return " state forwarding " in self.sh(air, "ip", "-d", "-o", "link", "show", "dev", port)

    def move(self, mn: str, to: str, announce: bool = True) -> None:
        """Handover: the MN's radio leaves one MAG for the other. In its air
        the old MAG's port goes down (that MAG sees its carrier go and
        detaches the MN) and the new one's comes up (the new MAG sees the
        carrier, then the MN's traffic, which attaches it by its MAC). The MN
        sees nothing: its link, addresses, routes and neighbour entry stay
        (every MAG has the same access link-layer address). announce: the MN
        solicits a router on the link-layer attach (solicit()); False: the
        new MAG learns of it from its traffic alone."""
        home = t.HOME_MAG[mn]
        if to not in (home, t.AWAY_MAG):
            raise LabError(f"{mn} can move between {home} and {t.AWAY_MAG}, not to {to}")
        old = self.where(mn)
        if to == old:
            return
        # The new MAG's port comes up first, but silent (the hub floods nothing
        # to it) until the bridge forwards on it; then one batch of flag writes
        # turns the MN's frames from the old port to the new one (a break of
        # microseconds, not the milliseconds a veth takes to go down or come
        # up), and the old port goes down: the old MAG loses its carrier.
        air, silent = t.AIR[mn], "type bridge_slave flood off mcast_flood off bcast_flood off"
        self.net.ip(air, f"link set {to} {silent}", f"link set {to} up")
        if not poll(lambda: self._forwarding(air, to), 5.0, interval=0.002):
            raise LabError(f"{air}'s port toward {to} does not forward")
        self.net.ip(air, f"link set {old} {silent}", f"link set {to} type bridge_slave flood on mcast_flood on "
                    "bcast_flood on", f"link set {old} down")
        if announce:
            self.solicit(mn)

    def solicit(self, mn: str) -> None:
        """The MN's Router Solicitation on eth0, as a host does on a link-layer
        attach indication without a link flap (RFC 6059 §2.3: after a
        reassociation, DNA sends an RS). The new MAG learns the MN's MAC
        from it at once; without it, the MN's first packet does the same."""
        with netns.entered(self.ns(mn)):
            sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        with sock:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            mac = bytes.fromhex(t.MN_MACS[mn].replace(":", ""))
            rs = bytes([133, 0, 0, 0, 0, 0, 0, 0, 1, 1]) + mac        # RS + source link-layer address option
            with netns.entered(self.ns(mn)):
                index = socket.if_nametoindex("eth0")
            sock.sendto(rs, ("ff02::2", 0, 0, index))

    # --- down / status ---------------------------------------------------------------------------
    def down(self, quiet: bool = False) -> list[str]:
        for node in t.DAEMONS:
            try:
                self.stop_daemon(node)
            except (ProcessLookupError, PermissionError):
                pass
        removed = self.net.destroy(t.NODES)
        subprocess.run(["ip", "link", "del", self.mgmt_ifname], capture_output=True)
        shutil.rmtree(self.pin_root, ignore_errors=True)
        # Our daemons are stopped: a socket that still answers is someone else's,
        # and it stays, with that node's store.
        keep: set[Path] = set()
        for node in t.DAEMONS:
            if socket_is_live(self.socket(node)):
                db = self.store(node)
                keep |= {self.socket(node), db, Path(f"{db}-wal"), Path(f"{db}-shm"),
                         self.socket(node).with_suffix(".state.json")}
        if not keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        elif self.run_dir.is_dir():
            for path in self.run_dir.iterdir():
                if path in keep:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        if not quiet:
            self.progress(f"removed {len(removed)} namespaces, the pins in {self.pin_root} and {self.lab_dir}")
        return removed

    def status(self) -> dict:
        namespaces = self.namespaces()
        daemons = {}
        for node, role in t.DAEMONS.items():
            pid = self.pid(node)
            entry = {"role": role, "pid": pid, "running": pid is not None}
            if pid is not None:
                try:
                    entry["status"] = self.client(node, timeout=2).call("status")
                except (ConnectionError, OSError, CommandError) as exc:
                    entry["error"] = str(exc)
            daemons[node] = entry
        return {"namespaces": namespaces, "daemons": daemons, "logs": str(self.lab_dir / "logs")}
