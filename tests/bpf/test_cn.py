"""CN agent (scenario 3): decapsulation of RO tunnels, encapsulation of replies."""

import pytest
from scapy.layers.l2 import Ether

from pmip6ctl.dataplane import Encap, PeerKind, Tunnel

from .conftest import LOCAL6, MN6, PEER6
from .packets import from_next_hop, outer6, tcp6, toward_next_hop

pytestmark = pytest.mark.root
CN_SELF = LOCAL6          # the CN agent's own address (the netns's out0)


def bind_ro(cn):
    cn.tables.set_tunnel(1, Tunnel(Encap.IP6, LOCAL6, PEER6))
    cn.tables.set_peer(PEER6, 1, PeerKind.RO)
    cn.tables.set_ro(CN_SELF, MN6, 1)


def test_tunnel_from_the_bound_mag_is_decapsulated_for_the_local_stack(cn):
    bind_ro(cn)
    inner = tcp6(MN6, CN_SELF)
    frame = from_next_hop(outer6(PEER6, CN_SELF, inner))

    result = cn.run("xdp_cn", frame, "out0")

    assert result.action == "pass"
    assert result.packet == bytes(Ether(frame[:14]) / inner)


def test_tunnel_without_ro_binding_is_dropped_and_reported(cn):
    cn.tables.set_tunnel(1, Tunnel(Encap.IP6, LOCAL6, PEER6))
    cn.tables.set_peer(PEER6, 1, PeerKind.RO)
    result = cn.run("xdp_cn", from_next_hop(outer6(PEER6, CN_SELF, tcp6(MN6, CN_SELF))), "out0")
    assert result.action == "drop"
    assert [e.kind for e in cn.drain_events()] == ["no_ro_binding"]


def test_reply_to_the_mn_home_address_is_encapsulated_toward_its_mag(cn):
    bind_ro(cn)
    reply = tcp6(CN_SELF, MN6)

    result = cn.run("xdp_cn_egress", bytes(Ether() / reply), "in0")

    assert result.action == "redirect"
    # the CN originates the reply: its hop limit is not decremented
    assert result.packet == toward_next_hop(cn.mac("out0"), outer6(LOCAL6, PEER6, reply))
