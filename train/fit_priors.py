"""Fit a model's lifting steps and prior-mean nets on real audio (no GPU, no Lightning).

This is how the shipped default model is made:

* the lifting steps (P, U of every level) are searched as symmetric linear filters,
  coordinate by coordinate, against the coder's real cost: the ideal code length of the
  residuals :func:`hybridcodec.framecodec.analyse_frame` produces, adaptive cascade
  included (:func:`search_lifting`, ``--search-lifting``). Gradient training cannot see
  the cascade, which is where the wavelet's choice shows;
* each level's linear mean net ``E[d_l | s_l window]`` is the least-squares fit over the
  training files (:func:`fit_means`).

The adaptive cascade then handles what varies from file to file. Usage::

    python -m train.fit_priors --search-lifting --out hybridcodec/models/default.hcm \
        ../shared/data/corpus/music ../shared/data/corpus/instruments
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from hybridcodec.audio_io import open_audio
from hybridcodec.framecodec import analyse_frame, coded_signals
from hybridcodec.model import HybridModel, ModelConfig, model_id_of

from .errors import DataError, positive_int, report


def is_validation(path: Path, fraction: float = 0.25) -> bool:
    """File-level split, stable across machines: by a hash of the file name."""
    h = int(hashlib.sha256(path.name.encode()).hexdigest()[:8], 16)
    return h / 2**32 < fraction


def audio_files(roots: list[Path], hint: str = "") -> list[Path]:
    """The .flac and .wav files under ``roots`` (folders, searched recursively, or files),
    sorted per root; a root that does not exist is a DataError (``hint`` appended)."""
    missing = [r for r in roots if not r.exists()]
    if missing:
        raise DataError(f"data folder not found: {missing[0]}{hint}")
    files = []
    for root in roots:
        files += sorted(root.rglob("*.flac")) + sorted(root.rglob("*.wav")) if root.is_dir() else [root]
    return files


def read_frames(path: Path, frame_length: int, max_frames: int, max_samples: int | None = None):
    """The first ``max_frames`` frames of a file (int64 PCM), within its first ``max_samples``
    samples if given (the last frame is then cut short)."""
    left = max_samples if max_samples is not None else 1 << 62
    with open_audio(path) as reader:
        for _ in range(max_frames):
            x = reader.read(min(frame_length, left))
            if not len(x):
                return
            left -= len(x)
            yield x.astype(np.int64)


def fit_means(model: HybridModel, files: list[Path], max_frames: int = 8,
              ridge: float = 1e-3) -> None:
    """Least-squares fit of every level's linear mean net, in place."""
    cfg = model.config
    taps = cfg.mean_taps
    gram = [np.zeros((taps, taps)) for _ in range(cfg.levels)]
    rhs = [np.zeros(taps) for _ in range(cfg.levels)]
    for path in files:
        for pcm in read_frames(path, cfg.frame_length, max_frames):
            _, _, signals = coded_signals(pcm)
            for x in signals:
                s = x.astype(np.int64)
                for level in range(cfg.levels):
                    s, d = model.wavelet.analyse_level(level, s)
                    if d.size < taps:
                        break
                    a = model.means[level].windows(s, d.size).astype(np.float64)
                    d = d.astype(np.float64)
                    # Normalise each file's contribution so loud files don't dominate.
                    w = 1.0 / (np.mean(d ** 2) + 1.0)
                    gram[level] += w * a.T @ a
                    rhs[level] += w * a.T @ d
    for level in range(cfg.levels):
        g = gram[level] + ridge * np.trace(gram[level]) / taps * np.eye(taps)
        coef = np.linalg.solve(g, rhs[level]) if np.any(g) else np.zeros(taps)
        model.means[level].set_float_linear(coef)


def middle_excerpt(path: Path, length: int) -> np.ndarray:
    """``length`` samples from the middle of a file (its typical content)."""
    with open_audio(path) as reader:
        start = max(0, reader.info.num_samples // 2 - length // 2)
        reader.read(start)
        return reader.read(length).astype(np.int64)


def coded_cost(model: HybridModel, frames: list[np.ndarray]) -> float:
    """Ideal bits the coder spends on ``frames`` (train.coded_bits' estimate, side info
    included): what the lifting search minimises."""
    from .coded_bits import band_bits  # coded_bits imports this module
    cfg = model.config
    total = 0.0
    for pcm in frames:
        for bands in analyse_frame(model, pcm).channels:
            for b, code in enumerate(bands):
                total += band_bits(code.residuals, code.classes,
                                   cfg.block_length(cfg.levels + 1 - b), model)
    return total


def set_symmetric_lifting(model: HybridModel, level: int, predict: list[float],
                          update: list[float]) -> None:
    """Level ``level``'s P and U as symmetric filters from their outer taps.

    ``predict[k]`` / ``update[k]`` weigh the pair of inputs k + 1/2 samples away, k >= 1;
    the nearest pair takes what keeps the filter's DC gain at 1 (P) or 1/2 (U), so the
    coarse band stays a low-pass signal (the lossy tiers rely on it).
    """
    for net, outer, gain in ((model.wavelet.predict[level], predict, 0.5),
                             (model.wavelet.update[level], update, 0.25)):
        taps = net.taps
        half = taps // 2
        pairs = [gain - sum(outer)] + list(outer)
        if len(pairs) > half:
            raise ValueError(f"{len(pairs)} tap pairs do not fit {taps} taps")
        w = np.zeros(taps)
        centre = net.left if net is model.wavelet.predict[level] else net.left - 1
        for k, v in enumerate(pairs):
            w[centre - k] += v
            w[centre + 1 + k] += v
        net.set_float_linear(w)
        net.w_out[:] = 0


def search_lifting(model: HybridModel, files: list[Path], excerpt: int = 65536,
                   steps: tuple[float, ...] = (4 / 256, 2 / 256, 1 / 256),
                   log=print) -> float:
    """Coordinate search of every level's symmetric P and U (see
    :func:`set_symmetric_lifting`) against :func:`coded_cost` of an ``excerpt`` of every
    file (coded as one frame), in place; the mean nets are refitted (on the files' first
    two frames) for every candidate. Returns the final cost relative to the better
    start.

    First every coordinate moves for all levels at once, at each step size in turn (moving
    one level alone is a poor direction: the levels' filters interact), then one
    level-by-level pass at the finest step.
    """
    cfg = model.config
    frames = [x for x in (middle_excerpt(f, excerpt) for f in files) if len(x)]
    outer = cfg.lift_taps // 2 - 1

    def cost(candidate) -> float:
        for level, (p, u) in enumerate(candidate):
            set_symmetric_lifting(model, level, p, u)
        fit_means(model, files, 2)
        return coded_cost(model, frames)

    # The landscape has several local optima that coordinate moves cannot leave, so the
    # search starts from the better of two priors: the (13,7) interpolating wavelet
    # (Deslauriers-Dubuc predict), and the optimum of an earlier search on this corpus
    # (a 6-tap predict and update).
    def pad(taps):
        return (list(taps) + [0.0] * outer)[:outer]
    starts = [(pad([-16 / 256]), pad([-8 / 256])),
              (pad([-23 / 256, 2 / 256]), pad([-19 / 256, 4 / 256]))]
    scored = []
    for p0, u0 in starts:
        candidate = [[list(p0), list(u0)] for _ in range(cfg.levels)]
        scored.append((cost(candidate), candidate))
    first, params = min(scored, key=lambda item: item[0])
    best = first
    log(f"lifting search start: {', '.join(f'{c / scored[0][0]:.4f}' for c, _ in scored)} "
        "(relative to (13,7))")
    shared = [None]  # None: all levels together
    phases = [(step, shared) for step in steps] + [(steps[-1], list(range(cfg.levels)))]
    for step, groups in phases:
        for level in groups:
            levels = range(cfg.levels) if level is None else [level]
            for which in (0, 1):
                for k in range(outer):
                    for sign in (1, -1):
                        while True:
                            trial = [[list(p), list(u)] for p, u in params]
                            for lv in levels:
                                trial[lv][which][k] += sign * step
                            c = cost(trial)
                            if c >= best:
                                break
                            best, params = c, trial
        log(f"lifting search, step {step * 256:g}/256"
            f"{'' if groups is shared else ', per level'}: {100 * (best / first - 1):+.2f} %")
    for level, (p, u) in enumerate(params):
        set_symmetric_lifting(model, level, p, u)
        log(f"  level {level + 1}: P outer pairs {[round(v * 256, 2) for v in p]}/256, "
            f"U outer pairs {[round(v * 256, 2) for v in u]}/256")
    return best / first


def _run(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.fit_priors",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+", type=Path, help="folders or files of training audio")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-frames", type=positive_int, default=8, help="frames read per file")
    ap.add_argument("--search-lifting", action="store_true",
                    help="search the lifting steps against the coded size (minutes); "
                         "default: LeGall 5/3")
    ap.add_argument("--search-every", type=positive_int, default=3,
                    help="the search codes every k-th training file (an excerpt of each)")
    ap.add_argument("--max-files", type=positive_int, default=None, metavar="K",
                    help="only the first K training files (a quick run)")
    args = ap.parse_args(argv)
    files = [f for f in audio_files(args.roots) if not is_validation(f)][: args.max_files]
    if not files:
        raise DataError(f"no training audio (.flac, .wav) in {', '.join(map(str, args.roots))}")
    lifting = "LeGall 5/3 lifting"
    model = HybridModel(ModelConfig())
    if args.search_lifting:
        gain = search_lifting(model, files[::args.search_every], log=lambda m: print(m, flush=True))
        lifting = (f"symmetric lifting steps searched against the coded size on "
                   f"{len(files[::args.search_every])} training files ({100 * (gain - 1):+.2f} % "
                   "from the better start)")
    model.config.description = (f"{lifting}; linear prior means fitted by least squares on "
                                f"{len(files)} training files of the corpus; adaptive NLMS "
                                "cascade with coarse-band features")
    fit_means(model, files, args.max_frames)
    model.save(args.out)
    print(f"fitted on {len(files)} files -> {args.out} (model id {model_id_of(model)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m train.fit_priors``; a missing folder or unreadable file is a one-line error."""
    return report("python -m train.fit_priors", lambda: _run(argv))


if __name__ == "__main__":
    sys.exit(main())
