// Activations: erf GELU, GEGLU, quick_gelu (CLIP) and SiLU. Arithmetic is fp32 on values loaded
// through LOAD (fp16 storage rounds only on STORE), except `mul_rows`, which multiplies in half_t
// (native half where the device has cl_khr_fp16: the product of two halves rounded once to half
// equals the fp32 product rounded to half, so both paths give the same bits).

// 0.5 x (1 + erf(x/sqrt 2)) written with erfc: 1 + erf(t) cancels to nothing in float32 for
// t < -3 (GELU tails of -1e-7 came out 15% wrong), erfc(-t) keeps full relative precision
inline float gelu_f(float x) { return 0.5f * x * erfc(-x * 0.70710678118654752f); }
inline float quick_gelu_f(float x) { return x / (1.0f + exp(-1.702f * x)); }
inline float silu_f(float x) { return x / (1.0f + exp(-x)); }

#define UNARY(name, fn)                                                              \
__kernel void name(__global const store_t* x, __global store_t* y, int n)           \
{                                                                                    \
    const int i = get_global_id(0);                                                  \
    if (i < n) STORE(y, i, fn(LOAD(x, i)));                                          \
}
UNARY(gelu, gelu_f)
UNARY(quick_gelu, quick_gelu_f)
UNARY(silu, silu_f)

// GEGLU in one pass: x is (rows, 2*dim) = [hidden | gate]; y[r, c] = hidden * gelu(gate)
__kernel void geglu(__global const store_t* x, __global store_t* y, int rows, int dim)
{
    const int c = get_global_id(0), r = get_global_id(1);
    if (c >= dim || r >= rows) return;
    const size_t base = (size_t)r * 2 * dim;
    STORE(y, (size_t)r * dim + c, LOAD(x, base + c) * gelu_f(LOAD(x, base + dim + c)));
}

// standalone GEGLU pass 1: g[r, c] = gelu(x[r, dim + c]) over the gate half (a strided view)
__kernel void gelu_gate(__global const store_t* x, __global store_t* g, int rows, int dim)
{
    const int c = get_global_id(0), r = get_global_id(1);
    if (c >= dim || r >= rows) return;
    STORE(g, (size_t)r * dim + c, gelu_f(LOAD(x, (size_t)r * 2 * dim + dim + c)));
}

// standalone pass 2 / GEMM-epilogue pass: y[r, c] = x[r*ld + c] * g[r, c]; x is the hidden half
// (ld = 2*dim) of the FF output
__kernel void mul_rows(__global const store_t* x, __global const store_t* g, __global store_t* y,
                       int rows, int dim, int ld)
{
    const int c = get_global_id(0), r = get_global_id(1);
    if (c >= dim || r >= rows) return;
#if defined(NATIVE_HALF) && STORE_HALF
    y[(size_t)r * dim + c] = x[(size_t)r * ld + c] * g[(size_t)r * dim + c];
#else
    STORE(y, (size_t)r * dim + c, LOAD(x, (size_t)r * ld + c) * LOAD(g, (size_t)r * dim + c));
#endif
}
