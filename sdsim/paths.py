"""Where sdsim finds its data: kernel sources, device profiles, reports.

In a source checkout (or an editable install) the kernel sources (opencl/) and bundled profiles
(device_profiles/) sit beside the package; a wheel carries copies in sdsim/_data/ (setup.py).
Profiles are also looked up in the folders of `$SDSIM_PROFILE_PATH` (os.pathsep-separated) and
in the user profile folder (`sdsim calibrate --out NAME` writes there), in that order, before
the bundled ones.
"""

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent       # the source checkout, when sdsim runs from one
_BUNDLED = PACKAGE / "_data"


def _data(name: str) -> Path:
    bundled = _BUNDLED / name
    return bundled if bundled.is_dir() else ROOT / name


OPENCL_DIR = _data("opencl")
PROFILES_DIR = _data("device_profiles")
#: committed reports of a source checkout; an installed sdsim writes reports to the current folder
REPORTS_DIR = ROOT / "reports" if (ROOT / "reports").is_dir() and not _BUNDLED.is_dir() \
    else Path("reports")


def shipped(path) -> bool:
    """Whether `path` lies in what sdsim ships: the package, its bundled profiles, or a source
    checkout's committed reports/."""
    p = Path(path).resolve()
    return any(p.is_relative_to(d.resolve()) for d in (PACKAGE, PROFILES_DIR, ROOT / "reports"))


def report_path(near, file: str) -> Path:
    """A report's default place (`--report` overrides it): next to the user's own file `near`
    (a profile, a stored run), else in the current folder, so that a run never writes into the
    installed package or over a source checkout's committed reports."""
    return Path(near).parent / file if near and not shipped(near) else Path(file)


def written_report_path(profile, file: str) -> Path:
    """The report's default place for a command that writes the profile `profile` (calibrate,
    tune; `--report` overrides it): a source checkout's reports/ for a profile in its
    device_profiles/, as the profile's own `report` fields name it, else next to the profile."""
    profile = Path(profile)
    if profile.resolve().parent == PROFILES_DIR.resolve() and REPORTS_DIR.is_absolute():
        return REPORTS_DIR / file
    return profile.parent / file


def user_profiles_dir() -> Path:
    """The user's own profiles (platformdirs' user data folder, e.g. ~/.local/share/sdsim)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("sdsim")) / "profiles"


def profile_dirs() -> list[Path]:
    """Folders searched for a profile by name, first match wins."""
    extra = [Path(p).expanduser() for p in os.environ.get("SDSIM_PROFILE_PATH", "").split(
        os.pathsep) if p]
    return [*extra, user_profiles_dir(), PROFILES_DIR]
