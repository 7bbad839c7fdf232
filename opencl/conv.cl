// Convolutions, NCHW at the API. Storage store_t (float or half via LOAD/STORE), float math
// unless a half-arithmetic build (ARITH below).
//   conv_direct  : baseline; one work-item per output pixel and COB output channels, work-groups
//                  over the flattened pixel index of one image, weights staged in local memory
//                  CB input channels at a time; COB, CB, kernel size KS and the work-group size
//                  chosen per call (build options / local size); any stride and (top, left)
//                  padding (bottom/right follow from Ho, Wo).
//   im2col       : column matrix col[n][(c*ks + ky)*ks + kx][oy*Wo + ox] for the gemm of gemm.cl.
//   wino_weight  : U[xi][k][c] = (G g G^T)[xi], xi = i*ALPHA + j (done once, at load time).
//   wino_input   : V[xi][c][p] = (B^T d B)[xi] for tile p = (n*TH + ty)*TW + tx.
//   wino_output  : y = A^T M A + bias for each tile, M[xi][k][p] from the batched gemm.
// Winograd transform matrices come as __constant float arrays (row-major): BT (ALPHA x ALPHA),
// G (ALPHA x 3), AT (WM x ALPHA); ALPHA = WM + 2 is a build option.
// Arithmetic (ARITH, with NATIVE_HALF: fp16 storage on a device with cl_khr_fp16), as in gemm.cl:
// 0 float multiply-add; 1 half multiplies (each product rounded to half) added into float
// accumulators; 2 half fma into half accumulators. MAC is every multiply-add of conv_direct,
// wino_input and wino_output: the direct conv's long dot product (two chains of cin * KS * KS / 2
// terms, 11520 for a 2560-channel 3x3: ARITH 1 keeps it float, ARITH 2 rounds each step to
// 2^-11 of the running sum, as a mobile engine's fp16 mode and gemm.cl's ARITH 2 do) and each
// transform's ALPHA-term dot products (at most 8 terms: half sums cost no more than the half
// products). Every B^T and A^T entry (F2/F4/F6: 0, 1/32 .. 32, 5/4, 17/4, 21/4) is exact in
// half, so converting the float constants to half loses nothing. Kept float in all
// builds: the bias add (float value of the sum + bias, one rounding at the store, as gemm.cl's
// epilogue) and wino_weight, which runs once at load time (a deployment transforms its weights
// offline): G's entries (1/6, 1/24, 2/45, ...) are not exact in half, and U is rounded once, at
// its fp16 store. Half builds turn FP contraction off, so that wino_weight's float multiply-adds
// and ARITH 1's half product plus float sum round where sdsim/sim/conv.py and
// sdsim/sim/winograd.py round (the Intel CPU compiler contracts a * b + c to fma otherwise).

// COB, CB and KS come from the launcher (sdsim/kernels/conv.py, `direct_config`) for
// conv_direct; the placeholders below only let the program build for the other kernels, which do
// not use them.
#if !defined(COB)
#define COB 1
#endif
#if !defined(CB)
#define CB 1
#endif
#if !defined(KS)
#define KS 1
#endif

#if ARITH
#pragma OPENCL FP_CONTRACT OFF
#endif
// MAC (prelude.cl): a, b are the loaded values and the transform constants (all exact in half)
// or ARITH 1's float transform intermediate, rounded to half as it enters the second pass

__kernel void conv_direct(__global const store_t* x, __global const store_t* w,
                          __global const store_t* bias, __global store_t* y,
                          const int N, const int C, const int H, const int W, const int K,
                          const int Ho, const int Wo, const int stride,
                          const int pt, const int pl, const int has_bias)
{
    // Global (pixel groups x local size, N * ceil(K / COB)); local (GROUP, 1). A work-group is
    // GROUP consecutive output pixels p = oy * Wo + ox of one image (rows wrap inside it, so an
    // 8x8 image fills a 64-wide group) for COB output channels k0..k0+COB-1; one work-item per
    // pixel. The block's weights for CB input channels at a time are staged in local memory
    // (each read once per work-group), laid out [c - c0][ky][kx][q] so a tap's COB weights are
    // contiguous; each input value a work-item loads feeds COB multiply-adds. Taps in the padding
    // and pixels past Ho * Wo multiply a zero (no branch: loads are masked, loops have constant
    // trip counts and unroll). Even and odd input channels accumulate separately (two
    // independent chains of multiply-adds per output, each in (c, ky, kx) order, channels past
    // C up to a multiple of CB adding 0 * 0) and are added at the end, in acc_t, then the bias
    // in float.
    const int p = get_global_id(0), z = get_global_id(1);
    const int kb = (K + COB - 1) / COB;
    const int n = z / kb, k0 = (z - n * kb) * COB;
    const int lid = get_local_id(0), lsz = get_local_size(0);
    const bool valid = p < Ho * Wo;
    const int oy = valid ? p / Wo : 0, ox = valid ? p - oy * Wo : 0;
    const int iy0 = oy * stride - pt, ix0 = ox * stride - pl;
    __global const store_t* xn = x + (long)n * C * H * W;
    __local float wl[CB * KS * KS * COB];
    acc_t acc[2][COB];
    for (int q = 0; q < COB; q++) acc[0][q] = acc[1][q] = (acc_t)0.0f;
    for (int c0 = 0; c0 < C; c0 += CB) {
        barrier(CLK_LOCAL_MEM_FENCE);
        // e walks each output channel's CB * KS * KS weights, contiguous in w, in turn
        for (int e = lid; e < CB * KS * KS * COB; e += lsz) {
            const int q = e / (CB * KS * KS), r = e - q * (CB * KS * KS);   // r = cc * KS*KS + t
            wl[r * COB + q] = (c0 + r / (KS * KS) < C && k0 + q < K)
                              ? LOAD(w, ((long)(k0 + q) * C + c0) * KS * KS + r) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        #pragma unroll
        for (int cc = 0; cc < CB; cc++) {
            const bool cok = valid && c0 + cc < C;
            __global const store_t* xc = xn + (long)(cok ? c0 + cc : 0) * H * W;
            #pragma unroll
            for (int ky = 0; ky < KS; ky++) {
                const int iy = iy0 + ky;
                const bool rok = cok && iy >= 0 && iy < H;
                #pragma unroll
                for (int kx = 0; kx < KS; kx++) {
                    const int ix = ix0 + kx;
                    const bool ok = rok && ix >= 0 && ix < W;
                    const float xr = LOAD(xc, ok ? iy * W + ix : 0);
                    const float xv = ok ? xr : 0.0f;
                    __local const float* wp = wl + ((cc * KS + ky) * KS + kx) * COB;
                    #pragma unroll
                    for (int q = 0; q < COB; q++) acc[cc & 1][q] = MAC(xv, wp[q], acc[cc & 1][q]);
                }
            }
        }
    }
    if (!valid) return;
    const long yb = ((long)n * K + k0) * Ho * Wo + p;
    for (int q = 0; q < COB; q++) {
        if (k0 + q >= K) break;
        const float v = (float)(acc[0][q] + acc[1][q]) + (has_bias ? LOAD(bias, k0 + q) : 0.0f);
        STORE(y, yb + (long)q * Ho * Wo, v);
    }
}

__kernel void im2col(__global const store_t* x, __global store_t* col,
                     const int N, const int C, const int H, const int W, const int Ho,
                     const int Wo, const int ks, const int stride, const int pt, const int pl)
{
    const int p = get_global_id(0), r = get_global_id(1), n = get_global_id(2);
    if (p >= Ho * Wo || r >= C * ks * ks || n >= N) return;
    const int c = r / (ks * ks), kk = r % (ks * ks), ky = kk / ks, kx = kk % ks;
    const int oy = p / Wo, ox = p % Wo;
    const int iy = oy * stride - pt + ky, ix = ox * stride - pl + kx;
    const float v = (iy >= 0 && iy < H && ix >= 0 && ix < W)
                    ? LOAD(x, (((long)n * C + c) * H + iy) * W + ix) : 0.0f;
    STORE(col, ((long)n * C * ks * ks + r) * Ho * Wo + p, v);
}

#ifdef ALPHA
#define WM (ALPHA - 2)

__kernel void wino_weight(__global const store_t* w, __global store_t* u,
                          __constant float* G, const int K, const int C)
{
    const int c = get_global_id(0), k = get_global_id(1);
    if (c >= C || k >= K) return;
    float g[3][3], t[ALPHA][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) g[i][j] = LOAD(w, (((long)k * C + c) * 3 + i) * 3 + j);
    for (int i = 0; i < ALPHA; i++)
        for (int j = 0; j < 3; j++) {
            float s = 0.0f;
            for (int l = 0; l < 3; l++) s = G[i * 3 + l] * g[l][j] + s;
            t[i][j] = s;
        }
    for (int i = 0; i < ALPHA; i++)
        for (int j = 0; j < ALPHA; j++) {
            float s = 0.0f;
            for (int l = 0; l < 3; l++) s = t[i][l] * G[j * 3 + l] + s;
            STORE(u, ((long)(i * ALPHA + j) * K + k) * C + c, s);
        }
}

__kernel void wino_input(__global const store_t* x, __global store_t* v, __constant float* BT,
                         const int N, const int C, const int H, const int W,
                         const int TH, const int TW)
{
    const int tx = get_global_id(0), ty = get_global_id(1), z = get_global_id(2);
    if (tx >= TW || ty >= TH || z >= N * C) return;
    const int n = z / C, c = z % C;
    const long P = (long)N * TH * TW, p = ((long)n * TH + ty) * TW + tx;
    float d[ALPHA][ALPHA];
    acc_t t[ALPHA][ALPHA];
    const long xb = (long)z * H * W;
    for (int i = 0; i < ALPHA; i++) {
        const int iy = ty * WM - 1 + i;
        for (int j = 0; j < ALPHA; j++) {
            const int ix = tx * WM - 1 + j;
            d[i][j] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? LOAD(x, xb + (long)iy * W + ix) : 0.0f;
        }
    }
    for (int i = 0; i < ALPHA; i++)          // t = BT d
        for (int j = 0; j < ALPHA; j++) {
            acc_t s = (acc_t)0.0f;
            for (int l = 0; l < ALPHA; l++) s = MAC(BT[i * ALPHA + l], d[l][j], s);
            t[i][j] = s;
        }
    for (int i = 0; i < ALPHA; i++)          // V = t BT^T
        for (int j = 0; j < ALPHA; j++) {
            acc_t s = (acc_t)0.0f;
            for (int l = 0; l < ALPHA; l++) s = MAC(t[i][l], BT[j * ALPHA + l], s);
            STORE(v, ((long)(i * ALPHA + j) * C + c) * P + p, (float)s);
        }
}

__kernel void wino_output(__global const store_t* mm, __global const store_t* bias,
                          __global store_t* y, __constant float* AT,
                          const int N, const int K, const int Ho, const int Wo,
                          const int TH, const int TW, const int has_bias)
{
    const int tx = get_global_id(0), ty = get_global_id(1), z = get_global_id(2);
    if (tx >= TW || ty >= TH || z >= N * K) return;
    const int n = z / K, k = z % K;
    const long P = (long)N * TH * TW, p = ((long)n * TH + ty) * TW + tx;
    float m[ALPHA][ALPHA];
    acc_t t[WM][ALPHA];
    for (int i = 0; i < ALPHA; i++)
        for (int j = 0; j < ALPHA; j++) m[i][j] = LOAD(mm, ((long)(i * ALPHA + j) * K + k) * P + p);
    for (int i = 0; i < WM; i++)             // t = AT m
        for (int j = 0; j < ALPHA; j++) {
            acc_t s = (acc_t)0.0f;
            for (int l = 0; l < ALPHA; l++) s = MAC(AT[i * ALPHA + l], m[l][j], s);
            t[i][j] = s;
        }
    const float b = has_bias ? LOAD(bias, k) : 0.0f;
    for (int i = 0; i < WM; i++) {           // Y = t AT^T + b
        const int oy = ty * WM + i;
        if (oy >= Ho) break;
        for (int j = 0; j < WM; j++) {
            const int ox = tx * WM + j;
            if (ox >= Wo) break;
            acc_t s = (acc_t)0.0f;
            for (int l = 0; l < ALPHA; l++) s = MAC(t[i][l], AT[j * ALPHA + l], s);
            STORE(y, (((long)n * K + k) * Ho + oy) * Wo + ox, (float)s + b);
        }
    }
}
#endif
