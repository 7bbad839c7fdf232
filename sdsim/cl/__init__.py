"""OpenCL execution: the runtime (runtime.py), one module per kernel family (conv, gemm, norm,
gelu, attention, elementwise) exposing device-buffer functions plus `bench_cases(quick)`, and the
bench harness (bench.py) that times and checks every variant."""
