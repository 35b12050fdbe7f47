"""The training scripts without their data: one line naming the folder and the command that creates it,
exit status 1, no traceback; checked before torch is loaded, so these runs take seconds."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from infp.data.synthetic import write_synthetic_index
from infp.launch import MissingDataError, check_data

REPO = Path(__file__).resolve().parents[1]


def _train(stage, args, cwd):
    env = dict(os.environ, PYTHONWARNINGS="ignore", INFP_ROOT=str(cwd))
    return subprocess.run([sys.executable, str(REPO / "train" / f"{stage}.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _one_line(res) -> str:
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_stage1_without_corpus_stops_in_one_line(tmp_path):
    missing = tmp_path / "no_corpus"
    line = _one_line(_train("stage1", ["experiment=stage1_debug", f"data.root={missing}",
                                       f"hydra.run.dir={tmp_path / 'run'}"], tmp_path))
    assert line == (f"stage1.py: error: {missing}: no clip corpus here (the folder does not exist); create it with "
                    f"`infp prepare MANIFEST {missing}` from your recordings, or put the sample corpus there with "
                    f"`infp sample-corpus --out {missing}`")
    assert not (tmp_path / "run" / "config_resolved.yaml").exists()  # stopped before the run wrote anything


def test_sweep_without_the_sample_corpus_names_make_sample_corpus_once(tmp_path):
    """The README's sweep example on a fresh clone: the default corpus folder is there but empty."""
    (tmp_path / "data" / "sample_corpus").mkdir(parents=True)
    line = _one_line(_train("stage1", ["-m", "experiment=stage1_debug", "model.motion_dim=32,64",
                                       "optim.lr=1e-4,3e-4"], tmp_path))
    assert line == (f"stage1.py: error: {tmp_path}/data/sample_corpus: no clip corpus here (the folder is empty); create "
                    "the sample corpus with `make sample-corpus` (or `infp sample-corpus --out data/sample_corpus`)")


def test_stage2_without_corpus_stops_in_one_line(tmp_path):
    line = _one_line(_train("stage2", ["experiment=stage2_debug", f"paths.corpus={tmp_path / 'gone'}",
                                       f"hydra.run.dir={tmp_path / 'run'}"], tmp_path))
    assert line.startswith(f"stage2.py: error: {tmp_path / 'gone'}: no clip corpus here (the folder does not exist)")


def _data(root, **kw):
    return OmegaConf.create({"root": str(root), **kw})


def test_check_data_cases(tmp_path):
    corpus = tmp_path / "corpus"
    rows = write_synthetic_index(corpus, 40, val_share=0.3)
    check_data(_data(corpus))  # stage 1: train and val clips
    with pytest.raises(MissingDataError, match=r"no clip corpus here \(the folder has no index.jsonl\)"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "x.txt").write_text("")
        check_data(_data(tmp_path / "other"))
    write_synthetic_index(tmp_path / "train_only", 4, val_share=0.0)
    with pytest.raises(MissingDataError, match=r"no 'val' clips .* give some recordings `split: val`"):
        check_data(_data(tmp_path / "train_only"))
    with pytest.raises(MissingDataError) as e:  # stage 2 on a corpus without latents
        check_data(_data(corpus, motion_dir=None, window=4))
    assert str(e.value) == (f"{corpus / 'motion'}: no motion latents of the corpus's 'train' clips here; write them "
                            f"with `infp extract-motion {corpus}` (the starter stage-1 weights; `--checkpoint DIR` for yours)")
    custom = tmp_path / "latents"
    with pytest.raises(MissingDataError, match=f"`infp extract-motion {corpus} --out {custom}`"):
        check_data(_data(corpus, motion_dir=str(custom), window=4))
    custom.mkdir()
    for r in rows:
        (custom / f"{r['id']}.npy").write_bytes(b"")
    check_data(_data(corpus, motion_dir=str(custom), window=4))  # stage 2: the latents are listed, not read
