/* Next hop: bpf_fib_lookup on the (outer) IP header, then a devmap redirect,
 * as xdp-forward does. Each way of not forwarding is its own counted reason.
 * Tunnelled packets use the FIB's answer cached per tunnel for one jiffy
 * (struct nexthop in maps.h). */
#ifndef PMIP6_FORWARD_H
#define PMIP6_FORWARD_H

#include "maps.h"
#include "stats.h"

#ifndef AF_INET
#define AF_INET  2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef BPF_FIB_LOOKUP_DIRECT
#define BPF_FIB_LOOKUP_DIRECT 1
#endif

/* Fills fib from the frame's IP header; returns -1 if there is none. */
static __always_inline int pmip_fib_params_from_frame(struct xdp_md *ctx, struct bpf_fib_lookup *fib)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end)
        return -1;
    if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > data_end)
            return -1;
        fib->family = AF_INET6;
        fib->l4_protocol = ip6->nexthdr;
        fib->tot_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
        __builtin_memcpy(fib->ipv6_src, &ip6->saddr, sizeof(fib->ipv6_src));
        __builtin_memcpy(fib->ipv6_dst, &ip6->daddr, sizeof(fib->ipv6_dst));
    } else {
        struct iphdr *ip4 = (void *)(eth + 1);
        if ((void *)(ip4 + 1) > data_end)
            return -1;
        fib->family = AF_INET;
        fib->tos = ip4->tos;
        fib->l4_protocol = ip4->protocol;
        fib->tot_len = bpf_ntohs(ip4->tot_len);
        fib->ipv4_src = ip4->saddr;
        fib->ipv4_dst = ip4->daddr;
    }
    fib->ifindex = ctx->ingress_ifindex;
    return 0;
}

/* Redirects the frame out of ifindex through the devmap, as xdp-forward
 * does. An egress the devmap does not hold (the daemon has not heard of the
 * link yet) is a counted pass to the kernel, with the frame as it is; the
 * frame counts as forwarded (fwd_reason) only once the redirect is set. The
 * MACs are written after bpf_redirect_map: the frame leaves only when the
 * program returns. */
static __always_inline int pmip_redirect_to(struct xdp_md *ctx, __u32 prog, __u32 fwd_reason, __u32 ifindex,
                                       const __u8 *smac, const __u8 *dmac)
{
    void *data = (void *)(long)ctx->data;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
        return pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
    if (tx_ports.redirect_map(ifindex, XDP_PASS) != XDP_REDIRECT)
        return pmip_finish(ctx, prog, REASON_PASS_NO_EGRESS);
    __builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
    __builtin_memcpy(eth->h_source, smac, ETH_ALEN);
    pmip_count(ctx, prog, fwd_reason);
    return XDP_REDIRECT;
}

/* Turns a non-success FIB result into its counted verdict. FRAG_NEEDED
 * here is a decapsulated packet too big for its egress link: the kernel
 * forwards it no further either, but sends the ICMP error. */
static __always_inline int pmip_fib_failure(struct xdp_md *ctx, __u32 prog, int rc)
{
    if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
        return pmip_finish(ctx, prog, REASON_PASS_NO_NEIGH);
    if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
        return pmip_finish(ctx, prog, REASON_PASS_FRAG_NEEDED);
    return pmip_finish(ctx, prog, REASON_PASS_FIB_OTHER);
}

/* Looks up the frame's IP destination and redirects it; fwd_reason is what
 * a successful redirect is counted as. */
static __always_inline int pmip_forward(struct xdp_md *ctx, __u32 prog, __u32 fwd_reason)
{
    struct bpf_fib_lookup fib = {};
    int rc;

    if (pmip_fib_params_from_frame(ctx, &fib))
        return pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
    rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_DIRECT);
    if (rc != BPF_FIB_LKUP_RET_SUCCESS)
        return pmip_fib_failure(ctx, prog, rc);
    return pmip_redirect_to(ctx, prog, fwd_reason, fib.ifindex, fib.smac, fib.dmac);
}

/* The FIB query for the outer header of tunnel t, tot_len octets long. */
static __always_inline void pmip_fib_params_for_tunnel(struct xdp_md *ctx, const struct tunnel *t,
                                                  __u16 tot_len, struct bpf_fib_lookup *fib)
{
    if (t->type == ENCAP_IP6) {
        fib->family = AF_INET6;
        fib->l4_protocol = IPPROTO_IPV6;
        __builtin_memcpy(fib->ipv6_src, &t->local, sizeof(fib->ipv6_src));
        __builtin_memcpy(fib->ipv6_dst, &t->remote, sizeof(fib->ipv6_dst));
    } else {
        fib->family = AF_INET;
        fib->l4_protocol = t->type == ENCAP_UDP4 ? IPPROTO_UDP : IPPROTO_IPIP;
        fib->ipv4_src = t->local.w[3];
        fib->ipv4_dst = t->remote.w[3];
    }
    fib->tot_len = tot_len;
    fib->ifindex = ctx->ingress_ifindex;
}

/* Asks the FIB for the outer destination of tunnel t and caches the answer
 * in nh. The route MTU comes from a second, oversized query (the FIB
 * reports the MTU only when a packet exceeds it). */
static __always_inline int pmip_resolve_nexthop(struct xdp_md *ctx, const struct tunnel *t, struct nexthop *nh,
                                           __u64 now)
{
    struct bpf_fib_lookup fib = {};
    int rc;

    pmip_fib_params_for_tunnel(ctx, t, OUTER_IP6_LEN, &fib);
    rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_DIRECT);
    if (rc != BPF_FIB_LKUP_RET_SUCCESS)
        return rc;
    nh->ifindex = fib.ifindex;
    __builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
    __builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
    __builtin_memset(&fib, 0, sizeof(fib));
    pmip_fib_params_for_tunnel(ctx, t, 0xffff, &fib);
    rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_DIRECT);
    nh->mtu = rc == BPF_FIB_LKUP_RET_FRAG_NEEDED ? fib.mtu_result : 0xffff;
    nh->generation = t->generation;
    nh->jiffies = now;
    return BPF_FIB_LKUP_RET_SUCCESS;
}

/* The next hop of tunnel tunnel_id (t) from the per-CPU cache, asked of the
 * FIB again when a jiffy old or the tunnel changed. NULL, with the FIB's
 * answer in *rc, when there is no forwarding decision. */
static __always_inline struct nexthop *pmip_tunnel_nexthop(struct xdp_md *ctx, __u32 tunnel_id,
                                                      const struct tunnel *t, int *rc)
{
    struct nexthop *nh = nexthops.lookup(&tunnel_id);
    __u64 now = bpf_jiffies64();

    *rc = BPF_FIB_LKUP_RET_NOT_FWDED;
    if (!nh)
        return NULL;
    if (nh->jiffies != now || nh->generation != t->generation) {
        nh->jiffies = 0;
        *rc = pmip_resolve_nexthop(ctx, t, nh, now);
        if (*rc != BPF_FIB_LKUP_RET_SUCCESS)
            return NULL;
    }
    *rc = BPF_FIB_LKUP_RET_SUCCESS;
    return nh;
}

#endif
