/* MAG, transport side: packets from the LMA and from RO peers.
 * parse -> not a tunnel for us?          the kernel (signaling to the MAG itself)
 *       -> tunnel from an unknown source? drop
 *       -> mobility message for an MN?    punt to the daemon (proxy RR, draft §3)
 *       -> inner destination attached?    decapsulate and deliver. */
#include "tunnel.h"

int xdp_mag_transport(struct xdp_md *ctx)
{
    const __u32 prog = PROG_MAG_TRANSPORT;
    struct tunnel_info tun;
    struct ip_info ip;
    struct peer *peer;
    int verdict, rc;

    rc = read_tunnel(ctx, prog, &tun, &verdict);
    if (rc < 0)
        return verdict;
    if (rc == TUNNEL_NONE || !is_local_address(&tun.outer.dst) || is_signaling_for_us(&tun))
        return finish(ctx, prog, REASON_PASS_LOCAL);

    peer = lookup_peer(&tun);
    if (!peer)
        return finish(ctx, prog, REASON_DROP_UNKNOWN_PEER);
    if (!lookup_mn(&tun.inner.dst))
        return finish(ctx, prog, REASON_DROP_NOT_ATTACHED);
    if (carries_mobility_message(&tun.inner, (void *)(long)ctx->data_end))
        return punt(ctx, prog);
    if (peer->kind == PEER_RO && !ro_peer_may_send(ctx, prog, &tun, peer))
        return finish(ctx, prog, REASON_DROP_NO_RO_BINDING);

    if (decap_and_parse(ctx, &tun, &ip) != PARSE_OK)
        return finish(ctx, prog, REASON_DROP_MALFORMED);
    if (!decrement_hop_limit(&ip, (void *)(long)ctx->data_end))
        return finish(ctx, prog, REASON_PASS_HOP_LIMIT);
    return forward(ctx, prog, REASON_FWD_DECAP);
}
