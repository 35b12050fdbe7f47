"""Control steering: expression and head-motion controls held to their level in the generated latents.

The stage-2 network is conditioned on the controls, but how far a conditioned output moves depends on the
training run and on the portrait (docs/RESULTS.md, "Expression and behaviour controls"). Steering closes
the gap directly in the latent space, as lip following does for the mouth:

- a linear *probe* per face measure (``infp.face.expression.MEASURES``: smile, brow, eyes, yaw, pitch,
  roll) reads the measure, relative to the face at rest, from a latent offset; an *axis* per measure is the
  latent change per unit of that measure with the others held (a multiple regression of the latents on the
  measures). Both are fitted on the training clips (``fit_measure_axes``);
- per frame, the model's own level of each measure is followed with a causal running mean, separately
  for speaking and listening frames (``ControlSteering``); a level control shifts the frame by the
  difference between its target (``control_lo`` + value x (``control_hi`` - ``control_lo``)) and that
  level, keeping the frame-to-frame motion; ``head_motion`` scales the head rotation's deviations from its
  running mean by the ratio of the target spread to the running spread (below 1, it also scales the part of the
  latent's deviation from its running mean that no probe reads, see ``UNREAD``). That spread is measured as the
  control's level is (``infp.face.expression.level``: within spans of ``LEVEL_SPAN`` frames of one kind),
  around a running mean of each kind (``NEAR_FRAMES``), and it starts from the output's own first frames (a
  corpus-typical spread weighs one frame). The latent moves along a
  combination of the axes that changes the steered measures by exactly that and leaves the other probed
  measures, and the mouth probe's reading, as they were.

Everything is causal and per frame, so a stream fed in chunks gives the offline result.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from infp.face.expression import CONTROL_NAMES, MEASURES

ROTATION = tuple(MEASURES.index(n) for n in ("yaw", "pitch", "roll"))
LEVEL_FRAMES = 50
"""Time constant (frames, 2 s) of the running level of each measure, per kind."""
MEAN_FRAMES = 400
"""Time constant (16 s) of the head rotation's running mean, around which head_motion scales the motion: slow
enough that turns held for a few seconds scale too (with 4 s, head_motion = 0 left lp_s1's head moving at
two thirds of its uncontrolled spread; docs/RESULTS.md, "Head motion by steering alone"). Until there are
that many frames it is their plain average, so an offset the network settles on in its first seconds is
part of the mean rather than a deviation to scale."""
SPREAD_FRAMES = 100
"""Time constant (4 s, a control level's span) of the running spread of the head rotation, per kind."""
NEAR_FRAMES = 25
"""Time constant (1 s) of each kind's running mean of the head rotation that the running spread is measured
around: the deviations from it read about as large as those from the mean of a centred 4 s span (on lp_s1's
output 1.1-1.2x; around the 2 s running level they read 1.6-1.75x and the gain fell short by as much)."""
PRIOR_FRAMES = 1
"""Weight, in frames of its kind, of the corpus-typical spread the running spread starts from, so that within
a few seconds the spread is the output's own. Started at the typical value with the full time constant, it
had not settled within a 15 s dialogue and head_motion = 1 asked a median gain of 1.6 on lp_s1 where 4 was
allowed; the squared typical spread is 10-20 times a steady head's, so even 10 frames of it held the gain back
for seconds."""
GAIN_RANGE = (0.25, 4.0)
"""Bounds of the head-motion gain."""
UNREAD = True
"""A head-motion gain below 1 also scales the part of the latent's deviation from its running mean that none of the
probes reads (every probed measure and the held read-out keep their readings): the renderer turns the head along
directions the rotation probes miss. On lp_s5's uncontrolled output the probed yaw and the rendered (face-mesh) yaw
correlate at r = 0.16, and with the probed rotation scaled to 0.25 the rendered listening head motion stayed at
0.0143 against 0.0222; the unread part scaled too brought it to 0.0107 with the smile unchanged (docs/RESULTS.md,
"Calming the motion no probe reads"). Above 1 that part is left as it is: it is not known to be head motion."""
SPEECH_HANGOVER = 8
"""Frames (320 ms) a frame still counts as speaking after the own channel's last loud frame."""


def fit_measure_axes(tracks: Iterable[tuple[np.ndarray, np.ndarray]], ridge: float = 1e-2
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Probes and axes of the face measures in a latent, from ((T, D) latent offsets, (T, 6) measures
    relative to the clip's rest, NaN where unknown) pairs.

    Returns ``probe`` (6, D + 1): ridge read-outs of each measure (weights, then bias); ``axis`` (6, D): the
    latent change per unit of each measure, the others held (multiple regression of the latent on the
    measures); and {"frames", "<measure>_r"}: r of each probe on the data it was fitted on.
    """
    xs, ms = [], []
    for x, m in tracks:
        x, m = np.asarray(x, np.float64), np.asarray(m, np.float64)
        n = min(len(x), len(m))
        ok = np.isfinite(m[:n]).all(axis=1)
        if ok.any():
            xs.append(x[:n][ok])
            ms.append(m[:n][ok])
    if not xs or sum(len(m) for m in ms) < 50:
        raise ValueError("the measure axes need at least 50 frames with latents and face measures")
    x, m = np.concatenate(xs), np.concatenate(ms)
    n = len(m)
    xm, mm = x.mean(axis=0), m.mean(axis=0)
    xc, mc = x - xm, m - mm
    w = np.linalg.solve(xc.T @ xc + ridge * n * np.eye(x.shape[1]), xc.T @ mc)  # (D, 6)
    probe = np.concatenate([w.T, (mm - xm @ w)[:, None]], axis=1)
    cov = mc.T @ mc
    axis = np.linalg.solve(cov + 1e-6 * np.trace(cov) / len(cov) * np.eye(len(cov)), mc.T @ xc)  # (6, D)
    return probe, axis, {"frames": float(n), **probe_r(probe, [(x, m)])}


def probe_r(probe: np.ndarray, tracks: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """{"<measure>_r"}: r of each probe's reading against the measure over all frames of the ((T, D) latent
    offsets, (T, 6) measures) pairs where the measures are known (NaN without any)."""
    pairs = [(np.asarray(x, np.float64) @ probe[:, :-1].T + probe[:, -1], np.asarray(m, np.float64)) for x, m in tracks]
    out = {f"{name}_r": float("nan") for name in MEASURES}
    if not pairs:
        return out
    p, m = (np.concatenate(v) for v in zip(*pairs))
    ok = np.isfinite(m).all(axis=1)
    for j, name in enumerate(MEASURES):
        if ok.sum() > 1 and m[ok, j].std() > 0:
            out[f"{name}_r"] = float(np.corrcoef(p[ok, j], m[ok, j])[0, 1])
    return out


class ControlSteering:
    """Per-frame steering state of one conversation (``MotionStream`` holds one).

    ``probe`` (6, D + 1) and ``axis`` (6, D) as ``fit_measure_axes`` gives them; ``lo`` / ``hi`` (K,) the raw
    levels that control values 0 and 1 stand for (the weights' ``control_lo`` / ``control_hi``);
    ``hold_probe`` (D + 1) and ``hold_axis`` (D), optional: one more read-out that steering leaves as it is
    (``MotionStream`` passes the mouth's, so that the lip reader alone sets the mouth).
    """

    def __init__(self, probe: torch.Tensor, axis: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                 hold_probe: torch.Tensor | None = None, hold_axis: torch.Tensor | None = None) -> None:
        self.w = probe[:, :-1].double().cpu().numpy()
        self.b = probe[:, -1].double().cpu().numpy()
        a = axis.double().cpu().numpy()
        w = self.w
        if hold_probe is not None:  # one more read-out (the mouth's) that steering must leave as it is
            w = np.concatenate([w, hold_probe[:-1].double().cpu().numpy()[None]])
            a = np.concatenate([a, hold_axis.double().cpu().numpy()[None]])
        # latent change that moves the probed measures by delta (6,) and the held one by 0: axis^T (W axis^T)^-1 delta
        move = a.T @ np.linalg.inv(w @ a.T)
        self.move = move[:, : len(self.w)]  # (D, 6)
        # the part of a latent change that no read-out (probes, held one) sees: I - move W
        self.unread = np.eye(len(a.T)) - move @ w  # (D, D)
        self.lo = lo.double().cpu().numpy()
        self.hi = hi.double().cpu().numpy()
        self.reset()

    def reset(self) -> None:
        self.level: np.ndarray | None = None  # (2, 6) running level per kind (speak, listen)
        self.mean_x: np.ndarray | None = None  # (D,) running latent: its probe reading is the running head rotation
        self.frames = 0  # frames followed
        mid = float(np.mean([self.lo[CONTROL_NAMES.index("head_motion")], self.hi[CONTROL_NAMES.index("head_motion")]]))
        self.var = np.full(2, mid * mid)  # running squared spread of the rotation per kind, from a typical one
        self.near: np.ndarray | None = None  # (2, 3) fast running head rotation per kind
        self.seen = np.zeros(2)  # frames of each kind followed so far (membership-weighted)
        self.peak = 0.0  # slowly decaying loudest frame of the own channel
        self.since_speech = SPEECH_HANGOVER + 1
        self.speaking = 0.0

    def speech_weight(self, rms: float) -> float:
        """Update with the own channel's RMS of the next frame; the frame's speaking weight (0..1): loud
        against the channel's recent peak, held ``SPEECH_HANGOVER`` frames, smoothed."""
        self.peak = max(rms, self.peak * 0.998)
        loud = rms > max(3e-3, 0.1 * self.peak)
        self.since_speech = 0 if loud else self.since_speech + 1
        self.speaking += 0.3 * (float(self.since_speech <= SPEECH_HANGOVER) - self.speaking)
        return self.speaking

    def apply(self, x: np.ndarray, rms: np.ndarray, controls: np.ndarray | None, strength: float = 1.0) -> np.ndarray:
        """Steer offsets ``x`` (k, D) of the next k frames, given the own channel's RMS (k,) of each and the
        control values (2, K) (NaN = absent; None: none, the state is only followed). Returns (k, D)."""
        x = np.array(x, dtype=np.float64)
        targets = None if controls is None else self.lo + np.asarray(controls, np.float64) * (self.hi - self.lo)
        for i in range(len(x)):
            speak = self.speech_weight(float(rms[i]))
            member = np.array([speak, 1.0 - speak])
            p = self.w @ x[i] + self.b
            rot = p[list(ROTATION)]
            if self.level is None:
                self.level, self.near, self.mean_x = np.stack([p, p]), np.stack([rot, rot]), x[i].copy()
            self.level += (member[:, None] / LEVEL_FRAMES) * (p - self.level)
            self.frames += 1
            self.mean_x += (x[i] - self.mean_x) / min(self.frames, MEAN_FRAMES)
            dev = rot - (self.w[list(ROTATION)] @ self.mean_x + self.b[list(ROTATION)])
            # spread of each kind around its own fast running mean, as a control level measures it within a
            # span; running averages over the frames seen so far until there are enough of them
            self.seen += member
            self.near += (member / np.maximum(np.minimum(self.seen, NEAR_FRAMES), 1.0))[:, None] * (rot - self.near)
            near = rot[None] - self.near
            rate = member / np.minimum(self.seen + PRIOR_FRAMES, SPREAD_FRAMES)
            self.var += rate * (np.mean(near * near, axis=1) - self.var)
            if targets is None or strength <= 0 or not np.isfinite(targets).any():
                continue
            delta = np.zeros((2, len(p)))
            calm = np.zeros(2)  # per kind: how far the unread deviation is scaled down (gain - 1 below 1)
            for k in range(2):
                for c, name in enumerate(CONTROL_NAMES):
                    if not np.isfinite(targets[k, c]):
                        if name != "head_motion":  # a level the user left free stays within the corpus's range
                            j = MEASURES.index(name)
                            delta[k, j] += np.clip(self.level[k, j], self.lo[c], self.hi[c]) - self.level[k, j]
                        continue
                    if name == "head_motion":
                        gain = np.clip(targets[k, c] / max(np.sqrt(self.var[k]), 1e-6), *GAIN_RANGE)
                        delta[k, list(ROTATION)] += (gain - 1.0) * dev
                        calm[k] = min(gain - 1.0, 0.0) if UNREAD else 0.0
                    else:
                        j = MEASURES.index(name)
                        delta[k, j] += targets[k, c] - self.level[k, j]
            change = self.move @ (member @ delta)
            if calm.any():
                change += (member @ calm) * (self.unread @ (x[i] - self.mean_x))
            x[i] += strength * change
        return x
