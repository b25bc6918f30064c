/* The value and key types of the maps (maps.h) and the kernel headers the
 * programs build on. Layouts here are read back by pmip6ctl/dataplane
 * (tables.py through bcc, pins.py directly) and by the loader's event check.
 */
#ifndef PMIP6_TYPES_H
#define PMIP6_TYPES_H

#include <uapi/linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#include "constants.h"
#include "reasons.h"

/* An address of either family; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d)
 * so that one key layout serves both. */
union ip_addr {
    __u8   b[16];
    __be32 w[4];
};

/* One tunnel: the outer headers to push. Slot 0 and slots with type 0 are
 * unused. The loader bumps generation on every write, which invalidates the
 * next-hop cache entry of that slot. */
struct tunnel {
    __u8   type;            /* ENCAP_* */
    __u8   pad;
    __be16 sport;           /* ENCAP_UDP4 only: our port */
    __be16 dport;           /*                  the peer's (or its NAT's) port */
    __u16  pad2;
    __u32  generation;
    union ip_addr local;
    union ip_addr remote;
};

/* The FIB's answer for a tunnel's outer destination, kept per CPU for one
 * jiffy: the FIB stays the authority on the next hop (a route change takes
 * effect within a jiffy), and the RO fast path pays for one lookup per jiffy
 * instead of one per packet. */
struct nexthop {
    __u64 jiffies;          /* when the FIB said so; 0 = empty */
    __u32 generation;       /* of the tunnel it was resolved for */
    __u32 ifindex;
    __u16 mtu;              /* of the route: longer outer packets get DROP_FRAG_NEEDED */
    __u8  smac[6];
    __u8  dmac[6];
    __u16 pad;
};

/* Longest-prefix key: an MN's home network prefix, or its IPv4 HoA as /128. */
struct prefix_key {
    __u32 prefixlen;
    union ip_addr addr;
};

struct mn_entry {
    __u32 tunnel_id;        /* MAG: toward the LMA; LMA: toward the serving MAG */
    __u32 ifindex;          /* MAG: the access link the MN is attached on, the only one
                             * its packets may come from; LMA: 0, or LMA_MN_HELD */
};

/* Route-optimized pair, as the draft's cache entry (MN HoA, CN HoA) seen from
 * this node: local is the address served here, remote the correspondent. */
struct ro_key {
    union ip_addr local;
    union ip_addr remote;
};

struct ro_entry {
    __u32 tunnel_id;        /* toward the RO peer (MAG2, MAG1 or a CN) */
    __u32 flags;
    __u32 also_from_tunnel; /* 0, or a second tunnel the peer may use: when both MAGs
                             * started RO for the pair over different transports,
                             * each sends through its own exchange's tunnel */
    __u32 reserved;
    __u64 expires_ns;       /* CLOCK_MONOTONIC; 0 = no expiry. The data plane itself
                             * drops a lapsed binding, so the flow falls back to the
                             * LMA path even when no daemon is there to remove it. */
};

/* An authorised tunnel source; port is the UDP source port for ENCAP_UDP4
 * (the NAT's mapping) and 0 otherwise. */
struct peer_key {
    union ip_addr addr;
    __be16 port;
    __u16  pad;
};

struct peer {
    __u32 tunnel_id;
    __u32 kind;             /* PEER_* */
};

struct flow_state {
    __u64 packets;
    __u64 last_event_ns;
};

struct counter {
    __u64 packets;
    __u64 bytes;
};

struct dp_config {
    __u32 ro_trigger_packets;    /* 0 disables the RO trigger */
    __u32 event_interval_ms;     /* at most one event per flow this often */
    __u32 hop_limit;             /* of the outer header */
    __u32 punt_interval_ns;      /* the daemon's budget per CPU: one punt or notice per interval, */
    __u32 punt_burst;            /* up to punt_burst at once; interval 0: no limit */
    __u32 icmp_interval_ns;      /* ICMP errors (Packet Too Big) per CPU: one per interval, */
    __u32 icmp_burst;            /* up to icmp_burst at once; interval 0: no limit */
    __u32 handover;              /* MAG, the handover aids of bpf/handover.h: an unknown source's
                                  * frames to the daemon's buffer (EVENT_HELD) instead of a notice;
                                  * an RO peer's packets for an MN that left, to its anchor */
};

#endif
