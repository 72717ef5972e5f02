"""Precision layers of one band: an anchor, refinement bit-planes, and the exact rest.

Every residual ``r`` of a band has a table symbol ``t`` under its block's scale class k
(:mod:`hybridcodec.entropy`). The symbols are split, coarse to fine, into groups that go
to separate layers:

* group 0 (anchor): the bin ``j = (t - o_k) >> P`` of ``2**P`` adjacent symbols,
  coded with summed class frequencies. ``P`` is chosen per band and frame by the
  encoder, at most the model's ``anchor_planes`` (A);
* groups 1..A (refinement): the bit-planes of the position inside the bin, most
  significant first, each bit coded with ``P(bit | bits above) = S(upper half) /
  S(current interval)`` -- sums of the class's integer frequencies. Plane p goes to
  group A - p, so a group always means the same precision; with P < A the first
  A - P refinement groups of that band are empty;
* group A+1 (exact): the ``b_k`` low bits below the table's resolution and escapes.

The product of these conditionals is exactly the class's probability of ``t``, so the
lossless total equals single-layer coding (chain rule). The prediction cascade runs
closed-loop on the anchor (:meth:`hybridcodec.cascade.Cascade.closed_loop`): a decoder
holding only the anchors reproduces the encoder's filters exactly, and refinements are
added outside the loop, so lossy errors stay bounded instead of being amplified.
"""

from __future__ import annotations

import numpy as np

import constriction

from .entropy import TABLE_PRECISION, ScaleTables, SymbolReader, SymbolWriter, ZERO_CLASS, \
    integer_model, read_escapes, write_escapes

FILL_MODES = ("sample", "mean", "zero")


def num_groups(max_planes: int) -> int:
    """Groups per band: anchor, one per refinement plane, exact."""
    return max_planes + 2


class PlaneTables:
    """Cumulative frequencies and merged anchor tables derived from the integer class tables.

    Anchor symbols of class k: 0 = low escape, 1..nbins = bins of the non-escape table
    symbols ``t`` in [1, 2M+1], nbins+1 = high escape. Escaped residuals are exact in the
    anchor (their excess and low bits follow in the anchor group), so an outlier can
    never push the closed loop off course.
    """

    def __init__(self, tables: ScaleTables, planes: int) -> None:
        self.t = tables
        self.planes = planes
        self.cum = np.concatenate([[0], np.cumsum(tables.freq)])
        self.origin = tables.halfwidth + 1 - ((1 << planes) >> 1)  # q=0 sits mid-bin 0
        top = 2 * tables.halfwidth + 1
        self.jmin = (1 - self.origin) >> planes
        self.nbins = ((top - self.origin) >> planes) - self.jmin + 1
        self._models: dict[int, object] = {}

    def interval_mass(self, classes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Sum of class frequencies over non-escape symbols in [lo, hi)."""
        top = 2 * self.t.halfwidth[classes] + 2
        base = self.t.offset[classes]
        return self.cum[base + np.clip(hi, 1, top)] - self.cum[base + np.clip(lo, 1, top)]

    def anchor_model(self, k: int):
        m = self._models.get(k)
        if m is None:
            j = self.jmin[k] + np.arange(self.nbins[k])
            lo = self.origin[k] + (j << self.planes)
            mass = self.interval_mass(np.full(j.size, k), lo, lo + (1 << self.planes))
            f = self.t.freq[self.t.offset[k]: self.t.offset[k] + self.t.size[k]]
            probs = np.concatenate([[f[0]], mass, [f[-1]]])
            if self.t.exact:
                m = integer_model(probs)
            else:
                m = constriction.stream.model.Categorical(probs.astype(np.float64),
                                                          perfect=False)
            self._models[k] = m
        return m

    def anchor_residual(self, classes: np.ndarray, j: np.ndarray) -> np.ndarray:
        """The residual a decoder assumes from the anchor bin alone (same as cascade.py)."""
        m, b = self.t.halfwidth[classes], self.t.shift[classes]
        centre = self.origin[classes] + (j << self.planes) + ((1 << self.planes) >> 1)
        return ((centre - m - 1) << b) + ((1 << b) >> 1)

    def shifts_for(self, per: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample (shift, halfwidth) for Cascade.closed_loop; shift -1 = zero class."""
        return np.where(per == ZERO_CLASS, -1, self.t.shift[per]), self.t.halfwidth[per]


def _plane_probability(pt: PlaneTables, classes, lo, plane, exact: bool = False):
    """P(bit = 1) on [lo, lo + 2**(plane+1)), which bits are uncertain, and forced bits.

    ``exact``: P(1) as the integer ``floor(upper * 2**24 / (upper + lower))`` clipped to
    1 .. 2**24 - 1 (format 4: integers reach the coder), else as a float (formats 1-3).
    """
    width = 1 << plane
    upper = pt.interval_mass(classes, lo + width, lo + 2 * width)
    lower = pt.interval_mass(classes, lo, lo + width)
    uncertain = (upper > 0) & (lower > 0)
    u, total = upper[uncertain], upper[uncertain] + lower[uncertain]
    if exact:
        one = 1 << TABLE_PRECISION
        p = np.clip((u << TABLE_PRECISION) // total, 1, one - 1)
    else:
        p = u / total.astype(np.float64)
    return p, uncertain, (upper > 0).astype(np.int64)


def write_band_groups(writers: list[SymbolWriter], r: np.ndarray, per: np.ndarray,
                      pt: PlaneTables, exact: bool = False) -> None:
    """Code residuals ``r`` (per-sample classes ``per``) into the group writers."""
    coded = per != ZERO_CLASS
    rc, pc = r[coded], per[coded]
    tables, P = pt.t, pt.planes
    t, q = tables.symbol_index(rc, pc)
    m, b = tables.halfwidth[pc], tables.shift[pc]
    esc = (t == 0) | (t == 2 * m + 2)
    rel = t - pt.origin[pc]
    j = rel >> P
    a = np.where(t == 0, 0, np.where(esc, pt.nbins[pc] + 1, j - pt.jmin[pc] + 1))
    for c in np.unique(pc):
        sel = pc == c
        writers[0].categorical(a[sel], pt.anchor_model(int(c)))
    write_escapes(writers[0], t[esc], q[esc], m[esc])
    writers[0].uniform(rc[esc] - (q[esc] << b[esc]), b[esc])
    keep = ~esc
    pc, rel, lo = pc[keep], rel[keep], (pt.origin[pc] + (j << P))[keep]
    top = len(writers) - 2  # the model's maximum anchor planes: plane p -> group top - p
    for plane in range(P - 1, -1, -1):
        bit = (rel >> plane) & 1
        p, uncertain, _ = _plane_probability(pt, pc, lo, plane, exact)
        if exact:
            writers[top - plane].binary(bit[uncertain], p)
        else:
            writers[top - plane].bernoulli(bit[uncertain], p)
        lo = lo + (bit << plane)
    writers[-1].uniform(rc[keep] - (q[keep] << b[keep]), b[keep])


def read_band_groups(readers: list[SymbolReader | None], per: np.ndarray, pt: PlaneTables,
                     fill: str, rng: np.random.Generator | None, exact: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, bool]:
    """(anchor residuals, best residual estimate, exact) from the groups present.

    ``readers[g]`` is None for an absent group; the anchor (group 0) must be present.
    Missing refinement is filled inside the known interval: ``sample`` draws from the
    class distribution restricted to it, otherwise its median is used.
    """
    n = per.size
    coded = np.flatnonzero(per != ZERO_CLASS)
    pc = per[coded]
    tables, P = pt.t, pt.planes
    a = np.empty(coded.size, np.int64)
    for c in np.unique(pc):
        sel = pc == c
        a[sel] = readers[0].categorical(int(sel.sum()), pt.anchor_model(int(c)))
    m, b = tables.halfwidth[pc], tables.shift[pc]
    esc = (a == 0) | (a == pt.nbins[pc] + 1)
    t_esc = np.where(a[esc] == 0, 0, 2 * m[esc] + 2)
    q_esc = read_escapes(readers[0], t_esc, t_esc - m[esc] - 1, m[esc])
    r_esc = (q_esc << b[esc]) + readers[0].uniform(int(esc.sum()), b[esc])
    keep = ~esc
    pk, mk, bk = pc[keep], m[keep], b[keep]
    j = a[keep] - 1 + pt.jmin[pk]
    anchor = np.zeros(n, np.int64)
    estimate = np.zeros(n, np.int64)
    anchor[coded[esc]] = estimate[coded[esc]] = r_esc
    anchor[coded[keep]] = pt.anchor_residual(pk, j)
    lo = pt.origin[pk] + (j << P)
    width = 1 << P
    top = len(readers) - 2
    for plane in range(P - 1, -1, -1):
        if readers[top - plane] is None:
            break
        p, uncertain, bit = _plane_probability(pt, pk, lo, plane, exact)
        bit[uncertain] = (readers[top - plane].binary(p) if exact
                          else readers[top - plane].bernoulli(p))
        lo = lo + (bit << plane)
        width = 1 << plane
    if readers[-1] is not None:
        estimate[coded[keep]] = ((lo - mk - 1) << bk) + readers[-1].uniform(int(keep.sum()), bk)
        return anchor, estimate, True
    # Lossy: a symbol inside the known interval (never an escape symbol), then low bits.
    lo = np.clip(lo, 1, 2 * mk + 1)
    hi = np.clip(lo + width, lo + 1, 2 * mk + 2)
    base = tables.offset[pk]
    first, mass = pt.cum[base + lo], pt.cum[base + hi] - pt.cum[base + lo]
    if fill == "sample" and pk.size:
        target = first + rng.integers(0, np.maximum(mass, 1))
        low = rng.integers(0, 1 << bk)
    else:
        target = first + mass // 2
        low = (1 << bk) >> 1
    t = np.clip(np.searchsorted(pt.cum, target, side="right") - 1 - base, lo, hi - 1)
    estimate[coded[keep]] = ((t - mk - 1) << bk) + low
    return anchor, estimate, False


def sample_band(per: np.ndarray, pt: PlaneTables, fill: str,
                rng: np.random.Generator | None) -> np.ndarray:
    """Residuals for an absent band: drawn from its envelope's classes, or zero."""
    r = np.zeros(per.size, np.int64)
    if fill != "sample":
        return r
    coded = np.flatnonzero(per != ZERO_CLASS)
    pc = per[coded]
    base = pt.t.offset[pc]
    top = 2 * pt.t.halfwidth[pc] + 2
    first = pt.cum[base + 1]  # escape symbols stand for the table's edges: leave them out
    target = first + rng.integers(0, np.maximum(pt.cum[base + top] - first, 1))
    t = np.clip(np.searchsorted(pt.cum, target, side="right") - 1 - base, 1, top - 1)
    b = pt.t.shift[pc]
    r[coded] = ((t - pt.t.halfwidth[pc] - 1) << b) + rng.integers(0, 1 << b)
    return r
