"""Perceptual priority of the truncation units, and the choice of units for a target.

A *unit* is one segment of one layer of one frame (:mod:`hybridcodec.segmented`). At
encode time every unit gets a **slope**: the perceptual distortion it removes per byte.
Distortion is measured per envelope band and slot from the noise the decoder would be
left with against the masking threshold (:mod:`.masking`), ``D = log2(1 + N / M)``:

* a band the tier does not code is filled with noise at its energy ``E``: for noise-like
  content that substitution is heard as the original (noise substitution), for a tone it
  is not, so the fill's noise counts as ``N = max(T, FILL_FLOOR) * E`` (T = tonality);
* a coded band has the quantisation noise of its last precision group: the anchor's bin
  width, halved by every refinement plane, white over the band's octave (its level in
  the envelope's units comes from the wavelet's synthesis gain, measured once per model);
* the exact group leaves no noise.

The slope is stored per unit as a byte on a log scale (:func:`slope_byte`). ``truncate``
keeps units in the order of their slopes, made non-increasing along every dependency
(a refinement after its anchor, a segment after the one before, a band's anchor after
the band above's next segment), until the byte budget is spent; a named tier keeps the
units whose slope reaches its threshold. Both need only what the stream carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .grid import EnvelopeGrid, band_power, stft

FILL_FLOOR = 0.05  # even noise substitution of noise misses some temporal detail
SLOPE_SCALE = 12.0  # slope byte steps per octave of distortion per byte
SLOPE_OFFSET = 160.0


def slope_byte(value: float, nbytes: int) -> int:
    """The stored priority of a unit removing ``value`` (bits of NMR) in ``nbytes``."""
    if value <= 0 or nbytes <= 0:
        return 0 if value <= 0 else 255
    return int(np.clip(np.round(SLOPE_OFFSET + SLOPE_SCALE * np.log2(value / nbytes)), 1, 255))


def distortion(noise: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """``log2(1 + N / M)`` per band and slot."""
    return np.log2(1.0 + noise / threshold)


@lru_cache(maxsize=32)
def _synthesis_gain(model_key: int, level: int, sample_rate: int, grid: EnvelopeGrid,
                    model) -> np.ndarray:
    """Per envelope band: STFT power per bin that unit-variance white noise in detail
    level ``level`` (alone) becomes after synthesis (0 outside the octave)."""
    rng = np.random.default_rng(level)
    n = 1 << 15
    from ..lifting import band_lengths

    nc, nd = band_lengths(n, model.config.levels)
    details = [np.zeros(s, np.int64) for s in nd]
    scale = 1 << 12
    details[level - 1] = np.round(rng.standard_normal(nd[level - 1]) * scale).astype(np.int64)
    x = model.wavelet.synthesise(np.zeros(nc, np.int64), details).astype(np.float64) / scale
    slots = n // grid.hop
    p = band_power(stft(x, grid, 1, slots - 1), grid)
    return p.mean(axis=1)


def synthesis_gain(model, level: int, sample_rate: int, grid: EnvelopeGrid) -> np.ndarray:
    """See :func:`_synthesis_gain` (cached per model and level)."""
    return _synthesis_gain(id(model), level, sample_rate, grid, model)


@dataclass
class UnitInfo:
    """What the allocator knows about one layer of one frame."""

    frame: int
    layer: int
    band: int
    group: int
    sizes: np.ndarray  # bytes of each segment (S,)
    slopes: np.ndarray  # stored slope bytes (S,)
    kept: int  # segments the stream holds (<= S)


def monotone(units: list[UnitInfo], levels: int) -> dict[tuple[int, int], np.ndarray]:
    """Slopes made non-increasing along every dependency, per (frame, layer)."""
    by_key = {(u.frame, u.band, u.group): u for u in units}
    out: dict[tuple[int, int], np.ndarray] = {}
    # Coarse to fine, anchor to refinement: every prerequisite is done before its users.
    for u in sorted(units, key=lambda u: (u.frame, u.band, u.group)):
        s = u.slopes.astype(np.float64).copy()
        s[0] = s[0]
        for j in range(1, s.size):
            s[j] = min(s[j], s[j - 1])
        if u.group:
            below = by_key.get((u.frame, u.band, u.group - 1))
            if below is not None:
                prev = out[(below.frame, below.layer)]
                s = np.minimum(s, prev[: s.size] if prev.size >= s.size else
                               np.concatenate([prev, np.zeros(s.size - prev.size)]))
        elif u.band:
            above = by_key.get((u.frame, u.band - 1, 0))
            if above is not None:
                prev = out[(above.frame, above.layer)]
                # segment j needs the band above's segment j + 1 (or that band complete)
                nxt = np.concatenate([prev[1:], [prev[-1]]]) if prev.size else prev
                s = np.minimum(s, nxt[: s.size])
        out[(u.frame, u.layer)] = s
    return out


def choose(units: list[UnitInfo], segments: dict[int, int], levels: int, groups: int,
           layer_of: dict[tuple[int, int], int], *, budget: float | None = None,
           threshold: int | None = None, fixed: int = 0, layer_overhead: int = 0,
           segment_overhead: int = 0) -> dict[tuple[int, int], int]:
    """Segments to keep per (frame, layer): the units in slope order (see the module
    docstring) while they fit ``budget`` bytes (container bytes estimated as ``fixed`` +
    ``layer_overhead`` per kept layer + ``segment_overhead`` per kept segment), or those
    whose slope reaches ``threshold``. ``segments[frame]`` = the frame's S. Layer 0 of
    every frame is always kept."""
    mono = monotone(units, levels)
    kept = {(u.frame, u.layer): 0 for u in units}
    info = {(u.frame, u.layer): u for u in units}
    total = float(fixed)
    order = []
    for u in units:
        s = mono[(u.frame, u.layer)]
        if u.layer == 0:
            kept[(u.frame, 0)] = u.kept
            total += int(u.sizes[: u.kept].sum()) + layer_overhead + segment_overhead * u.kept
            continue
        for j in range(u.kept):
            order.append((-s[j], u.band, u.group, j, u.frame, u.layer))
    order.sort()
    for neg, band, group, j, frame, layer in order:
        if threshold is not None and -neg < threshold:
            break
        key = (frame, layer)
        if kept[key] != j:
            continue
        if group:
            below = layer_of[(band, group - 1)]
            if kept.get((frame, below), 0) <= j:
                continue
        elif band:
            above = kept.get((frame, layer_of[(band - 1, 0)]), 0)
            if above != segments[frame] and above < j + 2:
                continue
        u = info[key]
        cost = int(u.sizes[j]) + segment_overhead + (layer_overhead if j == 0 else 0)
        if budget is not None and total + cost > budget:
            continue
        kept[key] = j + 1
        total += cost
    return kept


def frame_slopes(model, code, lay, grid: EnvelopeGrid, power: list[np.ndarray],
                 mask: list, bounds: list[np.ndarray], layer_sizes: dict[int, np.ndarray],
                 segment_length: int) -> dict[int, bytes]:
    """Slope bytes of every segment of every layer of a frame (module docstring).

    ``power`` / ``mask``: per output channel, the envelope's band powers (bands, slots)
    and :class:`~.masking.Masking`. The quantisation noise of the coded channels (after
    the stereo decorrelation) is averaged and charged to every output channel alike: a
    priority, not a prediction of the decoded noise.
    """
    L, G, A = lay.levels, lay.groups, lay.max_planes
    hop = grid.hop
    slots = power[0].shape[1] if power else 0
    nseg = len(bounds[0]) - 1
    slot_seg = np.minimum((np.arange(slots) * hop) // segment_length, nseg - 1)
    band_of_env = np.array([L - lvl + 1 for lvl in grid.band_level], np.int64)
    out: dict[int, bytes] = {}
    for band in range(L + 1):
        env_sel = np.flatnonzero(band_of_env == band)
        if band == 0 or env_sel.size == 0:
            # The coarse band lies below the envelope's bands (every tier codes its
            # anchor): rank its refinements by group alone, high (it is cheap).
            for g in range(G):
                out[lay.layer_of[(band, g)]] = bytes([max(1, 220 - 30 * g)] * nseg)
            continue
        level = L - band + 1
        gain = synthesis_gain(model, level, grid.sample_rate, grid)[env_sel]
        # noise variance per coefficient and slot after each group (state s = after
        # group s - 1; state G = exact, no noise)
        noise = np.zeros((G + 1, slots))
        for c, bands in enumerate(code.channels):
            bc = bands[band]
            per = bc.per
            coded = per != 0
            shift = model.tables.shift[per].astype(np.float64)
            coef_slot = np.minimum(((np.arange(per.size) << level) + (hop >> 1)) // hop,
                                   max(slots - 1, 0))
            counts = np.maximum(np.bincount(coef_slot, minlength=slots), 1)
            scale = 4.0 ** code.shifts[c]  # back to the output's units
            for state in range(1, G):
                left = min(bc.planes, A - (state - 1))
                var = np.where(coded, np.exp2(2 * (shift + left)) / 12, 0.0) * scale
                noise[state] += np.bincount(coef_slot, weights=var, minlength=slots) / counts
        noise /= max(len(code.channels), 1)
        values = np.zeros((G, nseg))
        for c in range(len(power)):
            E, M = power[c][env_sel], mask[c].threshold[env_sel]
            T = mask[c].tonality[env_sel]
            states = [np.maximum(T, FILL_FLOOR) * E]
            states += [noise[s][None, :] * gain[:, None] for s in range(1, G)]
            states.append(np.zeros_like(E))
            D = [distortion(st, M).sum(axis=0) for st in states]
            for g in range(G):
                values[g] += np.bincount(slot_seg, weights=D[g] - D[g + 1], minlength=nseg)
        for g in range(G):
            k = lay.layer_of[(band, g)]
            sizes = layer_sizes[k]
            out[k] = bytes(slope_byte(values[g, j], int(sizes[j])) for j in range(nseg))
    return out
