"""``python -m train [hydra overrides]``: train a model (see conf/train.yaml and README, Training).

Examples::

    python -m train                                   # CPU, defaults
    python -m train experiment=tiny                   # a quick smoke run
    python -m train model.levels=8 data.root=/my/audio trainer=gpu trainer.devices=4
    python -m train trainer=ddp trainer.devices=4     # Lightning's DDP strategy
    python -m train ckpt_path=outputs/train/.../checkpoints/last.ckpt   # resume
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from train.run import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
