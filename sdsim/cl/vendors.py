"""Registers Intel's OpenCL CPU runtime, installed from PyPI (`intel-opencl-rt`), with the OpenCL
loader, so that it is a platform beside PoCL without the user writing ICD files.

The wheel puts `libintelocl.so` under `<prefix>/lib` and an ICD file that names a path of its
build machine, so the loader never finds it. pyopencl's loader (ocl-icd) reads the .icd files of
$OCL_ICD_VENDORS, else /etc/OpenCL/vendors, plus those pyopencl ships (PoCL, Oclgrind). Before
the first platform query, `register()` writes a vendors folder in the user cache holding the
system's .icd files and one for Intel's runtime, and points $OCL_ICD_VENDORS at it.

A user who sets $OCL_ICD_VENDORS has taken charge of the loader: sdsim then changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from importlib import metadata
from pathlib import Path

from sdsim.atomic import atomic_path
from sdsim.errors import SdsimError

#: the PyPI distribution of Intel's OpenCL CPU runtime and the library its ICD file must name
DISTRIBUTION = "intel-opencl-rt"
LIBRARY = "libintelocl.so"
SYSTEM_VENDORS = Path("/etc/OpenCL/vendors")


def intel_library() -> Path | None:
    """Absolute path of the installed `libintelocl.so`, or None when the runtime is absent."""
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == LIBRARY:
            path = Path(f.locate()).resolve()
            if path.is_file():
                return path
    return None


def vendors_folder(library: Path) -> Path:
    """The cache folder that registers `library` (one per installed runtime path)."""
    import platformdirs

    tag = hashlib.sha256(str(library).encode()).hexdigest()[:12]
    return Path(platformdirs.user_cache_dir("sdsim")) / f"opencl-vendors-{tag}"


def register() -> Path | None:
    """Point $OCL_ICD_VENDORS at a folder with the system's .icd files and Intel's runtime.
    Returns the folder, or None when the runtime is not installed, $OCL_ICD_VENDORS is already
    set, or the cache cannot be written (the loader then sees what it saw before)."""
    if os.environ.get("OCL_ICD_VENDORS"):
        return None
    library = intel_library()
    if library is None:
        return None
    folder = vendors_folder(library)
    wanted = {"intel-cpu-sdsim.icd": f"{library}\n"}
    with contextlib.suppress(OSError):
        for icd in sorted(SYSTEM_VENDORS.glob("*.icd")):
            wanted.setdefault(icd.name, icd.read_text())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.icd"):
            if stale.name not in wanted:
                stale.unlink(missing_ok=True)
        for name, text in wanted.items():
            path = folder / name
            if not path.is_file() or path.read_text() != text:
                with atomic_path(path) as tmp:   # another process may be reading it
                    tmp.write_text(text)
    except (OSError, SdsimError):
        return None
    os.environ["OCL_ICD_VENDORS"] = str(folder)
    return folder
