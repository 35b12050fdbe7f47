"""Stage 1 (motion-based head imitation) training: python train/stage1.py [experiment=...] [key=value ...]"""

import hydra
from omegaconf import DictConfig

from infp.launch import run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="stage1")
def main(cfg: DictConfig) -> float | None:
    return run_task(cfg)


if __name__ == "__main__":
    main()
