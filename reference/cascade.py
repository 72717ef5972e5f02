"""The cascade ("The cascade" in docs/format.md), decoder side (INVERSE).

The document's arithmetic is exact integers. Per sample this implementation keeps every
stage's history and weights in one int64 vector each, laid out as
``[h_0, f, h_1, h_2, ...]`` (stage 0's history, the clamped feature row, the other
stages' histories), so that all predictions are one multiply and one segmented sum and
each stage's update one vector operation. int64 is exact here because the document says
so ("Arithmetic": no stream's decode leaves int64; the model file's cascade bounds keep
every product inside it). The OLS block sums are an int64 matrix product (below
2^(2 bl(o) + 5) <= 2^61 by the rescaling before it), the rest of the OLS block and solve
is done in Python integers.
"""

from __future__ import annotations

from operator import mul

import numpy as np

W_BITS = 15
CLAMP = 1 << 27
W_CLAMP = 1 << 20
PRED_CLAMP = 1 << 28
ENERGY_FLOOR = 1 << 11
NLMS_NORM_BITS = 16
NLMS_GAIN_SHIFT = 12
NLMS_SHIFT_OFFSET = 11
NLMS, SIGN_LMS, OLS, MIX = 0, 1, 2, 3
OLS_BLOCK = 32
OLS_ACC_TOP = 44
OLS_MIN_EXP = -40
OLS_SOLVE_TOP = 30
OLS_RHO = 10
OLS_F = 20
OLS_A_CLAMP = 1 << 30
OLS_L_CLAMP = 1 << 26
OLS_Z_CLAMP = 1 << 30
OLS_W_CLAMP = 1 << 27
MIX_BITS = 14
MIX_CLAMP = 1 << 16


def clamp(v: int, lim: int) -> int:
    return lim if v > lim else (-lim if v < -lim else v)


def bl(v: int) -> int:
    """Bit length of v > 0; 0 for v <= 0."""
    return v.bit_length() if v > 0 else 0


def nlms_step(err: int, mu: int, total: int):
    bits = total.bit_length()
    if bits > NLMS_NORM_BITS:
        norm = total >> (bits - NLMS_NORM_BITS)
    else:
        norm = total << (NLMS_NORM_BITS - bits)
    return ((err * mu) << NLMS_GAIN_SHIFT) // norm, bits - NLMS_SHIFT_OFFSET


def decay(k: int) -> int:
    """lambda^32 in Q16, lambda = 1 - 2^-k."""
    g = 1 << 30
    for _ in range(OLS_BLOCK):
        g -= g >> k
    return g >> 14


def _sh(v: int, s: int) -> int:
    if s >= 0:
        return clamp(clamp(v, OLS_A_CLAMP) << min(s, 31), OLS_A_CLAMP)
    return clamp(v >> min(-s, 63), OLS_A_CLAMP)


def _pow2(v: int, s: int) -> int:
    """v * 2^s: 2^-s is >> min(-s, 63), 2^s is << min(s, 31)."""
    return v << min(s, 31) if s >= 0 else v >> min(-s, 63)


class OlsState:
    """One OLS stage: D regressors, the (D+1) x (D+1) lower-triangular sums R (row and
    column D: the target), the exponent x, the block buffer X and the weights wo."""

    def __init__(self, D: int, k: int):
        self.D = D
        self.decay = decay(k)
        self.R = [[0] * (D + 1) for _ in range(D + 1)]
        self.x = 0
        self.X = np.zeros((D + 1, OLS_BLOCK), np.int64)

    def rescale(self, s: int) -> None:
        R = self.R
        for a in range(self.D + 1):
            row = R[a]
            for c in range(a + 1):
                row[c] = row[c] >> min(s, 63) if s > 0 else row[c] << -s

    def block(self):
        """ols_block: returns the new weights wo (a list) or None (unchanged)."""
        D, R, X = self.D, self.R, self.X
        o = int(np.bitwise_or.reduce(np.abs(X), axis=None))
        need = 2 * bl(o) + 5 - self.x - 60
        if need > 0:
            self.rescale(need)
            self.x += need
        # the products of 32 values of at most 2^bl(o) each: below 2^(2 bl(o) + 5) <= 2^61
        S = (X @ X.T).tolist()
        x, g = self.x, self.decay
        for a in range(D + 1):
            row, srow = R[a], S[a]
            for c in range(a + 1):
                s = srow[c] >> x if x >= 0 else srow[c] << -x
                row[c] = ((row[c] * g + (1 << 15)) >> 16) + s
        b = bl(max(R[a][a] for a in range(D + 1)))
        if b > OLS_ACC_TOP:
            self.rescale(b - OLS_ACC_TOP)
            self.x += b - OLS_ACC_TOP
        elif b < OLS_ACC_TOP - 4:
            s = min(self.x - OLS_MIN_EXP, OLS_ACC_TOP - b)
            self.rescale(-s)
            self.x -= s
        return self.solve()

    def solve(self):
        D, R = self.D, self.R
        if R[D][D] <= 0:
            return None
        ty = (OLS_SOLVE_TOP - bl(R[D][D])) >> 1
        t = [(OLS_SOLVE_TOP - bl(R[a][a])) >> 1 for a in range(D)]
        A = [[_sh(R[a][c], t[a] + t[c]) for c in range(a + 1)] for a in range(D)]
        Lm = [[0] * D for _ in range(D)]
        V = [[0] * D for _ in range(D)]
        inv, ib = [0] * D, [0] * D
        for j in range(D):
            Lj, Vj = Lm[j], V[j]
            reg = (A[j][j] >> OLS_RHO) + 1
            d = A[j][j] + reg - (sum(map(mul, Lj[:j], Vj[:j])) >> OLS_F)
            d = max(d, reg)
            inv[j] = (1 << (bl(d) + 29)) // d
            ib[j] = bl(d) + 9
            for i in range(j + 1, D):
                v = clamp(A[i][j] - (sum(map(mul, Lm[i][:j], Vj[:j])) >> OLS_F), OLS_A_CLAMP)
                V[i][j] = v
                Lm[i][j] = clamp((v * inv[j]) >> ib[j], OLS_L_CLAMP)
        z = [0] * D
        for i in range(D):
            z[i] = clamp(_sh(R[D][i], t[i] + ty) - (sum(map(mul, Lm[i][:i], z[:i])) >> OLS_F),
                         OLS_Z_CLAMP)
        for i in range(D):
            z[i] = clamp((z[i] * inv[i]) >> ib[i], OLS_W_CLAMP)
        for i in range(D - 1, -1, -1):
            z[i] = clamp(z[i] - (sum(Lm[k][i] * z[k] for k in range(i + 1, D)) >> OLS_F),
                         OLS_W_CLAMP)
        return [clamp(_pow2(z[i], t[i] - ty), OLS_W_CLAMP) for i in range(D)]


def inverse(stages, feature_mu: int, r, F, silent) -> np.ndarray:
    """INVERSE over one band: r the anchor residuals, F the feature rows (n x nf, column
    0 the prior mean), silent[i] = class 0. Returns the anchor values (the cascade's
    outputs). The loop follows the document's pseudocode line by line."""
    stages = [tuple(int(v) for v in st) for st in stages]
    F = np.asarray(F, np.int64)
    n, nf = F.shape
    mix = len(stages) >= 2 and stages[-1][0] == MIX
    mu_mix = stages[-1][2] if mix else 0
    run = stages[:-1] if mix else stages  # the stages j = 0 .. S' - 1
    S = len(run)
    phi = feature_mu
    kinds = [st[0] for st in run]
    orders = [st[1] for st in run]
    mus = [st[2] for st in run]
    # layout of Z (regressors: histories newest first, the clamped feature row) and W
    # (their weights: w_j, wf; an OLS stage's wo): [h_0, f, h_1, h_2, ...]
    start, length = [0] * S, [0] * S
    pos = 0
    for j in range(S):
        start[j] = pos
        length[j] = orders[j] + (nf if j == 0 else 0)
        pos += length[j]
    Z = np.zeros(pos, np.int64)
    W = np.zeros(pos, np.int64)
    fstart, fend = orders[0], orders[0] + nf
    Zf = Z[fstart:fend]
    seg = [j for j in range(S) if length[j] > 0]  # stage 0 always (nf >= 1)
    seg_starts = np.array([start[j] for j in seg], np.intp)
    seg_ols = [kinds[j] == OLS for j in seg]
    # per stage: (views of) the weights and regressors its update touches
    Zh = [Z[start[j]:start[j] + orders[j]] for j in range(S)]
    Wh = [W[start[j]:start[j] + orders[j]] for j in range(S)]
    Zs = [Z[start[j]:start[j] + length[j]] for j in range(S)]  # history (+ features)
    Ws = [W[start[j]:start[j] + length[j]] for j in range(S)]
    Wf = W[fstart:fend]
    # the weights' bounds: W_CLAMP, an OLS stage's OLS_W_CLAMP (a no-op for weights
    # not updated, so the whole vector is clamped once per sample)
    lim = np.concatenate([np.full(length[j], OLS_W_CLAMP if kinds[j] == OLS else W_CLAMP, np.int64)
                          for j in range(S)])
    nlim = -lim
    hist = [j for j in range(S) if orders[j] >= 1]
    h_first = np.array([start[j] for j in hist], np.intp)
    h_last = np.array([start[j] + orders[j] - 1 for j in hist], np.intp)
    h_end = max([start[j] + orders[j] for j in hist], default=0)
    energy = [0] * S
    ols = {j: OlsState(length[j], mus[j]) for j in range(S) if kinds[j] == OLS}
    a_mix = [1 << MIX_BITS] * S
    Fc = np.clip(F, -CLAMP, CLAMP)
    fe_all = (Fc * Fc).sum(axis=1).tolist()  # below nf * 2^54: exact in int64
    base_all = F[:, 0].tolist()
    r = np.asarray(r, np.int64).tolist()
    silent = np.asarray(silent, bool).tolist()
    out = [0] * n
    rnd, rnd_ols, rnd_mix = 1 << (W_BITS - 1), 1 << (OLS_F - 1), 1 << (MIX_BITS - 1)
    q = 0
    for i in range(n):
        Zf[:] = Fc[i]
        acc = np.add.reduceat(W * Z, seg_starts).tolist()
        preds = [0] * S
        for idx, j in enumerate(seg):
            if seg_ols[idx]:
                p = (acc[idx] + rnd_ols) >> OLS_F
            else:
                p = (acc[idx] + rnd) >> W_BITS
            preds[j] = PRED_CLAMP if p > PRED_CLAMP else (-PRED_CLAMP if p < -PRED_CLAMP else p)
        if mix:
            P = clamp((sum(map(mul, a_mix, preds)) + rnd_mix) >> MIX_BITS, PRED_CLAMP)
        else:
            P = sum(preds)
        base = base_all[i]
        e = -base - P if silent[i] else r[i]  # INVERSE
        value = e + P + base
        out[i] = value
        e = value - base
        ins = [0] * S
        for j in range(S):
            ins[j] = e
            e -= preds[j]
        if mix:
            err = ins[0] - P
            if err != 0:
                step = mu_mix if err > 0 else -mu_mix
                for j in range(S):
                    p = preds[j]
                    if p:
                        a_mix[j] = clamp(a_mix[j] + (step if p > 0 else -step), MIX_CLAMP)
        updated = False
        for j in range(S):
            kind = kinds[j]
            err = clamp(ins[j] - preds[j], CLAMP)
            if kind == OLS:
                st = ols[j]
                st.X[:st.D, q] = Zs[j]  # the regressors the prediction used
                st.X[st.D, q] = clamp(ins[j], CLAMP)  # the target
                if q == OLS_BLOCK - 1:
                    wo = st.block()
                    if wo is not None:
                        Ws[j][:] = wo
            elif err != 0:
                if kind == NLMS:
                    shared = j == 0 and phi == 0
                    c, s = nlms_step(err, mus[j], ENERGY_FLOOR + energy[j] + (fe_all[i] if shared else 0))
                    if shared:  # features and history share the gain: one update
                        w, z = Ws[j], Zs[j]
                    else:
                        w, z = Wh[j], Zh[j]
                        if j == 0:
                            fc, fs = nlms_step(err, phi, ENERGY_FLOOR + fe_all[i])
                            Wf += (fc * Zf + (1 << (fs - 1))) >> fs
                    if w.size:
                        w += (c * z + (1 << (s - 1))) >> s
                else:  # SIGN_LMS: the features (stage 0) step like the history
                    w = Ws[j]
                    w += np.sign(Zs[j]) * (mus[j] if err > 0 else -mus[j])
                updated = True
        if updated:  # clamp(w + ..., W_CLAMP) of every weight updated
            np.minimum(W, lim, out=W)
            np.maximum(W, nlim, out=W)
        if hist:  # every kind, even when err == 0
            old = Z[h_last].tolist()
            xs = []
            for idx, j in enumerate(hist):
                x = ins[j]
                x = CLAMP if x > CLAMP else (-CLAMP if x < -CLAMP else x)
                energy[j] += x * x - old[idx] * old[idx]
                xs.append(x)
            Z[1:h_end] = Z[0:h_end - 1]  # shifts every history; the features are rewritten
            Z[h_first] = xs
        q = (q + 1) % OLS_BLOCK
    return np.array(out, np.int64)
