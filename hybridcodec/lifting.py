"""The learned integer wavelet: L levels of lifting whose predict/update steps are nets.

Level l splits its input into even and odd samples and computes
``d = odd - P(even)``, ``s = even + U(d)``; ``s`` feeds level l+1. Whatever P and U
compute, the inverse ``even = s - U(d)``, ``odd = d + P(even)`` restores the input
exactly, because both sides evaluate the same integer-exact nets
(:mod:`hybridcodec.intconv`). Any length works, including 0 and 1 (an empty detail band).
This is the one analysis and synthesis path: the codec and the training tools use it.
"""

from __future__ import annotations

import numpy as np

from .intconv import FRAC_BITS, IntConv


def legall_predict(taps: int, hidden: int = 0) -> IntConv:
    """Predict net for odd[n] from even[n-taps/2+1 .. n+taps/2], initialised to LeGall 5/3."""
    net = IntConv(taps, taps // 2 - 1, hidden)
    net.linear[taps // 2 - 1] = net.linear[taps // 2] = 1 << (FRAC_BITS - 1)
    return net


def legall_update(taps: int, hidden: int = 0) -> IntConv:
    """Update net for even[n] from d[n-taps/2 .. n+taps/2-1], initialised to LeGall 5/3."""
    net = IntConv(taps, taps // 2, hidden)
    net.linear[taps // 2 - 1] = net.linear[taps // 2] = 1 << (FRAC_BITS - 2)
    return net


class LiftingWavelet:
    """An L-level learned integer lifting scheme (an integer discrete flow)."""

    def __init__(self, levels: int, taps: int = 8, hidden: int = 0) -> None:
        self.levels = levels
        self.predict = [legall_predict(taps, hidden) for _ in range(levels)]
        self.update = [legall_update(taps, hidden) for _ in range(levels)]

    def analyse_level(self, level: int, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One level: s_level -> (s_{level+1}, d_{level+1})."""
        even, odd = s[0::2], s[1::2]
        d = odd - self.predict[level].predict(even, odd.size)
        return even + self.update[level].predict(d, even.size), d

    def analyse(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Analyse an int64 signal into (coarse s_L, [d_1 (finest) .. d_L])."""
        details = []
        s = np.asarray(x, np.int64)
        for level in range(self.levels):
            s, d = self.analyse_level(level, s)
            details.append(d)
        return s, details

    def synthesise(self, coarse: np.ndarray, details: list[np.ndarray]) -> np.ndarray:
        """Synthesise the signal from the coarse band and all detail bands (finest first)."""
        s = np.asarray(coarse, np.int64)
        for level in reversed(range(self.levels)):
            s = self.synthesise_level(level, s, details[level])
        return s

    def synthesise_level(self, level: int, s: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Undo one level: from s_{level+1} and d_{level+1} back to s_level."""
        s, d = np.asarray(s, np.int64), np.asarray(d, np.int64)
        even = s - self.update[level].predict(d, s.size)
        odd = d + self.predict[level].predict(even, d.size)
        out = np.empty(even.size + odd.size, np.int64)
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
