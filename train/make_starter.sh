#!/usr/bin/env bash
# Reproduce the starter weights in weights/ from the sample corpus on a CPU (about 2 hours on 2 cores).
#   bash train/make_starter.sh            (run again after an interruption: every step resumes)
# Stage 1 trains in two phases: the renderer alone (S1A_STEPS), then with the keypoint-supervised
# latent starting from those weights (S1_STEPS; it also stops after 1 h 35 min); stage 2 takes S2_STEPS;
# last, the style calibration of the new weights (about 31 renders of 15.5 s).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
INFP=${INFP:-.venv/bin/infp}
S1A_STEPS=${S1A_STEPS:-2000}
S1_STEPS=${S1_STEPS:-4000}
S2_STEPS=${S2_STEPS:-1500}

"$INFP" sample-corpus --out data/sample_corpus
"$PY" train/stage1.py experiment=stage1_cpu_base trainer.max_steps="$S1A_STEPS"
"$PY" train/stage1.py experiment=stage1_cpu_starter model.init_from=outputs/stage1/runs/cpu_base/checkpoint \
    trainer.max_steps="$S1_STEPS"
rm -rf weights/stage1 && cp -r outputs/stage1/runs/cpu_starter/checkpoint weights/stage1
"$INFP" extract-motion data/sample_corpus --checkpoint weights/stage1 --out data/sample_corpus/motion_starter
"$PY" train/stage2.py experiment=stage2_cpu_starter data.motion_dir=data/sample_corpus/motion_starter trainer.max_steps="$S2_STEPS"
rm -rf weights/stage2 && cp -r outputs/stage2/runs/cpu_starter/checkpoint weights/stage2
"$PY" train/calibrate_mouth.py --weights weights
"$PY" train/calibrate_style.py --weights weights
echo "starter weights written to weights/stage1 and weights/stage2"
