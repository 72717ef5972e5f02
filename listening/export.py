"""MUSHRA stimuli (ITU-R BS.1534-3): ``python -m listening.export [hydra overrides]``.

For every item (a file and an excerpt of it) the export writes

* the reference (played as the open reference and, rated blind, as the hidden reference);
* hybridcodec at each chosen tier, all from ONE stream: the excerpt is encoded losslessly
  once, the stream is truncated to each tier (no re-encoding, as ``hybridcodec truncate``)
  and each truncation is decoded (``fill`` and a seed derived from ``seed``);
* the standard anchors: the reference low-passed at 3.5 kHz and 7 kHz (``anchors``), with
  a linear-phase Kaiser-window FIR applied without delay: flat to ``(1 - anchor_transition)
  * fc``, at least ``anchor_attenuation_db`` (100 dB) down from ``fc`` upwards, so nothing
  of the reference above the cut-off survives (only the output's quantization noise);
* reference codecs (``codecs``: Opus via opusenc/opusdec, MP3 via lame) at the bit rate
  that hybridcodec actually spent at each tier of ``codec_tiers``, decoded, resampled to
  the reference's rate and aligned to it (delay found by cross-correlation, then cut or
  padded to the reference's length). The encoder's setting is searched until the coded
  file's bit rate is within 1 % of the tier's where the codec allows; a condition that
  cannot come within ``codec_match_tolerance`` (e.g. MP3 above 310 kbps, MP3 with more
  than 2 channels) and a codec whose tools are missing are skipped with a message.

Every stimulus of an item gets the same 20 ms raised-cosine fade in and out (decoded
signals are faded, the anchors are filtered from the faded reference), is scaled to
``target_lufs`` integrated loudness (ITU-R BS.1770-4, measured with pyloudnorm) and
written as WAV at the source's rate, 16-bit (sources of up to 16 bits) or 24-bit (deeper
sources), rounded without dither. If any stimulus of an item would exceed
``peak_ceiling_dbfs`` (true peak, 4x oversampled) at the target, the whole item is
lowered by what it takes; the manifest (``item_lowered_db``) and the log say so.

File names are blinded: ``audio/s<8 hex digits>.wav``, drawn from a generator seeded with
``seed``. ``manifest.csv`` maps each file to its item, condition, bit rate, gain and
measured loudness. ``webmushra.yaml`` is a webMUSHRA configuration for the files (paths
relative to the output folder, or prefixed with ``webmushra_prefix``) and ``mushra.html``
runs the same test in a browser straight from disk. The same seed and settings give
byte-identical output files. An export into a folder that holds one already replaces its
``audio/*.wav``.

Ratings go into the export's ``results/`` folder, which the export creates (empty): the
CSV file that the page downloads into the browser's download folder, and webMUSHRA's
``results/<testId>/mushra.csv`` (under webMUSHRA's root), are moved there, and
``python -m listening.analyze OUT/results/*.csv --manifest OUT/manifest.csv`` reads them
(:mod:`listening.analyze`; its outputs go to ``OUT/analysis/``, never into ``results/``).

:func:`export` is a plain function; :func:`main` only wraps it with ``@hydra.main``, so
tests call it with a config from Hydra's ``compose()``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
import soundfile as sf
from omegaconf import DictConfig
from scipy import signal

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("mushra_template.html")
HIDDEN_REFERENCE = "reference"  # webMUSHRA's name for the hidden reference in its results
RESULTS_DIR = "results"  # where the ratings go (README, "Listening tests")
MIN_SECONDS = 0.4  # one BS.1770 gating block

MANIFEST_COLUMNS = [
    "file", "id", "trial_id", "item", "condition", "kind", "source", "start_s", "duration_s",
    "sample_rate", "channels", "subtype", "kbps", "matched_kbps", "encoder_kbps", "delay_samples",
    "lufs_before", "gain_db", "lufs", "true_peak_dbfs", "item_target_lufs", "item_lowered_db",
]


class ExportError(Exception):
    """A problem with the export's configuration or inputs (message for the user)."""


@dataclass
class Item:
    """One excerpt: ``duration`` seconds of ``path`` from ``start``."""

    name: str
    path: Path
    start: float
    duration: float | None


@dataclass
class Stimulus:
    """One condition of one item, as float64 samples (frames, channels) at the item's rate."""

    condition: str
    kind: str  # reference | tier | anchor | codec
    audio: np.ndarray
    kbps: float | None = None  # bit rate of the coded stream (hybridcodec, reference codecs)
    matched_kbps: float | None = None  # reference codecs: the tier bit rate matched
    encoder_kbps: float | None = None  # reference codecs: the encoder setting that did it
    delay: int | None = None  # reference codecs: samples removed (+) or added (-) to align
    # filled in by the loudness step
    id: str = ""
    lufs_before: float = float("nan")
    gain_db: float = 0.0
    lufs: float = float("nan")
    true_peak: float = float("-inf")


@dataclass
class ItemResult:
    item: Item
    trial_id: str
    sample_rate: int
    channels: int
    subtype: str
    stimuli: list[Stimulus] = field(default_factory=list)
    lowered_db: float = 0.0


# ----------------------------------------------------------------------------- items


def resolve_items(cfg) -> list[Item]:
    """Items from ``cfg.items``: bare paths or mappings {path, start, duration, name}."""
    if not cfg["items"]:
        raise ExportError("no items: give items=[FILE,...]")
    corpus = Path(_absolute(str(cfg.corpus_dir))) if cfg.get("corpus_dir") else None
    items, names = [], set()
    for spec in cfg["items"]:
        if isinstance(spec, str):
            spec = {"path": spec}
        else:
            spec = dict(spec)
        if "path" not in spec:
            raise ExportError(f"item {spec} has no path")
        unknown = set(spec) - {"path", "start", "duration", "name"}
        if unknown:
            raise ExportError(f"item {spec}: unknown keys {sorted(unknown)}")
        raw = str(spec["path"])
        path = Path(_absolute(raw))
        if not path.is_file() and corpus is not None and (corpus / raw).is_file():
            path = corpus / raw
        if not path.is_file():
            where = f" (nor in corpus_dir {corpus})" if corpus is not None else ""
            raise ExportError(f"item file not found: {raw}{where}")
        start = float(spec.get("start", cfg.start))
        duration = spec.get("duration", cfg.duration)
        duration = None if duration is None else float(duration)
        name = str(spec.get("name") or path.stem)
        base, k = name, 2
        while name in names:  # the same file twice (two excerpts): keep trial ids unique
            name, k = f"{base}-{k}", k + 1
        names.add(name)
        items.append(Item(name, path, start, duration))
    return items


def _absolute(path: str) -> str:
    """A path relative to the directory the command was started from (Hydra may chdir)."""
    try:
        from hydra.utils import to_absolute_path

        return to_absolute_path(path)
    except (ImportError, ValueError):
        return os.path.abspath(path)


def read_excerpt(item: Item) -> tuple[np.ndarray, int, str]:
    """(int32 samples left-justified as soundfile reads them, rate, output subtype)."""
    try:
        info = sf.info(str(item.path))
    except RuntimeError as exc:
        raise ExportError(f"{item.path}: cannot read audio: {exc}") from None
    rate = info.samplerate
    first = int(round(item.start * rate))
    if item.start < 0 or first >= info.frames:
        raise ExportError(f"{item.path}: excerpt start {item.start} s is outside the file "
                          f"({info.frames / rate:.2f} s)")
    count = info.frames - first if item.duration is None else int(round(item.duration * rate))
    if count > info.frames - first:
        log.warning("%s: the file ends %.2f s after the excerpt's start; excerpt shortened",
                    item.path, (info.frames - first) / rate)
        count = info.frames - first
    if count < MIN_SECONDS * rate:
        raise ExportError(f"{item.path}: excerpt of {count / rate:.2f} s is too short "
                          f"(at least {MIN_SECONDS} s for a loudness measurement)")
    pcm, _ = sf.read(str(item.path), start=first, frames=count, dtype="int32", always_2d=True)
    bits = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}.get(info.subtype)
    if bits is None:
        raise ExportError(f"{item.path}: {info.subtype} audio; integer PCM is needed")
    return pcm, rate, "PCM_16" if bits <= 16 else "PCM_24"


# ----------------------------------------------------------------------------- conditions


def hybrid_tiers(excerpt: Path, tiers, workdir: Path, fill: str, seed: int) -> list[Stimulus]:
    """Encode ``excerpt`` losslessly once, then truncate and decode it at every tier."""
    import hybridcodec
    from hybridcodec.truncation import truncate_file

    full = workdir / "full.hyb"
    hybridcodec.encode(str(excerpt), str(full), overwrite=True)
    seconds = sf.info(str(excerpt)).duration
    out = []
    for tier in tiers:
        stream = full
        if tier != "lossless":
            stream = workdir / f"{tier}.hyb"
            truncate_file(str(full), str(stream), tier=tier, overwrite=True)
        wav = workdir / f"{tier}.wav"
        hybridcodec.decode(str(stream), str(wav), overwrite=True, fill=fill, seed=seed)
        audio, _ = sf.read(str(wav), dtype="float64", always_2d=True)
        kbps = os.path.getsize(stream) * 8 / seconds / 1000
        out.append(Stimulus(tier, "tier", audio, kbps=kbps))
    return out


def lowpass(x: np.ndarray, rate: int, cutoff: float, transition: float = 0.05,
            attenuation_db: float = 100.0) -> np.ndarray:
    """Zero-delay linear-phase low-pass: flat to (1 - transition) * cutoff, and at least
    ``attenuation_db`` down from ``cutoff`` to Nyquist (Kaiser-window FIR, odd length)."""
    nyquist = rate / 2
    width = transition * cutoff
    numtaps, beta = signal.kaiserord(attenuation_db, width / nyquist)
    numtaps |= 1  # odd: an integer delay of (numtaps - 1) / 2 samples
    taps = signal.firwin(numtaps, cutoff - width / 2, window=("kaiser", beta), fs=rate)
    y = signal.oaconvolve(x, taps[:, None], mode="full", axes=0)
    delay = (numtaps - 1) // 2
    return y[delay:delay + len(x)]


def fade(x: np.ndarray, rate: int, ms: float) -> np.ndarray:
    """Raised-cosine fade in and out of ``ms`` milliseconds each."""
    n = min(int(round(ms * rate / 1000)), len(x) // 2)
    if n <= 0:
        return x.copy()
    ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(n) + 0.5) / n))
    y = x.copy()
    y[:n] *= ramp[:, None]
    y[len(y) - n:] *= ramp[::-1, None]
    return y


def align(y: np.ndarray, ref: np.ndarray, max_lag: int) -> tuple[np.ndarray, int]:
    """``y`` shifted by the lag (within +-max_lag) that best matches ``ref``, cut or
    zero-padded to ``ref``'s length. Returns (aligned, delay): y[delay] lands at ref[0]."""
    a = y.mean(axis=1)
    b = ref.mean(axis=1)
    corr = signal.correlate(a, b, mode="full", method="fft")
    lags = signal.correlation_lags(len(a), len(b), mode="full")
    keep = np.abs(lags) <= max_lag
    delay = int(lags[keep][np.argmax(corr[keep])]) if keep.any() else 0
    out = np.zeros_like(ref)
    if delay >= 0:
        seg = y[delay:delay + len(ref)]
        out[:len(seg)] = seg
    else:
        seg = y[:len(ref) + delay]
        out[-delay:-delay + len(seg)] = seg
    return out, delay


def _resample(y: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return y
    g = math.gcd(rate_in, rate_out)
    return signal.resample_poly(y, rate_out // g, rate_in // g, axis=0)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ExportError(f"{' '.join(cmd)} failed (exit {proc.returncode}): "
                          f"{proc.stderr.strip()[-500:]}")


CODEC_TOOLS = {"opus": ("opusenc", "opusdec"), "mp3": ("lame",)}


def codec_available(name: str) -> str | None:
    """None if ``name``'s tools are installed, else why not."""
    if name not in CODEC_TOOLS:
        raise ExportError(f"unknown reference codec {name!r} (choose from "
                          f"{', '.join(CODEC_TOOLS)})")
    missing = [tool for tool in CODEC_TOOLS[name] if shutil.which(tool) is None]
    return f"{', '.join(missing)} not found" if missing else None


def _encode(name: str, excerpt: Path, setting: float, workdir: Path) -> Path:
    """``excerpt`` coded by ``name`` at the encoder setting ``setting`` (kbps)."""
    coded = workdir / f"{name}-{setting:.3f}{'.opus' if name == 'opus' else '.mp3'}"
    if not coded.exists():
        if name == "opus":  # VBR (the default); fixed serial number: reproducible files
            _run(["opusenc", "--quiet", "--bitrate", f"{setting:.3f}", "--serial", "1",
                  str(excerpt), str(coded)])
        else:  # average bit rate
            _run(["lame", "--quiet", "--abr", f"{setting:g}", str(excerpt), str(coded)])
    return coded


def match_rate(name: str, excerpt: Path, kbps: float, seconds: float, channels: int,
               workdir: Path, tolerance: float = 0.01, tries: int = 12
               ) -> tuple[Path, float, float]:
    """Code ``excerpt`` so that the whole file's bit rate (container included, as for the
    hybridcodec stream) comes closest to ``kbps``. VBR and headers make the file's rate
    differ from the encoder's setting, and not smoothly (Opus changes mode at some rates),
    so the setting is bracketed: a step by the ratio wanted / obtained where that lands
    inside the bracket, else bisection, until within ``tolerance`` or the bracket closes.
    Returns (coded file, encoder setting, file bit rate) of the closest try."""
    if name == "opus":
        lo, hi, step, snap = 6.0, 256.0 * channels, 0.01, (lambda v: round(v, 2))
    else:
        lo, hi, step, snap = 8.0, 310.0, 1.0, (lambda v: float(round(v)))
    setting = snap(float(np.clip(kbps, lo, hi)))
    best = None
    for _ in range(tries):
        coded = _encode(name, excerpt, setting, workdir)
        actual = os.path.getsize(coded) * 8 / seconds / 1000
        if best is None or abs(actual - kbps) < abs(best[2] - kbps):
            best = (coded, setting, actual)
        if abs(actual - kbps) <= tolerance * kbps:
            break
        if actual < kbps:
            lo = setting
        else:
            hi = setting
        if hi - lo <= step:
            break
        new = snap(setting * kbps / actual)
        if not lo < new < hi:
            new = snap((lo + hi) / 2)
        if not lo < new < hi or new == setting:
            break
        setting = new
    return best


def reference_codec(name: str, excerpt: Path, kbps: float, ref: np.ndarray, rate: int,
                    workdir: Path, max_lag: int, tolerance: float = 0.1) -> Stimulus | str:
    """Code ``excerpt`` with Opus or MP3 at ``kbps`` (the file's rate within ``tolerance``);
    a Stimulus, or why it was skipped."""
    channels = ref.shape[1]
    seconds = len(ref) / rate
    if name == "mp3" and channels > 2:
        return f"MP3 has at most 2 channels, this item has {channels}"
    coded, setting, actual = match_rate(name, excerpt, kbps, seconds, channels, workdir)
    if abs(actual - kbps) > tolerance * kbps:
        return (f"cannot match {kbps:.1f} kbps within {100 * tolerance:g} % (closest: "
                f"{actual:.1f} kbps at setting {setting:g})")
    decoded = coded.with_suffix(".wav")
    if name == "opus":  # float output: no dither, reproducible
        _run(["opusdec", "--quiet", "--float", "--rate", str(rate), str(coded), str(decoded)])
    else:
        _run(["lame", "--quiet", "--decode", str(coded), str(decoded)])
    y, y_rate = sf.read(str(decoded), dtype="float64", always_2d=True)
    if y.shape[1] != channels:
        return f"decoder returned {y.shape[1]} channels instead of {channels}"
    y = _resample(y, y_rate, rate)
    y, delay = align(y, ref, max_lag)
    return Stimulus("", "codec", y, kbps=actual, matched_kbps=kbps, encoder_kbps=setting,
                    delay=delay)


# ----------------------------------------------------------------------------- loudness


def integrated_loudness(x: np.ndarray, rate: int) -> float:
    """ITU-R BS.1770-4 integrated loudness (LUFS) with pyloudnorm.

    pyloudnorm weights at most 5 channels (L, R, C, Ls, Rs); for more, the same K-weighting
    filters and gating run here with weight 1 for channels past the fifth (the layout of a
    6-8 channel WAV is not known; only the relative loudness of an item's stimuli, which
    share their layout, matters for the alignment)."""
    import pyloudnorm

    meter = pyloudnorm.Meter(rate)
    if x.shape[1] <= 5:
        return float(meter.integrated_loudness(x))
    y = x.copy()
    for filt in meter._filters.values():  # K-weighting, as pyloudnorm applies it
        for ch in range(y.shape[1]):
            y[:, ch] = filt.apply_filter(y[:, ch])
    weights = np.array([1.0, 1.0, 1.0, 1.41, 1.41] + [1.0] * (x.shape[1] - 5))
    block, step = meter.block_size, meter.block_size * (1 - meter.overlap)
    count = int(np.round((len(y) / rate - block) / step)) + 1  # pyloudnorm's block grid
    z = np.array([np.sum(np.square(y[int(j * step * rate):int((j * step + block) * rate)]),
                         axis=0) / (block * rate) for j in range(count)])  # blocks x channels
    with np.errstate(divide="ignore", invalid="ignore"):
        lk = -0.691 + 10 * np.log10(z @ weights)
        above = lk >= -70
        if not above.any():
            return float("-inf")
        rel = -0.691 + 10 * np.log10(z[above].mean(axis=0) @ weights) - 10
        gated = z[(lk > rel) & (lk > -70)]
        if not len(gated):
            return float("-inf")
        return float(-0.691 + 10 * np.log10(gated.mean(axis=0) @ weights))


def true_peak_dbfs(x: np.ndarray) -> float:
    """Peak level of ``x`` 4x oversampled (the BS.1770-4 true-peak approximation)."""
    if not x.size:
        return float("-inf")
    up = signal.resample_poly(x, 4, 1, axis=0)
    peak = max(float(np.max(np.abs(up))), float(np.max(np.abs(x))))
    return 20 * math.log10(peak) if peak > 0 else float("-inf")


def quantize(x: np.ndarray, subtype: str) -> np.ndarray:
    """Float samples to the integers a WAV of ``subtype`` holds (rounded, clipped),
    left-justified in int16 (PCM_16) or int32 (PCM_24) as soundfile writes them."""
    if subtype == "PCM_16":
        return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)
    q = np.clip(np.round(x * 8388608), -8388608, 8388607).astype(np.int32)
    return q << 8


def level_item(res: ItemResult, target: float, ceiling: float) -> None:
    """Gains that bring every stimulus to ``target`` LUFS, the whole item lowered if any
    stimulus would peak above ``ceiling`` dBFS."""
    for st in res.stimuli:
        st.lufs_before = integrated_loudness(st.audio, res.sample_rate)
        st.true_peak = true_peak_dbfs(st.audio)
    over = 0.0
    for st in res.stimuli:
        if math.isfinite(st.lufs_before):
            over = max(over, st.true_peak + (target - st.lufs_before) - ceiling)
    res.lowered_db = over
    for st in res.stimuli:
        if not math.isfinite(st.lufs_before):
            log.warning("%s / %s: silent (no loudness to measure); left at its level",
                        res.trial_id, st.condition)
            st.gain_db = 0.0
        else:
            st.gain_db = target - over - st.lufs_before
    if over > 0:
        log.warning("%s: lowered by %.2f dB to %.2f LUFS so that no stimulus peaks above "
                    "%.1f dBFS", res.trial_id, over, target - over, ceiling)


# ----------------------------------------------------------------------------- export


@dataclass
class ExportResult:
    """What :func:`export` wrote: the folder, its manifest, webMUSHRA configuration, page
    and (empty) results folder, the items, and the conditions skipped (with why)."""

    out_dir: Path
    manifest: Path
    webmushra: Path
    html: Path
    items: list[ItemResult]
    skipped: list[str]
    results: Path


def _blind_ids(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    ids = []
    while len(ids) < count:
        new = "s" + rng.bytes(4).hex()  # a letter first: never read as a number in YAML
        if new not in taken:
            taken.add(new)
            ids.append(new)
    return ids


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "" if value is None or math.isnan(value) else str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def export(cfg) -> ExportResult:
    """Write the stimuli, manifest, webMUSHRA configuration and HTML page (see module)."""
    from hybridcodec.tiers import TIERS

    items = resolve_items(cfg)
    tiers = [str(t) for t in cfg.tiers]
    for tier in tiers:
        if tier not in TIERS:
            raise ExportError(f"unknown tier {tier!r} (choose from {', '.join(TIERS)})")
    codec_tiers = [t for t in tiers if t != "lossless"] if cfg.codec_tiers is None \
        else [str(t) for t in cfg.codec_tiers]
    for tier in codec_tiers:
        if tier not in tiers:
            raise ExportError(f"codec_tiers: {tier!r} is not one of tiers {tiers}")
    codecs, skipped = [], []
    for name in cfg.codecs or []:
        why = codec_available(str(name))
        if why:
            msg = f"reference codec {name} skipped: {why}"
            log.warning(msg)
            skipped.append(msg)
        else:
            codecs.append(str(name))
    anchors = [float(f) for f in cfg.anchors or []]
    excerpts = [read_excerpt(item) for item in items]  # every item checked before writing

    out_dir = Path(_absolute(str(cfg.out_dir)))
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    for old in audio_dir.glob("*.wav"):  # a rerun into the same folder replaces the test
        old.unlink()
    results_dir = out_dir / RESULTS_DIR
    results_dir.mkdir(exist_ok=True)
    stale = sorted(p.name for p in results_dir.glob("*.csv"))
    if stale:  # kept: same seed and settings give the same ids, and the ratings stay valid
        log.warning("%s already holds %s from an earlier export: if its blinding differed, "
                    "move them away (the analysis refuses ids not in the new manifest)",
                    results_dir, ", ".join(stale))

    seeds = np.random.SeedSequence(int(cfg.seed))
    blind_rng = np.random.default_rng(seeds.spawn(1)[0])
    decode_seeds = seeds.generate_state(len(items))
    taken: set[str] = set()
    results = []
    for index, (item, (pcm, rate, subtype)) in enumerate(zip(items, excerpts)):
        res = ItemResult(item, item.name, rate, pcm.shape[1], subtype)
        log.info("%s: %s, %.2f s from %.2f s, %d Hz, %d ch", item.name, item.path,
                 len(pcm) / rate, item.start, rate, pcm.shape[1])
        ref_raw = pcm.astype(np.float64) / 2**31
        ref = fade(ref_raw, rate, cfg.fade_ms)
        res.stimuli.append(Stimulus(HIDDEN_REFERENCE, "reference", ref))
        with tempfile.TemporaryDirectory(prefix="listening-") as tmp:
            work = Path(tmp)
            excerpt = work / "excerpt.wav"
            sf.write(str(excerpt), pcm, rate, subtype=subtype)
            coded = hybrid_tiers(excerpt, tiers, work, str(cfg.fill), int(decode_seeds[index]))
            for st in coded:
                st.audio = fade(st.audio, rate, cfg.fade_ms)
            res.stimuli += coded
            kbps_of = {st.condition: st.kbps for st in coded}
            max_lag = int(round(cfg.max_align_ms * rate / 1000))
            for name in codecs:
                for tier in codec_tiers:
                    st = reference_codec(name, excerpt, kbps_of[tier], ref_raw, rate, work,
                                         max_lag, float(cfg.codec_match_tolerance))
                    if isinstance(st, str):
                        msg = f"{item.name}: {name}@{tier} skipped: {st}"
                        log.warning(msg)
                        skipped.append(msg)
                        continue
                    st.condition = f"{name}@{tier}"
                    st.audio = fade(st.audio, rate, cfg.fade_ms)
                    res.stimuli.append(st)
        for fc in anchors:
            name = f"anchor{int(round(fc / 100))}"
            if fc >= rate / 2:
                msg = (f"{item.name}: {name} skipped: {fc:g} Hz is not below Nyquist "
                       f"({rate / 2:g} Hz)")
                log.warning(msg)
                skipped.append(msg)
                continue
            audio = lowpass(ref, rate, fc, cfg.anchor_transition, cfg.anchor_attenuation_db)
            res.stimuli.append(Stimulus(name, "anchor", audio))
        level_item(res, float(cfg.target_lufs), float(cfg.peak_ceiling_dbfs))
        for st, sid in zip(res.stimuli, _blind_ids(blind_rng, len(res.stimuli), taken)):
            st.id = sid
            q = quantize(st.audio * 10 ** (st.gain_db / 20), subtype)
            path = audio_dir / f"{sid}.wav"
            sf.write(str(path), q, rate, subtype=subtype, format="WAV")
            written, _ = sf.read(str(path), dtype="float64", always_2d=True)
            st.lufs = integrated_loudness(written, rate)
            st.true_peak = true_peak_dbfs(written)
        results.append(res)

    manifest = write_manifest(out_dir / "manifest.csv", results, float(cfg.target_lufs))
    test = test_description(cfg, results)
    webmushra = out_dir / "webmushra.yaml"
    webmushra.write_text(webmushra_yaml(test, str(cfg.webmushra_prefix or "")),
                         encoding="utf-8")
    html = out_dir / "mushra.html"
    html.write_text(mushra_html(test), encoding="utf-8")
    log.info("wrote %d stimuli of %d items to %s", sum(len(r.stimuli) for r in results),
             len(results), out_dir)
    return ExportResult(out_dir, manifest, webmushra, html, results, skipped, results_dir)


def write_manifest(path: Path, results: list[ItemResult], target: float) -> Path:
    """``manifest.csv``: one row per stimulus (:data:`MANIFEST_COLUMNS`)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for res in results:
        for st in res.stimuli:
            writer.writerow([
                f"audio/{st.id}.wav", st.id, res.trial_id, str(res.item.path.name),
                st.condition, st.kind, str(res.item.path), _fmt(res.item.start),
                _fmt(len(st.audio) / res.sample_rate), res.sample_rate, res.channels,
                res.subtype, _fmt(st.kbps), _fmt(st.matched_kbps),
                _fmt(st.encoder_kbps), _fmt(st.delay),
                _fmt(st.lufs_before, 2), _fmt(st.gain_db, 2), _fmt(st.lufs, 2),
                _fmt(st.true_peak, 2), _fmt(target - res.lowered_db, 2),
                _fmt(res.lowered_db, 2)])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def test_description(cfg, results: list[ItemResult]) -> dict:
    """The test as data: shared by the webMUSHRA configuration and the HTML page.

    Stimuli are keyed by their blinded id, in id order (random); the hidden reference is
    webMUSHRA's implicit ``reference`` stimulus, not listed among them."""
    trials = []
    for res in results:
        ref = next(st for st in res.stimuli if st.kind == "reference")
        stimuli = {st.id: f"audio/{st.id}.wav" for st in res.stimuli if st is not ref}
        trials.append({"id": res.trial_id, "name": res.trial_id,
                       "reference": f"audio/{ref.id}.wav",
                       "stimuli": dict(sorted(stimuli.items()))})
    return {"testname": str(cfg.test_name), "testId": str(cfg.test_id),
            "content": str(cfg.instructions).strip(), "trials": trials}


def webmushra_yaml(test: dict, prefix: str = "") -> str:
    """webMUSHRA configuration: a welcome page, the trials in random order, a finish page
    with a one-field questionnaire (the assessor's name) that writes the results."""
    import yaml

    pages = [{"type": "generic", "id": "welcome", "name": test["testname"],
              "content": test["content"]}]
    trials = []
    for trial in test["trials"]:
        trials.append({
            "type": "mushra", "id": trial["id"], "name": trial["name"],
            "content": "Rate the basic audio quality of each condition against the reference.",
            "showWaveform": False, "enableLooping": True,
            "reference": prefix + trial["reference"],
            "createAnchor35": False, "createAnchor70": False,
            "stimuli": {k: prefix + v for k, v in trial["stimuli"].items()}})
    pages.append(["random", *trials])
    pages.append({"type": "finish", "name": "Thank you",
                  "content": "Thank you for taking part.",
                  "popupcontent": "Your results were sent. Thank you.",
                  "showResults": False, "writeResults": True,
                  "questionnaire": [{"type": "text", "label": "Name", "name": "name"}]})
    doc = {"testname": test["testname"], "testId": test["testId"], "bufferSize": 2048,
           "stopOnErrors": True, "showButtonPreviousPage": True,
           "remoteService": "service/write.php", "pages": pages}
    head = ("# webMUSHRA configuration written by python -m listening.export.\n"
            "# Audio paths are relative to webMUSHRA's root: copy the export folder there "
            "and\n# set webmushra_prefix to its path (e.g. configs/resources/mytest/).\n"
            "# webMUSHRA appends the ratings to results/<testId>/mushra.csv under its root "
            "(testId\n# lower-cased); copy that file into the export's results/ folder for "
            "python -m listening.analyze.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


def mushra_html(test: dict) -> str:
    """The self-contained MUSHRA page (``mushra_template.html`` with the test inlined)."""
    data = json.dumps(test, ensure_ascii=True, sort_keys=False)
    data = data.replace("</", "<\\/")  # never close the script element early
    return TEMPLATE.read_text(encoding="utf-8").replace("/*@TEST@*/null", data)


# ----------------------------------------------------------------------------- entry point


@hydra.main(version_base="1.3", config_path="../conf/listening", config_name="export")
def main(cfg: DictConfig) -> None:
    """``python -m listening.export [overrides]``: :func:`export`, a summary on stdout; a
    bad configuration or input is one logged error line and exit status 2."""
    try:
        result = export(cfg)
    except ExportError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        log.error("%s%s", where, exc.strerror or exc)
        raise SystemExit(2) from None
    webmushra = webmushra_results_dir(str(cfg.test_id))
    print(f"{sum(len(r.stimuli) for r in result.items)} stimuli of {len(result.items)} items "
          f"in {result.out_dir}\n  manifest:  {result.manifest}\n  webMUSHRA: {result.webmushra}"
          f"\n  page:      {result.html}\n  ratings:   {result.results}/ (put the CSV files that "
          f"the page downloads here, and webMUSHRA's results/{webmushra}/mushra.csv)"
          f"\n  analysis:  python -m listening.analyze {shlex.quote(str(result.results))}/*.csv "
          f"--manifest {shlex.quote(str(result.manifest))}")
    for line in result.skipped:
        print(f"  note: {line}")


def webmushra_results_dir(test_id: str) -> str:
    """The folder under webMUSHRA's ``results/`` that holds this test's ``mushra.csv``:
    webMUSHRA's write.php makes it from the testId (every run of characters other than
    letters, digits, _ and - becomes one -, then lower case)."""
    return re.sub(r"-+", "-", re.sub(r"[^\w-]+", "-", test_id)).lower()


if __name__ == "__main__":
    main()
