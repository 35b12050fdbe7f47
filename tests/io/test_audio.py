import numpy as np
import pytest
import soundfile as sf

from infp.constants import SAMPLE_RATE
from infp.errors import MediaError
from infp.io import is_silent, read_audio, read_dialogue, resample, rms, write_wav


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


def test_read_real_flac_is_16k_mono(samples):
    path = samples / "audio" / "joyvasa_001.flac"
    audio = read_audio(path)
    info = sf.info(str(path))
    assert audio.dtype == np.float32 and audio.shape[0] == 1
    assert abs(audio.shape[1] / SAMPLE_RATE - info.duration) < 0.01
    assert rms(audio) > 0.01  # real speech, not silence


def test_read_audio_track_of_a_video_through_ffmpeg(samples):
    audio = read_audio(samples / "video" / "lp_d10.mp4")
    assert audio.shape[0] == 1
    assert 14.5 < audio.shape[1] / SAMPLE_RATE < 15.5
    assert not is_silent(audio)


def test_resample_keeps_pitch(tmp_path):
    sr = 44_100
    t = np.arange(sr) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 1000 * t)]).astype(np.float32)
    sf.write(str(tmp_path / "two.wav"), stereo.T, sr)
    out = read_audio(tmp_path / "two.wav")
    assert out.shape == (2, SAMPLE_RATE)
    assert abs(_peak_hz(out[0], SAMPLE_RATE) - 440) < 2
    assert abs(_peak_hz(out[1], SAMPLE_RATE) - 1000) < 2
    one = read_audio(tmp_path / "two.wav", channels=1)
    assert one.shape == (1, SAMPLE_RATE) and np.allclose(one[0], out[1], atol=1e-5)
    assert resample(out, SAMPLE_RATE, SAMPLE_RATE) is not None


def test_stereo_dialogue_split_and_swap(tmp_path, samples):
    speech = read_audio(samples / "audio" / "ditto.flac")[0][: 3 * SAMPLE_RATE]
    tone = 0.1 * np.sin(2 * np.pi * 300 * np.arange(len(speech)) / SAMPLE_RATE).astype(np.float32)
    write_wav(tmp_path / "dlg.wav", np.stack([speech, tone]))
    own, other = read_dialogue(tmp_path / "dlg.wav")
    assert np.allclose(own, speech, atol=1e-4) and np.allclose(other, tone, atol=1e-4)
    own2, other2 = read_dialogue(tmp_path / "dlg.wav", self_channel=1)
    assert np.allclose(own2, tone, atol=1e-4) and np.allclose(other2, speech, atol=1e-4)


def test_separate_files_with_mismatched_rates_are_aligned(tmp_path, samples):
    speech = read_audio(samples / "audio" / "hallo_3.flac")[0][: 2 * SAMPLE_RATE]
    sf.write(str(tmp_path / "a.wav"), resample(speech, SAMPLE_RATE, 44_100), 44_100)
    sf.write(str(tmp_path / "b.wav"), resample(speech[: SAMPLE_RATE], SAMPLE_RATE, 22_050), 22_050)
    own, other = read_dialogue(self_audio=tmp_path / "a.wav", other_audio=tmp_path / "b.wav")
    assert len(own) == len(other) == pytest.approx(2 * SAMPLE_RATE, abs=2)
    assert is_silent(other[SAMPLE_RATE + 100:]) and not is_silent(other[:SAMPLE_RATE])
    solo, silent = read_dialogue(self_audio=tmp_path / "a.wav")
    assert is_silent(silent) and len(silent) == len(solo)


def test_mono_file_as_dialogue_points_to_self(samples):
    path = samples / "audio" / "ditto.flac"
    with pytest.raises(MediaError) as e:
        read_dialogue(path)
    assert str(path) in str(e.value) and "--self" in str(e.value) and "1 channel" in str(e.value)


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00garbage" * 10, bytes(range(256)) * 40])
def test_unreadable_audio_names_the_file(tmp_path, content):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(MediaError) as e:
        read_audio(path)
    assert str(path) in str(e.value)


def test_zero_length_audio(tmp_path):
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(MediaError, match="empty"):
        read_audio(tmp_path / "empty.wav")


def test_missing_channel_is_a_clear_error(samples):
    with pytest.raises(MediaError, match="channel 1"):
        read_audio(samples / "audio" / "ditto.flac", channels=1)


def test_write_wav_failure_leaves_nothing(tmp_path, monkeypatch):
    import infp.io.audio as mod

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(mod.sf, "write", boom)
    with pytest.raises(OSError):
        write_wav(tmp_path / "out.wav", np.zeros(100, np.float32))
    assert list(tmp_path.iterdir()) == []


def _speech_wav(path, seconds: float = 1.0, samples_root=None):
    """A real 16-bit mono speech WAV of ``seconds`` (32 KB of samples per second)."""
    speech = read_audio(samples_root / "audio" / "ditto.flac")[0][: int(seconds * SAMPLE_RATE)]
    write_wav(path, speech)
    return path


def test_truncated_wav_is_refused_with_both_lengths(tmp_path, samples):
    full = _speech_wav(tmp_path / "full.wav", 1.0, samples)
    data = full.read_bytes()
    assert len(data) == 44 + 2 * SAMPLE_RATE  # 32 KB of samples behind the header
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:3000])  # libsndfile alone reads this as a valid 0.09 s file
    assert sf.info(str(cut)).frames < SAMPLE_RATE
    with pytest.raises(MediaError) as e:
        read_audio(cut)
    assert str(e.value) == f"{cut}: truncated: header says 1.00 s, file holds 0.09 s"
    assert read_audio(full).shape == (1, SAMPLE_RATE)  # the complete file still reads


def test_truncated_flac_is_refused(tmp_path, samples):
    data = (samples / "audio" / "dialogue.flac").read_bytes()
    third = tmp_path / "third.flac"
    third.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match=r"truncated: header says 15\.50 s, file holds [0-9.]+ s") as e:
        read_audio(third)
    assert str(third) in str(e.value)
    own = read_audio(samples / "audio" / "ditto.flac")[0][:SAMPLE_RATE]
    sf.write(str(tmp_path / "one.flac"), own, SAMPLE_RATE)
    tiny = (tmp_path / "one.flac").read_bytes()
    (tmp_path / "stub.flac").write_bytes(tiny[: len(tiny) // 10])  # too little for any decoder
    with pytest.raises(MediaError, match="truncated or corrupt: header says 1.00 s"):
        read_audio(tmp_path / "stub.flac")


def test_wav_of_unknown_length_is_not_called_truncated(tmp_path, samples):
    """Writers to a pipe leave the data size at 0xFFFFFFFF; such files are complete, not cut."""
    data = bytearray(_speech_wav(tmp_path / "a.wav", 0.5, samples).read_bytes())
    assert data[36:40] == b"data"
    data[40:44] = b"\xff\xff\xff\xff"
    (tmp_path / "piped.wav").write_bytes(bytes(data))
    assert read_audio(tmp_path / "piped.wav").shape == (1, SAMPLE_RATE // 2)
