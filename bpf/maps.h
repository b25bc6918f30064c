/* The maps every program shares. Maps are pinned under PIN_DIR (set by the
 * loader to /sys/fs/bpf/pmip6/<node>) so that a restarted daemon finds them
 * and the data plane keeps forwarding meanwhile. Their types are in types.h.
 */
#ifndef PMIP6_MAPS_H
#define PMIP6_MAPS_H

#include "types.h"

#ifndef PIN_DIR
#error "the loader defines PIN_DIR"
#endif
#define PIN(name) PIN_DIR "/" #name

/* An XDP devmap keyed by ifindex (BPF_MAP_TYPE_DEVMAP_HASH, xdp-forward's
 * tx_ports): any ifindex, so a link made after start is a valid egress as
 * soon as the daemon hears of it. bcc 0.26 knows no devmap_hash: the loader
 * creates the map at PIN(tx_ports), and this declares it as the pinned map
 * bcc reopens, with the two calls the programs make on it. */
#define PMIP_DEVMAP_HASH_PINNED(_name, _max_entries, _pinned)              \
    struct _name##_table_t {                                                \
        int key;                                                            \
        int leaf;                                                           \
        int *(*lookup)(int *);                                              \
        u64 (*redirect_map)(int, int);                                      \
        u32 max_entries;                                                    \
    };                                                                      \
    __attribute__((section("maps/hash:" _pinned)))                          \
    struct _name##_table_t _name = { .max_entries = (_max_entries) }

BPF_TABLE_PINNED("lpm_trie", struct prefix_key, struct mn_entry, mn_table, MAX_MN_ENTRIES, PIN(mn_table), BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", struct ro_key, struct ro_entry, ro_table, MAX_RO_ENTRIES, PIN(ro_table));
BPF_TABLE_PINNED("array", __u32, struct tunnel, tunnels, MAX_TUNNELS, PIN(tunnels));
BPF_TABLE_PINNED("hash", struct peer_key, struct peer, peers, MAX_PEERS, PIN(peers));
BPF_TABLE_PINNED("hash", union ip_addr, __u32, local_addrs, MAX_LOCAL_ADDRS, PIN(local_addrs));
BPF_TABLE_PINNED("lru_hash", struct ro_key, struct flow_state, flows, MAX_FLOWS, PIN(flows));
/* Flows this data plane put in `flows` (its only writer): the daemon's count
 * of the map's entries without a walk (dataplane/tables.py, issue 14). */
BPF_TABLE_PINNED("percpu_array", __u32, __u64, flows_created, 1, PIN(flows_created));
BPF_TABLE_PINNED("percpu_array", __u32, struct counter, stats, PROG_COUNT * REASON_COUNT, PIN(stats));
BPF_TABLE_PINNED("percpu_array", __u32, __u64, event_stats, PROG_COUNT * EVENT_KIND_COUNT, PIN(event_stats));
/* Derived state, rebuilt by every loader before it attaches. */
BPF_TABLE_PINNED("array", __u32, struct dp_config, config, 1, PIN(config));    /* unpinned first: its layout may change */
PMIP_DEVMAP_HASH_PINNED(tx_ports, MAX_PORTS, PIN(tx_ports));   /* ifindex -> ifindex */
BPF_PERCPU_ARRAY(nexthops, struct nexthop, MAX_TUNNELS);
BPF_PERCPU_ARRAY(budgets, __u64, BUDGET_COUNT);  /* per BUDGET_*: the theoretical arrival time of the next one (GCRA) */
BPF_PERF_OUTPUT(events);

#endif
