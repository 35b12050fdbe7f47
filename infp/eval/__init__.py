"""Evaluation: identity (face-shape descriptor in ``face_metrics``, face-recognition embedding in
``face_id``), a mouth-opening read-out of motion latents (``mouth_probe``) and a held-out test dialogue
(``dialogue``). The mouth measure itself is ``infp.face.landmarks.mouth_opening``.
"""
