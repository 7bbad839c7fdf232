// Elementwise and data-movement kernels the OpenCL backend needs to run SD entirely on a device:
// unary activations, broadcast add, GEGLU (fused, and the standalone GELU + multiply pair),
// nearest 2x upsample, two-part concat, NCHW <-> NLC transposes, embedding gather and the
// sinusoidal timestep embedding. One work-item per output element; storage store_t through
// LOAD/STORE (runtime PRELUDE), arithmetic in float. Their costs are sdsim/kernels/elementwise.py
// and gelu.py (one dispatch each, two for the standalone GEGLU).

#define SQRT_HALF 0.70710678118654752f

inline float act(float x)
{
#if ACT == 1      // SiLU
    return x / (1.0f + exp(-x));
#elif ACT == 2    // exact erf GELU
    return 0.5f * x * (1.0f + erf(x * SQRT_HALF));
#elif ACT == 3    // quick GELU (CLIP)
    return x / (1.0f + exp(-1.702f * x));
#else
    return x;
#endif
}

__kernel void unary(__global const store_t* x, __global store_t* y, const long n)
{
    const long i = get_global_id(0);
    if (i < n) STORE(y, i, act(LOAD(x, i)));
}

// y = a + b, b broadcast: b's element for output i is (i / inner) % nb.
__kernel void add_bcast(__global const store_t* a, __global const store_t* b, __global store_t* y,
                        const long inner, const long nb, const long n)
{
    const long i = get_global_id(0);
    if (i < n) STORE(y, i, LOAD(a, i) + LOAD(b, (i / inner) % nb));
}

// GEGLU over rows of [hidden | gate] (width 2*dim): y = hidden * gelu(gate).
__kernel void geglu(__global const store_t* x, __global store_t* y, const int dim, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const long t = i / dim, j = i % dim;
    const float g = LOAD(x, t * 2 * dim + dim + j);
    STORE(y, i, LOAD(x, t * 2 * dim + j) * 0.5f * g * (1.0f + erf(g * SQRT_HALF)));
}

// Standalone GEGLU, pass 1: gelu of the gate half into a (tokens, dim) temporary.
__kernel void gate_gelu(__global const store_t* x, __global store_t* g, const int dim, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const float v = LOAD(x, (i / dim) * 2 * dim + dim + i % dim);
    STORE(g, i, 0.5f * v * (1.0f + erf(v * SQRT_HALF)));
}

// Standalone GEGLU, pass 2: hidden half times the temporary.
__kernel void gate_mul(__global const store_t* x, __global const store_t* g, __global store_t* y,
                       const int dim, const long n)
{
    const long i = get_global_id(0);
    if (i < n) STORE(y, i, LOAD(x, (i / dim) * 2 * dim + i % dim) * LOAD(g, i));
}

// NCHW nearest 2x upsample: y (planes, 2h, 2w) from x (planes, h, w).
__kernel void upsample2x(__global const store_t* x, __global store_t* y, const int h, const int w,
                         const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const int w2 = 2 * w, h2 = 2 * h;
    const long p = i / ((long)h2 * w2);
    const int r = (int)(i % ((long)h2 * w2));
    STORE(y, i, LOAD(x, (p * h + (r / w2) / 2) * w + (r % w2) / 2));
}

// Concat of two tensors along one axis: outer x (c1 + c2) x inner.
__kernel void concat2(__global const store_t* a, __global const store_t* b, __global store_t* y,
                      const int c1, const int c2, const long inner, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const int c = c1 + c2;
    const long o = i / ((long)c * inner), r = i % ((long)c * inner);
    const int ch = (int)(r / inner);
    const long k = r % inner;
    const float v = ch < c1 ? LOAD(a, (o * c1 + ch) * inner + k)
                            : LOAD(b, (o * c2 + ch - c1) * inner + k);
    STORE(y, i, v);
}

// Batched transpose through a TILE x TILE local tile: x (batch, rows, cols) -> y (batch, cols, rows).
// NCHW -> NLC is rows = C, cols = HW; NLC -> NCHW is rows = HW, cols = C.
#define TILE 16
__kernel void transpose(__global const store_t* x, __global store_t* y, const int rows,
                        const int cols)
{
    __local float t[TILE][TILE + 1];
    const int bx = get_group_id(0) * TILE, by = get_group_id(1) * TILE, b = get_global_id(2);
    const int lx = get_local_id(0), ly = get_local_id(1);
    const long base = (long)b * rows * cols;
    if (by + ly < rows && bx + lx < cols)
        t[ly][lx] = LOAD(x, base + (long)(by + ly) * cols + bx + lx);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (bx + ly < cols && by + lx < rows)
        STORE(y, base + (long)(bx + ly) * rows + by + lx, t[lx][ly]);
}

// Token + position embedding: y[b, t, :] = table[ids[b, t], :] + pos[t, :] (pos optional).
__kernel void embedding(__global const int* ids, __global const store_t* table,
                        __global const store_t* pos, __global store_t* y, const int tokens,
                        const int dim, const int has_pos, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const long bt = i / dim;
    const int j = (int)(i % dim), t = (int)(bt % tokens);
    float v = LOAD(table, (long)ids[bt] * dim + j);
    if (has_pos) v += LOAD(pos, (long)t * dim + j);
    STORE(y, i, v);
}

// diffusers' get_timestep_embedding: [sin(t f_j), cos(t f_j)] (flipped to [cos, sin] if asked),
// f_j = exp(-ln(10000) j / (half - shift)); an odd dim leaves the last column 0.
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
