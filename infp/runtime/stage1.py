"""The stage-1 renderer at inference: portraits in, motion latents in, frames out (tensor level)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from infp.errors import SettingsError
from infp.models.head_imitation import HeadImitationNet, SourceCache
from infp.models.images import to_image, to_tensor
from infp.runtime.backends import check_backend, feeds, make_render, onnx_graph
from infp.runtime.portrait import Portrait

PRECISIONS = ("fp32", "bf16")


class Stage1Runner:
    """Tensor-level wrapper around a HeadImitationNet: portraits in, latents in, frames out."""

    def __init__(self, net: HeadImitationNet, device: str | torch.device = "cpu", precision: str = "fp32",
                 backend: str = "torch", cache_dir: str | Path | None = None) -> None:
        """``precision="bf16"``: render (flow, warp, decoder) under bfloat16 autocast — on CPUs with
        AMX / AVX512-BF16 and on recent GPUs about twice as fast; portraits and motion latents stay fp32.

        ``backend``: what runs the per-frame render — ``"torch"`` (eager), or the render exported to ONNX
        (once, cached under ``cache_dir``, default ``infp.runtime.backends.cache_root()``) and run by
        ``"onnxruntime"`` (fp32) or ``"openvino"`` (fp32 or bf16), CPU only, with torch's thread count at
        construction. The portrait's encoders stay in torch; ``frames`` returns the same tensors."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        check_backend(backend)
        if backend != "torch" and torch.device(device).type != "cpu":
            raise SettingsError(f"the {backend} backend runs on the CPU only, not {device!r}")
        if backend == "onnxruntime" and precision != "fp32":
            raise SettingsError("the onnxruntime backend renders in fp32 only (bf16: backend 'openvino' or 'torch')")
        # channels-last convolutions are faster on CPU (and no slower on GPU)
        self.net = net.to(device).to(memory_format=torch.channels_last).eval()
        self.device = torch.device(device)
        self.size = net.image_size
        self.precision = precision
        self.backend = backend
        self.cache_dir = cache_dir
        self.threads = torch.get_num_threads()
        self._graphs: dict[int, object] = {}  # render size -> exported render (non-torch backends)
        if backend != "torch":
            self._graph(self.size)  # export (or find in the cache) now, not on the first frame

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu", precision: str = "fp32",
                        backend: str = "torch", cache_dir: str | Path | None = None) -> "Stage1Runner":
        return cls(HeadImitationNet.from_pretrained(folder), device, precision, backend, cache_dir)

    def _graph(self, size: int):
        """The exported render at ``size`` x ``size`` on this runner's backend (the live demo changes sizes)."""
        if size not in self._graphs:
            path = onnx_graph(self.net, size, self.cache_dir)
            self._graphs[size] = make_render(self.backend, path, self.threads, self.precision)
        return self._graphs[size]

    @torch.inference_mode()
    def source(self, portrait: Portrait) -> SourceCache:
        img = to_tensor(portrait.crop)[None].to(self.device).contiguous(memory_format=torch.channels_last)
        masked = to_tensor(portrait.masked)[None].to(self.device).contiguous(memory_format=torch.channels_last)
        return self.net.prepare_source(img, masked)

    @torch.inference_mode()
    def encode(self, masked: list[np.ndarray]) -> torch.Tensor:
        """Motion latents (B, D) of masked motion-encoder inputs."""
        return self.net.encode_motion(torch.stack([to_tensor(m) for m in masked]).to(self.device))

    @torch.inference_mode()
    def decode_keypoints(self, latents: torch.Tensor) -> torch.Tensor | None:
        """Keypoints (B, K, 2) on the CPU that the renderer warps with for latents (B, D); None for a net
        without a keypoint decoder."""
        kp = self.net.decode_keypoints(latents.to(self.device))
        return None if kp is None else kp.float().cpu()

    @torch.inference_mode()
    def frames(self, source: SourceCache, latents: torch.Tensor, keypoints: torch.Tensor | None = None) -> torch.Tensor:
        """Frames (B, 3, S, S) float32 in [-1, 1] for latents (B, D) (and optionally keypoints (B, K, 2) to
        warp with), at the runner's precision, whatever its backend."""
        if self.backend != "torch":
            render = self._graph(source.image.shape[-1])
            return torch.from_numpy(render(feeds(self.net, source, latents, keypoints)))
        kp = None if keypoints is None else keypoints.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.net.render(source, latents.to(self.device), kp_drv=kp).float()

    @torch.inference_mode()
    def render(self, source: SourceCache, latents: torch.Tensor, keypoints: torch.Tensor | None = None) -> list[np.ndarray]:
        """Frames (S, S, 3) uint8 for latents (B, D) (and optionally keypoints (B, K, 2) to warp with)."""
        return [to_image(f) for f in self.frames(source, latents, keypoints)]
