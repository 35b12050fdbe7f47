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
    ) -> None:
        super().__init__()
        self.root = Path(root)
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
                                                cache_frames=self.cache_frames)
            self.val_set = HeadImitationPairs(self.root, "val", self.size, augment=False,
                                              fixed_pairs_per_clip=self.val_pairs_per_clip, cache_frames=self.cache_frames)

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, drop_last=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)
