"""Phone pseudo-labels for speech: which English phone is heard in each 40 ms video frame.

Talking-face video with its own voice is scarce; speech is not. Phone labels teach the causal audio
encoder the distinctions the lips make (an /m/ closes them, an /aa/ opens them wide) from any speech,
including the partner's channel and dubbed tracks. The labels come from pocketsphinx's allphone
decoder (the English acoustic model and phone language model inside the ``pocketsphinx`` wheel; about
20x real time on one core, offline): noisy, but free and speaker-independent. Other languages are
labelled with the nearest English phones, which is still a mouth-shape signal.

Install with ``pip install infp[train]`` (or ``pocketsphinx``) to use ``model.w_phones`` in stage 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infp.constants import SAMPLE_RATE
from infp.errors import InfpError

PHONES: tuple[str, ...] = (
    "SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
    "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)
"""The label set: silence (also noise and fillers) and the 39 phones of the CMU dictionary."""

PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}
UNKNOWN = -1
"""Label of frames without audio (before a recording starts): left out of the loss."""

MEL_PER_FRAME = 4  # the decoder's 10 ms frames per 40 ms video frame


class PhoneLabeller:
    """pocketsphinx allphone decoding: mono 16 kHz float audio -> (T,) phone ids per 40 ms frame."""

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder, get_model_path
        except ImportError as exc:
            raise InfpError("phone labels need pocketsphinx: pip install 'infp[train]' (or pocketsphinx)") from exc
        model = Path(get_model_path()) / "en-us"
        self.decoder = Decoder(hmm=str(model / "en-us"), allphone=str(model / "en-us-phone.lm.bin"), lw=2.0, pip=0.3,
                               beam=1e-20, pbeam=1e-20, samprate=SAMPLE_RATE, loglevel="FATAL")

    def __call__(self, audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if n_frames is None:
            n_frames = len(audio) // (SAMPLE_RATE // 25)
        fine = np.zeros(n_frames * MEL_PER_FRAME, dtype=np.int64)  # silence unless a phone is found
        if len(audio) and float(np.abs(audio).max()) > 1e-4:
            pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
            self.decoder.start_utt()
            self.decoder.process_raw(pcm, full_utt=True)
            self.decoder.end_utt()
            for seg in self.decoder.seg():
                label = PHONE_INDEX.get(seg.word, 0)
                fine[max(seg.start_frame, 0): seg.end_frame + 1] = label
        # each video frame takes the phone heard at its middle (10 ms frame 2 of 4)
        return fine[2::MEL_PER_FRAME][:n_frames].copy()


def phone_frames(audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
    """(T,) phone ids (indices into ``PHONES``) of mono 16 kHz audio, one per 40 ms frame."""
    return PhoneLabeller()(audio, n_frames)
