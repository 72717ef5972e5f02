"""``train(cfg)``: build everything from a composed Hydra config and fit.

A plain function (``python -m train`` only wraps it with ``@hydra.main``), so tests and
notebooks call it with a config from Hydra's ``compose()``.

Where the model's architecture (every :class:`~hybridcodec.model.ModelConfig` field but
the description) comes from:

* a fresh model: the ``model`` config group, after presets (``experiment=``) and overrides;
* ``init.from_model=FILE|default``: the model file's, since its weights only fit it; the
  configured values that differ are listed in the log and not used;
* ``ckpt_path=CKPT`` (resume): the checkpoint's, likewise.

A ``model.<key>`` given on the command line that contradicts the model file or checkpoint
is an error: the user asked for something the weights cannot be.

At the end the model is exported (``export``): the best checkpoint of this run by the
monitored metric when a validation ran in this fit, else the final weights; the log says
which. A resumed run never exports a checkpoint of the run it resumed from.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Collection
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import lightning as L
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate, to_absolute_path
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from hybridcodec.errors import ModelError
from hybridcodec.model import HybridModel, ModelConfig, load_model, validate_config

from .data import AudioDataModule
from .errors import CheckpointError, TrainingError
from .export import export_checkpoint, export_model
from .fit_priors import fit_means, search_lifting
from .module import CodecModule, checkpoint_config, read_checkpoint
from .nets import TrainableModel

log = logging.getLogger(__name__)

if not OmegaConf.has_resolver("cuda_or_cpu"):
    # conf/trainer/ddp.yaml: DDP over the CUDA GPUs where torch sees some, else over CPU
    # processes (gloo). Lightning's "auto" would also consider MPS and TPUs, which are not
    # what the preset is for.
    OmegaConf.register_new_resolver(
        "cuda_or_cpu", lambda: "gpu" if torch.cuda.is_available() else "cpu")


def quiet_library_noise() -> None:
    """Silence messages of the libraries under training that a user can do nothing about."""
    # Lightning 2.6 still builds a class torch 2.13 deprecates: nothing to act on here.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    # Resuming mid-epoch: the DataModule's state (crops drawn so far, saved in every
    # checkpoint) makes the resumed run draw new crops, which is what matters here.
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended "
                            "before the epoch ended")
    # Resuming into a new run directory: train() exports only this run's checkpoints and
    # logs where the resumed run came from.
    warnings.filterwarnings("ignore", message="The dirpath has changed from")
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in rank_zero_log.filters):
        rank_zero_log.addFilter(_NoAdverts())


class _NoAdverts(logging.Filter):
    """Drops Lightning's "Tip: try installing ..." lines (advertising, not training state)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def command_line_model_keys(overrides: list[str], model_cfg: DictConfig) -> set[str]:
    """The ``model`` fields the command line sets (Hydra's task overrides): ``model.levels=3``,
    ``+model.coarse_cascade=...``; choosing the group (``model=NAME``) sets all its keys."""
    keys: set[str] = set()
    for override in OverridesParser.create().parse_overrides(overrides):
        name = override.key_or_group
        if name == "model":
            keys |= set(model_cfg)
        elif name.startswith("model."):
            keys.add(name.split(".")[1])
    return keys


def configured_model(model_cfg: DictConfig) -> ModelConfig:
    """The ModelConfig of the ``model`` config group, checked as the coder checks a model file."""
    values = OmegaConf.to_container(model_cfg, resolve=True)
    known = [f.name for f in fields(ModelConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TrainingError(f"model.{unknown[0]} is not a model field (fields: {', '.join(known)})")
    config = ModelConfig(**values)
    try:
        validate_config(config)
    except ValueError as exc:
        raise TrainingError(str(exc).replace("config ", "model.", 1)) from None
    return config


def build_model(model_cfg: DictConfig) -> TrainableModel:
    """The trainable model from the ``model`` config group (keys are ModelConfig fields)."""
    return TrainableModel(configured_model(model_cfg))


def build_datamodule(data_cfg: DictConfig) -> AudioDataModule:
    """The DataModule, with data roots taken relative to the directory training started in."""
    root = data_cfg.root
    roots = [root] if isinstance(root, str) else list(root)
    return instantiate(data_cfg, root=[to_absolute_path(r) for r in roots], _convert_="all")


def _plain(config: ModelConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))  # tuples and lists compare equal


def _pairs(values: dict, keys: list[str], prefix: str = "") -> str:
    return ", ".join(f"{prefix}{k}={json.dumps(values[k], separators=(',', ':'))}" for k in keys)


def adopt_architecture(source: str, theirs: ModelConfig, configured: ModelConfig,
                       explicit: Collection[str] = ()) -> ModelConfig:
    """The architecture of weights from ``source`` (a model file or checkpoint): ``theirs``,
    with the configured description (the trained model is a new one). The configured
    values that differ are logged as unused; where one was set on the command line
    (``explicit``), a TrainingError says which and how to fix it."""
    a, b = _plain(theirs), _plain(configured)
    differ = [k for k in a if k != "description" and a[k] != b[k]]
    given = [k for k in differ if k in explicit]
    if given:
        option = source.split("=", 1)[0]
        wanted = _pairs(b, given, "model.")
        raise TrainingError(f"{source} has {_pairs(a, given)}, but the command line sets {wanted}; "
                            f"weights fix their architecture: drop {wanted}, or drop {option} "
                            "to train a fresh model")
    if differ:
        log.info("%s: training its architecture (%s); not used from the config: %s",
                 source, _pairs(a, differ), _pairs(b, differ))
    return ModelConfig(**{**asdict(theirs), "description": configured.description})


@dataclass
class Start:
    """Where training starts: the architecture, and the weights it starts from."""

    config: ModelConfig
    weights: HybridModel | None = None  # init.from_model's model
    weights_name: str = ""  # "default (e40987291b5fd215)", for the log
    resume: str | None = None  # the checkpoint a resumed run continues (absolute path)
    resume_step: int = 0


def starting_point(cfg: DictConfig, explicit: Collection[str] = ()) -> Start:
    """The architecture and starting weights ``cfg`` asks for (see the module docstring);
    a missing or unusable checkpoint or model file is a one-line error."""
    configured = configured_model(cfg.model)
    if cfg.get("ckpt_path"):
        path, name = to_absolute_path(cfg.ckpt_path), f"ckpt_path={cfg.ckpt_path}"
        ckpt = read_checkpoint(path, name)
        config = adopt_architecture(name, checkpoint_config(ckpt, name), configured, explicit)
        return Start(config, resume=path, resume_step=int(ckpt.get("global_step", 0)))
    source = (cfg.get("init") or {}).get("from_model")
    if source:
        try:
            model, model_id = load_model(None if source == "default" else to_absolute_path(source))
        except ModelError as exc:
            detail = str(exc).removeprefix(f"{to_absolute_path(source)}: ")
            raise CheckpointError(f"init.from_model={source}: {detail}") from None
        config = adopt_architecture(f"init.from_model={source}", model.config, configured, explicit)
        return Start(config, weights=model, weights_name=f"{source} ({model_id})")
    return Start(configured)


def initialise(model: TrainableModel, init_cfg: DictConfig, datamodule: AudioDataModule,
               weights: HybridModel | None = None, weights_name: str = "") -> None:
    """Starting point: LeGall 5/3 lifting (what a fresh model starts as) or the weights of
    ``weights`` (``init.from_model``), then optionally the lifting steps searched against
    the coded size (``init.search_lifting``), then optionally the least-squares fit of the
    mean nets (``init.fit_means``; default: only for a fresh model, so fine-tuning keeps
    the model file's means)."""
    if weights is not None:
        model.load_codec(weights)
        log.info("initialised from model %s", weights_name)
    search = init_cfg.get("search_lifting", False)
    fit = init_cfg.get("fit_means")
    if fit is None:
        fit = weights is None
    if not (search or fit):
        if weights is not None:
            log.info("prior means kept as in the model file (init.fit_means=true refits them)")
        return
    # The search and the least-squares fit work on the coder's integer model.
    codec = model.to_codec()
    if search:
        every = int(init_cfg.get("search_every", 3))
        gain = search_lifting(codec, datamodule.train_files[::every], log=log.info)
        log.info("lifting steps searched: %+.2f %% coded size", 100 * (gain - 1))
    if fit:
        files = datamodule.train_files
        fit_means(codec, files, int(init_cfg.get("fit_frames", 8)))
        log.info("least-squares prior means fitted on %d training files", len(files))
    model.load_codec(codec)


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """A GPU trainer on a machine without one is a one-line error, not Lightning's traceback."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not (torch.cuda.is_available()
                                               or torch.backends.mps.is_available()):
        raise TrainingError(
            f"trainer.accelerator={accelerator}, but torch finds no GPU on this machine: use "
            "trainer=cpu, or trainer=ddp (CPU processes where there is no GPU)")


class _Validations(L.Callback):
    """Counts the validations of this fit (a resumed run's restored state does not count)."""

    def __init__(self) -> None:
        self.count = 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.count += 1


def build_trainer(cfg: DictConfig, extra_callbacks: list[L.Callback]) -> L.Trainer:
    """The Lightning Trainer of ``cfg.trainer`` with the configured callbacks and loggers."""
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()
               if c is not None and "_target_" in c]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()
                 if c is not None and "_target_" in c]
    if not loggers and any(isinstance(c, LearningRateMonitor) for c in callbacks):
        # It raises without a logger; with none (e.g. '~logger') there is nothing to monitor into.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return instantiate(cfg.trainer, callbacks=callbacks + extra_callbacks, logger=loggers or False)


def export_source(trainer: L.Trainer, validations: int) -> tuple[str | None, str]:
    """(checkpoint to export, or None for the final weights; why, for the log)."""
    cb = trainer.checkpoint_callback
    if cb is None or not cb.monitor:
        return None, "no checkpoint callback monitors a metric"
    if not validations:
        return None, f"no validation ran in this run, so it has no best {cb.monitor}"
    best = cb.best_model_path
    # A resumed run's callback starts with the best path of the run it came from: only
    # a checkpoint in this run's directory is this run's.
    if not best or Path(best).resolve().parent != Path(cb.dirpath).resolve():
        return None, f"no checkpoint of this run has a {cb.monitor}"
    score = cb.best_model_score
    return best, f"best {cb.monitor} {'?' if score is None else f'{float(score):.4f}'} of this run"


def train(cfg: DictConfig, explicit_model_keys: Collection[str] = ()) -> dict:
    """Fit; returns the final metrics plus ``best_checkpoint`` (the exported checkpoint,
    None for the final weights), ``exported`` and ``model_id``. ``explicit_model_keys``:
    the ``model`` fields the command line set (see :func:`command_line_model_keys`)."""
    quiet_library_noise()
    # Under DDP every process runs this function (Lightning starts the others with the
    # same command line): rank 0 speaks for all, the others only warn.
    rank = rank_zero_only.rank
    if rank:
        logging.getLogger(__package__).setLevel(logging.WARNING)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    # The checks that need no training first, so a bad input is the only line printed.
    check_accelerator(cfg.trainer)
    start = starting_point(cfg, explicit_model_keys)
    datamodule = build_datamodule(cfg.data)
    datamodule.train_files  # noqa: B018 - a missing or empty data folder fails here, not after init
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=rank == 0)
    model = TrainableModel(start.config)
    validations = _Validations()
    trainer = build_trainer(cfg, [validations])
    if start.resume:
        log.info("resuming %s at step %d (init.* not used); this run writes to %s",
                 start.resume, start.resume_step, cfg.paths.output_dir)
    elif trainer.world_size > 1 and rank:
        pass  # DDP broadcasts rank 0's initial weights to every process
    else:
        initialise(model, cfg.init, datamodule, start.weights, start.weights_name)
    optim = cfg.optim
    module = CodecModule(model, optimizer=instantiate(optim.optimizer),
                         scheduler=instantiate(optim.scheduler) if optim.get("scheduler") else None,
                         **OmegaConf.to_container(cfg.get("loss") or {}, resolve=True))
    trainer.fit(module, datamodule=datamodule, ckpt_path=start.resume)

    result = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best, why = export_source(trainer, validations.count)
    result.update(global_step=trainer.global_step, best_checkpoint=best, exported=None)
    if cfg.get("export") and trainer.is_global_zero:
        out = Path(cfg.export)
        out.parent.mkdir(parents=True, exist_ok=True)
        if best:
            model_id = export_checkpoint(best, out)
            log.info("exported %s (%s) -> %s (model id %s)", best, why, out, model_id)
        else:
            model_id = export_model(module.model, out)
            log.info("exported the final weights of step %d (%s) -> %s (model id %s)",
                     trainer.global_step, why, out, model_id)
        result["exported"] = os.fspath(out)
        result["model_id"] = model_id
    return result
