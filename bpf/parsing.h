/* Header parsing with the bounds checks the verifier wants. Every parser
 * returns PARSE_OK, PARSE_NOT_IP (hand the frame to the kernel) or
 * PARSE_MALFORMED (count and drop).
 */
#ifndef PMIP6_PARSING_H
#define PMIP6_PARSING_H

#include "maps.h"

#define PARSE_OK        0
#define PARSE_NOT_IP    1
#define PARSE_MALFORMED 2

#define IP_MF     0x2000
#define IP_OFFSET 0x1FFF

/* What the programs need to know of one IP header. */
struct ip_info {
    void  *hdr;            /* the IPv4 or IPv6 header */
    __u16 eth_proto;       /* ETH_P_IP or ETH_P_IPV6 (host order) */
    __u16 hdr_len;         /* 40, or the IPv4 IHL in octets */
    __u16 total_len;       /* header + payload, as the header says */
    __u8  l4proto;         /* IPv6 next header or IPv4 protocol */
    __u8  hop_limit;
    __u8  is_fragment;     /* IPv4 MF or offset set */
    __u8  is_later_fragment; /* IPv4 offset set: no L4 header in this packet */
    __u8  tos;             /* IPv6 traffic class or IPv4 TOS: DSCP and ECN (RFC 2474, RFC 3168) */
    union ip_addr src;
    union ip_addr dst;
};

static __always_inline void pmip_addr_from_ip4(union ip_addr *a, __be32 v4)
{
    a->w[0] = 0;
    a->w[1] = 0;
    a->w[2] = bpf_htonl(0x0000ffff);
    a->w[3] = v4;
}

static __always_inline void pmip_addr_from_ip6(union ip_addr *a, const struct in6_addr *v6)
{
    __builtin_memcpy(a, v6, sizeof(*a));
}

static __always_inline int pmip_parse_eth(void *data, void *data_end, __u16 *eth_proto)
{
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end)
        return PARSE_MALFORMED;
    *eth_proto = bpf_ntohs(eth->h_proto);
    if (*eth_proto != ETH_P_IP && *eth_proto != ETH_P_IPV6)
        return PARSE_NOT_IP;
    return PARSE_OK;
}

static __always_inline int pmip_parse_ip6(void *hdr, void *data_end, struct ip_info *ip)
{
    struct ipv6hdr *ip6 = hdr;

    if ((void *)(ip6 + 1) > data_end)
        return PARSE_MALFORMED;
    if (ip6->version != 6)
        return PARSE_MALFORMED;
    ip->hdr = hdr;
    ip->eth_proto = ETH_P_IPV6;
    ip->hdr_len = sizeof(*ip6);
    ip->total_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
    if (hdr + ip->total_len > data_end)
        return PARSE_MALFORMED;
    ip->l4proto = ip6->nexthdr;
    ip->hop_limit = ip6->hop_limit;
    ip->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
    ip->is_fragment = 0;
    ip->is_later_fragment = 0;
    pmip_addr_from_ip6(&ip->src, &ip6->saddr);
    pmip_addr_from_ip6(&ip->dst, &ip6->daddr);
    return PARSE_OK;
}

static __always_inline int pmip_parse_ip4(void *hdr, void *data_end, struct ip_info *ip)
{
    struct iphdr *ip4 = hdr;

    if ((void *)(ip4 + 1) > data_end)
        return PARSE_MALFORMED;
    if (ip4->version != 4 || ip4->ihl < 5)
        return PARSE_MALFORMED;
    ip->hdr = hdr;
    ip->eth_proto = ETH_P_IP;
    ip->hdr_len = ip4->ihl * 4;
    ip->total_len = bpf_ntohs(ip4->tot_len);
    if (ip->total_len < ip->hdr_len || hdr + ip->total_len > data_end)
        return PARSE_MALFORMED;
    ip->l4proto = ip4->protocol;
    ip->hop_limit = ip4->ttl;
    ip->tos = ip4->tos;
    ip->is_fragment = (ip4->frag_off & bpf_htons(IP_MF | IP_OFFSET)) != 0;
    ip->is_later_fragment = (ip4->frag_off & bpf_htons(IP_OFFSET)) != 0;
    pmip_addr_from_ip4(&ip->src, ip4->saddr);
    pmip_addr_from_ip4(&ip->dst, ip4->daddr);
    return PARSE_OK;
}

/* Parses the IP header at hdr, whose family the first nibble tells (used for
 * the inner packet of a UDP tunnel, which has no next-header hint). */
static __always_inline int pmip_parse_ip_any(void *hdr, void *data_end, struct ip_info *ip)
{
    __u8 *version = hdr;

    if ((void *)(version + 1) > data_end)
        return PARSE_MALFORMED;
    if ((*version >> 4) == 6)
        return pmip_parse_ip6(hdr, data_end, ip);
    if ((*version >> 4) == 4)
        return pmip_parse_ip4(hdr, data_end, ip);
    return PARSE_MALFORMED;
}

static __always_inline int pmip_parse_ip(void *hdr, void *data_end, __u16 eth_proto, struct ip_info *ip)
{
    if (eth_proto == ETH_P_IPV6)
        return pmip_parse_ip6(hdr, data_end, ip);
    return pmip_parse_ip4(hdr, data_end, ip);
}

/* The first octet after the IP header. The mask keeps the offset provably
 * small for the verifier (hdr_len is 40, or at most 60 for IPv4). */
static __always_inline void *pmip_ip_payload(const struct ip_info *ip)
{
    return ip->hdr + (ip->hdr_len & 0x7f);
}

/* fe80::/10, ff00::/8, and IPv4 multicast/broadcast: never tunnelled. */
static __always_inline int pmip_is_link_scoped(const struct ip_info *ip)
{
    if (ip->eth_proto == ETH_P_IPV6)
        return ip->dst.b[0] == 0xff || (ip->dst.b[0] == 0xfe && (ip->dst.b[1] & 0xc0) == 0x80);
    __u8 first = ip->dst.b[12];
    return first >= 224 || ip->dst.w[3] == 0xffffffff;
}

static __always_inline int pmip_is_ip4(const union ip_addr *a)
{
    return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0x0000ffff);
}

#endif
