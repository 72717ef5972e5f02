"""``python -m train.evaluate MODEL...``: real coded size of models on the validation split.

MODEL is a model file (.hcm) or ``default`` (the model embedded in the package). For
each model: actual coded bits per sample (the real encoder's payloads), the ideal
estimate and their difference, and bits per coefficient of every band; with several
models, each band's change relative to the first. Example::

    python -m train.evaluate default train/artifacts/trained-cpu.hcm
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


from hybridcodec.model import load_model

from .coded_bits import Evaluation, evaluate, file_frames
from .fit_priors import audio_files, is_validation

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpus"


def split_files(roots: list[Path], split: str) -> list[Path]:
    files = audio_files(roots)
    if split == "all":
        return files
    return [f for f in files if is_validation(f) == (split == "val")]


def band_order(ev: Evaluation) -> list[str]:
    return sorted(ev.counts, key=lambda b: (b != "coarse", -int(b[1:]) if b != "coarse" else 0))


def report(names: list[str], evs: list[Evaluation]) -> str:
    bands = band_order(evs[0])
    head = ["model", "coded bits/sample", "estimated", "est-actual"] + \
        [f"{b} bits/coef" for b in bands]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, ev in zip(names, evs):
        m = ev.metrics()
        cells = [name, f"{m['coded_bps']:.4f}", f"{m['estimated_bps']:.4f}",
                 f"{100 * m['coded_vs_estimated']:+.2f} %"]
        cells += [f"{m[f'estimated_bpc_{b}']:.3f}" for b in bands]
        rows.append("| " + " | ".join(cells) + " |")
    for name, ev in zip(names[1:], evs[1:]):
        base, m = evs[0].metrics(), ev.metrics()
        cells = [f"{name} vs {names[0]}",
                 f"{100 * (m['coded_bps'] / base['coded_bps'] - 1):+.2f} %", "", ""]
        cells += [f"{m[f'estimated_bpc_{b}'] - base[f'estimated_bpc_{b}']:+.3f}" for b in bands]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files, or 'default'")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("HYBRIDCODEC_DATA", DEFAULT_DATA)))
    ap.add_argument("--sets", nargs="*", default=["music", "instruments"])
    ap.add_argument("--split", choices=["val", "train", "all"], default="val")
    ap.add_argument("--frames", type=int, default=None, help="frames per file (default: all)")
    args = ap.parse_args(argv)
    files = split_files([args.data / s for s in args.sets] if args.sets else [args.data], args.split)
    evs = []
    for name in args.models:
        model, model_id = load_model(None if name == "default" else name)
        start = time.perf_counter()
        ev = evaluate(model, file_frames(files, model.config.frame_length, args.frames))
        print(f"{name} ({model_id}): {len(files)} files, {ev.samples} samples, "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
        evs.append(ev)
    print(report(args.models, evs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
