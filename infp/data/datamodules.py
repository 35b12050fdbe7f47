"""Lightning DataModules over the clip format (plain arguments; built from Hydra configs in train/)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from infp.data.stage1 import HeadImitationPairs


class HeadImitationData(pl.LightningDataModule):
    """Stage-1 pairs: random same-clip pairs from the train split, fixed pairs from the val split."""

    def __init__(
        self,
        root: str | Path,
        size: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        samples_per_epoch: int = 2000,
        val_pairs_per_clip: int = 8,
        cache_frames: bool = True,
        augment: bool = True,
        mirror: bool = True,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.mirror = mirror
        self.size = size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.samples_per_epoch = samples_per_epoch
        self.val_pairs_per_clip = val_pairs_per_clip
        self.cache_frames = cache_frames
        self.augment = augment
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = HeadImitationPairs(self.root, "train", self.size, self.samples_per_epoch, self.augment,
                                                cache_frames=self.cache_frames, mirror=self.mirror)
            self.val_set = HeadImitationPairs(self.root, "val", self.size, augment=False,
                                              fixed_pairs_per_clip=self.val_pairs_per_clip, cache_frames=self.cache_frames)

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, drop_last=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)


class DyadicMotionData(pl.LightningDataModule):
    """Stage-2 windows; the first ``warmup_epochs`` epochs use only one-sided clips (one channel speaks).

    ``audio_context`` (video frames of past audio each window carries) is a property of the model's audio
    encoder (``AudioToMotionNet.audio_context``): left at None, the training entry sets it from the model.
    """

    def __init__(
        self,
        root: str | Path,
        window: int = 4,
        context: int = 16,
        audio_context: int | None = None,
        motion_dir: str | Path | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        samples_per_epoch: int = 4000,
        val_windows_per_clip: int = 16,
        warmup_epochs: int = 1,
        stats_clips: int = 1000,
        phones: bool = False,
        controls: bool = False,
        own_voice_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.window, self.context, self.audio_context = window, context, audio_context
        self.phones = phones  # items carry phone pseudo-labels of both channels (infp.audio.phones)
        self.motion_dir = motion_dir
        self.batch_size, self.num_workers = batch_size, num_workers
        self.samples_per_epoch, self.val_windows_per_clip = samples_per_epoch, val_windows_per_clip
        self.warmup_epochs = warmup_epochs
        self.stats_clips = stats_clips  # latent statistics (the scale) from at most this many training clips
        self.controls = controls  # items carry the control values measured around each window
        self.own_voice_weight = own_voice_weight  # training draws clips whose face speaks its own voice this much more often
        self.scale = None
        self.control_range = None  # (2, K) 5th / 95th percentiles of the raw control levels, after setup()
        self.motion_dim: int | None = None  # D of the latents on disk, known after setup()
        self.val_set = None
        self._train_index = None
        self._train_sets: dict = {}

    def _layout(self) -> dict:
        """The window layout every dataset of this module shares."""
        if self.audio_context is None:
            raise ValueError("DyadicMotionData.audio_context is not set: give the model's "
                             "AudioToMotionNet.audio_context (the training entry does)")
        return dict(window=self.window, context=self.context, audio_context=self.audio_context,
                    motion_dir=self.motion_dir, phones=self.phones, controls=self.controls)

    def setup(self, stage: str | None = None) -> None:
        """Reads the index and the latents of at most ``stats_clips`` clips; the rest is read when sampled."""
        from infp.data.clips import ClipIndex
        from infp.data.stage2 import ALL, DyadicMotionWindows

        if self.scale is None:
            self._train_index = ClipIndex(self.root, "train", min_frames=self.window + 1)
            full = DyadicMotionWindows(self.root, "train", samples_per_epoch=self.samples_per_epoch, subset=ALL,
                                       stats_clips=self.stats_clips, index=self._train_index,
                                       own_voice_weight=self.own_voice_weight, **self._layout())
            self.scale, self.motion_dim = full.scale, full.motion_dim
            self.control_range = full.control_range
            self._train_sets = {ALL: full}
            self.val_set = DyadicMotionWindows(self.root, "val", scale=self.scale, control_range=self.control_range,
                                               fixed_windows_per_clip=self.val_windows_per_clip, **self._layout())

    def train_subset(self, subset: str):
        """The training windows of ``subset`` (``ALL`` or ``ONE_SIDED`` clips), built once."""
        from infp.data.stage2 import DyadicMotionWindows

        if subset not in self._train_sets:
            self._train_sets[subset] = DyadicMotionWindows(self.root, "train", scale=self.scale, subset=subset,
                                                           control_range=self.control_range,
                                                           samples_per_epoch=self.samples_per_epoch,
                                                           own_voice_weight=self.own_voice_weight,
                                                           index=self._train_index, **self._layout())
        return self._train_sets[subset]

    def train_dataloader(self) -> DataLoader:
        from infp.data.stage2 import ALL, ONE_SIDED

        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        subset = ONE_SIDED if epoch < self.warmup_epochs else ALL
        return DataLoader(self.train_subset(subset), batch_size=self.batch_size, shuffle=True,
                          num_workers=self.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)
