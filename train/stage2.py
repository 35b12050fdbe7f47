"""Stage 2 (audio-guided motion generation) training: python train/stage2.py [experiment=...] [key=value ...]"""

import hydra
from omegaconf import DictConfig

from infp.launch import run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="stage2")
def main(cfg: DictConfig) -> float | None:
    return run_task(cfg)


if __name__ == "__main__":
    main()
