/* Constants shared by the XDP programs and the Python loader.
 * pmip6ctl/dataplane reads every "#define NAME number" line of this file, so
 * these values have exactly one definition. Sizes are defaults: the loader
 * passes the configured value with -D.
 */
#ifndef PMIP6_CONSTANTS_H
#define PMIP6_CONSTANTS_H

/* Outer encapsulation of a tunnel (struct tunnel.type). */
#define ENCAP_IP6      1   /* IPv6 outer header, inner IPv6 (41) or IPv4 (4) */
#define ENCAP_IP4      2   /* IPv4 outer header, inner IPv6 (41) or IPv4 (4) */
#define ENCAP_UDP4     3   /* IPv4 + UDP outer headers for NAT traversal (RFC 5844 §4) */

/* UDP port for IPv4 transport and NAT traversal (RFC 5844, RFC 5555). */
#define PMIP6_UDP_PORT 5436

/* The Mobility Header's protocol number (RFC 6275 §6.1; linux/in6.h has the
 * same definition, which C allows to repeat). */
#define IPPROTO_MH     135

/* Kinds of authorised tunnel peer (struct peer.kind). */
#define PEER_LMA       1   /* the MAG's LMA */
#define PEER_MAG       2   /* a MAG holding a binding at this LMA */
#define PEER_RO        3   /* a route-optimization peer (MAG or CN agent) */

/* struct ro_entry.flags */
#define RO_RX_ONLY     1   /* accept the peer's tunnel, do not send into it yet: set by the
                            * responder until the initiator's first packet proves that the
                            * initiator holds the entry too (so no packet meets a peer that
                            * would drop it); the transport program clears it */
#define RO_DRAINING    2   /* our side stopped: send nothing, but accept the peer's tunnel a
                            * moment longer (its packets in flight, until our deregistration
                            * reaches it); only the daemon removes the entry */

/* struct mn_entry.ifindex at the LMA (which otherwise leaves it 0): the MN
 * is between two MAGs and its downlink goes to the daemon's hold (EVENT_HELD,
 * bpf/lma.c); tunnel_id is 0, or the new MAG's tunnel once the binding there
 * is accepted (its uplink passes) until the held packets are released */
#define LMA_MN_HELD    1

/* Programs, for the stats key. */
#define PROG_MAG_ACCESS     0
#define PROG_MAG_TRANSPORT  1
#define PROG_LMA            2
#define PROG_CN             3
#define PROG_CN_EGRESS      4
#define PROG_COUNT          5

/* Events sent to the daemon (struct event_header.type). */
#define EVENT_FLOW_TRIGGER  1   /* an MN->destination flow without an RO entry passed the threshold */
#define EVENT_PUNT          2   /* an intercepted mobility message, whole frame follows */
#define EVENT_NO_RO_BINDING 3   /* tunnelled traffic from an RO peer for a pair we hold no entry for */
#define EVENT_OVER_BUDGET   4   /* counted only: a punt or notice the per-CPU budget refused */
#define EVENT_UNKNOWN_SOURCE 5  /* traffic from an access link with no attached MN's source; peer holds the MAC */
#define EVENT_HELD          6   /* the same traffic, whole frame follows: for the handover buffer */
#define EVENT_KIND_COUNT    7

/* Default table sizes (overridden by the loader from config). */
#ifndef MAX_MN_ENTRIES
#define MAX_MN_ENTRIES      65536
#endif
#ifndef MAX_RO_ENTRIES
#define MAX_RO_ENTRIES      65536
#endif
#ifndef MAX_TUNNELS
#define MAX_TUNNELS         4096
#endif
#ifndef MAX_PEERS
#define MAX_PEERS           4096
#endif
#ifndef MAX_FLOWS
#define MAX_FLOWS           65536
#endif
#ifndef MAX_PORTS
#define MAX_PORTS           1024  /* interfaces a redirect may leave through (tx_ports) */
#endif
#ifndef MAX_LOCAL_ADDRS
#define MAX_LOCAL_ADDRS     256   /* this node's own addresses (local_addrs) */
#endif

/* Per-CPU budgets (GCRA slots of the map "budgets", bpf/events.h). */
#define BUDGET_PUNT    0   /* punts and notices to the daemon */
#define BUDGET_ICMP    1   /* ICMP errors the data plane sends (Packet Too Big) */
#define BUDGET_COUNT   2

/* Octets of the offending packet an ICMP Packet Too Big (or fragmentation
 * needed) quotes: enough for the IP and transport headers a host matches
 * the error by; fixed, so that the checksum runs over a known length. */
#define PTB_QUOTE_IP6  256
#define PTB_QUOTE_IP4  128

/* Outer header sizes. */
#define OUTER_IP6_LEN  40
#define OUTER_IP4_LEN  20
#define OUTER_UDP4_LEN 28

/* Sizes of the perf-buffer records (bpf/events.h), checked on both sides:
 * by _Static_assert in C and by pmip6ctl/dataplane/loader.py in Python. */
#define SIZEOF_EVENT_HEADER 16  /* struct event_header */
#define SIZEOF_FLOW_EVENT   72  /* struct flow_event */

#endif
