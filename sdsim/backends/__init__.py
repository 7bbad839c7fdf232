"""Backends run the model's ops: numpy (reference numbers), trace (shapes → op graph), opencl (device)."""
