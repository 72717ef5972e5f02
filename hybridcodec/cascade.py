"""Sample-adaptive prediction cascade, the causal in-band part of each band's prior.

The parallel nets see the coarse band; what they cannot see is the band's own nearest
past and the statistics of this very file. A cascade of adaptive linear filters supplies
both: each stage predicts what the stages before it left (OptimFROG / Monkey's Audio /
Sac). It runs sample by sample, so it is compiled with numba and written in int64
arithmetic only: encoder and decoder run the same recurrence on the same integers, so
they agree on any CPU. Forward turns band values into residuals; inverse turns residuals
back.

Stage kinds (``[kind, order, mu]``, see :class:`Cascade`): ``NLMS`` and ``SIGN_LMS``
(model format 2's stages), ``OLS`` (block recursive least squares, the stage Sac and
MPEG-4 ALS's RLS mode put first) and ``MIX`` (a final sign-sign combination of the
stages' predictions instead of their plain sum).

Bounds that keep every product inside int64: history entries and errors are clamped to
``CLAMP`` (2**27), weights to 2**20 (Q15, i.e. |w| < 32), stage predictions to 2**28.

OLS: the regressors (own past and features, clamped to 2**27) and the target of a block
of ``OLS_BLOCK`` (32) samples are kept as int32; at the block's end their products are
summed (each below 2**54, a block's sum below 2**59), shifted by a block exponent so that
they stay below 2**60, and added to the covariance sums, which are first multiplied by
``lambda**32`` (Q16; the sums are kept at most 2**44 between blocks, so below 2**60) and
afterwards brought back to 2**40..2**44 (exponent >= -40). The solver scales every
regressor and the target by a power of two to an energy of 2**28..2**30 (entries clamped
to 2**30), adds a ridge of 2**-10 of each diagonal entry and factors ``A = L D L^T``:
|A|, |V| = |L D| and |z| (L z = b) are clamped to 2**30 (what the ridge and
Cauchy-Schwarz give anyway), |L| to 2**26 (Q20) and the weights to 2**27 (Q20), so every
product of the factorisation and the triangular solves is below 2**56 and every sum of at
most ``OLS_MAX_DIM`` (64) of them below 2**62; a division by D is a multiplication by a
30-bit reciprocal (products below 2**60); the prediction sums at most 64 products below
2**54. MIX: weights in Q14 clamped to 2**16, times predictions below 2**28.
"""

from __future__ import annotations

import numpy as np
from .jit import njit  # numba.njit, cached where a wheel install can write

# error_model="numpy": no zero-division checks in the kernels (every divisor here is at
# least 1 by construction: an NLMS norm >= 2**15, an OLS pivot >= its ridge), which
# makes the OLS cascade about 20 % faster; the results are the same integers.

NLMS = 0
SIGN_LMS = 1
OLS = 2
MIX = 3

W_BITS = 15  # fixed-point weights: 1.0 == 2**15
CLAMP = 1 << 27
W_CLAMP = 1 << 20
PRED_CLAMP = 1 << 28

OLS_BLOCK = 32  # the OLS weights are solved again every OLS_BLOCK samples
OLS_MAX_DIM = 64  # regressors of one OLS stage: own taps, then (stage 0) the features
OLS_ACC_TOP = 44  # covariance sums are kept below 2**44 between blocks ...
OLS_MIN_EXP = -40  # ... with products added at 2**-exponent, exponent >= -40
OLS_SOLVE_TOP = 30  # the solver scales every regressor to an energy of 2**28..2**30
OLS_RHO = 10  # ridge: each diagonal entry * 2**-OLS_RHO is added to it
OLS_F = 20  # L and the OLS weights in Q20
OLS_A_CLAMP = 1 << 30
OLS_L_CLAMP = 1 << 26
OLS_Z_CLAMP = 1 << 30
OLS_W_CLAMP = 1 << 27  # |w| < 128
MIX_BITS = 14  # MIX weights: 1.0 == 2**14
MIX_CLAMP = 1 << 16


@njit(cache=True, nogil=True, error_model="numpy")
def _clamp(v, lim):
    if v > lim:
        return lim
    if v < -lim:
        return -lim
    return v


@njit(cache=True, nogil=True, error_model="numpy")
def _bit_length(v):
    """Bits of v > 0 (int.bit_length); 0 for v <= 0. A binary search, not a loop per bit."""
    if v <= 0:
        return 0
    k = 1
    if v >= 1 << 32:
        v >>= 32
        k += 32
    if v >= 1 << 16:
        v >>= 16
        k += 16
    if v >= 1 << 8:
        v >>= 8
        k += 8
    if v >= 1 << 4:
        v >>= 4
        k += 4
    if v >= 1 << 2:
        v >>= 2
        k += 2
    if v >= 1 << 1:
        k += 1
    return k


FORWARD, INVERSE, CLOSED = 0, 1, 2


@njit(cache=True, nogil=True, error_model="numpy")
def _nlms_step(err, mu, total):
    """(c, shift): an NLMS update adds ``(c * x + 2**(shift-1)) >> shift`` to a weight of
    input x, i.e. about ``mu * 2**-8 * err * x / total`` in Q15, in integers only."""
    bits = _bit_length(total)
    norm = total >> (bits - 16) if bits > 16 else total << (16 - bits)
    return (err * mu << 12) // norm, bits - 11


@njit(cache=True, nogil=True, error_model="numpy")
def _ols_decay(k):
    """lambda**OLS_BLOCK in Q16 for lambda = 1 - 2**-k, in integers."""
    g = 1 << 30
    for _ in range(OLS_BLOCK):
        g -= g >> k
    return g >> 14


@njit(cache=True, nogil=True, error_model="numpy")
def _shift(v, s):
    """v * 2**s (floor for s < 0), clamped to +-2**30 (OLS_A_CLAMP)."""
    if s >= 0:
        s = min(s, 31)
        return _clamp(_clamp(v, OLS_A_CLAMP) << s, OLS_A_CLAMP)
    return _clamp(v >> min(-s, 63), OLS_A_CLAMP)


@njit(cache=True, nogil=True, error_model="numpy")
def _ols_rescale(R, m, s):
    """Multiply an OLS stage's sums (R[:m+1, :m+1], lower triangle) by 2**-s (floor;
    s < 0: exact)."""
    if s > 0:
        s = min(s, 63)
        for a in range(m + 1):
            for c in range(a + 1):
                R[a, c] >>= s
    elif s < 0:
        for a in range(m + 1):
            for c in range(a + 1):
                R[a, c] <<= -s


@njit(cache=True, nogil=True, error_model="numpy")
def _ols_top(R, m):
    """Bit length of the largest diagonal sum of an OLS stage (the target's included)."""
    top = 0
    for a in range(m + 1):
        top = max(top, R[a, a])
    return _bit_length(top)


@njit(cache=True, nogil=True, error_model="numpy")
def _ols_block(X, R, j, expo, m, decay, w, A, L, V, t, inv, ib, z):
    """End of an OLS block: forget (R *= lambda**OLS_BLOCK), add the block's products,
    keep the largest sum within 2**(OLS_ACC_TOP-4) .. 2**OLS_ACC_TOP (the exponent floor
    permitting: quiet passages keep their precision, loud ones their headroom), solve.

    X[:m] holds the block's regressors, X[m] its targets; R[:m, :m] (lower triangle) are
    their sums of products, R[m, :m] the products with the target, R[m, m] its energy.
    """
    orv = 0
    for a in range(m + 1):
        for k in range(OLS_BLOCK):
            orv |= abs(np.int64(X[a, k]))
    # A block's sum of products is below 2**(2 * bits + 5); shifted, it must stay < 2**60.
    need = 2 * _bit_length(orv) + 5 - expo[j] - 60
    if need > 0:
        _ols_rescale(R, m, need)
        expo[j] += need
    ex = expo[j]
    for a in range(m + 1):
        xa = X[a]
        c = 0
        while c + 4 <= a + 1:  # four dot products at a time (register reuse)
            x0, x1, x2, x3 = X[c], X[c + 1], X[c + 2], X[c + 3]
            s0 = s1 = s2 = s3 = 0
            for k in range(OLS_BLOCK):
                v = np.int64(xa[k])
                s0 += v * x0[k]
                s1 += v * x1[k]
                s2 += v * x2[k]
                s3 += v * x3[k]
            if ex >= 0:
                s0, s1, s2, s3 = s0 >> ex, s1 >> ex, s2 >> ex, s3 >> ex
            else:
                s0, s1, s2, s3 = s0 << -ex, s1 << -ex, s2 << -ex, s3 << -ex
            R[a, c] = ((R[a, c] * decay + (1 << 15)) >> 16) + s0
            R[a, c + 1] = ((R[a, c + 1] * decay + (1 << 15)) >> 16) + s1
            R[a, c + 2] = ((R[a, c + 2] * decay + (1 << 15)) >> 16) + s2
            R[a, c + 3] = ((R[a, c + 3] * decay + (1 << 15)) >> 16) + s3
            c += 4
        while c <= a:
            xc = X[c]
            s0 = 0
            for k in range(OLS_BLOCK):
                s0 += np.int64(xa[k]) * xc[k]
            s0 = s0 >> ex if ex >= 0 else s0 << -ex
            R[a, c] = ((R[a, c] * decay + (1 << 15)) >> 16) + s0
            c += 1
    bits = _ols_top(R, m)
    if bits > OLS_ACC_TOP:
        _ols_rescale(R, m, bits - OLS_ACC_TOP)
        expo[j] += bits - OLS_ACC_TOP
    elif bits < OLS_ACC_TOP - 4:
        s = min(expo[j] - OLS_MIN_EXP, OLS_ACC_TOP - bits)
        _ols_rescale(R, m, -s)
        expo[j] -= s
    _ols_solve(R, m, w, A, L, V, t, inv, ib, z)


@njit(cache=True, nogil=True, error_model="numpy")
def _ols_solve(R, m, w, A, L, V, t, inv, ib, z):
    """Weights ``w[:m]`` (Q20) of the ridge-regularised least-squares problem given by
    the sums R (see :func:`_ols_block`), by a fixed-point L D L^T factorisation.

    Every regressor and the target are first scaled by a power of two to unit energy
    (2**28..2**30), so the ridge is relative to each regressor's own energy and the
    factor is well scaled whatever the regressors' levels (bounds: module docstring).
    """
    ryy = R[m, m]
    if ryy <= 0:
        return  # a silent target: keep the weights
    ty = (OLS_SOLVE_TOP - _bit_length(ryy)) >> 1
    for a in range(m):
        t[a] = (OLS_SOLVE_TOP - _bit_length(R[a, a])) >> 1
    for a in range(m):
        for c in range(a + 1):
            A[a, c] = _shift(R[a, c], t[a] + t[c])
    for j in range(m):
        reg = (A[j, j] >> OLS_RHO) + 1
        s = 0
        for k in range(j):
            s += L[j, k] * V[j, k]
        d = A[j, j] + reg - (s >> OLS_F)
        if d < reg:
            d = reg
        bd = _bit_length(d)
        inv[j] = (1 << (bd + 29)) // d  # in (2**29, 2**30]: x / d ~ x * inv >> (bd + 29)
        ib[j] = bd + 29 - OLS_F  # ... and x * 2**20 / d ~ x * inv >> ib
        for i in range(j + 1, m):
            s = 0
            for k in range(j):
                s += L[i, k] * V[j, k]
            v = _clamp(A[i, j] - (s >> OLS_F), OLS_A_CLAMP)
            V[i, j] = v
            L[i, j] = _clamp((v * inv[j]) >> ib[j], OLS_L_CLAMP)
    for i in range(m):  # L z = b
        s = 0
        for k in range(i):
            s += L[i, k] * z[k]
        z[i] = _clamp(_shift(R[m, i], t[i] + ty) - (s >> OLS_F), OLS_Z_CLAMP)
    for i in range(m):  # y = D^-1 z, in Q20
        z[i] = _clamp((z[i] * inv[i]) >> ib[i], OLS_W_CLAMP)
    for i in range(m - 1, -1, -1):  # L^T w = y
        s = 0
        for k in range(i + 1, m):
            s += L[k, i] * z[k]
        z[i] = _clamp(z[i] - (s >> OLS_F), OLS_W_CLAMP)
    for i in range(m):  # back from unit energies to the regressors' and target's scale
        sh = t[i] - ty
        v = z[i] << min(sh, 31) if sh >= 0 else z[i] >> min(-sh, 63)
        w[i] = _clamp(v, OLS_W_CLAMP)


@njit(cache=True, nogil=True, error_model="numpy")
def _run(values, features, kinds, orders, mus, feature_mu, mode, shifts, halfwidths,
         anchor):
    n = values.shape[0]
    nf = features.shape[1]
    S = kinds.shape[0]
    mixing = kinds[S - 1] == MIX
    SC = S - 1 if mixing else S  # the cascade's stages (a MIX stage comes last)
    maxo = 1
    for j in range(SC):
        maxo = max(maxo, orders[j])
    # Each stage keeps its past inputs in a mirrored ring buffer (newest first at
    # ring[j, pos[j] : pos[j] + order]) and their energy as an exact running integer sum.
    ring = np.zeros((SC, 2 * maxo), np.int64)
    pos = np.zeros(SC, np.int64)
    energy = np.zeros(SC, np.int64)
    wf = np.zeros(nf, np.int64)  # stage 0's weights of the side features
    w = np.zeros((SC, maxo), np.int64)
    preds = np.zeros(SC, np.int64)
    inputs = np.zeros(SC, np.int64)
    feat = np.zeros(nf, np.int64)
    out = np.empty(n, np.int64)
    resid = np.empty(n, np.int64)
    # OLS stages: regressors = own past (order taps), then, for stage 0, the features.
    dims = np.zeros(SC, np.int64)
    mo = 1
    no = 1
    for j in range(SC):
        if kinds[j] == OLS:
            dims[j] = orders[j] + (nf if j == 0 else 0)
            mo = max(mo, dims[j])
            no = j + 1
    X = np.zeros((no, mo + 1, OLS_BLOCK), np.int32)  # this block's regressors, target
    R = np.zeros((no, mo + 1, mo + 1), np.int64)
    expo = np.zeros(no, np.int64)
    wo = np.zeros((no, mo), np.int64)
    decay = np.zeros(no, np.int64)
    for j in range(no):
        if kinds[j] == OLS:
            decay[j] = _ols_decay(mus[j])
    sA = np.zeros((mo, mo), np.int64)
    sL = np.zeros((mo, mo), np.int64)
    sV = np.zeros((mo, mo), np.int64)
    st = np.zeros(mo, np.int64)
    sinv = np.zeros(mo, np.int64)
    sib = np.zeros(mo, np.int64)
    sz = np.zeros(mo, np.int64)
    count = 0  # position in the OLS block
    amix = np.full(SC, 1 << MIX_BITS, np.int64)
    mix_mu = mus[S - 1] if mixing else 0
    for i in range(n):
        feat_energy = 0
        for f in range(nf):
            v = _clamp(features[i, f], CLAMP)
            feat[f] = v
            feat_energy += v * v
        for j in range(SC):
            p = pos[j]
            if kinds[j] == OLS:
                order = orders[j]
                acc = 0
                for k in range(order):
                    h = ring[j, p + k]
                    X[j, k, count] = h
                    acc += wo[j, k] * h
                for k in range(order, dims[j]):
                    h = feat[k - order]
                    X[j, k, count] = h
                    acc += wo[j, k] * h
                preds[j] = _clamp((acc + (1 << (OLS_F - 1))) >> OLS_F, PRED_CLAMP)
                continue
            acc = 0
            if j == 0:
                for f in range(nf):
                    acc += wf[f] * feat[f]
            for k in range(orders[j]):
                acc += w[j, k] * ring[j, p + k]
            preds[j] = _clamp((acc + (1 << (W_BITS - 1))) >> W_BITS, PRED_CLAMP)
        total = 0
        if mixing:
            acc = 0
            for j in range(SC):
                acc += amix[j] * preds[j]
            total = _clamp((acc + (1 << (MIX_BITS - 1))) >> MIX_BITS, PRED_CLAMP)
        else:
            for j in range(SC):
                total += preds[j]
        base = features[i, 0]
        if mode == CLOSED:
            # Quantize this residual to its anchor bin (see hybridcodec.precision) and
            # continue from the bin's centre, exactly as a decoder holding only the
            # anchor layer will: the loop never sees what that decoder cannot.
            r = values[i] - base - total
            resid[i] = r
            b = shifts[i]
            if b < 0:  # a silent block: the value is 0 whatever the prediction said
                r = -base - total
            else:
                m = halfwidths[i]
                t = (r >> b) + m + 1
                if 0 < t < 2 * m + 2:  # escapes are sent exactly with the anchor
                    half = (1 << anchor) >> 1
                    origin = m + 1 - half
                    centre = origin + (((t - origin) >> anchor) << anchor) + half
                    r = ((centre - m - 1) << b) + ((1 << b) >> 1)
            e = r + total
            out[i] = e + base
        elif mode == INVERSE:
            e = values[i]
            if shifts[i] < 0:  # a silent block (see CLOSED)
                e = -base - total
            e += total
            out[i] = e + base
        else:
            e = values[i] - base
            out[i] = e - total
        # Stage j predicts what the stages before it left of e.
        for j in range(SC):
            inputs[j] = e
            e -= preds[j]
        if mixing:
            err = inputs[0] - total
            if err != 0:
                step = mix_mu if err > 0 else -mix_mu
                for j in range(SC):
                    if preds[j] > 0:
                        amix[j] = _clamp(amix[j] + step, MIX_CLAMP)
                    elif preds[j] < 0:
                        amix[j] = _clamp(amix[j] - step, MIX_CLAMP)
        for j in range(SC):
            order = orders[j]
            p = pos[j]
            err = _clamp(inputs[j] - preds[j], CLAMP)
            if kinds[j] == OLS:
                m = dims[j]
                X[j, m, count] = _clamp(inputs[j], CLAMP)
                if count == OLS_BLOCK - 1:
                    _ols_block(X[j], R[j], j, expo, m, decay[j], wo[j], sA, sL, sV, st,
                               sinv, sib, sz)
            elif err != 0:
                if kinds[j] == NLMS:
                    shared = j == 0 and feature_mu == 0
                    norm = (1 << 11) + energy[j] + (feat_energy if shared else 0)
                    c, shift = _nlms_step(err, mus[j], norm)
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
        count += 1
        if count == OLS_BLOCK:
            count = 0
    return out, resid


OLS_MAX_ORDER = 24  # with at most 36 side features (1 + 3 + coarse_taps <= 32): dims <= 60
OLS_MIN_SHIFT, OLS_MAX_SHIFT = 4, 16  # forgetting factor 1 - 2**-k


def check_stages(stages, name: str = "cascade") -> None:
    """Raise ValueError unless ``stages`` ([kind, order, mu] integers) is a cascade the
    kernel runs within its bounds: NLMS / sign-LMS orders 0..256 and steps 0..1024 (an
    NLMS update multiplies err * mu * 2**12, and the energy sums 256 squares of values up
    to CLAMP: both stay inside int64); OLS orders 0..24 and forgetting shifts 4..16; at
    most one MIX stage, last, of order 0 and step 0..4096, after at least one other stage."""
    for s, stage in enumerate(stages):
        kind, order, mu = (int(v) for v in stage)
        if kind in (NLMS, SIGN_LMS):
            ok = 0 <= order <= 256 and 0 <= mu <= 1 << 10
        elif kind == OLS:
            ok = 0 <= order <= OLS_MAX_ORDER and OLS_MIN_SHIFT <= mu <= OLS_MAX_SHIFT
        elif kind == MIX:
            ok = order == 0 and 0 <= mu <= 1 << 12 and s == len(stages) - 1 and s > 0
        else:
            ok = False
        if not ok:
            raise ValueError(f"config {name}: stage {list(stage)} out of range")


class Cascade:
    """A fixed configuration of adaptive stages: ``[(kind, order, mu), ...]``.

    ``features`` (n, F) are side inputs of stage 0 for the current sample: column 0 is the
    parallel prior's mean, which is subtracted first and also fed in (weight starting at
    zero, so the filter learns how far to trust it in this file); further columns (the
    other channel's coefficients, the coarser band around this coefficient) are only fed
    in. Stage j > 0 predicts the residual that stages 0..j-1 left, from its own past.

    * ``NLMS``, ``order`` taps: ``mu`` is the step in units of 2**-8.
    * ``SIGN_LMS``: sign-sign LMS, ``mu`` the step in units of 2**-15.
    * ``OLS``: least squares over ``order`` taps of its own past (and, as stage 0, the
      features), exponentially forgotten with lambda = 1 - 2**-mu (mu = 8: 0.996), ridge
      2**-10 of each input's energy; the weights are solved again every 32 samples from
      the samples before (they start at zero). Orders 0..24, mu 4..16. Where NLMS
      adapts the feature weights with its normalised steps, OLS solves them jointly with
      the nearest taps: -0.9 % coded size on CD music with 4 taps
      (benchmarks/cascade_study.py).
    * ``MIX`` (order 0, last, at most one): the prediction is ``sum a_j p_j`` of the
      stages' predictions instead of their sum, with ``a_j`` (Q14, starting at 1.0)
      adapted by sign-sign steps of ``mu`` * 2**-14; the stages still see the plain
      cascade's residuals.

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
        check_stages(stages)
        self.feature_mu = int(feature_mu)
        self.stages = [tuple(int(v) for v in s) for s in stages]
        self._kinds = np.array([s[0] for s in self.stages], np.int64)
        self._orders = np.array([s[1] for s in self.stages], np.int64)
        self._mus = np.array([s[2] for s in self.stages], np.int64)

    def _call(self, values, features, mode, shifts=None, halfwidths=None, anchor=1):
        n = values.shape[0]
        features = _as_matrix(features)
        if self.stages[0][0] == OLS and self.stages[0][1] + features.shape[1] > OLS_MAX_DIM:
            raise ValueError(f"an OLS stage takes at most {OLS_MAX_DIM} inputs")
        none = np.zeros(n, np.int64)
        try:
            return _run(np.ascontiguousarray(values, np.int64), features,
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
