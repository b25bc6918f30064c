/* LMA: the anchor between MAGs and the rest of the network.
 * parse -> tunnel from a MAG?   check the inner source is that MAG's MN, decapsulate
 *       -> destination an MN?   encapsulate toward its serving MAG
 *       -> decapsulated?        forward the inner packet
 *       -> else                 the kernel. */
#include "tunnel.h"

int xdp_lma(struct xdp_md *ctx)
{
    const __u32 prog = PROG_LMA;
    struct tunnel_info tun;
    struct ip_info ip;
    struct mn_entry *mn;
    int decapsulated = 0;
    int verdict, rc;

    rc = read_tunnel(ctx, prog, &tun, &verdict);
    if (rc < 0)
        return verdict;

    if (rc == TUNNEL_FOUND && is_local_address(&tun.outer.dst)) {
        if (is_signaling_for_us(&tun))
            return finish(ctx, prog, REASON_PASS_LOCAL);
        struct peer *peer = lookup_peer(&tun);
        if (!peer)
            return finish(ctx, prog, REASON_DROP_UNKNOWN_PEER);
        mn = lookup_mn(&tun.inner.src);
        if (!mn || mn->tunnel_id != peer->tunnel_id)
            return finish(ctx, prog, REASON_DROP_SPOOFED_INNER);
        if (decap_and_parse(ctx, &tun, &ip) != PARSE_OK)
            return finish(ctx, prog, REASON_DROP_MALFORMED);
        decapsulated = 1;
    } else {
        ip = tun.outer;
    }

    if (is_link_scoped(&ip) || is_local_address(&ip.dst))
        return finish(ctx, prog, decapsulated ? REASON_PASS_DECAP_LOCAL : REASON_PASS_LOCAL);

    mn = lookup_mn(&ip.dst);
    if (mn)
        return encap_and_forward(ctx, prog, &ip, mn->tunnel_id,
                                 decapsulated ? REASON_FWD_REENCAP : REASON_FWD_ENCAP_PMIP, 1);
    if (!decapsulated)
        return finish(ctx, prog, REASON_PASS_NOT_MN);
    if (!decrement_hop_limit(&ip, (void *)(long)ctx->data_end))
        return finish(ctx, prog, REASON_PASS_HOP_LIMIT);
    return forward(ctx, prog, REASON_FWD_DECAP);
}
