"""Ships the kernel sources and the bundled device profiles inside the wheel.

They live at the top of the source tree (opencl/, device_profiles/), beside the package; a
regular (non-editable) install copies them to sdsim/_data/ so an installed sdsim finds them
(sdsim/paths.py). Editable installs read the source tree directly.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: top-level folder -> the files of it the package needs at run time
DATA = {"opencl": ("*.cl",), "device_profiles": ("*.yaml", "README.md")}


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        root = Path(__file__).resolve().parent
        for folder, patterns in DATA.items():
            dest = Path(self.build_lib) / "sdsim" / "_data" / folder
            dest.mkdir(parents=True, exist_ok=True)
            for pattern in patterns:
                for f in sorted((root / folder).glob(pattern)):
                    shutil.copy2(f, dest / f.name)


setup(cmdclass={"build_py": BuildPyWithData})
