"""Container overhead of short clips: what a stream spends on anything but payload.

Encodes the first ``--clips`` files of ``corpus/speech8k`` (sorted by name) with and
without their metadata, a 1 s mono 44.1 kHz 16-bit WAV cut from
``instruments/speech-female.flac`` and the 0.6 s ``instruments/speech-female-short.flac``,
and prints per clip the stream size, the payload and the container bytes
(``read_stream_layout(...).overhead_bytes``: header, metadata chunk, frame headers,
CRCs, index, end chunk), then the totals against ``flac -8 --no-padding`` of the same
clips. Run from the repository root::

    python benchmarks/container_overhead.py --clips 200

Only the public API (``hybridcodec.encode``, ``read_stream_layout``) is used, so the same
script measures any version: with ``PYTHONPATH`` set, that tree's ``hybridcodec`` is used
instead of this repository's (``PYTHONPATH=/path/to/other/checkout python ...``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if not os.environ.get("PYTHONPATH") and str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import soundfile as sf  # noqa: E402

import hybridcodec  # noqa: E402
from hybridcodec.container import FORMAT_VERSION, read_stream_layout  # noqa: E402

CORPUS = REPO.parent / "shared" / "data" / "corpus"


def _encode(src: Path, dst: Path, metadata: bool) -> tuple[int, int]:
    """(stream bytes, container bytes) of ``src`` encoded losslessly."""
    hybridcodec.encode(src, dst, overwrite=True, metadata=metadata)
    layout = read_stream_layout(dst)
    return layout.total_bytes, layout.overhead_bytes


def _flac(src: Path, dst: Path) -> int | None:
    if shutil.which("flac") is None:
        return None
    subprocess.run(["flac", "-8", "--no-padding", "-s", "-f", "-o", str(dst), str(src)],
                   check=True)
    return dst.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200, help="speech8k clips (default 200)")
    parser.add_argument("--show", type=int, default=5, help="clips listed one by one")
    args = parser.parse_args(argv)
    clips = sorted((CORPUS / "speech8k").glob("*.flac"))[: args.clips]
    if not clips:
        print(f"no clips under {CORPUS / 'speech8k'}", file=sys.stderr)
        return 1
    print(f"hybridcodec {hybridcodec.__file__}: format version {FORMAT_VERSION}\n")
    with tempfile.TemporaryDirectory(prefix="hyb-overhead-") as tmp:
        tmp = Path(tmp)
        one_second = tmp / "speech-female-1s.wav"
        pcm, rate = sf.read(CORPUS / "instruments" / "speech-female.flac", dtype="int16",
                            frames=44100)
        sf.write(one_second, pcm, rate, subtype="PCM_16")
        print("| clip | seconds | stream bytes | container bytes | no metadata: stream | "
              "no metadata: container |")
        print("|---|---:|---:|---:|---:|---:|")
        singles = [one_second, CORPUS / "instruments" / "speech-female-short.flac"]
        for src in singles + clips[: args.show]:
            info = sf.info(src)
            full = _encode(src, tmp / "a.hyb", True)
            bare = _encode(src, tmp / "b.hyb", False)
            print(f"| {src.name} | {info.frames / info.samplerate:.2f} | {full[0]} | {full[1]} "
                  f"| {bare[0]} | {bare[1]} |")
        totals = {"meta": [0, 0], "bare": [0, 0], "flac": 0, "src": 0}
        for i, src in enumerate(clips):
            for key, metadata in (("meta", True), ("bare", False)):
                size, overhead = _encode(src, tmp / "c.hyb", metadata)
                totals[key][0] += size
                totals[key][1] += overhead
            flac = _flac(src, tmp / "c.flac")
            totals["flac"] = None if flac is None or totals["flac"] is None \
                else totals["flac"] + flac
            totals["src"] += src.stat().st_size
            if (i + 1) % 50 == 0:
                print(f"  {i + 1} clips", file=sys.stderr)
    n = len(clips)
    print(f"\n{n} speech8k clips (first {n} by name): source files {totals['src']} bytes")
    flac = totals["flac"]
    for key, label in (("meta", "with metadata"), ("bare", "--no-metadata")):
        size, overhead = totals[key]
        ratio = f", {size / flac:.4f} x flac -8 --no-padding" if flac else ""
        print(f"- hybridcodec {label}: {size} bytes, container {overhead} bytes "
              f"({overhead / n:.1f} per clip){ratio}")
    if flac:
        print(f"- flac -8 --no-padding: {flac} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
