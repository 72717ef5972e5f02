"""The cost of scalability: the layered lossless stream against a single-layer coder.

Issue 10 asks what the lossy ladder costs the lossless top. With the same model (nets,
cascade, tables, classes chosen the same way), for every frame of every file of the
chosen corpus sets:

* **single layer**: each band's cascade runs open loop on the exact values, with the
  coarse band and the previous channel seen exactly (what a coder without layers would
  do); ideal code length of those residuals under their classes, the class envelope
  included (``train.coded_bits.band_bits``);
* **layered, ideal**: the same for what the encoder really codes: the closed loop on the
  anchors, and the anchors (not the exact values) as the context of the next band and
  channel (:func:`hybridcodec.framecodec.analyse_frame`);
* **stream**: the real lossless ``.hyb`` file (entropy coder, anchor / refinement /
  exact groups as separate layers cut into segments, the band-energy envelope, container).

Run from the repository root::

    python -m benchmarks.scalability --sets music instruments

It prints one markdown table (sums over the files; a row per set and the total).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

import hybridcodec  # noqa: E402
from hybridcodec import framecodec as fc  # noqa: E402
from hybridcodec import channels as ch  # noqa: E402
from hybridcodec.entropy import ZERO_CLASS, choose_classes  # noqa: E402
from hybridcodec.model import load_model  # noqa: E402
from train.coded_bits import band_bits  # noqa: E402

CORPUS = REPO.parent / "shared" / "data" / "corpus"


def single_layer_bits(model, pcm: np.ndarray) -> float:
    """Ideal bits of one frame coded in one layer: open loop, exact context."""
    lay = fc._FrameLayout(model)
    _, _, signals = fc.coded_signals(pcm.astype(np.int64))
    block = model.config.shift_block
    if block:  # the same wasted-bits shift as the encoder (its side information is tiny)
        signals = [ch.shift_blocks(x, ch.block_wasted_bits(x, block), block, up=False)
                   for x in signals]
    bits = 0.0
    previous = None
    for x in signals:
        exact, coarse = [], None
        for band, values in enumerate(fc._analyse(model, x, lay.levels)):
            ref = previous[band] if previous is not None else None
            feats = lay.features(band, coarse, values.size, ref)
            tables, blk = model.tables, lay.block(band)
            r = lay.cascade(band).residuals(values, feats)
            classes = np.maximum(choose_classes(r, blk, tables), 1)
            silent = np.bincount(np.arange(values.size) // blk, weights=np.abs(values),
                                 minlength=classes.size) == 0
            classes[silent] = ZERO_CLASS
            bits += band_bits(r, classes, blk, model)
            exact.append(values)
            coarse = lay.synthesise(band, coarse, values)
        previous = exact if model.config.cross_channel else None
    return bits


def layered_bits(model, pcm: np.ndarray) -> float:
    code = fc.analyse_frame(model, pcm)
    bits = 0.0
    lay = fc._FrameLayout(model)
    for bands in code.channels:
        for band, b in enumerate(bands):
            bits += band_bits(b.residuals, b.classes, lay.block(band), model)
    return bits


def files_of(sets: list[str]) -> list[tuple[str, Path]]:
    return [(s, p) for s in sets for p in sorted((CORPUS / s).glob("*.flac"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["music", "instruments"])
    ap.add_argument("--limit", type=int, default=None, help="files per set (default: all)")
    args = ap.parse_args(argv)
    model, model_id = load_model(None)
    frame = model.config.frame_length
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="hyb-scal-") as tmp:
        for set_name in args.sets:
            chosen = [p for s, p in files_of([set_name])][: args.limit]
            acc = rows.setdefault(set_name, [0.0, 0.0, 0.0, 0.0])
            for k, path in enumerate(chosen):
                info = sf.info(str(path))
                depth = {"PCM_16": 16, "PCM_24": 24, "PCM_U8": 8, "PCM_S8": 8}.get(
                    info.subtype, 32)
                x, _ = sf.read(str(path), dtype="int32", always_2d=True)
                x = (x.astype(np.int64) >> (32 - depth))
                single = layered = 0.0
                for start in range(0, len(x), frame):
                    pcm = x[start:start + frame]
                    single += single_layer_bits(model, pcm)
                    layered += layered_bits(model, pcm)
                out = Path(tmp) / "x.hyb"
                hybridcodec.encode(path, out, overwrite=True)
                acc[0] += single / 8
                acc[1] += layered / 8
                acc[2] += out.stat().st_size
                acc[3] += x.size * depth / 8
                print(f"[{set_name} {k + 1}/{len(chosen)}] {path.name}: layered ideal "
                      f"{layered / single - 1:+.2%}, stream {8 * out.stat().st_size / single - 1:+.2%}"
                      " over single layer", file=sys.stderr, flush=True)
    total = [sum(v[i] for v in rows.values()) for i in range(4)]
    print(f"# Cost of scalability (model {model_id})\n")
    print("| set | single layer, ideal | layered, ideal | stream (.hyb) | layered / single | "
          "stream / single |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, v in list(rows.items()) + [("**total**", total)]:
        print(f"| {name} | {v[0] / v[3]:.2%} of PCM | {v[1] / v[3]:.2%} | {v[2] / v[3]:.2%} | "
              f"{v[1] / v[0]:.4f} | {v[2] / v[0]:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
