"""Joining the frames of a lossy decode without a step.

Frames are coded independently, and the wavelet's synthesis extends each frame at its
edges. Where a tier leaves bands out, a frame's approximation is worst at its edges (the
extension holds the coarse band's last values), and it meets the next frame's, which may
be exact there: a step of up to the signal's own size, heard as a click (broadband energy
in the 2 ms around the boundary, +10 to +26 dB over the surrounding 20 ms on solo
instruments at 64 kbit/s). The decoder crossfades the two sides over about 1.5 ms,
each continued across the boundary by linear prediction: a side decoded exactly is kept
as it is and the crossfade lies on the other side; between two approximations it is
centred on the boundary. Where the right side's first samples continue the left side as
its own predictor expects (two well-coded sides), nothing is changed. Nothing here is part of the format (see docs/format.md,
"Lower tiers"); lossless decodes never come here.
"""

from __future__ import annotations

import numpy as np

JOIN_SECONDS = 0.0015  # crossfade length per side
MIN_JOIN = 16  # samples: below this (very low rates, tiny frames) nothing is joined
LPC_ORDER = 32
CONTEXT = 1024  # samples of each side the predictor is fitted on
STEP_PROBE = 8  # samples after the boundary checked for a step ...
STEP_SIGMAS = 4.0  # ... against this many times the prediction error inside the left side


def join_length(sample_rate: int, hop: int) -> int:
    """Crossfade samples per side at ``sample_rate`` (at most ``hop``: the fill has not
    analysed the last hop of a frame when the next one arrives)."""
    return min(max(int(round(JOIN_SECONDS * sample_rate)), MIN_JOIN), hop)


def _lpc(x: np.ndarray, order: int) -> np.ndarray | None:
    """Prediction coefficients a[1..order] (x[n] ~ -sum a[k] x[n-k]) by the
    autocorrelation method (Hann window, Levinson-Durbin): always a stable filter."""
    if x.size <= 2 * order:
        return None
    w = x * np.hanning(x.size)
    r = np.correlate(w, w, "full")[x.size - 1: x.size + order]
    if r[0] <= 0:
        return None
    r = r * np.exp(-0.5 * (0.01 * np.arange(order + 1)) ** 2)  # lag window
    r[0] *= 1 + 1e-9
    a = np.zeros(order + 1)
    a[0] = 1.0
    err = r[0]
    for i in range(1, order + 1):
        k = -(r[i] + a[1:i] @ r[i - 1:0:-1]) / err
        a[1:i] = a[1:i] + k * a[i - 1:0:-1]
        a[i] = k
        err *= 1 - k * k
        if err <= 0:
            return None
    return a[1:]


def _continue(x: np.ndarray, count: int) -> np.ndarray:
    """``count`` samples predicted after the end of ``x`` (its last value held where no
    predictor can be fitted: too short or silent)."""
    a = _lpc(x[-CONTEXT:], LPC_ORDER)
    if a is None:
        return np.full(count, x[-1] if x.size else 0.0)
    hist = list(x[-LPC_ORDER:][::-1])  # newest first
    out = np.empty(count)
    for n in range(count):
        v = -float(np.dot(a, hist[:LPC_ORDER]))
        out[n] = v
        hist.insert(0, v)
    return out


def has_step(left: np.ndarray, right: np.ndarray) -> bool:
    """Whether the first samples of ``right`` break from ``left`` (1-D): the left side's
    one-step prediction errors across the boundary exceed STEP_SIGMAS times their level
    inside the left side. Two well-coded sides meet without one, and are left alone."""
    a = _lpc(left[-CONTEXT:], LPC_ORDER)
    if a is None:
        return bool(np.abs(right[:STEP_PROBE] - (left[-1] if left.size else 0.0)).max(
            initial=0.0) > 1.0)
    x = np.concatenate([left[-CONTEXT:], right[:STEP_PROBE]])
    # e[n] = x[n] + sum_k a[k] x[n-k], for every n with a full history
    e = x[LPC_ORDER:] + sum(a[k - 1] * x[LPC_ORDER - k: x.size - k]
                            for k in range(1, LPC_ORDER + 1))
    inside, across = e[:-STEP_PROBE], e[-STEP_PROBE:]
    level = float(np.sqrt(np.mean(inside[-512:] ** 2))) if inside.size else 0.0
    return float(np.abs(across).max()) > STEP_SIGMAS * level + 1.0


def join(left: np.ndarray, right: np.ndarray, k: int, left_exact: bool,
         right_exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """The last ``k`` samples of ``left`` and the first ``k`` of ``right`` (both (n,
    channels) floats, ``left`` ending where ``right`` starts), joined without a step."""
    k = min(k, left.shape[0] // 2, right.shape[0] // 2)
    tail, head = left[-k:].copy(), right[:k].copy()
    if k < MIN_JOIN or (left_exact and right_exact):
        return tail, head
    # raised cosine from 0 to 1 over the crossfade, 0.5 where it is centred
    ramp = lambda m: 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)  # noqa: E731
    for c in range(left.shape[1]):
        if not has_step(left[:, c], right[:, c]):
            continue
        # the left side continued into the right's, the right's back into the left's
        forward = None if right_exact else _continue(left[:, c], k)
        backward = None if left_exact else _continue(right[::-1, c], k)[::-1]
        if right_exact:  # all on the left side: from its own samples to the right's
            w = ramp(k)
            tail[:, c] = (1 - w) * tail[:, c] + w * backward
        elif left_exact:
            w = ramp(k)
            head[:, c] = (1 - w) * forward + w * head[:, c]
        else:
            w = ramp(2 * k)
            tail[:, c] = (1 - w[:k]) * tail[:, c] + w[:k] * backward
            head[:, c] = (1 - w[k:]) * forward + w[k:] * head[:, c]
    return tail, head
