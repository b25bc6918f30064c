"""The RO query at the LMA (draft §2.1.1.1 "Details about query message is
TBD"; DESIGN §2): MAG1 asks with an LRI naming the MN and the CN, the LMA
answers with an LRA — status 0 with the serving MAG's IPv6 proxy CoA
(option 51) and its IPv4 proxy CoA (option 32) when it has one; 129 when it
anchors no such CN (MAG1 may then try the CN itself, scenario 3); 128 when
its policy forbids RO for the pair. When the CN is attached to the asking
MAG itself, status 0 with that MAG's own address is the LMA's consent to
local routing (RFC 6705), and 128 when lma.local_routing forbids it. A CN between two MAGs (its old MAG let
it go, its new one has not registered it yet) gets no answer yet: the MAG
asks again after its retransmission timeout and learns the new MAG, where an
answer now would send it to the old MAG or to scenario 3."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Callable

from .. import wire
from ..transport import Arrival, Send
from .vocabulary import QueryOutcome

Address = IPv6Address | IPv4Address


def named_addresses(lri: wire.LocalizedRoutingInitiation) -> tuple[Address | None, Address | None]:
    """(the MN's address or prefix address, the CN's address) an LRI names."""
    hnp = wire.find_option(lri, wire.HomeNetworkPrefix)
    hoa = wire.find_option(lri, wire.IPv4HomeAddress)
    cn6 = wire.find_option(lri, wire.CNAddress)
    cn4 = wire.find_option(lri, wire.CNIPv4Address)
    mn = hoa.address if hoa else hnp.prefix if hnp else None
    cn = cn6.address if cn6 else cn4.address if cn4 else None
    return mn, cn


def mag_address_options(mag: IPv6Address, mag_ipv4: IPv4Address | None) -> list:
    """An LRA's answer: the serving MAG's IPv6 address (option 51) and its
    IPv4 address (option 32) when it has one."""
    return [wire.MAGIPv6Address(mag)] + ([wire.IPv4CareofAddress(mag_ipv4)] if mag_ipv4 is not None else [])


def serving_mag_options(binding) -> list:
    """mag_address_options for the MAG a binding-cache entry names."""
    ipv4 = binding.ipv4_proxy_coa or (binding.mag_ipv4.address if binding.mag_ipv4 else None)
    return mag_address_options(binding.proxy_coa, ipv4)


def answer_lri(lri: wire.LocalizedRoutingInitiation, arrival: Arrival, lma_address: IPv6Address,
               binding_for: Callable[[Address], object | None],
               allowed: Callable[[Address, Address], bool],
               settling: Callable[[Address], bool],
               local_routing: Callable[[Address, Address], bool] = lambda mn, cn: True,
               ) -> tuple[Send | None, QueryOutcome]:
    """The LRA for lri (None: not answered yet), and how it was answered."""
    mn, cn = named_addresses(lri)
    options: list = []
    if mn is None or cn is None:
        status, outcome = wire.LRAStatus.LOCALIZED_ROUTING_NOT_ALLOWED, QueryOutcome.MALFORMED
    elif (owner := binding_for(mn)) is None or owner.proxy_coa != arrival.src:
        # only the MN's own MAG may ask about its flows
        status, outcome = wire.LRAStatus.LOCALIZED_ROUTING_NOT_ALLOWED, QueryOutcome.NOT_THE_SERVING_MAG
    elif not allowed(mn, cn):
        status, outcome = wire.LRAStatus.LOCALIZED_ROUTING_NOT_ALLOWED, QueryOutcome.DENIED_BY_POLICY
    elif settling(cn):
        return None, QueryOutcome.CN_BETWEEN_MAGS
    else:
        serving = binding_for(cn)
        if serving is None:
            status, outcome = wire.LRAStatus.MN_NOT_ATTACHED, QueryOutcome.CN_NOT_ANCHORED
        elif serving.proxy_coa == arrival.src and not local_routing(mn, cn):
            status, outcome = wire.LRAStatus.LOCALIZED_ROUTING_NOT_ALLOWED, QueryOutcome.LOCAL_ROUTING_DENIED
        else:
            local = serving.proxy_coa == arrival.src
            status, outcome = wire.LRAStatus.SUCCESS, QueryOutcome.LOCAL_ROUTING if local else QueryOutcome.ANSWERED
            options = serving_mag_options(serving)
    lra = wire.LocalizedRoutingAck(sequence=lri.sequence, status=status,
                                   lifetime=lri.lifetime if status == wire.LRAStatus.SUCCESS else 0,
                                   options=options + echoed_timestamp(lri))
    return arrival.reply(lra, lma_address), outcome


def echoed_timestamp(request: wire.Message) -> list:
    """An answer carries the Timestamp of its request (as a PBA does, RFC
    5213 §5.3.6): the asker takes only the answer to what it asked."""
    stamp = wire.find_option(request, wire.Timestamp)
    return [stamp] if stamp is not None else []
