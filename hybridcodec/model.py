"""The codec model: one definition used for training and for coding.

``HybridModel`` holds the learned integer lifting wavelet, one prior-mean net per detail
level (``p(d_l | s_l)``'s location, a function of the coarser band), the adaptive cascade
configuration (the causal in-band part of each prior), and the scale-class tables. The
torch parameters train in float; ``save`` exports integer weights (fixed point), so a
saved model codes bit-exactly everywhere, and its id is a hash of exactly those bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cascade import NLMS, SIGN_LMS, Cascade
from .entropy import ScaleTables, TableSpec, build_tables
from .errors import ModelError
from .intconv import IntConvNet
from .lifting import LiftingWavelet

MODEL_MAGIC = "hybridcodec-model"
MODEL_FORMAT_VERSION = 2
# Config keys that format version 2 added, with the values that reproduce version 1's
# coding: a version 1 file lacks them and must keep decoding the streams it wrote.
_VERSION_1_DEFAULTS = {"coarse_taps": 0, "feature_mu": 0, "shift_block": 0}
DEFAULT_MODEL_NAME = "default.hcm"


@dataclass
class ModelConfig:
    """Architecture and coding hyper-parameters (everything a model file must pin down)."""

    levels: int = 4
    # Long frames: the adaptive cascade starts from zero in every frame, and restarting
    # every 0.74 s (2**15 at 44.1 kHz) cost 0.5 % over 2**17 (3 s; Monkey's Audio's
    # frames are longer still). A frame stays independently decodable.
    frame_length: int = 1 << 17
    lift_taps: int = 8
    lift_hidden: int = 0
    mean_taps: int = 16
    mean_hidden: int = 0
    block_time: int = 256  # coefficients per scale block at level 1, halving per level
    min_block: int = 32
    detail_cascade: list = field(
        default_factory=lambda: [[NLMS, 64, 26], [NLMS, 16, 26], [SIGN_LMS, 16, 8]])
    coarse_cascade: list = field(
        default_factory=lambda: [[NLMS, 32, 26], [NLMS, 16, 26], [SIGN_LMS, 16, 8]])
    cross_channel: bool = True  # later channels' cascades see the previous channel's band
    # A detail band's cascade also sees this many coefficients of the coarser band around
    # each coefficient (high-passed), with adaptive weights: the per-file part of p(d | s).
    coarse_taps: int = 6
    feature_mu: int = 12  # NLMS step of those side features (see Cascade); 0 = shared
    # Wasted low bits are also found per block of this many samples of a coded signal
    # (block floating-point sources); 0: per frame only.
    shift_block: int = 512
    anchor_planes: int = 2  # precision layers: anchor bins of 2**P table symbols
    tables: dict = field(default_factory=lambda: asdict(TableSpec()))
    description: str = "untrained: LeGall 5/3 lifting, zero prior means"

    def block_length(self, level: int) -> int:
        """Scale-block length of detail level ``level`` (1 = finest); level L+1 = coarse."""
        return max(self.min_block, self.block_time >> (level - 1))


class HybridModel(nn.Module):
    """Lifting flow + priors. See the module docstring."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.wavelet = LiftingWavelet(c.levels, c.lift_taps, c.lift_hidden)
        # Mean of d_l from s_l: same geometry as a predict step (odd from even positions).
        self.means = nn.ModuleList(
            IntConvNet(c.mean_taps, c.mean_taps // 2 - 1, c.mean_hidden) for _ in range(c.levels))
        self.table_arrays = build_tables(TableSpec(**_tuple_fields(c.tables)))
        self._coding_state = None

    # -- coding-side helpers -------------------------------------------------------
    @property
    def tables(self) -> ScaleTables:
        return self._state()[0]

    @property
    def detail_cascade(self) -> Cascade:
        return self._state()[1]

    @property
    def coarse_cascade(self) -> Cascade:
        return self._state()[2]

    def _state(self):
        if self._coding_state is None:
            self._coding_state = (ScaleTables(self.table_arrays,
                                              TableSpec(**_tuple_fields(self.config.tables))),
                                  Cascade(self.config.detail_cascade, self.config.feature_mu),
                                  Cascade(self.config.coarse_cascade, self.config.feature_mu))
        return self._coding_state

    # -- export / import -----------------------------------------------------------
    def integer_state(self) -> dict[str, np.ndarray]:
        """Every integer the coding path uses, keyed by name (the exported weights)."""
        out = {}
        for name, module in self.named_modules():
            if isinstance(module, IntConvNet):
                for pname, p in module.named_parameters(recurse=False):
                    out[f"{name}.{pname}"] = module.quantized(p).numpy().astype(np.int64)
        out.update(self.table_arrays)
        return out

    def to_bytes(self) -> bytes:
        """Serialise as a model file (npz without pickles: JSON config + integer arrays)."""
        meta = {"magic": MODEL_MAGIC, "version": MODEL_FORMAT_VERSION,
                "config": asdict(self.config)}
        arrays = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)}
        arrays.update(self.integer_state())
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> str:
        """Write the model file; returns its model id."""
        data = self.to_bytes()
        tmp = Path(f"{path}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return model_id_of(self)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "model") -> "HybridModel":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("meta").tobytes().decode())
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            raise ModelError(f"{name}: not a hybridcodec model file ({type(exc).__name__})") from None
        if not isinstance(meta, dict) or meta.get("magic") != MODEL_MAGIC:
            raise ModelError(f"{name}: not a hybridcodec model file")
        version = meta.get("version")
        if version not in (1, MODEL_FORMAT_VERSION):
            raise ModelError(f"{name}: model format version {version} is not supported "
                             f"(this build reads versions 1 to {MODEL_FORMAT_VERSION})")
        try:
            config = dict(meta["config"])
            if version == 1:
                config = {**_VERSION_1_DEFAULTS, **config}
            model = cls(ModelConfig(**config))
            model.load_integer_state(arrays)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{name}: inconsistent model file ({exc})") from None
        return model

    def load_integer_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`integer_state` (weights become exact multiples of 2**-frac)."""
        for name, module in self.named_modules():
            if isinstance(module, IntConvNet):
                for pname, p in module.named_parameters(recurse=False):
                    a = arrays[f"{name}.{pname}"]
                    if tuple(a.shape) != tuple(p.shape):
                        raise ModelError(f"weight {name}.{pname} has shape {a.shape}, "
                                         f"expected {tuple(p.shape)}")
                    with torch.no_grad():
                        p.copy_(torch.from_numpy(a.astype(np.float64)) / 2.0**module.frac_bits)
        for key in self.table_arrays:
            self.table_arrays[key] = arrays[key].astype(np.int64)
        self._coding_state = None


def _tuple_fields(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def model_id_of(model: HybridModel) -> str:
    """16 hex chars of SHA-256 over the config and every integer the coder uses.

    A key added after format version 1 is left out while it holds its version 1 value:
    it then changes nothing, and an earlier model keeps the id its streams carry.
    """
    config = {k: v for k, v in asdict(model.config).items()
              if k not in _VERSION_1_DEFAULTS or v != _VERSION_1_DEFAULTS[k]}
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for key, arr in sorted(model.integer_state().items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arr, dtype="<i8").tobytes())
    return h.hexdigest()[:16]


_cache: dict[str, tuple[HybridModel, str]] = {}


def bundled_model_path(model_id: str) -> str | None:
    """Path of an earlier default model that ships with the package, by its model id.

    Every default model this package has embedded stays in ``hybridcodec/models`` as
    ``<model id>.hcm``, so streams written by an earlier release still decode without
    ``--model``.
    """
    if len(model_id) != 16 or any(c not in "0123456789abcdef" for c in model_id):
        return None
    path = resources.files("hybridcodec.models").joinpath(f"{model_id}.hcm")
    return os.fspath(path) if path.is_file() else None


def load_model(path: str | os.PathLike | None = None) -> tuple[HybridModel, str]:
    """Load a model file (``None``: the embedded default). Returns (model, model id)."""
    key = "<default>" if path is None else os.fspath(path)
    if key in _cache:
        return _cache[key]
    if path is None:
        data = resources.files("hybridcodec.models").joinpath(DEFAULT_MODEL_NAME).read_bytes()
        name = f"embedded {DEFAULT_MODEL_NAME}"
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModelError(f"{path}: cannot read model file: {exc.strerror or exc}") from None
        name = os.fspath(path)
    model = HybridModel.from_bytes(data, name)
    result = (model, model_id_of(model))
    _cache[key] = result
    return result
