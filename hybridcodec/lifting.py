"""The learned integer wavelet: L levels of lifting whose predict/update steps are nets.

Level l splits its input into even and odd samples and computes
``d = odd - P(even)``, ``s = even + U(d)``; ``s`` feeds level l+1. Whatever P and U
compute, the inverse ``even = s - U(d)``, ``odd = d + P(even)`` restores the input
exactly, because both sides evaluate the same integer-exact nets
(:mod:`hybridcodec.intconv`). Any length works, including 0 and 1 (an empty detail band).
"""

from __future__ import annotations

import torch
from torch import nn

from .intconv import IntConvNet


def legall_predict(taps: int, hidden: int = 0) -> IntConvNet:
    """Predict net for odd[n] from even[n-taps/2+1 .. n+taps/2], initialised to LeGall 5/3."""
    net = IntConvNet(taps, taps // 2 - 1, hidden)
    with torch.no_grad():
        net.linear[0, 0, taps // 2 - 1] = 0.5
        net.linear[0, 0, taps // 2] = 0.5
    return net


def legall_update(taps: int, hidden: int = 0) -> IntConvNet:
    """Update net for even[n] from d[n-taps/2 .. n+taps/2-1], initialised to LeGall 5/3."""
    net = IntConvNet(taps, taps // 2, hidden)
    with torch.no_grad():
        net.linear[0, 0, taps // 2 - 1] = 0.25
        net.linear[0, 0, taps // 2] = 0.25
    return net


class LiftingWavelet(nn.Module):
    """An L-level learned integer lifting scheme (an integer discrete flow)."""

    def __init__(self, levels: int, taps: int = 8, hidden: int = 0) -> None:
        super().__init__()
        self.levels = levels
        self.predict = nn.ModuleList(legall_predict(taps, hidden) for _ in range(levels))
        self.update = nn.ModuleList(legall_update(taps, hidden) for _ in range(levels))

    def forward_exact(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Analyse a 1-D float64 integer signal into (coarse s_L, [d_1 (finest) .. d_L])."""
        details = []
        s = x
        for level in range(self.levels):
            even, odd = s[0::2], s[1::2]
            d = odd - self.predict[level].predict_exact(even, odd.numel())
            s = even + self.update[level].predict_exact(d, even.numel())
            details.append(d)
        return s, details

    def inverse_exact(self, coarse: torch.Tensor, details: list[torch.Tensor]) -> torch.Tensor:
        """Synthesise the signal from the coarse band and all detail bands (finest first)."""
        s = coarse
        for level in reversed(range(self.levels)):
            s = self.synthesise_level(level, s, details[level])
        return s

    def synthesise_level(self, level: int, s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Undo one level: from s_{level+1} and d_{level+1} back to s_level."""
        even = s - self.update[level].predict_exact(d, s.numel())
        odd = d + self.predict[level].predict_exact(even, d.numel())
        out = torch.empty(even.numel() + odd.numel(), dtype=torch.float64, device=even.device)
        out[0::2] = even
        out[1::2] = odd
        return out


def band_lengths(n: int, levels: int) -> tuple[int, list[int]]:
    """Lengths of (coarse band, [d_1 .. d_L]) for an n-sample signal."""
    details = []
    for _ in range(levels):
        details.append(n // 2)
        n = n - n // 2
    return n, details
