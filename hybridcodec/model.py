"""The codec model: one definition, shared by the coder and the training stack.

``ModelConfig`` is the architecture; ``HybridModel`` holds its integers: the learned
integer lifting wavelet, one prior-mean net per detail level (``p(d_l | s_l)``'s location,
a function of the coarser band), the adaptive cascade configuration (the causal in-band
part of each prior) and the scale-class tables. The coding path evaluates them with numpy
and numba only. Training (``train/nets.py``) builds float torch nets from the same config,
and exports their fixed-point rounding back into a ``HybridModel``; a model file holds
exactly these integers, and its id is a hash of them.

Model files are untrusted input: :meth:`HybridModel.from_bytes` checks sizes before it
decompresses anything, every config value against its range and every table for
consistency, so a malformed file is a :class:`~hybridcodec.errors.ModelError`, never a
crash, a runaway allocation or an encode that never ends.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

import numpy as np

from .cascade import NLMS, SIGN_LMS, Cascade, check_stages
from .entropy import TABLE_PRECISION, ScaleTables, TableSpec, build_tables, delta_frequencies
from .errors import ModelError
from .intconv import MAX_HIDDEN, MAX_TAPS, IntConv
from .lifting import LiftingWavelet
from .perceptual.envelope import RANGE as _ENVELOPE_RANGE, EnvelopeCoder, Resolution, \
    envelope_table
from .perceptual.grid import EnvelopeGrid, envelope_grid

ENVELOPE_SYMBOLS = 2 * _ENVELOPE_RANGE + 3
ENVELOPE_KEYS = ("envelope_fine", "envelope_coarse")
#: format 4 models also carry the integer table of scale-class differences (built from a
#: float formula once, when the model is made: a float computed at load time could
#: round differently on another machine)
FORMAT4_KEYS = ENVELOPE_KEYS + ("table_delta",)

MODEL_MAGIC = "hybridcodec-model"
MODEL_FORMAT_VERSION = 3
# Config keys that later model format versions added, with the values that reproduce the
# coding of the version before: a file lacks them and must keep decoding the streams it
# wrote. The model id leaves a key out while it holds this value, so old ids stay.
_VERSION_1_DEFAULTS = {"coarse_taps": 0, "feature_mu": 0, "shift_block": 0}
_VERSION_2_DEFAULTS = {"payload": 2, "segment_length": 0, "envelope": {}}
_LEGACY_VALUES = {**_VERSION_1_DEFAULTS, **_VERSION_2_DEFAULTS}
#: Payload rules a model selects: 2 = the layered payload of stream formats 1-3 (a tier is
#: a prefix of layers); 4 = format 4's segmented layers with the band-energy envelope.
PAYLOADS = (2, 4)
DEFAULT_MODEL_NAME = "default.hcm"

# Limits for model files read from disk (the shipped model is 75 kB, 0.9 MB unpacked).
MAX_MODEL_FILE_BYTES = 64 << 20
MAX_UNPACKED_BYTES = 256 << 20
MAX_TABLE_ENTRIES = 1 << 22
#: the arrays of :func:`~hybridcodec.entropy.build_tables`, as a model file stores them
TABLE_KEYS = ("table_shift", "table_halfwidth", "table_offset", "table_freq")


DEFAULT_ENVELOPE = {
    "slot_ms": 11.6, "erb_per_band": 1.0, "fine_levels": 2,
    "fine": {"step": 0.5, "decimate": 1, "scale": 2.0},
    "coarse": {"step": 1.0, "decimate": 2, "scale": 1.0},
}


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
    # Stages [kind, order, mu] (NLMS, SIGN_LMS, OLS, MIX): see hybridcodec.cascade.Cascade.
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
    payload: int = 4
    # Layers are truncatable in segments of this many samples (format 4).
    segment_length: int = 1 << 14
    # The band-energy envelope (hybridcodec.perceptual): slot length, band width on the
    # ERB-rate scale, quantisation step in log2 units, scale of the difference table.
    envelope: dict = field(default_factory=lambda: dict(DEFAULT_ENVELOPE))
    description: str = "untrained: LeGall 5/3 lifting, zero prior means"

    def __post_init__(self) -> None:
        # A model with short frames (tests, small experiments) cuts them whole.
        if self.payload == 4 and isinstance(self.segment_length, int) and \
                isinstance(self.frame_length, int) and self.segment_length > self.frame_length > 0:
            self.segment_length = self.frame_length

    def block_length(self, level: int) -> int:
        """Scale-block length of detail level ``level`` (1 = finest); level L+1 = coarse."""
        return max(self.min_block, self.block_time >> (level - 1))


def _int_in(cfg: ModelConfig, name: str, lo: int, hi: int) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"config {name}={v!r} is not an integer in {lo}..{hi}")


def _number_in(name: str, v, lo: float, hi: float, integer: bool = False) -> None:
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) or \
            not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"config {name}={v!r} out of range {lo}..{hi}")


def validate_config(cfg: ModelConfig) -> None:
    """Raise ValueError unless every value is one the coder handles in bounded time and
    memory, with every integer product inside int64 (see cascade.py and intconv.py)."""
    _int_in(cfg, "levels", 0, 12)
    _int_in(cfg, "frame_length", 1, 1 << 20)
    _int_in(cfg, "lift_taps", 2, MAX_TAPS)
    _int_in(cfg, "mean_taps", 2, MAX_TAPS)
    _int_in(cfg, "lift_hidden", 0, MAX_HIDDEN)
    _int_in(cfg, "mean_hidden", 0, MAX_HIDDEN)
    _int_in(cfg, "block_time", 1, 1 << 16)
    _int_in(cfg, "min_block", 1, 1 << 16)
    _int_in(cfg, "coarse_taps", 0, 32)
    _int_in(cfg, "feature_mu", 0, 1 << 10)
    _int_in(cfg, "shift_block", 0, 1 << 20)
    _int_in(cfg, "anchor_planes", 0, 7)
    if not isinstance(cfg.cross_channel, bool):
        raise ValueError("config cross_channel must be true or false")
    if not isinstance(cfg.description, str) or len(cfg.description) > 4096:
        raise ValueError("config description must be a text of at most 4096 characters")
    for name in ("detail_cascade", "coarse_cascade"):
        stages = getattr(cfg, name)
        if not isinstance(stages, (list, tuple)) or not 1 <= len(stages) <= 8:
            raise ValueError(f"config {name} must list 1..8 stages")
        for stage in stages:
            if not isinstance(stage, (list, tuple)) or len(stage) != 3 or any(
                    isinstance(v, bool) or not isinstance(v, int) for v in stage):
                raise ValueError(f"config {name}: a stage is [kind, order, mu] (integers)")
        check_stages(stages, name)  # kinds and ranges: see hybridcodec.cascade
    if (cfg.levels + 1) * (cfg.anchor_planes + 2) > 64:
        raise ValueError("config: (levels + 1) * (anchor_planes + 2) layers exceed 64")
    if cfg.payload not in PAYLOADS or isinstance(cfg.payload, bool):
        raise ValueError(f"config payload={cfg.payload!r} is not one of {PAYLOADS}")
    if cfg.payload == 4:
        seg = cfg.segment_length
        # Segments shorter than 1024 samples would let a cut come closer to the band
        # above's than the nets' reach (the one-segment margin of a cut); at most 1024
        # segments a frame (the container's limit).
        low = max(1 << cfg.levels, min(1 << 10, cfg.frame_length))
        if isinstance(seg, bool) or not isinstance(seg, int) or seg < low or \
                seg > cfg.frame_length or seg & (seg - 1) or cfg.frame_length > seg << 10:
            raise ValueError(f"config segment_length={seg!r} must be a power of two from "
                             f"{low} to frame_length, at least frame_length / 1024")
        env = cfg.envelope
        if not isinstance(env, dict) or set(env) != set(DEFAULT_ENVELOPE):
            raise ValueError(f"config envelope must have exactly the keys "
                             f"{sorted(DEFAULT_ENVELOPE)}")
        _number_in("envelope slot_ms", env["slot_ms"], 1.0, 100.0)
        _number_in("envelope erb_per_band", env["erb_per_band"], 0.25, 8.0)
        _number_in("envelope fine_levels", env["fine_levels"], 0, cfg.levels, integer=True)
        for name in ("fine", "coarse"):
            res = env[name]
            if not isinstance(res, dict) or set(res) != {"step", "decimate", "scale"}:
                raise ValueError(f"config envelope {name} must have step, decimate, scale")
            _number_in(f"envelope {name} step", res["step"], 0.05, 4.0)
            _number_in(f"envelope {name} decimate", res["decimate"], 1, 8, integer=True)
            _number_in(f"envelope {name} scale", res["scale"], 0.05, 20.0)
    if not isinstance(cfg.tables, dict):
        raise ValueError("config tables must be an object")
    known = {f.name for f in fields(TableSpec)}
    if set(cfg.tables) - known:
        raise ValueError(f"config tables: unknown keys {sorted(set(cfg.tables) - known)}")
    spec = TableSpec(**_tuple_fields(cfg.tables))
    numbers = (spec.classes_per_octave, spec.min_log2_scale, spec.num_classes,
               spec.range_in_scales)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
           for v in numbers):
        raise ValueError("config tables: parameters must be finite numbers")
    if isinstance(spec.num_classes, float) or not 2 <= spec.num_classes <= 1024 or \
            not 1 <= spec.classes_per_octave <= 64 or not -16 <= spec.min_log2_scale <= 16 \
            or not 1 <= spec.range_in_scales <= 64 or spec.min_log2_scale + \
            (spec.num_classes - 1) / spec.classes_per_octave > 40:
        raise ValueError("config tables: class parameters out of range")
    mix = (spec.mixture_weights, spec.mixture_scales)
    if any(not isinstance(m, tuple) or not 1 <= len(m) <= 8 for m in mix) or \
            len(mix[0]) != len(mix[1]) or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            or not 1e-3 <= v <= 1e3 for m in mix for v in m):
        raise ValueError("config tables: mixture weights and scales out of range")


class HybridModel:
    """Lifting flow + priors, as integers. See the module docstring."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config or ModelConfig()
        c = self.config
        self.wavelet = LiftingWavelet(c.levels, c.lift_taps, c.lift_hidden)
        # Mean of d_l from s_l: same geometry as a predict step (odd from even positions).
        self.means = [IntConv(c.mean_taps, c.mean_taps // 2 - 1, c.mean_hidden)
                      for _ in range(c.levels)]
        self._table_arrays: dict[str, np.ndarray] | None = None
        self._coding_state = None

    @property
    def table_arrays(self) -> dict[str, np.ndarray]:
        """The scale-class tables (``table_shift``, ``table_halfwidth``, ``table_offset``,
        ``table_freq``) and, for a format 4 model, the envelope's tables; built from the
        config only when a model file did not bring them: a loaded model would build
        them (20 ms) just to replace them."""
        if self._table_arrays is None:
            c = self.config
            arrays = build_tables(TableSpec(**_tuple_fields(c.tables)), normalise=c.payload == 4)
            if c.payload == 4:
                arrays["envelope_fine"] = envelope_table(c.envelope["fine"]["scale"])
                arrays["envelope_coarse"] = envelope_table(c.envelope["coarse"]["scale"])
                arrays["table_delta"] = delta_frequencies(arrays["table_shift"].size)
            self._table_arrays = arrays
        return self._table_arrays

    @table_arrays.setter
    def table_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self._table_arrays = arrays
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

    def envelope_coder(self, sample_rate: int) -> EnvelopeCoder:
        """The envelope's quantiser and coder on the grid of ``sample_rate``."""
        cache = self._state()[3]
        coder = cache.get(sample_rate)
        if coder is None:
            env = self.config.envelope
            res = [Resolution(float(env[k]["step"]), int(env[k]["decimate"]),
                              self.table_arrays[f"envelope_{k}"]) for k in ("fine", "coarse")]
            coder = EnvelopeCoder(res[0], res[1], int(env["fine_levels"]),
                                  self.envelope_grid(sample_rate).band_level)
            cache[sample_rate] = coder
        return coder

    def envelope_grid(self, sample_rate: int) -> EnvelopeGrid:
        """The envelope's time-frequency grid at ``sample_rate`` (format 4 models)."""
        env = self.config.envelope
        return envelope_grid(sample_rate, self.config.levels, float(env["slot_ms"]),
                             float(env["erb_per_band"]))

    def _state(self):
        if self._coding_state is None:
            c = self.config
            self._coding_state = (ScaleTables(self.table_arrays,
                                              TableSpec(**_tuple_fields(self.config.tables)),
                                              exact=c.payload == 4),
                                  Cascade(self.config.detail_cascade, self.config.feature_mu),
                                  Cascade(self.config.coarse_cascade, self.config.feature_mu),
                                  {})
        return self._coding_state

    def nets(self) -> dict[str, IntConv]:
        """Every net by its model-file name prefix (``wavelet.predict.0``, ``means.3``, ...)."""
        out = {}
        for level in range(self.config.levels):
            out[f"wavelet.predict.{level}"] = self.wavelet.predict[level]
            out[f"wavelet.update.{level}"] = self.wavelet.update[level]
        for level, net in enumerate(self.means):
            out[f"means.{level}"] = net
        return out

    # -- export / import -----------------------------------------------------------
    def integer_state(self) -> dict[str, np.ndarray]:
        """Every integer the coding path uses, keyed by name (the exported weights)."""
        out = {}
        for prefix, net in self.nets().items():
            for name, a in net.arrays().items():
                out[f"{prefix}.{name}"] = a
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
        """Load a model file's bytes, validating them as untrusted input."""
        arrays = _read_npz(data, name)
        try:
            meta = json.loads(arrays.pop("meta").tobytes().decode())
        except (KeyError, ValueError, UnicodeDecodeError, RecursionError):  # (nested too deep)
            raise ModelError(f"{name}: not a hybridcodec model file") from None
        if not isinstance(meta, dict) or meta.get("magic") != MODEL_MAGIC:
            raise ModelError(f"{name}: not a hybridcodec model file")
        version = meta.get("version")
        if version not in (1, 2, MODEL_FORMAT_VERSION):
            raise ModelError(f"{name}: model format version {version} is not supported "
                             f"(this build reads versions 1 to {MODEL_FORMAT_VERSION})")
        try:
            config = meta["config"]
            if not isinstance(config, dict):
                raise ValueError("config is not an object")
            if version == 1:
                config = {**_VERSION_1_DEFAULTS, **config}
            if version <= 2:
                config = {**_VERSION_2_DEFAULTS, **config}
            # Every key is in the file or has its version's value: nothing comes from this
            # build's defaults, which a later release may change (and the model id with them)
            missing = {f.name for f in fields(ModelConfig)} - set(config)
            if missing:
                raise ValueError(f"missing config keys {sorted(missing)}")
            unknown = set(config) - {f.name for f in fields(ModelConfig)}
            if unknown:
                raise ValueError(f"unknown config keys {sorted(unknown)}")
            cfg = ModelConfig(**config)
            validate_config(cfg)
            model = cls(cfg)
            model.load_integer_state(arrays)
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            detail = f"missing array {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ModelError(f"{name}: inconsistent model file ({detail})") from None
        return model

    def load_integer_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`integer_state`; raises ValueError on a shape, range or
        table inconsistency."""
        for prefix, net in self.nets().items():
            net.set_arrays({k[len(prefix) + 1:]: v for k, v in arrays.items()
                            if k.startswith(prefix + ".")})
        tables = {}
        keys = TABLE_KEYS + (FORMAT4_KEYS if self.config.payload == 4 else ())
        for key in keys:
            a = np.asarray(arrays[key])
            if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"table {key} must be a 1-D integer array")
            tables[key] = a.astype(np.int64)
        _check_tables(tables, TableSpec(**_tuple_fields(self.config.tables)),
                      self.config.payload == 4)
        self.table_arrays = tables
        self._coding_state = None


def _read_npz(data: bytes, name: str) -> dict[str, np.ndarray]:
    """The arrays of a model file, sizes checked before anything is decompressed: the
    members' sizes, and the size each .npy header declares (numpy allocates it before it
    reads the data) against its member's."""
    if len(data) > MAX_MODEL_FILE_BYTES:
        raise ModelError(f"{name}: model file too large ({len(data)} bytes)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > 1024 or sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
                raise ModelError(f"{name}: model file unpacks to too much data")
            for info in infos:
                _check_npy_header(zf, info, name)
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ModelError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:  # zipfile, zlib and numpy's format errors all mean the same
        raise ModelError(f"{name}: not a hybridcodec model file") from None


def _check_npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> None:
    """A member that np.load reads as an array (it starts with the .npy magic, whatever
    its name) must hold the data its header declares, in a plain dtype."""
    with zf.open(info) as fp:
        if fp.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
            return
        fp.seek(0)
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:  # 3.0: utf-8 field names, which no model file has
            raise ModelError(f"{name}: not a hybridcodec model file")
    if dtype.hasobject or math.prod(shape) * dtype.itemsize > info.file_size:
        raise ModelError(f"{name}: inconsistent model file (member {info.filename} declares "
                         f"an array of {shape} {dtype} that it does not hold)")


def _check_tables(t: dict[str, np.ndarray], spec: TableSpec, exact: bool) -> None:
    """The class tables must describe ``num_classes`` valid frequency tables (summing to
    exactly 2**TABLE_PRECISION each where ``exact``), and format 4's envelope table must
    be a valid integer model."""
    shift, half, offset, freq = (t["table_shift"], t["table_halfwidth"], t["table_offset"],
                                 t["table_freq"])
    k = spec.num_classes
    if not shift.size == half.size == offset.size == k:
        raise ValueError(f"tables: {k} classes expected")
    if freq.size > MAX_TABLE_ENTRIES:
        raise ValueError("tables: too many entries")
    if (shift[1:] < 0).any() or (shift > 40).any() or (half[1:] < 1).any() \
            or (half > 1 << 16).any():
        raise ValueError("tables: class shift or width out of range")
    sizes = 2 * half[1:] + 3
    expect = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if k > 1 else np.zeros(0, np.int64)
    if (offset[1:] != expect).any() or freq.size != int(sizes.sum()):
        raise ValueError("tables: offsets do not match the class sizes")
    if freq.size and (freq.min() < 1 or freq.max() > 1 << TABLE_PRECISION):
        raise ValueError("tables: frequencies out of range")
    if exact:
        sums = np.add.reduceat(freq, offset[1:]) if k > 1 else np.zeros(0, np.int64)
        if (sums != 1 << TABLE_PRECISION).any():
            raise ValueError("tables: a class's frequencies do not sum to 2**24")
        for key, size in (("envelope_fine", ENVELOPE_SYMBOLS),
                          ("envelope_coarse", ENVELOPE_SYMBOLS), ("table_delta", 2 * k - 1)):
            table = t.get(key)
            if table is None or table.size != size or table.min() < 1 or \
                    int(table.sum()) != 1 << TABLE_PRECISION:
                raise ValueError(f"tables: invalid {key} table")


def _tuple_fields(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def model_id_of(model: HybridModel) -> str:
    """16 hex chars of SHA-256 over the config and every integer the coder uses.

    A key added after format version 1 is left out while it holds its version 1 value:
    it then changes nothing, and an earlier model keeps the id its streams carry.
    """
    config = {k: v for k, v in asdict(model.config).items()
              if k not in _LEGACY_VALUES or v != _LEGACY_VALUES[k]}
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
            if os.path.getsize(path) > MAX_MODEL_FILE_BYTES:
                raise ModelError(f"{path}: model file too large")
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModelError(f"{path}: cannot read model file: {exc.strerror or exc}") from None
        name = os.fspath(path)
    model = HybridModel.from_bytes(data, name)
    result = (model, model_id_of(model))
    _cache[key] = result
    return result
