import os
import subprocess

import numpy as np
import pytest

from infp.errors import OutputError
from infp.io import VideoWriter, check_video_output, write_video
from infp.io.atomic import remove_stale_temps, temp_sibling


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_temp_names_carry_the_pid_and_stale_ones_are_removed(tmp_path):
    out = tmp_path / "talk.mp4"
    tmp = temp_sibling(out)
    assert tmp.name.startswith(f".talk.{os.getpid()}-") and tmp.name.endswith(".tmp.mp4")
    dead = _dead_pid()
    stale = [tmp_path / f".talk.{dead}-0123abcd.tmp.mp4", tmp_path / f".talk.{dead}-89abcdef.tmp.wav"]
    alive = tmp_path / f".talk.{os.getpid()}-0123abcd.tmp.mp4"  # a job of this process still writing
    other = tmp_path / f".other.{dead}-0123abcd.tmp.mp4"  # another output's business
    for p in [*stale, alive, other]:
        p.write_bytes(b"partial")
    assert sorted(remove_stale_temps(out)) == sorted(stale)
    assert alive.exists() and other.exists() and not any(p.exists() for p in stale)


def test_writing_a_video_removes_the_leftovers_of_a_killed_run(tmp_path):
    leftover = tmp_path / f".clip.{_dead_pid()}-deadbeef.tmp.mp4"
    leftover.write_bytes(b"\x00" * 1000)
    write_video(tmp_path / "clip.mp4", [np.zeros((16, 16, 3), np.uint8)] * 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_only_mp4_is_written(tmp_path):
    for name in ("x.avi", "x.mkv", "x", "x.MP3"):
        with pytest.raises(OutputError, match=r"must be an \.mp4 file") as e:
            check_video_output(tmp_path / name)
        assert str(tmp_path / name) in str(e.value)
    assert check_video_output(tmp_path / "x.MP4") == tmp_path / "x.MP4"


def test_output_that_is_an_input_is_refused(tmp_path, samples):
    video = tmp_path / "in.mp4"
    video.write_bytes((samples / "video" / "lp_s29.mp4").read_bytes())
    with pytest.raises(OutputError, match=r"is also an input \(--driving\)"):
        check_video_output(tmp_path / "sub" / ".." / "in.mp4", {"--driving": video})
    os.link(video, tmp_path / "hard.mp4")
    with pytest.raises(OutputError, match="is also an input"):
        check_video_output(tmp_path / "hard.mp4", [video])
    (tmp_path / "sym.mp4").symlink_to(video)
    with pytest.raises(OutputError, match=r"is also an input \(--checkpoint\)"):
        check_video_output(tmp_path / "sym.mp4", {"--portrait": None, "--checkpoint": [tmp_path / "x.yaml", video]})
    check_video_output(tmp_path / "new.mp4", {"--driving": video})


def test_unwritable_output_folders_are_named(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder is needed")
    with pytest.raises(OutputError, match="is a file, not a folder") as e:
        check_video_output(blocker / "deeper" / "out.mp4")
    assert str(blocker) in str(e.value)
    with pytest.raises(OutputError, match="cannot write into this folder") as e:
        check_video_output("/proc/out.mp4")  # not writable even for root
    assert str(e.value).startswith("/proc:")
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_video_output(tmp_path / "dir.mp4")


def test_writer_failure_reports_the_folder_not_the_cleanup(tmp_path):
    """The temporary's removal used to raise NotADirectoryError and hide the real problem."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        with VideoWriter(blocker / "out.mp4") as w:
            w.write(np.zeros((16, 16, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
