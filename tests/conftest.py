"""Shared fixtures."""

import pytest


@pytest.fixture(scope="module")
def rt():
    """An OpenCL runtime on the default device (PoCL on a fresh install; Oclgrind is skipped)."""
    from sdsim.cl.runtime import Runtime
    return Runtime()
