// GroupNorm on NCHW (the (batch, group) slice is contiguous: channels/groups * hw elements) and
// LayerNorm over the last dim. Statistics are fp32; x and y use store_t.
// ACT=1 fuses SiLU after the affine. WG is the work-group size (a power of two).
//
// naive GroupNorm:  gn_mean -> gn_var -> gn_normalize   (fp32 mean/var tensors in between)
// fused GroupNorm:  gn_fused (one work-group per (batch, group), two sweeps over the slice);
//                   a slice longer than a chunk: gn_partial -> gn_apply, each slice split into
//                   chunks of one work-group each, so few groups (a batch of 1 on a large GPU)
//                   still fill the device
// LayerNorm:        ln_rowwise (one work-group per row)
//
// Accuracy of the one-pass statistics: sums are taken of x - K, with K the slice's first
// element (the shifted-data algorithm), so a large common offset (mean 1e3, std 1e-2) cancels
// before squaring instead of inside S2 - S1^2/n.
//
// Arithmetic (ARITH, with NATIVE_HALF: fp16 storage on a device with cl_khr_fp16; 0 otherwise,
// the float code). ARITH 1 and 2 build the same code, as a mobile engine's fp16 mode runs a
// GroupNorm:
// - the statistics stay float: every lane's sums of x - K and (x - K)^2 over its strided
//   elements, the WG-lane tree, mean, variance and rstd = 1 / sqrt(var + eps) (not rsqrt:
//   Intel's CPU runtime's vectorised rsqrt is not correctly rounded, and about one rstd in
//   10^5 then rounds to another half). Half sums would lose them: a sum of 40,960 squares near
//   1 (one SD1.4 UNet slice) stops growing at 2048, where half's ulp is 2, and passes half's
//   65504 once the squares average 1.6. So ARITH 2's half accumulators do not apply here;
// - the normalize step is half: ((x - K) - dm) * rstd * gamma + beta and the fused SiLU
//   y / (1 + exp(-y)), each operation rounded to half, with dm = mean - K and rstd rounded to
//   half once per slice. x - K is exact where x is within a factor 2 of K (an offset common to
//   the slice), so the shift keeps its accuracy. exp(-y) overflows half for y < -11.09: SiLU
//   is then -0 (the true |SiLU| < 1.7e-4). The naive chain's normalize takes x - mean with its
//   stored mean rounded to half.
// FP_CONTRACT is off in those builds, so no multiply-add fuses; sdsim/sim/norm.py replays every
// rounding point and the float statistics in the kernels' order.

#ifndef WG
#define WG 256
#endif
#ifndef ACT
#define ACT 0
#endif
#if ARITH
#pragma OPENCL FP_CONTRACT OFF
#define RSTD(v) (1.0f / sqrt(v))
#else
#define RSTD(v) rsqrt(v)
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

#if ARITH
// the half normalize step of one element from its centred t = x - mean: t * r * gamma + beta
// [then SiLU], each operation rounded to half; returned as float for STORE
inline float affine_h(half t, half r, float gamma, float beta)
{
    const half y = t * r * (half)gamma + (half)beta;
#if ACT
    return y / ((half)1.0f + exp(-y));
#else
    return y;
#endif
}
#endif

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
#if ARITH
    STORE(y, i, affine_h((half)LOAD(x, i) - (half)mean[g], (half)RSTD(var[g] + eps),
                         LOAD(gamma, c), LOAD(beta, c)));
#else
    const float r = rsqrt(var[g] + eps);
    STORE(y, i, activate((LOAD(x, i) - mean[g]) * r * LOAD(gamma, c) + LOAD(beta, c)));
#endif
}

// y = (x - shift - dm) * r * gamma[c] + beta[c] [then SiLU] over elements e0, e0 + WG, ... <
// end of the slice at `base` (channel c0 first, hw elements per channel); the channel is carried
// along (WG = dc channels + dp elements) instead of divided out per element, as an integer
// divide costs a GPU more than the load
inline void normalize_range(__global const store_t* x, __global const store_t* gamma,
                            __global const store_t* beta, __global store_t* y, size_t base,
                            int e0, int end, int c0, int hw, float shift, float dm, float r)
{
    const int dc = WG / hw, dp = WG % hw;
    int c = c0 + e0 / hw, p = e0 % hw;
#if ARITH
    const half kh = (half)shift, dmh = (half)dm, rh = (half)r;
#endif
    for (int e = e0; e < end; e += WG) {
#if ARITH
        STORE(y, base + e, affine_h(((half)LOAD(x, base + e) - kh) - dmh, rh, LOAD(gamma, c),
                                    LOAD(beta, c)));
#else
        const float t = (LOAD(x, base + e) - shift - dm) * r;
        STORE(y, base + e, activate(t * LOAD(gamma, c) + LOAD(beta, c)));
#endif
        c += dc;
        p += dp;
        if (p >= hw) { p -= hw; c++; }
    }
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
    const float r = RSTD(var + eps);
    normalize_range(x, gamma, beta, y, base, l, n, c0, hw, shift, dm, r);
}

// the shifted sums (s1, s2) of chunk `s` of a slice: partial[2 * (g * splits + s) + {0, 1}];
// every chunk of a slice shifts by the slice's first element, so the partials add up exactly
__kernel void gn_partial(__global const store_t* x, __global float* partial, int n, int chunk,
                         int splits)
{
    const int w = get_group_id(0), l = get_local_id(0);
    const int g = w / splits, s = w % splits;
    __local float r1[WG];
    __local float r2[WG];
    const size_t base = (size_t)g * n;
    const float shift = LOAD(x, base);
    const int end = min(n, (s + 1) * chunk);
    float s1 = 0.0f, s2 = 0.0f;
    for (int e = s * chunk + l; e < end; e += WG) {
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
    if (l == 0) {
        partial[2 * w] = r1[0];
        partial[2 * w + 1] = r2[0];
    }
}

// normalize chunk `s` of a slice with the statistics its slice's partials add up to
__kernel void gn_apply(__global const store_t* x, __global const float* partial,
                       __global const store_t* gamma, __global const store_t* beta,
                       __global store_t* y, int hw, int cpg, int groups, int chunk, int splits,
                       float eps)
{
    const int w = get_group_id(0), l = get_local_id(0);
    const int g = w / splits, s = w % splits;
    const int n = hw * cpg;
    __local float r1[WG];
    __local float r2[WG];
    float s1 = 0.0f, s2 = 0.0f;
    for (int i = l; i < splits; i += WG) {
        s1 += partial[2 * (g * splits + i)];
        s2 += partial[2 * (g * splits + i) + 1];
    }
    r1[l] = s1;
    r2[l] = s2;
    for (int o = WG / 2; o > 0; o >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (l < o) { r1[l] += r1[l + o]; r2[l] += r2[l + o]; }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const size_t base = (size_t)g * n;
    const float dm = r1[0] / n;                           // mean - shift
    const float r = RSTD(fmax(r2[0] / n - dm * dm, 0.0f) + eps);
    normalize_range(x, gamma, beta, y, base, s * chunk + l, min(n, (s + 1) * chunk),
                    (g % groups) * cpg, hw, LOAD(x, base), dm, r);
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
    const float r = RSTD(fmax(r2[0] / n - dm * dm, 0.0f) + eps);
#if ARITH
    const half kh = (half)shift, dmh = (half)dm, rh = (half)r;
    for (int e = l; e < n; e += WG)
        STORE(y, base + e, affine_h(((half)LOAD(x, base + e) - kh) - dmh, rh, LOAD(gamma, e),
                                    LOAD(beta, e)));
#else
    for (int e = l; e < n; e += WG)
        STORE(y, base + e, (LOAD(x, base + e) - shift - dm) * r * LOAD(gamma, e) + LOAD(beta, e));
#endif
}
