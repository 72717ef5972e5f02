"""LightningModule: a thin training wrapper around :class:`train.nets.TrainableModel`.

The nets are the float twins of the codec model's, built from the same config and
exported to the same integers (:meth:`TrainableModel.to_codec`); the loss is
:func:`train.loss.latent_bits`, the estimated bits per sample of the integer latents.
Optimizer and scheduler arrive as partials from the ``optim`` config group.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, fields
from typing import Callable

import lightning as L
import torch

from hybridcodec.model import ModelConfig

from .loss import MIN_SCALE, latent_bits
from .nets import TrainableModel

CONFIG_KEY = "hybridcodec_model_config"  # where checkpoints keep the ModelConfig

log = logging.getLogger(__name__)


class CodecModule(L.LightningModule):
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


def model_from_checkpoint(path: str) -> TrainableModel:
    """Rebuild the trained model (float weights) from a Lightning checkpoint."""
    # Our own checkpoints only: Lightning's carry optimizer and loop state, not just tensors.
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    config = ckpt.get(CONFIG_KEY) or ckpt.get("hyper_parameters", {}).get("model_config")
    if config is None:
        raise ValueError(f"{path}: not a hybridcodec training checkpoint")
    known = {f.name for f in fields(ModelConfig)}
    dropped = {k: v for k, v in config.items() if k not in known}
    if dropped:  # options the library has removed since the checkpoint was written
        log.warning("%s: ignoring model options this hybridcodec no longer has: %s", path, dropped)
    with torch.random.fork_rng(devices=[]):
        model = TrainableModel(ModelConfig(**{k: v for k, v in config.items() if k in known}))
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(state)
    return model
