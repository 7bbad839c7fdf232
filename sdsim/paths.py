"""Where the data folders that sit beside the package live (kernel sources, device profiles, reports)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPENCL_DIR = ROOT / "opencl"
PROFILES_DIR = ROOT / "device_profiles"
REPORTS_DIR = ROOT / "reports"
