// Activation functions shared by gelu.cl and gemm.cl's GELU epilogue: compiled in front of both
// (sdsim/cl/runtime.py LIBRARIES), so a fused GELU computes what the standalone kernel does.
// gelu.cl's header says what runs in half and why; sdsim/sim/activation.py mirrors it.

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

#ifdef NATIVE_HALF   // the half build (fp16 storage, half arithmetic on a cl_khr_fp16 device)
// erfc(-x / sqrt 2) in float by the fit of erfc_T with every multiply-add an explicit fma (bits
// independent of the compiler's contraction); the exponent's argument p - x^2 / 2 is rounded once
__constant float ERFC_C[9] = {-1.26551223f, 1.00002368f, 0.37409196f, 0.09678418f, -0.18628806f,
                              0.27886807f, -1.13520398f, 1.48851587f, -0.82215223f};
#define ERFC_OF_X(T)                                                                          \
inline T erfcx_##T(T x)                                                                       \
{                                                                                             \
    const T a = fabs(x) * 0.70710678118654752f, t = 1.0f / fma((T)0.5f, a, (T)1.0f);          \
    T p = 0.17087277f;                                                                        \
    for (int k = 8; k >= 0; --k) p = fma(t, p, (T)ERFC_C[k]);                                 \
    const T r = t * exp(fma(-0.5f * x, x, p));                                                \
    return select(2.0f - r, r, x <= 0.0f);                                                    \
}
ERFC_OF_X(float)
inline half gelu_h(half x) { return (half)0.5f * x * (half)erfcx_float(x); }
#endif
