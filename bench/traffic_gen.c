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
