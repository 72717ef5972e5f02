"""Research prototype of cascade variants (not on the coding path; float OLS allowed).

``install(**options)`` replaces hybridcodec.cascade._run by a kernel built with those
options, so every Cascade (and so analyse_frame) runs the variant. Stage kinds:
0 NLMS, 1 sign-sign LMS (as cascade.py), 2 OLS in float64 (prototype: how much could a
least-squares stage gain at all), mu = k -> lambda = 1 - 2**-k.
"""

from __future__ import annotations

import numpy as np
from numba import njit

import hybridcodec.cascade as cm

_ORIG = cm._run


def restore():
    cm._run = _ORIG


def install(**kw):
    cm._run = make_run(**kw)


def make_run(ols_K=1, ols_delta=1e-4, ols_weight=0.0, ols_feats=1, ols_nf=99, ols_dup=0,
             mix=0, mix_mu=0,
             bias=0, bias_rate=5, init_boost=0, boost_len=0):
    W_BITS, CLAMP, W_CLAMP, PRED_CLAMP = cm.W_BITS, cm.CLAMP, cm.W_CLAMP, cm.PRED_CLAMP
    _clamp, _nlms_step = cm._clamp, cm._nlms_step
    CLOSED, INVERSE = cm.CLOSED, cm.INVERSE
    MIXQ = 14
    BQ = 8

    @njit(nogil=True)
    def _solve(R, bvec, w, M, delta):
        # Cholesky of R + delta*mean(diag) I, then w = solution (float prototype)
        tr = 0.0
        for i in range(M):
            tr += R[i, i]
        reg = delta * tr / M + 1.0
        Lm = np.zeros((M, M))
        for j in range(M):
            s = R[j, j] + reg
            for k in range(j):
                s -= Lm[j, k] * Lm[j, k]
            if s <= 0:
                return
            d = np.sqrt(s)
            Lm[j, j] = d
            for i in range(j + 1, M):
                t = R[i, j]
                for k in range(j):
                    t -= Lm[i, k] * Lm[j, k]
                Lm[i, j] = t / d
        z = np.zeros(M)
        for i in range(M):
            t = bvec[i]
            for k in range(i):
                t -= Lm[i, k] * z[k]
            z[i] = t / Lm[i, i]
        for i in range(M - 1, -1, -1):
            t = z[i]
            for k in range(i + 1, M):
                t -= Lm[k, i] * w[k]
            w[i] = t / Lm[i, i]

    @njit(nogil=True)
    def _run(values, features, kinds, orders, mus, feature_mu, mode, shifts, halfwidths,
             anchor):
        n = values.shape[0]
        nf = features.shape[1]
        S = kinds.shape[0]
        maxo = 1
        for j in range(S):
            maxo = max(maxo, orders[j])
        ring = np.zeros((S, 2 * maxo), np.int64)
        pos = np.zeros(S, np.int64)
        energy = np.zeros(S, np.int64)
        wf = np.zeros(nf, np.int64)
        w = np.zeros((S, maxo), np.int64)
        preds = np.zeros(S, np.int64)
        inputs = np.zeros(S, np.int64)
        feat = np.zeros(nf, np.int64)
        out = np.empty(n, np.int64)
        resid = np.empty(n, np.int64)
        # OLS (one stage at most)
        oj = -1
        for j in range(S):
            if kinds[j] == 2:
                oj = j
        M = 0
        fo = 0
        if oj >= 0 and ols_feats and (oj == 0 or ols_dup):
            fo = min(ols_nf, nf)
        if oj >= 0:
            M = orders[oj] + fo
        # the NLMS / sign stage that adapts weights for feature columns [f0, nf)
        fs = 0
        if oj == 0:
            fs = 1
        f0 = 0 if ols_dup else fo
        M1 = max(M, 1)
        R = np.zeros((M1, M1))
        bv = np.zeros(M1)
        wo = np.zeros(M1)
        xo = np.zeros(M1)
        lam = 1.0 - 2.0 ** (-mus[oj]) if oj >= 0 else 1.0
        esum = 0.0
        cnt = 0
        # mixing
        amix = np.full(S, 1 << MIXQ, np.int64)
        # bias
        btab = np.zeros(64, np.int64)
        r1 = 0
        r2 = 0
        for i in range(n):
            feat_energy = 0
            for f in range(nf):
                v = _clamp(features[i, f], CLAMP)
                feat[f] = v
                feat_energy += v * v
            for j in range(S):
                p = pos[j]
                if kinds[j] == 2:
                    acc = 0.0
                    for k in range(orders[j]):
                        xo[k] = ring[j, p + k]
                    for f in range(fo):
                        xo[orders[j] + f] = feat[f]
                    for k in range(M):
                        acc += wo[k] * xo[k]
                    preds[j] = _clamp(np.int64(np.floor(acc + 0.5)), PRED_CLAMP)
                    continue
                acc = 0
                if j == fs:
                    for f in range(f0, nf):
                        acc += wf[f] * feat[f]
                for k in range(orders[j]):
                    acc += w[j, k] * ring[j, p + k]
                preds[j] = _clamp((acc + (1 << (W_BITS - 1))) >> W_BITS, PRED_CLAMP)
            base = features[i, 0]
            total = 0
            if mix:
                acc = 0
                for j in range(S):
                    acc += amix[j] * preds[j]
                total = (acc + (1 << (MIXQ - 1))) >> MIXQ
            else:
                for j in range(S):
                    total += preds[j]
            ctx = 0
            corr = 0
            if bias:
                s1 = 0 if r1 == 0 else (1 if r1 > 0 else 2)
                s2 = 0 if r2 == 0 else (1 if r2 > 0 else 2)
                sp = 0 if total == 0 else (1 if total > 0 else 2)
                ctx = s1 * 9 + s2 * 3 + sp
                corr = (btab[ctx] + (1 << (BQ - 1))) >> BQ
            total_c = total + corr
            if mode == CLOSED:
                r = values[i] - base - total_c
                resid[i] = r
                b = shifts[i]
                if b < 0:
                    r = -base - total_c
                else:
                    m = halfwidths[i]
                    t = (r >> b) + m + 1
                    if 0 < t < 2 * m + 2:
                        half = (1 << anchor) >> 1
                        origin = m + 1 - half
                        centre = origin + (((t - origin) >> anchor) << anchor) + half
                        r = ((centre - m - 1) << b) + ((1 << b) >> 1)
                e = r + total_c
                out[i] = e + base
                rfin = r
            elif mode == INVERSE:
                r = values[i]
                if shifts[i] < 0:
                    r = -base - total_c
                e = r + total_c
                out[i] = e + base
                rfin = r
            else:
                e = values[i] - base
                r = e - total_c
                out[i] = r
                rfin = r
            # stage inputs (cascade)
            ee = e
            for j in range(S):
                inputs[j] = ee
                ee -= preds[j]
            if mix:
                er = e - total
                if er != 0:
                    for j in range(S):
                        if preds[j] > 0:
                            amix[j] += mix_mu if er > 0 else -mix_mu
                        elif preds[j] < 0:
                            amix[j] -= mix_mu if er > 0 else -mix_mu
            if bias:
                target = (e - total) << BQ
                btab[ctx] += (target - btab[ctx] + (1 << (bias_rate - 1))) >> bias_rate
                r2 = r1
                r1 = rfin
            for j in range(S):
                order = orders[j]
                p = pos[j]
                err = _clamp(inputs[j] - preds[j], CLAMP)
                if kinds[j] == 2:
                    y = float(inputs[j])
                    c = 1.0
                    if ols_weight > 0:
                        c = (esum + 2.0) ** (-ols_weight)
                        esum = 0.95 * esum + 0.05 * abs(float(err))
                    for a in range(M):
                        xa = xo[a] * c
                        for bb in range(a + 1):
                            R[a, bb] = lam * R[a, bb] + xa * xo[bb]
                        bv[a] = lam * bv[a] + xa * y
                    cnt += 1
                    if cnt >= ols_K:
                        cnt = 0
                        for a in range(M):
                            for bb in range(a):
                                R[bb, a] = R[a, bb]
                        _solve(R, bv, wo, M, ols_delta)
                elif err != 0:
                    mu_j = mus[j]
                    if init_boost and i < boost_len:
                        mu_j = mu_j * init_boost
                    if kinds[j] == 0:
                        shared = j == 0 and feature_mu == 0
                        tot = (1 << 11) + energy[j] + (feat_energy if shared else 0)
                        c2, shift = _nlms_step(err, mu_j, tot)
                        half = 1 << (shift - 1)
                        if j == fs:
                            fc, fshift, fhalf = c2, shift, half
                            if not shared:
                                fe = 0
                                for f in range(f0, nf):
                                    fe += feat[f] * feat[f]
                                fc, fshift = _nlms_step(err, feature_mu, (1 << 11) + fe)
                                fhalf = 1 << (fshift - 1)
                            for f in range(f0, nf):
                                wf[f] = _clamp(wf[f] + ((fc * feat[f] + fhalf) >> fshift),
                                               W_CLAMP)
                        for k in range(order):
                            w[j, k] = _clamp(w[j, k] + ((c2 * ring[j, p + k] + half) >> shift),
                                             W_CLAMP)
                    else:
                        step = mu_j if err > 0 else -mu_j
                        if j == fs:
                            for f in range(f0, nf):
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

    return _run
