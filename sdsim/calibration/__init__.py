"""`sdsim calibrate`: measure a device with microbenchmarks and write a sourced device profile."""
