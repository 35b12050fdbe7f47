"""Stage1Runner(backend=...): the renderer exported to ONNX and run by ONNX Runtime / OpenVINO renders what
torch renders (PSNR >= 40 dB), from a graph exported once and found again in the cache."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch

from infp.errors import InfpError
from infp.models.head_imitation import ARCHITECTURES, HeadImitationNet
from infp.runtime import backends
from infp.runtime.portrait import load_portrait
from infp.runtime.stage1 import Stage1Runner
from infp.weights import weights_dir

V2 = ARCHITECTURES["v2"]


def _installed(*packages: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in packages)


RUNTIMES = [
    pytest.param("onnxruntime", "fp32", marks=pytest.mark.skipif(not _installed("onnx", "onnxruntime"), reason="needs onnx, onnxruntime")),
    pytest.param("openvino", "fp32", marks=pytest.mark.skipif(not _installed("onnx", "openvino"), reason="needs onnx, openvino")),
]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """dB, frames in [-1, 1]."""
    mse = (a.double() - b.double()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module")
def portrait(samples):
    return load_portrait(samples / "portraits" / "lp_s1.jpg", 256)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {"v1": HeadImitationNet.from_pretrained(weights_dir() / "stage1"), "v2": HeadImitationNet(**V2).eval()}


def _inputs(runner: Stage1Runner, portrait, batch: int = 2):
    src = runner.source(portrait)
    gen = torch.Generator().manual_seed(1)
    lat = src.motion + 0.3 * torch.randn(batch, src.motion.shape[1], generator=gen)
    return src, lat


@pytest.fixture(scope="module")
def reference(nets, portrait):
    """Per architecture: source, latents, torch fp32 frames, and (keypoint nets) relative keypoints and their frames."""
    out = {}
    for arch, net in nets.items():
        ref = Stage1Runner(net)
        src, lat = _inputs(ref, portrait)
        kp = net.relative_keypoints(src, lat, lat[:1].expand_as(lat))
        out[arch] = (src, lat, ref.frames(src, lat), kp, None if kp is None else ref.frames(src, lat, kp))
    return out


@pytest.mark.parametrize("arch", ["v1", "v2"])
@pytest.mark.parametrize("backend,precision", RUNTIMES)
def test_backend_renders_what_torch_renders(backend, precision, arch, nets, reference, cache):
    src, lat, want, kp, want_kp = reference[arch]
    runner = Stage1Runner(nets[arch], precision=precision, backend=backend, cache_dir=cache)
    got = runner.frames(src, lat)
    assert got.dtype == want.dtype == torch.float32 and got.shape == want.shape == (2, 3, 256, 256)
    assert psnr(got, want) >= 40
    one = runner.frames(src, lat[1:])  # the batch axis is dynamic
    assert psnr(one, want[1:]) >= 40
    if kp is not None:  # driving keypoints given (relative motion, as infp reenact warps)
        assert psnr(runner.frames(src, lat, kp), want_kp) >= 40
    assert len(runner.render(src, lat)) == 2


@pytest.mark.skipif(not _installed("onnx", "openvino"), reason="needs onnx, openvino")
def test_openvino_bf16_close_to_torch(nets, reference, cache):
    """OpenVINO's bf16 inference (on trained weights; random weights magnify rounding)."""
    src, lat, want, _, _ = reference["v1"]
    got = Stage1Runner(nets["v1"], precision="bf16", backend="openvino", cache_dir=cache).frames(src, lat)
    assert psnr(got, want) >= 40


@pytest.mark.skipif(not _installed("onnx", "onnxruntime"), reason="needs onnx, onnxruntime")
def test_graph_is_exported_once_per_weights_and_size(nets, portrait, cache, samples, monkeypatch):
    net = nets["v2"]
    Stage1Runner(net, backend="onnxruntime", cache_dir=cache)
    files = sorted((cache / "stage1-onnx").glob("*.onnx"))
    assert files
    mtimes = {f: f.stat().st_mtime_ns for f in files}

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(backends, "export_onnx", no_export)
    runner = Stage1Runner(net, backend="onnxruntime", cache_dir=cache)
    src, lat = _inputs(runner, portrait, 1)
    runner.frames(src, lat)
    assert {f: f.stat().st_mtime_ns for f in (cache / "stage1-onnx").glob("*.onnx")} == mtimes
    monkeypatch.undo()

    # another size (the live demo renders smaller crops) is a graph of its own
    small = load_portrait(samples / "portraits" / "lp_s1.jpg", 192)
    src = runner.source(small)
    ref = Stage1Runner(net)
    assert psnr(runner.frames(src, lat), ref.frames(src, lat)) >= 40
    assert len(list((cache / "stage1-onnx").glob("*.onnx"))) == len(files) + 1

    # other weights, another key; other code of the networks, another key
    key = backends.graph_key(net, 256)
    other = HeadImitationNet(**V2)
    other.load_state_dict(net.state_dict())
    assert backends.graph_key(other, 256) == key
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert backends.graph_key(other, 256) != key
    monkeypatch.setattr(backends, "_code_hash", lambda: "other code")
    assert backends.graph_key(net, 256) != key


def test_unknown_backend_and_unsupported_combinations(nets):
    with pytest.raises(ValueError, match="backend must be one of"):
        Stage1Runner(nets["v2"], backend="tensorrt")
    with pytest.raises(ValueError, match="fp32 only"):
        Stage1Runner(nets["v2"], precision="bf16", backend="onnxruntime")
    from infp.cli import BACKENDS, MOTION_THREADS

    assert BACKENDS == backends.BACKENDS and MOTION_THREADS == backends.MOTION_THREADS


@pytest.mark.parametrize("backend,package", [("onnxruntime", "onnxruntime"), ("openvino", "openvino"), ("openvino", "onnx")])
def test_missing_package_names_it_and_the_pip_command(backend, package, nets, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    with pytest.raises(InfpError, match=rf"needs the {package} package: pip install 'infp\[runtime\]' \(or pip install {package}\)"):
        Stage1Runner(nets["v2"], backend=backend)


def test_auto_is_openvino_on_the_cpu_when_installed_else_torch(monkeypatch):
    import importlib.util

    from infp.runtime.backends import resolve_backend

    assert resolve_backend("torch") == "torch" and resolve_backend("onnxruntime") == "onnxruntime"
    assert resolve_backend("auto") == "openvino"  # installed with infp[dev] / infp[runtime]
    assert resolve_backend("auto", "cuda") == "torch"
    real = importlib.util.find_spec
    for missing in ("openvino", "onnx"):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, _m=missing: None if name == _m else real(name, *a))
        assert resolve_backend("auto") == "torch"


def test_the_live_demo_defaults_to_auto_and_render_to_torch():
    from infp.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo"]).backend == "auto"
    assert parser.parse_args(["render", "--portrait", "p.jpg", "--audio", "a.wav", "--out", "o.mp4"]).backend == "torch"
