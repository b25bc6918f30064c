/* LMA: the anchor between MAGs and the rest of the network.
 * parse -> tunnel from a MAG?   check the inner source is that MAG's MN, decapsulate
 *       -> destination an MN?   encapsulate toward its serving MAG
 *                               (between two MAGs: to the daemon's hold)
 *       -> decapsulated?        forward the inner packet
 *       -> else                 the kernel. */
#include "handover.h"

int xdp_lma(struct xdp_md *ctx)
{
    const __u32 prog = PROG_LMA;
    struct tunnel_info tun;
    struct ip_info ip;
    struct mn_entry *mn;
    int decapsulated = 0;
    int verdict, rc;

    rc = pmip_read_tunnel(ctx, prog, &tun, &verdict);
    if (rc < 0)
        return verdict;

    if (rc == TUNNEL_FOUND && pmip_is_local_address(&tun.outer.dst)) {
        if (pmip_is_signaling_for_us(&tun))
            return pmip_finish(ctx, prog, REASON_PASS_LOCAL);
        struct peer *peer = pmip_lookup_peer(&tun);
        if (!peer)
            return pmip_finish(ctx, prog, REASON_DROP_UNKNOWN_PEER);
        mn = pmip_lookup_mn(&tun.inner.src);
        if (!mn || mn->tunnel_id != peer->tunnel_id)
            return pmip_finish(ctx, prog, REASON_DROP_SPOOFED_INNER);
        if (pmip_propagate_ecn(&tun.outer, &tun.inner, (void *)(long)ctx->data_end))
            return pmip_finish(ctx, prog, REASON_DROP_ECN_NOT_ECT);
        if (pmip_decap_and_parse(ctx, &tun, &ip) != PARSE_OK)
            return pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
        decapsulated = 1;
    } else {
        ip = tun.outer;
    }

    if (pmip_is_link_scoped(&ip) || pmip_is_local_address(&ip.dst))
        return pmip_finish(ctx, prog, decapsulated ? REASON_PASS_DECAP_LOCAL : REASON_PASS_LOCAL);

    mn = pmip_lookup_mn(&ip.dst);
    if (mn && mn->ifindex == LMA_MN_HELD) {
        struct dp_config *cfg = pmip_dp_config();

        if (!cfg)
            return pmip_finish(ctx, prog, REASON_DROP_PUNT_FAILED);
        return pmip_punt_held(ctx, prog, cfg, REASON_PUNT_HELD_DOWNLINK);
    }
    if (mn)
        return pmip_encap_and_forward(ctx, prog, &ip, mn->tunnel_id,
                                 decapsulated ? REASON_FWD_REENCAP : REASON_FWD_ENCAP_PMIP, 1);
    if (!decapsulated)
        return pmip_finish(ctx, prog, REASON_PASS_NOT_MN);
    if (!pmip_decrement_hop_limit(&ip, (void *)(long)ctx->data_end))
        return pmip_finish(ctx, prog, REASON_PASS_HOP_LIMIT);
    return pmip_forward(ctx, prog, REASON_FWD_DECAP);
}
