"""Inference layers: tensor-level wrappers -> pipelines with I/O, cropping and paste-back."""
