"""sdsim: a NumPy reference simulator, OpenCL kernels and a GPU cost model for Stable Diffusion.

The Python API (imported on first use, so `import sdsim` stays light): `sdsim.predict(...)`
(sdsim/api.py), `sdsim.load_profile(name)`, `sdsim.trace_pipeline(model_cfg, ...)`,
`sdsim.StableDiffusion` (the text-to-image pipeline).
"""

__version__ = "0.1.0"

_API = {"predict": "sdsim.api", "PredictResult": "sdsim.api",
        "load_profile": "sdsim.cost.profile", "trace_pipeline": "sdsim.backends.trace",
        "StableDiffusion": "sdsim.model.pipeline"}
__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'sdsim' has no attribute {name!r}")
