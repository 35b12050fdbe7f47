"""Audio analysis: voice activity (silero VAD) per channel; features live beside it."""

from infp.audio.vad import StreamingVAD, frame_speech_prob, load_vad_model, speech_segments

__all__ = ["StreamingVAD", "frame_speech_prob", "load_vad_model", "speech_segments"]
