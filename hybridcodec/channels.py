"""Per-frame channel handling: wasted low bits and integer stereo decorrelation.

Wasted bits are found per frame and channel and, inside a frame, per block of a coded
signal (:func:`block_wasted_bits`): some sources change their resolution every few
hundred samples (block floating point), and a frame-wide count misses that.

Stereo modes follow FLAC: left/right, left/side, right/side, mid/side, chosen per frame
by a cheap cost estimate. Side = L - R and mid = floor((L + R) / 2) form an integer
lifting pair, so the inverse is exact.
"""

from __future__ import annotations

import numpy as np

INDEPENDENT, LEFT_SIDE, RIGHT_SIDE, MID_SIDE = 0, 1, 2, 3
NUM_MODES = 4


def wasted_bits(x: np.ndarray) -> int:
    """Number of low bits that are zero in every sample of ``x`` (0 for all-zero input)."""
    bits = int(np.bitwise_or.reduce(x.astype(np.int64))) if x.size else 0
    if bits == 0:
        return 0
    return (bits & -bits).bit_length() - 1


def block_wasted_bits(x: np.ndarray, block: int) -> np.ndarray:
    """Wasted low bits of every block of ``block`` samples of ``x`` (0 for an all-zero
    block); the last block may be short."""
    n = x.size
    if n == 0:
        return np.zeros(0, np.int64)
    nb = -(-n // block)
    padded = np.zeros(nb * block, np.int64)
    padded[:n] = x
    bits = np.bitwise_or.reduce(padded.reshape(nb, block), axis=1)
    low = bits & -bits  # lowest set bit (0 for an all-zero block)
    out = np.zeros(nb, np.int64)
    nz = low != 0
    out[nz] = np.log2(low[nz].astype(np.float64)).astype(np.int64)
    return out


def shift_blocks(x: np.ndarray, shifts: np.ndarray, block: int, up: bool) -> np.ndarray:
    """``x`` with block i shifted right (``up`` false) or left by ``shifts[i]`` bits."""
    per = np.repeat(np.asarray(shifts, np.int64), block)[: x.size]
    return x << per if up else x >> per


def _cost(x: np.ndarray) -> float:
    # Bits ~ n * log2(mean |second difference|): enough to rank the four modes.
    if x.size < 3:
        return 0.0
    e = np.abs(np.diff(x, 2)).mean()
    return x.size * np.log2(1.0 + e)


def choose_stereo_mode(left: np.ndarray, right: np.ndarray) -> int:
    """The mode whose two coded channels look cheapest."""
    side = left - right
    mid = (left + right) >> 1
    cl, cr, cs, cm = _cost(left), _cost(right), _cost(side), _cost(mid)
    return int(np.argmin([cl + cr, cl + cs, cr + cs, cm + cs]))


def decorrelate(left: np.ndarray, right: np.ndarray, mode: int) -> tuple[np.ndarray, np.ndarray]:
    """The two signals coded for a stereo pair under ``mode``."""
    side = left - right
    if mode == INDEPENDENT:
        return left, right
    if mode == LEFT_SIDE:
        return left, side
    if mode == RIGHT_SIDE:
        return right, side
    return (left + right) >> 1, side


def correlate(a: np.ndarray, b: np.ndarray, mode: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`decorrelate`: back to (left, right)."""
    if mode == INDEPENDENT:
        return a, b
    if mode == LEFT_SIDE:
        return a, a - b
    if mode == RIGHT_SIDE:
        return a + b, a
    right = a - (b >> 1)
    return b + right, right
