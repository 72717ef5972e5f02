"""Float torch nets of the codec model, for gradient training.

:class:`TrainableModel` is built from the same :class:`hybridcodec.model.ModelConfig` as
the coder's integer :class:`~hybridcodec.model.HybridModel` and has the same nets under
the same names (``wavelet.predict[l]``, ``wavelet.update[l]``, ``means[l]``). It trains in
float; :meth:`TrainableModel.to_codec` rounds its weights to the fixed-point integers
the coder evaluates, and :meth:`TrainableModel.from_codec` starts from a model file. The
exact mode of :class:`TorchIntConv` (fixed-point weights, integers in float64) computes
the same integers as :meth:`hybridcodec.intconv.IntConv.predict`; a test checks it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hybridcodec.intconv import FRAC_BITS, MAX_WEIGHT, IntConv
from hybridcodec.model import HybridModel, ModelConfig


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _floor_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.floor(x) - x).detach()


class TorchIntConv(nn.Module):
    """The float twin of :class:`hybridcodec.intconv.IntConv` (same window, same branch).

    ``forward(x, out_len)`` is the training path: float weights, rounding with a
    straight-through gradient (as in IDF). ``forward(x, out_len, exact=True)`` rounds the
    weights to fixed point first and computes exactly the coder's integers (every partial
    sum stays below 2**53, so float64 is exact).
    """

    def __init__(self, taps: int, left: int, hidden: int = 0,
                 frac_bits: int = FRAC_BITS) -> None:
        super().__init__()
        if taps < 1 or not 0 <= left < taps:
            raise ValueError("need taps >= 1 and 0 <= left < taps")
        self.taps, self.left, self.hidden, self.frac_bits = taps, left, hidden, frac_bits
        self.linear = nn.Parameter(torch.zeros(1, 1, taps, dtype=torch.float64))
        if hidden:
            self.w_in = nn.Parameter(torch.randn(hidden, 1, taps, dtype=torch.float64) * 0.1)
            self.w_out = nn.Parameter(torch.zeros(1, hidden, 1, dtype=torch.float64))

    def quantized(self, w: torch.Tensor) -> torch.Tensor:
        """Fixed-point integer version of a weight tensor (as float64 integers)."""
        return torch.round(w.detach().clamp(-MAX_WEIGHT, MAX_WEIGHT) * float(2**self.frac_bits))

    def _pad(self, x: torch.Tensor, out_len: int) -> torch.Tensor:
        right = out_len + self.taps - 1 - self.left - x.shape[-1]
        if right < 0:
            x = x[..., : x.shape[-1] + right]
            right = 0
        return F.pad(x, (self.left, right), mode="replicate")

    def forward(self, x: torch.Tensor, out_len: int, exact: bool = False) -> torch.Tensor:
        """Predict ``out_len`` values from ``x`` of shape (batch, 1, n), n >= 1."""
        xp = self._pad(x, out_len)
        one = float(2**self.frac_bits)
        if exact:
            acc = F.conv1d(xp, self.quantized(self.linear))
            if self.hidden:
                h = torch.relu(torch.floor(F.conv1d(xp, self.quantized(self.w_in)) / one))
                acc = acc + F.conv1d(h, self.quantized(self.w_out))
            return torch.floor((acc + one / 2) / one)
        acc = F.conv1d(xp, self.linear)
        if self.hidden:
            h = torch.relu(_floor_ste(F.conv1d(xp, self.w_in)))
            acc = acc + F.conv1d(h, self.w_out)
        return _round_ste(acc)

    def predict_exact(self, x: torch.Tensor, out_len: int) -> torch.Tensor:
        """Exact integer prediction for a 1-D float64 tensor of integers (any length)."""
        if out_len == 0 or x.numel() == 0:
            return torch.zeros(out_len, dtype=torch.float64, device=x.device)
        return self.forward(x.view(1, 1, -1), out_len, exact=True).view(-1)

    def load_int(self, net: IntConv) -> None:
        """Take the weights of an integer net (exact multiples of 2**-frac_bits)."""
        with torch.no_grad():
            for name, a in net.arrays().items():
                p = getattr(self, name)
                p.copy_(torch.from_numpy(a.astype(np.float64)).to(p.device) / 2.0**self.frac_bits)

    def to_int(self) -> dict[str, np.ndarray]:
        """The fixed-point weights, under the model file's names and shapes."""
        out = {"linear": self.quantized(self.linear)}
        if self.hidden:
            out.update(w_in=self.quantized(self.w_in), w_out=self.quantized(self.w_out))
        return {k: v.cpu().numpy().astype(np.int64) for k, v in out.items()}


class _Wavelet(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        t, h = cfg.lift_taps, cfg.lift_hidden
        self.levels = cfg.levels
        self.predict = nn.ModuleList(TorchIntConv(t, t // 2 - 1, h) for _ in range(cfg.levels))
        self.update = nn.ModuleList(TorchIntConv(t, t // 2, h) for _ in range(cfg.levels))


class TrainableModel(nn.Module):
    """The codec model's nets in float, built from its config (see the module docstring).

    A fresh one equals a fresh ``HybridModel(config)``: LeGall 5/3 lifting, zero means.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.wavelet = _Wavelet(c)
        self.means = nn.ModuleList(
            TorchIntConv(c.mean_taps, c.mean_taps // 2 - 1, c.mean_hidden)
            for _ in range(c.levels))
        self.load_codec(HybridModel(c))

    def nets(self) -> dict[str, TorchIntConv]:
        """Every net under the name prefix the coder's model file uses."""
        out = {}
        for level in range(self.config.levels):
            out[f"wavelet.predict.{level}"] = self.wavelet.predict[level]
            out[f"wavelet.update.{level}"] = self.wavelet.update[level]
        for level, net in enumerate(self.means):
            out[f"means.{level}"] = net
        return out

    @classmethod
    def from_codec(cls, model: HybridModel) -> "TrainableModel":
        """Start from a coder model (its config and its integer weights)."""
        net = cls(model.config)
        net.load_codec(model)
        return net

    def load_codec(self, model: HybridModel) -> None:
        """Take every weight of ``model`` (same architecture). A hidden branch keeps its
        random input weights where the coder's are all zero (its output weights are zero,
        so the branch is inert either way), so training can grow it."""
        theirs = model.nets()
        for name, net in self.nets().items():
            other = theirs[name]
            if net.hidden and not other.w_in.any() and not other.w_out.any():
                with torch.no_grad():
                    net.linear.copy_(torch.from_numpy(
                        other.linear.astype(np.float64)).view(1, 1, -1) / 2.0**net.frac_bits)
                continue
            net.load_int(other)

    def to_codec(self) -> HybridModel:
        """The coder's model: these weights rounded to fixed point, the config's tables."""
        model = HybridModel(self.config)
        arrays = dict(model.integer_state())
        for prefix, net in self.nets().items():
            arrays.update({f"{prefix}.{k}": v for k, v in net.to_int().items()})
        model.load_integer_state(arrays)
        return model

    def analyse_exact(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The exact lifting analysis in torch (coarse, [d_1 .. d_L]) of a 1-D float64
        integer signal on any device: the coder's integers (a test checks it)."""
        details = []
        s = x
        for level in range(self.config.levels):
            even, odd = s[0::2], s[1::2]
            d = odd - self.wavelet.predict[level].predict_exact(even, odd.numel())
            s = even + self.wavelet.update[level].predict_exact(d, even.numel())
            details.append(d)
        return s, details
