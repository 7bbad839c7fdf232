// The two data-movement kernels the OpenCL backend needs beyond opencl/elementwise.cl, so that each
// dispatch is the one the cost model charges (sdsim/kernels/elementwise.py): a two-part concat in
// ONE dispatch (elementwise.cl copies each part with its own launch), and the sinusoidal timestep
// embedding written in the storage precision (elementwise.cl writes float32, which the next
// linear would misread under fp16 storage). Storage store_t through LOAD/STORE (runtime PRELUDE).

// Concat of two tensors along one axis: outer x (c1 + c2) x inner.
__kernel void concat2(__global const store_t* a, __global const store_t* b, __global store_t* y,
                      const int c1, const int c2, const long inner, const long n)
{
    const long i = get_global_id(0);
    if (i >= n) return;
    const int c = c1 + c2;
    const long o = i / ((long)c * inner), r = i % ((long)c * inner);
    const int ch = (int)(r / inner);
    const long k = r % inner;
    const float v = ch < c1 ? LOAD(a, (o * c1 + ch) * inner + k)
                            : LOAD(b, (o * c2 + ch - c1) * inner + k);
    STORE(y, i, v);
}

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
