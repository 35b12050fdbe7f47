import json
import subprocess
import sys

import numpy as np

from infp.cli import main
from infp.io import write_wav


def _run(*args):
    return subprocess.run([sys.executable, "-m", "infp.cli", *args], capture_output=True, text=True, timeout=300)


def test_vad_command_reports_each_channel(tmp_path, samples, capsys):
    from infp.io import read_audio

    speech = read_audio(samples / "audio" / "ditto.flac")[0][: 4 * 16000]
    write_wav(tmp_path / "dlg.wav", np.stack([speech, np.zeros_like(speech)]))
    assert main(["vad", str(tmp_path / "dlg.wav")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["channel"] for r in report] == [0, 1]
    assert report[0]["speech_seconds"] > 2.0 and report[1]["speech_seconds"] == 0
    assert report[0]["segments"] and not report[1]["segments"]


def test_user_errors_are_one_line_without_traceback(tmp_path):
    res = _run("prepare", str(tmp_path / "missing.yaml"), str(tmp_path / "out"))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert lines == [f"infp: error: {tmp_path / 'missing.yaml'}: manifest not found"]
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"\x00\x01" * 100)
    res = _run("vad", str(bad))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert str(bad) in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_manifest_naming_missing_files_fails_before_any_work(tmp_path, samples):
    m = tmp_path / "m.yaml"
    m.write_text(f"recordings:\n  - {{id: a, video: {samples}/video/lp_d10.mp4, parties: [{{audio: gone.wav}}]}}\n")
    res = _run("prepare", str(m), str(tmp_path / "out"), "--quiet")
    assert res.returncode == 1 and "audio file not found" in res.stderr and str(m) in res.stderr
    assert not (tmp_path / "out").exists()
