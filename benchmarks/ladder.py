"""Ladder calibration: the ladder report (``python -m evaluation.ladder``) over several
files, and the tier sizes of a set.

Two modes:

* default: run :func:`evaluation.ladder.run_ladder` on each file (first ``--seconds``),
  keep each file's report in ``--out DIR/<name>/``, and print the typical bit rate and
  scores per tier with Opus and MP3 at the matched rates (means over the files);
* ``--sizes-only``: encode every file of a corpus set, truncate to every tier, and print
  each tier's total size against raw PCM (the issue's floor: ``tiny`` <= 1/20 of PCM on
  corpus/music as a whole: sum of bytes over all files / sum of PCM bytes).

Run from the repository root::

    python benchmarks/ladder.py --out outputs/ladder                  # cellar-01..09
    python benchmarks/ladder.py --sizes-only --set music
    python benchmarks/ladder.py FILE... --seconds 10 --no-visqol --out /tmp/ladder

Markdown goes to stdout (and ``--output FILE``), progress to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import soundfile as sf  # noqa: E402

import hybridcodec  # noqa: E402
from evaluation.ladder import LadderReport, run_ladder  # noqa: E402
from hybridcodec.tiers import TIERS  # noqa: E402
from hybridcodec.truncation import truncate_file  # noqa: E402

CORPUS = REPO.parent / "shared" / "data" / "corpus"
DEFAULT_FILES = [CORPUS / "music" / f"cellar-{i:02d}.flac" for i in range(1, 10)]


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else None


def _f(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    if math.isinf(v):
        return "∞"
    return f"{v:.{digits}f}"


def ladder_summary(reports: list[LadderReport]) -> str:
    """Typical kbit/s and scores per tier over several ladder reports."""
    tiers = [t for t in TIERS if all(any(r.codec == "hybridcodec" and r.setting == t
                                         for r in rep.rows) for rep in reports)]
    seconds = sum(rep.seconds for rep in reports)
    pcm = sum(rep.pcm_bytes for rep in reports)
    visqol = all(rep.visqol for rep in reports)
    lines = [
        f"{len(reports)} files, {seconds:.1f} s in all. kbit/s: total bits / total seconds "
        "(median and range over files in brackets); size / PCM: total bytes / total raw "
        "PCM bytes; scores: means over files. Reference rows: each codec at the rate "
        "matched to the tier, file by file (mean of their real kbit/s).",
        "",
        "| tier | layers | kbit/s | per file: median [min–max] | size / PCM | SNR dB | "
        "mel dist dB | ViSQOL | Opus kbit/s | Opus SNR | Opus mel | Opus ViSQOL | "
        "MP3 kbit/s | MP3 SNR | MP3 mel | MP3 ViSQOL |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tier in tiers:
        rows = [rep.tier(tier) for rep in reports]
        total = sum(r.bytes for r in rows)
        per_file = [r.kbps for r in rows]
        cells = [tier, str(rows[0].layers), f"{8 * total / seconds / 1000:.1f}",
                 f"{statistics.median(per_file):.0f} [{min(per_file):.0f}–{max(per_file):.0f}]",
                 f"1/{pcm / total:.1f} ({100 * total / pcm:.1f} %)",
                 _f(_mean(r.snr_db for r in rows)) if tier != "lossless" else "∞",
                 _f(_mean(r.mel_db for r in rows), 2),
                 _f(_mean(r.visqol for r in rows), 2) if visqol else "n/a"]
        for codec in ("opus", "mp3"):
            refs = [rep.reference(codec, tier) for rep in reports]
            refs = [r for r in refs if r is not None]
            if not refs or tier == "lossless":
                cells += ["", "", "", ""]
                continue
            cells += [_f(_mean(r.kbps for r in refs)), _f(_mean(r.snr_db for r in refs)),
                      _f(_mean(r.mel_db for r in refs), 2),
                      _f(_mean(r.visqol for r in refs), 2) if visqol else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per file, kbit/s:", "",
              "| file | s | " + " | ".join(tiers) + " |",
              "|---|---:|" + "---:|" * len(tiers)]
    for rep in reports:
        lines.append(f"| {Path(rep.source).name} | {rep.seconds:.1f} | "
                     + " | ".join(f"{rep.tier(t).kbps:.0f}" for t in tiers) + " |")
    return "\n".join(lines) + "\n"


def _kind(info, bits: int) -> str | None:
    """The README's columns: CD-quality stereo at 44.1 and at 48 kHz, mono at 44.1 kHz."""
    if bits == 16 and info.channels == 2 and info.samplerate in (44100, 48000):
        return f"stereo {info.samplerate / 1000:g} kHz"
    if bits == 16 and info.channels == 1 and info.samplerate == 44100:
        return "mono 44.1 kHz"
    return None


def _per_kind(per_kind: dict[str, dict[str, list[float]]]) -> list[str]:
    kinds = sorted(per_kind)
    lines = ["Typical kbit/s per tier: median [min-max] over the files of each kind (each "
             "file's rate: its bytes over its length).", "",
             "| tier | " + " | ".join(f"{k} ({len(per_kind[k]['lossless'])} files)"
                                     for k in kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    for tier in TIERS:
        cells = []
        for k in kinds:
            v = per_kind[k].get(tier, [])
            cells.append(f"{statistics.median(v):.0f} [{min(v):.0f}-{max(v):.0f}]" if v else "n/a")
        lines.append(f"| {tier} | " + " | ".join(cells) + " |")
    return lines


def sizes_only(files: list[Path], model: str | None) -> str:
    """Every tier's total size over ``files`` (whole files) against raw PCM."""
    totals = {t: 0 for t in TIERS}
    cd_totals = {t: 0 for t in TIERS}
    pcm = cd_pcm = 0
    seconds = cd_seconds = 0.0
    per_kind: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="hybridcodec-sizes-") as tmp:
        for i, path in enumerate(files):
            info = sf.info(str(path))
            bits = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24}[info.subtype]
            raw = info.frames * info.channels * (bits // 8)
            cd = info.channels == 2 and bits == 16 and info.samplerate in (44100, 48000)
            full = os.path.join(tmp, "full.hyb")
            start = time.perf_counter()
            hybridcodec.encode(path, full, model=model, overwrite=True)
            _log(f"[{i + 1}/{len(files)}] {path.name}: {time.perf_counter() - start:.1f} s")
            pcm += raw
            seconds += info.duration
            if cd:
                cd_pcm += raw
                cd_seconds += info.duration
            kind = _kind(info, bits)
            for tier in TIERS:
                cut = os.path.join(tmp, "cut.hyb")
                truncate_file(full, cut, tier=tier, overwrite=True)
                size = os.path.getsize(cut)
                totals[tier] += size
                if cd:
                    cd_totals[tier] += size
                if kind:
                    per_kind.setdefault(kind, {}).setdefault(tier, []).append(
                        8 * size / info.duration / 1000)
    lines = _per_kind(per_kind) + ["", f"{len(files)} files, {seconds:.1f} s, raw PCM {pcm} bytes (CD-quality stereo "
             f"subset: 16-bit, 2 channels, 44.1/48 kHz: {cd_seconds:.1f} s, {cd_pcm} bytes). "
             "size / PCM: sum of bytes over the files / sum of raw PCM bytes.", "",
             "| tier | bytes | size / PCM | kbit/s | CD-quality stereo: size / PCM | kbit/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for tier in TIERS:
        t, c = totals[tier], cd_totals[tier]
        lines.append(f"| {tier} | {t} | 1/{pcm / t:.1f} ({100 * t / pcm:.2f} %) | "
                     f"{8 * t / seconds / 1000:.1f} | "
                     + (f"1/{cd_pcm / c:.1f} ({100 * c / cd_pcm:.2f} %) | "
                        f"{8 * c / cd_seconds / 1000:.1f} |" if c else "n/a | n/a |"))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path,
                    help="audio files (default: corpus music/cellar-01 .. cellar-09)")
    ap.add_argument("--out", type=Path, help="keep each file's ladder report in OUT/<name>/")
    ap.add_argument("--seconds", type=float, default=30.0,
                    help="first N seconds of each file (default 30)")
    ap.add_argument("--tiers", nargs="+", choices=list(TIERS))
    ap.add_argument("--no-reference-codecs", action="store_true")
    ap.add_argument("--no-visqol", action="store_true")
    ap.add_argument("--fill", default="sample", choices=("sample", "mean", "zero"))
    ap.add_argument("--model")
    ap.add_argument("--sizes-only", action="store_true",
                    help="only sizes per tier over a whole set (see --set)")
    ap.add_argument("--set", nargs="+", default=["music"],
                    help="corpus sets for --sizes-only (e.g. music instruments)")
    ap.add_argument("--output", type=Path, help="also write the markdown here")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    if args.sizes_only:
        files = args.files or [f for name in args.set
                               for f in sorted((CORPUS / name).glob("*.flac"))]
        text = f"# Tier sizes: {' + '.join(args.set)}\n\n" + sizes_only(files, args.model)
    else:
        files = args.files or DEFAULT_FILES
        reports = []
        with tempfile.TemporaryDirectory(prefix="hybridcodec-ladders-") as tmp:
            for i, path in enumerate(files):
                outdir = (args.out or Path(tmp)) / path.stem
                _log(f"[{i + 1}/{len(files)}] {path.name}")
                reports.append(run_ladder(
                    path, outdir, tiers=args.tiers, seconds=args.seconds,
                    reference_codecs=not args.no_reference_codecs,
                    visqol=False if args.no_visqol else None, model=args.model,
                    fill=args.fill, overwrite=True, plots=args.out is not None,
                    log=lambda t: _log(f"  {t}")))
        text = "# Ladder calibration\n\n" + ladder_summary(reports)
        notes = sorted({n for rep in reports for n in rep.notes})
        if notes:
            text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    text += f"\n(wall time {time.perf_counter() - start:.0f} s)\n"
    print(text, end="")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
