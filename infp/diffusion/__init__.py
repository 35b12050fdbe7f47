"""Diffusion in three pieces: schedule + training loss, samplers with one signature, classifier-free guidance."""

from infp.diffusion.guidance import cfg_control_denoiser, cfg_denoiser, combine_rows
from infp.diffusion.samplers import sample_ddim
from infp.diffusion.schedule import CosineSchedule

__all__ = ["CosineSchedule", "cfg_control_denoiser", "cfg_denoiser", "combine_rows", "sample_ddim"]
