// Tiled GEMM: C[b] = act(alpha * A[b] @ B[b] + bias), one TS x TS block of C per RT x RT
// work-group (WPT x WPT outputs per work-item, strided by RT so neighbouring work-items touch
// neighbouring addresses), K streamed in steps of TK through local memory. Operands are addressed by explicit
// strides, so the same kernel serves linear (B = W^T: sBk = 1, sBn = K), im2col convolution and
// the Winograd batched GEMM.
// Storage is store_t (float or half via LOAD/STORE), accumulation float.
// Compile-time options: BIAS = 0 none | 1 per column of C (linear) | 2 per row of C (conv);
// ACT = 0 none | 1 exact erf GELU (the GEMM-epilogue GELU).

#ifndef BIAS
#define BIAS 0
#endif
#ifndef ACT
#define ACT 0
#endif

// Tile constants come from the launcher (sdsim/kernels/gemm.py DEFINES): TS output tile edge,
// RT work-group edge, TK K step, WPT = TS / RT outputs per work-item and dimension.
#if !defined(TS) || !defined(TK) || !defined(RT) || !defined(WPT)
#error "gemm.cl needs -DTS, -DTK, -DRT and -DWPT from sdsim/kernels/gemm.py"
#endif

__kernel __attribute__((reqd_work_group_size(RT, RT, 1)))
void gemm(__global const store_t* A, __global const store_t* B, __global const store_t* bias,
          __global store_t* C, const int M, const int N, const int K, const float alpha,
          const int sAb, const int sAm, const int sAk,
          const int sBb, const int sBk, const int sBn,
          const int sCb, const int sCm, const int sCn)
{
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int j0 = get_group_id(0) * TS, i0 = get_group_id(1) * TS;
    const int b = get_group_id(2);
    const int tid = ty * RT + tx;
    __local float As[TK][TS];
    __local float Bs[TK][TS + 1];
    float acc[WPT][WPT];
    for (int i = 0; i < WPT; i++)
        for (int j = 0; j < WPT; j++) acc[i][j] = 0.0f;
    const long aBase = (long)b * sAb, bBase = (long)b * sBb;

    for (int k0 = 0; k0 < K; k0 += TK) {
        for (int l = 0; l < (TS * TK) / (RT * RT); l++) {
            const int e = tid + l * RT * RT;
            // A tile: k fastest when A is row-major (sAk == 1)
            const int am = e / TK, ak = e % TK;
            const int gi = i0 + am, gka = k0 + ak;
            As[ak][am] = (gi < M && gka < K) ? LOAD(A, aBase + (long)gi * sAm + (long)gka * sAk) : 0.0f;
            // B tile: n fastest when B is row-major (sBn == 1), k fastest otherwise
            int bk, bn;
            if (sBn == 1) { bk = e / TS; bn = e % TS; } else { bn = e / TK; bk = e % TK; }
            const int gj = j0 + bn, gkb = k0 + bk;
            Bs[bk][bn] = (gj < N && gkb < K) ? LOAD(B, bBase + (long)gkb * sBk + (long)gj * sBn) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TK; kk++) {
            float a[WPT], bv[WPT];
            for (int i = 0; i < WPT; i++) a[i] = As[kk][ty + RT * i];
            for (int j = 0; j < WPT; j++) bv[j] = Bs[kk][tx + RT * j];
            for (int i = 0; i < WPT; i++)
                for (int j = 0; j < WPT; j++) acc[i][j] = a[i] * bv[j] + acc[i][j];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (int i = 0; i < WPT; i++) {
        const int gi = i0 + ty + RT * i;
        if (gi >= M) continue;
        for (int j = 0; j < WPT; j++) {
            const int gj = j0 + tx + RT * j;
            if (gj >= N) continue;
            float v = alpha * acc[i][j];
#if BIAS == 1
            v += LOAD(bias, gj);
#elif BIAS == 2
            v += LOAD(bias, gi);
#endif
#if ACT == 1
            v = 0.5f * v * (1.0f + erf(v * 0.70710678118654752f));
#endif
            STORE(C, (long)b * sCb + (long)gi * sCm + (long)gj * sCn, v);
        }
    }
}
