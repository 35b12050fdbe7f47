"""Reusable network blocks: convolutions, modulation, warping, attention."""
