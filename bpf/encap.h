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

static __always_inline int pmip_push_ip6_outer(struct xdp_md *ctx, const struct tunnel *t,
                                          __u16 inner_eth_proto, __u16 inner_len, __u8 hop_limit)
{
    struct ethhdr *eth = pmip_grow_head(ctx, OUTER_IP6_LEN, ETH_P_IPV6);
    struct ipv6hdr *ip6;

    if (!eth)
        return ENCAP_NO_ROOM;
    ip6 = (void *)(eth + 1);
    if ((void *)(ip6 + 1) > (void *)(long)ctx->data_end)
        return ENCAP_NO_ROOM;
    *(__be32 *)ip6 = bpf_htonl(0x60000000);   /* version 6, traffic class 0, flow label 0 */
    ip6->payload_len = bpf_htons(inner_len);
    ip6->nexthdr = pmip_tunnel_proto(inner_eth_proto);
    ip6->hop_limit = hop_limit;
    __builtin_memcpy(&ip6->saddr, &t->local, sizeof(ip6->saddr));
    __builtin_memcpy(&ip6->daddr, &t->remote, sizeof(ip6->daddr));
    return ENCAP_OK;
}

static __always_inline int pmip_push_ip4_outer(struct xdp_md *ctx, const struct tunnel *t,
                                          __u16 inner_eth_proto, __u16 inner_len, __u8 ttl)
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
    ip4->tos = 0;
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
        return pmip_push_ip6_outer(ctx, t, inner->eth_proto, inner->total_len, hop_limit);
    return pmip_push_ip4_outer(ctx, t, inner->eth_proto, inner->total_len, hop_limit);
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
