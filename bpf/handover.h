/* MAG, access side: traffic from a source no attached MN holds. An MN that
 * just arrived keeps sending (its link never went down, and every MAG has
 * the same access link-layer address): while its PBU is in flight its
 * frames go to the daemon's handover buffer, which releases them into the
 * MN's tunnel once the PBA granted their source (protocol/handover.py).
 * Each punt spends the daemon's per-CPU punt budget (events.h), so nobody
 * on an access link makes more of them than the budget allows; the buffer
 * keeps only an attaching MN's, with limits of its own. With buffering off
 * (dp_config.hold_uplink 0): a rate-limited notice, the frame dropped. */
#ifndef PMIP6_HANDOVER_H
#define PMIP6_HANDOVER_H

#include "events.h"

/* Hands the whole frame to the daemon as EVENT_HELD, then drops it here;
 * over the budget, only drops it. */
static __always_inline int pmip_punt_held(struct xdp_md *ctx, __u32 prog, const struct dp_config *cfg)
{
    struct event_header h = {
        .type = EVENT_HELD,
        .prog = prog,
        .ifindex = ctx->ingress_ifindex,
        .frame_len = ctx->data_end - ctx->data,
    };
    int rc;

    if (!pmip_within_punt_budget(cfg, prog))
        return pmip_finish(ctx, prog, REASON_DROP_PUNT_LIMIT);
    rc = events.perf_submit_skb(ctx, h.frame_len, &h, sizeof(h));
    if (rc != 0)
        return pmip_finish(ctx, prog, REASON_DROP_PUNT_FAILED);
    pmip_count_event(prog, EVENT_HELD);
    return pmip_finish(ctx, prog, REASON_PUNT_HELD);
}

static __always_inline int pmip_unknown_source(struct xdp_md *ctx, __u32 prog, const struct ip_info *ip)
{
    struct dp_config *cfg = pmip_dp_config();

    if (cfg && cfg->hold_uplink)
        return pmip_punt_held(ctx, prog, cfg);
    pmip_note_unknown_source(ctx, prog, &ip->src, &ip->dst);
    return pmip_finish(ctx, prog, REASON_DROP_UNKNOWN_SOURCE);
}

#endif
