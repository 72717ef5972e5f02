"""The lossy ladder at fixed bit rates against MP3 and Opus (issue 10's floors).

For every item (CD-quality stereo corpus files at 44.1 kHz, the same resampled to 48 kHz,
and mono instrument files; the first ``--seconds`` of each) and every rate N in
``--rates``: hybridcodec (``encode`` once losslessly, ``truncate --kbps N``, ``decode``),
LAME CBR ``-b N`` and Opus VBR steered to N (the rate its file really has within 2 %),
each scored with ViSQOL v3 (audio mode) against the source on the same samples. Also,
for hybridcodec: the real rate over N, the 12-20 kHz level against the source, the
energy above 8 kHz within 2 ms of every frame boundary against the 20 ms around it, and
the in-process encode and lossy decode speed on one core (CPU time of the process, so
other jobs on the machine do not count).

Run from the repository root (needs ``lame`` and ``opus-tools``; ``visqol-python``)::

    python -m benchmarks.rates --out outputs/rates          # the default item set
    python -m benchmarks.rates --items all --seconds 10      # every CD-quality file

It prints markdown tables (and the floors: met or not) on stdout; ``--out`` keeps a CSV.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

import hybridcodec  # noqa: E402
from evaluation.ladder import (MAX_LAG_SECONDS, Visqol, _code_reference, resample,  # noqa: E402
                               tool_available)
from hybridcodec.truncation import truncate_file  # noqa: E402

CORPUS = REPO.parent / "shared" / "data" / "corpus"
RATES = (64, 96, 128, 192, 256, 320)
# The default items: CD-quality stereo music spread over the corpus, two solo instruments.
DEFAULT_CD = ("cellar-01", "cellar-04", "cellar-07", "cellar-10", "cellar-13", "cellar-16",
              "cellar-22", "cellar-56")
DEFAULT_MONO = ("piano", "sax-phrase")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Item:
    name: str
    path: Path  # a WAV excerpt (written by prepare)
    rate: int
    channels: int
    seconds: float


@dataclass
class Result:
    item: str
    codec: str
    target: int
    kbps: float
    visqol: float
    hf_db: float | None = None  # 12-20 kHz level against the source
    seam_db: float | None = None  # worst frame boundary: >8 kHz energy against around it
    lossless: bool = False  # the target is above the lossless rate: the whole stream


@dataclass
class Speed:
    encode: list[float] = field(default_factory=list)  # x realtime
    decode: list[float] = field(default_factory=list)


def cd_files(which: str) -> list[Path]:
    music = CORPUS / "music"
    if which == "all":
        out = []
        for p in sorted(music.glob("*.flac")):
            info = sf.info(str(p))
            if info.samplerate == 44100 and info.channels == 2 and info.subtype == "PCM_16":
                out.append(p)
        return out
    return [music / f"{n}.flac" for n in DEFAULT_CD]


def prepare(tmp: Path, seconds: float, which: str, with_48k: bool) -> list[Item]:
    """WAV excerpts of every item (and their 48 kHz versions)."""
    from scipy.signal import resample_poly

    items = []
    sources = [(p, p.stem) for p in cd_files(which)]
    sources += [(CORPUS / "instruments" / f"{n}.flac", n) for n in DEFAULT_MONO]
    for path, name in sources:
        data, rate = sf.read(str(path), dtype="int16", always_2d=True)
        data = data[: int(seconds * rate)]
        out = tmp / f"{name}.wav"
        sf.write(str(out), data, rate, subtype="PCM_16")
        items.append(Item(name, out, rate, data.shape[1], len(data) / rate))
        if with_48k and data.shape[1] == 2:
            up = resample_poly(data.astype(np.float64), 160, 147, axis=0)
            up = np.clip(np.round(up), -32768, 32767).astype(np.int16)
            out48 = tmp / f"{name}-48k.wav"
            sf.write(str(out48), up, 48000, subtype="PCM_16")
            items.append(Item(f"{name}@48k", out48, 48000, 2, len(up) / 48000))
    return items


def _float(path) -> np.ndarray:
    return sf.read(str(path), dtype="float64", always_2d=True)[0]


def hf_level_db(ref: np.ndarray, deg: np.ndarray, rate: int, lo=12000.0, hi=20000.0) -> float:
    spec = lambda x: np.abs(np.fft.rfft(x, axis=0)) ** 2  # noqa: E731
    f = np.fft.rfftfreq(ref.shape[0], 1 / rate)
    band = (f >= lo) & (f < min(hi, rate / 2))
    r, d = spec(ref)[band].sum(), spec(deg)[band].sum()
    return 10 * math.log10((d + 1e-30) / (r + 1e-30))


def seam_db(deg: np.ndarray, rate: int, frame_length: int) -> float | None:
    """Worst frame boundary: energy above 8 kHz within 2 ms of it against the 20 ms
    around it (the 2 ms excluded), in dB."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(8, 8000, "highpass", fs=rate, output="sos")
    h = sosfiltfilt(sos, deg, axis=0)
    near, around = int(0.002 * rate), int(0.010 * rate)
    worst = None
    for b in range(frame_length, deg.shape[0] - around, frame_length):
        inner = (h[b - near: b + near] ** 2).mean()
        outer = np.concatenate([h[b - around: b - near], h[b + near: b + around]])
        value = 10 * math.log10((inner + 1e-30) / ((outer ** 2).mean() + 1e-30))
        worst = value if worst is None else max(worst, value)
    return worst


def run_item(item: Item, rates, tmp: Path, visqol: Visqol, speed: Speed,
             references: bool) -> list[Result]:
    ref = _float(item.path)
    out = []
    full = tmp / f"{item.name}.hyb"
    # CPU time of this (single-threaded) process: one core's speed, whatever else runs
    start = time.process_time()
    hybridcodec.encode(item.path, full, overwrite=True)
    speed.encode.append(item.seconds / (time.process_time() - start))
    frame_length = hybridcodec.container.read_stream_layout(full).header.frame_length
    for n in rates:
        cut = tmp / f"{item.name}-{n}.hyb"
        truncate_file(full, cut, kbps=n, overwrite=True)
        wav = tmp / f"{item.name}-{n}.wav"
        start = time.process_time()
        hybridcodec.decode(cut, wav, overwrite=True)
        speed.decode.append(item.seconds / (time.process_time() - start))
        deg = _float(wav)
        kbps = 8 * os.path.getsize(cut) / item.seconds / 1000
        complete = hybridcodec.container.read_stream_layout(cut).header.complete
        out.append(Result(item.name, "hybridcodec", n, kbps, visqol.score(ref, deg, item.rate),
                          hf_level_db(ref, deg, item.rate), seam_db(deg, item.rate, frame_length),
                          lossless=complete))
        if not references:
            continue
        for codec in ("mp3", "opus"):
            _, nbytes, dec, _ = _code_reference(codec, n, str(item.path), ref, item.rate,
                                                item.channels, item.seconds, str(tmp), n,
                                                int(MAX_LAG_SECONDS * item.rate))
            out.append(Result(item.name, codec, n, 8 * nbytes / item.seconds / 1000,
                              visqol.score(ref, dec, item.rate)))
    return out


def _mean(values) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


def report(results: list[Result], rates, speed: Speed, items: list[Item]) -> str:
    lines = [f"{len(items)} items ({sum(i.seconds for i in items):.0f} s): "
             + ", ".join(i.name for i in items), "",
             "Mean ViSQOL (MOS-LQO) at each target rate; real kbit/s in brackets.", "",
             "| kbit/s | hybridcodec | MP3 (LAME CBR) | Opus | hyb − MP3 | hyb − Opus |",
             "|---|---|---|---|---|---|"]
    floors = []
    prev = None
    for n in rates:
        row = {c: [r for r in results if r.codec == c and r.target == n]
               for c in ("hybridcodec", "mp3", "opus")}
        v = {c: _mean(r.visqol for r in rs) for c, rs in row.items()}
        k = {c: _mean(r.kbps for r in rs) for c, rs in row.items()}
        lines.append(f"| {n} | {v['hybridcodec']:.2f} ({k['hybridcodec']:.0f}) | "
                     f"{v['mp3']:.2f} ({k['mp3']:.0f}) | {v['opus']:.2f} ({k['opus']:.0f}) | "
                     f"{v['hybridcodec'] - v['mp3']:+.2f} | {v['hybridcodec'] - v['opus']:+.2f} |")
        margin = 0.25 if n >= 128 else 0.5
        floors.append((f"{n} kbit/s: mean ViSQOL >= MP3", v["hybridcodec"] >= v["mp3"]))
        if n <= 256:
            floors.append((f"{n} kbit/s: >= Opus - {margin}", v["hybridcodec"] >= v["opus"] - margin))
        if prev is not None:
            floors.append((f"{n} kbit/s: not lower than at the rate below",
                           v["hybridcodec"] >= prev - 1e-9))
        prev = v["hybridcodec"]
    hyb = [r for r in results if r.codec == "hybridcodec"]
    ratios = [r.kbps / r.target for r in hyb if not r.lossless] or [math.nan]
    lines += ["", "hybridcodec, over every item and rate:", "",
              f"- real rate / target (where the target is below the lossless rate): "
              f"{min(ratios):.3f} .. {max(ratios):.3f} (mean {_mean(ratios):.3f}); "
              f"{sum(r.lossless for r in hyb)} of {len(hyb)} targets were at or above it "
              f"(the whole, lossless stream)",
              f"- 12-20 kHz level vs source: {min(r.hf_db for r in hyb):+.1f} .. "
              f"{max(r.hf_db for r in hyb):+.1f} dB",
              f"- frame boundaries, energy above 8 kHz within 2 ms vs the 20 ms around: worst "
              f"{max((r.seam_db for r in hyb if r.seam_db is not None), default=math.nan):+.1f} dB",
              f"- speed, one core, in-process: encode {min(speed.encode):.1f}x .. "
              f"{max(speed.encode):.1f}x (median {statistics.median(speed.encode):.1f}x), "
              f"lossy decode {min(speed.decode):.1f}x .. {max(speed.decode):.1f}x "
              f"(median {statistics.median(speed.decode):.1f}x) realtime"]
    floors += [("real rate 0.95-1.00 of the target",
                all(0.95 <= x <= 1.0 for x in ratios)),
               ("12-20 kHz level within 3 dB", all(abs(r.hf_db) <= 3 for r in hyb)),
               ("frame boundaries within 3 dB", all(r.seam_db is None or r.seam_db <= 3
                                                   for r in hyb)),
               ("encode >= 10x, lossy decode >= 20x (median)",
                statistics.median(speed.encode) >= 10 and statistics.median(speed.decode) >= 20)]
    opus64 = _mean(r.visqol for r in results if r.codec == "opus" and r.target == 64)
    reach = [n for n in rates
             if _mean(r.visqol for r in hyb if r.target == n) >= opus64]
    lines.append(f"- the lowest rate here at which hybridcodec reaches Opus-64k's mean ViSQOL "
                 f"({opus64:.2f}): {reach[0] if reach else 'none'} kbit/s")
    lines += ["", "Floors:", ""] + [f"- [{'x' if ok else ' '}] {text}" for text, ok in floors]
    per_item = ["", "Per item (ViSQOL hybridcodec / MP3 / Opus):", "",
                "| item | " + " | ".join(str(n) for n in rates) + " |",
                "|---|" + "---|" * len(rates)]
    for item in items:
        cells = []
        for n in rates:
            got = {r.codec: r.visqol for r in results if r.item == item.name and r.target == n}
            cells.append("/".join(f"{got.get(c, math.nan):.2f}"
                                  for c in ("hybridcodec", "mp3", "opus")))
        per_item.append(f"| {item.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + per_item)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", choices=("default", "all"), default="default")
    ap.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-48k", action="store_true", help="leave out the 48 kHz versions")
    ap.add_argument("--no-reference-codecs", action="store_true")
    ap.add_argument("--out", type=Path, help="write results.csv and report.md here")
    args = ap.parse_args(argv)
    references = not args.no_reference_codecs
    if references and not (tool_available("lame") and tool_available("opusenc")):
        print("lame / opus-tools not installed: reference codecs left out "
              "(apt-get install lame opus-tools)", file=sys.stderr)
        references = False
    if not Visqol.available():
        print("visqol-python is not installed (pip install visqol-python)", file=sys.stderr)
        return 2
    visqol = Visqol()
    speed = Speed()
    results = []
    with tempfile.TemporaryDirectory(prefix="rates-") as tmpdir:
        tmp = Path(tmpdir)
        items = prepare(tmp, args.seconds, args.items, not args.no_48k)
        hybridcodec.encode(items[0].path, tmp / "warm.hyb", overwrite=True)  # numba warm-up
        for item in items:
            start = time.perf_counter()
            results += run_item(item, args.rates, tmp, visqol, speed, references)
            _log(f"{item.name}: {time.perf_counter() - start:.0f} s")
    text = report(results, args.rates, speed, items)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(text + "\n")
        with open(args.out / "results.csv", "w", newline="") as fp:
            w = csv.writer(fp)
            w.writerow(["item", "codec", "target_kbps", "kbps", "visqol", "hf_db", "seam_db"])
            for r in results:
                w.writerow([r.item, r.codec, r.target, f"{r.kbps:.2f}", f"{r.visqol:.4f}",
                            "" if r.hf_db is None else f"{r.hf_db:.2f}",
                            "" if r.seam_db is None else f"{r.seam_db:.2f}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
