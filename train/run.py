"""``train(cfg)``: build everything from a composed Hydra config and fit.

A plain function (``python -m train`` only wraps it with ``@hydra.main``), so tests and
notebooks call it with a config from Hydra's ``compose()``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf

from hybridcodec.model import ModelConfig, load_model

from .data import AudioDataModule
from .fit_priors import fit_means, search_lifting
from .module import CodecModule
from .nets import TrainableModel

log = logging.getLogger(__name__)


def build_model(model_cfg: DictConfig) -> TrainableModel:
    """The trainable model from the ``model`` config group (keys are ModelConfig fields)."""
    return TrainableModel(ModelConfig(**OmegaConf.to_container(model_cfg, resolve=True)))


def build_datamodule(data_cfg: DictConfig) -> AudioDataModule:
    """The DataModule, with data roots taken relative to the directory training started in."""
    root = data_cfg.root
    roots = [root] if isinstance(root, str) else list(root)
    return instantiate(data_cfg, root=[to_absolute_path(r) for r in roots], _convert_="all")


def initialise(model: TrainableModel, init_cfg: DictConfig,
               datamodule: AudioDataModule) -> None:
    """Starting point: LeGall 5/3 lifting (what a fresh model starts as), optionally the
    weights of an existing model file of the same architecture, optionally the lifting
    steps searched against the coded size, then (optionally) the least-squares fit of
    the mean nets on the training files."""
    source = init_cfg.get("from_model")
    if source:
        other, other_id = load_model(None if source == "default" else to_absolute_path(source))
        if other.config.levels != model.config.levels:
            raise ValueError(f"init.from_model={source} has {other.config.levels} levels, "
                             f"the configured model {model.config.levels}")
        model.load_codec(other)
        log.info("initialised from model %s (%s)", source, other_id)
    # The search and the least-squares fit work on the coder's integer model.
    codec = model.to_codec()
    if init_cfg.get("search_lifting", False):
        every = int(init_cfg.get("search_every", 3))
        gain = search_lifting(codec, datamodule.train_files[::every], log=log.info)
        log.info("lifting steps searched: %+.2f %% coded size", 100 * (gain - 1))
    if init_cfg.get("fit_means", True):
        files = datamodule.train_files
        fit_means(codec, files, int(init_cfg.get("fit_frames", 8)))
        log.info("least-squares prior means fitted on %d training files", len(files))
    model.load_codec(codec)


def train(cfg: DictConfig) -> dict:
    """Fit; returns the final metrics plus ``best_checkpoint`` and ``exported`` paths."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    datamodule = build_datamodule(cfg.data)
    model = build_model(cfg.model)
    if not cfg.get("ckpt_path"):  # a resumed run gets its weights from the checkpoint
        initialise(model, cfg.init, datamodule)
    optim = cfg.optim
    module = CodecModule(model, optimizer=instantiate(optim.optimizer),
                         scheduler=instantiate(optim.scheduler) if optim.get("scheduler") else None,
                         **OmegaConf.to_container(cfg.get("loss") or {}, resolve=True))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()
                 if c is not None and "_target_" in c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()
               if c is not None and "_target_" in c]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    ckpt_path = to_absolute_path(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    result = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    result["global_step"] = trainer.global_step
    result["best_checkpoint"] = best or None
    result["exported"] = None
    if cfg.get("export") and trainer.is_global_zero:
        out = Path(cfg.export)
        out.parent.mkdir(parents=True, exist_ok=True)
        from .export import export_checkpoint
        if best:
            model_id = export_checkpoint(best, out)
        else:
            model_id = module.model.to_codec().save(out)
        log.info("exported %s -> %s (model id %s)", best or "final weights", out, model_id)
        result["exported"] = os.fspath(out)
        result["model_id"] = model_id
    return result
