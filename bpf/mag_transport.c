/* MAG, transport side: packets from the LMA and from RO peers.
 * parse -> not a tunnel for us?          the kernel (signaling to the MAG itself)
 *       -> tunnel from an unknown source? drop
 *       -> mobility message for an MN?    punt to the daemon (proxy RR, draft §3)
 *       -> inner destination gone?         from an RO peer: to its anchor (handover.h); else drop
 *       -> inner destination attached?    decapsulate and deliver. */
#include "tunnel.h"
#include "handover.h"

int xdp_mag_transport(struct xdp_md *ctx)
{
    const __u32 prog = PROG_MAG_TRANSPORT;
    struct tunnel_info tun;
    struct ip_info ip;
    struct peer *peer;
    int verdict, rc;

    rc = pmip_read_tunnel(ctx, prog, &tun, &verdict);
    if (rc < 0)
        return verdict;
    if (rc == TUNNEL_NONE || !pmip_is_local_address(&tun.outer.dst) || pmip_is_signaling_for_us(&tun))
        return pmip_finish(ctx, prog, REASON_PASS_LOCAL);

    peer = pmip_lookup_peer(&tun);
    if (!peer) {
        /* An RO peer whose binding we lost (this node restarted without its
         * state), or a forgery: the daemon answers the outer IPv6 source with
         * a Binding Error, within the punt budget, once per flow and interval,
         * and at its per-prefix answer rate. The peer refreshes (issue 13). */
        if (tun.outer.eth_proto == ETH_P_IPV6 && !tun.sport)
            pmip_note_missing_ro_binding(ctx, prog, &tun.inner.src, &tun.inner.dst, &tun.outer.src);
        return pmip_finish(ctx, prog, REASON_DROP_UNKNOWN_PEER);
    }
    if (!pmip_lookup_mn(&tun.inner.dst))
        return pmip_departed(ctx, prog, &tun, peer);
    if (pmip_carries_mobility_message(&tun.inner, (void *)(long)ctx->data_end))
        return pmip_punt(ctx, prog);
    if (peer->kind == PEER_RO && !pmip_ro_peer_may_send(ctx, prog, &tun, peer))
        return pmip_finish(ctx, prog, REASON_DROP_NO_RO_BINDING);

    if (pmip_propagate_ecn(&tun.outer, &tun.inner, (void *)(long)ctx->data_end))
        return pmip_finish(ctx, prog, REASON_DROP_ECN_NOT_ECT);
    if (pmip_decap_and_parse(ctx, &tun, &ip) != PARSE_OK)
        return pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
    if (!pmip_decrement_hop_limit(&ip, (void *)(long)ctx->data_end))
        return pmip_finish(ctx, prog, REASON_PASS_HOP_LIMIT);
    return pmip_forward(ctx, prog, REASON_FWD_DECAP);
}
