"""Lossless benchmark: hybridcodec against FLAC -8 and WavPack -hhx6 on the corpus.

For every selected file: encode with hybridcodec, decode, verify the decoded samples are
bit-exact against the source, and record sizes and in-process timings; also compress with
the ``flac`` and ``wavpack`` command-line tools and time their processes. Prints markdown
tables (per set, a TOTAL row, optionally per file) to stdout; progress goes to stderr.
Exit status 0 when every hybridcodec round trip is exact, 1 otherwise.

Run from the repository root::

    python benchmarks/lossless.py --quick
    python -m benchmarks.lossless --sets music instruments --per-file

See benchmarks/README.md for the columns.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/lossless.py` puts benchmarks/ first, not the repo
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

import hybridcodec  # noqa: E402
from hybridcodec.errors import HybridCodecError  # noqa: E402
from hybridcodec.model import load_model  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "corpus"
DEFAULT_SETS = ["music", "instruments", "speech8k"]
DEFAULT_LIMITS = {"speech8k": 200}  # other sets: all files
DEFAULT_TOTAL = ["music", "instruments"]
QUICK_LIMIT = 3
AUDIO_EXTENSIONS = {".flac", ".wav", ".aif", ".aiff"}
BYTES_PER_SAMPLE = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4}
OUTLIER_LOW, OUTLIER_HIGH = 0.95, 1.05

# --no-padding: flac otherwise reserves an 8 KiB PADDING block, which is not compression
# (it would add ~1-2 % on music and >100 % on 0.3 s speech clips); the DESIGN.md reference
# figures were measured without it.
FLAC_CMD = ["flac", "-8", "--no-padding", "-f", "-s", "-o"]  # + out, in
WAVPACK_CMD = ["wavpack", "-hhx6", "-q", "-y"]  # + in, -o, out
TOOLS = ("flac", "wavpack")


@dataclass
class FileResult:
    set_name: str
    path: Path
    channels: int = 0
    sample_rate: int = 0
    subtype: str = ""
    frames: int = 0
    raw_bytes: int = 0
    hyb_bytes: int | None = None
    hyb_enc_s: float | None = None
    hyb_dec_s: float | None = None
    flac_bytes: int | None = None
    flac_s: float | None = None
    wv_bytes: int | None = None
    wv_s: float | None = None
    ok: bool = False  # hybridcodec round trip bit-exact
    error: str = ""  # why the hybridcodec round trip failed
    tool_errors: list = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    @property
    def samples(self) -> int:
        return self.frames * self.channels


# ---------------------------------------------------------------------------------------
# selection


def select_files(corpus: Path, set_name: str, limit: int | None) -> list[Path]:
    """The set's audio files, sorted; with a limit, ``limit`` evenly spaced ones (every k-th)."""
    folder = corpus / set_name
    if not folder.is_dir():
        raise SystemExit(f"error: no such set folder: {folder}")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if limit is None or limit >= len(files):
        return files
    if limit <= 0:
        return []
    n = len(files)
    return [files[i * n // limit] for i in range(limit)]


# ---------------------------------------------------------------------------------------
# reference tools


def tool_status(install: bool) -> dict[str, str | None]:
    """Per tool: None when usable, else the reason it is not."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing and install:
        print(f"installing {' '.join(missing)} with apt-get ...", file=sys.stderr)
        cmd = ["apt-get", "install", "-y", "flac", "wavpack"]
        if os.geteuid() != 0 and shutil.which("sudo"):
            cmd = ["sudo", *cmd]
        try:
            subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
        except OSError as exc:
            print(f"apt-get failed: {exc}", file=sys.stderr)
    return {t: (None if shutil.which(t) else f"{t} not installed") for t in TOOLS}


def tool_version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def run_timed(cmd: list[str]) -> tuple[float, str]:
    """Run a process; (wall seconds, error text or '')."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        return seconds, f"{cmd[0]} exited {proc.returncode}: {msg[-1] if msg else ''}"
    return seconds, ""


# ---------------------------------------------------------------------------------------
# one file


def read_int32(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(str(path), dtype="int32", always_2d=True)
    return data, rate


def bench_file(res: FileResult, tmp: Path, model: str | None, tools: dict) -> None:
    src = res.path
    info = sf.info(str(src))
    res.channels, res.sample_rate, res.subtype = info.channels, info.samplerate, info.subtype
    res.frames = info.frames
    res.raw_bytes = res.frames * res.channels * BYTES_PER_SAMPLE.get(info.subtype, 4)
    ref, _ = read_int32(src)

    # hybridcodec: encode, decode, verify
    hyb, out_wav = tmp / "x.hyb", tmp / "x.wav"
    try:
        # CPU seconds of this single-threaded process: one core's speed, unaffected by
        # other jobs on the machine (the CLI tools' columns are wall time)
        cpu = time.process_time()
        hybridcodec.encode(src, hyb, overwrite=True, model=model)
        res.hyb_enc_s = time.process_time() - cpu
        res.hyb_bytes = hyb.stat().st_size
        cpu = time.process_time()
        hybridcodec.decode(hyb, out_wav, overwrite=True, model=model)
        res.hyb_dec_s = time.process_time() - cpu
        got, rate = read_int32(out_wav)
        if rate != res.sample_rate:
            res.error = f"sample rate {rate} != {res.sample_rate}"
        elif got.shape != ref.shape:
            res.error = f"shape {got.shape} != {ref.shape}"
        elif not np.array_equal(got, ref):
            bad = np.argwhere(got != ref)
            res.error = (f"{len(bad)} samples differ (first at frame {bad[0][0]}, "
                         f"channel {bad[0][1]})")
        else:
            res.ok = True
    except HybridCodecError as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a crash is a failure row, not an abort
        res.error = f"crash {type(exc).__name__}: {exc}"
    finally:
        for p in (hyb, out_wav):
            p.unlink(missing_ok=True)

    # flac -8 (reads FLAC/WAV/AIFF input directly)
    if tools["flac"] is None:
        out = tmp / "x.flac"
        seconds, err = run_timed([*FLAC_CMD, str(out), str(src)])
        if err:
            res.tool_errors.append(err)
        else:
            res.flac_bytes, res.flac_s = out.stat().st_size, seconds
        out.unlink(missing_ok=True)

    # wavpack -hhx6 (wants WAV: convert first, same subtype; conversion not timed)
    if tools["wavpack"] is None:
        wav, out = tmp / "in.wav", tmp / "x.wv"
        sf.write(str(wav), ref, res.sample_rate, subtype=info.subtype, format="WAV")
        seconds, err = run_timed([*WAVPACK_CMD, str(wav), "-o", str(out)])
        if err:
            res.tool_errors.append(err)
        else:
            res.wv_bytes, res.wv_s = out.stat().st_size, seconds
        for p in (wav, out):
            p.unlink(missing_ok=True)


def warm_up(tmp: Path, model: str | None) -> None:
    """One short encode/decode so model loading and JIT compilation are not timed."""
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((8000, 2)) * 1000).astype(np.int16)
    wav = tmp / "warm.wav"
    sf.write(str(wav), pcm, 44100, subtype="PCM_16")
    hybridcodec.encode(wav, tmp / "warm.hyb", overwrite=True, model=model)
    hybridcodec.decode(tmp / "warm.hyb", tmp / "warm-out.wav", overwrite=True, model=model)
    for name in ("warm.wav", "warm.hyb", "warm-out.wav"):
        (tmp / name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# formatting


def pct(num: int | None, den: int) -> str:
    return "n/a" if num is None or den == 0 else f"{100.0 * num / den:.1f} %"


def ratio(num: int | None, den: int | None) -> str:
    return "n/a" if num is None or not den else f"{num / den:.3f}"


def speed(audio_s: float, seconds: float | None) -> str:
    return "n/a" if seconds is None or seconds <= 0 else f"{audio_s / seconds:.1f}x"


def total(results: list[FileResult], attr: str) -> int | float | None:
    """Sum of ``attr`` over results; None if any file lacks it (a partial sum would mislead)."""
    values = [getattr(r, attr) for r in results]
    if not values or any(v is None for v in values):
        return None
    return sum(values)


def summary_row(label: str, results: list[FileResult], na: dict[str, str]) -> list[str]:
    raw = sum(r.raw_bytes for r in results)
    samples = sum(r.samples for r in results)
    dur = sum(r.duration for r in results)
    hyb, flac, wv = total(results, "hyb_bytes"), total(results, "flac_bytes"), total(results, "wv_bytes")
    failed = sum(not r.ok for r in results)

    def tool(value: str, name: str) -> str:
        return f"n/a ({na[name]})" if na.get(name) else value

    return [
        label + (f" ({failed} FAIL)" if failed else ""),
        str(len(results)),
        f"{dur:.1f}",
        f"{raw:,}",
        "n/a" if hyb is None or not samples else f"{8.0 * hyb / samples:.3f}",
        pct(hyb, raw),
        tool(pct(flac, raw), "flac"),
        tool(pct(wv, raw), "wavpack"),
        tool(ratio(hyb, flac), "flac"),
        tool(ratio(hyb, wv), "wavpack"),
        speed(dur, total(results, "hyb_enc_s")),
        speed(dur, total(results, "hyb_dec_s")),
        tool(speed(dur, total(results, "flac_s")), "flac"),
        tool(speed(dur, total(results, "wv_s")), "wavpack"),
    ]


SUMMARY_HEADER = ["set", "files", "duration s", "raw PCM bytes", "hyb bits/sample",
                  "hyb % raw", "flac -8 % raw", "wavpack -hhx6 % raw", "hyb/flac",
                  "hyb/wavpack", "hyb enc x rt", "hyb dec x rt", "flac enc x rt",
                  "wavpack enc x rt"]

FILE_HEADER = ["set", "file", "ch", "rate", "format", "duration s", "hyb bits/sample",
               "hyb % raw", "flac -8 % raw", "wavpack -hhx6 % raw", "hyb/flac",
               "hyb/wavpack", "hyb enc x rt", "hyb dec x rt", "status"]


def file_row(r: FileResult) -> list[str]:
    return [
        r.set_name, r.path.name, str(r.channels), str(r.sample_rate), r.subtype,
        f"{r.duration:.2f}",
        "n/a" if r.hyb_bytes is None or not r.samples else f"{8.0 * r.hyb_bytes / r.samples:.3f}",
        pct(r.hyb_bytes, r.raw_bytes), pct(r.flac_bytes, r.raw_bytes),
        pct(r.wv_bytes, r.raw_bytes), ratio(r.hyb_bytes, r.flac_bytes),
        ratio(r.hyb_bytes, r.wv_bytes), speed(r.duration, r.hyb_enc_s),
        speed(r.duration, r.hyb_dec_s),
        "ok" if r.ok else f"**FAIL** {r.error}".replace("|", "/"),
    ]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_lines(model_arg: str | None, model_id: str, tools: dict) -> list[str]:
    import numba
    import numpy

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        f"- machine: {cpu}; os.cpu_count() = {os.cpu_count()}, usable CPUs = {affinity}",
        f"- python {platform.python_version()}, numpy {numpy.__version__}, numba "
        f"{numba.__version__}, hybridcodec {hybridcodec.__version__}",
        f"- model: {'embedded default' if model_arg is None else model_arg} (id {model_id})",
    ]
    for t in TOOLS:
        lines.append(f"- {t}: {tool_version(t) if tools[t] is None else tools[t]}")
    return lines


# ---------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                    help=f"corpus root (default {DEFAULT_CORPUS})")
    ap.add_argument("--sets", nargs="+", default=DEFAULT_SETS,
                    help="set folders under the corpus (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None,
                    help="files per set, evenly spaced over the sorted list (default: all, "
                         "200 for speech8k)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke test: {QUICK_LIMIT} files per set (unless --limit is given)")
    ap.add_argument("--model", default=None, help="model file (default: the embedded model)")
    ap.add_argument("--per-file", action="store_true", help="also print a per-file table")
    ap.add_argument("--install", action="store_true",
                    help="apt-get install flac/wavpack if missing")
    ap.add_argument("--total", nargs="+", default=DEFAULT_TOTAL,
                    help="sets summed in the TOTAL row (default: %(default)s)")
    ap.add_argument("--output", type=Path, default=None,
                    help="also write the report (markdown) to this file")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        _, model_id = load_model(args.model)
    except HybridCodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tools = tool_status(args.install)

    plan: list[tuple[str, list[Path]]] = []
    for s in args.sets:
        limit = args.limit if args.limit is not None else (
            QUICK_LIMIT if args.quick else DEFAULT_LIMITS.get(s))
        plan.append((s, select_files(args.corpus, s, limit)))
    n_files = sum(len(f) for _, f in plan)

    results: dict[str, list[FileResult]] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hyb-bench-") as tmpdir:
        tmp = Path(tmpdir)
        warm_up(tmp, args.model)
        done = 0
        for set_name, files in plan:
            results[set_name] = []
            for path in files:
                res = FileResult(set_name, path)
                bench_file(res, tmp, args.model, tools)
                results[set_name].append(res)
                done += 1
                status = "ok" if res.ok else f"FAIL: {res.error}"
                extra = f" [{'; '.join(res.tool_errors)}]" if res.tool_errors else ""
                print(f"[{done}/{n_files}] {set_name}/{path.name}: "
                      f"hyb/flac {ratio(res.hyb_bytes, res.flac_bytes)} {status}{extra}",
                      file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start

    out: list[str] = ["# hybridcodec lossless benchmark", ""]
    out += machine_lines(args.model, model_id, tools)
    out.append(f"- corpus: {args.corpus}; benchmark wall time {elapsed:.0f} s")
    out.append("")

    na = {t: reason for t, reason in tools.items() if reason}
    rows = [summary_row(s, rs, na) for s, rs in results.items()]
    total_sets = [s for s in args.total if s in results]
    if len(total_sets) >= 2:
        combined = [r for s in total_sets for r in results[s]]
        rows.append(summary_row(f"**TOTAL** ({'+'.join(total_sets)})", combined, na))
    out.append(markdown_table(SUMMARY_HEADER, rows))
    out.append("")
    for t, reason in na.items():
        out.append(f"Note: {t} columns are n/a because {reason} "
                   f"(pass --install to apt-get it).")
    all_results = [r for rs in results.values() for r in rs]
    tool_errs = [(r, e) for r in all_results for e in r.tool_errors]
    for r, e in tool_errs:
        out.append(f"Note: {r.set_name}/{r.path.name}: {e} (its set's totals show n/a)")

    outliers = [r for r in all_results
                if r.hyb_bytes is not None and r.flac_bytes
                and not OUTLIER_LOW <= r.hyb_bytes / r.flac_bytes <= OUTLIER_HIGH]
    if outliers:
        out += ["", f"Outliers (hyb/flac outside {OUTLIER_LOW}..{OUTLIER_HIGH}):", ""]
        out.append(markdown_table(FILE_HEADER, [file_row(r) for r in outliers]))

    failures = [r for r in all_results if not r.ok]
    if failures:
        out += ["", f"**FAIL: {len(failures)} of {len(all_results)} round trips were not "
                    f"bit-exact or did not complete:**", ""]
        out.append(markdown_table(FILE_HEADER, [file_row(r) for r in failures]))
    else:
        out += ["", f"All {len(all_results)} hybridcodec round trips bit-exact."]

    if args.per_file:
        out += ["", "## Per file", ""]
        out.append(markdown_table(FILE_HEADER, [file_row(r) for r in all_results]))

    report = "\n".join(out) + "\n"
    sys.stdout.write(report)
    if args.output is not None:
        args.output.write_text(report)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
