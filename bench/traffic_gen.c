/* Benchmark helpers (not part of the data plane).
 * xdp_gen:  the live-frames generator. BPF_PROG_TEST_RUN with
 *           BPF_F_TEST_XDP_LIVE_FRAMES runs it on recycled pages, so it
 *           rewrites the headers from the template every time (DESIGN §4),
 *           then redirects into the forwarding namespace.
 * xdp_sink: counts and drops what comes out the far side. */
#include <uapi/linux/bpf.h>

#define TEMPLATE_LEN 64

struct frame_template {
    unsigned char bytes[TEMPLATE_LEN];
};

BPF_ARRAY(template, struct frame_template, 1);
BPF_ARRAY(target, int, 1);
BPF_PERCPU_ARRAY(sunk, u64, 1);

int xdp_gen(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    int zero = 0;
    struct frame_template *t = template.lookup(&zero);
    int *ifindex = target.lookup(&zero);

    if (!t || !ifindex || data + TEMPLATE_LEN > data_end)
        return XDP_DROP;
    __builtin_memcpy(data, t->bytes, TEMPLATE_LEN);
    return bpf_redirect(*ifindex, 0);
}

int xdp_sink(struct xdp_md *ctx)
{
    int zero = 0;
    u64 *n = sunk.lookup(&zero);

    if (n)
        (*n)++;
    return XDP_DROP;
}

int xdp_pass(struct xdp_md *ctx)
{
    return XDP_PASS;
}

/* What the benchmark's wrapper adds around the MAG program to undo its
 * encapsulation between repetitions, alone: measured to report it. */
int xdp_restore_only(struct xdp_md *ctx)
{
    int zero = 0;
    struct frame_template *t = template.lookup(&zero);
    void *data, *data_end;

    if (bpf_xdp_adjust_head(ctx, -40))
        return XDP_ABORTED;
    if (bpf_xdp_adjust_head(ctx, 40) || !t)
        return XDP_ABORTED;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    if (data + TEMPLATE_LEN > data_end)
        return XDP_ABORTED;
    __builtin_memcpy(data, t->bytes, TEMPLATE_LEN);
    return XDP_PASS;
}

/* The limit of the forwarding benchmark: what the MAG access program does
 * at the least, with no lookup and no check. Pushes a fixed IPv6 outer
 * header, writes fixed MACs and redirects through a devmap as the data
 * plane does (the MACs and addresses come from the benchmark's -D). */
BPF_DEVMAP(encap_out, 1);

int xdp_encap_only(struct xdp_md *ctx)
{
    unsigned char macs[12] = { LIMIT_DMAC, LIMIT_SMAC };
    unsigned char saddr[16] = { LIMIT_SADDR }, daddr[16] = { LIMIT_DADDR };
    void *data, *data_end;
    __u16 inner_len;

    if (bpf_xdp_adjust_head(ctx, -40))
        return XDP_DROP;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    if (data + 14 + 40 + 40 > data_end)
        return XDP_DROP;
    inner_len = (__u16)(data_end - data) - 14 - 40;
    __builtin_memcpy(data, macs, 12);
    *(__be16 *)(data + 12) = bpf_htons(0x86DD);
    *(__be32 *)(data + 14) = bpf_htonl(0x60000000);
    *(__be16 *)(data + 18) = bpf_htons(inner_len);
    *(__u8 *)(data + 20) = 41;
    *(__u8 *)(data + 21) = 64;
    __builtin_memcpy(data + 22, saddr, 16);
    __builtin_memcpy(data + 38, daddr, 16);
    return encap_out.redirect_map(0, 0);
}
