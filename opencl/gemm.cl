// Register-tiled GEMM: C[b] = act(alpha * A[b] @ B[b] + bias). One work-group of RTN x RTM
// work-items computes a TM x TN block of C, each work-item a WM x WN block of it (WM = TM / RTM,
// WN = TN / RTN) held in registers. Operands are addressed by explicit strides, so the same kernel
// serves linear (B = W^T), im2col convolution, the Winograd batched GEMM and attention's
// QK^T / P.V. Storage is store_t (float or half via LOAD/STORE), accumulation float.
//
// Two bodies, chosen per device by the tuner (sdsim/kernels/tuning.py):
// LOCAL == 1 (GPUs): K streamed TK at a time through local memory; a work-item's rows are
//   (i * RTM + ty) * VW + v and its columns (j * RTN + tx) * VW + v (v < VW), so neighbouring
//   work-items read neighbouring VW-wide vectors of the staged tiles (no bank conflicts) and
//   write neighbouring addresses of C.
// LOCAL == 0 (CPUs): no local memory and no barriers; a work-item's WN columns are contiguous
//   and held in WN / VW vector registers per row, B's row segment is WN / VW vector loads and
//   A's element a broadcast: the micro-kernel of a CPU BLAS (e.g. 6 x 16 on AVX2), which the
//   OpenCL compiler maps to SIMD instructions directly.
// Split K (a call with too few work-groups to fill the device): work-group z = b * S + s sums
// only K's slice s (kslice elements; S = ceil(K / kslice)); with SPLIT = 1 the build writes those
// partial sums, times alpha, as float to a dense workspace P[b * S + s][M][N], and
// `gemm_split_reduce` adds the S slices, the bias and the activation and stores C. Without SPLIT,
// kslice = K and z = b.
// Products are written a * b + acc, not fma(): compilers contract them to FMA instructions where
// the device has them, while PoCL lowers an explicit fma() to a slow library call.
// Arithmetic (ARITH, with NATIVE_HALF: fp16 storage on a device with cl_khr_fp16): 0 float
// multiply-add; 1 half multiplies (each product rounded to half) added into float accumulators;
// 2 half fma into half accumulators, as a mobile engine's fp16 mode runs it. The operands sit in
// float registers holding exact halves; sdsim/sim/gemm.py mirrors each rounding point.
// Batches: matrix b of a call is at (b / hb) * sXb + (b % hb) * sXh in each operand (hb = 1:
// one stride; attention's per-(batch, head) matrices of in-place (B, N, heads * d) tensors: hb
// heads, sXh the head's offset).
// Compile-time options: tile constants (from sdsim/kernels/tuning.py GemmConfig.defines);
// BIAS = 0 none | 1 per column of C (linear) | 2 per row of C (conv);
// ACT = 0 none | 1 erf GELU (the GEMM-epilogue GELU: opencl/activation.cl's, in the half build
// of the value rounded to half first, so fused and standalone store the same bits) | 2 causal mask (C[i][j] = -inf for
// j > i: attention's scores); SPLIT = 0 | 1 (partial sums, above);
// SOFTMAX_A = 1: A holds attention scores and each is loaded as exp(a - rmax[row]) * rinv[row]
// (per-row statistics of matrix b at b * M + row, two extra arguments: the row max and the
// reciprocal of the row's sum of exponentials, so a score costs a multiply, not a divide): the
// partially fused softmax's P.V, which never stores P. With half arithmetic (ARITH 1, 2) the
// subtraction and exp run in half on halves (the score and the row max, itself a score), the
// product with the float reciprocal in float, and the MAC rounds it to half: the probability
// fed to P.V is half(float(exp_h(s - max)) * inv) (sdsim/sim/attention.py mirrors it).

#ifndef BIAS
#define BIAS 0
#endif
#ifndef ACT
#define ACT 0
#endif
#ifndef SPLIT
#define SPLIT 0
#endif
#ifndef SOFTMAX_A
#define SOFTMAX_A 0
#endif
#if SPLIT   // partial sums: float, dense (b * S + s, row, col), no epilogue
typedef float out_t;
#define PUT(gi, gj, v) C[(((long)z * M + (gi)) * N) + (gj)] = (v)
#else
typedef store_t out_t;
#define PUT(gi, gj, v) STORE(C, cBase + (long)(gi) * sCm + (long)(gj) * sCn, \
                             epilogue(v, bias, gi, gj))
#endif
#if ARITH   // exp(a - m) of two halves, in half, as float
#define EXP_DIFF(a, m) convert_float(exp((half)(a) - (half)(m)))
#else
#define EXP_DIFF(a, m) exp((a) - (m))
#endif
#if SOFTMAX_A   // the statistics arguments, A's element a of row gi as loaded, and of the CPU
                // body's row i, whose statistics it holds in registers (pmax, pinv)
#define STATS_ARGS , __global const float* rmax, __global const float* rinv
#define PRO_A(a, gi) (EXP_DIFF(a, rmax[rowb + (gi)]) * rinv[rowb + (gi)])
#define PRO_ROW(a, i) (EXP_DIFF(a, pmax[i]) * pinv[i])
#else
#define STATS_ARGS
#define PRO_A(a, gi) (a)
#define PRO_ROW(a, i) (a)
#endif
#if !defined(TM) || !defined(TN) || !defined(TK) || !defined(RTM) || !defined(RTN) || \
    !defined(VW) || !defined(LOCAL)
#error "gemm.cl needs -DTM -DTN -DTK -DRTM -DRTN -DVW -DLOCAL from sdsim/kernels/tuning.py"
#endif
#define WM (TM / RTM)
#define WN (TN / RTN)

#if VW == 1
#define VWS
#else
#define VWS VW
#endif
#if VW == 1
typedef float realV;
#define UNPACK(v, arr, o) arr[o] = (v);
#elif VW == 2
typedef float2 realV;
#define UNPACK(v, arr, o) arr[o] = (v).s0; arr[o + 1] = (v).s1;
#elif VW == 4
typedef float4 realV;
#define UNPACK(v, arr, o) arr[o] = (v).s0; arr[o + 1] = (v).s1; arr[o + 2] = (v).s2; \
    arr[o + 3] = (v).s3;
#elif VW == 8
typedef float8 realV;
#else
#error "VW must be 1, 2, 4 or 8"
#endif

// a VW-wide row segment of a store_t array at element offset o (o need not be aligned)
#if STORE_HALF
#define VLOADW(p, o) CAT(vload_half, VW)(0, (p) + (o))
#else
#define VLOADW(p, o) CAT(vload, VW)(0, (p) + (o))
#endif
typedef CAT(ACC, VWS) accV;

inline float epilogue(float v, __global const store_t* bias, int gi, int gj)
{
#if BIAS == 1
    v += LOAD(bias, gj);
#elif BIAS == 2
    v += LOAD(bias, gi);
#endif
#if ACT == 1 && defined(NATIVE_HALF)   // the standalone half GELU of the stored value
    v = gelu_h((half)v);
#elif ACT == 1
    v = gelu_float(v);
#elif ACT == 2
    if (gj > gi) v = -INFINITY;
#endif
    return v;
}

#if LOCAL
#define PAD VW   // keeps staged rows VW-aligned while shifting them across banks
#define LA ((TM * TK) / (RTM * RTN))
#define LB ((TN * TK) / (RTM * RTN))
__kernel __attribute__((reqd_work_group_size(RTN, RTM, 1)))
void gemm(__global const store_t* A, __global const store_t* B, __global const store_t* bias,
          __global out_t* C, const int M, const int N, const int K, const int kslice,
          const float alpha,
          const int sAb, const int sAm, const int sAk,
          const int sBb, const int sBk, const int sBn,
          const int sCb, const int sCm, const int sCn,
          const int hb, const int sAh, const int sBh, const int sCh STATS_ARGS)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int j0 = get_group_id(0) * TN, i0 = get_group_id(1) * TM;
    const int z = get_group_id(2), S = (K + kslice - 1) / kslice;
    const int b = z / S, kb = (z % S) * kslice, ke = min(K, kb + kslice);
    const int tid = ty * RTN + tx;
    __local realV AsV[TK][(TM + PAD) / VW];
    __local realV BsV[TK][(TN + PAD) / VW];
    __local float* As = (__local float*)AsV;
    __local float* Bs = (__local float*)BsV;
    acc_t acc[WM][WN];
    #pragma unroll
    for (int i = 0; i < WM; i++)
        #pragma unroll
        for (int j = 0; j < WN; j++) acc[i][j] = (acc_t)0.0f;
    const int bo = b / hb, bi = b % hb;
    const long aBase = (long)bo * sAb + (long)bi * sAh, bBase = (long)bo * sBb + (long)bi * sBh;
    const long cBase = (long)bo * sCb + (long)bi * sCh, rowb = (long)b * M;

    // Each work-item loads LA elements of the A tile and LB of the B tile per K step; the next
    // step's elements are loaded into registers before this step's products, so the global
    // loads are in flight while the work-group computes (register double buffering).
    float ra[LA], rb[LB];
    int la_m[LA], la_k[LA], lb_k[LB], lb_n[LB];   // where each of them goes in the tiles
    #pragma unroll
    for (int l = 0; l < LA; l++) {
        const int e = tid + l * RTM * RTN;   // consecutive work-items walk A's contiguous dim
        if (sAk == 1) { la_m[l] = e / TK; la_k[l] = e % TK; } else { la_k[l] = e / TM; la_m[l] = e % TM; }
    }
    #pragma unroll
    for (int l = 0; l < LB; l++) {
        const int e = tid + l * RTM * RTN;
        if (sBn == 1) { lb_k[l] = e / TN; lb_n[l] = e % TN; } else { lb_n[l] = e / TK; lb_k[l] = e % TK; }
    }
#define FETCH(k0)                                                                               \
    for (int l = 0; l < LA; l++) {                                                              \
        const int gi = i0 + la_m[l], gk = (k0) + la_k[l];                                       \
        ra[l] = (gi < M && gk < ke) ? PRO_A(LOAD(A, aBase + (long)gi * sAm + (long)gk * sAk), gi) \
                                    : 0.0f;                                                     \
    }                                                                                           \
    for (int l = 0; l < LB; l++) {                                                              \
        const int gj = j0 + lb_n[l], gk = (k0) + lb_k[l];                                       \
        rb[l] = (gj < N && gk < ke) ? LOAD(B, bBase + (long)gk * sBk + (long)gj * sBn) : 0.0f;   \
    }
    FETCH(kb)
    for (int k0 = kb; k0 < ke; k0 += TK) {
        #pragma unroll
        for (int l = 0; l < LA; l++) As[la_k[l] * (TM + PAD) + la_m[l]] = ra[l];
        #pragma unroll
        for (int l = 0; l < LB; l++) Bs[lb_k[l] * (TN + PAD) + lb_n[l]] = rb[l];
        barrier(CLK_LOCAL_MEM_FENCE);
        if (k0 + TK < ke) {
            FETCH(k0 + TK)
        }
        #pragma unroll
        for (int kk = 0; kk < TK; kk++) {
            float a[WM], bv[WN];
#if VW <= 4
            #pragma unroll
            for (int i = 0; i < WM / VW; i++) { const realV t = AsV[kk][i * RTM + ty]; UNPACK(t, a, i * VW) }
            #pragma unroll
            for (int j = 0; j < WN / VW; j++) { const realV t = BsV[kk][j * RTN + tx]; UNPACK(t, bv, j * VW) }
#else
#error "the local-memory GEMM reads at most 4-wide vectors"
#endif
            #pragma unroll
            for (int i = 0; i < WM; i++)
                #pragma unroll
                for (int j = 0; j < WN; j++) acc[i][j] = MAC(a[i], bv[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    #pragma unroll
    for (int i = 0; i < WM; i++) {
        const int gi = i0 + ((i / VW) * RTM + ty) * VW + i % VW;
        if (gi >= M) continue;
        #pragma unroll
        for (int j = 0; j < WN; j++) {
            const int gj = j0 + ((j / VW) * RTN + tx) * VW + j % VW;
            if (gj >= N) continue;
            PUT(gi, gj, alpha * (float)acc[i][j]);
        }
    }
}

#else   // LOCAL == 0: the CPU micro-kernel
#if WN % VW
#error "the direct GEMM holds VW-wide vectors: TN / RTN must be a multiple of VW"
#endif
#define NV (WN / VW)
__kernel __attribute__((reqd_work_group_size(RTN, RTM, 1)))
void gemm(__global const store_t* A, __global const store_t* B, __global const store_t* bias,
          __global out_t* C, const int M, const int N, const int K, const int kslice,
          const float alpha,
          const int sAb, const int sAm, const int sAk,
          const int sBb, const int sBk, const int sBn,
          const int sCb, const int sCm, const int sCn,
          const int hb, const int sAh, const int sBh, const int sCh STATS_ARGS)
{
    const int j0 = get_global_id(0) * WN, i0 = get_global_id(1) * WM;
    const int z = get_group_id(2), S = (K + kslice - 1) / kslice;
    const int b = z / S, kb = (z % S) * kslice, ke = min(K, kb + kslice);
    if (j0 >= N || i0 >= M) return;
    const int bo = b / hb, bi = b % hb;
    const long aBase = (long)bo * sAb + (long)bi * sAh, bBase = (long)bo * sBb + (long)bi * sBh;
    const long cBase = (long)bo * sCb + (long)bi * sCh, rowb = (long)b * M;
    const bool fullN = j0 + WN <= N && sBn == 1;
    long arow[WM];
    #pragma unroll
    for (int i = 0; i < WM; i++) arow[i] = aBase + (long)min(i0 + i, M - 1) * sAm;
#if SOFTMAX_A
    float pmax[WM], pinv[WM];
    #pragma unroll
    for (int i = 0; i < WM; i++) {
        pmax[i] = rmax[rowb + min(i0 + i, M - 1)];
        pinv[i] = rinv[rowb + min(i0 + i, M - 1)];
    }
#endif
    accV acc[WM][NV];
    #pragma unroll
    for (int i = 0; i < WM; i++)
        #pragma unroll
        for (int v = 0; v < NV; v++) acc[i][v] = (accV)((acc_t)0.0f);
    #pragma unroll 4
    for (int k = kb; k < ke; k++) {
        const long brow = bBase + (long)k * sBk;
        realV bv[NV];
        if (fullN) {
            #pragma unroll
            for (int v = 0; v < NV; v++) bv[v] = VLOADW(B, brow + j0 + v * VW);
        } else {   // the last, partial column block, or B with strided columns
            float t[WN];
            #pragma unroll
            for (int j = 0; j < WN; j++)
                t[j] = j0 + j < N ? LOAD(B, brow + (long)(j0 + j) * sBn) : 0.0f;
            #pragma unroll
            for (int v = 0; v < NV; v++) bv[v] = CAT(vload, VW)(v, t);
        }
        #pragma unroll
        for (int i = 0; i < WM; i++) {
            const realV a = (realV)(PRO_ROW(LOAD(A, arow[i] + (long)k * sAk), i));
            #pragma unroll
            for (int v = 0; v < NV; v++) acc[i][v] = MACN(VWS, a, bv[v], acc[i][v]);
        }
    }
    #pragma unroll
    for (int i = 0; i < WM; i++) {
        const int gi = i0 + i;
        if (gi >= M) break;
        float o[WN];
        #pragma unroll
        for (int v = 0; v < NV; v++) CAT(vstore, VW)(ACCF(VWS, acc[i][v]), v, o);
        #pragma unroll
        for (int j = 0; j < WN; j++) {
            const int gj = j0 + j;
            if (gj < N) PUT(gi, gj, alpha * o[j]);
        }
    }
}
#endif

// C[b] = act(sum over s < S of P[b * S + s] + bias): the second dispatch of a split-K GEMM.
// One work-item per element of C, (j, i, b) = global id (0, 1, 2); its S partial sums are S
// serial reads, each coalesced across the work-group's columns.
__kernel void gemm_split_reduce(__global const float* P, __global const store_t* bias,
                                __global store_t* C, const int M, const int N, const int S,
                                const int sCb, const int sCm, const int sCn, const int hb,
                                const int sCh)
{
    const int j = get_global_id(0), i = get_global_id(1), b = get_global_id(2);
    if (j >= N || i >= M) return;
    const long plane = (long)M * N;
    __global const float* p = P + (long)b * S * plane + (long)i * N + j;
    float v = 0.0f;
    for (int s = 0; s < S; s++) v += p[s * plane];
    STORE(C, (long)(b / hb) * sCb + (long)(b % hb) * sCh + (long)i * sCm + (long)j * sCn,
          epilogue(v, bias, i, j));
}
