#!/usr/bin/env bash
# Reproduce the starter weights in weights/ from the sample corpus on a CPU (about 2 hours on 2 cores).
#   bash train/make_starter.sh            (run again after an interruption: every step resumes)
# Stage-1 steps can be changed with S1_STEPS, stage-2 steps with S2_STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
INFP=${INFP:-.venv/bin/infp}
S1_STEPS=${S1_STEPS:-2000}
S2_STEPS=${S2_STEPS:-2000}

"$INFP" sample-corpus --out data/sample_corpus
"$PY" train/stage1.py experiment=stage1_cpu_starter trainer.max_steps="$S1_STEPS"
rm -rf weights/stage1 && cp -r outputs/stage1/runs/cpu_starter/checkpoint weights/stage1
"$INFP" extract-motion data/sample_corpus --checkpoint weights/stage1 --out data/sample_corpus/motion_starter
"$PY" train/stage2.py experiment=stage2_cpu_starter data.motion_dir=data/sample_corpus/motion_starter trainer.max_steps="$S2_STEPS"
rm -rf weights/stage2 && cp -r outputs/stage2/runs/cpu_starter/checkpoint weights/stage2
echo "starter weights written to weights/stage1 and weights/stage2"
