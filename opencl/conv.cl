// Convolutions, NCHW at the API. Storage store_t (float or half via LOAD/STORE), float math.
//   conv_direct  : baseline; one work-item per output pixel and COB output channels, weights
//                  staged in local memory; kernel size KS (build option), any stride and
//                  (top, left) padding (bottom/right follow from Ho, Wo).
//   im2col       : column matrix col[n][(c*ks + ky)*ks + kx][oy*Wo + ox] for the gemm of gemm.cl.
//   wino_weight  : U[xi][k][c] = (G g G^T)[xi], xi = i*ALPHA + j (done once, at load time).
//   wino_input   : V[xi][c][p] = (B^T d B)[xi] for tile p = (n*TH + ty)*TW + tx.
//   wino_output  : y = A^T M A + bias for each tile, M[xi][k][p] from the batched gemm.
// Winograd transform matrices come as __constant float arrays (row-major): BT (ALPHA x ALPHA),
// G (ALPHA x 3), AT (WM x ALPHA); ALPHA = WM + 2 is a build option.

// COB, CB and KS come from the launcher (sdsim/kernels/conv.py) for conv_direct; the
// placeholders below only let the program build for the other kernels, which do not use them.
#if !defined(COB)
#define COB 1
#endif
#if !defined(CB)
#define CB 1
#endif
#if !defined(KS)
#define KS 1
#endif

__kernel void conv_direct(__global const store_t* x, __global const store_t* w,
                          __global const store_t* bias, __global store_t* y,
                          const int N, const int C, const int H, const int W, const int K,
                          const int Ho, const int Wo, const int stride,
                          const int pt, const int pl, const int has_bias)
{
    // Work-group: a 2-D block of output pixels of one image, for COB output channels. Their
    // weights for CB input channels at a time are staged in local memory (read once per
    // work-group); each input value a work-item loads feeds COB multiply-adds.
    const int ox = get_global_id(0), oy = get_global_id(1), z = get_global_id(2);
    const int kb = (K + COB - 1) / COB;
    const int n = z / kb, k0 = (z % kb) * COB;
    const int lid = get_local_id(1) * get_local_size(0) + get_local_id(0);
    const int lsz = get_local_size(0) * get_local_size(1);
    const bool valid = ox < Wo && oy < Ho && n < N;
    __local float wl[CB * COB * KS * KS];     // [c - c0][q][ky][kx]
    float acc[COB];
    for (int q = 0; q < COB; q++) acc[q] = 0.0f;
    for (int c0 = 0; c0 < C; c0 += CB) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = lid; e < CB * COB * KS * KS; e += lsz) {
            const int cc = e / (COB * KS * KS), r = e % (COB * KS * KS);
            const int q = r / (KS * KS), t = r % (KS * KS);
            wl[e] = (c0 + cc < C && k0 + q < K)
                    ? LOAD(w, ((long)(k0 + q) * C + c0 + cc) * KS * KS + t) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!valid) continue;
        for (int cc = 0; cc < CB && c0 + cc < C; cc++) {
            const long xb = ((long)n * C + c0 + cc) * H * W;
            for (int ky = 0; ky < KS; ky++) {
                const int iy = oy * stride - pt + ky;
                if (iy < 0 || iy >= H) continue;
                for (int kx = 0; kx < KS; kx++) {
                    const int ix = ox * stride - pl + kx;
                    if (ix < 0 || ix >= W) continue;
                    const float xv = LOAD(x, xb + (long)iy * W + ix);
                    __local const float* wp = wl + cc * COB * KS * KS + ky * KS + kx;
                    for (int q = 0; q < COB; q++) acc[q] = xv * wp[q * KS * KS] + acc[q];
                }
            }
        }
    }
    if (!valid) return;
    for (int q = 0; q < COB; q++) {
        const int k = k0 + q;
        if (k >= K) break;
        const float v = acc[q] + (has_bias ? LOAD(bias, k) : 0.0f);
        STORE(y, (((long)n * K + k) * Ho + oy) * Wo + ox, v);
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
    float d[ALPHA][ALPHA], t[ALPHA][ALPHA];
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
            float s = 0.0f;
            for (int l = 0; l < ALPHA; l++) s = BT[i * ALPHA + l] * d[l][j] + s;
            t[i][j] = s;
        }
    for (int i = 0; i < ALPHA; i++)          // V = t BT^T
        for (int j = 0; j < ALPHA; j++) {
            float s = 0.0f;
            for (int l = 0; l < ALPHA; l++) s = t[i][l] * BT[j * ALPHA + l] + s;
            STORE(v, ((long)(i * ALPHA + j) * C + c) * P + p, s);
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
    float m[ALPHA][ALPHA], t[WM][ALPHA];
    for (int i = 0; i < ALPHA; i++)
        for (int j = 0; j < ALPHA; j++) m[i][j] = LOAD(mm, ((long)(i * ALPHA + j) * K + k) * P + p);
    for (int i = 0; i < WM; i++)             // t = AT m
        for (int j = 0; j < ALPHA; j++) {
            float s = 0.0f;
            for (int l = 0; l < ALPHA; l++) s = AT[i * ALPHA + l] * m[l][j] + s;
            t[i][j] = s;
        }
    const float b = has_bias ? LOAD(bias, k) : 0.0f;
    for (int i = 0; i < WM; i++) {           // Y = t AT^T + b
        const int oy = ty * WM + i;
        if (oy >= Ho) break;
        for (int j = 0; j < WM; j++) {
            const int ox = tx * WM + j;
            if (ox >= Wo) break;
            float s = 0.0f;
            for (int l = 0; l < ALPHA; l++) s = t[i][l] * AT[j * ALPHA + l] + s;
            STORE(y, (((long)n * K + k) * Ho + oy) * Wo + ox, s + b);
        }
    }
}
#endif
