"""Fit a model's prior-mean nets by least squares on real audio (no GPU, no Lightning).

This is how the shipped default model is made until a trained one replaces it: the
lifting steps stay LeGall 5/3, and each level's linear mean net ``E[d_l | s_l window]``
is the least-squares fit over the training files. The adaptive cascade then handles what
varies from file to file. Usage::

    python -m train.fit_priors --out hybridcodec/models/default.hcm ../shared/data/corpus
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

from hybridcodec.audio_io import open_audio
from hybridcodec.framecodec import coded_signals
from hybridcodec.model import HybridModel, ModelConfig, model_id_of


def is_validation(path: Path, fraction: float = 0.25) -> bool:
    """File-level split, stable across machines: by a hash of the file name."""
    h = int(hashlib.sha256(path.name.encode()).hexdigest()[:8], 16)
    return h / 2**32 < fraction


def audio_files(roots: list[Path]) -> list[Path]:
    files = []
    for root in roots:
        files += sorted(root.rglob("*.flac")) + sorted(root.rglob("*.wav")) if root.is_dir() else [root]
    return files


def read_frames(path: Path, frame_length: int, max_frames: int):
    with open_audio(path) as reader:
        for _ in range(max_frames):
            x = reader.read(frame_length)
            if not len(x):
                return
            yield x.astype(np.int64)


def window_matrix(s: np.ndarray, n: int, taps: int, left: int) -> np.ndarray:
    """Rows = the replicate-padded windows an IntConvNet sees (same geometry)."""
    right = n + taps - 1 - left - s.size
    sp = np.pad(s, (left, max(right, 0)), mode="edge")[: n + taps - 1]
    return np.lib.stride_tricks.sliding_window_view(sp, taps)[:n]


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
                s = torch.from_numpy(x.astype(np.float64))
                for level in range(cfg.levels):
                    even, odd = s[0::2], s[1::2]
                    d = odd - model.wavelet.predict[level].predict_exact(even, odd.numel())
                    s = even + model.wavelet.update[level].predict_exact(d, even.numel())
                    if d.numel() < taps:
                        break
                    a = window_matrix(s.numpy(), d.numel(), taps, model.means[level].left)
                    # Normalise each file's contribution so loud files don't dominate.
                    w = 1.0 / (np.mean(d.numpy() ** 2) + 1.0)
                    gram[level] += w * a.T @ a
                    rhs[level] += w * a.T @ d.numpy()
    for level in range(cfg.levels):
        g = gram[level] + ridge * np.trace(gram[level]) / taps * np.eye(taps)
        coef = np.linalg.solve(g, rhs[level]) if np.any(g) else np.zeros(taps)
        with torch.no_grad():
            model.means[level].linear.copy_(torch.from_numpy(coef).view(1, 1, -1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+", type=Path, help="folders or files of training audio")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max-frames", type=int, default=8, help="frames read per file")
    args = ap.parse_args(argv)
    files = [f for f in audio_files(args.roots) if not is_validation(f)]
    model = HybridModel(ModelConfig(description=
        "LeGall 5/3 lifting; linear prior means fitted by least squares on "
        f"{len(files)} training files of the corpus; adaptive NLMS cascade"))
    fit_means(model, files, args.max_frames)
    model.save(args.out)
    print(f"fitted on {len(files)} files -> {args.out} (model id {model_id_of(model)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
