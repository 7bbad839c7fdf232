"""OpenCL execution: the runtime (runtime.py: device, program cache, launches, buffers) and the
bench harness (bench.py) that runs every kernel variant record of sdsim/kernels through its own
launcher and checks it against the record's reference.

Importing it registers Intel's OpenCL CPU runtime with the loader when it is installed
(vendors.py), before any platform query."""

from sdsim.cl import vendors

vendors.register()
