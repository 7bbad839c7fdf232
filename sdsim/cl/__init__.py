"""OpenCL execution: the runtime (runtime.py: device, program cache, launches, buffers) and the
bench harness (bench.py) that runs every kernel variant record of sdsim/kernels through its own
launcher and checks it against the record's reference."""
