"""What a model really codes to, measured two ways on the exact (integer) path.

* **actual**: :func:`hybridcodec.framecodec.encode_frame` on each frame; the sum of the
  payload bytes is the coded size (container framing excluded).
* **estimate**: the ideal code length of the very residuals the encoder codes (after
  the exact lifting, the integer prior means and the closed-loop NLMS cascade) under
  the scale classes it chooses (:meth:`ScaleTables.block_costs`; the precision layers
  split each symbol by the chain rule, so they add no ideal bits), plus the side
  information (frame parameters, anchor sizes, scale envelopes) and the coder's
  termination: every layer payload is its own ANS stream, which ends by flushing its
  state in 32-bit words, about one word more than the information it holds (measured:
  35 bits per payload). It must agree with *actual* to well within 1 %; it also splits
  the size by band, which the layered payloads (one band spread over several precision
  layers) do not do cleanly.

The training loss (:mod:`train.loss`) is a third, cheaper number: it ignores the
adaptive cascade (at most it prices a per-example LPC stand-in for it, ``lpc_order``)
and the coder's class quantization, so it is *not* expected to match these two.

Everything here is Lightning-free and runs on CPU with numpy / numba, like the coder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hybridcodec.entropy import ZERO_CLASS, _delta_probabilities
from hybridcodec.framecodec import (PLANES_BITS, analyse_frame, coded_signals,
                                    encode_frame)
from hybridcodec.model import HybridModel

from .fit_priors import read_frames
from .loss import latent_bits
from .nets import TrainableModel

FLUSH_BITS = 32  # termination cost of one layer payload (ANS state flush, word rounding)


def exported_copy(model: TrainableModel | HybridModel) -> HybridModel:
    """The model exactly as a model file of it would load (fixed-point integers).

    Goes through the model-file bytes, so what is measured here is what an export codes
    to.
    """
    if isinstance(model, TrainableModel):
        with torch.random.fork_rng(devices=[]):  # hidden layers draw random init weights
            model = model.to_codec()
    return HybridModel.from_bytes(model.to_bytes())


def band_residuals(model: HybridModel, pcm: np.ndarray
                   ) -> tuple[float, list[list[tuple[np.ndarray, np.ndarray, int]]]]:
    """(frame parameter bits, per coded channel [(residuals, classes, anchor planes)] for
    the bands coarse, d_L .. d_1) exactly as the encoder codes them
    (:func:`hybridcodec.framecodec.analyse_frame`)."""
    code = analyse_frame(model, pcm)
    return code.side_bits(), [[(b.residuals, b.classes, b.planes) for b in bands]
                              for bands in code.channels]


def band_bits(r: np.ndarray, classes: np.ndarray, block: int, model: HybridModel) -> float:
    """Ideal bits of one band's residuals under its scale classes, envelope included."""
    if r.size == 0:
        return 0.0
    tables = model.tables
    k = tables.num_classes
    p = _delta_probabilities(k)
    p = p / p.sum()
    envelope = int(k - 1).bit_length() - np.log2(p[np.diff(classes) + (k - 1)]).sum()
    per = np.repeat(classes, block)[: r.size]
    coded = per != ZERO_CLASS
    return float(PLANES_BITS + envelope + tables.block_costs(r[coded], per[coded]).sum())


def actual_frame_bits(model: HybridModel, pcm: np.ndarray) -> int:
    """Bits the real encoder spends on a frame (sum of its layer payloads)."""
    return 8 * sum(len(payload) for _, payload in encode_frame(model, pcm))


def estimate_frame_bits(model: HybridModel, pcm: np.ndarray) -> dict[str, float]:
    """Ideal code length of a frame by band: {'side', 'coarse', 'd<L>' .. 'd1'}."""
    cfg = model.config
    L = cfg.levels
    side, per_channel = band_residuals(model, pcm)
    out = {"side": float(side), "coarse": 0.0}
    out.update({f"d{level}": 0.0 for level in range(L, 0, -1)})
    for bands in per_channel:
        for b, (r, classes, _) in enumerate(bands):
            level = L + 1 - b  # 0 -> coarse (L+1), b -> detail level L+1-b
            key = "coarse" if b == 0 else f"d{level}"
            out[key] += band_bits(r, classes, cfg.block_length(level), model)
    return out


@dataclass
class Evaluation:
    """Totals over a set of frames (all channels): bits and coefficient counts."""

    samples: int = 0  # samples x channels
    actual: float = 0.0
    estimate: dict[str, float] = field(default_factory=dict)
    loss: dict[str, float] = field(default_factory=dict)  # training-loss estimate, bits
    counts: dict[str, int] = field(default_factory=dict)  # coefficients per band

    @property
    def estimate_total(self) -> float:
        return sum(self.estimate.values())

    @property
    def relative_error(self) -> float:
        """(estimate - actual) / actual."""
        return (self.estimate_total - self.actual) / self.actual if self.actual else 0.0

    def metrics(self) -> dict[str, float]:
        """Flat metrics: bits per sample (``*_bps``), per band bits per coefficient (``*_bpc_*``)."""
        n = max(self.samples, 1)
        out = {"coded_bps": self.actual / n, "estimated_bps": self.estimate_total / n,
               "coded_vs_estimated": self.relative_error}
        for band, bits in self.estimate.items():
            if band in self.counts:
                out[f"estimated_bpc_{band}"] = bits / max(self.counts.get(band, 0), 1)
        if self.loss:
            out["loss_bps"] = sum(self.loss.values()) / n
            for band, bits in self.loss.items():
                out[f"loss_bpc_{band}"] = bits / max(self.counts.get(band, 0), 1)
        return out


def evaluate(model: HybridModel, frames: list[np.ndarray],
             loss_model: TrainableModel | None = None, lpc_order: int = 0) -> Evaluation:
    """Actual and estimated coded bits of ``model`` (an exact model, e.g. from
    :func:`exported_copy`) on ``frames`` of int PCM (n, channels). With ``loss_model``
    (the float model being trained, any device) also the training loss (with
    ``lpc_order``) on the same coded channels; it ignores the coder's cascade, so it
    does not match the other two."""
    ev = Evaluation()
    for pcm in frames:
        ev.samples += pcm.size
        payloads = [p for _, p in encode_frame(model, pcm)]
        ev.actual += 8 * sum(len(p) for p in payloads)
        ev.estimate["flush"] = ev.estimate.get("flush", 0.0) + FLUSH_BITS * sum(map(bool, payloads))
        for band, bits in estimate_frame_bits(model, pcm).items():
            ev.estimate[band] = ev.estimate.get(band, 0.0) + bits
        _, _, signals = coded_signals(pcm.astype(np.int64))
        for x in signals:
            _count_bands(ev.counts, x.size, model.config.levels)
            if loss_model is not None:
                _add_loss(ev.loss, loss_model, x, lpc_order)
    return ev


def _count_bands(counts: dict[str, int], n: int, levels: int) -> None:
    for level in range(1, levels + 1):
        counts[f"d{level}"] = counts.get(f"d{level}", 0) + n // 2
        n -= n // 2
    counts["coarse"] = counts.get("coarse", 0) + n


@torch.no_grad()
def _add_loss(acc: dict[str, float], model: TrainableModel, x: np.ndarray, lpc_order: int) -> None:
    if x.size < 2:
        return
    device = next(model.parameters()).device
    lb = latent_bits(model, torch.from_numpy(x.astype(np.float64)).to(device)[None],
                     lpc_order=lpc_order)
    for level, bits in enumerate(lb.details, start=1):
        acc[f"d{level}"] = acc.get(f"d{level}", 0.0) + float(bits.sum())
    acc["coarse"] = acc.get("coarse", 0.0) + float(lb.coarse.sum())


def file_frames(files: list[Path], frame_length: int, frames_per_file: int | None,
                samples: int | None = None) -> list[np.ndarray]:
    """The first ``frames_per_file`` frames (all, if None) of every file, as int64 PCM;
    with ``samples``, only within each file's first ``samples`` samples."""
    limit = frames_per_file if frames_per_file is not None else 1 << 40
    return [pcm for f in files for pcm in read_frames(f, frame_length, limit, samples)]
