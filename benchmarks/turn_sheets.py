"""Contact sheets for labelling who speaks when in two-face recordings (the reference of eval_turns.py).

Input: a corpus prepared from split-screen recordings with two parties named ``left`` and ``right``
(whole recordings: ``--clip-seconds 0``). For each recording one PNG: rows of mouth crops of the left
and the right face every ``--step`` frames (0.2 s by default), 25 crops (5 s) a row, and under each
pair of rows the voice activity of the mix (``vad.npy``) as a bar per frame, with the time in seconds.
A person reads who speaks from the mouths (which one keeps changing shape) against the bars.

    python benchmarks/turn_sheets.py CORPUS --out outputs/turns/sheets
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from infp.constants import FPS
from infp.face.landmarks import INNER_LIPS, LIPS, interocular
from infp.io import iter_frames, write_image

CROP = 72  # pixels per mouth crop on the sheet (--crop)
PER_ROW = 25  # crops per row (--per-row)


def pitch(audio: np.ndarray, n_frames: int, lo: float = 70.0, hi: float = 400.0) -> np.ndarray:
    """(T,) voice pitch in Hz per frame by autocorrelation (NaN: unvoiced): a second cue for who speaks."""
    sr, hop, win = 16000, 640, 1280
    a = np.pad(audio.astype(np.float64), (win // 2, win))
    lags = np.arange(int(sr / hi), int(sr / lo) + 1)
    out = np.full(n_frames, np.nan)
    for t in range(n_frames):
        x = a[t * hop: t * hop + win]
        x = x - x.mean()
        e = float(x @ x)
        if e < 1e-6:
            continue
        r = np.array([x[:-k] @ x[k:] for k in lags]) / e
        i = int(np.argmax(r))
        if r[i] > 0.45:
            out[t] = sr / lags[i]
    return out


def mouth_crops(clip: Path, step: int) -> tuple[list[np.ndarray], np.ndarray]:
    lm = np.load(clip / "landmarks.npy").astype(np.float32)
    crops, times = [], []
    last = None
    for t, frame in enumerate(iter_frames(clip / "face.mp4")):
        if t % step:
            continue
        pts = lm[t] if t < len(lm) else np.full((1, 2), np.nan)
        if np.isfinite(pts).all():
            c = pts[LIPS + INNER_LIPS].mean(axis=0)
            half = max(0.55 * float(interocular(pts)), 8.0)
            last = (c, half)
        if last is None:
            crops.append(np.zeros((CROP, CROP, 3), np.uint8))
        else:
            (cx, cy), half = last
            x0, y0 = int(cx - half), int(cy - half * 0.8)
            x1, y1 = int(cx + half), int(cy + half * 1.2)
            h, w = frame.shape[:2]
            patch = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
            sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
            crops.append(cv2.resize(patch, (CROP, CROP), interpolation=cv2.INTER_AREA))
        times.append(t)
    return crops, np.array(times)


def sheets(rec: str, left: Path, right: Path, step: int, rows_per_page: int) -> list[np.ndarray]:
    lc, times = mouth_crops(left, step)
    rc, _ = mouth_crops(right, step)
    vad = np.load(left / "vad.npy").astype(np.float32)[:, 0]
    import soundfile as sf

    f0 = pitch(sf.read(str(left / "self.wav"), dtype="float32")[0], len(vad))
    n = min(len(lc), len(rc))
    blocks = []
    bar_h = 40
    for r0 in range(0, n, PER_ROW):
        idx = list(range(r0, min(r0 + PER_ROW, n)))
        row_l = np.zeros((CROP, PER_ROW * CROP, 3), np.uint8)
        row_r = np.zeros_like(row_l)
        strip = np.full((bar_h, PER_ROW * CROP, 3), 255, np.uint8)
        for j, i in enumerate(idx):
            row_l[:, j * CROP:(j + 1) * CROP] = lc[i]
            row_r[:, j * CROP:(j + 1) * CROP] = rc[i]
            t0 = times[i]
            for k in range(step):  # one bar per frame of the 0.2 s this crop stands for
                t = t0 + k
                if t >= len(vad):
                    break
                x = j * CROP + int(k * CROP / step)
                hbar = int(vad[t] * (bar_h - 14))
                col = (0, 150, 0) if vad[t] > 0.5 else (160, 160, 160)
                cv2.rectangle(strip, (x, bar_h - 1 - hbar), (x + CROP // step - 2, bar_h - 1), col, -1)
                if np.isfinite(f0[t]):  # pitch on a log scale, 70 Hz at the bottom, 400 Hz at the top
                    y = int((bar_h - 2) * (1 - np.log(f0[t] / 70) / np.log(400 / 70)))
                    cv2.circle(strip, (x + CROP // step // 2, y), 2, (200, 0, 0), -1)
            if t0 % FPS == 0 or j == 0:
                cv2.putText(strip, f"{t0 / FPS:.1f}s", (j * CROP + 2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
            cv2.line(row_l, (j * CROP, 0), (j * CROP, CROP - 1), (255, 255, 255), 1)
            cv2.line(row_r, (j * CROP, 0), (j * CROP, CROP - 1), (255, 255, 255), 1)
        cv2.putText(row_l, "L", (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
        cv2.putText(row_r, "R", (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1)
        blocks.append([row_l, row_r, strip, np.full((6, PER_ROW * CROP, 3), 90, np.uint8)])
    pages = []
    for p0 in range(0, len(blocks), rows_per_page):
        title = np.full((22, PER_ROW * CROP, 3), 255, np.uint8)
        cv2.putText(title, f"{rec}: mouths every {step / FPS:.1f} s, left (L) and right (R); bars: VAD of the mix, red dots: pitch 70-400 Hz (log)",
                    (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        pages.append(np.concatenate([title] + [x for b in blocks[p0:p0 + rows_per_page] for x in b], axis=0))
    return pages


def main() -> None:
    global CROP, PER_ROW
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--out", type=Path, default=Path("outputs/turns/sheets"))
    ap.add_argument("--step", type=int, default=5, help="frames between crops (5 = 0.2 s)")
    ap.add_argument("--crop", type=int, default=72, help="pixels per mouth crop")
    ap.add_argument("--per-row", type=int, default=25, help="crops per row")
    ap.add_argument("--rows-per-page", type=int, default=100, help="rows of crops per PNG")
    args = ap.parse_args()
    CROP, PER_ROW = args.crop, args.per_row
    args.out.mkdir(parents=True, exist_ok=True)
    clips = args.corpus / "clips"
    for left in sorted(clips.glob("*__left__000")):
        rec = json.loads((left / "meta.json").read_text())["recording"]
        right = clips / f"{rec}__right__000"
        if not right.is_dir():
            continue
        for i, page in enumerate(sheets(rec, left, right, args.step, args.rows_per_page)):
            print(write_image(args.out / f"{rec}_{i}.png", page))


if __name__ == "__main__":
    main()
