"""Map pressure without a walk (issue 14): the entries dataplane/tables.py
counts as it writes equal what a walk of the real maps finds, after
installs, updates, removals and batches; the flows the MAG access program
creates are counted by XDP itself."""

import ipaddress
import socket

import pytest

from pmip6ctl import netns
from pmip6ctl.dataplane import Encap, Tunnel
from pmip6ctl.dataplane.tables import PeerKind, RoEntry

from .conftest import CN6, LMA6, LOCAL6, MN4, MN6, MN_PREFIX, NS, PEER6
from .packets import from_mn, ping6

pytestmark = pytest.mark.root


def walked(tables) -> dict[str, int]:
    """What each map holds, by a walk (what the counts replace)."""
    counts = {name: sum(1 for _ in getattr(tables, name).keys())
              for name in ("mn_table", "ro_table", "peers", "tx_ports", "flows")}
    counts["tunnels"] = len(tables.list_tunnels())
    if tables.local_routes is not None:                         # the MAG's alone
        counts["local_routes"] = sum(1 for _ in tables.local_routes.keys())
    return counts


def kept(tables) -> dict[str, int]:
    return {name: used for name, (used, _) in tables.map_pressure().items()}


def test_counts_kept_on_write_equal_the_maps(mag):
    t = mag.tables
    assert kept(t) == walked(t)
    t.set_tunnel(1, Tunnel(Encap.IP6, LOCAL6, LMA6))
    t.set_tunnel(1, Tunnel(Encap.IP6, LOCAL6, LMA6))           # rewritten: no new slot
    t.set_tunnel(2, Tunnel(Encap.IP6, LOCAL6, PEER6))
    t.set_mn(MN_PREFIX, 1)
    t.set_mn(MN_PREFIX, 1, ifindex=3)                          # an update of the same prefix
    t.set_mn(f"{MN4}/32", 1)
    t.set_mn(f"{MN6}/128", 1)                                  # inside the /64: its own entry
    t.set_peer(LMA6, 1, PeerKind.LMA)
    t.set_peer(LMA6, 1, PeerKind.LMA)
    t.set_peer(PEER6, 2, PeerKind.RO, port=5436)
    t.set_ro(MN6, CN6, 2)
    t.set_ro(MN6, CN6, 2, draining=True)
    t.set_local_route(MN6, CN6, 3)
    t.set_local_route(MN6, CN6, 3, expires_ns=1)               # a refresh: the same entry
    t.set_local_route(CN6, MN6, 3)
    assert kept(t) == walked(t)
    assert kept(t)["local_routes"] == 2
    assert kept(t)["mn_table"] == 3 and kept(t)["tunnels"] == 2 and kept(t)["peers"] == 2

    t.remove_mn(f"{MN6}/128")
    t.remove_mn(f"{MN6}/128")                                  # gone already: nothing to take off
    t.remove_peer(PEER6, port=5436)
    t.remove_ro(MN6, CN6)
    t.remove_ro(MN6, CN6)
    t.remove_local_route(MN6, CN6)
    t.remove_local_route(MN6, CN6)
    t.remove_tunnel(2)
    t.remove_tunnel(2)
    assert kept(t) == walked(t)

    with netns.entered(NS):
        ports = [socket.if_nametoindex("in0"), socket.if_nametoindex("out0")]
    t.remove_tx_port(ports[0])
    t.set_tx_ports(ports)                                      # one new, one held already
    assert kept(t) == walked(t)


def test_a_batch_counts_only_the_new_pairs(mag):
    t = mag.tables
    pairs = [(ipaddress.IPv6Address(int(ipaddress.IPv6Address(MN6)) + i), ipaddress.IPv6Address(CN6))
             for i in range(300)]
    t.set_ro(*pairs[10], 1)
    t.set_ro(*pairs[200], 1)
    t.set_ro_batch(RoEntry(local, remote, 1) for local, remote in pairs)
    assert kept(t)["ro_table"] == walked(t)["ro_table"] == 300
    t.clear_ro()
    assert kept(t)["ro_table"] == walked(t)["ro_table"] == 0


def test_flows_xdp_creates_are_counted_by_xdp(mag):
    t = mag.tables
    t.set_tunnel(1, Tunnel(Encap.IP6, LOCAL6, LMA6))
    t.set_mn(MN_PREFIX, 1)
    before = kept(t)["flows"]
    for i in range(5):                                         # five flows, each seen twice
        frame = from_mn(ping6(MN6, str(ipaddress.IPv6Address(CN6) + i)))
        mag.run("xdp_mag_access", frame, "in0")
        mag.run("xdp_mag_access", frame, "in0")
    assert kept(t)["flows"] == before + 5 == walked(t)["flows"]


def test_recount_takes_in_what_others_wrote(mag):
    t = mag.tables
    t.set_mn(MN_PREFIX, 1)
    t.mn_table.clear()                                          # behind the typed writers' back
    assert kept(t)["mn_table"] == 1
    t.recount()
    assert kept(t) == walked(t)
