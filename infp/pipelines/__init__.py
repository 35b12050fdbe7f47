"""Whole jobs on files over the inference core (``infp.runtime``): ``render`` (portrait + conversation ->
mp4, ``Pipeline.from_pretrained``) and ``reenact`` (portrait + driving video -> mp4, stage 1 alone)."""
