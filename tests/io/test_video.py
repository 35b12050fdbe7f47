import numpy as np
import pytest

from infp.constants import FPS, SAMPLE_RATE
from infp.errors import MediaError
from infp.io import (
    VideoWriter,
    count_frames,
    iter_frames,
    probe,
    read_audio,
    read_frames,
    read_image,
    video_info,
    write_image,
    write_video,
)


def test_probe_real_video(samples):
    info = probe(samples / "video" / "lp_d10.mp4")
    assert (info.width, info.height) == (512, 512)
    assert info.fps == pytest.approx(25)
    assert info.has_audio and 14.5 < info.duration < 15.5


def test_iter_frames_counts_and_resamples(shared_media):
    path = shared_media / "video" / "liveportrait_d10.mp4"  # 30 fps source
    info = video_info(path)
    n = sum(1 for _ in iter_frames(path, fps=FPS))
    assert abs(n - count_frames(info)) <= 2
    native = sum(1 for _ in iter_frames(path, fps=None))
    assert abs(native - info.duration * 30) <= 2


def test_iter_frames_rgb_and_sized(samples):
    frames = iter_frames(samples / "video" / "lp_s29.mp4", size=(128, 96))
    first = next(frames)
    assert first.shape == (96, 128, 3) and first.dtype == np.uint8
    assert first.std() > 10  # real image content
    frames.close()  # stopping early must not hang


def test_display_aspect_of_non_square_pixels(shared_media):
    info = video_info(shared_media / "video" / "liveportrait_d9.mp4")  # 512x480 with SAR 15:16
    assert (info.width, info.height) == (480, 480)
    frame = next(iter_frames(shared_media / "video" / "liveportrait_d9.mp4"))
    assert frame.shape == (480, 480, 3)


def test_truncated_and_corrupt_video(tmp_path, samples):
    data = (samples / "video" / "lp_d10.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError) as e:
        list(iter_frames(cut))
    assert str(cut) in str(e.value)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 255, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError) as e:
        list(iter_frames(junk))
    assert str(junk) in str(e.value)
    with pytest.raises(MediaError, match="has no video stream"):
        video_info(samples / "audio" / "ditto.flac")


def test_write_video_roundtrip_with_audio(tmp_path, samples):
    frames = read_frames(samples / "video" / "lp_d11.mp4", size=(256, 256))[:50]
    speech = read_audio(samples / "audio" / "ditto.flac")[0]
    out = write_video(tmp_path / "out.mp4", iter(frames), audio=speech)
    info = probe(out)
    assert (info.width, info.height, info.fps) == (256, 256, 25)
    assert info.has_audio
    back = read_frames(out)
    assert len(back) == 50
    mse = np.mean((back.astype(np.float32) - frames.astype(np.float32)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 30  # PSNR of the H.264 round trip
    audio = read_audio(out)
    assert abs(audio.shape[1] - 50 / FPS * SAMPLE_RATE) < 0.05 * SAMPLE_RATE  # trimmed to the video
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary files left


def test_failed_write_leaves_no_file(tmp_path, samples):
    frame = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "bad.mp4") as w:
            for _ in range(5):
                w.write(frame)
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="differs"):
        with VideoWriter(tmp_path / "bad2.mp4") as w:
            w.write(frame)
            w.write(np.zeros((32, 32, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_read_image_and_bad_images(tmp_path, samples):
    img = read_image(samples / "portraits" / "lp_s1.jpg")
    assert img.ndim == 3 and img.shape[2] == 3 and max(img.shape[:2]) == 512
    write_image(tmp_path / "copy.png", img)
    assert np.array_equal(read_image(tmp_path / "copy.png"), img)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all" * 10)
    with pytest.raises(MediaError, match="cannot read image") as e:
        read_image(bad)
    assert str(bad) in str(e.value)
    with pytest.raises(MediaError, match="limit"):
        read_image(samples / "portraits" / "lp_s1.jpg", max_pixels=100_000)
    with pytest.raises(MediaError, match="not found"):
        read_image(tmp_path / "missing.png")


def test_image_size_from_headers_of_real_encodings(tmp_path, samples):
    import cv2

    from infp.io.video import image_size

    img = read_image(samples / "portraits" / "hallo_1.jpg")[:, :-3]  # odd width: catches swapped axes
    h, w = img.shape[:2]
    assert image_size((samples / "portraits" / "hallo_1.jpg").read_bytes()) == (w + 3, h)
    for ext in (".png", ".jpg", ".webp", ".bmp"):
        write_image(tmp_path / f"p{ext}", img)
        assert image_size((tmp_path / f"p{ext}").read_bytes()) == (w, h), ext
    ok, lossless = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])  # VP8L
    assert ok and image_size(lossless.tobytes()) == (w, h)
    assert image_size(b"GIF89a\x40\x01\xf0\x00rest") == (320, 240)
    assert image_size(b"not an image") is None


def _bilevel_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG: huge in pixels (a decoder allocates w*h*3 bytes) but tiny on disk."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x55" * ((width + 7) // 8)
    body = zlib.compress(row * height, 1)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_huge_image_is_refused_before_decoding(tmp_path, monkeypatch):
    import time

    import cv2

    import infp.io.video as video

    big = tmp_path / "big.png"
    big.write_bytes(_bilevel_png(12000, 12000))
    small = tmp_path / "small.png"
    small.write_bytes(_bilevel_png(64, 48))
    assert cv2.imdecode(np.fromfile(str(small), np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)  # a real PNG
    decodes = []
    real = cv2.imdecode
    monkeypatch.setattr(video.cv2, "imdecode", lambda *a: decodes.append(a) or real(*a))
    t0 = time.perf_counter()
    with pytest.raises(MediaError, match="image is 12000x12000 pixels; the limit is 67 megapixels") as e:
        read_image(big)
    assert time.perf_counter() - t0 < 1.0 and decodes == []
    assert str(big) in str(e.value)
    assert read_image(small).shape == (48, 64, 3) and len(decodes) == 1
