// Scaled dot-product attention on (B, N, heads*d) tensors read in place: head h of batch b is
// columns [h*d, (h+1)*d) of rows b*N .. b*N+N-1. Scores and probabilities are stored in the
// storage precision (store_t); row statistics are fp32. Causal masking (key j visible to query
// i iff j <= i) is an argument.
//
// Arithmetic (ARITH, with NATIVE_HALF: fp16 storage on a device with cl_khr_fp16; 0 otherwise,
// all float): with ARITH 1 or 2 the elementwise softmax math runs in half, as a phone GPU's fp16
// FlashAttention does, and the long sums stay float; sdsim/sim/attention.py mirrors each point.
// - half: a score (the dot product as gemm.cl's MAC does it: half products into float, or with
//   ARITH 2 half fma into half; times the scale in float and rounded once to half, where the
//   other variants store it), flash's running max (a max of halves, exact in either type, so
//   softmax_max keeps float), s - max and its exp (at most 1, relative error 2^-11 as a stored
//   probability has), the flash rescale exp(m_old - m_new), and FlashAttention's P.V products
//   (ARITH 2: its output accumulators and their rescale too);
// - float: the row sum of exponentials (softmax_sum, softmax_stats, flash's l), its reciprocal
//   and the normalizing multiply or divide, and with ARITH 1 flash's output accumulators. A half
//   sum of 4096 terms near 1 (uniform attention over SD's 4096 tokens) stops growing at 2048,
//   where half's spacing is 2: the sum, and every probability, would be off by 2x, and anything
//   past 11 bits of the sum is lost.
// Half exp on Intel's CPU runtime is its float exp rounded to half (all 65536 inputs checked).
// FP_CONTRACT is off in these builds so every float product is rounded where the sim rounds it.
//
// Variants (see sdsim/kernels/attention.py for their costs); QK^T and P.V are opencl/gemm.cl's
// register-tiled GEMM on each (batch, head)'s matrices:
//   naive:           QK^T -> softmax_max -> softmax_sum -> softmax_normalize -> P.V
//   partial softmax: QK^T -> softmax_stats -> P.V loading exp(s - max) * (1 / sum) (gemm.cl
//                    SOFTMAX_A)
//   flash:           attn_flash (built with -DD=<head dim> -DBQ=<rows per group> -DBK=<key tile>,
//                    -DFLASH_CPU=1 for the CPU body: one work-item per group walks its BQ rows)

#ifndef WG
#define WG 64
#endif
#if ARITH
#pragma OPENCL FP_CONTRACT OFF
#define ELEM half                        // a score, a max, an exponential
#define EXP_DIFF(x, m) exp((half)(x) - (half)(m))
#define TOF(v) convert_float(v)
#define TOF8(v) convert_float8(v)
#define TOE8(v) convert_half8(v)
#else
#define ELEM float
#define EXP_DIFF(x, m) exp((x) - (m))
#define TOF(v) (v)
#define TOF8(v) (v)
#define TOE8(v) (v)
#endif

// Work-group tree reduction helpers over WG floats in local memory.
#define REDUCE(buf, l, OP)                                                \
    for (int o = WG / 2; o > 0; o >>= 1) {                                \
        barrier(CLK_LOCAL_MEM_FENCE);                                     \
        if ((l) < o) buf[l] = OP(buf[l], buf[(l) + o]);                   \
    }                                                                     \
    barrier(CLK_LOCAL_MEM_FENCE);
#define ADD(a, b) ((a) + (b))

// naive pass 1: row max (one work-group of WG items per row)
__kernel void softmax_max(__global const store_t* s, __global float* mx, int n)
{
    const size_t row = get_group_id(0);
    const int l = get_local_id(0);
    __local float red[WG];
    float m = -INFINITY;
    for (int j = l; j < n; j += WG) m = fmax(m, LOAD(s, row * n + j));
    red[l] = m;
    REDUCE(red, l, fmax)
    if (l == 0) mx[row] = red[0];
}

// naive pass 2: row sum of exp(s - max)
__kernel void softmax_sum(__global const store_t* s, __global const float* mx,
                          __global float* sm, int n)
{
    const size_t row = get_group_id(0);
    const int l = get_local_id(0);
    __local float red[WG];
    const float m = mx[row];
    float acc = 0.0f;
    for (int j = l; j < n; j += WG) acc += TOF(EXP_DIFF(LOAD(s, row * n + j), m));
    red[l] = acc;
    REDUCE(red, l, ADD)
    if (l == 0) sm[row] = red[0];
}

// naive pass 3: P = exp(s - max) / sum, written over S
__kernel void softmax_normalize(__global store_t* s, __global const float* mx,
                                __global const float* sm, int n, int rows)
{
    const int j = get_global_id(0), row = get_global_id(1);
    if (j >= n || row >= rows) return;
    const size_t idx = (size_t)row * n + j;
    STORE(s, idx, TOF(EXP_DIFF(LOAD(s, idx), mx[row])) / sm[row]);
}

// partial softmax: one pass, online max and sum of exponentials per row (merged across items);
// stores the max and the sum's reciprocal, which P.V multiplies each exponential by
__kernel void softmax_stats(__global const store_t* s, __global float* mx, __global float* inv,
                            int n)
{
    const size_t row = get_group_id(0);
    const int l = get_local_id(0);
    __local float rm[WG];
    __local float rs[WG];
    float m = -INFINITY, acc = 0.0f;
    for (int j = l; j < n; j += WG) {
        const float x = LOAD(s, row * n + j);
        if (x == -INFINITY) continue;
        if (x > m) { acc = acc * TOF(EXP_DIFF(m, x)) + 1.0f; m = x; }
        else acc += TOF(EXP_DIFF(x, m));
    }
    rm[l] = m;
    rs[l] = acc;
    for (int o = WG / 2; o > 0; o >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (l < o) {
            const float ma = rm[l], mb = rm[l + o];
            const float mm = fmax(ma, mb);
            const float ea = (ma == -INFINITY) ? 0.0f : TOF(EXP_DIFF(ma, mm));
            const float eb = (mb == -INFINITY) ? 0.0f : TOF(EXP_DIFF(mb, mm));
            rs[l] = rs[l] * ea + rs[l + o] * eb;
            rm[l] = mm;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (l == 0) { mx[row] = rm[0]; inv[row] = 1.0f / rs[0]; }
}

#ifdef D
#if FLASH_CPU
// FlashAttention on a CPU: a work-group of one work-item owns BQ query rows of one (batch, head)
// and walks them row by row over each key tile; K is staged transposed and V padded to DP
// columns, so a row's scores for the tile are BK / 8 float8 multiply-adds per query element and
// its accumulators DP / 8 float8 vectors: the SIMD micro-kernel shape of a CPU BLAS, with exp
// on whole vectors. (Work-groups of many work-items run as loops over them on a CPU, and their
// per-row state goes through memory at every barrier.)
#if BK % 8
#error "the CPU FlashAttention body walks key tiles 8 keys at a time (BK a multiple of 8)"
#endif
#define DP ((D + 7) / 8 * 8)
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void attn_flash(__global const store_t* q, __global const store_t* k, __global const store_t* v,
                __global store_t* o, int nq, int nk, int heads, float scale, int causal)
{
    const int qt = get_group_id(0), bh = get_group_id(1);
    const int b = bh / heads, h = bh % heads, C = heads * D;
    const int i0 = qt * BQ, rows = min(BQ, nq - i0);
    __local float8 ktT8[D][BK / 8];                    // read as aligned vectors
    __local float8 vt8[BK][DP / 8];
    __local float (*ktT)[BK] = (__local float (*)[BK])ktT8;
    __local float (*vt)[DP] = (__local float (*)[DP])vt8;
    float qr[BQ][D], l[BQ];
    ELEM m[BQ];
    CAT(ACC, 8) acc[BQ][DP / 8];
    for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < D; ++c) qr[r][c] = LOAD(q, (size_t)(b * nq + i0 + r) * C + h * D + c);
        for (int c = 0; c < DP / 8; ++c) acc[r][c] = (CAT(ACC, 8))0.0f;
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    const int8 lane = (int8)(0, 1, 2, 3, 4, 5, 6, 7), cmask = (int8)(causal ? -1 : 0);
    const int kend = causal ? min(nk, i0 + rows) : nk;
    for (int j0 = 0; j0 < kend; j0 += BK) {
        const int jn = min(BK, kend - j0);
        for (int jj = 0; jj < BK; ++jj) {
            const size_t g = (size_t)(b * nk + j0 + jj) * C + h * D;
            for (int c = 0; c < D; ++c) {
                ktT[c][jj] = jj < jn ? LOAD(k, g + c) : 0.0f;
                vt[jj][c] = jj < jn ? LOAD(v, g + c) : 0.0f;
            }
            for (int c = D; c < DP; ++c) vt[jj][c] = 0.0f;
        }
        for (int r = 0; r < rows; ++r) {
            const int i = i0 + r;
            CAT(ACC, 8) sa[BK / 8];                   // the dot products
            _Pragma("unroll")
            for (int t = 0; t < BK / 8; ++t) sa[t] = (CAT(ACC, 8))0.0f;
            for (int c = 0; c < D; ++c) {
                const float8 a = (float8)(qr[r][c]);
                _Pragma("unroll")
                for (int t = 0; t < BK / 8; ++t) sa[t] = MACN(8, a, ktT8[c][t], sa[t]);
            }
            CAT(ELEM, 8) s[BK / 8];
            CAT(ELEM, 8) mv = (CAT(ELEM, 8))(-INFINITY);
            _Pragma("unroll")
            for (int t = 0; t < BK / 8; ++t) {
                const int8 j = lane + (j0 + t * 8);
                s[t] = TOE8(select(ACCF(8, sa[t]) * scale, (float8)(-INFINITY),
                                   (j >= j0 + jn) | ((j > i) & cmask)));
                mv = fmax(mv, s[t]);
            }
            const CAT(ELEM, 4) m4 = fmax(mv.lo, mv.hi);
            const CAT(ELEM, 2) m2 = fmax(m4.lo, m4.hi);
            const ELEM mt = fmax(m[r], fmax(m2.x, m2.y));
            if (mt == -INFINITY) continue;              // every key of this tile masked
            const ELEM alpha = (m[r] == -INFINITY) ? (ELEM)0.0f : EXP_DIFF(m[r], mt);
            ELEM p[BK];
            float8 lv = (float8)0.0f;
            _Pragma("unroll")
            for (int t = 0; t < BK / 8; ++t) {
                const CAT(ELEM, 8) e = exp(s[t] - mt); // masked keys: exp(-inf) = 0
                lv += TOF8(e);
                vstore8(e, t, p);
            }
            const float4 l4 = lv.lo + lv.hi;
            const float2 l2 = l4.lo + l4.hi;
            l[r] = l[r] * TOF(alpha) + (l2.x + l2.y);
            CAT(ACC, 8) a[DP / 8];
            _Pragma("unroll")
            for (int c = 0; c < DP / 8; ++c) a[c] = acc[r][c] * (ACC)alpha;
            for (int jj = 0; jj < BK; ++jj) {
                const float8 pj = (float8)(TOF(p[jj]));
                _Pragma("unroll")
                for (int c = 0; c < DP / 8; ++c) a[c] = MACN(8, pj, vt8[jj][c], a[c]);
            }
            _Pragma("unroll")
            for (int c = 0; c < DP / 8; ++c) acc[r][c] = a[c];
            m[r] = mt;
        }
    }
    for (int r = 0; r < rows; ++r) {
        float out[DP];
        const float inv = 1.0f / l[r];
        for (int c = 0; c < DP / 8; ++c) vstore8(ACCF(8, acc[r][c]) * inv, c, out);
        for (int c = 0; c < D; ++c) STORE(o, (size_t)(b * nq + i0 + r) * C + h * D + c, out[c]);
    }
}
#else   // the GPU body
#if FLASH_UNROLL
#define TILE_KEYS BK
#define TILE_UNROLL _Pragma("unroll")
#else
#define TILE_KEYS jn
#define TILE_UNROLL
#endif
// FlashAttention: a work-group of BQ items owns BQ query rows of one (batch, head); K/V tiles of
// BK rows are staged in local memory; each item keeps its query, running max m, running sum l
// and D accumulators in private memory and rescales them when the max grows (online softmax).
__kernel __attribute__((reqd_work_group_size(BQ, 1, 1)))
void attn_flash(__global const store_t* q, __global const store_t* k, __global const store_t* v,
                __global store_t* o, int nq, int nk, int heads, float scale, int causal)
{
    const int lid = get_local_id(0), qt = get_group_id(0), bh = get_group_id(1);
    const int b = bh / heads, h = bh % heads, C = heads * D;
    const int i = qt * BQ + lid;
    const bool active = i < nq;
    __local float kt[BK][D];
    __local float vt[BK][D];
    float qr[D];
    ACC acc[D];
    ELEM sc[BK];
    for (int c = 0; c < D; ++c) {
        qr[c] = active ? LOAD(q, (size_t)(b * nq + i) * C + h * D + c) : 0.0f;
        acc[c] = 0.0f;
    }
    ELEM m = -INFINITY;
    float l = 0.0f;
    const int last = min(nq, (qt + 1) * BQ);            // one past the tile's last query row
    const int kend = causal ? min(nk, last) : nk;
    for (int j0 = 0; j0 < kend; j0 += BK) {
        const int jn = min(BK, kend - j0);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = lid; e < BK * D; e += BQ) {
            const int jj = e / D, c = e % D;
            const size_t g = (size_t)(b * nk + j0 + jj) * C + h * D + c;
            kt[jj][c] = jj < jn ? LOAD(k, g) : 0.0f;
            vt[jj][c] = jj < jn ? LOAD(v, g) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!active) continue;
        // FLASH_UNROLL (GPUs): loops over the whole tile, keys past jn masked, fully unrolled so
        // the scores stay in registers; otherwise (CPUs) loops over the jn keys as they come
        ELEM mt = m;
        TILE_UNROLL
        for (int jj = 0; jj < TILE_KEYS; ++jj) {
            ACC x = 0.0f;
            TILE_UNROLL
            for (int c = 0; c < D; ++c) x = MAC(qr[c], kt[jj][c], x);
            ELEM xs = (ELEM)((float)x * scale);
            if (jj >= jn || (causal && j0 + jj > i)) xs = -INFINITY;
            sc[jj] = xs;
            mt = fmax(mt, xs);
        }
        if (mt == -INFINITY) continue;                  // every key of this tile masked
        const ELEM alpha = (m == -INFINITY) ? (ELEM)0.0f : EXP_DIFF(m, mt);
        l *= TOF(alpha);
        TILE_UNROLL
        for (int c = 0; c < D; ++c) acc[c] *= (ACC)alpha;
        TILE_UNROLL
        for (int jj = 0; jj < TILE_KEYS; ++jj) {
            const ELEM pj = (sc[jj] == -INFINITY) ? (ELEM)0.0f : EXP_DIFF(sc[jj], mt);
            l += TOF(pj);
            TILE_UNROLL
            for (int c = 0; c < D; ++c) acc[c] = MAC(pj, vt[jj][c], acc[c]);
        }
        m = mt;
    }
    if (active) {
        const float inv = 1.0f / l;
        for (int c = 0; c < D; ++c)
            STORE(o, (size_t)(b * nq + i) * C + h * D + c, (float)acc[c] * inv);
    }
}
#endif   // FLASH_CPU
#endif
