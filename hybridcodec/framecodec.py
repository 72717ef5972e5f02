"""One frame of PCM <-> its layers. Frames are independent (no state crosses them).

Layer 0 carries the frame parameters (stereo mode, wasted bits per channel) and every
channel's coarse band; layer k (1..L) carries every channel's detail band of level
L-k+1, coarsest first, so any prefix of layers reconstructs a band-limited signal. See
docs/format.md, "Layer payloads".
"""

from __future__ import annotations

import numpy as np
import torch

from . import channels as ch
from .entropy import SymbolReader, SymbolWriter, read_band, write_band
from .errors import CorruptStreamError
from .lifting import band_lengths
from .model import HybridModel

SHIFT_BITS = 5  # wasted-bits count per channel, 0..24
MEAN_CLAMP = 1 << 26


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def _ints(t: torch.Tensor) -> np.ndarray:
    return t.numpy().astype(np.int64)


def _coded_signals(pcm: np.ndarray) -> tuple[int, list[int], list[np.ndarray]]:
    nch = pcm.shape[1]
    shifts = [ch.wasted_bits(pcm[:, c]) for c in range(nch)]
    mode = ch.INDEPENDENT
    if nch == 2:
        common = min(shifts)
        l, r = pcm[:, 0] >> common, pcm[:, 1] >> common
        mode = ch.choose_stereo_mode(l, r)
        if mode != ch.INDEPENDENT:
            shifts = [common, common]
            return mode, shifts, list(ch.decorrelate(l, r, mode))
    return mode, shifts, [pcm[:, c] >> shifts[c] for c in range(nch)]


def prior_mean(model: HybridModel, level: int, coarse: torch.Tensor, n: int) -> np.ndarray:
    """Integer mean of detail band ``level`` (0 = finest) given the band above it."""
    mu = _ints(model.means[level].predict_exact(coarse, n))
    return np.clip(mu, -MEAN_CLAMP, MEAN_CLAMP)


def cross_channel_features(mean: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """Side inputs of a band's cascade: its prior mean, then (for every channel after the
    first) the previous channel's same band at n-1, n, n+1, already decoded when needed."""
    if reference is None:
        return mean[:, None]
    ref = np.pad(reference, 1, mode="edge") if reference.size else reference
    cols = [mean] + ([ref[:-2], ref[1:-1], ref[2:]] if reference.size else [])
    return np.stack(cols, axis=1) if reference.size else mean[:, None]


def _coarse_values(model: HybridModel, s: np.ndarray) -> np.ndarray:
    if model.config.coarse_difference and s.size:
        return np.concatenate([s[:1], np.diff(s)])
    return s


def encode_frame(model: HybridModel, pcm: np.ndarray) -> list[tuple[int, bytes]]:
    """Code one frame of int PCM (n, channels) into layers [(layer_id, payload), ...]."""
    cfg = model.config
    L = cfg.levels
    pcm = pcm.astype(np.int64)
    mode, shifts, signals = _coded_signals(pcm)
    writers = [SymbolWriter() for _ in range(L + 1)]
    writers[0].uniform(np.array([mode]), 2)
    writers[0].uniform(np.array(shifts), SHIFT_BITS)
    previous = None  # the previous channel's bands: coarse first, then d_L .. d_1
    for x in signals:
        s = _tensor(x)
        coarse_per_level = []
        details = []
        for level in range(L):
            even, odd = s[0::2], s[1::2]
            d = odd - model.wavelet.predict[level].predict_exact(even, odd.numel())
            s = even + model.wavelet.update[level].predict_exact(d, even.numel())
            details.append(d)
            coarse_per_level.append(s)
        bands = [_coarse_values(model, _ints(s))]
        feats = cross_channel_features(np.zeros_like(bands[0]), previous and previous[0])
        r = model.coarse_cascade.residuals(bands[0], feats)
        write_band(writers[0], r, cfg.block_length(L + 1), model.tables)
        for level in reversed(range(L)):
            d = _ints(details[level])
            bands.append(d)
            mu = prior_mean(model, level, coarse_per_level[level], d.size)
            feats = cross_channel_features(mu, previous and previous[L - level])
            r = model.detail_cascade.residuals(d, feats)
            write_band(writers[L - level], r, cfg.block_length(level + 1), model.tables)
        previous = bands if cfg.cross_channel else None
    return [(k, w.finish()) for k, w in enumerate(writers)]


def decode_frame(model: HybridModel, layers: dict[int, bytes], n: int, nch: int,
                 where: str = "frame") -> np.ndarray:
    """Inverse of :func:`encode_frame` (all layers present): int64 PCM (n, nch)."""
    cfg = model.config
    L = cfg.levels
    missing = [k for k in range(L + 1) if k not in layers]
    if missing:
        raise CorruptStreamError(f"{where}: layers {missing} missing")
    readers = [SymbolReader(layers[k], f"{where} layer {k}") for k in range(L + 1)]
    mode = int(readers[0].uniform(1, 2)[0])
    shifts = readers[0].uniform(nch, SHIFT_BITS)
    if shifts.max(initial=0) > 24 or (mode != ch.INDEPENDENT and nch != 2):
        raise CorruptStreamError(f"{where}: impossible frame parameters")
    n_coarse, n_details = band_lengths(n, L)
    signals = []
    previous = None
    for _ in range(nch):
        r = read_band(readers[0], n_coarse, cfg.block_length(L + 1), model.tables)
        feats = cross_channel_features(np.zeros_like(r), previous and previous[0])
        sc = model.coarse_cascade.reconstruct(r, feats)
        bands = [sc]
        if cfg.coarse_difference:
            sc = np.cumsum(sc)
        s = _tensor(sc)
        for level in reversed(range(L)):
            r = read_band(readers[L - level], n_details[level], cfg.block_length(level + 1),
                          model.tables)
            mu = prior_mean(model, level, s, r.size)
            feats = cross_channel_features(mu, previous and previous[L - level])
            d = model.detail_cascade.reconstruct(r, feats)
            bands.append(d)
            s = model.wavelet.synthesise_level(level, s, _tensor(d))
        signals.append(_ints(s))
        previous = bands if cfg.cross_channel else None
    for rd in readers:
        rd.finish()
    if nch == 2:
        signals = list(ch.correlate(signals[0], signals[1], mode))
    return np.stack([x << int(k) for x, k in zip(signals, shifts)], axis=1) if nch else \
        np.zeros((n, 0), np.int64)
