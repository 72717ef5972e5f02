"""Validation with the real entropy coder (see :mod:`train.coded_bits`).

At the end of every validation run the model is exported exactly as ``train.export``
would write it and the real encoder codes the first frames of the validation files.
Logged (``val/`` prefix):

* ``coded_bps``: actual coded bits per sample (payload bytes; what checkpoints monitor);
* ``estimated_bps`` and ``coded_vs_estimated``: the ideal code length of the actual
  residuals, and its relative difference from the actual size (expected within 1 %);
* ``estimated_bpc_<band>``: bits per coefficient of each band (coarse, d_L .. d_1);
* ``coder_loss_bps``, ``coder_loss_bpc_<band>``: the training loss on the same coded
  channels (with the run's ``lpc_order``), for information only: it ignores the
  coder's adaptive cascade (or prices a per-example LPC stand-in for it), so it does
  not match the coded size.

Under DDP rank 0 measures and broadcasts, so every rank logs the same numbers.
"""

from __future__ import annotations

import logging

import lightning as L
import numpy as np

from .coded_bits import evaluate, exported_copy, file_frames

log = logging.getLogger(__name__)


class CodedBitsValidation(L.Callback):
    """Measures the exported model with the real coder at every validation (see the
    module docstring): the first ``frames_per_file`` frames of the first ``max_files``
    validation files; ``log_baseline`` also measures the initial model (step 0)."""

    def __init__(self, frames_per_file: int | None = 4, max_files: int | None = None,
                 log_baseline: bool = True) -> None:
        self.frames_per_file, self.max_files = frames_per_file, max_files
        self.log_baseline = log_baseline
        self._frames: list[np.ndarray] | None = None

    def frames(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[np.ndarray]:
        if self._frames is None:
            files = trainer.datamodule.val_files[: self.max_files]
            self._frames = file_frames(files, pl_module.model.config.frame_length,
                                       self.frames_per_file)
        return self._frames

    def measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        metrics = None
        if trainer.is_global_zero:
            frames = self.frames(trainer, pl_module)
            if frames:
                ev = evaluate(exported_copy(pl_module.model), frames, loss_model=pl_module.model,
                              lpc_order=getattr(pl_module, "lpc_order", 0))
                metrics = {("coder_" + k if k.startswith("loss") else k): v
                           for k, v in ev.metrics().items()}
        return trainer.strategy.broadcast(metrics, src=0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The starting point (the initialised model), logged at step 0.
        if not self.log_baseline or trainer.global_step > 0:
            return
        metrics = self.measure(trainer, pl_module)
        if metrics and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({f"val/{k}": v for k, v in metrics.items()}, step=0)
            log.info("initial model: %s", _summary(metrics))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = self.measure(trainer, pl_module)
        if metrics:
            # Rank 0's numbers, broadcast: the same on every process, so the mean over
            # processes is each of them, and every rank's ModelCheckpoint sees the value.
            pl_module.log_dict({f"val/{k}": v for k, v in metrics.items()}, sync_dist=True)
            if trainer.is_global_zero:
                log.info("step %d: %s", trainer.global_step, _summary(metrics))


def _summary(m: dict[str, float]) -> str:
    return (f"coded {m['coded_bps']:.4f} bits/sample, estimated {m['estimated_bps']:.4f} "
            f"({100 * m['coded_vs_estimated']:+.2f} %), training loss "
            f"{m.get('coder_loss_bps', float('nan')):.4f}")
