// The timestep embedding the OpenCL backend runs: the same math as opencl/elementwise.cl's, but
// written in the storage precision (that one writes float32, which the next linear would misread
// under fp16 storage; the cost formula charges storage-precision bytes). Storage store_t through
// LOAD/STORE (runtime PRELUDE).

// diffusers' get_timestep_embedding: [sin(t f_j), cos(t f_j)] (flipped to [cos, sin] if asked),
// f_j = exp(-ln(10000) j / (half - shift)); an odd dim leaves the last column 0.
__kernel void timestep_embedding(__global const float* ts, __global store_t* y, const int dim,
                                 const int flip, const float shift, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const int hd = dim / 2, b = (int)(i / dim), j = (int)(i % dim);
    float v = 0.0f;
    if (j < 2 * hd) {
        const int k = j % hd;
        const float f = exp(-9.210340371976184f * (float)k / ((float)hd - shift));
        const float arg = ts[b] * f;
        const int first = j < hd;
        v = (first != flip) ? sin(arg) : cos(arg);
    }
    STORE(y, i, v);
}
