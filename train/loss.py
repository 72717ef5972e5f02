"""The training objective: estimated bits of a signal's integer latents (IDF-style).

The lifting flow runs in float *training* mode (:class:`train.nets.TorchIntConv` with
``exact=False``: rounding with a straight-through gradient), so the latents are the
same integers the coder sees (up to the fixed-point rounding of the weights at export),
while gradients reach every predict, update and mean net. Each detail band ``d_l`` is
priced under a discretized logistic with mean ``means[l](s_l)`` and one scale per block
of ``ModelConfig.block_length(l)`` coefficients, estimated from the block's own mean
``|d - mean|`` (detached): this mimics the coder's forward-adaptive scale classes. The
coarse band is priced around its previous sample with the same kind of block scale.

This leaves out the coder's sample-adaptive NLMS cascade (not differentiable), so by
default it estimates what the *parallel* part of the model leaves for the cascade, not
the coded size (:mod:`train.coded_bits` measures the real thing). With ``lpc_order`` > 0
a stand-in for the cascade is priced too: every band's residual is further predicted
from its own past by a causal linear predictor of that order, least-squares fitted per
example (coefficients detached, gradients flowing through the past samples), so the nets
learn what complements an adaptive in-band predictor rather than what duplicates it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .nets import TrainableModel

LN2 = math.log(2.0)
MIN_SCALE = 2.0 ** -3  # the smallest scale class of the coder's default tables


def block_scale(r: torch.Tensor, block: int, min_scale: float = MIN_SCALE) -> torch.Tensor:
    """Logistic scale per coefficient of ``r`` (batch, n), one per block of ``block``.

    E|x| = 2 ln2 * scale for a logistic, so the block's mean absolute value gives the
    scale. Detached: the scale is side information the encoder chooses, not something
    the nets can shrink by making the latents look small.
    """
    a = r.detach().abs()
    n = a.shape[-1]
    nb = -(-n // block)
    pad = nb * block - n
    sums = F.pad(a, (0, pad)).reshape(*a.shape[:-1], nb, block).sum(-1)
    counts = torch.full((nb,), float(block), dtype=a.dtype, device=a.device)
    counts[-1] = block - pad
    scale = (sums / counts / (2 * LN2)).clamp_min(min_scale)
    return scale.repeat_interleave(block, dim=-1)[..., :n]


def logistic_bits(r: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(r) for integer ``r`` under a zero-mean logistic discretised to unit bins.

    Computed on the left tail (the density is symmetric) as
    ``log(sigmoid(u) - sigmoid(l)) = logsigmoid(u) + log(-expm1(logsigmoid(l) - logsigmoid(u)))``,
    which stays accurate for tiny and for huge scales in float64.
    """
    z = -r.abs()
    lu = F.logsigmoid((z + 0.5) / scale)
    ll = F.logsigmoid((z - 0.5) / scale)
    return -(lu + torch.log(-torch.expm1(ll - lu))) / LN2


@dataclass
class LatentBits:
    """Estimated bits of a batch of signals, per band (each a (batch,) tensor)."""

    details: list[torch.Tensor]  # d_1 (finest) .. d_L
    coarse: torch.Tensor
    detail_counts: list[int]  # coefficients per signal in each detail band
    coarse_count: int
    samples: int  # samples per signal

    @property
    def total(self) -> torch.Tensor:
        """Total bits per signal, shape (batch,)."""
        return sum(self.details, self.coarse)

    def bits_per_sample(self) -> torch.Tensor:
        """Mean bits per input sample over the batch (the training loss)."""
        return self.total.sum() / (self.total.numel() * max(self.samples, 1))

    def band_bpc(self) -> dict[str, torch.Tensor]:
        """Bits per coefficient of every band, averaged over the batch."""
        out = {}
        for level, (bits, n) in enumerate(zip(self.details, self.detail_counts), start=1):
            out[f"d{level}"] = bits.mean() / max(n, 1)
        out["coarse"] = self.coarse.mean() / max(self.coarse_count, 1)
        return out


def causal_lpc_residual(e: torch.Tensor, order: int, ridge: float = 1e-6) -> torch.Tensor:
    """``e`` (batch, n) minus its rounded causal linear prediction from the ``order``
    previous samples, the coefficients least-squares fitted per row (and detached)."""
    if order <= 0 or e.shape[-1] <= order:
        return e
    def past(v):  # (batch, n, order): v[t-1], ..., v[t-order] (zeros before the start)
        return F.pad(v, (order, 0)).unfold(-1, order, 1)[:, :-1].flip(-1)
    with torch.no_grad():
        X = past(e.detach())
        gram = X.transpose(1, 2) @ X
        eye = torch.eye(order, dtype=e.dtype, device=e.device)
        gram = gram + eye * (ridge * gram.diagonal(dim1=1, dim2=2).mean(-1) + 1e-9)[:, None, None]
        coef = torch.linalg.solve(gram, X.transpose(1, 2) @ e.detach().unsqueeze(-1))
    pred = (past(e) @ coef).squeeze(-1)
    return e - (pred + (torch.round(pred) - pred).detach())


def latent_bits(model: TrainableModel, x: torch.Tensor, min_scale: float = MIN_SCALE,
                lpc_order: int = 0) -> LatentBits:
    """Estimated bits of the latents of ``x`` (batch, n): integer-valued float64 signals
    (one coded channel each, after the codec's channel decorrelation). ``lpc_order``:
    see the module docstring (0: the plain IDF objective)."""
    cfg = model.config
    s = x.to(torch.float64).unsqueeze(1)
    details, counts = [], []
    for level in range(cfg.levels):
        even, odd = s[..., 0::2], s[..., 1::2]
        n_odd = odd.shape[-1]
        if n_odd == 0:  # too short for this level: nothing more to code in details
            details.append(torch.zeros(x.shape[0], dtype=s.dtype, device=s.device))
            counts.append(0)
            s = even
            continue
        d = odd - model.wavelet.predict[level](even, n_odd)
        s = even + model.wavelet.update[level](d, even.shape[-1])
        r = causal_lpc_residual((d - model.means[level](s, n_odd)).squeeze(1), lpc_order)
        bits = logistic_bits(r, block_scale(r, cfg.block_length(level + 1), min_scale))
        details.append(bits.sum(-1))
        counts.append(n_odd)
    c = s.squeeze(1)
    if lpc_order > 0:
        r = causal_lpc_residual(c, lpc_order)
    else:
        r = c - torch.cat([c[:, :1], c[:, :-1]], dim=1)  # around the previous sample
    coarse = logistic_bits(r, block_scale(r, cfg.block_length(cfg.levels + 1), min_scale))
    return LatentBits(details, coarse.sum(-1), counts, c.shape[-1], x.shape[-1])
