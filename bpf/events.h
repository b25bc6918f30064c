/* Notices to the daemon through the perf buffer "events": RO triggers,
 * intercepted mobility messages and traffic for vanished RO bindings. Flow
 * notices are rate-limited per flow through the LRU table "flows". */
#ifndef PMIP6_EVENTS_H
#define PMIP6_EVENTS_H

#include "maps.h"
#include "stats.h"
#include "budget.h"

struct event_header {
    __u32 type;          /* EVENT_* */
    __u32 prog;          /* PROG_* */
    __u32 ifindex;       /* where the frame came in */
    __u32 frame_len;     /* octets of frame after this header (EVENT_PUNT) */
};

struct flow_event {
    struct event_header h;
    union ip_addr src;
    union ip_addr dst;
    union ip_addr peer;  /* EVENT_NO_RO_BINDING: the tunnel's outer source */
    __u64 packets;
};

_Static_assert(sizeof(struct event_header) == SIZEOF_EVENT_HEADER, "SIZEOF_EVENT_HEADER in constants.h");
_Static_assert(sizeof(struct flow_event) == SIZEOF_FLOW_EVENT, "SIZEOF_FLOW_EVENT in constants.h");

/* Whether the daemon's per-CPU budget allows one more punt or notice
 * (budget.h); a refusal is counted as the event kind over_budget. */
static __always_inline int pmip_within_punt_budget(const struct dp_config *cfg, __u32 prog)
{
    if (!cfg)
        return 1;
    if (pmip_within_budget(BUDGET_PUNT, cfg->punt_interval_ns, cfg->punt_burst))
        return 1;
    pmip_count_event(prog, EVENT_OVER_BUDGET);
    return 0;
}

/* Counts a packet of flow (src, dst) and says whether a notice is due: the
 * flow reached threshold packets and none went out within the interval. */
static __always_inline int pmip_flow_notice_due(const struct dp_config *cfg, struct ro_key *key,
                                           __u32 threshold, __u64 *packets)
{
    struct flow_state fresh = {};
    struct flow_state *flow = flows.lookup(key);
    __u64 now;

    if (!flow) {
        if (flows.insert(key, &fresh) == 0) {       /* new here (not another CPU's at once): counted */
            __u32 zero = 0;
            __u64 *created = flows_created.lookup(&zero);

            if (created)
                (*created)++;
        }
        flow = flows.lookup(key);
        if (!flow)
            return 0;
    }
    *packets = ++flow->packets;
    if (*packets < threshold)
        return 0;
    now = bpf_ktime_get_ns();
    if (flow->last_event_ns && now - flow->last_event_ns < (__u64)cfg->event_interval_ms * 1000000)
        return 0;
    flow->last_event_ns = now;
    return 1;
}

static __always_inline void pmip_notify_flow(struct xdp_md *ctx, __u32 prog, __u32 type,
                                        const union ip_addr *src, const union ip_addr *dst,
                                        const union ip_addr *peer, __u32 threshold)
{
    struct dp_config *cfg = pmip_dp_config();
    struct flow_event ev = {};
    struct ro_key key;

    if (!cfg || !threshold)
        return;
    __builtin_memcpy(&key.local, src, sizeof(key.local));
    __builtin_memcpy(&key.remote, dst, sizeof(key.remote));
    if (!pmip_flow_notice_due(cfg, &key, threshold, &ev.packets))
        return;
    if (type != EVENT_FLOW_TRIGGER && !pmip_within_punt_budget(cfg, prog))
        return;                         /* RO triggers come from our own MNs, one per flow and interval */
    ev.h.type = type;
    ev.h.prog = prog;
    ev.h.ifindex = ctx->ingress_ifindex;
    __builtin_memcpy(&ev.src, src, sizeof(ev.src));
    __builtin_memcpy(&ev.dst, dst, sizeof(ev.dst));
    if (peer)
        __builtin_memcpy(&ev.peer, peer, sizeof(ev.peer));
    events.perf_submit(ctx, &ev, sizeof(ev));
    pmip_count_event(prog, type);
}

/* The RO trigger (DESIGN §3): an MN->destination flow without an RO entry. */
static __always_inline void pmip_note_unoptimized_flow(struct xdp_md *ctx, __u32 prog,
                                                  const union ip_addr *src, const union ip_addr *dst)
{
    struct dp_config *cfg = pmip_dp_config();

    if (cfg)
        pmip_notify_flow(ctx, prog, EVENT_FLOW_TRIGGER, src, dst, NULL, cfg->ro_trigger_packets);
}

/* Tunnelled traffic from an RO peer for a pair we hold no entry for: the
 * daemon answers with a Binding Error (RFC 6275 §9.3.3). */
static __always_inline void pmip_note_missing_ro_binding(struct xdp_md *ctx, __u32 prog,
                                                    const union ip_addr *src, const union ip_addr *dst,
                                                    const union ip_addr *peer)
{
    pmip_notify_flow(ctx, prog, EVENT_NO_RO_BINDING, src, dst, peer, 1);
}

/* Traffic on an access link from a source no attached MN holds: an MN this
 * MAG forgot (it restarted without its state), or a spoofer. The daemon
 * attaches the sender as a Router Solicitation would, if the MN-ID table
 * names its MAC on that link (issue 13). The MAC travels in the first six
 * octets of `peer`; the budget and the per-flow interval bound the notices. */
static __always_inline void pmip_note_unknown_source(struct xdp_md *ctx, __u32 prog,
                                                const union ip_addr *src, const union ip_addr *dst)
{
    struct ethhdr *eth = (void *)(long)ctx->data;
    union ip_addr mac = {};

    if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
        return;
    __builtin_memcpy(mac.b, eth->h_source, ETH_ALEN);
    pmip_notify_flow(ctx, prog, EVENT_UNKNOWN_SOURCE, src, dst, &mac, 1);
}

/* Hands the whole frame (outer headers included) to the daemon as event
 * `type`, then drops it here with `reason`; over the daemon's budget, only
 * drops it. */
static __always_inline int pmip_punt_frame(struct xdp_md *ctx, __u32 prog, const struct dp_config *cfg,
                                           __u32 type, __u32 reason)
{
    struct event_header h = {
        .type = type,
        .prog = prog,
        .ifindex = ctx->ingress_ifindex,
        .frame_len = ctx->data_end - ctx->data,
    };

    int rc;

    if (!pmip_within_punt_budget(cfg, prog))
        return pmip_finish(ctx, prog, REASON_DROP_PUNT_LIMIT);
    /* (bcc rewrites this call into a statement: it cannot stand in an if) */
    rc = events.perf_submit_skb(ctx, h.frame_len, &h, sizeof(h));
    if (rc != 0)
        return pmip_finish(ctx, prog, REASON_DROP_PUNT_FAILED);
    pmip_count_event(prog, type);
    return pmip_finish(ctx, prog, reason);
}

/* Mobility signaling for the daemon (EVENT_PUNT). */
static __always_inline int pmip_punt(struct xdp_md *ctx, __u32 prog)
{
    return pmip_punt_frame(ctx, prog, pmip_dp_config(), EVENT_PUNT, REASON_PUNT_MH);
}

#endif
