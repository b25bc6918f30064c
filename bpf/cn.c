/* CN agent (draft §4): an RO-capable correspondent outside the domain.
 * xdp_cn, on its network interface: decapsulate tunnels from MAGs that hold
 *   an RO binding and hand the inner packet to the local stack.
 * xdp_cn_egress, on the far end of the agent's egress veth, where routes to
 *   optimized MN home addresses point: encapsulate toward the MAG. */
#include "tunnel.h"

int xdp_cn(struct xdp_md *ctx)
{
    const __u32 prog = PROG_CN;
    struct tunnel_info tun;
    struct peer *peer;
    int verdict, rc;

    rc = pmip_read_tunnel(ctx, prog, &tun, &verdict);
    if (rc < 0)
        return verdict;
    /* Signaling to the agent inside IPv4 (UDP 5436, or IPv6/MH in IPv4) goes
     * to its socket from any sender, as at a MAG: the daemon decides. */
    if (rc == TUNNEL_NONE || !pmip_is_local_address(&tun.outer.dst) || pmip_is_signaling_for_us(&tun))
        return pmip_finish(ctx, prog, REASON_PASS_LOCAL);

    peer = pmip_lookup_peer(&tun);
    if (!peer)
        return pmip_finish(ctx, prog, REASON_DROP_UNKNOWN_PEER);
    if (!pmip_ro_peer_may_send(ctx, prog, &tun, peer))
        return pmip_finish(ctx, prog, REASON_DROP_NO_RO_BINDING);
    if (pmip_propagate_ecn(&tun.outer, &tun.inner, (void *)(long)ctx->data_end))
        return pmip_finish(ctx, prog, REASON_DROP_ECN_NOT_ECT);
    if (pmip_decapsulate(ctx, tun.outer_len, tun.inner.eth_proto))
        return pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
    return pmip_finish(ctx, prog, REASON_PASS_DECAP_LOCAL);
}

int xdp_cn_egress(struct xdp_md *ctx)
{
    const __u32 prog = PROG_CN_EGRESS;
    struct ip_info ip;
    struct ro_entry *ro;
    int verdict;

    if (pmip_read_ip_header(ctx, prog, &ip, &verdict))
        return verdict;
    if (pmip_is_link_scoped(&ip))
        return pmip_finish(ctx, prog, REASON_PASS_LOCAL);

    ro = pmip_ro_to_send(&ip.src, &ip.dst);
    if (!ro)    /* the route to the MN outlived its binding: drop, the agent removes it */
        return pmip_finish(ctx, prog, REASON_DROP_NO_RO_BINDING);
    /* The CN originates these packets: no hop-limit decrement. */
    return pmip_encap_and_forward(ctx, prog, &ip, ro->tunnel_id, REASON_FWD_ENCAP_RO, 0);
}
