"""Typed access to the data-plane maps (bcc tables pinned per node).

Addresses go in and come out as ipaddress objects; IPv4 is stored
IPv4-mapped, as bpf/maps.h describes. Nothing here knows about protocols:
the daemons decide what goes in.

Every write of the daemon goes through here, so the entries of each map
are counted as they are written (issue 14): a new key adds one (an insert
with BPF_NOEXIST says whether the key is new), a delete that found its key
takes one off. `status` and a scrape read these counts and never walk a
map. The counts start from one walk when the maps are opened, which takes
in what a previous run (or anyone) left in the pins; a map written behind
the daemon's back since is counted again by `recount()`. The flows map is
written by XDP alone, which counts what it inserts (flows_created).
"""

from __future__ import annotations

import ctypes
import enum
import errno
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

from .. import defs
from ..transport import Encap, Tunnel


def deadline_ns(seconds: float) -> int:
    """The time.monotonic_ns() deadline `seconds` from now (now, if negative):
    the clock the XDP programs compare an entry's expires_ns with."""
    return time.monotonic_ns() + int(max(seconds, 0) * 1e9)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


RO_RX_ONLY = defs.constants()["RO_RX_ONLY"]
RO_DRAINING = defs.constants()["RO_DRAINING"]
LMA_MN_HELD = defs.constants()["LMA_MN_HELD"]     # mn_entry.ifindex at the LMA: the MN's downlink is held
BPF_ANY, BPF_NOEXIST = 0, 1          # update flags (linux/bpf.h)

# The maps whose entries map_pressure() reports: those the daemon writes, and flows.
COUNTED = ("mn_table", "ro_table", "peers", "tx_ports", "tunnels")


class PeerKind(enum.IntEnum):
    LMA = defs.constants()["PEER_LMA"]
    MAG = defs.constants()["PEER_MAG"]
    RO = defs.constants()["PEER_RO"]


_V4_MAPPED = bytes(10) + b"\xff\xff"


def pack_address(addr: IPAddress | str) -> bytes:
    """16 octets; IPv4 as ::ffff:a.b.c.d. An address object is used as it
    is (ip_address() of one formats it as text and parses it back)."""
    if not isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        addr = ipaddress.ip_address(addr)
    if addr.version == 4:
        return _V4_MAPPED + addr.packed
    return addr.packed


def unpack_address(raw: bytes) -> IPAddress:
    v6 = ipaddress.IPv6Address(bytes(raw))
    return v6.ipv4_mapped or v6


def _set_addr(field, addr: IPAddress | str) -> None:
    ctypes.memmove(ctypes.addressof(field), pack_address(addr), 16)


def _get_addr(field) -> IPAddress:
    return unpack_address(ctypes.string_at(ctypes.addressof(field), 16))


@dataclass(frozen=True)
class RoEntry:
    local: IPAddress
    remote: IPAddress
    tunnel_id: int
    expires_ns: int = 0          # time.monotonic_ns() deadline; 0 = none
    also_from_tunnel: int = 0    # a second tunnel the peer may send through; 0 = none
    flags: int = 0               # RO_RX_ONLY, RO_DRAINING


@dataclass(frozen=True)
class Peer:
    address: IPAddress
    port: int
    tunnel_id: int
    kind: PeerKind


@dataclass(frozen=True)
class Counter:
    program: str
    verdict: str
    reason: str
    packets: int
    bytes: int


def sum_counters(per_cpu_rows: Iterable[Iterable[tuple[int, int]]]) -> list[tuple[int, int]]:
    """Sums (packets, bytes) per key over CPUs: rows[key][cpu] -> [key]."""
    return [
        (sum(p for p, _ in cpus), sum(b for _, b in cpus))
        for cpus in per_cpu_rows
    ]


class Tables:
    """The maps of one node, as loaded or reopened by the loader."""

    def __init__(self, bpf):
        self._bpf = bpf
        self.mn_table = bpf["mn_table"]
        self.ro_table = bpf["ro_table"]
        self.tunnels = bpf["tunnels"]
        self.peers = bpf["peers"]
        self.local_addrs = bpf["local_addrs"]
        self.config = bpf["config"]
        self.stats = bpf["stats"]
        self.event_stats = bpf["event_stats"]
        self.tx_ports = bpf["tx_ports"]
        self.flows = bpf["flows"]
        self.flows_created = bpf["flows_created"]
        self.budgets = bpf["budgets"]
        try:                                  # the MAG's alone (bpf/local_route.h)
            self.local_routes = bpf["local_routes"]
        except KeyError:
            self.local_routes = None
        self._entries: dict[str, int] = {}
        self._flows_base = (0, 0)         # (flows held, flows_created) when last walked
        self.recount()

    # --- entries, kept as they are written ----------------------------------
    def recount(self) -> dict[str, int]:
        """Walk the maps once and count their entries again: at start, and
        when something else may have written the pinned maps."""
        self._entries = {name: sum(1 for _ in getattr(self, name).keys()) for name in ("mn_table", "tx_ports")}
        self._entries.update(ro_table=_count(self.ro_table), peers=_count(self.peers))
        if self.local_routes is not None:
            self._entries["local_routes"] = _count(self.local_routes)
        self._entries["tunnels"] = sum(1 for _, leaf in self.tunnels.items() if leaf.type)
        created = self._flows_created()
        self._flows_base = (_count(self.flows), created)
        return dict(self._entries)

    def _flows_created(self) -> int:
        return sum(int(v) for v in self.flows_created.getvalue(self.flows_created.Key(0)))

    def _insert(self, name: str, table, key, leaf) -> None:
        """table[key] = leaf, counting the key when it is new."""
        if _update(table, key, leaf, BPF_NOEXIST):
            self._entries[name] += 1
        else:
            table[key] = leaf

    def _remove(self, name: str, table, key) -> None:
        if self._delete(table, key):
            self._entries[name] -= 1

    # --- configuration ------------------------------------------------
    def set_config(self, *, ro_trigger_packets: int, event_interval_ms: int, hop_limit: int,
                   punt_rate: int = 0, punt_burst: int = 1, icmp_rate: int = 0, icmp_burst: int = 1,
                   handover: bool = False) -> None:
        """punt_rate: punts and notices per second and CPU the daemon takes
        (0: no limit), punt_burst: how many at once. icmp_rate, icmp_burst:
        the same for the ICMP errors (Packet Too Big) the data plane sends.
        handover (MAG): an unknown source's frames go to the daemon's
        handover buffer (bpf/handover.h) instead of a notice."""
        leaf = self.config.Leaf()
        leaf.ro_trigger_packets = ro_trigger_packets
        leaf.event_interval_ms = event_interval_ms
        leaf.hop_limit = hop_limit
        leaf.punt_interval_ns = 1_000_000_000 // punt_rate if punt_rate else 0
        leaf.punt_burst = punt_burst
        leaf.icmp_interval_ns = 1_000_000_000 // icmp_rate if icmp_rate else 0
        leaf.icmp_burst = icmp_burst
        leaf.handover = int(handover)
        self.config[self.config.Key(0)] = leaf

    def get_config(self) -> dict[str, int]:
        leaf = self.config[self.config.Key(0)]
        return {
            "ro_trigger_packets": leaf.ro_trigger_packets,
            "event_interval_ms": leaf.event_interval_ms,
            "hop_limit": leaf.hop_limit,
            "punt_rate": 1_000_000_000 // leaf.punt_interval_ns if leaf.punt_interval_ns else 0,
            "punt_burst": leaf.punt_burst,
            "icmp_rate": 1_000_000_000 // leaf.icmp_interval_ns if leaf.icmp_interval_ns else 0,
            "icmp_burst": leaf.icmp_burst,
            "handover": bool(leaf.handover),
        }

    # --- tunnels --------------------------------------------------------
    def set_tunnel(self, tunnel_id: int, tunnel: Tunnel) -> None:
        if not 0 < tunnel_id < self.tunnels.max_entries:
            raise ValueError(f"tunnel id {tunnel_id} outside 1..{self.tunnels.max_entries - 1}")
        old = self.tunnels[self.tunnels.Key(tunnel_id)]
        if not old.type:
            self._entries["tunnels"] += 1             # a slot in use from now on
        leaf = self.tunnels.Leaf()
        leaf.type = int(tunnel.encap)
        leaf.generation = (old.generation + 1) & 0xFFFFFFFF   # invalidates cached next hops
        leaf.sport = socket.htons(tunnel.sport)
        leaf.dport = socket.htons(tunnel.dport)
        _set_addr(leaf.local, tunnel.local)
        _set_addr(leaf.remote, tunnel.remote)
        self.tunnels[self.tunnels.Key(tunnel_id)] = leaf

    def remove_tunnel(self, tunnel_id: int) -> None:
        key = self.tunnels.Key(tunnel_id)
        old = self.tunnels[key]
        if old.type:
            self._entries["tunnels"] -= 1
        leaf = self.tunnels.Leaf()
        leaf.generation = (old.generation + 1) & 0xFFFFFFFF
        self.tunnels[key] = leaf                           # type 0: unused slot

    def list_tunnels(self) -> dict[int, Tunnel]:
        return {
            key.value: Tunnel(
                Encap(leaf.type), _get_addr(leaf.local), _get_addr(leaf.remote),
                socket.ntohs(leaf.sport), socket.ntohs(leaf.dport),
            )
            for key, leaf in self.tunnels.items()
            if leaf.type
        }

    def clear_tunnels(self) -> None:
        for tunnel_id in self.list_tunnels():
            self.remove_tunnel(tunnel_id)

    # --- mobile nodes (prefixes / IPv4 home addresses) ------------------
    def _prefix_key(self, prefix):
        net = prefix if isinstance(prefix, (ipaddress.IPv4Network, ipaddress.IPv6Network)) else \
            ipaddress.ip_network(prefix)
        key = self.mn_table.Key()
        key.prefixlen = net.prefixlen + (96 if net.version == 4 else 0)
        _set_addr(key.addr, net.network_address)
        return key

    def set_mn(self, prefix, tunnel_id: int, ifindex: int = 0) -> None:
        """ifindex (a MAG's): the access link the MN is attached on; its
        packets from any other link are dropped (0: any link)."""
        leaf = self.mn_table.Leaf()
        leaf.tunnel_id = tunnel_id
        leaf.ifindex = ifindex
        self._insert("mn_table", self.mn_table, self._prefix_key(prefix), leaf)

    def remove_mn(self, prefix) -> None:
        self._remove("mn_table", self.mn_table, self._prefix_key(prefix))

    def list_mns(self, with_ifindex: bool = False) -> dict:
        """prefix -> tunnel id (with_ifindex: (tunnel id, ifindex))."""
        result = {}
        for key, leaf in self.mn_table.items():
            addr = _get_addr(key.addr)
            plen = key.prefixlen - (96 if addr.version == 4 else 0)
            result[ipaddress.ip_network((int(addr), plen)) if addr.version == 6 else
                   ipaddress.IPv4Network((int(addr), plen))] = \
                (leaf.tunnel_id, leaf.ifindex) if with_ifindex else leaf.tunnel_id
        return result

    # --- route-optimized pairs --------------------------------------------
    def _ro_key(self, local, remote):
        key = self.ro_table.Key()
        _set_addr(key.local, local)
        _set_addr(key.remote, remote)
        return key

    def set_ro(self, local, remote, tunnel_id: int, expires_ns: int = 0, rx_only: bool = False,
               also_from_tunnel: int = 0, draining: bool = False, reconfirm: bool = False) -> None:
        """expires_ns: a time.monotonic_ns() deadline after which the data
        plane itself ignores the entry (0: never). rx_only: accept the peer's
        traffic but send nothing until its first packet arrives (RO_RX_ONLY);
        an entry the data plane already confirmed stays confirmed.
        also_from_tunnel: a second tunnel whose peer's traffic the entry
        accepts (the peer's own RO exchange chose another transport).
        draining: our side stopped; accept the peer's traffic, send nothing
        (RO_DRAINING), until the daemon removes the entry. reconfirm: rx_only
        even if the data plane had confirmed the entry (the peer may be gone)."""
        key = self._ro_key(local, remote)
        current = self.ro_table.get(key)
        if current is not None and current.tunnel_id == tunnel_id and not current.flags & RO_RX_ONLY \
                and not reconfirm:
            rx_only = False
        leaf = self.ro_table.Leaf()
        leaf.tunnel_id = tunnel_id
        leaf.also_from_tunnel = also_from_tunnel
        leaf.expires_ns = expires_ns
        leaf.flags = (RO_RX_ONLY if rx_only else 0) | (RO_DRAINING if draining else 0)
        if current is None:
            self._insert("ro_table", self.ro_table, key, leaf)
        else:
            self.ro_table[key] = leaf

    def ro_flags(self, local, remote) -> int | None:
        leaf = self.ro_table.get(self._ro_key(local, remote))
        return None if leaf is None else leaf.flags

    def set_ro_batch(self, entries: Iterable[RoEntry]) -> None:
        """Installs many pairs with one BPF_MAP_UPDATE_BATCH call (the kernel
        takes no BPF_NOEXIST in a batch: the table is counted after, by
        BPF_MAP_LOOKUP_BATCH)."""
        entries = list(entries)
        if not entries:
            return
        keys = (self.ro_table.Key * len(entries))()
        leaves = (self.ro_table.Leaf * len(entries))()
        for i, entry in enumerate(entries):
            _set_addr(keys[i].local, entry.local)
            _set_addr(keys[i].remote, entry.remote)
            leaves[i].tunnel_id = entry.tunnel_id
            leaves[i].also_from_tunnel = entry.also_from_tunnel
            leaves[i].expires_ns = entry.expires_ns
        self.ro_table.items_update_batch(keys, leaves)
        self._entries["ro_table"] = _count(self.ro_table)     # (a bulk install: counted in bulk, no walk)

    def remove_ro(self, local, remote) -> None:
        self._remove("ro_table", self.ro_table, self._ro_key(local, remote))

    def list_ro(self) -> list[RoEntry]:
        return [
            RoEntry(_get_addr(key.local), _get_addr(key.remote), leaf.tunnel_id, leaf.expires_ns,
                    leaf.also_from_tunnel, leaf.flags)
            for key, leaf in self.ro_table.items()
        ]

    def clear_ro(self) -> None:
        """Empties the table with BPF_MAP_LOOKUP_AND_DELETE_BATCH: bcc's
        clear() deletes key by key and took ten minutes for a million."""
        self.ro_table.items_delete_batch()
        self._entries["ro_table"] = 0

    # --- local routes (RFC 6705, MAG only) ----------------------------------
    def set_local_route(self, local, remote, ifindex: int, expires_ns: int = 0) -> None:
        """local → remote onto the access link ifindex, where remote is
        attached; expires_ns: a time.monotonic_ns() deadline (0: never)."""
        key = self._local_key(local, remote)
        leaf = self.local_routes.Leaf()
        leaf.ifindex = ifindex
        leaf.expires_ns = expires_ns
        self._insert("local_routes", self.local_routes, key, leaf)

    def remove_local_route(self, local, remote) -> None:
        self._remove("local_routes", self.local_routes, self._local_key(local, remote))

    def _local_key(self, local, remote):
        key = self.local_routes.Key()
        _set_addr(key.local, local)
        _set_addr(key.remote, remote)
        return key

    def list_local_routes(self) -> list[tuple[IPAddress, IPAddress, int, int]]:
        """(local, remote, ifindex, expires_ns) of each entry."""
        return [(_get_addr(key.local), _get_addr(key.remote), leaf.ifindex, leaf.expires_ns)
                for key, leaf in self.local_routes.items()]

    # --- tunnel peers allowed to send us tunnelled traffic ---------------
    def _peer_key(self, address, port: int):
        key = self.peers.Key()
        _set_addr(key.addr, address)
        key.port = socket.htons(port)
        return key

    def set_peer(self, address, tunnel_id: int, kind: PeerKind, port: int = 0) -> None:
        leaf = self.peers.Leaf()
        leaf.tunnel_id = tunnel_id
        leaf.kind = int(kind)
        self._insert("peers", self.peers, self._peer_key(address, port), leaf)

    def remove_peer(self, address, port: int = 0) -> None:
        self._remove("peers", self.peers, self._peer_key(address, port))

    def list_peers(self) -> list[Peer]:
        return [
            Peer(_get_addr(key.addr), socket.ntohs(key.port), leaf.tunnel_id, PeerKind(leaf.kind))
            for key, leaf in self.peers.items()
        ]

    # --- this node's own addresses and egress ports -----------------------
    def set_local_addresses(self, addresses: Iterable[IPAddress]) -> None:
        wanted = {pack_address(a) for a in addresses}
        for key in list(self.local_addrs.keys()):
            if bytes(key.b) not in wanted:
                self._delete(self.local_addrs, key)
        for raw in wanted:
            key = self.local_addrs.Key()
            ctypes.memmove(ctypes.addressof(key), raw, 16)
            self.local_addrs[key] = ctypes.c_uint32(1)

    def list_local_addresses(self) -> list[IPAddress]:
        return [unpack_address(bytes(key.b)) for key in self.local_addrs.keys()]

    def set_tx_ports(self, ifindexes: Iterable[int]) -> list[int]:
        """Interfaces a redirect may leave through (xdp-forward's devmap,
        keyed by ifindex). Returns those that did not fit (the devmap is
        full: their packets go to the kernel, counted as pass_no_egress)."""
        refused = []
        for ifindex in ifindexes:
            try:
                self._insert("tx_ports", self.tx_ports, self.tx_ports.Key(ifindex), self.tx_ports.Leaf(ifindex))
            except Exception:              # bcc: "Could not update table" (E2BIG when full)
                refused.append(ifindex)
        return refused

    def remove_tx_port(self, ifindex: int) -> None:
        self._remove("tx_ports", self.tx_ports, self.tx_ports.Key(ifindex))

    def list_tx_ports(self) -> list[int]:
        return sorted(key.value for key in self.tx_ports.keys())

    # --- counters ---------------------------------------------------------------
    def counters(self) -> list[Counter]:
        """Packets and bytes per (program, reason), summed over CPUs now."""
        reasons = defs.reasons()
        programs = defs.programs()
        rows = []
        for prog_id in sorted(programs):
            for reason in reasons:
                key = self.stats.Key(defs.stats_key(prog_id, reason.index))
                rows.append([(v.packets, v.bytes) for v in self.stats.getvalue(key)])
        totals = sum_counters(rows)
        result = []
        i = 0
        for prog_id in sorted(programs):
            for reason in reasons:
                packets, nbytes = totals[i]
                i += 1
                result.append(Counter(programs[prog_id], reason.verdict, reason.name, packets, nbytes))
        return result

    def event_counts(self) -> dict[tuple[str, str], int]:
        kinds = defs.event_kinds()
        result = {}
        for prog_id, prog in defs.programs().items():
            for kind_id, kind in kinds.items():
                values = self.event_stats.getvalue(self.event_stats.Key(defs.event_stats_key(prog_id, kind_id)))
                result[(prog, kind)] = sum(int(v) for v in values)
        return result

    def map_entries(self, name: str) -> tuple[int, int]:
        """(entries, capacity) of one map, as counted on write: no walk. For
        flows, those held at the last walk plus those XDP created since, up
        to the capacity (the LRU pushes out the least recent past it; near
        full it may push out a few hundred early, per-CPU free lists)."""
        table = getattr(self, name)
        if name == "flows":
            held, created = self._flows_base
            return min(held + self._flows_created() - created, table.max_entries), table.max_entries
        return self._entries[name], table.max_entries

    def map_pressure(self) -> dict[str, tuple[int, int]]:
        """map name -> (entries, capacity): the maps the daemon writes, and flows."""
        names = ("mn_table", "ro_table", "peers", "flows", "tx_ports", "tunnels")
        return {name: self.map_entries(name) for name in names + (("local_routes",) if self.local_routes is not None else ())}

    @staticmethod
    def _delete(table, key) -> bool:
        """Whether the key was there."""
        try:
            del table[key]
        except KeyError:
            return False
        return True

    def iter_flows(self) -> Iterator[tuple[IPAddress, IPAddress, int]]:
        for key, leaf in self.flows.items():
            yield _get_addr(key.local), _get_addr(key.remote), leaf.packets


def _update(table, key, leaf, flags: int) -> bool:
    """table[key] = leaf under flags; False when BPF_NOEXIST found the key held."""
    from bcc.libbcc import lib         # (bcc: only where maps are open)
    if lib.bpf_update_elem(table.map_fd, ctypes.cast(ctypes.byref(key), ctypes.c_void_p),
                           ctypes.cast(ctypes.byref(leaf), ctypes.c_void_p), flags) >= 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        return False
    raise OSError(err, f"could not update table: {errno.errorcode.get(err, err)}")


def _count(table) -> int:
    """A hash map's entries by BPF_MAP_LOOKUP_BATCH: a few system calls and
    no Python per entry (else, for maps without batches, a walk)."""
    from bcc.libbcc import lib
    size = table.max_entries
    keys, leaves = (table.Key * size)(), (table.Leaf * size)()
    batch, count, total = ctypes.c_uint32(0), ctypes.c_uint32(0), 0
    while True:
        count.value = size - total
        res = lib.bpf_lookup_batch(table.map_fd, ctypes.byref(batch) if total else None, ctypes.byref(batch),
                                   ctypes.byref(keys, ctypes.sizeof(table.Key) * total),
                                   ctypes.byref(leaves, ctypes.sizeof(table.Leaf) * total), ctypes.byref(count))
        err = ctypes.get_errno()
        total += count.value
        if res != 0:
            if err == errno.ENOENT:                  # the end of the map
                return total
            if err in (errno.EINVAL, errno.EOPNOTSUPP, 524):     # no batches here (524: ENOTSUPP)
                return sum(1 for _ in table.keys())
            raise OSError(err, f"BPF_MAP_LOOKUP_BATCH: {errno.errorcode.get(err, err)}")
        if total == size or count.value == 0:
            return total
