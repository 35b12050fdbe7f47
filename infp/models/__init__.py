"""Networks, one per file, each rebuilt from its config alone (``Pretrained.from_pretrained``).

Stage 1 (``head_imitation.HeadImitationNet``): ``motion_encoder``, ``keypoints``, ``appearance``, ``flow``,
``decoder``; for training only, ``discriminator`` and ``vgg`` (perceptual loss).
Stage 2 (``audio_to_motion.AudioToMotionNet``): the causal audio encoder (``infp.audio.features``),
``motion_guider`` (the Interactive Motion Guider's memory banks) and ``motion_dit`` (the diffusion
transformer). ``pretrained``: the checkpoint-folder contract (config.yaml + model.safetensors).
"""
