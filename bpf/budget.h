/* Per-CPU budgets for what the data plane hands out at its own initiative:
 * punts and notices to the daemon, ICMP errors to senders. Each is GCRA, a
 * token bucket of `burst` refilled at one per `interval` ns, kept as the
 * theoretical arrival time of the next one in a slot of "budgets". Per-CPU,
 * so no lock: a node sends at most CPUs x rate, whatever arrives. */
#ifndef PMIP6_BUDGET_H
#define PMIP6_BUDGET_H

#include "maps.h"

static __always_inline struct dp_config *pmip_dp_config(void)
{
    __u32 zero = 0;
    return config.lookup(&zero);
}

/* Takes one from budget slot (BUDGET_*) if it has one; interval 0: no limit. */
static __always_inline int pmip_within_budget(__u32 slot, __u64 interval, __u32 burst)
{
    __u64 *tat, now, next;

    if (!interval)
        return 1;
    tat = budgets.lookup(&slot);
    if (!tat)
        return 0;
    now = bpf_ktime_get_ns();
    next = *tat > now ? *tat : now;
    if (next - now > (__u64)(burst ? burst - 1 : 0) * interval)
        return 0;
    *tat = next + interval;
    return 1;
}

#endif
