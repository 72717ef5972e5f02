"""LightningModule: a thin training wrapper around :class:`train.nets.TrainableModel`.

The nets are the float twins of the codec model's, built from the same config and
exported to the same integers (:meth:`TrainableModel.to_codec`); the loss is
:func:`train.loss.latent_bits`, the estimated bits per sample of the integer latents.
Optimizer and scheduler arrive as partials from the ``optim`` config group.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable

import lightning as L
import torch

from hybridcodec.model import ModelConfig, validate_config

from .errors import CheckpointError, one_line
from .loss import MIN_SCALE, latent_bits
from .nets import TrainableModel

CONFIG_KEY = "hybridcodec_model_config"  # where checkpoints keep the ModelConfig

log = logging.getLogger(__name__)


class CodecModule(L.LightningModule):
    """Trains ``model`` on the estimated bits per sample of its integer latents
    (:func:`train.loss.latent_bits`); optimizer and scheduler are partials taking the
    parameters / the optimizer."""

    def __init__(self, model: TrainableModel, optimizer: Callable | None = None,
                 scheduler: Callable | None = None, min_scale: float = MIN_SCALE,
                 lpc_order: int = 0) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.min_scale, self.lpc_order = min_scale, lpc_order
        self.save_hyperparameters({"model_config": asdict(model.config), "min_scale": min_scale,
                                   "lpc_order": lpc_order})

    def forward(self, x: torch.Tensor):
        return latent_bits(self.model, x, self.min_scale, self.lpc_order)

    def _step(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        bits = self(x)
        loss = bits.bits_per_sample()
        # Training metrics are per step and each process's own batch (rank 0's loggers
        # write them; syncing would cost a collective every step); validation metrics are
        # per epoch and averaged over the processes.
        on_step = stage == "train"
        self.log(f"{stage}/loss_bps", loss, prog_bar=True, on_step=on_step, on_epoch=not on_step,
                 batch_size=x.shape[0], sync_dist=not on_step)
        self.log_dict({f"{stage}/loss_bpc_{k}": v for k, v in bits.band_bpc().items()},
                      on_step=on_step, on_epoch=not on_step, batch_size=x.shape[0],
                      sync_dist=not on_step)
        return loss

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        factory = self.optimizer_factory or torch.optim.Adam
        opt = factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=opt),
                                 "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = asdict(self.model.config)


def read_checkpoint(path: str | os.PathLike, name: str | None = None) -> dict:
    """The contents of a Lightning checkpoint written by training; a CheckpointError (one
    line, about ``name``, default the path) for a missing file or anything that is not one."""
    name = name or os.fspath(path)
    if not Path(path).is_file():
        raise CheckpointError(f"{name}: no such checkpoint file")
    try:
        # Our own checkpoints only: Lightning's carry optimizer and loop state, not just
        # tensors, so they need the full unpickler.
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"{name}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{name}: not a Lightning checkpoint")
    return ckpt


def checkpoint_config(ckpt: dict, path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig a training checkpoint was written with (checked like a model file's)."""
    config = ckpt.get(CONFIG_KEY) or (ckpt.get("hyper_parameters") or {}).get("model_config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: not a hybridcodec training checkpoint")
    known = {f.name for f in fields(ModelConfig)}
    dropped = {k: v for k, v in config.items() if k not in known}
    if dropped:  # options the library has removed since the checkpoint was written
        log.warning("%s: ignoring model options this hybridcodec no longer has: %s", path, dropped)
    try:
        model_config = ModelConfig(**{k: v for k, v in config.items() if k in known})
        validate_config(model_config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad model config in the checkpoint ({exc})") from None
    return model_config


def model_from_checkpoint(path: str | os.PathLike) -> TrainableModel:
    """Rebuild the trained model (float weights) from a Lightning checkpoint."""
    ckpt = read_checkpoint(path)
    config = checkpoint_config(ckpt, path)
    with torch.random.fork_rng(devices=[]):
        model = TrainableModel(config)
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: its weights do not fit its model config "
                              f"({one_line(str(exc))[:300]})") from None
    return model
