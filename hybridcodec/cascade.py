"""Sample-adaptive prediction cascade, the causal in-band part of each band's prior.

The parallel nets see the coarse band; what they cannot see is the band's own nearest
past and the statistics of this very file. A cascade of adaptive linear filters (NLMS,
then a sign-sign LMS stage, as OptimFROG / Monkey's Audio do) supplies both. It runs
sample by sample, so it is compiled with numba and written in int64 arithmetic only:
encoder and decoder run the same recurrence on the same integers, so they agree on any
CPU. Forward turns band values into residuals; inverse turns residuals back.

Bounds that keep every product inside int64: history entries and errors are clamped to
``CLAMP`` (2**27), weights to 2**20 (Q15, i.e. |w| < 32), stage predictions to 2**28.
"""

from __future__ import annotations

import numpy as np
from .jit import njit  # numba.njit, cached where a wheel install can write

NLMS = 0
SIGN_LMS = 1

W_BITS = 15  # fixed-point weights: 1.0 == 2**15
CLAMP = 1 << 27
W_CLAMP = 1 << 20
PRED_CLAMP = 1 << 28


@njit(cache=True, nogil=True)
def _clamp(v, lim):
    if v > lim:
        return lim
    if v < -lim:
        return -lim
    return v


@njit(cache=True, nogil=True)
def _bit_length(v):
    k = 0
    while v > 0:
        v >>= 1
        k += 1
    return k


FORWARD, INVERSE, CLOSED = 0, 1, 2


@njit(cache=True, nogil=True)
def _nlms_step(err, mu, total):
    """(c, shift): an NLMS update adds ``(c * x + 2**(shift-1)) >> shift`` to a weight of
    input x, i.e. about ``mu * 2**-8 * err * x / total`` in Q15, in integers only."""
    bits = _bit_length(total)
    norm = total >> (bits - 16) if bits > 16 else total << (16 - bits)
    return (err * mu << 12) // norm, bits - 11


@njit(cache=True, nogil=True)
def _run(values, features, kinds, orders, mus, feature_mu, mode, shifts, halfwidths,
         anchor):
    n = values.shape[0]
    nf = features.shape[1]
    S = kinds.shape[0]
    maxo = 1
    for j in range(S):
        maxo = max(maxo, orders[j])
    # Each stage keeps its past inputs in a mirrored ring buffer (newest first at
    # ring[j, pos[j] : pos[j] + order]) and their energy as an exact running integer sum.
    ring = np.zeros((S, 2 * maxo), np.int64)
    pos = np.zeros(S, np.int64)
    energy = np.zeros(S, np.int64)
    wf = np.zeros(nf, np.int64)  # stage 0's weights of the side features
    w = np.zeros((S, maxo), np.int64)
    preds = np.zeros(S, np.int64)
    inputs = np.zeros(S, np.int64)
    feat = np.zeros(nf, np.int64)
    out = np.empty(n, np.int64)
    resid = np.empty(n, np.int64)
    for i in range(n):
        feat_energy = 0
        for f in range(nf):
            v = _clamp(features[i, f], CLAMP)
            feat[f] = v
            feat_energy += v * v
        for j in range(S):
            acc = 0
            if j == 0:
                for f in range(nf):
                    acc += wf[f] * feat[f]
            p = pos[j]
            for k in range(orders[j]):
                acc += w[j, k] * ring[j, p + k]
            preds[j] = _clamp((acc + (1 << (W_BITS - 1))) >> W_BITS, PRED_CLAMP)
        base = features[i, 0]
        if mode == CLOSED:
            # Quantize this residual to its anchor bin (see hybridcodec.precision) and
            # continue from the bin's centre, exactly as a decoder holding only the
            # anchor layer will: the loop never sees what that decoder cannot.
            r = values[i] - base
            for j in range(S):
                r -= preds[j]
            resid[i] = r
            b = shifts[i]
            if b < 0:  # a silent block: the value is 0 whatever the prediction said
                r = -base
                for j in range(S):
                    r -= preds[j]
            else:
                m = halfwidths[i]
                t = (r >> b) + m + 1
                if 0 < t < 2 * m + 2:  # escapes are sent exactly with the anchor
                    half = (1 << anchor) >> 1
                    origin = m + 1 - half
                    centre = origin + (((t - origin) >> anchor) << anchor) + half
                    r = ((centre - m - 1) << b) + ((1 << b) >> 1)
            e = r
            for j in range(S - 1, -1, -1):
                e += preds[j]
                inputs[j] = e
            out[i] = e + base
        elif mode == INVERSE:
            e = values[i]
            if shifts[i] < 0:  # a silent block (see CLOSED)
                e = -base
                for j in range(S):
                    e -= preds[j]
            for j in range(S - 1, -1, -1):
                e += preds[j]
                inputs[j] = e
            out[i] = e + base
        else:
            e = values[i] - base
            for j in range(S):
                inputs[j] = e
                e -= preds[j]
            out[i] = e
        for j in range(S):
            order = orders[j]
            p = pos[j]
            err = _clamp(inputs[j] - preds[j], CLAMP)
            if err != 0:
                if kinds[j] == NLMS:
                    shared = j == 0 and feature_mu == 0
                    total = (1 << 11) + energy[j] + (feat_energy if shared else 0)
                    c, shift = _nlms_step(err, mus[j], total)
                    half = 1 << (shift - 1)
                    if j == 0:
                        fc, fshift, fhalf = c, shift, half
                        if not shared:
                            fc, fshift = _nlms_step(err, feature_mu, (1 << 11) + feat_energy)
                            fhalf = 1 << (fshift - 1)
                        for f in range(nf):
                            wf[f] = _clamp(wf[f] + ((fc * feat[f] + fhalf) >> fshift), W_CLAMP)
                    for k in range(order):
                        w[j, k] = _clamp(w[j, k] + ((c * ring[j, p + k] + half) >> shift),
                                         W_CLAMP)
                else:
                    step = mus[j] if err > 0 else -mus[j]
                    if j == 0:
                        for f in range(nf):
                            if feat[f] > 0:
                                wf[f] = _clamp(wf[f] + step, W_CLAMP)
                            elif feat[f] < 0:
                                wf[f] = _clamp(wf[f] - step, W_CLAMP)
                    for k in range(order):
                        h = ring[j, p + k]
                        if h > 0:
                            w[j, k] = _clamp(w[j, k] + step, W_CLAMP)
                        elif h < 0:
                            w[j, k] = _clamp(w[j, k] - step, W_CLAMP)
            if order >= 1:
                v = _clamp(inputs[j], CLAMP)
                oldest = ring[j, p + order - 1]
                energy[j] += v * v - oldest * oldest
                p = p - 1 if p > 0 else order - 1
                ring[j, p] = v
                ring[j, p + order] = v
                pos[j] = p
    return out, resid


class Cascade:
    """A fixed configuration of adaptive stages: ``[(kind, order, mu), ...]``.

    ``mu`` is an integer: the NLMS step in units of 2**-8, or the sign-LMS step in units
    of 2**-15. ``features`` (n, F) are side inputs of stage 0 for the current sample:
    column 0 is the parallel prior's mean, which is subtracted first and also fed in
    (weight starting at zero, so the filter learns how far to trust it in this file);
    further columns (the other channel's coefficients, the coarser band around this
    coefficient) are only fed in.

    ``feature_mu`` > 0 gives an NLMS stage 0's feature weights their own step and their own
    normalisation (by the features' energy alone). The coarse-band features are far louder
    than the band's own past; under one shared normalisation they would starve the
    in-band taps of adaptation. ``feature_mu`` = 0 is the shared normalisation of model
    format version 1.
    """

    def __init__(self, stages: list[tuple[int, int, int]], feature_mu: int = 0) -> None:
        if not stages:
            raise ValueError("a cascade needs at least one stage")
        if feature_mu < 0:
            raise ValueError("feature_mu must be >= 0")
        self.feature_mu = int(feature_mu)
        self.stages = [tuple(int(v) for v in s) for s in stages]
        self._kinds = np.array([s[0] for s in self.stages], np.int64)
        self._orders = np.array([s[1] for s in self.stages], np.int64)
        self._mus = np.array([s[2] for s in self.stages], np.int64)

    def _call(self, values, features, mode, shifts=None, halfwidths=None, anchor=1):
        n = values.shape[0]
        none = np.zeros(n, np.int64)
        try:
            return _run(np.ascontiguousarray(values, np.int64), _as_matrix(features),
                        self._kinds, self._orders, self._mus, self.feature_mu, mode,
                        none if shifts is None else np.ascontiguousarray(shifts, np.int64),
                        none if halfwidths is None else np.ascontiguousarray(halfwidths, np.int64),
                        anchor)
        except SystemError as exc:
            # A signal handler that raised while the compiled kernel ran surfaces as
            # numba's "returned a result with an exception set": re-raise the original.
            if isinstance(exc.__cause__, BaseException) and \
                    not isinstance(exc.__cause__, SystemError):
                raise exc.__cause__ from None
            raise

    def residuals(self, values: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Open loop: the prediction residuals of ``values`` (int64) given the features."""
        return self._call(values, features, FORWARD)[0]

    def reconstruct(self, residuals: np.ndarray, features: np.ndarray,
                    silent: np.ndarray | None = None) -> np.ndarray:
        """Decoder side: the values whose residuals are ``residuals``; where ``silent``
        is true the value is 0 (the filters still run, as in :meth:`closed_loop`)."""
        shifts = None if silent is None else np.where(silent, -1, 0)
        return self._call(residuals, features, INVERSE, shifts)[0]

    def closed_loop(self, values: np.ndarray, features: np.ndarray, shifts: np.ndarray,
                    halfwidths: np.ndarray, anchor: int) -> tuple[np.ndarray, np.ndarray]:
        """Encoder side of layered coding: (residuals, anchor reconstruction).

        The filters run on the anchor reconstruction (residual quantized to its bin of
        2**anchor table symbols); samples with shift -1 are silent (value 0, nothing
        coded). Feeding the bins' centre residuals to :meth:`reconstruct` (with the same
        silent samples) reproduces the anchor exactly.
        """
        anchor_values, residuals = self._call(values, features, CLOSED, shifts, halfwidths,
                                              anchor)
        return residuals, anchor_values


def _as_matrix(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, np.int64)
    return np.ascontiguousarray(f[:, None] if f.ndim == 1 else f)
