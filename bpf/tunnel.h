/* The steps the role programs share: look up the tunnel peer, push or pop
 * the outer headers, and hand the result to pmip_forward(). */
#ifndef PMIP6_TUNNEL_H
#define PMIP6_TUNNEL_H

#include "maps.h"
#include "parsing.h"
#include "encap.h"
#include "forward.h"
#include "events.h"
#include "icmp.h"

static __always_inline struct mn_entry *pmip_lookup_mn(const union ip_addr *addr)
{
    struct prefix_key key = { .prefixlen = 128 };

    __builtin_memcpy(&key.addr, addr, sizeof(key.addr));
    return mn_table.lookup(&key);
}

/* The live RO entry for a pair, or NULL (none, or its lifetime is over). */
static __always_inline struct ro_entry *pmip_lookup_ro(const union ip_addr *local, const union ip_addr *remote)
{
    struct ro_key key;
    struct ro_entry *ro;

    __builtin_memcpy(&key.local, local, sizeof(key.local));
    __builtin_memcpy(&key.remote, remote, sizeof(key.remote));
    ro = ro_table.lookup(&key);
    if (ro && ro->expires_ns && bpf_ktime_get_coarse_ns() > ro->expires_ns)
        return NULL;
    return ro;
}

static __always_inline int pmip_is_local_address(const union ip_addr *addr)
{
    return local_addrs.lookup((union ip_addr *)addr) != NULL;
}

static __always_inline struct peer *pmip_lookup_peer(const struct tunnel_info *tun)
{
    struct peer_key key = { .port = tun->sport };

    __builtin_memcpy(&key.addr, &tun->outer.src, sizeof(key.addr));
    return peers.lookup(&key);
}

/* A mobility message inside the tunnel: IPv6/MH, or the IPv4-wrapped form of
 * the draft's fig. 2-3 (IPv4 / IPv6 / MH). Only the first header is checked:
 * proxy RR messages carry no extension headers. */
static __always_inline int pmip_carries_mobility_message(const struct ip_info *inner, void *data_end)
{
    if (inner->eth_proto == ETH_P_IPV6)
        return inner->l4proto == IPPROTO_MH;
    if (inner->l4proto != IPPROTO_IPV6 || inner->is_later_fragment)
        return 0;
    struct ipv6hdr *ip6 = pmip_ip_payload(inner);
    if ((void *)(ip6 + 1) > data_end)
        return 0;
    return ip6->nexthdr == IPPROTO_MH;
}

/* Mobility signaling in a packet from an MN: an IPv6 Mobility Header, one
 * inside IPv4 (proto 41), or IPv4/UDP to the PMIPv6 port (RFC 5844). Only
 * the first header is checked; anything behind extension headers meets the
 * authentication of the node it reaches. An IPv4 first fragment is checked
 * like a whole packet; a later one carries no header to check, and without
 * its first fragment it never reassembles into a message. */
static __always_inline int pmip_is_mobility_signaling(const struct ip_info *ip, void *data_end)
{
    if (ip->eth_proto == ETH_P_IPV6)
        return ip->l4proto == IPPROTO_MH;
    if (ip->is_later_fragment)
        return 0;
    if (ip->l4proto == IPPROTO_UDP) {
        struct udphdr *udp = pmip_ip_payload(ip);
        if ((void *)(udp + 1) > data_end)
            return 0;
        return udp->dest == bpf_htons(PMIP6_UDP_PORT);
    }
    return pmip_carries_mobility_message(ip, data_end);
}

/* The first step of every program: the Ethernet and IP headers into ip.
 * Returns 0 to go on; otherwise the frame has been counted and *verdict is
 * what the program returns. */
static __always_inline int pmip_read_ip_header(struct xdp_md *ctx, __u32 prog, struct ip_info *ip, int *verdict)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u16 eth_proto;
    int rc = pmip_parse_eth(data, data_end, &eth_proto);

    if (rc == PARSE_NOT_IP) {
        *verdict = pmip_finish(ctx, prog, REASON_PASS_NOT_IP);
        return -1;
    }
    if (rc != PARSE_OK || pmip_parse_ip(data + sizeof(struct ethhdr), data_end, eth_proto, ip) != PARSE_OK) {
        *verdict = pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
        return -1;
    }
    return 0;
}

/* The transport side's first step: the outer headers into tun->outer
 * (read_ip_header), then is this a tunnel packet? TUNNEL_FOUND or
 * TUNNEL_NONE to go on; -1 when the frame is done with (*verdict set). */
static __always_inline int pmip_read_tunnel(struct xdp_md *ctx, __u32 prog, struct tunnel_info *tun, int *verdict)
{
    int rc;

    if (pmip_read_ip_header(ctx, prog, &tun->outer, verdict))
        return -1;
    rc = pmip_parse_tunnel((void *)(long)ctx->data_end, tun);

    if (rc == TUNNEL_MALFORMED) {
        *verdict = pmip_finish(ctx, prog, REASON_DROP_MALFORMED);
        return -1;
    }
    if (rc == TUNNEL_FRAGMENT) {
        *verdict = pmip_finish(ctx, prog, REASON_PASS_FRAGMENT);
        return -1;
    }
    return rc;
}

/* Tunnelled traffic from an RO peer must match an RO entry that names that
 * peer; when it does not, the daemon is told (it answers with a BE). The
 * first such packet also proves the peer holds the pair: our side may now
 * send into the tunnel too (RO_RX_ONLY). */
static __always_inline int pmip_ro_peer_may_send(struct xdp_md *ctx, __u32 prog, const struct tunnel_info *tun,
                                            const struct peer *peer)
{
    struct ro_entry *ro = pmip_lookup_ro(&tun->inner.dst, &tun->inner.src);

    if (ro && (ro->tunnel_id == peer->tunnel_id || (ro->also_from_tunnel && ro->also_from_tunnel == peer->tunnel_id))) {
        if (ro->flags & RO_RX_ONLY)
            ro->flags &= ~RO_RX_ONLY;
        return 1;
    }
    pmip_note_missing_ro_binding(ctx, prog, &tun->inner.src, &tun->inner.dst, &tun->outer.src);
    return 0;
}

/* The RO entry to send a local→remote packet into, if any. */
static __always_inline struct ro_entry *pmip_ro_to_send(const union ip_addr *local, const union ip_addr *remote)
{
    struct ro_entry *ro = pmip_lookup_ro(local, remote);

    return ro && !(ro->flags & (RO_RX_ONLY | RO_DRAINING)) ? ro : NULL;
}

/* Signaling addressed to this node inside IPv4 (RFC 5844 IPv6/MH in UDP, or
 * the draft's fig. 6-7): the daemon's socket takes it, and the daemon, not
 * the peer table, decides whether the sender may speak. */
static __always_inline int pmip_is_signaling_for_us(const struct tunnel_info *tun)
{
    return tun->inner.eth_proto == ETH_P_IPV6 && tun->inner.l4proto == IPPROTO_MH
        && pmip_is_local_address(&tun->inner.dst);
}

/* Pushes tunnel tunnel_id's outer headers in front of the IP packet ip and
 * forwards the result, counted as reason. decrement: whether this node
 * forwards the inner packet (a router) rather than originating it. A packet
 * that would exceed the tunnel's path MTU is not encapsulated: its source
 * gets a Packet Too Big naming the room left after the outer headers. */
static __always_inline int pmip_encap_and_forward(struct xdp_md *ctx, __u32 prog, struct ip_info *ip,
                                             __u32 tunnel_id, __u32 reason, int decrement)
{
    struct dp_config *cfg = pmip_dp_config();
    struct tunnel *t = tunnels.lookup(&tunnel_id);
    struct nexthop *nh;
    __u32 outer_len;
    int rc;

    if (!t || !t->type)
        return pmip_finish(ctx, prog, REASON_DROP_NO_TUNNEL);
    if (decrement && !pmip_decrement_hop_limit(ip, (void *)(long)ctx->data_end))
        return pmip_finish(ctx, prog, REASON_PASS_HOP_LIMIT);
    outer_len = pmip_tunnel_outer_len(t);
    nh = pmip_tunnel_nexthop(ctx, tunnel_id, t, &rc);
    if (nh && ip->total_len + outer_len > nh->mtu)
        return pmip_send_too_big(ctx, prog, cfg, ip, t, nh->mtu - outer_len);
    if (pmip_encapsulate(ctx, t, ip, cfg ? cfg->hop_limit : 64) != ENCAP_OK)
        return pmip_finish(ctx, prog, REASON_DROP_NO_HEADROOM);
    if (!nh)    /* e.g. no neighbour entry yet: the kernel resolves it and sends the encapsulated frame */
        return pmip_fib_failure(ctx, prog, rc);
    return pmip_redirect_to(ctx, prog, reason, nh->ifindex, nh->smac, nh->dmac);
}

/* Removes the outer headers of tun and parses the inner packet again into
 * ip (the old pointers are stale after the head moved). */
static __always_inline int pmip_decap_and_parse(struct xdp_md *ctx, const struct tunnel_info *tun, struct ip_info *ip)
{
    if (pmip_decapsulate(ctx, tun->outer_len, tun->inner.eth_proto))
        return PARSE_MALFORMED;
    return pmip_parse_ip((void *)(long)ctx->data + sizeof(struct ethhdr), (void *)(long)ctx->data_end,
                    tun->inner.eth_proto, ip);
}

#endif
