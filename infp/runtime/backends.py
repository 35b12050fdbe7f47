"""Other inference runtimes for the stage-1 renderer: its ``render`` exported to ONNX, run by ONNX Runtime or OpenVINO.

The exported graph is the per-frame work only (keypoint heatmaps, flow, warps, decoder): it takes the
cached portrait (``SourceCache`` image, features, motion latent and keypoints) and a batch of driving
latents (and keypoints) and returns frames. The portrait-only work (appearance and motion encoders)
stays in torch. The graph is exported once per (weights, config, size, code of the networks) and kept in a
cache folder (``$INFP_CACHE``, else ``$XDG_CACHE_HOME/infp``, else ``~/.cache/infp``), keyed by a hash of them.

Both runtimes are optional: ``pip install 'infp[runtime]'`` (onnx for the export, onnxruntime, openvino).
Measured against torch in ``docs/RESULTS.md`` ("Stage-1 inference runtimes",
``benchmarks/stage1_runtimes.py``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import infp.models
import infp.modules
from infp.errors import InfpError, SettingsError
from infp.models.head_imitation import HeadImitationNet, SourceCache

BACKENDS = ("torch", "onnxruntime", "openvino")
OPSET = 17  # GridSample needs 16
GRAPH_VERSION = 1  # bump when the exported graph changes (its inputs, the wrapper), so old cache files are not reused
_PACKAGES = {"onnxruntime": ("onnxruntime",), "openvino": ("openvino",)}
_EXPORT_PACKAGES = ("onnx",)  # torch.onnx.export writes the graph with it


def check_backend(backend: str) -> None:
    """SettingsError (a ValueError) for a name not in ``BACKENDS``; InfpError naming the package and the pip command when
    the backend's package (or the exporter's) is not installed."""
    if backend not in BACKENDS:
        raise SettingsError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "torch":
        return
    for package in _PACKAGES[backend] + _EXPORT_PACKAGES:
        _require(package, f"the {backend} backend")


def resolve_backend(backend: str, device: str | torch.device = "cpu") -> str:
    """``backend``, or for ``"auto"``: ``"openvino"`` on the CPU when it and the exporter are installed (the
    renderer's fastest CPU runtime here, docs/RESULTS.md "Stage-1 inference runtimes"), else ``"torch"``."""
    if backend != "auto":
        return backend
    if torch.device(device).type != "cpu":
        return "torch"
    return "openvino" if all(importlib.util.find_spec(p) is not None for p in _PACKAGES["openvino"] + _EXPORT_PACKAGES) \
        else "torch"


MOTION_THREADS = 1
"""torch's CPU threads beside a renderer on its own runtime (``set_motion_threads``)."""


def set_motion_threads(backend: str, threads: int, motion_threads: int = MOTION_THREADS) -> int:
    """torch's CPU threads once the renderer is built; returns them.

    A renderer on ``onnxruntime`` or ``openvino`` keeps the pool of ``threads`` it was built with, and torch then runs
    only motion generation and voice activity: many small operations that lose more waiting on each other than they
    gain on two cores shared with the renderer and a browser (docs/RESULTS.md, "The live demo at 256² with a browser").
    They get ``motion_threads`` (0: ``threads``). With the renderer in torch, both share ``threads``."""
    n = threads if backend == "torch" or not motion_threads else motion_threads
    torch.set_num_threads(n)
    return n


def _require(package: str, what: str):
    """The imported package, or InfpError saying that ``what`` needs it and how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise InfpError(f"{what} needs the {package} package: pip install 'infp[runtime]' (or pip install {package})") from None


def cache_root() -> Path:
    """Where exported graphs are kept unless a folder is given."""
    if os.environ.get("INFP_CACHE"):
        return Path(os.environ["INFP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "infp"


def input_names(net: HeadImitationNet) -> list[str]:
    """The exported graph's inputs, in order (keypoint nets take both keypoint sets)."""
    if net.keypoints is None:
        return ["image", "feats", "motion", "latents"]
    return ["image", "feats", "motion", "kp_src", "latents", "kp_drv"]


@functools.lru_cache(maxsize=1)
def _code_hash() -> str:
    """Hash of the source of the networks (``infp.models``, ``infp.modules``): a graph exported from other
    code is never reused, even for the same weights."""
    h = hashlib.sha256()
    for package in (infp.models, infp.modules):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def graph_key(net: HeadImitationNet, size: int) -> str:
    """Hash of the weights, the config, the render size, the networks' code, torch and the graph format."""
    h = hashlib.sha256()
    h.update(json.dumps({"config": net.config, "size": size, "opset": OPSET, "graph": GRAPH_VERSION,
                         "code": _code_hash(), "torch": torch.__version__}, sort_keys=True).encode())
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RenderGraph(nn.Module):
    """``net.render`` with the cached portrait as plain tensors, the form that is exported."""

    def __init__(self, net: HeadImitationNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, feats: torch.Tensor, motion: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        if self.net.keypoints is None:
            (latents,), kp_src, kp_drv = rest, None, None
        else:
            kp_src, latents, kp_drv = rest
        b = latents.shape[0]
        # expanded here, so one graph serves every batch size (render() expands only when the batch differs)
        source = SourceCache(image.expand(b, -1, -1, -1), feats.expand(b, -1, -1, -1), motion.expand(b, -1),
                             None if kp_src is None else kp_src.expand(b, -1, -1))
        return self.net.render(source, latents, kp_drv=kp_drv)


def export_onnx(net: HeadImitationNet, size: int, path: str | Path) -> Path:
    """Write ``net.render`` at ``size`` x ``size`` as an ONNX graph with a dynamic batch axis (atomically)."""
    _require("onnx", "the ONNX export of the renderer")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = input_names(net)
    param = next(net.parameters())
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode(False), torch.no_grad():
        image = (torch.rand(1, 3, size, size, generator=gen) * 2 - 1).to(param.device)
        source = net.prepare_source(image, image)
        latents = source.motion.expand(2, -1) + 0.1 * torch.randn(2, net.motion_dim, generator=gen).to(param.device)
        inputs = {"image": source.image, "feats": source.feats, "motion": source.motion, "latents": latents}
        if net.keypoints is not None:
            inputs.update(kp_src=source.keypoints, kp_drv=net.decode_keypoints(latents))
        dynamic = {n: {0: "source_batch" if n in ("image", "feats", "motion", "kp_src") else "batch"} for n in names}
        dynamic["frames"] = {0: "batch"}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        was_training = net.training
        net.eval()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings on shape comparisons that hold for every input
                torch.onnx.export(RenderGraph(net), tuple(inputs[n] for n in names), str(tmp), dynamo=False,
                                  opset_version=OPSET, input_names=names, output_names=["frames"], dynamic_axes=dynamic)
            os.replace(tmp, path)
        finally:
            net.train(was_training)
            tmp.unlink(missing_ok=True)
    return path


def onnx_graph(net: HeadImitationNet, size: int, folder: str | Path | None = None) -> Path:
    """The cached ONNX graph of ``net.render`` at ``size`` (exported on first use)."""
    folder = Path(folder) if folder is not None else cache_root()
    path = folder / "stage1-onnx" / f"stage1_{size}_{graph_key(net, size)[:20]}.onnx"
    if not path.is_file():
        export_onnx(net, size, path)
    return path


class OnnxRuntimeRender:
    """An exported render graph on ONNX Runtime's CPU execution provider (fp32)."""

    def __init__(self, path: str | Path, threads: int, spinning: bool = False) -> None:
        ort = _require("onnxruntime", "the onnxruntime backend")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # no busy-waiting between calls: the stage-2 network runs on the same cores in between
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feeds)[0]


class OpenVinoRender:
    """An exported render graph compiled by OpenVINO for the CPU, in fp32 or bf16 (``INFERENCE_PRECISION_HINT``;
    OpenVINO's own default on CPUs with AMX / AVX512-BF16 is bf16, so fp32 is asked for explicitly).

    The graph is compiled for the static input shapes of each call (a batch size seen for the first time
    costs a compilation of a fraction of a second): static shapes run about a third faster than the
    dynamic batch axis. The last ``max_shapes`` compilations are kept."""

    def __init__(self, path: str | Path, threads: int, precision: str = "fp32", max_shapes: int = 8) -> None:
        ov = _require("openvino", "the openvino backend")
        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        self.config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                       "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        self.max_shapes = max_shapes
        self.compiled: dict[tuple, tuple] = {}  # input shapes -> (infer request, output), oldest first
        self.lock = threading.Lock()

    def _request(self, feeds: dict[str, np.ndarray]):
        key = tuple((name, feeds[name].shape) for name in sorted(feeds))
        if key not in self.compiled:
            model = self.model.clone()
            model.reshape({name: list(shape) for name, shape in key})
            compiled = self.core.compile_model(model, "CPU", self.config)
            if len(self.compiled) >= self.max_shapes:
                del self.compiled[next(iter(self.compiled))]
            self.compiled[key] = (compiled.create_infer_request(), compiled.output(0))
        return self.compiled[key]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self.lock:
            request, output = self._request(feeds)
            return np.array(request.infer(feeds)[output])  # a copy: the request reuses its buffer


def make_render(backend: str, path: str | Path, threads: int, precision: str = "fp32"):
    """A callable feeds -> frames (B, 3, S, S) float32 for an exported graph."""
    if backend == "onnxruntime":
        if precision != "fp32":
            raise SettingsError("the onnxruntime backend renders in fp32 only (bf16: backend 'openvino' or 'torch')")
        return OnnxRuntimeRender(path, threads)
    if backend == "openvino":
        return OpenVinoRender(path, threads, precision)
    raise ValueError(f"no exported graph for backend {backend!r}")


def feeds(net: HeadImitationNet, source: SourceCache, latents: torch.Tensor, kp_drv: torch.Tensor | None) -> dict[str, np.ndarray]:
    """The graph's inputs as float32 arrays; driving keypoints decoded from ``latents`` when not given."""
    def arr(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().float().cpu().numpy())

    out = {"image": arr(source.image), "feats": arr(source.feats), "motion": arr(source.motion), "latents": arr(latents)}
    if net.keypoints is not None:
        out["kp_src"] = arr(source.keypoints)
        out["kp_drv"] = arr(net.decode_keypoints(latents.float()) if kp_drv is None else kp_drv)
    return out
