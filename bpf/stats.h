/* Counting: every program exit goes through pmip_finish() or finish_redirect(),
 * which count packets and bytes per (program, reason) in a per-CPU array. */
#ifndef PMIP6_STATS_H
#define PMIP6_STATS_H

#include "maps.h"

#define VERDICT_redirect XDP_REDIRECT
#define VERDICT_pass     XDP_PASS
#define VERDICT_drop     XDP_DROP
#define VERDICT_punt     XDP_DROP

/* The counter layouts, [program][reason] and [program][event kind];
 * pmip6ctl/defs.py stats_key() and event_stats_key() read them back. */
#define STATS_KEY(prog, reason)     ((prog) * REASON_COUNT + (reason))
#define EVENT_STATS_KEY(prog, kind) ((prog) * EVENT_KIND_COUNT + (kind))

#define PMIP6_REASON_VERDICT(name, verdict, help) case REASON_##name: return VERDICT_##verdict;

static __always_inline int pmip_verdict_of(__u32 reason)
{
    switch (reason) {
    PMIP6_REASONS(PMIP6_REASON_VERDICT)
    }
    return XDP_DROP;
}

static __always_inline void pmip_count(struct xdp_md *ctx, __u32 prog, __u32 reason)
{
    __u32 key = STATS_KEY(prog, reason);
    struct counter *c = stats.lookup(&key);

    if (c) {
        c->packets++;
        c->bytes += ctx->data_end - ctx->data;
    }
}

/* Counts the packet under reason and returns that reason's verdict. */
static __always_inline int pmip_finish(struct xdp_md *ctx, __u32 prog, __u32 reason)
{
    pmip_count(ctx, prog, reason);
    return pmip_verdict_of(reason);
}

static __always_inline void pmip_count_event(__u32 prog, __u32 type)
{
    __u32 key = EVENT_STATS_KEY(prog, type);
    __u64 *n = event_stats.lookup(&key);

    if (n)
        (*n)++;
}

#endif
