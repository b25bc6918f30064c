/* Tunnel encapsulation and decapsulation. The outer header of each
 * encapsulation is built in exactly one place: pmip_push_ip6_outer() or
 * pmip_push_ip4_outer() (which adds the UDP header for NAT traversal). */
#ifndef PMIP6_ENCAP_H
#define PMIP6_ENCAP_H

#include "maps.h"
#include "parsing.h"
#include "checksum.h"

#define ENCAP_OK      0
#define ENCAP_NO_ROOM 1

static __always_inline __u8 pmip_tunnel_proto(__u16 inner_eth_proto)
{
    return inner_eth_proto == ETH_P_IPV6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
}

/* Router duty before forwarding into or out of a tunnel (RFC 2473 §3.1):
 * returns 0 when the hop limit expires here. */
static __always_inline int pmip_decrement_hop_limit(struct ip_info *ip, void *data_end)
{
    if (ip->hop_limit <= 1)
        return 0;
    if (ip->eth_proto == ETH_P_IPV6) {
        struct ipv6hdr *ip6 = ip->hdr;
        if ((void *)(ip6 + 1) > data_end)
            return 0;
        ip6->hop_limit--;
    } else {
        struct iphdr *ip4 = ip->hdr;
        if ((void *)(ip4 + 1) > data_end)
            return 0;
        pmip_ip4_decrease_ttl(ip4);
    }
    ip->hop_limit--;
    return 1;
}

/* Grows the head by outer_len and moves the Ethernet header to the front.
 * Returns the new Ethernet header, or NULL when there is no headroom. */
static __always_inline struct ethhdr *pmip_grow_head(struct xdp_md *ctx, int outer_len, __u16 outer_eth_proto)
{
    struct ethhdr saved;
    struct ethhdr *eth = (void *)(long)ctx->data;

    if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
        return NULL;
    __builtin_memcpy(&saved, eth, sizeof(saved));
    if (bpf_xdp_adjust_head(ctx, -outer_len))
        return NULL;
    eth = (void *)(long)ctx->data;
    if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
        return NULL;
    __builtin_memcpy(eth, &saved, sizeof(saved));
    eth->h_proto = bpf_htons(outer_eth_proto);
    return eth;
}

/* Octets the outer headers of tunnel t take. */
static __always_inline __u32 pmip_tunnel_outer_len(const struct tunnel *t)
{
    return t->type == ENCAP_IP6 ? OUTER_IP6_LEN : t->type == ENCAP_UDP4 ? OUTER_UDP4_LEN : OUTER_IP4_LEN;
}

/* The ECN field (RFC 3168): the low two bits of the traffic class / TOS. */
#define ECN_MASK    3
#define ECN_NOT_ECT 0
#define ECN_ECT1    1
#define ECN_ECT0    2
#define ECN_CE      3

/* RFC 6438: the outer flow label of an IPv6 tunnel, from the inner flow
 * (addresses, protocol, ports, and an IPv6 inner's own label), so that
 * ECMP and LAG on the path spread the flows one tunnel carries. Never 0,
 * which would say "no label". Read before the head moves. */
static __always_inline __u32 pmip_flow_label(const struct ip_info *inner, void *data_end)
{
    __u32 h = inner->l4proto, ports = 0;
    __u32 src = inner->src.w[0] ^ inner->src.w[1] ^ inner->src.w[2] ^ inner->src.w[3];
    __u32 dst = inner->dst.w[0] ^ inner->dst.w[1] ^ inner->dst.w[2] ^ inner->dst.w[3];

    if (!inner->is_later_fragment && (inner->l4proto == IPPROTO_TCP || inner->l4proto == IPPROTO_UDP
                                      || inner->l4proto == IPPROTO_SCTP)) {
        __u32 *l4 = pmip_ip_payload(inner);
        if ((void *)(l4 + 1) <= data_end)
            ports = *l4;
    }
    if (inner->eth_proto == ETH_P_IPV6)
        h ^= *(__be32 *)inner->hdr & bpf_htonl(0x000fffff);
    h = (h ^ src) * 0x9e3779b1;
    h = (h ^ (h >> 15) ^ dst) * 0x85ebca6b;
    h = (h ^ (h >> 13) ^ ports) * 0xc2b2ae35;
    h = (h ^ (h >> 16)) & 0x000fffff;
    return h ? h : 1;
}

/* RFC 6040 §4.2 (the decapsulation table): the inner ECN field after
 * decapsulation, from the outer and inner ones; -1: drop the packet (CE
 * outside, but the inner transport cannot take congestion marks). */
static __always_inline int pmip_ecn_after_decap(__u8 outer_tos, __u8 inner_tos)
{
    __u8 outer = outer_tos & ECN_MASK, inner = inner_tos & ECN_MASK;

    if (outer == ECN_CE)
        return inner == ECN_NOT_ECT ? -1 : ECN_CE;
    if (outer == ECN_ECT1 && inner == ECN_ECT0)
        return ECN_ECT1;
    return inner;
}

/* Writes the decapsulation's ECN result into the inner header, in place
 * (before the outer headers go). Returns -1 when RFC 6040 says drop. */
static __always_inline int pmip_propagate_ecn(struct ip_info *outer, struct ip_info *inner, void *data_end)
{
    int ecn = pmip_ecn_after_decap(outer->tos, inner->tos);

    if (ecn < 0)
        return -1;
    if (ecn == (inner->tos & ECN_MASK))
        return 0;
    inner->tos = (inner->tos & ~ECN_MASK) | ecn;
    if (inner->eth_proto == ETH_P_IPV6) {
        struct ipv6hdr *ip6 = inner->hdr;
        if ((void *)(ip6 + 1) > data_end)
            return -1;
        ip6->flow_lbl[0] = (ip6->flow_lbl[0] & 0xcf) | (ecn << 4);
    } else {
        struct iphdr *ip4 = inner->hdr;
        if ((void *)(ip4 + 1) > data_end)
            return -1;
        __u16 old = *(__u16 *)ip4;
        ip4->tos = inner->tos;
        pmip_checksum_replace16(&ip4->check, old, *(__u16 *)ip4);
    }
    return 0;
}

/* The outer IPv6 header: traffic class copied from the inner packet, DSCP
 * and ECN alike (RFC 2983 uniform model; RFC 6040 normal mode). */
static __always_inline int pmip_push_ip6_outer(struct xdp_md *ctx, const struct tunnel *t,
                                          __u16 inner_eth_proto, __u16 inner_len, __u8 hop_limit,
                                          __u8 tclass, __u32 flow_label)
{
    struct ethhdr *eth = pmip_grow_head(ctx, OUTER_IP6_LEN, ETH_P_IPV6);
    struct ipv6hdr *ip6;

    if (!eth)
        return ENCAP_NO_ROOM;
    ip6 = (void *)(eth + 1);
    if ((void *)(ip6 + 1) > (void *)(long)ctx->data_end)
        return ENCAP_NO_ROOM;
    *(__be32 *)ip6 = bpf_htonl(0x60000000 | ((__u32)tclass << 20) | flow_label);
    ip6->payload_len = bpf_htons(inner_len);
    ip6->nexthdr = pmip_tunnel_proto(inner_eth_proto);
    ip6->hop_limit = hop_limit;
    __builtin_memcpy(&ip6->saddr, &t->local, sizeof(ip6->saddr));
    __builtin_memcpy(&ip6->daddr, &t->remote, sizeof(ip6->daddr));
    return ENCAP_OK;
}

/* The outer IPv4 header (and UDP for NAT traversal): TOS copied from the
 * inner packet, DSCP and ECN alike, as for IPv6. */
static __always_inline int pmip_push_ip4_outer(struct xdp_md *ctx, const struct tunnel *t,
                                          __u16 inner_eth_proto, __u16 inner_len, __u8 ttl, __u8 tos)
{
    int with_udp = t->type == ENCAP_UDP4;
    int outer_len = pmip_tunnel_outer_len(t);
    struct ethhdr *eth = pmip_grow_head(ctx, outer_len, ETH_P_IP);
    struct iphdr *ip4;

    if (!eth)
        return ENCAP_NO_ROOM;
    ip4 = (void *)(eth + 1);
    if ((void *)(ip4 + 1) > (void *)(long)ctx->data_end)
        return ENCAP_NO_ROOM;
    ip4->version = 4;
    ip4->ihl = 5;
    ip4->tos = tos;
    ip4->tot_len = bpf_htons(outer_len + inner_len);
    ip4->id = 0;
    ip4->frag_off = bpf_htons(0x4000);        /* DF: XDP cannot fragment, so never ask a router to */
    ip4->ttl = ttl;
    ip4->protocol = with_udp ? IPPROTO_UDP : pmip_tunnel_proto(inner_eth_proto);
    ip4->saddr = t->local.w[3];
    ip4->daddr = t->remote.w[3];
    ip4->check = 0;
    ip4->check = pmip_ip4_header_checksum(ip4);
    if (with_udp) {
        struct udphdr *udp = (void *)(ip4 + 1);
        if ((void *)(udp + 1) > (void *)(long)ctx->data_end)
            return ENCAP_NO_ROOM;
        udp->source = t->sport;
        udp->dest = t->dport;
        udp->len = bpf_htons(sizeof(*udp) + inner_len);
        udp->check = 0;                       /* allowed for IPv4 (RFC 768) */
    }
    return ENCAP_OK;
}

/* Encapsulates the IP packet described by inner into tunnel t. */
static __always_inline int pmip_encapsulate(struct xdp_md *ctx, const struct tunnel *t,
                                       const struct ip_info *inner, __u8 hop_limit)
{
    if (t->type == ENCAP_IP6)
        return pmip_push_ip6_outer(ctx, t, inner->eth_proto, inner->total_len, hop_limit, inner->tos,
                              pmip_flow_label(inner, (void *)(long)ctx->data_end));
    return pmip_push_ip4_outer(ctx, t, inner->eth_proto, inner->total_len, hop_limit, inner->tos);
}

/* Removes outer_len octets of outer headers that follow the Ethernet header. */
static __always_inline int pmip_decapsulate(struct xdp_md *ctx, __u32 outer_len, __u16 inner_eth_proto)
{
    struct ethhdr saved;
    struct ethhdr *eth = (void *)(long)ctx->data;

    if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
        return -1;
    __builtin_memcpy(&saved, eth, sizeof(saved));
    if (bpf_xdp_adjust_head(ctx, outer_len))
        return -1;
    eth = (void *)(long)ctx->data;
    if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
        return -1;
    __builtin_memcpy(eth, &saved, sizeof(saved));
    eth->h_proto = bpf_htons(inner_eth_proto);
    return 0;
}

/* What a tunnelled frame carries, found by pmip_parse_tunnel(). */
struct tunnel_info {
    struct ip_info outer;
    struct ip_info inner;
    __u32 outer_len;        /* outer IP header + UDP, the octets pmip_decapsulate() removes */
    __be16 sport;           /* UDP source port (NAT traversal), else 0 */
};

#define TUNNEL_NONE      0   /* not a tunnel packet: hand to the regular path */
#define TUNNEL_FOUND     1
#define TUNNEL_MALFORMED 2
#define TUNNEL_FRAGMENT  3

/* Recognises IPv6/IPv4-in-IPv6/IPv4 and IPv4/UDP 5436 tunnels; outer must be
 * parsed already. */
static __always_inline int pmip_parse_tunnel(void *data_end, struct tunnel_info *tun)
{
    void *payload = pmip_ip_payload(&tun->outer);
    int rc;

    tun->sport = 0;
    if (tun->outer.l4proto == IPPROTO_IPV6 || tun->outer.l4proto == IPPROTO_IPIP) {
        if (tun->outer.is_fragment)
            return TUNNEL_FRAGMENT;
        tun->outer_len = tun->outer.hdr_len;
        if (tun->outer.l4proto == IPPROTO_IPV6)
            rc = pmip_parse_ip6(payload, data_end, &tun->inner);
        else
            rc = pmip_parse_ip4(payload, data_end, &tun->inner);
        return rc == PARSE_OK ? TUNNEL_FOUND : TUNNEL_MALFORMED;
    }
    if (tun->outer.l4proto == IPPROTO_UDP && tun->outer.eth_proto == ETH_P_IP) {
        struct udphdr *udp = payload;
        if ((void *)(udp + 1) > data_end)
            return TUNNEL_MALFORMED;
        if (udp->dest != bpf_htons(PMIP6_UDP_PORT))
            return TUNNEL_NONE;
        if (tun->outer.is_fragment)
            return TUNNEL_FRAGMENT;
        tun->sport = udp->source;
        tun->outer_len = tun->outer.hdr_len + sizeof(*udp);
        rc = pmip_parse_ip_any(udp + 1, data_end, &tun->inner);
        return rc == PARSE_OK ? TUNNEL_FOUND : TUNNEL_MALFORMED;
    }
    return TUNNEL_NONE;
}

#endif
