// Microbenchmarks of `sdsim calibrate`: what a device profile's rates and overheads are measured
// with. Compiled after prelude.cl (store_t, LOAD/STORE, half_t).

// Streaming copy in 16-byte vectors: each work-item moves one float4. DRAM bandwidth is
// 2 * bytes / time (one read, one write) on buffers far larger than any cache.
__kernel void copy4(__global const float4* src, __global float4* dst, const int n4)
{
    const int i = get_global_id(0);
    if (i < n4) dst[i] = src[i];
}

// Arithmetic rate: CHAINS independent multiply-add chains per work-item (enough to hide the FMA
// latency), `iters` iterations; 2 * CHAINS * iters FLOP per work-item. Written a * b + c, which
// compilers contract to an FMA instruction where one exists (PoCL turns mad()/fma() into a slow
// library call). half_t is `half` with native fp16 (cl_khr_fp16 and fp16 storage) and `float`
// otherwise, so the fp16 build measures what fp16-storage kernels compute with on the device.
// The result is written so the chains cannot be optimised away.
#ifndef CHAINS
#define CHAINS 16
#endif
__kernel void fma_rate(__global store_t* out, const float a, const float b, const int iters,
                       const int n)
{
    const int gid = get_global_id(0);
    if (gid >= n) return;   // the global size is rounded up to the work-group size
    half_t x[CHAINS];
    const half_t ha = (half_t)a, hb = (half_t)b;
    for (int c = 0; c < CHAINS; c++) x[c] = (half_t)(gid * 1e-9f + c * 1e-3f);
    for (int i = 0; i < iters; i++) {
#pragma unroll
        for (int c = 0; c < CHAINS; c++) x[c] = x[c] * ha + hb;
    }
    float s = 0.0f;
    for (int c = 0; c < CHAINS; c++) s += (float)x[c];
    STORE(out, gid, s);
}

// Launch overhead: a dispatch that does nothing; its event duration is the fixed cost every
// dispatch pays.
__kernel void empty(__global float* p)
{
}
