/* Why a packet left a program: every exit is counted under exactly one reason.
 * X(NAME, VERDICT, "help") — pmip6ctl/dataplane parses these lines to label
 * the per-CPU counters (metric labels verdict=, reason=), so keep one per line.
 * VERDICT is what the program returned: redirect, pass, drop, or punt (an
 * XDP_DROP after the frame was handed to the daemon).
 */
#ifndef PMIP6_REASONS_H
#define PMIP6_REASONS_H

#define PMIP6_REASONS(X) \
    X(FWD_ENCAP_PMIP,     redirect, "encapsulated into the PMIPv6 tunnel (MAG to LMA, LMA to MAG)") \
    X(FWD_ENCAP_RO,       redirect, "encapsulated into a route-optimized tunnel") \
    X(FWD_DECAP,          redirect, "decapsulated and forwarded") \
    X(FWD_REENCAP,        redirect, "decapsulated from one MAG and encapsulated toward another") \
    X(FWD_LOCAL,          redirect, "from one mobile node straight to another attached to the same MAG: local routing (RFC 6705), no tunnel") \
    X(ICMP_TOO_BIG,       redirect, "too big for the tunnel path MTU: ICMPv6 Packet Too Big or ICMP fragmentation needed sent back") \
    X(PASS_NOT_IP,        pass,     "not IPv4 or IPv6 (ARP, VLAN-tagged, other ethertypes)") \
    X(PASS_LOCAL,         pass,     "link-local, multicast or addressed to this node") \
    X(PASS_NOT_MN,        pass,     "source or destination is no registered mobile node") \
    X(PASS_DECAP_LOCAL,   pass,     "decapsulated and handed to the local stack") \
    X(PASS_NO_NEIGH,      pass,     "next hop has no neighbour entry yet: the kernel resolves it") \
    X(PASS_FIB_OTHER,     pass,     "the FIB lookup did not give a forwarding decision") \
    X(PASS_NO_EGRESS,     pass,     "the egress interface is not in the devmap (tx_ports): the kernel forwards it") \
    X(PASS_HOP_LIMIT,     pass,     "hop limit or TTL expires here: the kernel sends ICMP") \
    X(PASS_FRAGMENT,      pass,     "outer IPv4 fragment: cannot decapsulate in XDP") \
    X(PASS_FRAG_NEEDED,   pass,     "decapsulated, too big for the egress link: the kernel sends the ICMP error") \
    X(PUNT_MH,            punt,     "mobility message intercepted for the daemon") \
    X(DROP_MALFORMED,     drop,     "truncated or inconsistent headers") \
    X(DROP_FRAG_NEEDED,   drop,     "IPv4 without DF too big for the tunnel path MTU: XDP does not fragment") \
    X(DROP_ICMP_LIMIT,    drop,     "too big for the tunnel path MTU, over the per-CPU ICMP error budget: no error sent") \
    X(DROP_ECN_NOT_ECT,   drop,     "outer header marked CE (congestion) over an inner packet that is not ECN-capable (RFC 6040 4.2)") \
    X(DROP_NO_HEADROOM,   drop,     "no room to push the outer header") \
    X(DROP_UNKNOWN_PEER,  drop,     "tunnel from a source that holds no binding") \
    X(DROP_NOT_ATTACHED,  drop,     "decapsulated packet for no attached mobile node") \
    X(DROP_SPOOFED_INNER, drop,     "inner source does not belong to the tunnel peer") \
    X(DROP_NO_RO_BINDING, drop,     "route-optimized traffic for a binding that no longer exists") \
    X(DROP_NO_TUNNEL,     drop,     "entry names a tunnel that does not exist") \
    X(DROP_UNKNOWN_SOURCE, drop,    "from an access link, with a source that is no attached mobile node's") \
    X(DROP_WRONG_LINK,    drop,     "from an access link other than the one its mobile node is attached on") \
    X(DROP_MN_SIGNALING,  drop,     "mobility signaling from a mobile node: never forwarded into the core") \
    X(DROP_PUNT_FAILED,   drop,     "could not hand a frame (a mobility message, or a packet to hold) to the daemon") \
    X(DROP_PUNT_LIMIT,    drop,     "a frame for the daemon (a mobility message, or a packet to hold) over its per-CPU punt budget") \
    X(PUNT_HELD,          punt,     "from an access link with no attached mobile node's source: handed to the handover buffer") \
    X(PASS_DEPARTED,      pass,     "from an RO peer for a mobile node that left: decapsulated, the kernel routes it to the MN's anchor") \
    X(PUNT_HELD_DOWNLINK, punt,     "for a mobile node between two MAGs: handed to the LMA's downlink hold")

#define PMIP6_REASON_ENUM(name, verdict, help) REASON_##name,
enum pmip6_reason { PMIP6_REASONS(PMIP6_REASON_ENUM) REASON_COUNT };

#endif
