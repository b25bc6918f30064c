/* Localized routing (RFC 6705) at the MAG: both MNs of a pair are attached
 * here and the LMA consented, so the MAG forwards local -> remote from one
 * access link straight onto the other's, with no tunnel and no trip through
 * the LMA. Only mag_access.c includes this (the map exists at MAGs alone).
 *
 * An entry is written by the daemon alone, for a pair its node core holds
 * (protocol/ro/initiator.py, phase LOCAL): after an authenticated LRA from
 * its LMA, for two MNs its binding update list holds registered. The
 * program asks only after the access checks (the source is an MN attached
 * on this very link) have passed, and forwards only while the destination
 * is still an MN attached on the link the entry names: a stale entry sends
 * the packet the LMA way, never onto a link the MN has left.
 */
#ifndef PMIP6_LOCAL_ROUTE_H
#define PMIP6_LOCAL_ROUTE_H

#include "tunnel.h"

struct local_route {
    __u32 ifindex;          /* the access link the remote MN is attached on */
    __u32 flags;            /* none yet */
    __u64 expires_ns;       /* CLOCK_MONOTONIC; 0 = no expiry. The LRA's lifetime: a lapsed
                             * entry forwards nothing even when no daemon removes it */
};

/* (local, remote) as struct ro_key: the sending MN's address, the other MN's. */
BPF_TABLE_PINNED("hash", struct ro_key, struct local_route, local_routes, MAX_RO_ENTRIES, PIN(local_routes));

/* Forwards ip (from an MN on this link, access checks done) to the other MN
 * if the pair is routed locally. Returns 1 with *verdict set when it dealt
 * with the frame; 0 to go on the RO or LMA path. The next hop is the FIB's
 * answer for the inner destination: our route for the MN's prefix onto its
 * access link, with our MAC on that link as the source and the MN's (the
 * neighbour entry) as the destination, as xdp-forward does. */
static __always_inline int pmip_local_route(struct xdp_md *ctx, __u32 prog, struct ip_info *ip, int *verdict)
{
    struct bpf_fib_lookup fib = {};
    struct local_route *route;
    struct mn_entry *remote;
    struct ro_key key;
    int rc;

    __builtin_memcpy(&key.local, &ip->src, sizeof(key.local));
    __builtin_memcpy(&key.remote, &ip->dst, sizeof(key.remote));
    route = local_routes.lookup(&key);
    if (!route || (route->expires_ns && bpf_ktime_get_coarse_ns() > route->expires_ns))
        return 0;
    remote = pmip_lookup_mn(&ip->dst);
    if (!remote || !remote->ifindex || remote->ifindex != route->ifindex)
        return 0;           /* the other MN is no longer attached on that link: LMA path */
    if (pmip_fib_params_from_frame(ctx, &fib)) {
        *verdict = pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
        return 1;
    }
    rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_DIRECT);
    if (rc == BPF_FIB_LKUP_RET_SUCCESS && fib.ifindex != route->ifindex)
        return 0;           /* our routes disagree with the entry: the LMA path, not a guess */
    if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
        /* e.g. no neighbour entry for the MN yet: the kernel routes it onto
         * the same access link (our route for its prefix) and resolves it */
        *verdict = pmip_fib_failure(ctx, prog, rc);
        return 1;
    }
    if (!pmip_decrement_hop_limit(ip, (void *)(long)ctx->data_end)) {
        *verdict = pmip_finish(ctx, prog, REASON_PASS_HOP_LIMIT);
        return 1;
    }
    *verdict = pmip_redirect_to(ctx, prog, REASON_FWD_LOCAL, fib.ifindex, fib.smac, fib.dmac);
    return 1;
}

#endif
