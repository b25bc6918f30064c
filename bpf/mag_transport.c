/* MAG, transport side: packets from the LMA and from RO peers.
 * parse -> not a tunnel for us?          the kernel (signaling to the MAG itself)
 *       -> tunnel from an unknown source? drop
 *       -> mobility message for an MN?    punt to the daemon (proxy RR, draft §3)
 *       -> inner destination attached?    decapsulate and deliver. */
#include "tunnel.h"

int xdp_mag_transport(struct xdp_md *ctx)
{
    const __u32 prog = PROG_MAG_TRANSPORT;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct tunnel_info tun;
    struct ip_info ip;
    struct peer *peer;
    __u16 eth_proto;
    int rc;

    rc = parse_eth(data, data_end, &eth_proto);
    if (rc == PARSE_NOT_IP)
        return finish(ctx, prog, REASON_PASS_NOT_IP);
    if (rc != PARSE_OK || parse_ip(data + sizeof(struct ethhdr), data_end, eth_proto, &tun.outer) != PARSE_OK)
        return finish(ctx, prog, REASON_DROP_MALFORMED);

    rc = parse_tunnel(data_end, &tun);
    if (rc == TUNNEL_MALFORMED)
        return finish(ctx, prog, REASON_DROP_MALFORMED);
    if (rc == TUNNEL_FRAGMENT)
        return finish(ctx, prog, REASON_PASS_FRAGMENT);
    if (rc == TUNNEL_NONE || !is_local_address(&tun.outer.dst))
        return finish(ctx, prog, REASON_PASS_LOCAL);

    if (is_signaling_for_us(&tun))
        return finish(ctx, prog, REASON_PASS_LOCAL);
    peer = lookup_peer(&tun);
    if (!peer)
        return finish(ctx, prog, REASON_DROP_UNKNOWN_PEER);
    if (!lookup_mn(&tun.inner.dst))
        return finish(ctx, prog, REASON_DROP_NOT_ATTACHED);
    if (carries_mobility_message(&tun.inner, data_end))
        return punt(ctx, prog);

    if (peer->kind == PEER_RO) {
        struct ro_entry *ro = lookup_ro(&tun.inner.dst, &tun.inner.src);
        if (!ro || ro->tunnel_id != peer->tunnel_id) {
            note_missing_ro_binding(ctx, prog, &tun.inner.src, &tun.inner.dst, &tun.outer.src);
            return finish(ctx, prog, REASON_DROP_NO_RO_BINDING);
        }
    }

    if (decap_and_parse(ctx, &tun, &ip) != PARSE_OK)
        return finish(ctx, prog, REASON_DROP_MALFORMED);
    if (!decrement_hop_limit(&ip, (void *)(long)ctx->data_end))
        return finish(ctx, prog, REASON_PASS_HOP_LIMIT);
    return forward(ctx, prog, REASON_FWD_DECAP);
}
