"""``python -m train [hydra overrides]`` (or ``hybridcodec-train``): train a model (see conf/train.yaml and README, Training).

Examples::

    python -m train experiment=tiny                   # a quick smoke run
    python -m train                                   # CPU, defaults
    python -m train model.levels=5 data.root=/my/audio
    python -m train trainer=ddp trainer.devices=2     # DDP: GPUs, or CPU processes without one
    python -m train ckpt_path=outputs/train/.../checkpoints/last.ckpt   # resume

A bad option, config value, data folder, checkpoint or model file is reported on one line
(``hybridcodec-train: message``) with a non-zero exit status; ``HYBRIDCODEC_DEBUG=1``
shows the traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from train.errors import report
from train.run import command_line_model_keys, train

CONF = Path(__file__).resolve().parents[1] / "conf"
PROG = "hybridcodec-train"


def _train(cfg: DictConfig) -> None:
    train(cfg, command_line_model_keys(list(HydraConfig.get().overrides.task), cfg.model))


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
def _main(cfg: DictConfig) -> None:
    # Reported here, inside the job: an exception would make Hydra print its own
    # "Error executing job" line first. SystemExit passes through Hydra untouched.
    status = report(PROG, lambda: _train(cfg))
    if status:
        sys.exit(status)


def main() -> None:
    """Entry point of ``python -m train`` and the ``hybridcodec-train`` console script."""
    if not (CONF / "train.yaml").is_file():
        # The configs live in the repository (conf/), beside train/: an install that is
        # not an editable one of the checkout has the code but not them.
        sys.exit(f"{PROG}: no training configs in {CONF}; install the repository "
                 "checkout in editable mode: python -m pip install -e '.[train]'")
    # Hydra then raises its composition and override errors instead of printing them
    # over several lines, and report() prints one.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.exit(report(PROG, _main))


if __name__ == "__main__":
    main()
