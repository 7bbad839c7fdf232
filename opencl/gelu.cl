// Activations: erf GELU, GEGLU, quick_gelu (CLIP) and SiLU. Arithmetic is fp32 on values loaded
// through LOAD (fp16 storage rounds only on STORE), except `mul_rows`, which multiplies in half_t
// (native half where the device has cl_khr_fp16: the product of two halves rounded once to half
// equals the fp32 product rounded to half, so both paths give the same bits).
// The GEGLU kernels give each work-item VEC consecutive columns of a row (VEC-wide vector
// arithmetic; the row's last work-item may hold fewer, done one at a time): CPU devices map the
// vector maths to SIMD instructions, where a scalar erfc or exp is a library call per element.
#ifndef VEC
#error "gelu.cl needs -DVEC from sdsim/kernels/gelu.py"
#endif
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
typedef CAT(float, VEC) floatV;
#if STORE_HALF
#define LOADV(p, i) CAT(vload_half, VEC)(0, (p) + (i))
#define STOREV(p, i, v) CAT(CAT(vstore_half, VEC), _rte)((v), 0, (p) + (i))
#else
#define LOADV(p, i) CAT(vload, VEC)(0, (p) + (i))
#define STOREV(p, i, v) CAT(vstore, VEC)((v), 0, (p) + (i))
#endif

// 0.5 x erfc(-x / sqrt 2), with erfc(z) from the Chebyshev fit of Numerical Recipes (2nd ed.,
// section 6.2, erfcc: relative error below 1.2e-7 for every z): one exp, no library erf/erfc.
// Written with erfc, not 1 + erf: 1 + erf(t) cancels to nothing in float32 for t < -3 (GELU
// tails of -1e-7 came out 15% wrong); erfc(-t) keeps its relative precision. T: float or floatV.
#define ERFC_GELU(T)                                                                          \
inline T erfc_##T(T z)                                                                        \
{                                                                                             \
    const T a = fabs(z), t = 1.0f / (1.0f + 0.5f * a);                                        \
    const T p = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +      \
        t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f +        \
        t * (-0.82215223f + t * 0.17087277f))))))));                                          \
    const T r = t * exp(p - a * a);                                                           \
    return select(2.0f - r, r, z >= 0.0f);                                                    \
}                                                                                             \
inline T gelu_##T(T x) { return 0.5f * x * erfc_##T(-x * 0.70710678118654752f); }
ERFC_GELU(float)
ERFC_GELU(floatV)
inline float gelu_f(float x) { return gelu_float(x); }
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

// Columns [c, c + VEC) of row r, or the row's partial tail from c on: `VBODY` for a whole
// vector, `SBODY(e)` for column e of the tail
#define ROW_SPAN(dim, VBODY, SBODY)                                                  \
    const int c = get_global_id(0) * VEC, r = get_global_id(1);                      \
    if (c >= (dim) || r >= rows) return;                                             \
    if (c + VEC <= (dim)) { VBODY; }                                                 \
    else for (int e = c; e < (dim); ++e) { SBODY(e); }

// GEGLU in one pass: x is (rows, 2*dim) = [hidden | gate]; y[r, c] = hidden * gelu(gate)
__kernel void geglu(__global const store_t* x, __global store_t* y, int rows, int dim)
{
    const size_t xr = (size_t)get_global_id(1) * 2 * dim, yr = (size_t)get_global_id(1) * dim;
#define GEGLU1(e) STORE(y, yr + (e), LOAD(x, xr + (e)) * gelu_f(LOAD(x, xr + dim + (e))))
    ROW_SPAN(dim, STOREV(y, yr + c, LOADV(x, xr + c) * gelu_floatV(LOADV(x, xr + dim + c))),
             GEGLU1)
}

// standalone GEGLU pass 1: g[r, c] = gelu(x[r, dim + c]) over the gate half (a strided view)
__kernel void gelu_gate(__global const store_t* x, __global store_t* g, int rows, int dim)
{
    const size_t xr = (size_t)get_global_id(1) * 2 * dim + dim;
    const size_t gr = (size_t)get_global_id(1) * dim;
#define GATE1(e) STORE(g, gr + (e), gelu_f(LOAD(x, xr + (e))))
    ROW_SPAN(dim, STOREV(g, gr + c, gelu_floatV(LOADV(x, xr + c))), GATE1)
}

// standalone pass 2 / GEMM-epilogue pass: y[r, c] = x[r*ld + c] * g[r, c]; x is the hidden half
// (ld = 2*dim) of the FF output
__kernel void mul_rows(__global const store_t* x, __global const store_t* g, __global store_t* y,
                       int rows, int dim, int ld)
{
    const size_t xr = (size_t)get_global_id(1) * ld, yr = (size_t)get_global_id(1) * dim;
#if defined(NATIVE_HALF) && STORE_HALF
#define MUL1(e) y[yr + (e)] = x[xr + (e)] * g[yr + (e)]
    ROW_SPAN(dim, CAT(vstore, VEC)(CAT(vload, VEC)(0, x + xr + c) * CAT(vload, VEC)(0, g + yr + c),
                                   0, y + yr + c), MUL1)
#else
#define MUL1(e) STORE(y, yr + (e), LOAD(x, xr + (e)) * LOAD(g, yr + (e)))
    ROW_SPAN(dim, STOREV(y, yr + c, LOADV(x, xr + c) * LOADV(g, yr + c)), MUL1)
#endif
}
