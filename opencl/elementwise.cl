// Data movement and elementwise ops the UNet, VAE decoder and CLIP text encoder need besides
// conv/GEMM/norm/attention/activations. fp32 arithmetic; storage through LOAD/STORE. With native
// half (ARITH 1 or 2 with NATIVE_HALF: fp16 storage on a device with cl_khr_fp16) the adds of
// add_bcast and embedding are half: the same bits, as the float sum of two halves rounded to
// half is their half sum. The timestep embedding stays float (below); the rest moves data only.

// out = a + b with b broadcast onto a: a is viewed as 4-d (d0, d1, d2, d3) row-major and
// b's element for a's index (i0, i1, i2, i3) is at i0*s0 + i1*s1 + i2*s2 + i3*s3 (stride 0 on a
// broadcast dim). The host collapses any NumPy-broadcastable pair to this form.
__kernel void add_bcast(__global const store_t* a, __global const store_t* b, __global store_t* y,
                        int n, int d1, int d2, int d3, int s0, int s1, int s2, int s3)
{
    const int i = get_global_id(0);
    if (i >= n) return;
    const int i3 = i % d3, r = i / d3;
    const int i2 = r % d2, r2 = r / d2;
    const int i1 = r2 % d1, i0 = r2 / d1;
#if ARITH
    y[i] = a[i] + b[i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3];
#else
    STORE(y, i, LOAD(a, i) + LOAD(b, i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3));
#endif
}

// nearest 2x upsample of (planes, h, w) to (planes, oh, ow), oh = 2h or 2h - 1 (ow alike): the
// 2x image, cropped by a row or column where a UNet skip connection is odd; one work-item per
// output element
__kernel void upsample_nearest2x(__global const store_t* x, __global store_t* y, int planes,
                                 int h, int w, int oh, int ow)
{
    const int ox = get_global_id(0), oy = get_global_id(1), p = get_global_id(2);
    if (ox >= ow || oy >= oh || p >= planes) return;
    STORE(y, ((size_t)p * oh + oy) * ow + ox, LOAD(x, ((size_t)p * h + oy / 2) * w + ox / 2));
}

// copy-only kernels move storage bits: ushort for half (no cl_khr_fp16 needed), float otherwise
#if STORE_HALF
typedef ushort bits_t;
#else
typedef float bits_t;
#endif

// concat helper: copy x viewed as (outer, inner) into y viewed as (outer, ld) at column offset
// `off` (one launch per input; `inner` = that input's size along the axis times what follows)
__kernel void copy_block(__global const bits_t* x, __global bits_t* y, int outer, int inner,
                         int ld, int off)
{
    const int c = get_global_id(0), o = get_global_id(1);
    if (c >= inner || o >= outer) return;
    y[(size_t)o * ld + off + c] = x[(size_t)o * inner + c];
}

// the UNet's skip concat in one dispatch: y (outer, nx + ny) = [x (outer, nx) | z (outer, ny)]
__kernel void concat2(__global const bits_t* x, __global const bits_t* z, __global bits_t* y,
                      int outer, int nx, int ny)
{
    const int c = get_global_id(0), o = get_global_id(1);
    if (c >= nx + ny || o >= outer) return;
    y[(size_t)o * (nx + ny) + c] = c < nx ? x[(size_t)o * nx + c] : z[(size_t)o * ny + c - nx];
}

// batched transpose (batch, rows, cols) -> (batch, cols, rows) through a local tile:
// NCHW -> (B, HW, C) is rows = C, cols = HW; (B, HW, C) -> NCHW is rows = HW, cols = C.
#define TT 16
__kernel void transpose(__global const bits_t* x, __global bits_t* y, int rows, int cols)
{
    __local bits_t t[TT][TT + 1];
    const int lx = get_local_id(0), ly = get_local_id(1);
    const int c0 = get_group_id(0) * TT, r0 = get_group_id(1) * TT;
    const size_t base = (size_t)get_global_id(2) * rows * cols;
    if (r0 + ly < rows && c0 + lx < cols) t[ly][lx] = x[base + (size_t)(r0 + ly) * cols + c0 + lx];
    barrier(CLK_LOCAL_MEM_FENCE);
    if (c0 + ly < cols && r0 + lx < rows) y[base + (size_t)(c0 + ly) * rows + r0 + lx] = t[lx][ly];
}

// y[t, :] = table[ids[t], :] (+ pos[t % npos, :] when HAS_POS): CLIP token + position embedding
__kernel void embedding(__global const int* ids, __global const store_t* table,
                        __global const store_t* pos, __global store_t* y, int tokens, int dim,
                        int npos, int has_pos)
{
    const int c = get_global_id(0), t = get_global_id(1);
    if (c >= dim || t >= tokens) return;
#if ARITH
    half v = table[(size_t)ids[t] * dim + c];
    if (has_pos) v += pos[(size_t)(t % npos) * dim + c];
    y[(size_t)t * dim + c] = v;
#else
    float v = LOAD(table, (size_t)ids[t] * dim + c);
    if (has_pos) v += LOAD(pos, (size_t)(t % npos) * dim + c);
    STORE(y, (size_t)t * dim + c, v);
#endif
}

// diffusers' get_timestep_embedding: [sin(t f_j), cos(t f_j)] (flipped to [cos, sin] if asked),
// f_j = exp(-ln(10000) j / (half - shift)); an odd dim leaves the last column 0. Written in the
// storage precision: the next linear reads it as such. Float in every build, as a mobile engine
// computes it (once per step, on the host or in float): t f_j up to 1000 is off by up to 0.25
// (radians) in half, and a half f_j alone moves t f_j by 2^-12 t.
__kernel void timestep_embedding(__global const float* ts, __global store_t* y, const int dim,
                                 const int flip, const float shift, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const int hd = dim / 2, b = (int)(i / dim), j = (int)(i % dim);
    float v = 0.0f;
    if (j < 2 * hd) {
        const int k = j % hd;
        const float f = exp(-9.210340371976184f * (float)k / ((float)hd - shift));
        const float arg = ts[b] * f;
        const int first = j < hd;
        v = (first != flip) ? sin(arg) : cos(arg);
    }
    STORE(y, i, v);
}
