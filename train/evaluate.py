"""``python -m train.evaluate MODEL...``: real coded size of models on the validation split.

MODEL is a model file (.hcm) or ``default`` (the model embedded in the package). For
each model: actual coded bits per sample (the real encoder's payloads), the ideal
estimate and their difference, and bits per coefficient of every band; with several
models, each one's change relative to the first. Example::

    python -m train.evaluate default train/artifacts/trained-cpu.hcm

Every model codes the same audio: all of every file, or with ``--frames N`` the first
N x F samples of every file, F the longest frame length among the models (so N frames of
that model; a model with shorter frames codes the same samples as more frames). Models
with different level counts share the total and the detail bands d1 .. d_L of the
smaller L; a band a model does not have is "–", and the coarse band (below fs/2^(L+1))
is compared only between models with the same number of levels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from hybridcodec.model import load_model

from .coded_bits import Evaluation, evaluate, file_frames
from .errors import DataError, positive_int, report
from .fit_priors import audio_files, is_validation

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpus"
NONE = "–"  # a band the model does not have, or a comparison that is not defined


def split_files(roots: list[Path], split: str) -> list[Path]:
    """The audio files under ``roots`` of one split (``val``, ``train``) or ``all``."""
    files = audio_files(roots, " (set --data or HYBRIDCODEC_DATA)")
    if split != "all":
        files = [f for f in files if is_validation(f) == (split == "val")]
    if not files:
        raise DataError(f"no {split} audio (.flac, .wav) under {', '.join(map(str, roots))}")
    return files


def levels_of(ev: Evaluation) -> int:
    """The number of detail levels an evaluation has bands for."""
    return sum(1 for band in ev.counts if band != "coarse")


def band_order(evs: list[Evaluation]) -> list[str]:
    """Every band any of ``evs`` has: coarse, then the detail bands coarsest first."""
    bands = {b for ev in evs for b in ev.counts}
    return sorted(bands, key=lambda b: (b != "coarse", -int(b[1:]) if b != "coarse" else 0))


def _comparable(band: str, ev: Evaluation, base: Evaluation) -> bool:
    if band not in ev.counts or band not in base.counts:
        return False
    return band != "coarse" or levels_of(ev) == levels_of(base)


def report_table(names: list[str], evs: list[Evaluation]) -> str:
    """The Markdown table of :func:`main`: one row per model, one per comparison with the
    first. Comparisons need the same audio: every evaluation must cover as many samples."""
    if len({ev.samples for ev in evs}) > 1:
        raise ValueError("models measured on different amounts of audio cannot be compared: "
                         + ", ".join(f"{n} {ev.samples}" for n, ev in zip(names, evs)))
    bands = band_order(evs)
    head = ["model", "coded bits/sample", "estimated", "est-actual"] + \
        [f"{b} bits/coef" for b in bands]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, ev in zip(names, evs):
        m = ev.metrics()
        cells = [name, f"{m['coded_bps']:.4f}", f"{m['estimated_bps']:.4f}",
                 f"{100 * m['coded_vs_estimated']:+.2f} %"]
        cells += [f"{m[f'estimated_bpc_{b}']:.3f}" if b in ev.counts else NONE for b in bands]
        rows.append("| " + " | ".join(cells) + " |")
    base = evs[0].metrics()
    for name, ev in zip(names[1:], evs[1:]):
        m = ev.metrics()
        cells = [f"{name} vs {names[0]}",
                 f"{100 * (m['coded_bps'] / base['coded_bps'] - 1):+.2f} %", "", ""]
        cells += [f"{m[f'estimated_bpc_{b}'] - base[f'estimated_bpc_{b}']:+.3f}"
                  if _comparable(b, ev, evs[0]) else NONE for b in bands]
        rows.append("| " + " | ".join(cells) + " |")
    if len({levels_of(ev) for ev in evs}) > 1:
        rows.append("")
        rows.append("Levels: " + ", ".join(f"{n} {levels_of(ev)}" for n, ev in zip(names, evs))
                    + f". The coarse band lies below fs/2^(L+1), so it is compared only "
                    f"between models with the same levels ({NONE} otherwise).")
    return "\n".join(rows)


def _run(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.evaluate",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files, or 'default'")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("HYBRIDCODEC_DATA", DEFAULT_DATA)),
                    help="corpus folder (default: $HYBRIDCODEC_DATA, else ../shared/data/corpus)")
    ap.add_argument("--sets", nargs="*", default=["music", "instruments"],
                    help="sub-folders of --data (none given: all of it)")
    ap.add_argument("--split", choices=["val", "train", "all"], default="val")
    ap.add_argument("--max-files", type=positive_int, default=None, metavar="K",
                    help="only the first K files of the split (sorted by folder and name)")
    ap.add_argument("--frames", type=positive_int, default=None, metavar="N",
                    help="code the first N frames of the model with the longest frames, i.e. "
                         "N x its frame length samples of every file, for every model "
                         "(default: all of every file)")
    args = ap.parse_args(argv)
    files = split_files([args.data / s for s in args.sets] if args.sets else [args.data],
                        args.split)[: args.max_files]
    models = [load_model(None if name == "default" else name) for name in args.models]
    samples = None if args.frames is None else \
        args.frames * max(model.config.frame_length for model, _ in models)
    evs = []
    for name, (model, model_id) in zip(args.models, models):
        start = time.perf_counter()
        ev = evaluate(model, file_frames(files, model.config.frame_length, None, samples))
        print(f"{name} ({model_id}, {model.config.levels} levels, frames of "
              f"{model.config.frame_length}): {len(files)} files, {ev.samples} samples, "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
        evs.append(ev)
    # Same files, same sample budget: every model coded the same audio.
    assert len({ev.samples for ev in evs}) == 1, [ev.samples for ev in evs]
    print(report_table(args.models, evs))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m train.evaluate``; a bad model file or data folder is a one-line error."""
    return report("python -m train.evaluate", lambda: _run(argv))


if __name__ == "__main__":
    sys.exit(main())
