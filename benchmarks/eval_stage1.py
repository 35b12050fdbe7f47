"""Stage-1 quality: self-reenactment on held-out clips and cross-identity reenactment of unseen portraits.

    python benchmarks/eval_stage1.py --checkpoint DIR --corpus data/sample_corpus \
        --portraits data/samples/portraits/*.jpg --driving data/samples/video/lp_d11.mp4

Self-reenactment: each validation clip's first frame is the source, every frame's motion drives it;
PSNR / SSIM / L1 against the real frames. Cross-identity: each portrait is driven (relative motion) by
the driving video; identity is measured twice, as the distance of every output frame to the portrait vs.
to the driver's frame: by face-recognition embedding (dlib's ResNet, infp.eval.face_id; distance < 0.6 =
same person; needs `pip install 'infp[eval]'`) and by rigid face shape (infp.eval.face_metrics). The
mouth check is the correlation of the output's mouth opening with the driver's, both measured with the
face-mesh landmarker on the rendered frames.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from infp.constants import FPS
from infp.data.clips import ClipIndex
from infp.eval import face_id
from infp.eval.face_metrics import identity_distance
from infp.face import FaceDetector, motion_input
from infp.face.landmarks import mouth_opening
from infp.io import iter_frames
from infp.lit.head_imitation import image_metrics
from infp.models.images import to_tensor
from infp.pipelines.reenact import track_motion_inputs
from infp.runtime.portrait import load_portrait
from infp.runtime.stage1 import Stage1Runner


def self_reenactment(runner: Stage1Runner, corpus: Path, max_frames: int) -> dict:
    index = ClipIndex(corpus, "val")
    scores = {"psnr": [], "ssim": [], "l1": []}
    for e in index.entries:
        d = index.clip_dir(e.id)
        meta = json.loads((d / "meta.json").read_text())
        lm = np.load(d / "landmarks.npy").astype(np.float32) * (runner.size / meta["size"])
        frames = [f for _, f in zip(range(max_frames), iter_frames(d / "face.mp4", fps=None, size=(runner.size,) * 2))]
        ok = [t for t in range(len(frames)) if np.isfinite(lm[t]).all()]
        s = ok[0]
        with torch.inference_mode():
            src = runner.net.prepare_source(to_tensor(frames[s])[None], to_tensor(motion_input(frames[s], lm[s]))[None])
            for i in range(0, len(ok), 16):
                ts = ok[i:i + 16]
                m = runner.encode([motion_input(frames[t], lm[t]) for t in ts])
                pred = runner.frames(src, m)
                target = torch.stack([to_tensor(frames[t]) for t in ts])
                for k, v in image_metrics(pred, target).items():
                    scores[k].append((float(v), len(ts)))
    return {k: sum(v * n for v, n in vals) / sum(n for _, n in vals) for k, vals in scores.items()} | {"clips": len(index)}


def landmarks_of(frames: list[np.ndarray]) -> np.ndarray:
    out = np.full((len(frames), 478, 2), np.nan, np.float32)
    with FaceDetector(max_faces=1, video=False) as det:
        for i, f in enumerate(frames):
            faces = det.detect(f)
            if faces:
                out[i] = max(faces, key=lambda x: x.area).landmarks
    return out


def cross_identity(runner: Stage1Runner, portraits: list[Path], driving: Path, max_frames: int) -> list[dict]:

    drv_frames = [f for _, f in zip(range(max_frames), iter_frames(driving, fps=FPS))]
    # the driver's own face crops, for its landmarks and mouth
    masked = list(track_motion_inputs(iter(drv_frames), runner.size, driving))
    drv_lm = landmarks_of(drv_frames)
    drv_mouth = mouth_opening(drv_lm)
    embedder = face_id.FaceEmbedder() if face_id.available() else None
    drv_emb = {}  # frame -> embedding of the driver's face, shared by all portraits
    results = []
    for p in portraits:
        pt = load_portrait(p, runner.size)
        src = runner.source(pt)
        lat = runner.encode(masked)
        with torch.inference_mode():  # relative motion, as `infp reenact` does it
            kp = runner.net.relative_keypoints(src, lat, lat[:1].expand_as(lat))
        lat = src.motion + (lat - lat[:1])
        frames = []
        for i in range(0, len(lat), 16):
            frames += runner.render(src, lat[i:i + 16], None if kp is None else kp[i:i + 16])
        out_lm = landmarks_of(frames)
        ok = np.isfinite(out_lm).all(axis=(1, 2)) & np.isfinite(drv_lm).all(axis=(1, 2))
        to_portrait = identity_distance(out_lm[ok], pt.landmarks[None])
        to_driver = identity_distance(out_lm[ok], drv_lm[ok])
        out_mouth = mouth_opening(out_lm[ok])
        r = float(np.corrcoef(out_mouth, drv_mouth[ok])[0, 1]) if ok.sum() > 2 else float("nan")
        face = {}
        if embedder is not None:
            idx = np.flatnonzero(ok)
            for t in idx:
                if t not in drv_emb:
                    drv_emb[t] = embedder.embed(drv_frames[t], drv_lm[t])
            e_out = np.stack([embedder.embed(frames[t], out_lm[t]) for t in idx])
            e_drv = np.stack([drv_emb[t] for t in idx])
            id_p = face_id.embedding_distance(e_out, embedder.embed(pt.crop, pt.landmarks))
            id_d = face_id.embedding_distance(e_out, e_drv)
            face = {"face_id_dist_to_portrait": float(id_p.mean()), "face_id_dist_to_driver": float(id_d.mean()),
                    "face_id_same_person_as_portrait": float(np.mean(id_p < face_id.SAME_PERSON)),
                    "face_id_same_person_as_driver": float(np.mean(id_d < face_id.SAME_PERSON)),
                    "face_id_closer_to_portrait": float(np.mean(id_p < id_d))}
        results.append({
            "portrait": p.name, "frames_with_face": f"{int(ok.sum())}/{len(frames)}", **face,
            "shape_dist_to_portrait": float(np.mean(to_portrait)), "shape_dist_to_driver": float(np.mean(to_driver)),
            "closer_to_portrait": float(np.mean(to_portrait < to_driver)),
            "mouth_corr_with_driver": r,
            "mouth_open_range_out": [float(np.percentile(out_mouth, 5)), float(np.percentile(out_mouth, 95))],
            "mouth_open_range_driver": [float(np.percentile(drv_mouth[ok], 5)), float(np.percentile(drv_mouth[ok], 95))],
        })
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--corpus", default="data/sample_corpus")
    ap.add_argument("--portraits", nargs="+", type=Path, required=True)
    ap.add_argument("--driving", type=Path, required=True)
    ap.add_argument("--max-frames", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="of the renderer")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runner = Stage1Runner.from_pretrained(args.checkpoint, precision=args.precision)
    report = {"self_reenactment_val": self_reenactment(runner, Path(args.corpus), args.max_frames),
              "cross_identity": cross_identity(runner, args.portraits, args.driving, args.max_frames)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
