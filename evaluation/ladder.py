"""The ladder report: one file, every quality tier, against Opus and MP3 at matched rates.

A development tool, not part of the codec (the ``hybridcodec`` package never imports
it); run it from the repository root::

    python -m evaluation.ladder FILE --out DIR [--tiers NAME...] [--seconds N]
        [--no-reference-codecs] [--no-visqol] [--fill MODE] [--seed N] [--model PATH] [-f] [-q]

:func:`run_ladder` encodes a file once (lossless), truncates the stream to every tier
(:mod:`hybridcodec.truncation`), decodes each tier, and measures it against the source:

* **SNR** (dB): ``10 log10(sum x^2 / sum (y - x)^2)`` over every channel and sample;
  this and the two spectral distances are taken after a zero-phase 20 Hz high-pass of
  both signals (an inaudible DC offset, which Opus's encoder removes, is no error);
* **LSD** (dB): log-spectral distance, ``sqrt(mean_f (P_x - P_y)^2)`` per STFT frame and
  channel in dB (Hann 2048, hop 512, 0 .. fs/2), averaged; powers are floored at the
  reference's peak bin - 100 dB, so bins far below audibility do not dominate;
* **mel distance** (dB): mean absolute difference of 64-band mel power spectra in dB
  (same STFT), floored at the reference's peak band - 80 dB. Lower is better;
* **ViSQOL** MOS-LQO (1 .. 5, higher is better): Google's ViSQOL v3 in audio mode (at
  48 kHz, per channel, averaged), when the ``visqol-python`` package is installed.

Where the ``opusenc``/``opusdec`` and ``lame`` tools exist, the same source is also coded
with Opus (``opusenc --bitrate K``, VBR, K corrected until the file's real rate is within
2 % of the tier's) and MP3 (``lame -b K``, CBR at the nearest rate lame offers) at the
bit rate of each lossy tier, decoded, brought back to the
source's rate and aligned (a cross-correlation finds any delay the decoder left:
``opusdec`` removes Opus's pre-skip, ``lame --decode`` leaves a granule when it has
resampled), and measured on exactly the same sample range as the tiers: samples
``0 .. N-1`` of the source.

It writes ``ladder.md`` (a markdown table and notes), ``ladder.csv``, and, with
matplotlib, ``rate_quality.png`` (SNR / mel distance / ViSQOL against kbit/s) and
``spectrograms.png`` (the source against two tiers, and Opus at the lower tier's rate).
No training-stack import; matplotlib and visqol are optional.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from hybridcodec.cli import seed_arg
from hybridcodec.errors import HybridCodecError, InputFileError, UsageError
from hybridcodec.tiers import TIERS

#: What ``run_ladder`` writes into its output folder.
OUTPUT_FILES = ("ladder.md", "ladder.csv", "rate_quality.png", "spectrograms.png")
#: Bit rates (kbit/s) ``lame -b`` accepts (MPEG-1 and MPEG-2 layer III together); lame
#: picks the output sample rate that goes with the rate.
MP3_RATES = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
OPUS_KBPS_PER_CHANNEL = (6.0, 256.0)  # opusenc's --bitrate range, per channel
N_FFT, HOP = 2048, 512
LSD_FLOOR_DB = 100.0
MEL_FLOOR_DB = 80.0
MEL_BANDS = 64
HIGHPASS_HZ = 20.0
MAX_LAG_SECONDS = 0.1  # alignment search range for the reference codecs
RATE_TOLERANCE = 0.02  # a reference row within 2 % of its tier's kbit/s is "matched"
OPUS_RATE_TRIES = 6  # Opus encodes at most, to steer VBR onto the tier's rate
TOOL_TIMEOUT = 600  # seconds for one external encoder/decoder run

Log = Callable[[str], None]


@dataclass
class LadderRow:
    """One coded version of the source and its scores (None: not measured)."""

    codec: str  # "hybridcodec", "opus" or "mp3"
    setting: str  # tier name, or the reference codec's option
    layers: int | None  # hybridcodec: layers the stream carries (the most any frame does)
    bytes: int  # whole file, container included
    kbps: float  # 8 * bytes / seconds / 1000
    pcm_ratio: float  # bytes / raw PCM bytes
    snr_db: float
    lsd_db: float
    mel_db: float
    visqol: float | None
    matched_to: str | None = None  # reference codecs: the tier whose rate they match
    delay: int = 0  # samples the decoded signal was shifted by to align it
    note: str = ""


@dataclass
class LadderReport:
    source: str
    seconds: float
    num_samples: int
    sample_rate: int
    channels: int
    bits_per_sample: int
    pcm_bytes: int
    model_id: str
    fill: str
    seed: int
    rows: list[LadderRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    visqol: bool = False  # whether the ViSQOL column was measured
    spectrogram_tiers: tuple[str, ...] = ()

    def tier(self, name: str) -> LadderRow:
        """The hybridcodec row of tier ``name``."""
        for row in self.rows:
            if row.codec == "hybridcodec" and row.setting == name:
                return row
        raise KeyError(name)

    def reference(self, codec: str, tier: str) -> LadderRow | None:
        """The ``codec`` row matched to ``tier`` (None if that codec did not run)."""
        for row in self.rows:
            if row.codec == codec and row.matched_to == tier:
                return row
        return None


# --------------------------------------------------------------------------- metrics


def snr_db(ref: np.ndarray, deg: np.ndarray) -> float:
    """Signal-to-noise ratio over every sample and channel (inf when identical)."""
    noise = float(np.sum((deg - ref) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _power_spectrogram(x: np.ndarray) -> np.ndarray:
    """|STFT|^2 (frames, bins) of a 1-D float signal, Hann window, zero-padded ends."""
    x = np.asarray(x, np.float64)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    frames = 1 + (x.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    window = np.hanning(N_FFT)
    spec = np.fft.rfft(x[idx] * window, axis=1)
    return (spec.real ** 2 + spec.imag ** 2) / np.sum(window ** 2)


def mel_filterbank(sample_rate: int, n_fft: int = N_FFT, bands: int = MEL_BANDS) -> np.ndarray:
    """(bands, n_fft // 2 + 1) triangular filters, equally spaced on the HTK mel scale
    from 0 to fs/2; every filter covers at least one FFT bin."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = hz(np.linspace(0.0, mel(sample_rate / 2.0), bands + 2))
    fb = np.zeros((bands, freqs.size))
    for b in range(bands):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[b] = np.maximum(0.0, np.minimum(up, down))
        if not fb[b].any():  # narrower than a bin: take the nearest bin
            fb[b, int(np.argmin(np.abs(freqs - mid)))] = 1.0
    return fb


def _db(p: np.ndarray, floor: float) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(p, floor))


def spectral_distances(ref: np.ndarray, deg: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """(log-spectral distance dB, mel distance dB) of (samples, channels) float signals."""
    fb = mel_filterbank(sample_rate)
    lsd, mel = [], []
    for c in range(ref.shape[1]):
        pr, pd = _power_spectrogram(ref[:, c]), _power_spectrogram(deg[:, c])
        top = max(float(pr.max()), 1e-20)
        floor = top * 10.0 ** (-LSD_FLOOR_DB / 10.0)
        diff = _db(pr, floor) - _db(pd, floor)
        lsd.append(float(np.mean(np.sqrt(np.mean(diff ** 2, axis=1)))))
        mr, md = pr @ fb.T, pd @ fb.T
        top = max(float(mr.max()), 1e-20)
        floor = top * 10.0 ** (-MEL_FLOOR_DB / 10.0)
        mel.append(float(np.mean(np.abs(_db(mr, floor) - _db(md, floor)))))
    return float(np.mean(lsd)), float(np.mean(mel))


def highpass(x: np.ndarray, sample_rate: int, cutoff: float = HIGHPASS_HZ) -> np.ndarray:
    """Zero-phase Butterworth high-pass along axis 0 (2nd order, run forward and back).

    Every waveform and spectral metric sees the signals through it, so an inaudible DC
    offset or infrasonic drift (which Opus's encoder removes) does not count as error."""
    if cutoff <= 0 or cutoff >= sample_rate / 2 or x.shape[0] < 64:
        return x
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, cutoff, btype="highpass", fs=sample_rate, output="sos")
    return sosfiltfilt(sos, x, axis=0)


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Polyphase resampling along axis 0 (scipy), zero-phase: no delay added."""
    if src_rate == dst_rate:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(int(src_rate), int(dst_rate))
    return resample_poly(x, dst_rate // g, src_rate // g, axis=0)


class Visqol:
    """ViSQOL v3 audio mode (``visqol-python``), per channel at 48 kHz, averaged."""

    RATE = 48000

    def __init__(self) -> None:
        from visqol import VisqolApi  # optional dependency

        self._api = VisqolApi()
        self._api.create(mode="audio")

    @staticmethod
    def available() -> bool:
        try:
            import visqol  # noqa: F401
        except Exception:
            return False
        return True

    def score(self, ref: np.ndarray, deg: np.ndarray, sample_rate: int) -> float:
        r48 = resample(ref, sample_rate, self.RATE)
        d48 = resample(deg, sample_rate, self.RATE)
        scores = []
        for c in range(ref.shape[1]):
            if not np.any(r48[:, c]):
                continue  # a silent channel has no quality to judge
            result = self._api.measure_from_arrays(r48[:, c], d48[:, c], sample_rate=self.RATE)
            scores.append(float(result.moslqo))
        return float(np.mean(scores)) if scores else math.nan


def align(ref: np.ndarray, deg: np.ndarray, max_lag: int,
          window: int = 1 << 20) -> tuple[np.ndarray, int]:
    """``deg`` shifted to line up with ``ref`` and cut / zero-padded to its length.

    The lag is the peak of the cross-correlation of the channel sums (over the first
    ``window`` samples) within +-``max_lag`` samples; positive: ``deg`` is late.
    """
    n = ref.shape[0]
    use = min(n, deg.shape[0], window)
    lag = 0
    if use > 0 and max_lag > 0:
        a = ref[:use].sum(axis=1)
        b = deg[:use].sum(axis=1)
        size = 1 << int(np.ceil(np.log2(2 * use)))
        corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
        lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
        vals = np.concatenate([corr[: max_lag + 1], corr[size - max_lag:]])
        if np.any(vals):
            lag = int(lags[int(np.argmax(vals))])
    out = np.zeros_like(ref)
    lo = max(0, -lag)
    hi = min(n, deg.shape[0] - lag)
    if hi > lo:
        out[lo:hi] = deg[lo + lag: hi + lag]
    return out, lag


# --------------------------------------------------------------------------- audio


def _read_float(path: str) -> tuple[np.ndarray, int]:
    """(samples, channels) float64 in [-1, 1) and the rate, for any PCM bit depth."""
    import soundfile as sf

    data, rate = sf.read(path, dtype="int32", always_2d=True)
    return data.astype(np.float64) / 2.0 ** 31, int(rate)


def _write_excerpt(src: str, dst: str, seconds: float | None) -> tuple[int, int, int, str]:
    """The first ``seconds`` of ``src`` as a WAV of the same bit depth (lame needs WAV);
    returns (num_samples, rate, channels, subtype)."""
    import soundfile as sf

    try:
        info = sf.info(src)
    except Exception as exc:  # libsndfile's own message
        raise InputFileError(f"{src}: unreadable audio: {' '.join(str(exc).split())}") from None
    subtype = info.subtype
    wav_subtype = {"PCM_S8": "PCM_U8", "PCM_U8": "PCM_U8", "PCM_24": "PCM_24",
                   "PCM_16": "PCM_16"}.get(subtype)
    if wav_subtype is None:
        raise InputFileError(f"{src}: the ladder needs 8, 16 or 24-bit integer PCM, "
                             f"not {subtype}")
    frames = info.frames
    if seconds is not None:
        frames = min(frames, int(round(seconds * info.samplerate)))
    data, rate = sf.read(src, frames=frames, dtype="int32", always_2d=True)
    if data.shape[0] == 0:
        raise InputFileError(f"{src}: no audio to measure")
    sf.write(dst, data, rate, subtype=wav_subtype, format="WAV")
    return data.shape[0], rate, data.shape[1], subtype


def _run_tool(cmd: Sequence[str]) -> None:
    proc = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=TOOL_TIMEOUT)
    if proc.returncode != 0:
        err = " ".join(proc.stderr.decode("utf-8", "replace").split())[-300:]
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {err}")


def tool_available(name: str) -> bool:
    return shutil.which(name) is not None


def opus_kbps(target: float, channels: int) -> float:
    """The ``opusenc --bitrate`` closest to ``target`` that opusenc accepts."""
    lo, hi = OPUS_KBPS_PER_CHANNEL
    return round(min(max(target, lo * channels), hi * channels), 1)


def mp3_kbps(target: float) -> int:
    """The ``lame -b`` rate closest to ``target`` (ties: the lower one)."""
    return min(MP3_RATES, key=lambda k: (abs(k - target), k))


# --------------------------------------------------------------------------- the ladder


def _tier_list(tiers: Sequence[str] | None) -> list[str]:
    if tiers is None:
        return list(TIERS)
    out = []
    for name in tiers:
        if name not in TIERS:
            raise UsageError(f"unknown tier {name!r} (choose from {', '.join(TIERS)})")
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError("no tier to measure")
    # always in ladder order, best first
    return [t for t in TIERS if t in out]


def _spectrogram_pair(tiers: list[str]) -> tuple[str, ...]:
    lossy = [t for t in tiers if t != "lossless"]
    if "medium" in lossy and "tiny" in lossy:
        return ("medium", "tiny")
    if len(lossy) >= 2:
        return (lossy[len(lossy) // 2 - (len(lossy) % 2 == 0)], lossy[-1])
    return tuple(lossy) or tuple(tiers[-1:])


def check_outputs(outdir: str | os.PathLike, overwrite: bool) -> None:
    """Refuse (UsageError, exit 2) to replace an existing report without ``overwrite``."""
    outdir = os.fspath(outdir)
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise UsageError(f"--out {outdir}: not a directory")
    if overwrite:
        return
    for name in OUTPUT_FILES:
        path = os.path.join(outdir, name)
        if os.path.exists(path):
            raise UsageError(f"{path} exists (use -f to overwrite)")


def run_ladder(src: str | os.PathLike, outdir: str | os.PathLike, *,
               tiers: Sequence[str] | None = None, seconds: float | None = None,
               reference_codecs: bool = True, visqol: bool | None = None,
               model: str | None = None, fill: str = "sample", seed: int = 0,
               overwrite: bool = False, plots: bool = True,
               log: Log | None = None) -> LadderReport:
    """Measure every tier of ``src`` (and Opus / MP3 at matched rates); write the report.

    ``seconds``: only the first seconds of the file. ``visqol``: None = when installed.
    ``fill`` / ``seed``: how lower tiers are decoded (see :func:`hybridcodec.decode`).
    Returns the :class:`LadderReport`; ``report.written`` lists the files written.
    """
    from hybridcodec import codec
    from hybridcodec.container import read_stream_layout
    from hybridcodec.truncation import truncate_file

    src = os.fspath(src)
    outdir = os.fspath(outdir)
    tier_names = _tier_list(tiers)
    if seconds is not None and not (seconds > 0 and math.isfinite(seconds)):
        raise UsageError(f"--seconds must be a positive number, got {seconds}")
    check_outputs(outdir, overwrite)
    if not os.path.exists(src):
        raise InputFileError(f"{src}: cannot open: no such file")
    say = log or (lambda text: None)
    use_visqol = Visqol.available() if visqol is None else visqol
    scorer = Visqol() if use_visqol else None
    notes: list[str] = []

    with tempfile.TemporaryDirectory(prefix="hybridcodec-ladder-") as tmp:
        ref_wav = os.path.join(tmp, "source.wav")
        n, rate, nch, subtype = _write_excerpt(src, ref_wav, seconds)
        ref, _ = _read_float(ref_wav)
        duration = n / rate

        ref_hp = highpass(ref, rate)

        def measure(deg: np.ndarray) -> tuple[float, float, float, float | None]:
            deg_hp = highpass(deg, rate)
            lsd, mel = spectral_distances(ref_hp, deg_hp, rate)
            vq = scorer.score(ref, deg, rate) if scorer is not None else None
            return snr_db(ref_hp, deg_hp), lsd, mel, vq

        say(f"encoding {duration:.2f} s losslessly")
        full = os.path.join(tmp, "lossless.hyb")
        codec.encode_file(ref_wav, full, model=model)
        header = read_stream_layout(full).header
        pcm_bytes = n * nch * (-(-header.bits_per_sample // 8))
        report = LadderReport(src, duration, n, rate, nch, header.bits_per_sample, pcm_bytes,
                              header.model_id, fill, seed, notes=notes,
                              visqol=scorer is not None)
        decoded: dict[str, np.ndarray] = {"source": ref}
        for name in tier_names:
            path = full if name == "lossless" else os.path.join(tmp, f"{name}.hyb")
            if name != "lossless":
                truncate_file(full, path, tier=name)
            layers = read_stream_layout(path).layers_carried
            out = os.path.join(tmp, f"{name}.wav")
            codec.decode_file(path, out, model=model, fill=fill, seed=seed)
            deg, drate = _read_float(out)
            if deg.shape != ref.shape or drate != rate:
                raise RuntimeError(f"tier {name} decoded to {deg.shape} at {drate} Hz, "
                                   f"expected {ref.shape} at {rate} Hz")
            size = os.path.getsize(path)
            row = LadderRow("hybridcodec", name, layers, size, 8 * size / duration / 1000,
                            size / pcm_bytes, *measure(deg))
            report.rows.append(row)
            decoded[name] = deg
            say(f"tier {name}: {layers} layers, {row.kbps:.1f} kbit/s, SNR {row.snr_db:.1f} dB")

        lossy = [r for r in report.rows if r.setting != "lossless"]
        if reference_codecs and lossy:
            _reference_rows(report, lossy, ref_wav, ref, rate, nch, duration, pcm_bytes,
                            tmp, measure, decoded, say)
        elif not reference_codecs:
            notes.append("Reference codecs (Opus, MP3) not run (--no-reference-codecs).")

        if scorer is None:
            notes.append("ViSQOL not measured (the `visqol-python` package is not installed "
                         "or was turned off): the perceptual column is the mel distance.")
        report.spectrogram_tiers = _spectrogram_pair(tier_names)
        os.makedirs(outdir, exist_ok=True)
        _write_csv(report, os.path.join(outdir, "ladder.csv"))
        report.written.append(os.path.join(outdir, "ladder.csv"))
        if plots:
            try:
                _plot_rate_quality(report, os.path.join(outdir, "rate_quality.png"))
                _plot_spectrograms(report, decoded, os.path.join(outdir, "spectrograms.png"))
                report.written += [os.path.join(outdir, "rate_quality.png"),
                                   os.path.join(outdir, "spectrograms.png")]
            except ImportError:
                notes.append("Plots not drawn: matplotlib is not installed "
                             "(`pip install matplotlib`).")
        _atomic_text(os.path.join(outdir, "ladder.md"), markdown(report))
        report.written.insert(0, os.path.join(outdir, "ladder.md"))
    return report


def _reference_rows(report, lossy, ref_wav, ref, rate, nch, duration, pcm_bytes, tmp,
                    measure, decoded, say) -> None:
    notes = report.notes
    max_lag = max(1, int(MAX_LAG_SECONDS * rate))
    runs = []
    if tool_available("opusenc") and tool_available("opusdec"):
        runs.append("opus")
    else:
        notes.append("Opus rows skipped: `opusenc`/`opusdec` not found "
                     "(install opus-tools).")
    if nch > 2:
        notes.append(f"MP3 rows skipped: MP3 holds 1 or 2 channels, the source has {nch}.")
    elif tool_available("lame"):
        runs.append("mp3")
    else:
        notes.append("MP3 rows skipped: `lame` not found (install lame).")
    done: dict[tuple[str, float], tuple] = {}
    for codec_name in runs:
        for tier_row in lossy:
            target = tier_row.kbps
            key = (codec_name, round(target, 1) if codec_name == "opus" else mp3_kbps(target))
            try:
                if key not in done:
                    done[key] = _code_reference(codec_name, target, ref_wav, ref, rate, nch,
                                                duration, tmp, len(done), max_lag)
                k, size, deg, lag = done[key]
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                notes.append(f"{codec_name} at {target:.0f} kbit/s failed: "
                             f"{' '.join(str(exc).split())}")
                continue
            setting = f"--bitrate {k:g}" if codec_name == "opus" else f"-b {k}"
            row = LadderRow(codec_name, setting, None, size, 8 * size / duration / 1000,
                            size / pcm_bytes, *measure(deg), matched_to=tier_row.setting,
                            delay=lag)
            if abs(row.kbps - target) > RATE_TOLERANCE * target:
                row.note = f"rate off by {100 * (row.kbps / target - 1):+.0f} %"
            report.rows.append(row)
            decoded[f"{codec_name}:{tier_row.setting}"] = deg
            say(f"{codec_name} {setting}: {row.kbps:.1f} kbit/s, SNR {row.snr_db:.1f} dB")


def _code_reference(codec_name: str, target: float, ref_wav: str, ref: np.ndarray, rate: int,
                    nch: int, duration: float, tmp: str, serial: int, max_lag: int):
    """(option value, coded bytes, aligned decoded float signal, delay) of one reference
    encode at ``target`` kbit/s.

    MP3 is CBR at the nearest rate lame offers. Opus is VBR, whose rate depends on the
    content: the ``--bitrate`` option is corrected (up to OPUS_RATE_TRIES encodes) until
    the file's real rate is within RATE_TOLERANCE of the target, or opusenc's limit.
    """
    stem = os.path.join(tmp, f"{codec_name}-{serial}")
    if codec_name == "opus":
        coded = stem + ".opus"
        k = opus_kbps(target, nch)
        for _ in range(OPUS_RATE_TRIES):
            _run_tool(["opusenc", "--quiet", "--bitrate", f"{k:g}", ref_wav, coded])
            actual = 8 * os.path.getsize(coded) / duration / 1000
            better = opus_kbps(k * target / actual, nch)
            if abs(actual - target) <= RATE_TOLERANCE * target or better == k:
                break
            k = better
        _run_tool(["opusdec", "--quiet", "--rate", str(rate), coded, stem + ".wav"])
    else:
        coded = stem + ".mp3"
        k = mp3_kbps(target)
        _run_tool(["lame", "--quiet", "-b", str(k), ref_wav, coded])
        _run_tool(["lame", "--quiet", "--decode", coded, stem + ".wav"])
    deg, drate = _read_float(stem + ".wav")
    if deg.shape[1] != ref.shape[1]:
        raise RuntimeError(f"decoded {deg.shape[1]} channels, expected {ref.shape[1]}")
    deg = resample(deg, drate, rate)
    deg, lag = align(ref, deg, max_lag)
    return k, os.path.getsize(coded), deg, lag


# --------------------------------------------------------------------------- output


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}f}"


def _ratio(r: float) -> str:
    return f"1/{1 / r:.1f} ({100 * r:.1f} %)" if r > 0 else "n/a"


def markdown(report: LadderReport) -> str:
    """The report as markdown (what ``ladder.md`` holds)."""
    pcm_kbps = 8 * report.pcm_bytes / report.seconds / 1000
    perceptual = ("ViSQOL MOS-LQO ↑" if report.visqol
                  else "ViSQOL (not installed: see mel dist)")
    lines = [
        f"# Ladder: {os.path.basename(report.source)}",
        "",
        f"Source `{report.source}`: {report.seconds:.2f} s, {report.sample_rate} Hz, "
        f"{report.channels} ch, {report.bits_per_sample}-bit; raw PCM {report.pcm_bytes} "
        f"bytes = {pcm_kbps:.1f} kbit/s. hybridcodec model `{report.model_id}`; lower "
        f"tiers decoded with fill `{report.fill}`, seed {report.seed}.",
        "",
        f"| codec | tier / setting | layers | bytes | kbit/s | size / PCM | SNR dB ↑ | "
        f"LSD dB ↓ | mel dist dB ↓ | {perceptual} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        setting = r.setting if r.matched_to is None else f"{r.setting} (≈ {r.matched_to})"
        if r.note:
            setting += f"; {r.note}"
        lines.append(
            f"| {r.codec} | {setting} | {r.layers if r.layers is not None else ''} | "
            f"{r.bytes} | {r.kbps:.1f} | {_ratio(r.pcm_ratio)} | {_fmt(r.snr_db)} | "
            f"{_fmt(r.lsd_db, 2)} | {_fmt(r.mel_db, 2)} | {_fmt(r.visqol, 2)} |")
    lines += [
        "",
        "Every score compares samples 0 .. N-1 of the source (N = "
        f"{report.num_samples}) with the same samples of the decoded signal. SNR, LSD and "
        f"mel dist are measured after a zero-phase {HIGHPASS_HZ:g} Hz high-pass of both "
        "signals (Opus's encoder removes DC, which is inaudible). SNR over all "
        "channels; LSD: log-spectral distance, STFT Hann 2048 / hop 512, powers floored at "
        f"the source's peak - {LSD_FLOOR_DB:g} dB; mel dist: mean |difference| of "
        f"{MEL_BANDS}-band mel spectra in dB, floored at the peak - {MEL_FLOOR_DB:g} dB; "
        "ViSQOL v3 audio mode (48 kHz, per channel, mean; 1 = bad, ~4.7 = transparent). "
        "Opus: `opusenc --bitrate K` (VBR; K corrected until the file's rate is within "
        f"{100 * RATE_TOLERANCE:g} % of the tier's), decoded with `opusdec --rate <source "
        "rate>`; "
        "MP3: `lame -b K` (CBR at the nearest rate lame offers), `lame --decode`, "
        "resampled back to the source rate where lame changed it; both aligned by "
        "cross-correlation. kbit/s is measured from the file size for every row.",
        "",
        "Lower tiers fill what their dropped layers carried from the priors (fill "
        "`sample` draws noise of the right level: full-band, but uncorrelated with the "
        "source, so SNR counts it as error twice over; `mean` gives a higher SNR and a "
        "duller sound).",
    ]
    delays = [f"{r.codec} {r.setting}: {r.delay}" for r in report.rows if r.delay]
    if delays:
        lines += ["", "Alignment shifts (samples): " + ", ".join(delays) + "."]
    if report.notes:
        lines += [""] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("codec", "setting", "matched_to", "layers", "bytes", "kbps", "pcm_ratio",
              "snr_db", "lsd_db", "mel_db", "visqol", "delay", "note")


def csv_text(report: LadderReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in report.rows:
        w.writerow([r.codec, r.setting, r.matched_to or "", "" if r.layers is None else r.layers,
                    r.bytes, f"{r.kbps:.3f}", f"{r.pcm_ratio:.6f}", _csv_num(r.snr_db),
                    _csv_num(r.lsd_db), _csv_num(r.mel_db), _csv_num(r.visqol), r.delay,
                    r.note])
    return buf.getvalue()


def _csv_num(v: float | None) -> str:
    if v is None or math.isnan(v):
        return ""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4f}"


def _atomic_text(path: str, text: str) -> None:
    from hybridcodec.atomic import atomic_output

    with atomic_output(path, overwrite=True) as fp:
        fp.write(text.encode("utf-8"))


def _write_csv(report: LadderReport, path: str) -> None:
    _atomic_text(path, csv_text(report))


def _save(fig, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from hybridcodec.atomic import atomic_output

    FigureCanvasAgg(fig)
    with atomic_output(path, overwrite=True) as fp:
        fig.savefig(fp, format="png", dpi=110)


STYLE = {"hybridcodec": ("o-", "C0"), "opus": ("s--", "C1"), "mp3": ("^:", "C2")}


KBPS_TICKS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
              3072, 4096, 6144, 8192)


def _kbps_ticks(ax, values: list[float]) -> None:
    """Plain-number ticks on a log kbit/s axis (matplotlib's 3x10^2 labels collide)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    lo, hi = min(values), max(values)
    ticks = [t for t in KBPS_TICKS if lo / 1.3 <= t <= hi * 1.3] or [round(lo)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _plot_rate_quality(report: LadderReport, path: str) -> None:
    from matplotlib.figure import Figure

    panels = [("snr_db", "SNR (dB) ↑"), ("mel_db", "mel distance (dB) ↓")]
    if report.visqol:
        panels.append(("visqol", "ViSQOL MOS-LQO ↑"))
    fig = Figure(figsize=(5.2 * len(panels), 4.4))
    for i, (attr, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for codec_name, (style, color) in STYLE.items():
            rows = [r for r in report.rows if r.codec == codec_name]
            pts = sorted((r.kbps, getattr(r, attr), r.setting) for r in rows
                         if getattr(r, attr) is not None and math.isfinite(getattr(r, attr)))
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color,
                    label=codec_name)
            if codec_name == "hybridcodec":
                for x, y, name in pts:
                    ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4),
                                fontsize=8)
        ax.set_xscale("log")
        _kbps_ticks(ax, [r.kbps for r in report.rows])
        ax.set_xlabel("kbit/s")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{os.path.basename(report.source)}: rate vs quality "
                 f"({report.seconds:.1f} s, {report.sample_rate} Hz, {report.channels} ch)")
    fig.tight_layout()
    _save(fig, path)


def _plot_spectrograms(report: LadderReport, decoded: dict[str, np.ndarray], path: str) -> None:
    from matplotlib.figure import Figure

    panels = [("source", "source")]
    for name in report.spectrogram_tiers:
        row = report.tier(name)
        panels.append((name, f"hybridcodec {name} ({row.kbps:.0f} kbit/s)"))
    low = report.spectrogram_tiers[-1] if report.spectrogram_tiers else None
    if low is not None and f"opus:{low}" in decoded:
        ref_row = report.reference("opus", low)
        panels.append((f"opus:{low}", f"Opus at {ref_row.kbps:.0f} kbit/s (≈ {low})"))
    fig = Figure(figsize=(10, 2.6 * len(panels)))
    rate = report.sample_rate
    specs = [10 * np.log10(_power_spectrogram(decoded[key].mean(axis=1)).T + 1e-12)
             for key, _ in panels]
    vmax = float(specs[0].max())
    for i, ((key, title), spec) in enumerate(zip(panels, specs)):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        extent = (0, report.seconds, 0, rate / 2000)
        im = ax.imshow(spec, origin="lower", aspect="auto", extent=extent, cmap="magma",
                       vmin=vmax - 100, vmax=vmax)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("kHz")
        if i == len(panels) - 1:
            ax.set_xlabel("s")
        fig.colorbar(im, ax=ax, label="dB")
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------------- command line

PROG = "ladder"  # the prefix of its messages


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _tiers_arg(text: str) -> list[str]:
    names = [t for t in text.split(",") if t]
    for name in names:
        if name not in TIERS:
            raise argparse.ArgumentTypeError(
                f"unknown tier {name!r} (choose from {', '.join(TIERS)})")
    return names


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as ``ladder: ...`` lines (exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(UsageError.exit_code, f"{PROG}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m evaluation.ladder`` (those of the former
    ``hybridcodec ladder`` verb)."""
    from hybridcodec.cli import FILL_CHOICES

    p = _Parser(
        prog="python -m evaluation.ladder",
        description="encode FILE once (lossless), truncate it to every tier, decode each "
        "and measure it (SNR, log-spectral and mel distance, ViSQOL when visqol-python is "
        "installed), with Opus and MP3 at the same bit rates where opusenc/opusdec and "
        "lame exist; write ladder.md, ladder.csv, rate_quality.png and spectrograms.png "
        "into DIR",
        usage="%(prog)s FILE --out DIR [--tiers NAME...] [--seconds N] "
        "[--no-reference-codecs] [--no-visqol] [--fill MODE] [--seed N] [--model PATH] "
        "[-f] [-q]",
        epilog="exit codes: 0 ok, 1 error, 2 usage (or an existing report without -f), "
        "3 unreadable audio, 5 model problem, 70 internal error, 130 interrupted.",
    )
    p.add_argument("inputs", nargs=1, metavar="FILE", help="audio file (WAV, FLAC, AIFF)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="directory for the report (created if missing)")
    p.add_argument("--tiers", nargs="+", type=_tiers_arg, metavar="NAME",
                   help=f"tiers to measure, space or comma separated (default: all: "
                   f"{', '.join(TIERS)})")
    p.add_argument("--seconds", type=_seconds_arg, metavar="N",
                   help="measure only the first N seconds of FILE")
    p.add_argument("--no-reference-codecs", action="store_true",
                   help="do not run Opus and MP3")
    p.add_argument("--no-visqol", action="store_true",
                   help="do not compute ViSQOL even when visqol-python is installed (faster)")
    p.add_argument("--fill", choices=FILL_CHOICES, default="sample",
                   help="how lower tiers are decoded (default sample)")
    p.add_argument("--seed", type=seed_arg, metavar="N", default=0,
                   help="seed for --fill sample (default 0)")
    p.add_argument("--model", metavar="PATH", help="model file (default: the built-in one)")
    p.add_argument("-f", "--force", action="store_true",
                   help="overwrite an existing report in DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, no table")
    return p


def _message(src: str, text: str) -> str:
    text = " ".join(str(text).split())
    return f"{PROG}: {text}" if text.startswith(f"{src}:") else f"{PROG}: {src}: {text}"


def main(argv: Sequence[str] | None = None, *, stdout=None, stderr=None) -> int:
    """Run the ladder report from the command line; returns the exit status.

    The table goes to stdout, progress to stderr (``-q``: neither); every error is one
    ``ladder: ...`` line with the codec's exit codes (2 usage, 3 unreadable audio, ...).
    """
    from hybridcodec import cancel

    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        args = build_parser().parse_intermixed_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else UsageError.exit_code
    src = args.inputs[0]

    def log(text: str) -> None:
        if not args.quiet:
            print(f"{PROG}: {text}", file=err, flush=True)

    # As in the hybridcodec CLI: an interrupt stops the codec between two frames, then
    # every temporary file is removed on the way out.
    previous = signal.signal(signal.SIGINT,
                             lambda signum, frame: cancel.interrupt(KeyboardInterrupt()))
    try:
        if src == "-":
            raise UsageError("the ladder needs an audio file (standard input - cannot be used)")
        report = run_ladder(
            src, args.out, seconds=args.seconds,
            tiers=[t for group in args.tiers for t in group] if args.tiers else None,
            reference_codecs=not args.no_reference_codecs,
            visqol=False if args.no_visqol else None, model=args.model, fill=args.fill,
            seed=args.seed, overwrite=args.force, log=log)
        if not args.quiet:
            print(markdown(report), file=out, end="", flush=True)
            print(f"wrote {', '.join(report.written)}", file=out, flush=True)
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err, flush=True)
        return 130
    except BrokenPipeError:
        return 141
    except HybridCodecError as exc:
        print(_message(src, str(exc) or "error"), file=err, flush=True)
        return exc.exit_code
    except OSError as exc:
        print(_message(src, exc.strerror or str(exc)), file=err, flush=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: one line, not a traceback
        print(_message(src, f"internal error: {exc} (please report)"), file=err, flush=True)
        return 70
    finally:
        cancel.reset()
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
