"""Noise schedules and diffusion coefficients, shared by trainers and samplers.

``gaussian``: DDPM/DDIM (Ho et al. 2020; Song et al. 2021); ``ddgan``: the few-step schedule of
Denoising Diffusion GANs (Xiao et al. 2022).
"""
