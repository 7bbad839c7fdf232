// GroupNorm on NCHW (the (batch, group) slice is contiguous: channels/groups * hw elements) and
// LayerNorm over the last dim. Statistics and arithmetic are fp32; x and y use store_t.
// ACT=1 fuses SiLU after the affine. WG is the work-group size (a power of two).
//
// naive GroupNorm:  gn_mean -> gn_var -> gn_normalize   (fp32 mean/var tensors in between)
// fused GroupNorm:  gn_fused (one work-group per (batch, group), two sweeps over the slice)
// LayerNorm:        ln_rowwise (one work-group per row)
//
// Accuracy of the one-pass statistics: sums are taken of x - K, with K the slice's first
// element (the shifted-data algorithm), so a large common offset (mean 1e3, std 1e-2) cancels
// before squaring instead of inside S2 - S1^2/n.

#ifndef WG
#define WG 256
#endif
#ifndef ACT
#define ACT 0
#endif

#define REDUCE_SUM(buf, l)                                                \
    for (int o = WG / 2; o > 0; o >>= 1) {                                \
        barrier(CLK_LOCAL_MEM_FENCE);                                     \
        if ((l) < o) buf[l] += buf[(l) + o];                              \
    }                                                                     \
    barrier(CLK_LOCAL_MEM_FENCE);

inline float activate(float y)
{
#if ACT
    return y / (1.0f + exp(-y));
#else
    return y;
#endif
}

// naive pass 1: mean of each (batch, group) slice of n elements, summed as x - x[0] so a large
// common offset does not swamp the float32 sum
__kernel void gn_mean(__global const store_t* x, __global float* mean, int n)
{
    const size_t g = get_group_id(0);
    const int l = get_local_id(0);
    __local float red[WG];
    const float shift = LOAD(x, g * n);
    float s = 0.0f;
    for (int e = l; e < n; e += WG) s += LOAD(x, g * n + e) - shift;
    red[l] = s;
    REDUCE_SUM(red, l)
    if (l == 0) mean[g] = shift + red[0] / n;
}

// naive pass 2: biased variance around the stored mean
__kernel void gn_var(__global const store_t* x, __global const float* mean, __global float* var,
                     int n)
{
    const size_t g = get_group_id(0);
    const int l = get_local_id(0);
    __local float red[WG];
    const float m = mean[g];
    float s = 0.0f;
    for (int e = l; e < n; e += WG) {
        const float t = LOAD(x, g * n + e) - m;
        s += t * t;
    }
    red[l] = s;
    REDUCE_SUM(red, l)
    if (l == 0) var[g] = red[0] / n;
}

// naive pass 3: y = (x - mean) * rsqrt(var + eps) * gamma[c] + beta[c] [then SiLU], elementwise
__kernel void gn_normalize(__global const store_t* x, __global const float* mean,
                           __global const float* var, __global const store_t* gamma,
                           __global const store_t* beta, __global store_t* y,
                           int channels, int hw, int cpg, float eps, int total)
{
    const int i = get_global_id(0);
    if (i >= total) return;
    const int c = (i / hw) % channels;
    const int g = i / (hw * cpg);                         // batch * groups + group
    const float r = rsqrt(var[g] + eps);
    STORE(y, i, activate((LOAD(x, i) - mean[g]) * r * LOAD(gamma, c) + LOAD(beta, c)));
}

// the specialised kernel: sweep 1 accumulates shifted sum and sum of squares, sweep 2 normalizes
__kernel void gn_fused(__global const store_t* x, __global const store_t* gamma,
                       __global const store_t* beta, __global store_t* y,
                       int hw, int cpg, int groups, float eps)
{
    const int g = get_group_id(0), l = get_local_id(0);
    const int n = hw * cpg;
    const int c0 = (g % groups) * cpg;                    // first channel of the group
    __local float r1[WG];
    __local float r2[WG];
    const size_t base = (size_t)g * n;
    const float shift = LOAD(x, base);
    float s1 = 0.0f, s2 = 0.0f;
    for (int e = l; e < n; e += WG) {
        const float t = LOAD(x, base + e) - shift;
        s1 += t;
        s2 += t * t;
    }
    r1[l] = s1;
    r2[l] = s2;
    for (int o = WG / 2; o > 0; o >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (l < o) { r1[l] += r1[l + o]; r2[l] += r2[l + o]; }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const float dm = r1[0] / n;                           // mean - shift
    const float var = fmax(r2[0] / n - dm * dm, 0.0f);
    const float r = rsqrt(var + eps);
    for (int e = l; e < n; e += WG) {
        const int c = c0 + e / hw;
        const float t = (LOAD(x, base + e) - shift - dm) * r;
        STORE(y, base + e, activate(t * LOAD(gamma, c) + LOAD(beta, c)));
    }
}

// LayerNorm of one row of n elements per work-group, shifted one-pass statistics as gn_fused;
// the second sweep re-reads the row, which stays in cache.
__kernel void ln_rowwise(__global const store_t* x, __global const store_t* gamma,
                         __global const store_t* beta, __global store_t* y, int n, float eps)
{
    const size_t base = (size_t)get_group_id(0) * n;
    const int l = get_local_id(0);
    __local float r1[WG];
    __local float r2[WG];
    const float shift = LOAD(x, base);
    float s1 = 0.0f, s2 = 0.0f;
    for (int e = l; e < n; e += WG) {
        const float t = LOAD(x, base + e) - shift;
        s1 += t;
        s2 += t * t;
    }
    r1[l] = s1;
    r2[l] = s2;
    for (int o = WG / 2; o > 0; o >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (l < o) { r1[l] += r1[l + o]; r2[l] += r2[l + o]; }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const float dm = r1[0] / n;
    const float r = rsqrt(fmax(r2[0] / n - dm * dm, 0.0f) + eps);
    for (int e = l; e < n; e += WG)
        STORE(y, base + e, (LOAD(x, base + e) - shift - dm) * r * LOAD(gamma, e) + LOAD(beta, e));
}
