"""Shared fixtures."""

import pytest

import sdsim.cl  # noqa: F401  (registers Intel's CPU runtime before any test asks the loader)

#: the CPU OpenCL platforms the kernel tests run on wherever they are installed (the test extra
#: installs both on x86-64 Linux): PoCL, the default device, and Intel's runtime, which has
#: native half arithmetic (cl_khr_fp16)
KERNEL_PLATFORMS = {"pocl": "Portable Computing Language", "intel": "Intel(R) OpenCL"}


def _installed() -> list:
    try:
        import pyopencl as cl
        names = [p.name.strip() for p in cl.get_platforms()]
    except Exception:  # no loader or no platform: the fixture then fails with the runtime's error
        return [None]
    found = [key for key, name in KERNEL_PLATFORMS.items() if name in names]
    return found or [None]


def _cannot_build(platform: str) -> str | None:
    """Why no platform named `platform` builds programs here (sdsim.cl.runtime.unusable of its
    first device), or None where one does (the one `Runtime(platform)` takes) or none is
    installed."""
    try:
        import pyopencl as cl
        plats = [p for p in cl.get_platforms() if p.name.strip() == platform]
    except Exception:
        return None
    from sdsim.cl.runtime import unusable
    whys = [unusable(p.get_devices()[0]) for p in plats]
    return None if not whys or None in whys else whys[0]


#: why PoCL builds no program on this machine (PyPI's PoCL 3.0 alone on a CPU its LLVM 14 does
#: not know, an AMD Zen 5; `.ci/run` installs Debian's PoCL 3.1 beside it), or None
POCL_BROKEN = _cannot_build(KERNEL_PLATFORMS["pocl"])
needs_pocl = pytest.mark.skipif(POCL_BROKEN is not None,
                                reason=f"PoCL builds no program here: {POCL_BROKEN}")


def _kernel_platform() -> str | None:
    """The platform the single-device kernel tests take: PoCL where it builds programs (the
    documented default CPU device), else the first of KERNEL_PLATFORMS that does, else None
    (the default device)."""
    return next((KERNEL_PLATFORMS[k] for k in _installed()
                 if k is not None and not _cannot_build(KERNEL_PLATFORMS[k])), None)


KERNEL_PLATFORM = _kernel_platform()


@pytest.fixture(scope="module", params=_installed())
def rt(request):
    """An OpenCL runtime on each CPU platform of KERNEL_PLATFORMS that is installed (the default
    device when none is)."""
    from sdsim.cl.runtime import Runtime
    if request.param is not None:
        why = _cannot_build(KERNEL_PLATFORMS[request.param])
        if why:   # PoCL on a CPU its LLVM does not know: the other platform runs the tests
            pytest.skip(f"{KERNEL_PLATFORMS[request.param]} builds no program here: {why}")
    return Runtime(KERNEL_PLATFORMS.get(request.param))


@pytest.fixture(scope="session")
def plat() -> str:
    """The --platform a CLI test passes: KERNEL_PLATFORM, else the first platform."""
    return KERNEL_PLATFORM or "0"


def _half_device():
    """(platform, device) of the first OpenCL device with cl_khr_fp16 (Intel's CPU runtime on CI),
    or None."""
    try:
        import pyopencl as cl
        platforms = cl.get_platforms()
    except Exception:
        return None
    for p in platforms:
        for d in p.get_devices():
            if "cl_khr_fp16" in d.extensions:
                return p.name.strip(), d.name.strip()
    return None


#: the device the native-half tests run on
HALF = _half_device()
needs_half = pytest.mark.skipif(HALF is None, reason="no OpenCL device with cl_khr_fp16")


@pytest.fixture(scope="module", params=["fp16", "fp16acc"])
def half_rt(request):
    """A runtime on the half-precision device, once per half arithmetic (ARITH 1 and 2)."""
    from sdsim.cl.runtime import Runtime
    return Runtime(*HALF, arith=request.param)


@pytest.fixture(scope="session")
def half_library():
    """The half device's own half exp and subnormal fma rule (sdsim.cl.half_probe): the
    simulations take them inside sdsim.sim.half.library, so they stay bit for bit with a runtime
    that differs from the default model (Intel's on an Intel Xeon host)."""
    from sdsim.cl.half_probe import probe
    from sdsim.errors import SdsimError
    try:
        return probe(*HALF)
    except SdsimError as e:   # Intel's runtime on an AMD Zen 5: no one subnormal fma rule
        pytest.skip(str(e))
