"""Long files: peak memory and speed of encode and decode, 1 minute vs 60 minutes.

For every length given with ``--minutes`` (default: 1 and 60) the script

1. writes a 44.1 kHz stereo 16-bit WAV of that length by concatenating the corpus's
   44.1 kHz stereo 16-bit files (looping over them), block by block, so the generator
   itself never holds more than one block;
2. encodes it in a fresh subprocess (``hybridcodec.encode``) and decodes the stream in
   another (``hybridcodec.decode``, to WAV, MD5 verified by the decoder), each reporting
   its own peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``), the RSS after
   imports and model loading (before any frame is coded), and the coding time;
3. prints a markdown table: audio length, sizes, x realtime, peak RSS for each.

The peak RSS must not grow with the length of the file: audio is read, coded and written
one frame at a time. Run from the repository root::

    python benchmarks/long_file.py                     # 1 vs 60 minutes (~25 min)
    python benchmarks/long_file.py --minutes 1 5 --jobs 2
    python benchmarks/long_file.py --minutes 60 --keep --workdir /var/tmp/hyb

Disk: about 2.5 x the WAV size per length (WAV, stream, decoded WAV): 1.6 GB for 60
minutes; everything is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_DIR.parent / "shared" / "data" / "corpus"
RATE, CHANNELS, SUBTYPE = 44100, 2, "PCM_16"
BLOCK = 1 << 16


def corpus_files(corpus: Path) -> list[Path]:
    import soundfile as sf

    files = []
    for path in sorted(corpus.glob("*/*.flac")):
        info = sf.info(str(path))
        if info.samplerate == RATE and info.channels == CHANNELS and info.subtype == SUBTYPE:
            files.append(path)
    if not files:
        raise SystemExit(f"no {RATE} Hz stereo {SUBTYPE} files under {corpus}")
    return files


def make_wav(path: Path, minutes: float, files: list[Path]) -> int:
    """Write ``minutes`` of corpus audio to ``path``, streaming; returns the sample count."""
    import soundfile as sf

    total = int(round(minutes * 60 * RATE))
    done = 0
    with sf.SoundFile(str(path), "w", samplerate=RATE, channels=CHANNELS, subtype=SUBTYPE,
                      format="WAV") as out:
        while done < total:
            for src in files:
                with sf.SoundFile(str(src)) as f:
                    while done < total:
                        block = f.read(min(BLOCK, total - done), dtype="int16")
                        if not len(block):
                            break
                        out.write(block)
                        done += len(block)
                if done >= total:
                    break
    return done


def child(verb: str, src: str, dst: str, jobs: int) -> None:
    """Run in a subprocess: one encode or decode, then a JSON line with its measurements."""
    import resource

    sys.path.insert(0, str(REPO_DIR))
    from hybridcodec import codec
    from hybridcodec.model import load_model

    load_model(None)  # imports, model and kernels loaded before the baseline
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    func = codec.encode_file if verb == "encode" else codec.decode_file
    start = time.perf_counter()
    report = func(src, dst, overwrite=True, jobs=jobs)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({
        "verb": verb, "seconds": seconds, "samples": report.num_samples,
        "input_bytes": report.input_bytes, "output_bytes": report.output_bytes,
        "baseline_rss_kib": baseline, "peak_rss_kib": usage.ru_maxrss,
        "worker_peak_rss_kib": workers,
    }))


def run_child(verb: str, src: Path, dst: Path, jobs: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", verb, str(src), str(dst),
           "--jobs", str(jobs)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{verb} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 60.0],
                        help="lengths to test, in minutes (default: 1 60)")
    parser.add_argument("--jobs", type=int, default=1, help="--jobs for encode and decode")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the files go (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--child", nargs=3, metavar=("VERB", "SRC", "DST"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, jobs=args.jobs)
        return 0

    files = corpus_files(args.corpus)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hyb-long-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for minutes in args.minutes:
            tag = f"{minutes:g}min"
            wav, hyb, out = work / f"{tag}.wav", work / f"{tag}.hyb", work / f"{tag}.out.wav"
            t = time.perf_counter()
            n = make_wav(wav, minutes, files)
            print(f"{tag}: wrote {wav} ({n} samples, {wav.stat().st_size / 1e6:.0f} MB) in "
                  f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
            enc = run_child("encode", wav, hyb, args.jobs)
            print(f"{tag}: encoded in {enc['seconds']:.0f} s", file=sys.stderr, flush=True)
            dec = run_child("decode", hyb, out, args.jobs)
            print(f"{tag}: decoded in {dec['seconds']:.0f} s", file=sys.stderr, flush=True)
            rows.append((minutes, n, enc, dec))
            if not args.keep:
                for p in (wav, hyb, out):
                    p.unlink(missing_ok=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nhybridcodec long-file benchmark: {RATE} Hz stereo 16-bit, from {len(files)} "
          f"corpus files, --jobs {args.jobs}, {os.cpu_count()} CPUs\n")
    print("| minutes | samples | WAV MB | .hyb MB | encode x rt | decode x rt | "
          "encode RSS MiB (after load / peak) | decode RSS MiB (after load / peak) |")
    print("|---|---|---|---|---|---|---|---|")
    for minutes, n, enc, dec in rows:
        audio = n / RATE
        enc_rss = f"{mib(enc['baseline_rss_kib'])} / {mib(enc['peak_rss_kib'])}"
        dec_rss = f"{mib(dec['baseline_rss_kib'])} / {mib(dec['peak_rss_kib'])}"
        if args.jobs > 1:
            enc_rss += f" (+ workers {mib(enc['worker_peak_rss_kib'])} each)"
            dec_rss += f" (+ workers {mib(dec['worker_peak_rss_kib'])} each)"
        print(f"| {minutes:g} | {n} | {enc['input_bytes'] / 1e6:.1f} | "
              f"{enc['output_bytes'] / 1e6:.1f} | {audio / enc['seconds']:.1f} | "
              f"{audio / dec['seconds']:.1f} | {enc_rss} | {dec_rss} |")
    if len(rows) >= 2:
        small = min(rows, key=lambda r: r[0])
        large = max(rows, key=lambda r: r[0])
        for verb, i in (("encode", 2), ("decode", 3)):
            growth = large[i]["peak_rss_kib"] - small[i]["peak_rss_kib"]
            print(f"\n{verb}: peak RSS {large[0]:g} min minus {small[0]:g} min = "
                  f"{growth / 1024:+.1f} MiB", end="")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
