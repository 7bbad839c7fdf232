// Compiled in front of every kernel source (sdsim/cl/runtime.py build): storage, arithmetic
// and the macros the kernel families share.
//
// Storage (STORE_HALF): store_t is float or half; LOAD(p, i) / STORE(p, i, v) take and give
// float values (vload_half / vstore_half_rte with fp16 storage, so a device without cl_khr_fp16
// runs it).
// Arithmetic (ARITH): 0 the float code; with NATIVE_HALF (fp16 storage on a device with
// cl_khr_fp16) 1 = half products and float accumulators (fp16), 2 = half accumulators too
// (fp16acc). Each family's header says which of its steps follow ARITH and which stay float.
#ifdef NATIVE_HALF
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
typedef half half_t;
#else
typedef float half_t;
#endif
#if STORE_HALF
typedef half store_t;
#define LOAD(p, i) vload_half((i), (p))
#define STORE(p, i, v) vstore_half_rte((v), (i), (p))
#else
typedef float store_t;
#define LOAD(p, i) ((p)[(i)])
#define STORE(p, i, v) ((p)[(i)] = (v))
#endif
#if !defined(NATIVE_HALF) || !STORE_HALF || !defined(ARITH)
#undef ARITH
#define ARITH 0
#endif

#define ROUND_UP(a, b) ((((a) + (b) - 1) / (b)) * (b))
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

// The accumulator type of the multiply-adds (ACC a token, so CAT(ACC, 8) names its vector) and
// ACCF(n, v), an n-wide accumulator as float (n empty for a scalar).
#if ARITH == 2
#define ACC half
#define ACCF(n, v) CAT(convert_float, n)(v)
#else
#define ACC float
#define ACCF(n, v) (v)
#endif
typedef ACC acc_t;

// acc <- a * b + acc for scalars (MAC) and n-wide vectors (MACN), a and b float registers
// holding exact halves (or ARITH 1's float intermediates, rounded to half as they enter)
#if ARITH == 0
#define MAC(a, b, c) ((a) * (b) + (c))
#define MACN(n, a, b, c) ((a) * (b) + (c))
#elif ARITH == 1
#define MAC(a, b, c) (convert_float((half)(a) * (half)(b)) + (c))
#define MACN(n, a, b, c) (CAT(convert_float, n)(CAT(convert_half, n)(a) * CAT(convert_half, n)(b)) + (c))
#else
#define MAC(a, b, c) fma((half)(a), (half)(b), (c))
#define MACN(n, a, b, c) fma(CAT(convert_half, n)(a), CAT(convert_half, n)(b), (c))
#endif
