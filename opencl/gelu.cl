// Activations: erf GELU, GEGLU, quick_gelu (CLIP) and SiLU. Arithmetic is fp32 on values loaded
// through LOAD (fp16 storage rounds only on STORE), except in the native-half build below.
// The GEGLU kernels give each work-item VEC consecutive columns of a row (VEC-wide vector
// arithmetic; the row's last work-item may hold fewer, done one at a time): CPU devices map the
// vector maths to SIMD instructions, where a scalar erfc or exp is a library call per element.
//
// Native half (ARITH 1 or 2 with NATIVE_HALF: fp16 storage on a device with cl_khr_fp16; one
// build, as nothing here accumulates), as a phone's fp16 mode runs an activation: the special
// function (erfc, exp) is evaluated in float and rounded once to half, as a half library exp is
// (Intel's half exp is a float exp rounded to half on every half, two of them then one ulp from
// the correctly rounded half), and the arithmetic combining it with x is half. Kept float, with
// the worst error if it were half instead (ulps against float64 over every finite half, the
// worst in [-10, 10]; the half build's GELU is within 1.7):
// - the erfc fit's t = 1 / (1 + a / 2) (2.4 ulp if rounded to half: the fit's value moves with
//   t) and its Horner steps (3.0: terms up to 1.5 cancel to p(1) = 0 near t = 1);
// - the exponent's argument p - x^2 / 2 (exact in float for a half x): x^2 / 2 near 8 rounds by
//   up to 2^-8 in half, which exp makes a relative error of the negative tail (11 ulp);
// - quick_gelu's -1.702 |x| (9.6 ulp in half, the same way) and the sigmoid's x e (x < 0):
//   e < 2^-14 is subnormal in half and keeps too few bits (quick_gelu 5.0 ulp, SiLU 8.5).
// In half: the GELU's 0.5 x and its product with erfc; the sigmoid's 1 + e and divide
// (quick_gelu 1.8 ulp at most, SiLU 2.0); GEGLU's hidden * gelu(gate) and `mul_rows`.
// sdsim/sim/activation.py mirrors each rounding.
#ifndef VEC
#error "gelu.cl needs -DVEC from sdsim/kernels/gelu.py"
#endif
typedef CAT(float, VEC) floatV;
#if STORE_HALF
#define LOADV(p, i) CAT(vload_half, VEC)(0, (p) + (i))
#define STOREV(p, i, v) CAT(CAT(vstore_half, VEC), _rte)((v), 0, (p) + (i))
#else
#define LOADV(p, i) CAT(vload, VEC)(0, (p) + (i))
#define STOREV(p, i, v) CAT(vstore, VEC)((v), 0, (p) + (i))
#endif

ERFC_GELU(floatV)
inline float gelu_f(float x) { return gelu_float(x); }
inline float quick_gelu_f(float x) { return x / (1.0f + exp(-1.702f * x)); }
inline float silu_f(float x) { return x / (1.0f + exp(-x)); }

#if ARITH
typedef CAT(half, VEC) halfV;
#define HLOADV(p, i) CAT(vload, VEC)(0, (p) + (i))
#define HSTOREV(p, i, v) CAT(vstore, VEC)((v), 0, (p) + (i))
ERFC_OF_X(floatV)
inline halfV gelu_hV(halfV x)
{
    return (half)0.5f * x * CAT(convert_half, VEC)(erfcx_floatV(CAT(convert_float, VEC)(x)));
}
// x sigmoid(k x) = (x < 0 ? x e : x) / (1 + e) with e = exp(-k |x|) <= 1: x / (1 + exp(-k x))
// overflows half's exp for k x < -11.1 (e > 65504)
inline half sigmul_h(half x, float k)
{
    const float xf = x, e = exp(-k * fabs(xf));
    return (half)(xf < 0.0f ? xf * e : xf) / ((half)1.0f + (half)e);
}
inline half quick_gelu_h(half x) { return sigmul_h(x, 1.702f); }
inline half silu_h(half x) { return sigmul_h(x, 1.0f); }
#define UNARY_BODY(fn) y[i] = fn##_h(x[i])
#else
#define UNARY_BODY(fn) STORE(y, i, fn##_f(LOAD(x, i)))
#endif

#define UNARY(name)                                                                  \
__kernel void name(__global const store_t* x, __global store_t* y, int n)           \
{                                                                                    \
    const int i = get_global_id(0);                                                  \
    if (i < n) UNARY_BODY(name);                                                     \
}
UNARY(gelu)
UNARY(quick_gelu)
UNARY(silu)

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
#if ARITH
#define GEGLU1(e) y[yr + (e)] = x[xr + (e)] * gelu_h(x[xr + dim + (e)])
    ROW_SPAN(dim, HSTOREV(y, yr + c, HLOADV(x, xr + c) * gelu_hV(HLOADV(x, xr + dim + c))),
             GEGLU1)
#else
#define GEGLU1(e) STORE(y, yr + (e), LOAD(x, xr + (e)) * gelu_f(LOAD(x, xr + dim + (e))))
    ROW_SPAN(dim, STOREV(y, yr + c, LOADV(x, xr + c) * gelu_floatV(LOADV(x, xr + dim + c))),
             GEGLU1)
#endif
}

// standalone GEGLU pass 1: g[r, c] = gelu(x[r, dim + c]) over the gate half (a strided view)
__kernel void gelu_gate(__global const store_t* x, __global store_t* g, int rows, int dim)
{
    const size_t xr = (size_t)get_global_id(1) * 2 * dim + dim;
    const size_t gr = (size_t)get_global_id(1) * dim;
#if ARITH
#define GATE1(e) g[gr + (e)] = gelu_h(x[xr + (e)])
    ROW_SPAN(dim, HSTOREV(g, gr + c, gelu_hV(HLOADV(x, xr + c))), GATE1)
#else
#define GATE1(e) STORE(g, gr + (e), gelu_f(LOAD(x, xr + (e))))
    ROW_SPAN(dim, STOREV(g, gr + c, gelu_floatV(LOADV(x, xr + c))), GATE1)
#endif
}

// standalone pass 2 / GEMM-epilogue pass: y[r, c] = x[r*ld + c] * g[r, c]; x is the hidden half
// (ld = 2*dim) of the FF output
__kernel void mul_rows(__global const store_t* x, __global const store_t* g, __global store_t* y,
                       int rows, int dim, int ld)
{
    const size_t xr = (size_t)get_global_id(1) * ld, yr = (size_t)get_global_id(1) * dim;
#if ARITH   // the float path's bits: the product of two halves is exact in float
#define MUL1(e) y[yr + (e)] = x[xr + (e)] * g[yr + (e)]
    ROW_SPAN(dim, HSTOREV(y, yr + c, HLOADV(x, xr + c) * HLOADV(g, yr + c)), MUL1)
#else
#define MUL1(e) STORE(y, yr + (e), LOAD(x, xr + (e)) * LOAD(g, yr + (e)))
    ROW_SPAN(dim, STOREV(y, yr + c, LOADV(x, xr + c) * LOADV(g, yr + c)), MUL1)
#endif
}
