/* MAG, access side: packets from mobile nodes.
 * parse -> link-scoped (RS, ND)?      the kernel
 *       -> no attached MN's source?    to the handover buffer, or drop (handover.h)
 *       -> not attached on
 *          this very link?           drop (an access link speaks for its own MNs only)
 *       -> mobility signaling?        drop (MNs never signal into the core)
 *       -> routed locally?            onto the other MN's access link (RFC 6705, local_route.h)
 *       -> route-optimized pair?      tunnel to the RO peer
 *       -> else                       tunnel to its LMA (and count toward the RO trigger) */
#include "tunnel.h"
#include "local_route.h"
#include "handover.h"

int xdp_mag_access(struct xdp_md *ctx)
{
    const __u32 prog = PROG_MAG_ACCESS;
    struct ip_info ip;
    struct ro_entry *ro;
    struct mn_entry *mn;
    int verdict;

    if (pmip_read_ip_header(ctx, prog, &ip, &verdict))
        return verdict;
    /* (Traffic to the MAG's own global addresses takes the LMA path, as
     * RFC 5213 routes all MN traffic: no per-packet local-address check.) */
    if (pmip_is_link_scoped(&ip))
        return pmip_finish(ctx, prog, REASON_PASS_LOCAL);

    mn = pmip_lookup_mn(&ip.src);
    if (!mn)
        return pmip_unknown_source(ctx, prog, &ip);
    if (mn->ifindex && mn->ifindex != ctx->ingress_ifindex)
        return pmip_finish(ctx, prog, REASON_DROP_WRONG_LINK);
    if (pmip_is_mobility_signaling(&ip, (void *)(long)ctx->data_end))
        return pmip_finish(ctx, prog, REASON_DROP_MN_SIGNALING);
    if (pmip_local_route(ctx, prog, &ip, &verdict))
        return verdict;

    ro = pmip_ro_to_send(&ip.src, &ip.dst);
    if (ro)
        return pmip_encap_and_forward(ctx, prog, &ip, ro->tunnel_id, REASON_FWD_ENCAP_RO, 1);

    pmip_note_unoptimized_flow(ctx, prog, &ip.src, &ip.dst);
    return pmip_encap_and_forward(ctx, prog, &ip, mn->tunnel_id, REASON_FWD_ENCAP_PMIP, 1);
}
