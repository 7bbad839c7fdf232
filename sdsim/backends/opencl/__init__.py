"""The OpenCL backend: runs SD components on a device through the kernel plan of the lowering."""
