"""A long fuzz campaign: the decoder, the model-file loader and the command line, over
thousands of seeded cases (a benchmark, not a test: CI keeps the bounded fuzz of
``tests/test_fuzz.py``, whose mutations and outcome rules this reuses from
``tests/fuzzcases.py``).

    python -m benchmarks.fuzz_campaign --cases 10000 --seed 1 --out /tmp/fuzz
    python -m benchmarks.fuzz_campaign --seed 1 --only v4/cd-stereo/lossless:17 --out /tmp/x

Case families (see ``families``):

* **streams**, lossless and lossy: a source signal (corpus excerpts of
  ``../shared/data/corpus/music``: CD stereo, 96 kHz 24-bit, mono 24-bit, 5 and 8
  channels, an odd rate; synthetic 8-bit, 3-channel 24-bit and edge-value signals) coded
  in a layout (format 4 with the segmented payload, several frames with an index or one
  compact frame, frames of two segments, the layered payload in format 4 normal and
  compact and in the format 3 layout, the shipped model on a compact clip), losslessly or
  cut to a lower tier with :func:`hybridcodec.truncation.truncate_file` (a named tier or
  a bit rate), then mutated by ``fuzzcases`` and decoded strictly and with
  ``ignore_errors`` under :func:`fuzzcases.outcome`'s rules. For a lower tier, "exact"
  means the unmutated lossy stream's decode with the same fill and seed (the case index
  picks one of :data:`FILLS`).
* **model files**: the shipped model file, its zip bytes flipped, cut and spliced; its
  meta JSON, config values, weight arrays and tables edited (out of range, wrong types,
  missing keys, wrong shapes and dtypes, inconsistent tables); its members replaced by
  oversized or lying ones (zip bombs, npy headers declaring huge arrays, forged sizes,
  thousands of members); and edits that keep a valid model. Each must fail to load with
  a one-line :class:`~hybridcodec.errors.ModelError`, or load and then code a short clip
  losslessly (or refuse to encode with a one-line ModelError: frames that are not a
  power of two fit only the older stream formats, which such a model still decodes),
  within the time limit and an allocation cap.
* **the command line** in a subprocess (``python -m hybridcodec decode / verify / info``
  of mutated streams, ``encode`` / ``decode --model`` with mutated models): the exit
  status must be a documented one (never 70), stderr one ``hybridcodec: ...`` line per
  error and no traceback, no output or temporary file left behind on failure, and the
  result the one the Python API gives for the same input.

Every case has a time limit (``CASE_SECONDS`` in-process, an alarm; a worker process
that does not answer within ``HARD_SECONDS`` is killed and restarted, the case counted
as a hang); the huge-length and header cases and the model loads have an allocation
cap (tracemalloc).
Outcomes are counted by family and by kind in markdown tables on stdout; ``--out DIR``
keeps ``cases.csv`` (every case), ``report.md`` and ``failures/`` (the input of every
failing case, with a note of what went wrong and the command that re-runs it alone).
Exit status: 0 when no case found a bug, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import dataclasses
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "corpus" / "music"
sys.path.insert(0, str(REPO / "tests"))  # fuzzcases and its helpers (v4raw, nonseekable)

CASE_SECONDS = 10.0  # per in-process case (typical: 0.05 s); over it: a hang
HARD_SECONDS = 60.0  # no answer from the worker for this long: killed, a hang
CLI_SECONDS = 60.0  # per command-line subprocess
CLI_CASE_SECONDS = 150.0  # a command-line case runs up to two subprocesses and the API
BUILD_SECONDS = 300.0  # encoding a family's streams
MODEL_ALLOC = 64 << 20  # allocation cap of a model case, plus twice what its zip declares
ADDRESS_SPACE = 16 << 30  # a worker's RLIMIT_AS: a runaway allocation fails, the host lives

FILLS = (("sample", 0), ("zero", 0), ("sample", 1234), ("mean", 0))
#: kinds whose cases depend on the rng: later rounds of a family repeat only these
RANDOM_KINDS = frozenset({"bitflip", "insert", "delete", "header", "frames", "garbage", "forged"})
#: shares of the cases
MODEL_SHARE = 0.15
CLI_SHARE = 0.03
CLI_KINDS = ("decode", "verify", "info", "encode --model", "decode --model")

#: bug categories, the table's last columns ("harness error": this script failed to make a
#: case, not the codec)
BUGS = ("exit 70 / exception", "wrong audio", "hang", "over-memory", "multi-line message",
        "other bug", "harness error")


# --------------------------------------------------------------------------- families


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    channels: int
    bits: int
    rate: int
    corpus: str | None = None  # a file of CORPUS, else synthetic
    synth: str = "tone"  # the synthetic signal (also where the corpus file is missing)


SOURCES = {s.name: s for s in (
    Source("cd-stereo", 2, 16, 44100, "cellar-01.flac"),
    Source("hires-24", 2, 24, 96000, "cellar-29.flac"),
    Source("mono-24", 1, 24, 44100, "cellar-62.flac"),
    Source("5ch", 5, 16, 44100, "cellar-40.flac"),
    Source("8ch", 8, 16, 44100, "cellar-43.flac"),
    Source("odd-rate", 2, 16, 35467, "cellar-19.flac"),
    Source("u8-8k", 1, 8, 8000),
    Source("3ch-24-48k", 3, 24, 48000, synth="chirp-square-noise"),
    Source("edge-16", 2, 16, 22050, synth="edges"),
)}


@dataclasses.dataclass(frozen=True)
class Layout:
    model: str | None  # a fuzz model's name (see models()), None: the shipped default
    samples: int
    mutate: str  # "v4", "compact" or "v3"
    tiers: tuple = ()  # lower tiers its streams are also cut to


_FRAME = 512  # fuzzcases.FRAME (not imported here: the parent process stays light)
LAYOUTS = {
    "v4": Layout("segmented", 3 * _FRAME + 100, "v4", ("medium", "tiny", "kbps35")),
    "v4-compact": Layout("segmented", _FRAME - 100, "compact"),  # one unit: no lower tier
    "v4-seg2": Layout("seg2", 3 * 2048 + 100, "v4", ("tiny", "kbps35", "medium")),
    "v4-layered": Layout("layered", 3 * _FRAME + 100, "v4", ("high", "low", "kbps35")),
    "v4-compact-layered": Layout("layered", _FRAME - 100, "compact", ("low", "kbps35", "high")),
    "v3": Layout("layered", 3 * _FRAME + 100, "v3", ("kbps35", "high", "low")),
    "v4-default": Layout(None, 3000, "compact"),
}
DEFAULT_MODEL_SOURCES = ("cd-stereo", "mono-24", "5ch")


def families() -> list[str]:
    """Every stream family, ``layout/source/tier``: each layout codes every source
    losslessly and cut to one of its tiers (in turn)."""
    out = []
    for li, (layout, spec) in enumerate(LAYOUTS.items()):
        for si, source in enumerate(SOURCES):
            if spec.model is None and source not in DEFAULT_MODEL_SOURCES:
                continue
            out.append(f"{layout}/{source}/lossless")
            if spec.tiers:
                out.append(f"{layout}/{source}/{spec.tiers[(li + si) % len(spec.tiers)]}")
    return out


def group_of(family: str, kind: str = "") -> str:
    """The table row of a case: ``lossless v4``, ``model config``, ``cli verify``..."""
    if family == "model":
        return f"model {kind.split(':')[0]}"
    if family == "cli":
        return f"cli {kind}"
    layout, _, tier = family.split("/")
    return f"{'lossless' if tier == 'lossless' else 'lossy'} {layout}"


def plan(cases: int) -> list[tuple[str, int]]:
    """(family, cases) for a campaign of ``cases`` cases: the stream families share what
    the model files and the command line leave."""
    cli = max(len(CLI_KINDS), round(cases * CLI_SHARE))
    model = max(1, round(cases * MODEL_SHARE))
    streams = families()
    left = max(cases - cli - model, len(streams))
    per, extra = divmod(left, len(streams))
    out = [(f, per + (i < extra)) for i, f in enumerate(streams)]
    return out + [("model", model), ("cli", cli)]


# --------------------------------------------------------------------------- workers: state


class CaseTimeout(BaseException):
    """The alarm of a case (not an Exception: the codec's handlers must not catch it)."""


class Worker:
    """What a worker process builds once and keeps: models, streams, the base model."""

    def __init__(self, seed: int, out: Path | None) -> None:
        import fuzzcases  # numba and the codec: only in workers

        self.fc = fuzzcases
        self.seed = seed
        self.out = out
        self.tmp = Path(tempfile.mkdtemp(prefix="fuzz-campaign-"))
        self.built: dict[str, Built] = {}
        self._models: dict[str, str] | None = None
        self._base = None
        self._bombs: dict[str, bytes] = {}
        self.timed_out = False

    # -- models
    def models(self) -> dict[str, str | None]:
        if self._models is None:
            from hybridcodec.model import HybridModel, ModelConfig

            self._models = self.fc.fuzz_models(self.tmp)
            seg2 = self.tmp / "seg2.hcm"
            HybridModel(ModelConfig(frame_length=2048, segment_length=1024)).save(seg2)
            self._models["seg2"] = str(seg2)
        return {**self._models, None: None}

    def base_model(self) -> "BaseModel":
        if self._base is None:
            self._base = BaseModel()
        return self._base

    # -- the alarm
    @contextlib.contextmanager
    def alarm(self, seconds: float):
        self.timed_out = False

        def ring(signum, frame):
            self.timed_out = True
            raise CaseTimeout()

        old = signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    # -- failures
    def save(self, record: dict, data: bytes | None, suffix: str, note: str = "") -> None:
        if self.out is None:
            return
        folder = self.out / "failures"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{record['family'].replace('/', '_')}-{record['index']}"
        if data is not None:
            (folder / f"{stem}{suffix}").write_bytes(data)
        (folder / f"{stem}.txt").write_text(
            f"case {record['family']}:{record['index']} ({record['kind']}), seed {self.seed}\n"
            f"bug: {record['bug']}\n{record['detail']}\n{note}\n"
            f"re-run alone: python -m benchmarks.fuzz_campaign --seed {self.seed} "
            f"--only {record['family']}:{record['index']} --out DIR\n")

    def stage(self, data: bytes) -> None:
        """Keep the input of the case about to run where the parent finds it if the case
        hangs and the worker is killed."""
        if self.out is not None:
            (self.out / f"current-{os.getpid()}.bin").write_bytes(data)


def _record(family: str, index: int, kind: str) -> dict:
    return {"family": family, "group": group_of(family, kind), "kind": kind, "index": index,
            "strict": "", "recovering": "", "ranged": "", "bug": "", "detail": "",
            "seconds": 0.0}


def _classify(w: Worker, record: dict, exc: BaseException) -> None:
    """Fill in the bug of a case that raised ``exc``."""
    fc = w.fc
    if w.timed_out or isinstance(exc, CaseTimeout):
        record["bug"], record["detail"] = "hang", f"over {CASE_SECONDS:g} s"
    elif isinstance(exc, fc.FuzzBug):
        record["bug"] = "other bug" if exc.category not in BUGS else exc.category
        record["detail"] = str(exc)
    elif isinstance(exc, MemoryError):
        record["bug"], record["detail"] = "over-memory", "MemoryError"
    else:
        record["bug"] = "exit 70 / exception"
        record["detail"] = "".join(traceback.format_exception(exc)).strip()


# --------------------------------------------------------------------------- stream cases


@dataclasses.dataclass
class Built:
    family: str
    target: object  # fuzzcases.Target
    other: bytes
    mutate: object
    rounds: dict = dataclasses.field(default_factory=dict)

    def round(self, w: Worker, r: int) -> list[tuple[str, bytes]]:
        if r not in self.rounds:
            rng = random.Random(f"{w.seed}:{self.family}:{r}")
            cases = list(self.mutate(self.target.data, self.other, rng))
            self.rounds[r] = cases if r == 0 else [c for c in cases if c[0] in RANDOM_KINDS]
        return self.rounds[r]

    def case(self, w: Worker, index: int) -> tuple[str, bytes]:
        r = 0
        while index >= len(self.round(w, r)):
            index -= len(self.round(w, r))
            r += 1
            if r > 1000:
                raise IndexError("no such case")
        return self.round(w, r)[index]

    def selection(self, w: Worker, quota: int) -> list[int]:
        """``quota`` case indices: a seeded sample of round 0 (the unmutated control
        first), or all of it and then later rounds."""
        n0 = len(self.round(w, 0))
        if quota <= n0:
            rng = random.Random(f"{w.seed}:{self.family}:pick")
            return [0] + sorted(rng.sample(range(1, n0), quota - 1)) if quota else []
        out, r = list(range(n0)), 1
        while len(out) < quota:
            out += range(len(out), len(out) + len(self.round(w, r)))
            r += 1
        return out[:quota]


def source_audio(source: Source, n: int, other: bool = False) -> np.ndarray:
    """``n`` samples of ``source`` (integers at its bit depth); ``other``: a different
    signal of the same format (frames spliced in from another stream)."""
    rng = np.random.default_rng(zlib.crc32(source.name.encode()) if not other else 7)
    lo, hi = -(1 << (source.bits - 1)), (1 << (source.bits - 1)) - 1
    t = np.arange(n)[:, None]
    if other:
        x = rng.normal(0, hi / 8, (n, source.channels))
        return np.clip(np.round(x), lo, hi).astype(np.int64)
    if source.corpus and (CORPUS / source.corpus).is_file():
        import soundfile as sf

        path = CORPUS / source.corpus
        start = sf.info(str(path)).frames // 3
        x, _ = sf.read(str(path), dtype="int32", always_2d=True, frames=n, start=start)
        if x.shape == (n, source.channels) or x.shape[1] > source.channels and len(x) == n:
            return x[:, :source.channels].astype(np.int64) >> (32 - source.bits)
    if source.synth == "tone":  # a tone and noise, clipped in the middle
        x = 0.9 * hi * np.sin(2 * np.pi * 300 * t / source.rate) + rng.normal(0, hi / 20,
                                                                               (n, 1))
        x = np.repeat(x, source.channels, axis=1)
        x[n // 3: n // 2] *= 3
    elif source.synth == "chirp-square-noise":  # the last: incompressible
        x = np.empty((n, 3))
        x[:, 0] = 0.5 * hi * np.sin(2 * np.pi * (50 + 20 * t[:, 0]) * t[:, 0] / source.rate)
        x[:, 1] = np.where((t[:, 0] // 37) % 2, hi, lo)
        x[:, 2] = rng.integers(lo, hi + 1, n)
    else:  # edge-16: silence, DC at the extremes, wasted low bits, a clipped sine
        x = np.zeros((n, 2))
        x[n // 3: n // 2, 0] = lo
        x[n // 2:, 0] = 1.5 * hi * np.sin(t[n // 2:, 0] * 0.05)
        x[:, 1] = 8 * np.round(np.cumsum(rng.normal(0, 200, n)) / 8)
        x[-50:, 1] = hi
    return np.clip(np.round(x), lo, hi).astype(np.int64)


def build(w: Worker, family: str) -> Built:
    if family in w.built:
        return w.built[family]
    fc = w.fc
    import v4raw
    from hybridcodec.truncation import truncate_file

    layout_name, source_name, tier = family.split("/")
    layout, source = LAYOUTS[layout_name], SOURCES[source_name]
    model = w.models()[layout.model]
    n = layout.samples
    x = source_audio(source, n)
    data = fc.encode(x, model, source.bits, source.rate)
    other = fc.encode(source_audio(source, n, other=True), model, source.bits, source.rate)
    if layout.mutate == "v3":
        data, other = fc.as_version_3(data), fc.as_version_3(other)
    lossless = tier == "lossless"
    if not lossless:
        seconds = n / source.rate
        kw = {"tier": tier} if not tier.startswith("kbps") else \
            {"kbps": round(int(tier[4:]) / 100 * 8 * len(data) / seconds / 1000, 1)}

        def cut(stream: bytes) -> bytes:
            src, dst = w.tmp / "full.hyb", w.tmp / "cut.hyb"
            src.write_bytes(stream)
            truncate_file(src, dst, overwrite=True, **kw)
            return dst.read_bytes()

        data, other = cut(data), cut(other)
    if layout.mutate == "v3":
        header_end, mutate = fc.parse(data)[0], fc.mutations
    elif layout.mutate == "v4":
        header_end, mutate = v4raw.frame_spans(data)["header"][1], fc.mutations_v4
    else:
        header_end, mutate = v4raw.body_end(data), fc.mutations_compact
    if lossless:
        expect = {key: x for key in FILLS}
    else:
        expect = {}
        for fill, seed in FILLS:
            y = fc.decode(data, model, True, source.bits, fill=fill, seed=seed)[0]
            z = fc.decode(data, model, False, source.bits, fill=fill, seed=seed)[0]
            if not np.array_equal(y, z):
                raise fc.FuzzBug("wrong audio", f"{family}: the unmutated stream decodes to "
                                 f"other audio from a pipe (fill {fill}, seed {seed})")
            expect[fill, seed] = y
    payload = 2 if layout.model == "layered" else 4
    target = fc.Target(data, header_end, model, source.bits, expect, lossless=lossless,
                       fill_crosses_frames=payload == 4)
    built = Built(family, target, other, mutate)
    w.built[family] = built
    return built


def run_stream_case(w: Worker, built: Built, index: int, kind: str, mutated: bytes) -> dict:
    fc = w.fc
    record = _record(built.family, index, kind)
    fill, seed = FILLS[(index // 2) % len(FILLS)]
    seekable = index % 2 == 0
    watch = fc.allocation_cap(fc.MAX_ALLOC, f"{kind} case") \
        if kind in ("huge-length", "header") else contextlib.nullcontext()
    start = time.perf_counter()
    try:
        with w.alarm(CASE_SECONDS), watch:
            forgeable = kind in fc.FORGING_KINDS
            record["strict"], record["recovering"] = fc.outcome(
                built.target, kind, mutated, seekable, fill, seed, forgeable=forgeable)
            if seekable:  # and a seek into the stream
                n = len(built.target.expect[fill, seed])
                record["ranged"] = fc.ranged_outcome(built.target, kind, mutated,
                                                     n // 3 + 7, n - n // 5, fill, seed,
                                                     forgeable)
    except BaseException as exc:  # noqa: BLE001 - every escape is an outcome here
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, CaseTimeout):
            raise
        _classify(w, record, exc)
    record["seconds"] = time.perf_counter() - start
    if not record["bug"] and record["seconds"] > CASE_SECONDS:
        record["bug"], record["detail"] = "hang", f"{record['seconds']:.1f} s"
    if record["bug"]:
        w.save(record, mutated, ".hyb", f"decoded {'seekable' if seekable else 'from a pipe'}"
               f", fill {fill}, seed {seed}; model {built.target.model}")
    return record


# --------------------------------------------------------------------------- model cases


class BaseModel:
    """The shipped model file, and its parts for structured edits."""

    def __init__(self) -> None:
        from importlib import resources

        from hybridcodec.model import DEFAULT_MODEL_NAME

        self.data = resources.files("hybridcodec.models").joinpath(DEFAULT_MODEL_NAME) \
            .read_bytes()
        with np.load(io.BytesIO(self.data), allow_pickle=False) as z:
            self.arrays = {k: z[k] for k in z.files}
        self.meta = json.loads(self.arrays["meta"].tobytes())
        self.weights = sorted(k for k in self.arrays if "." in k)
        self.tables = sorted(k for k in self.arrays if k != "meta" and "." not in k)
        with zipfile.ZipFile(io.BytesIO(self.data)) as zf:
            self.members = [(i.header_offset, i.filename) for i in zf.infolist()]


def npz(arrays: dict, meta: dict | str | bytes | None = None, compress: bool = True) -> bytes:
    arrays = dict(arrays)
    if meta is not None:
        text = meta if isinstance(meta, (str, bytes)) else json.dumps(meta, sort_keys=True)
        arrays["meta"] = np.frombuffer(text.encode() if isinstance(text, str) else text,
                                       np.uint8)
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", method) as zf:
        warnings.simplefilter("ignore")  # a duplicate name is meant
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _npy(a: np.ndarray, shape=None, descr=None) -> bytes:
    """``a`` as .npy bytes; ``shape`` / ``descr``: what the header declares instead."""
    buf = io.BytesIO()
    header = {"descr": descr or np.lib.format.dtype_to_descr(a.dtype), "fortran_order": False,
              "shape": tuple(a.shape if shape is None else shape)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + np.ascontiguousarray(a).tobytes()


def _members(base: BaseModel) -> list[tuple[str, bytes]]:
    return [(f"{k}.npy", _npy(v)) for k, v in base.arrays.items()]


_SPECIAL = [0, 1, -1, 2, 3, 4, 7, 8, 15, 16, 17, 24, 25, 64, 255, 256, 1023, 1024, 4096,
            2**16, 2**20, 2**20 + 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -2**63, 10**30,
            0.0, -0.0, 0.5, 1.5, 1e-300, 1e308, float("nan"), float("inf"), float("-inf"),
            True, False, None, "", "4", "x" * 5000, [], [1], [[0, 16, 26]], [0, 16, 26], {},
            {"a": 1}]


def _bad_value(rng: random.Random, original):
    r = rng.random()
    if isinstance(original, (int, float)) and not isinstance(original, bool) and r < 0.4:
        return rng.choice([original + 1, original - 1, original * 2, -original,
                           original // 2 if isinstance(original, int) else original / 2,
                           original * 1000, float(original)])
    return rng.choice(_SPECIAL)


def _paths(obj, prefix=()) -> list[tuple]:
    """Every path (keys and list indices) into a JSON value."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _valid_stages(rng: random.Random) -> list:
    stages = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice([0, 1, 2])
        if kind == 2:
            stages.append([2, rng.randint(0, 24), rng.randint(4, 16)])
        else:
            stages.append([kind, rng.choice([0, 1, 2, 8, 32, 256]), rng.choice([0, 1, 26, 1024])])
    if rng.random() < 0.5:
        stages.append([3, 0, rng.randint(0, 4096)])
    return stages


def _valid_edit(rng: random.Random, config: dict) -> str:
    """Change ``config`` to another valid model's (the same arrays fit): any value of the
    ranges docs/format.md gives; returns what changed."""
    key = rng.choice(["cross_channel", "coarse_taps", "feature_mu", "shift_block",
                      "blocks", "detail_cascade", "coarse_cascade", "envelope", "frames",
                      "anchor_planes", "payload", "description"])
    if key == "cross_channel":
        config[key] = not config[key]
    elif key == "coarse_taps":
        config[key] = rng.randint(0, 32)
    elif key == "feature_mu":
        config[key] = rng.choice([0, 1, 1024, rng.randint(0, 1024)])
    elif key == "shift_block":
        config[key] = rng.choice([0, 1, 2**20, rng.randint(1, 2**20)])
    elif key == "blocks":
        config["block_time"] = rng.choice([1, 2**16, rng.randint(1, 4096)])
        config["min_block"] = rng.choice([1, 2**16, rng.randint(1, 4096)])
    elif key in ("detail_cascade", "coarse_cascade"):
        config[key] = _valid_stages(rng)
    elif key == "envelope":
        env = config["envelope"]
        env["slot_ms"] = rng.choice([1.0, 100.0, rng.uniform(1, 100)])
        env["erb_per_band"] = rng.choice([0.25, 8.0, rng.uniform(0.25, 8)])
        env["fine_levels"] = rng.randint(0, config["levels"])
        for res in (env["fine"], env["coarse"]):
            res["step"] = rng.choice([0.05, 4.0, rng.uniform(0.05, 4)])
            res["decimate"] = rng.randint(1, 8)
            res["scale"] = rng.choice([0.05, 20.0, rng.uniform(0.05, 20)])
    elif key == "frames":  # any length; a format 4 stream needs a power of two
        shift = rng.randint(10, 20)
        config["frame_length"] = rng.choice([1 << shift, rng.randint(1 << 10, 1 << 20)])
        low = max(10, config["frame_length"].bit_length() - 11)
        config["segment_length"] = 1 << rng.randint(low, config["frame_length"].bit_length()
                                                    - 1)
    elif key == "anchor_planes":
        config[key] = rng.randint(0, 7)
    elif key == "payload":  # the layered payload: segment_length and envelope unused
        config[key] = 2
        if rng.random() < 0.5:
            config["frame_length"] = rng.choice([1, 2, 16, 1 << 20])
    else:
        config[key] = "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 4096)))
    return key


def model_case(w: Worker, index: int) -> tuple[str, bytes]:
    """(kind, model file bytes) of model case ``index``."""
    rng = random.Random(f"{w.seed}:model:{index}")
    base = w.base_model()
    data = base.data
    n = len(data)
    meta = json.loads(json.dumps(base.meta))
    config = meta["config"]
    arrays = dict(base.arrays)
    kind = rng.choices(["zip bytes", "meta", "config", "weights", "tables", "members",
                        "valid edit"], weights=[22, 8, 24, 16, 10, 10, 10])[0]
    if kind == "zip bytes":
        d = bytearray(data)
        how = rng.choice(["flip", "flip-structure", "truncate", "truncate-member", "insert",
                          "delete", "append", "prepend", "double"])
        if how in ("flip", "flip-structure"):
            for _ in range(rng.choice([1, 1, 2, 3, 8])):
                if how == "flip":
                    pos = rng.randrange(n)
                else:  # local headers, the central directory, the end record
                    offset = rng.choice(base.members)[0]
                    pos = rng.choice([offset + rng.randrange(40), n - 22 + rng.randrange(22),
                                      n - rng.randrange(1, 1200)])
                d[pos] ^= 1 << rng.randrange(8)
        elif how == "truncate":
            d = d[:rng.randrange(n)]
        elif how == "truncate-member":
            d = d[:max(0, rng.choice(base.members)[0] + rng.randint(-1, 40))]
        elif how == "insert":
            pos = rng.randrange(n + 1)
            d[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 100])))
        elif how == "delete":
            pos = rng.randrange(n)
            del d[pos:pos + rng.choice([1, 4, 100, 5000])]
        elif how == "append":
            d += bytes(rng.randrange(256) for _ in range(rng.choice([1, 22, 1000])))
        elif how == "prepend":
            d[0:0] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 30, 1000])))
        else:
            d += data
        return f"zip bytes: {how}", bytes(d)
    if kind == "meta":
        how = rng.choice(["magic", "version", "no-config", "config-type", "not-json",
                          "not-utf8", "deep", "huge", "duplicate-keys", "dtype", "no-meta",
                          "extra-keys"])
        if how == "magic":
            meta["magic"] = rng.choice(["", "hybridcodec-model ", None, 1, "HYBRIDCODEC-MODEL"])
        elif how == "version":
            meta["version"] = rng.choice([0, 1, 2, 4, 99, -1, "3", 3.0, True, None, 2**64])
        elif how == "no-config":
            del meta["config"]
        elif how == "config-type":
            meta["config"] = rng.choice([None, [], "config", 3, [config]])
        elif how == "extra-keys":
            meta[rng.choice(["x", "config2", ""])] = rng.choice(_SPECIAL)
        if how == "not-json":
            text = json.dumps(meta)[:rng.randrange(1, 400)]
        elif how == "not-utf8":
            text = json.dumps(meta).encode()
            text = text[:50] + bytes([0xFF, 0xFE, 0x80]) + text[50:]
        elif how == "deep":
            depth = rng.choice([1000, 10**4, 10**5])
            text = rng.choice(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth,
                               json.dumps(meta)[:-1] + ', "x": ' + "[" * depth + "]" * depth
                               + "}"])
        elif how == "huge":
            text = json.dumps({**meta, "pad": "x" * rng.choice([10**6, 10**7])})
        elif how == "duplicate-keys":
            text = json.dumps(meta)[:-1] + ', "config": ' + json.dumps(
                {**config, "levels": rng.choice([3, 13, "4"])}) + "}"
        else:
            text = json.dumps(meta, sort_keys=True)
        if how == "dtype":
            raw = np.frombuffer(text.encode(), np.uint8)
            arrays["meta"] = rng.choice([raw.astype(np.int64), raw.astype(np.float32),
                                         raw[: len(raw) // 2 * 2].reshape(2, -1), raw[:0],
                                         np.array(text), np.frombuffer(raw[: len(raw) // 4 * 4]
                                                                       .tobytes(), "<u4")])
            return f"meta: {how}", npz(arrays)
        if how == "no-meta":
            arrays.pop("meta")
            return f"meta: {how}", npz(arrays)
        return f"meta: {how}", npz(arrays, text)
    if kind in ("config", "valid edit"):
        if kind == "valid edit":
            what = _valid_edit(rng, config)
            return f"valid edit: {what}", npz(arrays, meta)
        paths = _paths(config)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            path = rng.choice(paths)
            how = rng.random()
            try:
                parent, key = _get(config, path[:-1]), path[-1]
                if how < 0.75:
                    parent[key] = _bad_value(rng, parent[key])
                elif how < 0.9:
                    del parent[key]
                elif isinstance(parent, dict):
                    parent[rng.choice(["extra", "levelz", ""])] = rng.choice(_SPECIAL)
                else:
                    parent.append(rng.choice(_SPECIAL))
            except (KeyError, IndexError, TypeError):
                pass  # an earlier edit changed what this path leads to
        if rng.random() < 0.2:  # an older format version: its defaults apply
            meta["version"] = rng.choice([1, 2])
        return f"config: {path[0]}", npz(arrays, meta)
    if kind == "weights":
        key = rng.choice(base.weights)
        a = arrays[key]
        how = rng.choice(["dtype", "shape", "value", "value", "extreme", "missing", "extra",
                          "renamed"])
        if how == "dtype":
            t = rng.choice([np.float64, np.float32, np.int32, np.int16, np.int8, np.uint8,
                            np.uint64, np.bool_, np.complex128, ">i8", "U3", "S3"])
            arrays[key] = a.astype(t)
            if rng.random() < 0.3 and arrays[key].dtype.kind == "f":
                arrays[key].flat[rng.randrange(a.size)] = rng.choice(
                    [np.nan, np.inf, 0.5, 1e30])
        elif how == "shape":
            arrays[key] = rng.choice([a.reshape(-1), a[..., :-1], np.concatenate([a, a], -1),
                                      a[None], a.reshape(-1)[:0], np.array(0, a.dtype),
                                      a.reshape(a.shape[::-1])])
        elif how in ("value", "extreme"):
            a = a.copy()
            limit = 16 * 2**14
            values = [limit, limit + 1, -limit, -limit - 1, 2**62, -2**63, 2**63 - 1] \
                if how == "value" else [limit, -limit]
            for _ in range(rng.choice([1, 2, a.size])):
                a.flat[rng.randrange(a.size)] = rng.choice(values)
            arrays[key] = a
        elif how == "missing":
            del arrays[key]
        elif how == "extra":
            arrays[rng.choice(["means.9.linear", "wavelet.predict.0.w_in", "means.0.w_out",
                               "wavelet.predict.4.linear", "junk"])] = a
        else:
            arrays[key.replace(".linear", ".linearx")] = arrays.pop(key)
        return f"weights: {how}", npz(arrays)
    if kind == "tables":
        key = rng.choice(base.tables)
        a = arrays[key].copy()
        how = rng.choice(["entry", "entry", "sum-kept", "shape", "dtype", "missing"])
        if how == "entry":
            i = rng.randrange(a.size)
            a[i] = rng.choice([a[i] + 1, a[i] - 1, 0, -1, 2**24, 2**24 + 1, 41, 2**62, -2**63])
            arrays[key] = a
        elif how == "sum-kept":  # two entries moved: sums kept, the model stays valid
            i = rng.randrange(a.size - 1)
            j = i + 1  # mostly the same class
            step = rng.choice([1, int(a[i]) - 1])
            a[i] -= step
            a[j] += step
            arrays[key] = a
        elif how == "shape":
            arrays[key] = rng.choice([a[:-1], np.concatenate([a, a[-1:]]), a.reshape(1, -1),
                                      a[:0]])
        elif how == "dtype":
            arrays[key] = a.astype(rng.choice([np.float64, np.int32, np.uint8, np.int16]))
        else:
            del arrays[key]
        return f"tables: {how}", npz(arrays)
    # members: zip structure behind valid CRCs
    how = rng.choice(["many", "bomb", "bomb", "npy-shape", "npy-shape", "declared-size",
                      "stored", "bzip2", "lzma", "duplicate", "encrypted-flag", "directory",
                      "bomb-under-limit" if rng.random() < 0.1 else "npy-descr"])
    members = _members(base)
    if how == "many":
        members += [(f"x{i}.npy", _npy(np.zeros(1, np.uint8))) for i in range(
            rng.choice([1000, 1100, 5000]))]
        return f"members: {how}", _zip(members)
    if how in ("bomb", "bomb-under-limit"):
        size = rng.choice([300 << 20, 1 << 30]) if how == "bomb" else 200 << 20
        return f"members: {how}", _bomb(w, members, size)
    if how == "npy-shape":
        i = rng.randrange(len(members))
        name = members[i][0]
        a = base.arrays[name[:-4]]
        shape = rng.choice([(2**27,), (2**28,), (2**40,), (2**62,), (2**14, 2**14),
                            (a.size + 1,), (-1,)])
        members[i] = (name, _npy(a, shape=shape))
        return f"members: {how}", _zip(members)
    if how == "npy-descr":
        i = rng.randrange(len(members))
        name = members[i][0]
        members[i] = (name, _npy(base.arrays[name[:-4]], descr=rng.choice(
            ["|O", "<i16", "<V8", "<U2", "<M8[s]", "<f2", "|b1", "x"])))
        return f"members: {how}", _zip(members)
    if how == "declared-size":
        d = bytearray(_zip(members))
        cd = [i for i in range(len(d) - 4) if d[i:i + 4] == b"PK\x01\x02"]
        pos = rng.choice(cd)
        size = struct.unpack_from("<I", d, pos + 24)[0]
        struct.pack_into("<I", d, pos + 24, rng.choice(
            [0, 1, size - 1, size + 1, size * 2, 2**28, 2**32 - 2, 0xFFFFFFFF]))
        return f"members: {how}", bytes(d)
    if how in ("stored", "bzip2", "lzma"):
        method = {"stored": zipfile.ZIP_STORED, "bzip2": zipfile.ZIP_BZIP2,
                  "lzma": zipfile.ZIP_LZMA}[how]
        return f"members: {how}", _zip(members, method)  # a valid zip: the model loads
    if how == "duplicate":
        i = rng.randrange(len(members))
        name = members[i][0]
        other = rng.choice(members)[1]
        return f"members: {how}", _zip(members + [(name, other)])
    if how == "encrypted-flag":
        d = bytearray(_zip(members))
        cd = [i for i in range(len(d) - 4) if d[i:i + 4] == b"PK\x01\x02"]
        pos = rng.choice(cd)
        d[pos + 8] |= 1
        return f"members: {how}", bytes(d)
    return f"members: {how}", _zip(members + [("sub/", b""), ("sub/meta.npy", members[0][1])])


def _bomb(w: Worker, members: list, size: int) -> bytes:
    """The model's members and one more, ``pad.npy``: ``size`` zero bytes of uint8 array,
    deflated (a few hundred kB)."""
    key = str(size)
    if key not in w._bombs:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)
            header = _npy(np.zeros(0, np.uint8), shape=(size,))
            with zf.open("pad.npy", "w", force_zip64=True) as fp:
                fp.write(header)
                chunk = bytes(1 << 20)
                for _ in range(size >> 20):
                    fp.write(chunk)
        w._bombs[key] = buf.getvalue()
    return w._bombs[key]


_CLIPS = ((2000, 2, 16, 44100), (1500, 1, 24, 48000), (1200, 3, 8, 8000))


def _clip(index: int) -> tuple[np.ndarray, int, int]:
    n, channels, bits, rate = _CLIPS[index % len(_CLIPS)]
    x = source_audio(Source("clip", channels, bits, rate), n)
    return x, bits, rate


def _declared(data: bytes) -> int:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return sum(i.file_size for i in zf.infolist())
    except Exception:  # noqa: BLE001 - not a zip: nothing declared
        return 0


def run_model_case(w: Worker, index: int, kind: str, data: bytes) -> dict:
    """Load a model file: a one-line ModelError, or a model that codes a clip exactly."""
    from hybridcodec import model as model_module
    from hybridcodec.errors import HybridCodecError, ModelError
    from hybridcodec.model import MAX_UNPACKED_BYTES

    fc = w.fc
    record = _record("model", index, kind)
    path = w.tmp / f"model-{index}.hcm"
    path.write_bytes(data)
    cap = MODEL_ALLOC + 2 * min(_declared(data), MAX_UNPACKED_BYTES)
    start = time.perf_counter()
    try:
        with w.alarm(CASE_SECONDS):
            try:
                with fc.allocation_cap(cap, f"model {kind}"):  # (the load: coding is not
                    _, model_id = model_module.load_model(path)  # slowed by tracing)
            except ModelError as exc:
                record["strict"] = fc.one_line(exc, kind)
            except HybridCodecError as exc:
                raise fc.FuzzBug("other bug", f"{kind}: {type(exc).__name__} (not a "
                                 f"ModelError) loading a model: {exc}") from None
            else:
                x, bits, rate = _clip(index)
                try:
                    stream = fc.encode(x, str(path), bits, rate)
                except ModelError as exc:  # e.g. frames format 4 cannot hold: a model
                    # that only decodes older streams, said in the codec's own line
                    record["strict"] = "loaded: refused to encode"
                    fc.one_line(exc, kind)
                    stream = None
                except HybridCodecError as exc:
                    raise fc.FuzzBug("other bug", f"{kind}: the model loads but cannot code "
                                     f"a clip: {type(exc).__name__}: {exc}") from None
                if stream is not None:
                    try:
                        y, _ = fc.decode(stream, str(path), True, bits)
                    except HybridCodecError as exc:
                        raise fc.FuzzBug("other bug", f"{kind}: a stream the model encoded "
                                         f"does not decode: {type(exc).__name__}: {exc}") \
                            from None
                    if not (y.shape == x.shape and np.array_equal(y, x)):
                        raise fc.FuzzBug("wrong audio", f"{kind}: the model loads and its "
                                         "lossless round trip is not exact")
                    same = model_id == model_module.load_model(None)[1]
                    record["strict"] = "loaded: exact" + (" (same model)" if same else "")
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, CaseTimeout):
            raise
        _classify(w, record, exc)
    finally:
        model_module._cache.pop(str(path), None)
        path.unlink(missing_ok=True)
    record["seconds"] = time.perf_counter() - start
    if not record["bug"] and record["seconds"] > CASE_SECONDS:
        record["bug"], record["detail"] = "hang", f"{record['seconds']:.1f} s"
    if record["bug"]:
        w.save(record, data, ".hcm")
    return record


# --------------------------------------------------------------------------- CLI cases

#: stream families the command-line cases draw from (cheap to build, every layout)
CLI_FAMILIES = ("v4/cd-stereo/lossless", "v4/cd-stereo/medium", "v4-compact/edge-16/lossless",
                "v4-seg2/mono-24/tiny", "v4-layered/u8-8k/lossless", "v3/5ch/lossless",
                "v4-compact-layered/odd-rate/kbps35", "v3/hires-24/low",
                "v4-default/cd-stereo/lossless")
DOCUMENTED_EXITS = {0, 1, 2, 3, 4, 5, 6}


def _cli(args: list[str], cwd: Path, timeout: float = CLI_SECONDS):
    env = {k: v for k, v in os.environ.items() if k != "HYBRIDCODEC_DEBUG"}
    env["PYTHONPATH"] = str(REPO)
    try:
        p = subprocess.run([sys.executable, "-m", "hybridcodec", *args], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired:
        return None, "", ""
    return p.returncode, p.stdout, p.stderr


def _cli_problem(fc, rc, stderr: str, what: str, one_error: bool = False) -> None:
    """The rules for any command: a documented exit, stderr lines of its own, one line
    for the error of a failed command (``one_error``: exit 4 too; verify lists each
    damaged frame)."""
    if rc is None:
        raise fc.FuzzBug("hang", f"{what}: no exit within {CLI_SECONDS:g} s")
    if rc == 70:
        raise fc.FuzzBug("exit 70 / exception", f"{what}: exit 70: {stderr.strip()}")
    if "Traceback" in stderr:
        raise fc.FuzzBug("other bug", f"{what}: a traceback on stderr: {stderr[-2000:]}")
    if rc not in DOCUMENTED_EXITS:
        raise fc.FuzzBug("other bug", f"{what}: undocumented exit {rc}: {stderr.strip()}")
    lines = stderr.splitlines()
    if any(not line.startswith("hybridcodec: ") for line in lines):
        raise fc.FuzzBug("multi-line message", f"{what}: stderr {stderr!r}")
    errors = [line for line in lines if ": warning: " not in line and ": damaged" not in line]
    if (rc in (1, 2, 3, 5) or one_error and rc == 4) and len(errors) != 1:
        raise fc.FuzzBug("multi-line message", f"{what}: exit {rc} with stderr {stderr!r}")


def _left_behind(fc, folder: Path, keep: set[str], what: str) -> None:
    extra = sorted(p.name for p in folder.iterdir() if p.name not in keep)
    if extra:
        raise fc.FuzzBug("other bug", f"{what}: failed, and left {extra} behind")


def _api(call):
    """(result, exit code) of an API call: its result and 0, or None and the error's code."""
    from hybridcodec.errors import HybridCodecError

    try:
        return call(), 0
    except HybridCodecError as exc:
        return None, exc.exit_code


def run_cli_case(w: Worker, index: int) -> tuple[dict, bytes | None]:
    from hybridcodec import model as model_module

    fc = w.fc
    kind = CLI_KINDS[index % len(CLI_KINDS)]
    rng = random.Random(f"{w.seed}:cli:{index}")
    record = _record("cli", index, kind)
    folder = Path(tempfile.mkdtemp(dir=w.tmp, prefix=f"cli-{index}-"))
    data = None
    start = time.perf_counter()
    try:
        with w.alarm(CLI_CASE_SECONDS):
            if kind in ("encode --model", "decode --model"):
                model_index = rng.randrange(10**6)
                _, data = model_case(w, model_index)
                data, suffix = data, ".hcm"
                record["kind"] = f"{kind} ({model_index})"
                _cli_model_case(w, record, kind, data, folder, model_index)
            else:
                family = rng.choice(CLI_FAMILIES)
                built = build(w, family)
                case = 0 if rng.random() < 0.2 else rng.randrange(len(built.round(w, 0)))
                mut_kind, data = built.case(w, case)
                suffix = ".hyb"
                record["kind"] = f"{kind} ({family}:{case} {mut_kind})"
                _cli_stream_case(w, record, kind, built, mut_kind, data, folder, index)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, CaseTimeout):
            raise
        _classify(w, record, exc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for key in [k for k in model_module._cache if k.startswith(str(folder))]:
            del model_module._cache[key]
    record["kind"] = kind if not record["bug"] else record["kind"]
    record["seconds"] = time.perf_counter() - start
    if record["bug"]:
        w.save(record, data, suffix if data is not None else "")
    return record, data


def _cli_stream_case(w: Worker, record: dict, kind: str, built: Built, mut_kind: str,
                     data: bytes, folder: Path, index: int) -> None:
    from hybridcodec import codec

    fc, t = w.fc, built.target
    src = folder / "in.hyb"
    src.write_bytes(data)
    model = [] if t.model is None else ["--model", t.model]
    what = f"{kind} of {record['kind']}"
    if kind == "info":
        rc, out, err = _cli(["info", str(src)], folder)
        _cli_problem(fc, rc, err, what, one_error=True)
        text, code = _api(lambda: codec.describe_stream(str(src)))
        if rc != code or (rc == 0 and out.rstrip("\n") != text.rstrip("\n")):
            raise fc.FuzzBug("other bug", f"{what}: exit {rc}, the API's code {code}")
    elif kind == "verify":
        ignore = index % 2 == 1
        rc, out, err = _cli(["verify", str(src), *model, "-q"] + ["--ignore-errors"] * ignore,
                            folder)
        _cli_problem(fc, rc, err, what)
        report, code = _api(lambda: codec.verify_file(str(src), model=t.model,
                                                      ignore_errors=ignore))
        if report is not None:
            code = 0 if report.ok else 4
        if rc != code:
            raise fc.FuzzBug("other bug", f"{what}: exit {rc}, the API says {code}")
    else:  # decode
        ignore = (index // len(CLI_KINDS)) % 2 == 1
        fill, seed = FILLS[(index // 2) % len(FILLS)]
        out_path = folder / "out.wav"
        rc, _, err = _cli(["decode", str(src), "-o", str(out_path), *model, "-q",
                           "--fill", fill, "--seed", str(seed)] + ["--ignore-errors"] * ignore,
                          folder)
        _cli_problem(fc, rc, err, what, one_error=True)
        # the API's decodes follow the rules (fuzzcases.outcome raises if not) ...
        fc.outcome(t, mut_kind, data, True, fill, seed, forgeable=mut_kind in fc.FORGING_KINDS)
        # ... and the command line does what the API does
        api, code = _api(lambda: fc.decode(data, t.model, True, t.bits, fill=fill, seed=seed,
                                           ignore_errors=ignore))
        if api is not None:
            code = 6 if api[1].damaged or api[1].warnings else 0
        if rc != code:
            raise fc.FuzzBug("other bug", f"{what}: exit {rc}, the API's code {code}")
        if rc in (0, 6):
            import soundfile as sf

            if not out_path.is_file():
                raise fc.FuzzBug("other bug", f"{what}: exit {rc} and no output")
            y, _ = sf.read(str(out_path), dtype="int32", always_2d=True)
            y = y >> (32 - t.bits)
            if not (y.shape == api[0].shape and np.array_equal(y, api[0])):
                raise fc.FuzzBug("wrong audio", f"{what}: exit {rc}, audio other than the "
                                 "API's")
        else:
            _left_behind(fc, folder, {"in.hyb"}, what)
    record["strict"] = f"exit {rc}"


def _cli_model_case(w: Worker, record: dict, kind: str, data: bytes, folder: Path,
                    model_index: int) -> None:
    import soundfile as sf

    from hybridcodec import model as model_module

    fc = w.fc
    bad = folder / "bad.hcm"
    bad.write_bytes(data)
    what = f"{kind} of model case {model_index}"
    _, code = _api(lambda: model_module.load_model(bad))
    x, bits, rate = _clip(model_index)
    if code == 0 and kind == "encode --model":
        _, code = _api(lambda: fc.encode(x, str(bad), bits, rate))
    model_module._cache.pop(str(bad), None)
    if kind == "encode --model":
        wav = folder / "in.wav"
        sf.write(str(wav), np.asarray(x, np.int32) << (32 - bits), rate,
                 subtype=fc.SUBTYPES[bits])
        rc, _, err = _cli(["encode", str(wav), "-o", str(folder / "out.hyb"), "--model",
                           str(bad), "-q"], folder)
        _cli_problem(fc, rc, err, what)
        if rc != code:
            raise fc.FuzzBug("other bug", f"{what}: exit {rc}, encoding in-process: {code}")
        if rc == 0:
            rc, _, err = _cli(["decode", str(folder / "out.hyb"), "-o", str(folder / "back.wav"),
                               "--model", str(bad), "-q"], folder)
            _cli_problem(fc, rc, err, what + " (decoding)")
            y, _ = sf.read(str(folder / "back.wav"), dtype="int32", always_2d=True)
            if rc != 0 or not np.array_equal(y >> (32 - bits), x):
                raise fc.FuzzBug("wrong audio", f"{what}: encode exit 0, then decode exit "
                                 f"{rc} / other audio")
        else:
            _left_behind(fc, folder, {"bad.hcm", "in.wav"}, what)
    else:  # decode a valid stream of the shipped model with the bad model
        src = folder / "in.hyb"
        src.write_bytes(fc.encode(x, None, bits, rate))
        rc, _, err = _cli(["decode", str(src), "-o", str(folder / "out.wav"), "--model",
                           str(bad), "-q"], folder)
        _cli_problem(fc, rc, err, what)
        if code == 0:  # it loads: the stream names the shipped model's id
            _, code = _api(lambda: fc.decode(src.read_bytes(), str(bad), True, bits))
            model_module._cache.pop(str(bad), None)
        if rc != code:
            raise fc.FuzzBug("other bug", f"{what}: exit {rc}, the API's code {code}")
        if rc != 0:
            _left_behind(fc, folder, {"bad.hcm", "in.hyb"}, what)
    record["strict"] = f"exit {rc}"


# --------------------------------------------------------------------------- worker loop


class Restart(Exception):
    """A case hung: the worker stops (what the alarm interrupted may be left in any
    state) and the parent starts a fresh one for the rest of the task."""


def run_task(w: Worker, family: str, quota: int, after: int, send) -> None:
    """Run ``quota`` cases of ``family`` (those with an index above ``after``), sending
    ("start", index, kind) before each and ("result", record) after it."""
    result = send

    def send(msg) -> None:
        result(msg)
        if msg[0] == "result" and msg[1]["bug"] == "hang":
            raise Restart()
    def harness_error(index: int, exc: BaseException) -> None:
        record = _record(family, index, "making the case")
        record["bug"] = "harness error"
        record["detail"] = "".join(traceback.format_exception(exc)).strip()
        send(("start", index, "making the case"))
        send(("result", record))

    if family == "model":
        for index in range(after + 1, quota):
            try:
                kind, data = model_case(w, index)
            except Exception as exc:  # noqa: BLE001
                harness_error(index, exc)
                continue
            w.stage(data)
            send(("start", index, kind))
            send(("result", run_model_case(w, index, kind, data)))
        return
    if family == "cli":
        for index in range(after + 1, quota):
            send(("start", index, CLI_KINDS[index % len(CLI_KINDS)]))
            send(("result", run_cli_case(w, index)[0]))
        return
    try:
        with w.alarm(BUILD_SECONDS):
            built = build(w, family)
    except BaseException as exc:  # noqa: BLE001 - a family that cannot be built is a finding
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, CaseTimeout):
            raise
        record = _record(family, -1, "build")
        _classify(w, record, exc)  # encoding, cutting or decoding the unmutated streams
        send(("start", -1, "build"))
        send(("result", record))
        return
    try:
        selection = built.selection(w, quota)  # runs the mutation generator
    except Exception as exc:  # noqa: BLE001
        harness_error(-1, exc)
        return
    for index in selection:
        if index <= after:
            continue
        try:
            kind, mutated = built.case(w, index)
        except Exception as exc:  # noqa: BLE001
            harness_error(index, exc)
            continue
        w.stage(mutated)
        send(("start", index, kind))
        send(("result", run_stream_case(w, built, index, kind, mutated)))
    if family not in CLI_FAMILIES:
        del w.built[family]  # its mutated streams: memory


def worker_main(conn, seed: int, out: str | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    try:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    except (ValueError, OSError):
        pass
    w = Worker(seed, Path(out) if out else None)
    try:
        while True:
            task = conn.recv()
            if task is None:
                return
            family, quota, after = task
            try:
                run_task(w, family, quota, after, conn.send)
            except Restart:
                conn.send(("restart",))
                return
            conn.send(("done", family))
    finally:
        shutil.rmtree(w.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- the parent


class Slot:
    """One worker process and the task it runs."""

    def __init__(self, ctx, seed: int, out: Path | None) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, seed, str(out) if out else None),
                                daemon=True)
        self.proc.start()
        child.close()
        self.task = None  # (family, quota)
        self.current = None  # (index, kind) of the case running
        self.last = -1  # the highest index answered in this task
        self.deadline = 0.0

    def give(self, family: str, quota: int, after: int = -1) -> None:
        self.task, self.current, self.last, self.given = (family, quota), None, after, after
        self.deadline = time.monotonic() + BUILD_SECONDS + HARD_SECONDS
        self.conn.send((family, quota, after))

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()


def campaign(args) -> list[dict]:
    ctx = multiprocessing.get_context("fork")
    tasks = collections.deque(plan(args.cases))
    total = sum(q for _, q in tasks)
    records: list[dict] = []
    slots = [Slot(ctx, args.seed, args.out) for _ in range(args.jobs)]
    restarts: collections.Counter = collections.Counter()
    started = time.monotonic()
    for slot in slots:
        if tasks:
            slot.give(*tasks.popleft())
    while any(s.task for s in slots):
        busy = {s.conn: s for s in slots if s.task}
        ready = multiprocessing.connection.wait(list(busy), timeout=1.0)
        for conn in ready:
            slot = busy[conn]
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = ("died",)
            if msg[0] == "start":
                slot.current = msg[1:]
                slot.deadline = time.monotonic() + (CLI_CASE_SECONDS if slot.task[0] == "cli"
                                                    else 0) + HARD_SECONDS
            elif msg[0] == "result":
                records.append(msg[1])
                slot.last, slot.current = msg[1]["index"], None
                slot.deadline = time.monotonic() + HARD_SECONDS + (
                    BUILD_SECONDS if slot.task[0] not in ("model", "cli") else 0)
                if len(records) % 250 == 0:
                    bugs = sum(1 for r in records if r["bug"])
                    print(f"fuzz: {len(records)}/{total} cases, {bugs} bugs, "
                          f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
            elif msg[0] == "done":
                slot.task = None
                if tasks:
                    slot.give(*tasks.popleft())
            elif msg[0] == "restart":  # after a hang, recorded: the rest in a new worker
                _restart(slot, ctx, args, tasks, restarts)
            else:  # the worker died (a crash, or killed for memory)
                _lost(slot, records, args, "the worker process died", "exit 70 / exception")
                _restart(slot, ctx, args, tasks, restarts)
        now = time.monotonic()
        for slot in slots:
            if slot.task and now > slot.deadline:
                _lost(slot, records, args, f"no answer within {HARD_SECONDS:g} s: killed",
                      "hang")
                _restart(slot, ctx, args, tasks, restarts)
    for slot in slots:
        with contextlib.suppress(OSError):
            slot.conn.send(None)
        slot.proc.join(timeout=10)
    return records


def _lost(slot: Slot, records: list, args, detail: str, bug: str) -> None:
    """Record the case a worker was running when it died or was killed (outside a case:
    building the family's streams, which are then given up)."""
    family, _ = slot.task
    index, kind = slot.current or ((-1, "build") if slot.last == slot.given
                                   else (slot.last + 1, "between cases"))
    record = _record(family, index, kind)
    record["bug"], record["detail"] = bug, detail
    records.append(record)
    print(f"fuzz: {family}:{index} ({kind}): {detail}", file=sys.stderr, flush=True)
    staged = args.out / f"current-{slot.proc.pid}.bin" if args.out else None
    if staged is not None and staged.is_file():
        folder = args.out / "failures"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{family.replace('/', '_')}-{index}"
        staged.rename(folder / f"{stem}{'.hcm' if family == 'model' else '.hyb'}")
        (folder / f"{stem}.txt").write_text(
            f"case {family}:{index} ({kind}), seed {args.seed}\nbug: {bug}\n{detail}\n"
            f"re-run alone: python -m benchmarks.fuzz_campaign --seed {args.seed} "
            f"--only {family}:{index} --out DIR\n")
    slot.last = index


def _restart(slot: Slot, ctx, args, tasks, restarts) -> None:
    """A fresh worker for the rest of the task (the next task if the family could not be
    built, or after 20 restarts)."""
    family, quota = slot.task
    after, lost_build = slot.last, slot.current is None and slot.last == slot.given
    slot.kill()
    fresh = Slot(ctx, args.seed, args.out)
    slot.__dict__.update(fresh.__dict__)
    restarts[family] += 1
    if lost_build or restarts[family] > 20:
        if tasks:
            slot.give(*tasks.popleft())
        return
    slot.give(family, quota, after)


# --------------------------------------------------------------------------- report


ORDER = ["exact", "lower tier", "forged: other audio", "loaded: exact",
         "loaded: exact (same model)", "loaded: refused to encode", "CorruptStreamError",
         "TruncatedStreamError",
         "UnsupportedVersionError", "ModelError", "ModelMismatchError", "UsageError",
         "UnsupportedAudioError", "InputFileError"] + [f"exit {c}" for c in range(7)]


def table(records: list[dict], key: str, title: str) -> list[str]:
    rows: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in records:
        row = rows[r[key]]
        row["cases"] += 1
        if r["bug"]:
            row[r["bug"]] += 1
        else:
            row[r["strict"]] += 1
            if r["recovering"].startswith("recovered"):
                row["recovered (ignore-errors)"] += 1
    seen = {k for c in rows.values() for k in c} - {"cases", *BUGS,
                                                      "recovered (ignore-errors)"}
    outcomes = [k for k in ORDER if k in seen] + sorted(seen - set(ORDER))
    columns = ["cases", *outcomes, "recovered (ignore-errors)", *BUGS]
    total = collections.Counter()
    for c in rows.values():
        total.update(c)
    lines = [f"### {title}", "", "| " + " | ".join([key, *columns]) + " |",
             "|" + "---|" * (len(columns) + 1)]
    for name in sorted(rows):
        lines.append("| " + " | ".join([name] + [str(rows[name][c]) for c in columns]) + " |")
    lines.append("| **total** | " + " | ".join(f"**{total[c]}**" for c in columns) + " |")
    return lines + [""]


def report(records: list[dict], args, seconds: float, revision: str) -> str:
    bugs = [r for r in records if r["bug"]]
    streams = [r for r in records if r["family"] not in ("model", "cli")]
    lines = [f"## Fuzz campaign: {len(records)} cases, seed {args.seed}, "
             f"{len(bugs)} bug{'s' if len(bugs) != 1 else ''}", "",
             f"`python -m benchmarks.fuzz_campaign --cases {args.cases} --seed {args.seed}` "
             f"(hybridcodec at {revision}), wall time {seconds / 60:.1f} min with "
             f"{args.jobs} worker{'s' if args.jobs != 1 else ''}; per case "
             f"{CASE_SECONDS:g} s in-process, {CLI_SECONDS:g} s per command. Strict decodes "
             "(streams), loads (model files) and exit statuses (command line) by outcome; "
             "`recovered` counts the ignore-errors decodes that reported damage.", ""]
    lines += table(records, "group", "By family")
    lines += table(streams, "kind", "Stream cases by mutation")
    seeks = collections.Counter(r["ranged"] for r in streams if r["ranged"])
    if seeks:
        lines += [f"Seeks (the stream cases read from a seekable input also decode samples "
                  f"n/3 + 7 .. 4n/5 alone): {sum(seeks.values())}, "
                  + ", ".join(f"{k} {v}" for k, v in seeks.most_common()) + ".", ""]
    if bugs:
        lines += ["### Bugs", ""]
        for r in bugs[:100]:
            first = r["detail"].strip().splitlines()[-1] if r["detail"].strip() else ""
            lines.append(f"- `{r['family']}:{r['index']}` ({r['kind']}): {r['bug']}: "
                         f"{first[:300]}")
        if len(bugs) > 100:
            lines.append(f"- ... and {len(bugs) - 100} more (cases.csv)")
        lines.append("")
    return "\n".join(lines)


def _revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return rev + (" + changes" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_csv(records: list[dict], path: Path) -> None:
    fields = ["family", "group", "kind", "index", "strict", "recovering", "ranged", "bug",
              "seconds", "detail"]
    with open(path, "w", newline="") as fp:
        writer = csv.DictWriter(fp, fields, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({**r, "seconds": f"{r['seconds']:.3f}",
                             "detail": r["detail"].strip().replace("\n", " | ")[:2000]})


# --------------------------------------------------------------------------- one case


def only(args) -> int:
    """Re-run the case ``FAMILY:INDEX`` alone, in this process; print what happened."""
    family, _, index = args.only.rpartition(":")
    index = int(index)
    w = Worker(args.seed, args.out)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    try:
        if family == "model":
            kind, data = model_case(w, index)
            record, suffix = run_model_case(w, index, kind, data), ".hcm"
        elif family == "cli":
            record, data = run_cli_case(w, index)
            suffix = ".hcm" if "model" in record["kind"] else ".hyb"
        else:
            if family not in families():
                raise SystemExit(f"fuzz_campaign: no family {family!r} (families: "
                                 f"{', '.join(families())}, model, cli)")
            built = build(w, family)
            kind, data = built.case(w, index)
            record, suffix = run_stream_case(w, built, index, kind, data), ".hyb"
        if args.out and data is not None:
            (args.out / f"{family.replace('/', '_')}-{index}{suffix}").write_bytes(data)
    finally:
        shutil.rmtree(w.tmp, ignore_errors=True)
    for key in ("family", "index", "kind", "strict", "recovering", "ranged", "bug",
                "seconds"):
        print(f"{key}: {record[key]}")
    if record["detail"]:
        print(record["detail"])
    return 1 if record["bug"] else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_campaign",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10000, help="cases in all (default 10000)")
    p.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    p.add_argument("--out", type=Path, help="keep cases.csv, report.md and failures/ here")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--only", metavar="FAMILY:INDEX",
                   help="re-run one case alone (as a failure's note names it)")
    p.add_argument("--list", action="store_true", help="list the families and their cases")
    args = p.parse_args(argv)
    if args.list:
        for family, quota in plan(args.cases):
            print(f"{family}\t{quota}")
        return 0
    if args.only:
        return only(args)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    revision = _revision()  # before the run: what was fuzzed
    start = time.monotonic()
    records = campaign(args)
    seconds = time.monotonic() - start
    text = report(records, args, seconds, revision)
    print(text)
    if args.out:
        write_csv(records, args.out / "cases.csv")
        (args.out / "report.md").write_text(text + "\n")
        for staged in args.out.glob("current-*.bin"):
            staged.unlink()
    return 1 if any(r["bug"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
