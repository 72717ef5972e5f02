"""The model file ("Model file" in docs/format.md): an npz archive of integer arrays with a
JSON ``meta`` member; validation, the version defaults, the model id and the derived
tables (layer order, class tables, anchor tables, the class-difference table)."""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from .ans import ONE, cdf_fast, cdf_from_frequencies

MODEL_MAGIC = "hybridcodec-model"
MAX_MODEL_FILE_BYTES = 1 << 26
MAX_UNPACKED_BYTES = 1 << 28
MAX_MEMBERS = 1024
MAX_TABLE_ENTRIES = 1 << 22
MAX_WEIGHT_FIXED = 1 << 18  # MAX_WEIGHT * 2^14
FRAC_BITS = 14
GROUP_DB = 6.0
OCTAVE_WEIGHT_DB = (20.0, 11.0, 5.0, 2.0, 0.0)
DELTA_EXPONENT = 2.5
ENVELOPE_SYMBOLS = 27

# keys a version 1 / version 2 file may lack, and the value they then take; a key at
# this (legacy) value is left out of the model id
V1_DEFAULTS = {"coarse_taps": 0, "feature_mu": 0, "shift_block": 0}
V2_DEFAULTS = {"payload": 2, "segment_length": 0, "envelope": {}}
LEGACY = {**V1_DEFAULTS, **V2_DEFAULTS}
KEYS = {"levels", "frame_length", "lift_taps", "lift_hidden", "mean_taps", "mean_hidden",
        "block_time", "min_block", "detail_cascade", "coarse_cascade", "cross_channel",
        "coarse_taps", "feature_mu", "shift_block", "anchor_planes", "tables", "payload",
        "segment_length", "envelope", "description"}
TABLE_KEYS = {"classes_per_octave", "min_log2_scale", "num_classes", "range_in_scales",
              "mixture_weights", "mixture_scales"}
ENVELOPE_KEYS = {"slot_ms", "erb_per_band", "fine_levels", "fine", "coarse"}
RESOLUTION_KEYS = {"step", "decimate", "scale"}


class ModelError(ValueError):
    """Not a valid model file."""


def _int(v, lo, hi, what):
    if type(v) is not int or not lo <= v <= hi:
        raise ModelError(f"config {what}: {v!r} is not an integer in {lo} .. {hi}")
    return v


def _num(v, lo, hi, what):
    if type(v) not in (int, float) or not math.isfinite(v) or not lo <= v <= hi:
        raise ModelError(f"config {what}: {v!r} is not a number in {lo} .. {hi}")
    return v


def _cascade(stages, what):
    if type(stages) is not list or not 1 <= len(stages) <= 8:
        raise ModelError(f"config {what}: 1 .. 8 stages")
    for j, st in enumerate(stages):
        if type(st) is not list or len(st) != 3:
            raise ModelError(f"config {what}: a stage is [kind, order, mu]")
        kind = _int(st[0], 0, 3, what)
        if kind in (0, 1):
            _int(st[1], 0, 256, what)
            _int(st[2], 0, 1024, what)
        elif kind == 2:
            _int(st[1], 0, 24, what)
            _int(st[2], 4, 16, what)
        else:
            _int(st[1], 0, 0, what)
            _int(st[2], 0, 4096, what)
            if j != len(stages) - 1 or len(stages) < 2:
                raise ModelError(f"config {what}: MIX only as the last of two stages or more")


def validate_config(cfg: dict) -> None:
    L = _int(cfg["levels"], 0, 12, "levels")
    n = _int(cfg["frame_length"], 1, 1 << 20, "frame_length")
    _int(cfg["lift_taps"], 2, 64, "lift_taps")
    _int(cfg["lift_hidden"], 0, 64, "lift_hidden")
    _int(cfg["mean_taps"], 2, 64, "mean_taps")
    _int(cfg["mean_hidden"], 0, 64, "mean_hidden")
    _int(cfg["block_time"], 1, 1 << 16, "block_time")
    _int(cfg["min_block"], 1, 1 << 16, "min_block")
    _cascade(cfg["detail_cascade"], "detail_cascade")
    _cascade(cfg["coarse_cascade"], "coarse_cascade")
    if type(cfg["cross_channel"]) is not bool:
        raise ModelError("config cross_channel: true or false")
    _int(cfg["coarse_taps"], 0, 32, "coarse_taps")
    _int(cfg["feature_mu"], 0, 1024, "feature_mu")
    _int(cfg["shift_block"], 0, 1 << 20, "shift_block")
    A = _int(cfg["anchor_planes"], 0, 7, "anchor_planes")
    if (L + 1) * (A + 2) > 64:
        raise ModelError("config: (levels + 1) * (anchor_planes + 2) > 64")
    t = cfg["tables"]
    if type(t) is not dict or set(t) - TABLE_KEYS:
        raise ModelError("config tables: unknown key")
    t = {"classes_per_octave": 8, "min_log2_scale": -3.0, "num_classes": 249,
         "range_in_scales": 20.0, "mixture_weights": [1.0], "mixture_scales": [1.0], **t}
    _num(t["classes_per_octave"], 1, 64, "tables.classes_per_octave")
    _num(t["min_log2_scale"], -16, 16, "tables.min_log2_scale")
    K = _int(t["num_classes"], 2, 1024, "tables.num_classes")
    _num(t["range_in_scales"], 1, 64, "tables.range_in_scales")
    for key in ("mixture_weights", "mixture_scales"):
        if type(t[key]) is not list or not 1 <= len(t[key]) <= 8:
            raise ModelError(f"config tables.{key}: 1 .. 8 numbers")
        for v in t[key]:
            _num(v, 0.001, 1000, f"tables.{key}")
    if len(t["mixture_weights"]) != len(t["mixture_scales"]):
        raise ModelError("config tables: mixture lists of different lengths")
    if t["min_log2_scale"] + (K - 1) / t["classes_per_octave"] > 40:
        raise ModelError("config tables: the largest scale is above 2^40")
    payload = cfg["payload"]
    if payload not in (2, 4) or type(payload) is not int:
        raise ModelError("config payload: 2 or 4")
    if payload == 4:  # payload 2 uses neither segment_length nor envelope: not checked
        seg = cfg["segment_length"]
        if type(seg) is not int or seg & (seg - 1) or not max(1 << L, min(1024, n)) <= seg <= n \
                or n > 1024 * seg:
            raise ModelError("config segment_length: out of range")
        env = cfg["envelope"]
        if type(env) is not dict or set(env) != ENVELOPE_KEYS:
            raise ModelError("config envelope: exactly its keys")
        _num(env["slot_ms"], 1, 100, "envelope.slot_ms")
        _num(env["erb_per_band"], 0.25, 8, "envelope.erb_per_band")
        _int(env["fine_levels"], 0, L, "envelope.fine_levels")
        for name in ("fine", "coarse"):
            r = env[name]
            if type(r) is not dict or set(r) != RESOLUTION_KEYS:
                raise ModelError(f"config envelope.{name}: exactly step, decimate, scale")
            _num(r["step"], 0.05, 4, f"envelope.{name}.step")
            _int(r["decimate"], 1, 8, f"envelope.{name}.decimate")
            _num(r["scale"], 0.05, 20, f"envelope.{name}.scale")
    d = cfg["description"]
    if type(d) is not str or len(d) > 4096:
        raise ModelError("config description: text of at most 4096 characters")


def _read_archive(data: bytes) -> dict[str, np.ndarray]:
    if len(data) > MAX_MODEL_FILE_BYTES:
        raise ModelError("model file larger than 64 MiB")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ModelError("more than 1024 members")
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
                raise ModelError("members larger than 256 MiB unpacked")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ModelError:
        raise
    except Exception as exc:  # not an npz archive, a member that does not parse
        raise ModelError(f"not a model file ({exc})") from None


class Model:
    """A parsed, validated model file."""

    def __init__(self, data: bytes):
        arrays = _read_archive(data)
        if "meta" not in arrays:
            raise ModelError("no meta member")
        meta_arr = arrays["meta"]
        if meta_arr.ndim != 1 or meta_arr.dtype != np.uint8:
            raise ModelError("meta is not a 1-D uint8 array")
        try:
            meta = json.loads(meta_arr.tobytes().decode("utf-8"))
        except ValueError:
            raise ModelError("meta is not UTF-8 JSON") from None
        if type(meta) is not dict or meta.get("magic") != MODEL_MAGIC:
            raise ModelError("not a model file (magic)")
        version = meta.get("version")
        if type(version) is not int or version not in (1, 2, 3):
            raise ModelError(f"unsupported model file version {version!r}")
        cfg = meta.get("config")
        if type(cfg) is not dict:
            raise ModelError("config is not an object")
        if set(cfg) - KEYS:
            raise ModelError(f"unknown config keys {sorted(set(cfg) - KEYS)}")
        if version == 1:
            cfg = {**V1_DEFAULTS, **cfg}
        if version <= 2:
            cfg = {**V2_DEFAULTS, **cfg}
        missing = KEYS - set(cfg)
        if missing:
            raise ModelError(f"config lacks {sorted(missing)}")
        if cfg["payload"] == 4 and type(cfg["segment_length"]) is int \
                and type(cfg["frame_length"]) is int and cfg["segment_length"] > cfg["frame_length"] > 0:
            cfg["segment_length"] = cfg["frame_length"]  # before anything else, the id included
        validate_config(cfg)
        self.version = version
        self.config = cfg
        self.arrays: dict[str, np.ndarray] = {}  # the arrays the model id covers
        self._load_arrays(arrays)
        self.model_id = self._model_id()
        self._derive()

    # -------------------------------------------------------------- arrays
    def _array(self, arrays, name, shape=None, ndim=None):
        if name not in arrays:
            raise ModelError(f"array {name} missing")
        a = arrays[name]
        if not np.issubdtype(a.dtype, np.integer):
            raise ModelError(f"array {name} is not an integer array")
        if shape is not None and a.shape != shape:
            raise ModelError(f"array {name}: shape {a.shape}, expected {shape}")
        if ndim is not None and a.ndim != ndim:
            raise ModelError(f"array {name} is not {ndim}-D")
        a = a.astype(np.int64)
        self.arrays[name] = a
        return a

    def _net(self, arrays, prefix, taps, hidden, left):
        lin = self._array(arrays, prefix + ".linear", (1, 1, taps))
        parts = [lin]
        w_in = w_out = None
        if hidden > 0:
            w_in = self._array(arrays, prefix + ".w_in", (hidden, 1, taps))
            w_out = self._array(arrays, prefix + ".w_out", (1, hidden, 1))
            parts += [w_in, w_out]
        for p in parts:
            if p.size and np.abs(p).max() > MAX_WEIGHT_FIXED:
                raise ModelError(f"{prefix}: a weight above MAX_WEIGHT")
        return Net(lin.reshape(taps), None if w_in is None else w_in.reshape(hidden, taps),
                   None if w_out is None else w_out.reshape(hidden), left)

    def _load_arrays(self, arrays):
        c = self.config
        L, lt, lh, mt, mh = c["levels"], c["lift_taps"], c["lift_hidden"], c["mean_taps"], c["mean_hidden"]
        self.predict = [self._net(arrays, f"wavelet.predict.{l}", lt, lh, lt // 2 - 1) for l in range(L)]
        self.update = [self._net(arrays, f"wavelet.update.{l}", lt, lh, lt // 2) for l in range(L)]
        self.means = [self._net(arrays, f"means.{l}", mt, mh, mt // 2 - 1) for l in range(L)]
        K = c["tables"].get("num_classes", 249)
        shift = self._array(arrays, "table_shift", (K,))
        half = self._array(arrays, "table_halfwidth", (K,))
        offset = self._array(arrays, "table_offset", (K,))
        freq = self._array(arrays, "table_freq", ndim=1)
        if freq.size > MAX_TABLE_ENTRIES:
            raise ModelError("table_freq has more than 2^22 entries")
        if shift[0] > 40 or half[0] > 1 << 16:
            raise ModelError("class 0's entries out of range")
        if K > 1 and offset[1] != 0:
            raise ModelError("table_offset[1] is not 0")
        total = 0
        for k in range(1, K):
            if not 0 <= shift[k] <= 40 or not 1 <= half[k] <= 1 << 16:
                raise ModelError(f"class {k}: table_shift or table_halfwidth out of range")
            if offset[k] != total:
                raise ModelError(f"class {k}: table_offset does not follow the previous class")
            total += 2 * int(half[k]) + 3
        if freq.size != total:
            raise ModelError("table_freq does not hold every class's frequencies")
        if freq.size and (freq.min() < 1 or freq.max() > ONE):
            raise ModelError("a frequency outside 1 .. 2^24")
        self.payload = c["payload"]
        if self.payload == 4:
            for k in range(1, K):
                o = int(offset[k])
                if int(freq[o:o + 2 * int(half[k]) + 3].sum()) != ONE:
                    raise ModelError(f"class {k}: frequencies do not sum to 2^24")
            for name, size in (("envelope_fine", ENVELOPE_SYMBOLS), ("envelope_coarse", ENVELOPE_SYMBOLS),
                               ("table_delta", 2 * K - 1)):
                a = self._array(arrays, name, (size,))
                if a.min() < 1 or int(a.sum()) != ONE:
                    raise ModelError(f"{name}: entries below 1 or a sum other than 2^24")
        self.K, self.shift, self.half, self.offset, self.freq = K, shift, half, offset, freq

    # -------------------------------------------------------------- model id
    def _model_id(self) -> str:
        cfg = {k: v for k, v in self.config.items() if not (k in LEGACY and v == LEGACY[k])}
        h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode("utf-8"))
        for name in sorted(self.arrays, key=lambda s: s.encode("utf-8")):
            h.update(name.encode("utf-8"))
            h.update(np.ascontiguousarray(self.arrays[name], dtype="<i8").tobytes())
        return h.hexdigest()[:16]

    # -------------------------------------------------------------- derived tables
    def _derive(self):
        c = self.config
        L = self.L = c["levels"]
        self.A = c["anchor_planes"]
        self.G = self.A + 2
        self.exact = self.payload == 4  # integer models (Cat, Bin) instead of Cat~, Bern~

        def weight(b):
            return OCTAVE_WEIGHT_DB[min(L - b, 4)]

        pairs = [(b, g) for b in range(L + 1) for g in range(self.G)]
        self.order = sorted(pairs, key=lambda bg: (GROUP_DB * bg[1] + weight(bg[0]), bg[0]))
        self.layer_of = {bg: i for i, bg in enumerate(self.order)}
        self.num_layers = len(self.order)
        # running sums of every class's frequencies: S(lo, hi) of "Precision groups"
        self.cum = np.concatenate([[0], np.cumsum(self.freq)]).astype(np.int64)
        self.class_bits = (self.K - 1).bit_length()
        K = self.K
        if self.exact:
            self.delta_cdf = cdf_from_frequencies(self.arrays["table_delta"].tolist())
        else:
            self.delta_cdf = cdf_fast([1.0 / (1.0 + abs(i - (K - 1))) ** DELTA_EXPONENT
                                       for i in range(2 * K - 1)])
        self._anchor = {}

    def block(self, band: int) -> int:
        """Scale-block length of band b (band 0: that of level L + 1)."""
        level = self.L - band + 1 if band else self.L + 1
        return max(self.config["min_block"], self.config["block_time"] >> (level - 1))

    def mass(self, k: int, lo: int, hi: int) -> int:
        """S(lo, hi): the frequencies of class k's symbols lo .. hi - 1, bounds clipped to
        the non-escape symbols 1 .. 2M + 1 (clipped to 1 .. 2M + 2)."""
        top = 2 * int(self.half[k]) + 2
        lo = min(max(lo, 1), top)
        hi = min(max(hi, 1), top)
        o = int(self.offset[k])
        return int(self.cum[o + hi] - self.cum[o + lo])

    def anchor_table(self, k: int, P: int):
        """(CDF of a_k, origin, jmin, nbins) of class k with P anchor planes."""
        key = (k, P)
        if key not in self._anchor:
            M = int(self.half[k])
            o = int(self.offset[k])
            h = (1 << P) >> 1
            origin = M + 1 - h
            jmin = (1 - origin) >> P
            jmax = (2 * M + 1 - origin) >> P
            nbins = jmax - jmin + 1
            a = [int(self.freq[o])]
            a += [self.mass(k, origin + (j << P), origin + ((j + 1) << P)) for j in range(jmin, jmax + 1)]
            a.append(int(self.freq[o + 2 * M + 2]))
            F = cdf_from_frequencies(a) if self.exact else cdf_fast(a)
            self._anchor[key] = (F, origin, jmin, nbins)
        return self._anchor[key]


class Net:
    """An integer convolution ("The integer convolution")."""

    def __init__(self, lin, w_in, w_out, left):
        self.lin, self.w_in, self.w_out, self.left = lin, w_in, w_out, left

    def conv(self, x, out_len: int) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        if out_len == 0 or x.size == 0:
            return np.zeros(out_len, np.int64)
        T = self.lin.size
        idx = np.clip(np.arange(out_len)[:, None] - self.left + np.arange(T)[None, :], 0, x.size - 1)
        X = x[idx]
        a = X @ self.lin
        if self.w_in is not None:
            for j in range(self.w_in.shape[0]):
                a = a + self.w_out[j] * np.maximum((X @ self.w_in[j]) >> FRAC_BITS, 0)
        return (a + (1 << (FRAC_BITS - 1))) >> FRAC_BITS


def load_models(folder) -> dict[str, Model]:
    """Every ``*.hcm`` of a folder, by the model id computed from its contents."""
    out = {}
    for path in sorted(Path(folder).glob("*.hcm")):
        m = Model(path.read_bytes())
        out[m.model_id] = m
    return out
