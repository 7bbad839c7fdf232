"""Stable Diffusion written once against the op vocabulary of sdsim/ops.py.

Components follow diffusers' layout and parameter names, so checkpoints map one-to-one:
CLIPTextModel (clip.py), UNet2DConditionModel (unet.py), AutoencoderKL (vae.py).
"""
