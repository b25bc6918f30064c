/* Checksums. The outer IPv4 header checksum must be computed here: veths
 * carry no offload for it. (Every helper of ours carries the pmip_ prefix:
 * bcc compiles them in one unit with the kernel headers, where csum_fold,
 * for one, already exists.) */
#ifndef PMIP6_CHECKSUM_H
#define PMIP6_CHECKSUM_H

static __always_inline __u16 pmip_fold_checksum(__u32 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return ~sum;
}

/* RFC 791 header checksum over a 20-octet header (the only kind we build). */
static __always_inline __u16 pmip_ip4_header_checksum(const struct iphdr *ip4)
{
    const __u16 *word = (const __u16 *)ip4;
    __u32 sum = 0;

#pragma unroll
    for (int i = 0; i < (int)(sizeof(*ip4) / 2); i++)
        sum += word[i];
    return pmip_fold_checksum(sum);
}

/* Decrements the TTL and patches the checksum incrementally (RFC 1624), as
 * the kernel's ip_decrease_ttl does. */
static __always_inline void pmip_ip4_decrease_ttl(struct iphdr *ip4)
{
    __u32 check = ip4->check;

    check += bpf_htons(0x0100);
    ip4->check = (__u16)(check + (check >= 0xFFFF));
    ip4->ttl--;
}

/* Folds a 64-bit one's-complement sum (bpf_csum_diff results plus extra
 * words) into the 16-bit checksum to store. */
static __always_inline __u16 pmip_fold_checksum64(__u64 sum)
{
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffffffff) + (sum >> 32);
    return pmip_fold_checksum((__u32)sum);
}

/* Patches a checksum for one 16-bit word changed from old to new (RFC 1624
 * eqn. 3: HC' = ~(~HC + ~m + m')). */
static __always_inline void pmip_checksum_replace16(__u16 *check, __u16 old, __u16 new)
{
    __u32 sum = (__u16)~*check;

    sum += (__u16)~old;
    sum += new;
    *check = pmip_fold_checksum(sum);
}

#endif
