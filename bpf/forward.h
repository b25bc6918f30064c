/* Next hop: bpf_fib_lookup on the (outer) IP header, then a devmap redirect,
 * as xdp-forward does. Each way of not forwarding is its own counted reason. */
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

/* Looks up the frame's IP destination and redirects it; fwd_reason is what
 * a successful redirect is counted as. */
static __always_inline int forward(struct xdp_md *ctx, __u32 prog, __u32 fwd_reason)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct bpf_fib_lookup fib = {};
    int rc, action;

    if ((void *)(eth + 1) > data_end)
        return finish(ctx, prog, REASON_DROP_MALFORMED);
    if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > data_end)
            return finish(ctx, prog, REASON_DROP_MALFORMED);
        fib.family = AF_INET6;
        fib.l4_protocol = ip6->nexthdr;
        fib.tot_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
        __builtin_memcpy(fib.ipv6_src, &ip6->saddr, sizeof(fib.ipv6_src));
        __builtin_memcpy(fib.ipv6_dst, &ip6->daddr, sizeof(fib.ipv6_dst));
    } else {
        struct iphdr *ip4 = (void *)(eth + 1);
        if ((void *)(ip4 + 1) > data_end)
            return finish(ctx, prog, REASON_DROP_MALFORMED);
        fib.family = AF_INET;
        fib.tos = ip4->tos;
        fib.l4_protocol = ip4->protocol;
        fib.tot_len = bpf_ntohs(ip4->tot_len);
        fib.ipv4_src = ip4->saddr;
        fib.ipv4_dst = ip4->daddr;
    }
    fib.ifindex = ctx->ingress_ifindex;

    rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
    switch (rc) {
    case BPF_FIB_LKUP_RET_SUCCESS:
        __builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
        __builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
        action = tx_ports.redirect_map(fib.ifindex, 0);
        if (action != XDP_REDIRECT)
            action = bpf_redirect(fib.ifindex, 0);
        count(ctx, prog, fwd_reason);
        return action;
    case BPF_FIB_LKUP_RET_NO_NEIGH:
        return finish(ctx, prog, REASON_PASS_NO_NEIGH);
    case BPF_FIB_LKUP_RET_FRAG_NEEDED:
        return finish(ctx, prog, REASON_DROP_FRAG_NEEDED);
    default:
        return finish(ctx, prog, REASON_PASS_FIB_OTHER);
    }
}

#endif
