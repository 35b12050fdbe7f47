"""The inference core: everything between trained networks and frames on the audio clock.

``stage1.Stage1Runner`` (portrait + motion latents -> frames), ``motion.MotionStream`` (dyadic audio ->
motion latents, streaming or over a file, the same windows and noise either way), ``streaming.StreamingSession``
(the one loop of the offline renderer and the live demo), ``portrait`` (image -> face crop ready to
animate), ``overlay`` (speaking / listening states and the overlay that draws them).

It imports only the foundation (models, face, audio, io, diffusion, constants): never the training side
(``infp.data``, ``infp.lit``, ``infp.eval``) nor what is built on it (``infp.pipelines``, ``infp.demo``);
``tests/test_layers.py`` checks this.
"""
