"""Whole jobs on files over the inference core (``infp.runtime``): ``render`` (portrait + conversation ->
mp4, ``Pipeline.from_pretrained``), ``reenact`` (portrait + driving video -> mp4, stage 1 alone) and
``style`` (the stage-2 controls of the face in a reference video)."""
