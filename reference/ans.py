"""The entropy decoder ("The entropy coder" and "Symbol kinds" in docs/format.md).

A payload is N little-endian 32-bit words read from the end; the state x holds at most
64 bits; every CDF has 24-bit precision. CDFs are plain Python lists F[0 .. n] with
F[0] = 0 and F[n] = 2^24.
"""

from __future__ import annotations

import struct
from bisect import bisect_right

PRECISION = 24  # TABLE_PRECISION
ONE = 1 << PRECISION
MASK = ONE - 1
WORD = 1 << 32  # ANS_WORD_BITS = 32
UNIFORM_MAX_BITS = 16


class Corrupt(ValueError):
    """The stream breaks a rule of the document."""


class Reader:
    """The decoder of one ANS payload (``init`` and ``decode`` of the document)."""

    __slots__ = ("w", "p", "x")

    def __init__(self, payload: bytes = b""):
        if len(payload) % 4:
            raise Corrupt("payload is not a whole number of words")
        self.w = list(struct.unpack(f"<{len(payload) // 4}I", payload))
        p, x = len(self.w), 0
        if p > 0:
            p -= 1
            x = self.w[p]
            if x == 0:
                raise Corrupt("payload ends in a zero word")
            if p > 0:
                p -= 1
                x = (x << 32) | self.w[p]
        self.p, self.x = p, x

    def _refill(self) -> None:
        if self.x < WORD and self.p > 0:
            self.p -= 1
            self.x = (self.x << 32) | self.w[self.p]

    def cdf(self, F) -> int:
        """One symbol of the integer CDF F (a list)."""
        x = self.x
        q = x & MASK
        s = bisect_right(F, q) - 1
        lo = F[s]
        x = (x >> PRECISION) * (F[s + 1] - lo) + (q - lo)
        if x < WORD and self.p > 0:
            self.p -= 1
            x = (x << 32) | self.w[self.p]
        self.x = x
        return s

    def binary(self, p1: int) -> int:
        """Bin(p1): F = [0, 2^24 - p1, 2^24]."""
        x = self.x
        q = x & MASK
        cut = ONE - p1
        if q < cut:
            s, lo, f = 0, 0, cut
        else:
            s, lo, f = 1, cut, p1
        x = (x >> PRECISION) * f + (q - lo)
        if x < WORD and self.p > 0:
            self.p -= 1
            x = (x << 32) | self.w[self.p]
        self.x = x
        return s

    def uniform(self, k: int) -> int:
        """U(k), 0 <= k <= 16 (U(0) decodes nothing and is 0)."""
        if k == 0:
            return 0
        x = self.x
        q = x & MASK
        sh = PRECISION - k
        s = q >> sh
        x = ((x >> PRECISION) << sh) + (q & ((1 << sh) - 1))
        if x < WORD and self.p > 0:
            self.p -= 1
            x = (x << 32) | self.w[self.p]
        self.x = x
        return s

    def run(self, bits) -> list[int]:
        """A run U(k_0, k_1, ...): 16-bit chunks in rounds, low chunk of every value first."""
        bits = list(bits)
        out = [0] * len(bits)
        done = 0
        active = [i for i, k in enumerate(bits) if k > 0]
        while active:
            for i in active:
                out[i] |= self.uniform(min(UNIFORM_MAX_BITS, bits[i] - done)) << done
            done += UNIFORM_MAX_BITS
            active = [i for i in active if bits[i] > done]
        return out

    def at_end(self) -> bool:
        """After the last symbol of a complete payload: x = 0 and every word read."""
        return self.x == 0 and self.p == 0


def cdf_from_frequencies(f) -> list[int]:
    """Cat(f): F[s] = f[0] + ... + f[s-1]; the f are integers >= 1 summing to 2^24."""
    F = [0]
    for v in f:
        v = int(v)
        if v < 1:
            raise Corrupt("a frequency below 1")
        F.append(F[-1] + v)
    if F[-1] != ONE:
        raise Corrupt("frequencies do not sum to 2^24")
    return F


def cdf_fast(p) -> list[int]:
    """Cat~(p): constriction's fast quantisation of binary64 weights (payload 2).

    C_s and S are left-to-right binary64 sums, sigma = fl((2^24 - n) / S),
    F[s] = floor(fl(C_s * sigma)) + s, F[n] = 2^24."""
    p = [float(v) for v in p]
    n = len(p)
    total = 0.0
    for v in p:
        total += v
    sigma = float(ONE - n) / total
    F, c = [], 0.0
    for s, v in enumerate(p):
        F.append(int(c * sigma) + s)  # int() truncates: floor, as c * sigma >= 0
        c += v
    F.append(ONE)
    return F

