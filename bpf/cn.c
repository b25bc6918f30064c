/* CN agent (draft §4): an RO-capable correspondent outside the domain.
 * xdp_cn, on its network interface: decapsulate tunnels from MAGs that hold
 *   an RO binding and hand the inner packet to the local stack.
 * xdp_cn_egress, on the far end of the agent's egress veth, where routes to
 *   optimized MN home addresses point: encapsulate toward the MAG. */
#include "tunnel.h"

int xdp_cn(struct xdp_md *ctx)
{
    const __u32 prog = PROG_CN;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct tunnel_info tun;
    struct ro_entry *ro;
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

    peer = lookup_peer(&tun);
    if (!peer)
        return finish(ctx, prog, REASON_DROP_UNKNOWN_PEER);
    ro = lookup_ro(&tun.inner.dst, &tun.inner.src);
    if (!ro || ro->tunnel_id != peer->tunnel_id) {
        note_missing_ro_binding(ctx, prog, &tun.inner.src, &tun.inner.dst, &tun.outer.src);
        return finish(ctx, prog, REASON_DROP_NO_RO_BINDING);
    }
    if (decapsulate(ctx, tun.outer_len, tun.inner.eth_proto))
        return finish(ctx, prog, REASON_DROP_MALFORMED);
    return finish(ctx, prog, REASON_PASS_DECAP_LOCAL);
}

int xdp_cn_egress(struct xdp_md *ctx)
{
    const __u32 prog = PROG_CN_EGRESS;
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ip_info ip;
    struct ro_entry *ro;
    __u16 eth_proto;
    int rc;

    rc = parse_eth(data, data_end, &eth_proto);
    if (rc == PARSE_NOT_IP)
        return finish(ctx, prog, REASON_PASS_NOT_IP);
    if (rc != PARSE_OK || parse_ip(data + sizeof(struct ethhdr), data_end, eth_proto, &ip) != PARSE_OK)
        return finish(ctx, prog, REASON_DROP_MALFORMED);
    if (is_link_scoped(&ip))
        return finish(ctx, prog, REASON_PASS_LOCAL);

    ro = lookup_ro(&ip.src, &ip.dst);
    if (!ro)    /* the route to the MN outlived its binding: drop, the agent removes it */
        return finish(ctx, prog, REASON_DROP_NO_RO_BINDING);
    /* The CN originates these packets: no hop-limit decrement. */
    return encap_and_forward(ctx, prog, &ip, ro->tunnel_id, REASON_FWD_ENCAP_RO, 0);
}
