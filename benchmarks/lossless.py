"""Lossless benchmark: hybridcodec against FLAC -8, WavPack -hhx6, MPEG-4 ALS -7 and Sac.

For every selected file: encode with hybridcodec, decode, verify the decoded samples are
bit-exact against the source, and record sizes and in-process timings (CPU time); also
compress with the ``flac`` and ``wavpack`` command-line tools and time their processes
(wall time). The two reference coders in ``<repo>/../shared/anchors/bin`` (MPEG-4 ALS
``mp4alsRM23 -7`` and ``sac --normal``) encode a WAV copy of the file, decode it again, and
their decoded samples are checked bit-exact against the source too: a file one of them does
not round-trip is marked and left out of that coder's totals. Sac handles 16-bit mono/stereo
only, so its totals run over that subset, and the "reference coders" table puts
hybridcodec's and FLAC's totals over the very same files beside it. Prints markdown tables
(per set, a TOTAL row, optionally per file) to stdout; progress goes to stderr. Exit status
0 when every hybridcodec round trip is exact, 1 otherwise (the reference coders' results do
not change it).

Run from the repository root::

    python benchmarks/lossless.py --quick
    python -m benchmarks.lossless --sets music instruments --per-file
    python -m benchmarks.lossless --quick --no-anchors   # without ALS / Sac

See benchmarks/README.md for the columns.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
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

# Reference coders (benchmarks only; see ../shared/anchors/README.md). They read WAV and
# write WAV; the benchmark times their encode (wall) and checks their decode bit-exact.
DEFAULT_ANCHOR_BIN = REPO.parent / "shared" / "anchors" / "bin"
ANCHORS = ("als", "sac")
ANCHOR_BINARY = {"als": "mp4alsRM23", "sac": "sac"}
ANCHOR_LABEL = {"als": "als -7", "sac": "sac --normal"}
ANCHOR_EXT = {"als": ".als", "sac": ".sac"}
# a reference coder process is killed after this long (Sac hangs on some inputs it
# mishandles, e.g. 24-bit): ANCHOR_TIMEOUT_BASE + ANCHOR_TIMEOUT_PER_S x audio seconds
ANCHOR_TIMEOUT_BASE, ANCHOR_TIMEOUT_PER_S = 120.0, 30.0


def anchor_encode_cmd(key: str, exe: Path, wav: Path, out: Path) -> list[str]:
    if key == "als":
        return [str(exe), "-7", str(wav), str(out)]
    return [str(exe), "--encode", "--normal", "--mt-mode=0", str(wav), str(out)]


def anchor_decode_cmd(key: str, exe: Path, enc: Path, wav: Path) -> list[str]:
    if key == "als":
        return [str(exe), "-x", str(enc), str(wav)]
    return [str(exe), "--decode", str(enc), str(wav)]


def anchor_ineligible(key: str, subtype: str, channels: int) -> str | None:
    """Why the reference coder ``key`` is not run on such a file, or None if it is.

    Sac codes 16-bit mono/stereo WAV only (it refuses or mishandles 24-bit and more than
    two channels); MPEG-4 ALS takes any integer depth and channel count.
    """
    if key == "sac":
        if subtype != "PCM_16":
            bits = BYTES_PER_SAMPLE.get(subtype)
            return f"{8 * bits}-bit" if bits else subtype
        if channels > 2:
            return f"{channels} ch"
    return None


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
    anchors: dict = field(default_factory=dict)  # key -> AnchorResult (enabled coders only)

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    @property
    def samples(self) -> int:
        return self.frames * self.channels


@dataclass
class AnchorResult:
    """One reference coder on one file."""

    bytes: int | None = None  # encoded file size
    enc_s: float | None = None  # wall seconds of the encode process
    dec_s: float | None = None  # wall seconds of the decode process
    skipped: str = ""  # not run: the file is outside what the coder handles (why)
    error: str = ""  # failed, timed out, or decoded samples differ from the source

    @property
    def ok(self) -> bool:
        """Encoded and decoded back bit-exactly: counted in the coder's totals."""
        return self.bytes is not None and not self.skipped and not self.error


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


def run_timed(cmd: list[str], timeout: float | None = None) -> tuple[float, str]:
    """Run a process; (wall seconds, error text or ''). A timeout kills it and is an error."""
    name = Path(cmd[0]).name
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, f"{name} timed out after {timeout:.0f} s (killed)"
    except OSError as exc:
        return time.perf_counter() - start, f"{name} could not start: {exc}"
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        if proc.returncode < 0:
            try:
                sig = signal.Signals(-proc.returncode).name
            except ValueError:
                sig = str(-proc.returncode)
            return seconds, f"{name} killed by {sig}" + (f": {msg[-1]}" if msg else "")
        return seconds, f"{name} exited {proc.returncode}: {msg[-1] if msg else ''}"
    return seconds, ""


def compare_decoded(path: Path, ref: np.ndarray, rate: int, subtype: str) -> str:
    """'' when ``path`` holds exactly the samples ``ref`` (same rate, shape, subtype), else why not."""
    try:
        info = sf.info(str(path))
        got, got_rate = read_int32(path)
    except Exception as exc:  # noqa: BLE001 - unreadable output is a failed round trip
        return f"decoded file unreadable: {type(exc).__name__}: {exc}"
    if got_rate != rate:
        return f"sample rate {got_rate} != {rate}"
    if got.shape != ref.shape:
        return f"shape {got.shape} != {ref.shape}"
    if not np.array_equal(got, ref):
        bad = np.argwhere(got != ref)
        return f"{len(bad)} samples differ (first at frame {bad[0][0]}, channel {bad[0][1]})"
    if info.subtype != subtype:
        return f"decoded as {info.subtype}, source is {subtype}"
    return ""


def cpu_has_avx2() -> bool | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return " avx2" in text or "\tavx2" in text


def anchor_status(bin_dir: Path, enabled: dict[str, bool], tmp: Path) -> dict[str, str | None]:
    """Per reference coder: None when usable, else why its columns read n/a.

    Usable means the binary exists and round-trips a short 16-bit stereo clip exactly
    (the binaries are built for AVX2: on a CPU without it they die with SIGILL).
    """
    status: dict[str, str | None] = {}
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal((4410, 2)) * 2000).astype(np.int16)
    wav, back = tmp / "probe.wav", tmp / "probe-back.wav"
    sf.write(str(wav), pcm, 44100, subtype="PCM_16", format="WAV")
    for key in ANCHORS:
        exe = bin_dir / ANCHOR_BINARY[key]
        if not enabled[key]:
            status[key] = f"skipped (--no-{key} / --no-anchors)"
            continue
        if not exe.is_file():
            status[key] = f"{exe} not found"
            continue
        if not os.access(exe, os.X_OK):
            status[key] = f"{exe} is not executable"
            continue
        enc = tmp / ("probe" + ANCHOR_EXT[key])
        back.unlink(missing_ok=True)
        _, err = run_timed(anchor_encode_cmd(key, exe, wav, enc), timeout=60)
        if not err:
            _, err = run_timed(anchor_decode_cmd(key, exe, enc, back), timeout=60)
        if not err:
            ref = pcm.astype(np.int32) << 16  # soundfile's int32 scaling of 16-bit
            err = compare_decoded(back, ref, 44100, "PCM_16")
            err = f"probe clip not round-tripped: {err}" if err else ""
        if err and "SIGILL" in err and not cpu_has_avx2():
            err += " (the binary needs AVX2; this CPU has none)"
        status[key] = f"{exe.name} cannot run here: {err}" if err else None
        for p in (enc, back):
            p.unlink(missing_ok=True)
    wav.unlink(missing_ok=True)
    return status


def anchor_version(key: str, exe: Path) -> str:
    """A one-line description of the reference coder binary."""
    if key == "als":
        try:
            out = subprocess.run([str(exe), "-h"], capture_output=True, text=True,
                                 errors="replace", timeout=10).stdout
            version = next((ln.strip() for ln in out.splitlines() if "Version" in ln), "")
        except (OSError, subprocess.SubprocessError):
            version = ""
        return f"MPEG-4 ALS reference model mp4alsRM23 {version} (`-7`)".replace("  ", " ")
    try:
        proc = subprocess.run([str(exe)], capture_output=True, text=True, errors="replace",
                              timeout=10)
        out = proc.stdout + proc.stderr
        version = next((ln.split(" - ")[0].strip() for ln in out.splitlines() if "Sac v" in ln),
                       "Sac")
    except (OSError, subprocess.SubprocessError):
        version = "Sac"
    return f"{version} (`--encode --normal --mt-mode=0`: one thread)"


# ---------------------------------------------------------------------------------------
# one file


def read_int32(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(str(path), dtype="int32", always_2d=True)
    return data, rate


def bench_anchor(key: str, exe: Path, wav: Path, ref: np.ndarray, info, tmp: Path,
                 res: FileResult) -> AnchorResult:
    """Encode ``wav`` with a reference coder, decode it again and check the samples."""
    out = AnchorResult()
    why = anchor_ineligible(key, info.subtype, info.channels)
    if why:
        out.skipped = why
        return out
    enc, back = tmp / ("x" + ANCHOR_EXT[key]), tmp / f"{key}-back.wav"
    timeout = ANCHOR_TIMEOUT_BASE + ANCHOR_TIMEOUT_PER_S * res.duration
    try:
        seconds, err = run_timed(anchor_encode_cmd(key, exe, wav, enc), timeout)
        if err or not enc.is_file():
            out.error = err or f"{exe.name} wrote no output"
            return out
        out.bytes, out.enc_s = enc.stat().st_size, seconds
        seconds, err = run_timed(anchor_decode_cmd(key, exe, enc, back), timeout)
        if err:
            out.error = f"decode: {err}"
            return out
        out.dec_s = seconds
        err = compare_decoded(back, ref, res.sample_rate, info.subtype)
        if err:
            out.error = f"not bit-exact: {err}"
        return out
    finally:
        for p in (enc, back):
            p.unlink(missing_ok=True)


def bench_file(res: FileResult, tmp: Path, model: str | None, tools: dict,
               anchors: dict[str, Path] | None = None) -> None:
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

    # the WAV-input tools: a WAV copy of the source, same subtype (conversion not timed)
    anchors = anchors or {}
    if tools["wavpack"] is not None and not anchors:
        return
    wav = tmp / "in.wav"
    sf.write(str(wav), ref, res.sample_rate, subtype=info.subtype, format="WAV")
    try:
        # wavpack -hhx6
        if tools["wavpack"] is None:
            out = tmp / "x.wv"
            seconds, err = run_timed([*WAVPACK_CMD, str(wav), "-o", str(out)])
            if err:
                res.tool_errors.append(err)
            else:
                res.wv_bytes, res.wv_s = out.stat().st_size, seconds
            out.unlink(missing_ok=True)
        # reference coders: encode, decode, verify
        for key, exe in anchors.items():
            res.anchors[key] = bench_anchor(key, exe, wav, ref, info, tmp, res)
    finally:
        wav.unlink(missing_ok=True)


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


def anchor_coded(results: list[FileResult], key: str) -> list[FileResult]:
    """The files the reference coder ``key`` coded and decoded back bit-exactly."""
    return [r for r in results if key in r.anchors and r.anchors[key].ok]


def anchor_summary_cells(results: list[FileResult], key: str, reason: str | None) -> list[str]:
    """[% raw, hyb/coder, enc x rt] for a summary row; totals over the coded files only,
    tagged ``(k/n)`` when that is not every file of the row."""
    if reason:
        return ["n/a (see note)"] * 3
    coded = anchor_coded(results, key)
    if not coded:
        return ["n/a (no file coded)", "n/a", "n/a"]
    raw = sum(r.raw_bytes for r in coded)
    size = sum(r.anchors[key].bytes for r in coded)
    tag = f" ({len(coded)}/{len(results)} files)" if len(coded) < len(results) else ""
    dur = sum(r.duration for r in coded)
    enc_s = sum(r.anchors[key].enc_s for r in coded)
    return [pct(size, raw) + tag, ratio(total(coded, "hyb_bytes"), size) + tag, speed(dur, enc_s)]


def summary_row(label: str, results: list[FileResult], na: dict[str, str],
                anchors: dict[str, str | None] | None = None) -> list[str]:
    anchors = anchors or {}
    raw = sum(r.raw_bytes for r in results)
    samples = sum(r.samples for r in results)
    dur = sum(r.duration for r in results)
    hyb, flac, wv = total(results, "hyb_bytes"), total(results, "flac_bytes"), total(results, "wv_bytes")
    failed = sum(not r.ok for r in results)

    def tool(value: str, name: str) -> str:
        return f"n/a ({na[name]})" if na.get(name) else value

    cells = {key: anchor_summary_cells(results, key, reason) for key, reason in anchors.items()}
    return [
        label + (f" ({failed} FAIL)" if failed else ""),
        str(len(results)),
        f"{dur:.1f}",
        f"{raw:,}",
        "n/a" if hyb is None or not samples else f"{8.0 * hyb / samples:.3f}",
        pct(hyb, raw),
        tool(pct(flac, raw), "flac"),
        tool(pct(wv, raw), "wavpack"),
        *(c[0] for c in cells.values()),
        tool(ratio(hyb, flac), "flac"),
        tool(ratio(hyb, wv), "wavpack"),
        *(c[1] for c in cells.values()),
        speed(dur, total(results, "hyb_enc_s")),
        speed(dur, total(results, "hyb_dec_s")),
        tool(speed(dur, total(results, "flac_s")), "flac"),
        tool(speed(dur, total(results, "wv_s")), "wavpack"),
        *(c[2] for c in cells.values()),
    ]


def summary_header(anchor_keys=()) -> list[str]:
    return ["set", "files", "duration s", "raw PCM bytes", "hyb bits/sample",
            "hyb % raw", "flac -8 % raw", "wavpack -hhx6 % raw",
            *(f"{ANCHOR_LABEL[k]} % raw" for k in anchor_keys),
            "hyb/flac", "hyb/wavpack", *(f"hyb/{k}" for k in anchor_keys),
            "hyb enc x rt", "hyb dec x rt", "flac enc x rt", "wavpack enc x rt",
            *(f"{k} enc x rt" for k in anchor_keys)]


SUMMARY_HEADER = summary_header()

ANCHOR_HEADER = ["set", "coder", "files coded", "not coded", "duration s", "raw PCM bytes",
                 "hyb % raw", "flac -8 % raw", "coder % raw", "hyb/coder", "coder/flac",
                 "hyb/flac", "coder enc x rt", "coder dec x rt"]


def not_coded(results: list[FileResult], key: str) -> str:
    """'24-bit ×7, 8 ch ×1; 1 failed' for the files of the row the coder did not count."""
    skipped: dict[str, int] = {}
    failed = 0
    for r in results:
        a = r.anchors.get(key)
        if a is None:
            continue
        if a.skipped:
            skipped[a.skipped] = skipped.get(a.skipped, 0) + 1
        elif not a.ok:
            failed += 1
    parts = [", ".join(f"{why} ×{n}" for why, n in sorted(skipped.items()))] if skipped else []
    if failed:
        parts.append(f"**{failed} failed**")
    return "; ".join(parts) or "—"


def anchor_row(label: str, results: list[FileResult], key: str) -> list[str]:
    """The coder against hybridcodec and FLAC on exactly the files the coder coded."""
    coded = anchor_coded(results, key)
    raw = sum(r.raw_bytes for r in coded)
    dur = sum(r.duration for r in coded)
    size = sum(r.anchors[key].bytes for r in coded) if coded else None
    hyb, flac = total(coded, "hyb_bytes"), total(coded, "flac_bytes")
    return [
        label, ANCHOR_LABEL[key], f"{len(coded)}/{len(results)}", not_coded(results, key),
        f"{dur:.1f}", f"{raw:,}", pct(hyb, raw), pct(flac, raw), pct(size, raw),
        ratio(hyb, size), ratio(size, flac), ratio(hyb, flac),
        speed(dur, sum(r.anchors[key].enc_s for r in coded) if coded else None),
        speed(dur, sum(r.anchors[key].dec_s for r in coded) if coded else None),
    ]


def file_header(anchor_keys=()) -> list[str]:
    return ["set", "file", "ch", "rate", "format", "duration s", "hyb bits/sample",
            "hyb % raw", "flac -8 % raw", "wavpack -hhx6 % raw",
            *(f"{ANCHOR_LABEL[k]} % raw" for k in anchor_keys),
            "hyb/flac", "hyb/wavpack", *(f"hyb/{k}" for k in anchor_keys),
            "hyb enc x rt", "hyb dec x rt", "status"]


FILE_HEADER = file_header()


def anchor_file_cells(r: FileResult, key: str) -> tuple[str, str]:
    """(% raw, hyb/coder) of one file; a file the coder did not round-trip is marked."""
    a = r.anchors.get(key)
    if a is None:
        return "n/a", "n/a"
    if a.skipped:
        return f"skip ({a.skipped})", "n/a"
    if a.error:
        if a.bytes is not None and a.error.startswith("not bit-exact"):
            return f"**not exact** ({pct(a.bytes, r.raw_bytes)})", "n/a"
        return "**FAIL**", "n/a"
    return pct(a.bytes, r.raw_bytes), ratio(r.hyb_bytes, a.bytes)


def file_row(r: FileResult, anchor_keys=()) -> list[str]:
    cells = [anchor_file_cells(r, k) for k in anchor_keys]
    return [
        r.set_name, r.path.name, str(r.channels), str(r.sample_rate), r.subtype,
        f"{r.duration:.2f}",
        "n/a" if r.hyb_bytes is None or not r.samples else f"{8.0 * r.hyb_bytes / r.samples:.3f}",
        pct(r.hyb_bytes, r.raw_bytes), pct(r.flac_bytes, r.raw_bytes),
        pct(r.wv_bytes, r.raw_bytes), *(c[0] for c in cells),
        ratio(r.hyb_bytes, r.flac_bytes), ratio(r.hyb_bytes, r.wv_bytes),
        *(c[1] for c in cells),
        speed(r.duration, r.hyb_enc_s), speed(r.duration, r.hyb_dec_s),
        "ok" if r.ok else f"**FAIL** {r.error}".replace("|", "/"),
    ]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_lines(model_arg: str | None, model_id: str, tools: dict,
                  anchors: dict[str, str | None] | None = None,
                  bin_dir: Path = DEFAULT_ANCHOR_BIN) -> list[str]:
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
    for key, reason in (anchors or {}).items():
        exe = bin_dir / ANCHOR_BINARY[key]
        lines.append(f"- {ANCHOR_LABEL[key]}: "
                     + (f"{anchor_version(key, exe)}, {exe}" if reason is None else f"n/a: {reason}"))
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
    ap.add_argument("--anchors-bin", type=Path, default=DEFAULT_ANCHOR_BIN,
                    help="folder holding the reference coders mp4alsRM23 and sac "
                         f"(default {DEFAULT_ANCHOR_BIN})")
    ap.add_argument("--no-anchors", action="store_true",
                    help="skip both reference coders (MPEG-4 ALS -7 and Sac --normal)")
    ap.add_argument("--no-als", action="store_true", help="skip MPEG-4 ALS -7")
    ap.add_argument("--no-sac", action="store_true",
                    help="skip Sac --normal (the slowest column, ~1-2x realtime)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        _, model_id = load_model(args.model)
    except HybridCodecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tools = tool_status(args.install)
    enabled = {"als": not (args.no_anchors or args.no_als),
               "sac": not (args.no_anchors or args.no_sac)}

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
        # enabled reference coders: None when usable, else why their columns read n/a
        anchor_na = {k: r for k, r in anchor_status(args.anchors_bin, enabled, tmp).items()
                     if enabled[k]}
        for key, reason in anchor_na.items():
            if reason:
                print(f"warning: {ANCHOR_LABEL[key]} columns will read n/a: {reason}",
                      file=sys.stderr)
        usable = {k: args.anchors_bin / ANCHOR_BINARY[k] for k, r in anchor_na.items()
                  if r is None}
        warm_up(tmp, args.model)
        done = 0
        for set_name, files in plan:
            results[set_name] = []
            for path in files:
                res = FileResult(set_name, path)
                bench_file(res, tmp, args.model, tools, usable)
                results[set_name].append(res)
                done += 1
                status = "ok" if res.ok else f"FAIL: {res.error}"
                extra = f" [{'; '.join(res.tool_errors)}]" if res.tool_errors else ""
                for key, a in res.anchors.items():
                    extra += (f" hyb/{key} "
                              + (ratio(res.hyb_bytes, a.bytes) if a.ok
                                 else f"skip ({a.skipped})" if a.skipped
                                 else f"FAIL ({a.error})"))
                print(f"[{done}/{n_files}] {set_name}/{path.name}: "
                      f"hyb/flac {ratio(res.hyb_bytes, res.flac_bytes)} {status}{extra}",
                      file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start

    out: list[str] = ["# hybridcodec lossless benchmark", ""]
    out += machine_lines(args.model, model_id, tools, anchor_na, args.anchors_bin)
    out.append(f"- corpus: {args.corpus}; benchmark wall time {elapsed:.0f} s")
    out.append("")

    na = {t: reason for t, reason in tools.items() if reason}
    keys = list(anchor_na)  # enabled coders: summary columns (n/a with the reason if unusable)
    rows = [summary_row(s, rs, na, anchor_na) for s, rs in results.items()]
    total_sets = [s for s in args.total if s in results]
    total_label = f"**TOTAL** ({'+'.join(total_sets)})"
    combined = [r for s in total_sets for r in results[s]]
    if len(total_sets) >= 2:
        rows.append(summary_row(total_label, combined, na, anchor_na))
    out.append(markdown_table(summary_header(keys), rows))
    out.append("")
    out.append("Speeds: hyb enc/dec x rt are audio seconds / CPU seconds of this process "
               "(one core); the flac, wavpack"
               + ("".join(f", {k}" for k in keys))
               + " columns are audio seconds / wall seconds of their processes, which "
                 "slow down when other jobs share the machine.")
    if any(anchor_na[k] is None for k in keys):
        out.append("Reference coder columns (" + ", ".join(ANCHOR_LABEL[k] for k in keys)
                   + ") sum only the files the coder coded *and* decoded back bit-exactly "
                     "(`(k/n files)` when that is not all of them), and hyb/coder compares "
                     "hybridcodec on those same files; see the reference coder table.")
    out.append("")
    for t, reason in na.items():
        out.append(f"Note: {t} columns are n/a because {reason} "
                   f"(pass --install to apt-get it).")
    for key, reason in anchor_na.items():
        if reason:
            out.append(f"Note: {ANCHOR_LABEL[key]} columns are n/a because {reason}.")
    all_results = [r for rs in results.values() for r in rs]
    tool_errs = [(r, e) for r in all_results for e in r.tool_errors]
    for r, e in tool_errs:
        out.append(f"Note: {r.set_name}/{r.path.name}: {e} (its set's totals show n/a)")

    coded_keys = [k for k in keys if anchor_na[k] is None]
    if coded_keys:
        out += ["", "## Reference coders on the files they coded", "",
                "hybridcodec and FLAC -8 summed over exactly the files the coder coded and "
                "decoded back bit-exactly (Sac: 16-bit mono/stereo only).", ""]
        arows = []
        for key in coded_keys:
            arows += [anchor_row(s, rs, key) for s, rs in results.items()]
            if len(total_sets) >= 2:
                arows.append(anchor_row(total_label, combined, key))
        out.append(markdown_table(ANCHOR_HEADER, arows))
        out.append("")
        for key in coded_keys:
            skipped = [r for r in all_results if r.anchors[key].skipped]
            if skipped:
                out.append(f"Note: {ANCHOR_LABEL[key]} left out {len(skipped)} file(s) it "
                           "does not handle: " + ", ".join(
                               f"{r.set_name}/{r.path.name} ({r.anchors[key].skipped})"
                               for r in skipped) + ".")
            bad = [r for r in all_results if r.anchors[key].error]
            for r in bad:
                out.append(f"Note: **{ANCHOR_LABEL[key]} failed on {r.set_name}/{r.path.name}**: "
                           f"{r.anchors[key].error} (marked in the per-file table, left out "
                           "of its totals)".replace("|", "/"))
            if not bad:
                n_ok = sum(r.anchors[key].ok for r in all_results)
                out.append(f"All {n_ok} {ANCHOR_LABEL[key]} round trips bit-exact.")

    outliers = [r for r in all_results
                if r.hyb_bytes is not None and r.flac_bytes
                and not OUTLIER_LOW <= r.hyb_bytes / r.flac_bytes <= OUTLIER_HIGH]
    fheader = file_header(coded_keys)
    if outliers:
        out += ["", f"Outliers (hyb/flac outside {OUTLIER_LOW}..{OUTLIER_HIGH}):", ""]
        out.append(markdown_table(fheader, [file_row(r, coded_keys) for r in outliers]))

    failures = [r for r in all_results if not r.ok]
    if failures:
        out += ["", f"**FAIL: {len(failures)} of {len(all_results)} round trips were not "
                    f"bit-exact or did not complete:**", ""]
        out.append(markdown_table(fheader, [file_row(r, coded_keys) for r in failures]))
    else:
        out += ["", f"All {len(all_results)} hybridcodec round trips bit-exact."]

    if args.per_file:
        out += ["", "## Per file", ""]
        out.append(markdown_table(fheader, [file_row(r, coded_keys) for r in all_results]))

    report = "\n".join(out) + "\n"
    sys.stdout.write(report)
    if args.output is not None:
        args.output.write_text(report)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
