/* MAG, access side: traffic from a source no attached MN holds. An MN that
 * just arrived keeps sending (its link never went down, and every MAG has
 * the same access link-layer address): while its PBU is in flight its
 * frames go to the daemon's handover buffer, which releases them into the
 * MN's tunnel once the PBA granted their source (protocol/handover.py).
 * Each punt spends the daemon's per-CPU punt budget (events.h), so nobody
 * on an access link makes more of them than the budget allows; the buffer
 * keeps only an attaching MN's, with limits of its own.
 *
 * The old MAG's side: an RO peer keeps sending into our tunnel for an MN
 * that left until it hears of it (our deregistration BU or Binding Error
 * crosses its packets). Those packets are decapsulated and handed to the
 * kernel, which routes them toward the MN's prefix, whose anchor, the LMA,
 * tunnels them to the MN's new MAG once its PBU arrived (before, back to us,
 * where, coming from the LMA, they are dropped: one bounce at most). Only
 * for a pair we still hold (its entry draining), only from that pair's peer.
 *
 * The LMA's side (lma.c): what arrives for an MN between two MAGs (its
 * entry marked LMA_MN_HELD) goes to the daemon's downlink hold the same way,
 * on the same budget, and leaves for the MN's next MAG once its binding is up.
 *
 * With dp_config.handover 0 (the baseline): a rate-limited notice and a
 * drop of the unknown source's frame; a drop of the departed MN's packets. */
#ifndef PMIP6_HANDOVER_H
#define PMIP6_HANDOVER_H

#include "tunnel.h"

/* Hands the whole frame to the daemon as EVENT_HELD, then drops it here;
 * over the budget, only drops it. */
static __always_inline int pmip_punt_held(struct xdp_md *ctx, __u32 prog, const struct dp_config *cfg,
                                          __u32 reason)
{
    return pmip_punt_frame(ctx, prog, cfg, EVENT_HELD, reason);
}

static __always_inline int pmip_unknown_source(struct xdp_md *ctx, __u32 prog, const struct ip_info *ip)
{
    struct dp_config *cfg = pmip_dp_config();

    if (cfg && cfg->handover)
        return pmip_punt_held(ctx, prog, cfg, REASON_PUNT_HELD);
    pmip_note_unknown_source(ctx, prog, &ip->src, &ip->dst);
    return pmip_finish(ctx, prog, REASON_DROP_UNKNOWN_SOURCE);
}

/* A packet from a tunnel peer for an MN not attached here. */
static __always_inline int pmip_departed(struct xdp_md *ctx, __u32 prog, struct tunnel_info *tun,
                                    const struct peer *peer)
{
    struct dp_config *cfg = pmip_dp_config();
    struct ip_info ip;

    if (!cfg || !cfg->handover || peer->kind != PEER_RO)
        return pmip_finish(ctx, prog, REASON_DROP_NOT_ATTACHED);
    /* the pair's entry (draining since the MN left), and this peer's tunnel */
    if (!pmip_ro_peer_may_send(ctx, prog, tun, peer))
        return pmip_finish(ctx, prog, REASON_DROP_NO_RO_BINDING);
    if (pmip_carries_mobility_message(&tun->inner, (void *)(long)ctx->data_end))
        return pmip_finish(ctx, prog, REASON_DROP_NOT_ATTACHED);
    if (pmip_propagate_ecn(&tun->outer, &tun->inner, (void *)(long)ctx->data_end))
        return pmip_finish(ctx, prog, REASON_DROP_ECN_NOT_ECT);
    if (pmip_decap_and_parse(ctx, tun, &ip) != PARSE_OK)
        return pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
    return pmip_finish(ctx, prog, REASON_PASS_DEPARTED);
}

#endif
