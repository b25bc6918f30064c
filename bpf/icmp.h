/* ICMP errors the data plane sends itself: Packet Too Big (RFC 4443 §3.2)
 * and fragmentation needed (RFC 792, RFC 1191) for a packet that would
 * exceed its tunnel's path MTU once encapsulated. After Katran's
 * send_icmp_too_big: the frame is trimmed to a fixed quote, the error's
 * headers are pushed in front of it, and it leaves through the link it came
 * in on, back to the hop that sent it. Within a per-CPU budget
 * ([dataplane] icmp_rate, icmp_burst), so a flood of big packets cannot
 * make the node a reflector. */
#ifndef PMIP6_ICMP_H
#define PMIP6_ICMP_H

#include "maps.h"
#include "parsing.h"
#include "checksum.h"
#include "budget.h"
#include "stats.h"
#include "forward.h"

#define ICMP6_PACKET_TOO_BIG 2
#define ICMP_DEST_UNREACH    3
#define ICMP_FRAG_NEEDED     4
#define IPV6_MIN_MTU         1280
#define ICMP_HOP_LIMIT       64
#define ICMP_HDR_LEN         8

/* Turns the frame into the error's frame: keeps its Ethernet header in
 * came, trims it to quote octets of its IP packet and grows its head by room
 * for the error's IP and ICMP headers. Returns the new Ethernet header, with
 * room + quote octets after it, or NULL. */
static __always_inline struct ethhdr *pmip_make_room_for_error(struct xdp_md *ctx, __u32 quote, int room,
                                                          struct ethhdr *came)
{
    struct ethhdr *eth = (void *)(long)ctx->data;
    int len = (int)(ctx->data_end - ctx->data);

    if ((void *)(eth + 1) > (void *)(long)ctx->data_end || len < (int)(sizeof(*eth) + quote))
        return NULL;
    __builtin_memcpy(came, eth, sizeof(*came));
    if (bpf_xdp_adjust_tail(ctx, (int)(sizeof(*eth) + quote) - len) || bpf_xdp_adjust_head(ctx, -room))
        return NULL;
    eth = (void *)(long)ctx->data;
    if ((void *)eth + sizeof(*eth) + room + quote > (void *)(long)ctx->data_end)
        return NULL;
    return eth;
}

/* Sends the error back through the link the frame came in on, to the hop
 * that sent it: a devmap redirect to the ingress interface rather than
 * XDP_TX, which a veth delivers only once its peer next receives (unless
 * the peer runs an XDP program of its own). */
static __always_inline int pmip_send_back(struct xdp_md *ctx, __u32 prog, struct ethhdr *eth,
                                     const struct ethhdr *came, __u16 proto)
{
    eth->h_proto = bpf_htons(proto);
    return pmip_redirect_to(ctx, prog, REASON_ICMP_TOO_BIG, ctx->ingress_ifindex, came->h_dest, came->h_source);
}

/* ICMPv6 Packet Too Big to the source of the IPv6 packet ip. Its source is
 * our end of the tunnel when that is IPv6, else the packet's destination
 * (Katran's choice: a host matches the error by the packet it quotes). */
static __always_inline int pmip_send_ptb6(struct xdp_md *ctx, __u32 prog, const struct ip_info *ip,
                                     const struct tunnel *t, __u32 mtu)
{
    const int room = sizeof(struct ipv6hdr) + ICMP_HDR_LEN;
    union ip_addr src = t->type == ENCAP_IP6 ? t->local : ip->dst, dst = ip->src;
    struct ethhdr came, *eth = pmip_make_room_for_error(ctx, PTB_QUOTE_IP6, room, &came);
    struct ipv6hdr *ip6;
    __u8 *icmp;
    __u64 sum;

    if (!eth)
        return pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
    ip6 = (void *)(eth + 1);
    *(__be32 *)ip6 = bpf_htonl(0x60000000);
    ip6->payload_len = bpf_htons(ICMP_HDR_LEN + PTB_QUOTE_IP6);
    ip6->nexthdr = IPPROTO_ICMPV6;
    ip6->hop_limit = ICMP_HOP_LIMIT;
    __builtin_memcpy(&ip6->saddr, &src, sizeof(src));
    __builtin_memcpy(&ip6->daddr, &dst, sizeof(dst));
    icmp = (void *)(ip6 + 1);
    icmp[0] = ICMP6_PACKET_TOO_BIG;
    icmp[1] = 0;
    *(__u16 *)(icmp + 2) = 0;
    *(__be32 *)(icmp + 4) = bpf_htonl(mtu < IPV6_MIN_MTU ? IPV6_MIN_MTU : mtu);
    /* pseudo-header (addresses, upper-layer length, next header), then the message */
    sum = (__u32)bpf_csum_diff(NULL, 0, (void *)&ip6->saddr, 2 * sizeof(ip6->saddr), 0);
    sum += bpf_htonl(ICMP_HDR_LEN + PTB_QUOTE_IP6);
    sum += bpf_htonl(IPPROTO_ICMPV6);
    sum += (__u32)bpf_csum_diff(NULL, 0, (void *)icmp, ICMP_HDR_LEN + PTB_QUOTE_IP6, 0);
    *(__u16 *)(icmp + 2) = pmip_fold_checksum64(sum);
    return pmip_send_back(ctx, prog, eth, &came, ETH_P_IPV6);
}

/* ICMP fragmentation needed to the source of the IPv4 packet ip (which has
 * DF set). Its source is our end of the tunnel when that is IPv4, else the
 * packet's destination. */
static __always_inline int pmip_send_frag_needed4(struct xdp_md *ctx, __u32 prog, const struct ip_info *ip,
                                             const struct tunnel *t, __u32 mtu)
{
    const int room = sizeof(struct iphdr) + ICMP_HDR_LEN;
    __be32 src = t->type == ENCAP_IP6 ? ip->dst.w[3] : t->local.w[3], dst = ip->src.w[3];
    struct ethhdr came, *eth = pmip_make_room_for_error(ctx, PTB_QUOTE_IP4, room, &came);
    struct iphdr *ip4;
    __u8 *icmp;

    if (!eth)
        return pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
    ip4 = (void *)(eth + 1);
    ip4->version = 4;
    ip4->ihl = 5;
    ip4->tos = 0;
    ip4->tot_len = bpf_htons(room + PTB_QUOTE_IP4);
    ip4->id = 0;
    ip4->frag_off = 0;
    ip4->ttl = ICMP_HOP_LIMIT;
    ip4->protocol = IPPROTO_ICMP;
    ip4->saddr = src;
    ip4->daddr = dst;
    ip4->check = 0;
    ip4->check = pmip_ip4_header_checksum(ip4);
    icmp = (void *)(ip4 + 1);
    icmp[0] = ICMP_DEST_UNREACH;
    icmp[1] = ICMP_FRAG_NEEDED;
    *(__u16 *)(icmp + 2) = 0;
    *(__u16 *)(icmp + 4) = 0;
    *(__be16 *)(icmp + 6) = bpf_htons(mtu > 0xffff ? 0xffff : mtu);
    *(__u16 *)(icmp + 2) = pmip_fold_checksum64(
        (__u32)bpf_csum_diff(NULL, 0, (void *)icmp, ICMP_HDR_LEN + PTB_QUOTE_IP4, 0));
    return pmip_send_back(ctx, prog, eth, &came, ETH_P_IP);
}

/* The IP packet ip (not yet encapsulated) does not fit tunnel t, whose path
 * leaves it mtu octets: tell its source, within the budget. An IPv4 packet
 * without DF is dropped and counted: XDP does not fragment. */
static __always_inline int pmip_send_too_big(struct xdp_md *ctx, __u32 prog, const struct dp_config *cfg,
                                        const struct ip_info *ip, const struct tunnel *t, __u32 mtu)
{
    if (ip->eth_proto == ETH_P_IP) {
        struct iphdr *ip4 = ip->hdr;
        if ((void *)(ip4 + 1) > (void *)(long)ctx->data_end)
            return pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
        if (!(ip4->frag_off & bpf_htons(0x4000)))
            return pmip_finish(ctx, prog, REASON_DROP_FRAG_NEEDED);
    }
    if (cfg && !pmip_within_budget(BUDGET_ICMP, cfg->icmp_interval_ns, cfg->icmp_burst))
        return pmip_finish(ctx, prog, REASON_DROP_ICMP_LIMIT);
    if (ip->eth_proto == ETH_P_IPV6)
        return pmip_send_ptb6(ctx, prog, ip, t, mtu);
    return pmip_send_frag_needed4(ctx, prog, ip, t, mtu);
}

#endif
