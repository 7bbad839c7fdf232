"""A regular (non-editable) install works away from the source tree: the wheel carries the kernel
sources, bundled profiles and JSON Schemas, and predict, devices and bench find them."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what a wheel is built from (a copy, so the build leaves nothing in the checkout)
SOURCES = ("sdsim", "opencl", "device_profiles", "pyproject.toml", "setup.py", "MANIFEST.in",
           "README.md")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel unpacked into a folder of its own (the test's interpreter provides the
    dependencies), and the wheel's file list."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(p, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp / "dist"), str(src)], check=True)
    wheel = next((tmp / "dist").glob("sdsim-*.whl"))
    site = tmp / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
        names = z.namelist()
    return site, names


def _sdsim(site, *args, cwd):
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run([sys.executable, "-m", "sdsim", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_wheel_carries_kernels_and_profiles(installed):
    _, names = installed
    cl = {Path(n).name for n in names if n.startswith("sdsim/_data/opencl/")}
    profiles = {Path(n).stem for n in names if n.startswith("sdsim/_data/device_profiles/")}
    assert cl == {p.name for p in (ROOT / "opencl").glob("*.cl")}
    assert {p.stem for p in (ROOT / "device_profiles").glob("*.yaml")} <= profiles
    schemas = {Path(n).name for n in names if n.startswith("sdsim/schemas/")}
    assert {p.name for p in (ROOT / "sdsim" / "schemas").glob("*.schema.json")} <= schemas


def test_installed_sdsim_runs_from_another_folder(installed, tmp_path):
    site, _ = installed
    probe = subprocess.run([sys.executable, "-c", "import sdsim.paths as p; print(p.OPENCL_DIR)"],
                           cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(site)),
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == str(site / "sdsim" / "_data" / "opencl")   # not the checkout
    r = _sdsim(site, "devices", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "s23ultra" in {d["name"] for d in json.loads(r.stdout)["devices"]}
    r = _sdsim(site, "predict", "--device", "s23ultra", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total_s"] > 1
    check = ("import json, sys, sdsim.schemas as s; s.validate('predict', json.load(sys.stdin)); "
             "print(s.path('predict'))")   # the installed package's schema, not the checkout's
    probe = subprocess.run([sys.executable, "-c", check], input=r.stdout, cwd=tmp_path,
                           env=dict(os.environ, PYTHONPATH=str(site)), capture_output=True,
                           text=True)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(site / "sdsim" / "schemas" / "predict.schema.json")
    r = _sdsim(site, "bench", "--quick", "--family", "gelu", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert rows and all(row["ok"] for row in rows)
