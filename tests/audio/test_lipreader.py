"""The causal lip reader: causality, a closed-form fit that recovers what it should, and real own-voice speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infp.audio.lipreader import LipReader, fit_lip_reader, reader_r
from infp.constants import SAMPLE_RATE, SAMPLES_PER_FRAME
from infp.eval.lipsync import best_lag_r, loudness_envelope, video_mouth_track
from infp.io import read_audio, to_mono


def _speech(samples, name: str, seconds: float) -> np.ndarray:
    return to_mono(read_audio(samples / "audio" / name))[: int(seconds * SAMPLE_RATE)]


def _band_energy(audio: np.ndarray) -> np.ndarray:
    """A target that a linear read-out of the log-mel can reach: each frame's log energy, standardised."""
    t = len(audio) // SAMPLES_PER_FRAME
    e = np.log(np.mean(audio[: t * SAMPLES_PER_FRAME].reshape(t, -1) ** 2, axis=1) + 1e-6)
    return (e - e.mean()) / e.std()


def _read_before_and_after_a_change(reader: LipReader):
    """(audio, read-out, read-out of the same audio with frames 12 .. 19 replaced) of a random read-out."""
    torch.manual_seed(0)
    reader.weight.normal_()
    audio = torch.randn(1, 20 * SAMPLES_PER_FRAME) * 0.1
    out = reader(audio)
    assert out.shape == (1, 20, 1)
    changed = audio.clone()
    changed[:, 12 * SAMPLES_PER_FRAME:] = torch.randn(1, 8 * SAMPLES_PER_FRAME)
    return audio, out, reader(changed)


def test_the_read_out_of_frame_t_does_not_depend_on_later_audio():
    reader = LipReader(past=3)
    audio, out, out2 = _read_before_and_after_a_change(reader)
    torch.testing.assert_close(out2[:, :12], out[:, :12])
    assert not torch.allclose(out2[:, 12], out[:, 12])
    # and it reads only `past` frames back: audio more than 3 frames before frame 12 does not matter
    earlier = audio.clone()
    earlier[:, : 8 * SAMPLES_PER_FRAME] = torch.randn(1, 8 * SAMPLES_PER_FRAME)
    torch.testing.assert_close(reader(earlier)[:, 12:], out[:, 12:])


def test_a_streamed_chunk_reads_the_same_values_as_the_whole_recording(samples):
    audio = _speech(samples, "hallo_3.flac", 4.0)
    reader = LipReader()
    fit_lip_reader(reader, [(audio, _band_energy(audio))], min_frames=50)
    whole = reader(torch.from_numpy(audio[None]))[0, :, 0]
    start, c = 40, reader.context_frames  # a chunk with the reader's context before frame 40
    chunk = torch.from_numpy(audio[None, (start - c) * SAMPLES_PER_FRAME:])
    torch.testing.assert_close(reader(chunk)[0, c:, 0], whole[start:], atol=1e-4, rtol=1e-4)


def test_fit_recovers_a_relation_that_holds_for_another_voice(samples):
    train = _speech(samples, "hallo_3.flac", 8.0)
    other = _speech(samples, "joyvasa_001.flac", 8.0)
    reader = LipReader()
    stats = fit_lip_reader(reader, [(train, _band_energy(train))], ridge=0.01)
    assert reader.is_fitted and stats["clips"] == 1 and stats["train_r"] > 0.9
    assert reader_r(reader, [(other, _band_energy(other))]) > 0.8
    with pytest.raises(ValueError, match="own-voice speech"):
        fit_lip_reader(LipReader(), [(train[:SAMPLES_PER_FRAME * 20], np.zeros(20))])


def test_a_reader_fitted_on_one_speaker_follows_another_speakers_real_mouth(samples):
    """lp_d10 and lp_d11 speak their own voice: fitted on one, the read-out of the other's speech follows
    that face's real mouth better than its loudness does."""
    tracks = {}
    for name in ("lp_d10", "lp_d11"):
        path = samples / "video" / f"{name}.mp4"
        mouth = video_mouth_track(path, 10.0)
        speech = to_mono(read_audio(path))[: len(mouth) * SAMPLES_PER_FRAME]
        tracks[name] = (speech, (mouth - np.nanmean(mouth)) / np.nanstd(mouth))
    reader = LipReader()
    fit_lip_reader(reader, [tracks["lp_d10"]])
    speech, mouth = tracks["lp_d11"]
    read = reader(torch.from_numpy(speech[None].astype(np.float32)))[0, :, 0].numpy()
    r, _ = best_lag_r(read, mouth)
    floor, _ = best_lag_r(loudness_envelope(speech, len(mouth)), mouth)
    assert r > floor + 0.05, (r, floor)


def _vowel(formants_hz, seconds: float = 1.0, pitch_hz: float = 120.0) -> np.ndarray:
    """A synthetic vowel: a glottal pulse train through second-order resonators at the given formants."""
    from scipy.signal import lfilter

    n = int(seconds * SAMPLE_RATE)
    x = np.zeros(n)
    x[:: int(SAMPLE_RATE / pitch_hz)] = 1.0
    for f, bw in zip(formants_hz, (80.0, 90.0, 120.0)):
        r, th = np.exp(-np.pi * bw / SAMPLE_RATE), 2 * np.pi * f / SAMPLE_RATE
        x = lfilter([1.0], [1.0, -2 * r * np.cos(th), r * r], x)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_formant_tracks_find_the_formants_of_a_vowel_and_tell_open_from_closed():
    from infp.audio.lipreader import FORMANT_DEFAULT, formant_tracks

    open_a = formant_tracks(torch.from_numpy(_vowel((750, 1200, 2600)))[None])[0, 10:]  # steady part
    closed_i = formant_tracks(torch.from_numpy(_vowel((280, 2250, 2900)))[None])[0, 10:]
    assert open_a.shape[-1] == 4
    for tracks, want in ((open_a, (750, 1200, 2600)), (closed_i, (280, 2250, 2900))):
        got = tracks[:, :3].median(dim=0).values.numpy() * 1000
        np.testing.assert_allclose(got, want, rtol=0.25)  # pre-emphasis lifts a low F1 a little
    assert open_a[:, 0].median() > 2 * closed_i[:, 0].median()  # F1 rises as the jaw opens
    silence = formant_tracks(torch.zeros(1, 6400))[0]
    np.testing.assert_allclose(silence[:, :3].numpy(), np.tile(FORMANT_DEFAULT, (40, 1)), rtol=1e-6)
    assert torch.all(silence[:, 3] == 0)


def test_a_reader_that_hears_ahead_reads_exactly_that_far_and_no_further():
    _, out, out2 = _read_before_and_after_a_change(LipReader(past=3, ahead=2, formants=True))
    torch.testing.assert_close(out2[:, :10], out[:, :10])  # frame 9 reads up to frame 11
    assert not torch.allclose(out2[:, 10], out[:, 10])  # frame 10 reads frame 12
