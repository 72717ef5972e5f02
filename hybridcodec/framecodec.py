"""One frame of PCM <-> its layers. Frames are independent (no state crosses them).

Every channel is split into bands (coarse band, then detail levels coarsest first); a
band's residuals are coded in precision groups (:mod:`hybridcodec.precision`), and each
(band, group) pair is one layer, ordered by :func:`hybridcodec.tiers.layer_order`.
Layer 0 also carries the frame parameters (stereo mode, wasted bits) and every band's
scale envelope, so a decoder missing layers still knows each band's level and can
sample it from its prior. See docs/format.md, "Layer payloads".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import channels as ch
from .entropy import (ZERO_CLASS, SymbolReader, SymbolWriter, choose_classes, read_classes,
                      write_classes)
from .errors import CorruptStreamError, UsageError
from .lifting import band_lengths
from .model import HybridModel
from .precision import (FILL_MODES, PlaneTables, num_groups, read_band_groups, sample_band,
                        write_band_groups)
from .tiers import layer_order

SHIFT_BITS = 5  # wasted-bits count per channel, 0..24
PLANES_BITS = 3  # anchor planes of a band, 0..7
MEAN_CLAMP = 1 << 26


def coded_signals(pcm: np.ndarray) -> tuple[int, list[int], list[np.ndarray]]:
    """(stereo mode, wasted bits per channel, the signals the wavelet sees)."""
    nch = pcm.shape[1]
    shifts = [ch.wasted_bits(pcm[:, c]) for c in range(nch)]
    mode = ch.INDEPENDENT
    if nch == 2:
        common = min(shifts)
        l, r = pcm[:, 0] >> common, pcm[:, 1] >> common
        mode = ch.choose_stereo_mode(l, r)
        if mode != ch.INDEPENDENT:
            shifts = [common, common]
            return mode, shifts, list(ch.decorrelate(l, r, mode))
    return mode, shifts, [pcm[:, c] >> shifts[c] for c in range(nch)]


def prior_mean(model: HybridModel, level: int, coarse: np.ndarray, n: int) -> np.ndarray:
    """Integer mean of detail band ``level`` (0 = finest) given the band above it."""
    mu = model.means[level].predict(coarse, n)
    return np.clip(mu, -MEAN_CLAMP, MEAN_CLAMP)


def cross_channel_features(mean: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """Side inputs of a band's cascade: its prior mean, then (for every channel after the
    first) the previous channel's same band at n-1, n, n+1, already decoded when needed."""
    if reference is None or reference.size == 0:
        return mean[:, None]
    ref = np.pad(reference, 1, mode="edge")
    return np.stack([mean, ref[:-2], ref[1:-1], ref[2:]], axis=1)


def coarse_features(coarse: np.ndarray, size: int, taps: int) -> np.ndarray:
    """(size, taps): the coarser band s_l, high-passed, around each detail coefficient.

    Detail coefficient i lies between s_l[i] and s_l[i+1]; its window is s_l[i - taps//2 + 1
    .. i - taps//2 + taps] (edges replicated; one tap: s_l[i+1]). The second difference
    removes the loud low frequencies, which carry little about the detail band but would
    dominate the features' energy (their NLMS normalisation).
    """
    s = np.pad(coarse.astype(np.int64), 1, mode="edge")
    hp = 2 * s[1:-1] - s[:-2] - s[2:]
    # h[i - (taps//2 - 1) + j], edge-extended: the window starts after i when taps is 1
    idx = np.clip(np.arange(size + taps - 1) - (taps // 2 - 1), 0, hp.size - 1)
    return np.lib.stride_tricks.sliding_window_view(hp[idx], taps)[:size]


class _FrameLayout:
    """Per-model facts shared by encoder and decoder: block lengths, layer ids."""

    def __init__(self, model: HybridModel) -> None:
        cfg = model.config
        self.model = model
        self.levels = cfg.levels
        self.groups = num_groups(cfg.anchor_planes)
        self.order = layer_order(cfg.levels, self.groups)
        self.layer_of = {bg: i for i, bg in enumerate(self.order)}
        self.max_planes = cfg.anchor_planes
        self.plane_tables = _plane_tables(model)

    def planes(self, p: int) -> PlaneTables:
        return self.plane_tables[p]

    def block(self, band: int) -> int:
        # band 0 = coarse (level L+1), band b = detail level L-b+1
        return self.model.config.block_length(self.levels + 1 - band)

    def band_sizes(self, n: int) -> list[int]:
        """Coefficients of every band of an n-sample frame, coarse first."""
        n_coarse, n_details = band_lengths(n, self.levels)
        return [n_coarse] + [n_details[self.level_index(b)] for b in range(1, self.levels + 1)]

    def level_index(self, band: int) -> int:
        """Index into model.means / details (0 = finest) of detail band ``band``."""
        return self.levels - band

    def cascade(self, band: int):
        return self.model.coarse_cascade if band == 0 else self.model.detail_cascade

    def features(self, band: int, anchor_coarse, size: int, reference) -> np.ndarray:
        """Cascade side inputs; the prior mean comes from the *anchor* coarse signal,
        which every decoder holding this band's anchor can rebuild exactly."""
        if band == 0:
            return cross_channel_features(np.zeros(size, np.int64), reference)
        mu = prior_mean(self.model, self.level_index(band), anchor_coarse, size)
        feats = cross_channel_features(mu, reference)
        taps = self.model.config.coarse_taps
        if taps and size and anchor_coarse.size:
            feats = np.concatenate([feats, coarse_features(anchor_coarse, size, taps)],
                                   axis=1)
        return feats

    def synthesise(self, band: int, coarse, values: np.ndarray):
        if band == 0:
            return np.asarray(values, np.int64)
        return self.model.wavelet.synthesise_level(self.level_index(band), coarse, values)


def _plane_tables(model: HybridModel) -> list[PlaneTables]:
    """PlaneTables for every anchor size 0..anchor_planes, built once per model."""
    cached = getattr(model, "_plane_tables_cache", None)
    if cached is None or cached[0].t is not model.tables:
        cached = [PlaneTables(model.tables, p) for p in range(model.config.anchor_planes + 1)]
        model._plane_tables_cache = cached
    return cached


ANCHOR_TOLERANCE = 0.005  # accept a coarser anchor if it costs < 0.5 % more bits


def _analyse(model: HybridModel, x: np.ndarray, levels: int) -> list[np.ndarray]:
    """Exact bands of one channel: coarse first, then detail levels coarsest first."""
    coarse, details = model.wavelet.analyse(x)
    return [coarse] + details[::-1]


def _closed_loop_band(lay: _FrameLayout, band: int, values: np.ndarray, feats: np.ndarray):
    """(anchor planes, classes, per-sample classes, residuals, anchor values) of a band.

    Blocks whose values are all zero (digital silence) get class 0 and cost nothing
    whatever the predictors say; the others get the cheapest class for their open-loop
    residuals. The coarsest anchor (most planes, the most useful lossy layers) is kept
    unless its closed loop costs more than ANCHOR_TOLERANCE over open-loop coding:
    strongly predictable bands amplify anchor noise through their filters, and get a
    finer anchor instead.
    """
    cascade, tables, block = lay.cascade(band), lay.model.tables, lay.block(band)
    open_r = cascade.residuals(values, feats)
    classes = np.maximum(choose_classes(open_r, block, tables), 1)
    silent = np.bincount(np.arange(values.size) // block, weights=np.abs(values),
                         minlength=classes.size) == 0
    classes[silent] = ZERO_CLASS
    per = np.repeat(classes, block)[: values.size]
    coded = per != ZERO_CLASS
    open_cost = tables.block_costs(open_r[coded], per[coded]).sum()
    for planes in range(lay.max_planes, -1, -1):
        shifts, halfwidths = lay.planes(planes).shifts_for(per)
        r, anchor = cascade.closed_loop(values, feats, shifts, halfwidths, planes)
        if planes == 0 or tables.block_costs(r[coded], per[coded]).sum() <= \
                open_cost * (1 + ANCHOR_TOLERANCE):
            return planes, classes, per, r, anchor
    raise AssertionError("unreachable")


@dataclass
class BandCode:
    """One band of one channel as the encoder codes it."""

    residuals: np.ndarray  # closed-loop residuals (int64)
    classes: np.ndarray  # scale class per block (the envelope)
    per: np.ndarray  # scale class per coefficient
    planes: int  # anchor planes


@dataclass
class FrameCode:
    """Everything :func:`encode_frame` codes for one frame, before entropy coding."""

    mode: int  # stereo mode
    shifts: list[int]  # wasted bits per channel (whole frame)
    block_shifts: list[np.ndarray]  # per coded channel: wasted bits per shift block
    channels: list[list[BandCode]]  # per coded channel its bands, coarse first

    def side_bits(self) -> int:
        """Bits of the frame parameters (stereo mode, wasted bits)."""
        bits = 2 + SHIFT_BITS * len(self.shifts)
        for s in self.block_shifts:
            bits += 1 + (SHIFT_BITS * s.size if s.any() else 0)
        return bits


def analyse_frame(model: HybridModel, pcm: np.ndarray) -> FrameCode:
    """Analyse one frame of int PCM (n, channels) exactly as :func:`encode_frame` codes it."""
    lay = _FrameLayout(model)
    mode, shifts, signals = coded_signals(pcm.astype(np.int64))
    block = model.config.shift_block
    block_shifts = []
    if block:
        block_shifts = [ch.block_wasted_bits(x, block) for x in signals]
        signals = [ch.shift_blocks(x, s, block, up=False) for x, s in zip(signals, block_shifts)]
    channels = []
    previous = None  # the previous channel's anchor bands, for cross-channel context
    for x in signals:
        bands, anchors, coarse = [], [], None
        for band, values in enumerate(_analyse(model, x, lay.levels)):
            ref = previous[band] if previous is not None else None
            feats = lay.features(band, coarse, values.size, ref)
            planes, classes, per, r, anchor = _closed_loop_band(lay, band, values, feats)
            bands.append(BandCode(r, classes, per, planes))
            anchors.append(anchor)
            coarse = lay.synthesise(band, coarse, anchor)
        channels.append(bands)
        previous = anchors if model.config.cross_channel else None
    return FrameCode(mode, shifts, block_shifts, channels)


def write_frame_params(writer: SymbolWriter, code: FrameCode) -> None:
    """A frame's stereo mode and wasted bits, first in layer 0 (both payloads)."""
    writer.uniform(np.array([code.mode]), 2)
    writer.uniform(np.array(code.shifts), SHIFT_BITS)
    for s in code.block_shifts:  # a flag, then the blocks' counts if any is nonzero
        writer.uniform(np.array([int(s.any())]), 1)
        if s.any():
            writer.uniform(s, SHIFT_BITS)


def read_frame_params(reader: SymbolReader, model: HybridModel, nch: int, n: int,
                      where: str) -> tuple[int, np.ndarray, list[np.ndarray]]:
    """Inverse of :func:`write_frame_params`: (mode, shifts, per-block shifts), checked."""
    mode = int(reader.uniform(1, 2)[0])
    shifts = reader.uniform(nch, SHIFT_BITS)
    block = model.config.shift_block
    block_shifts = []
    if block:
        blocks = -(-n // block)
        for _ in range(nch):
            flagged = reader.uniform(1, 1)[0]
            block_shifts.append(reader.uniform(blocks, SHIFT_BITS) if flagged
                                else np.zeros(blocks, np.int64))
    # A nonzero sample of at most 24 bits has at most 23 wasted bits in all: frame-wide
    # and per-block counts add up (a coded stereo signal has its channels' common count).
    if any(s.max(initial=0) + k > 24 for s, k in zip(block_shifts, shifts)) or \
            shifts.max(initial=0) > 24 or (mode != ch.INDEPENDENT and nch != 2):
        raise CorruptStreamError(f"{where}: impossible frame parameters")
    return mode, shifts, block_shifts


def encode_frame(model: HybridModel, pcm: np.ndarray) -> list[tuple[int, bytes]]:
    """Code one frame of int PCM (n, channels) into its layers [(layer_id, payload)]."""
    lay = _FrameLayout(model)
    code = analyse_frame(model, pcm)
    writers = [SymbolWriter() for _ in lay.order]
    write_frame_params(writers[0], code)
    for bands in code.channels:
        for band_code in bands:
            writers[0].uniform(np.array([band_code.planes]), PLANES_BITS)
            write_classes(writers[0], band_code.classes, model.tables)
        for band, band_code in enumerate(bands):
            group_writers = [writers[lay.layer_of[(band, g)]] for g in range(lay.groups)]
            write_band_groups(group_writers, band_code.residuals, band_code.per,
                              lay.planes(band_code.planes))
    # Empty layers are left out (silence costs almost nothing); layer 0 always stays.
    payloads = [(k, w.finish()) for k, w in enumerate(writers)]
    return [(k, p) for k, p in payloads if k == 0 or p]


def decode_frame(model: HybridModel, layers: dict[int, bytes], n: int, nch: int,
                 where: str = "frame", *, carried: int | None = None, bits: int = 24,
                 fill: str = "sample", seed: int = 0, frame_index: int = 0) -> np.ndarray:
    """Inverse of :func:`encode_frame`: int64 PCM (n, nch).

    ``carried`` is the number of layers the stream carries (its header's num_layers;
    default: all of them): a layer below it that the frame lacks was empty. With every
    layer carried the result is exact. A lower tier carries a prefix of the layer
    order; missing detail is then filled per ``fill`` -- ``sample``
    draws it from the prior (reproducibly from ``seed`` and ``frame_index``), ``mean``
    uses the prior's median, ``zero`` also leaves absent bands silent -- and the output
    is clipped to the ``bits``-bit range.
    """
    if fill not in FILL_MODES:
        raise UsageError(f"unknown fill mode {fill!r} (choose from {', '.join(FILL_MODES)})")
    lay = _FrameLayout(model)
    L = lay.levels
    count = len(lay.order)
    carried = count if carried is None else carried
    if not 1 <= carried <= count or 0 not in layers or any(k >= carried for k in layers):
        raise CorruptStreamError(f"{where}: layers {sorted(layers)} do not fit a stream of "
                                 f"{carried} of {count} layers")
    lossless = carried == count
    readers = [SymbolReader(layers.get(k, b""), f"{where} layer {k}") if k < carried else None
               for k in range(count)]
    r0 = readers[0]
    mode, shifts, block_shifts = read_frame_params(r0, model, nch, n, where)
    block = model.config.shift_block
    sizes = lay.band_sizes(n)
    signals = []
    previous = None
    for c in range(nch):
        planes, envelopes = [], []
        for b, size in enumerate(sizes):
            planes.append(int(r0.uniform(1, PLANES_BITS)[0]))
            envelopes.append(read_classes(r0, -(-size // lay.block(b)), model.tables))
        if max(planes) > lay.max_planes:
            raise CorruptStreamError(f"{where}: anchor planes out of range")
        anchors, anchor_coarse, out = [], None, None
        for band, size in enumerate(sizes):
            per = np.repeat(envelopes[band], lay.block(band))[:size]
            group_readers = [readers[lay.layer_of[(band, g)]] for g in range(lay.groups)]
            rng = np.random.default_rng([seed, frame_index, c, band]) \
                if fill == "sample" and not lossless else None
            silent = per == ZERO_CLASS
            if group_readers[0] is None:  # band absent (and so are all finer ones)
                values = np.zeros(size, np.int64)
                if fill != "zero":
                    mu = prior_mean(model, lay.level_index(band), out, size)
                    values = np.where(silent, 0, mu + sample_band(per, lay.planes(0), fill, rng))
                out = lay.synthesise(band, out, values)
                continue
            r_anchor, r_est, _ = read_band_groups(group_readers, per, lay.planes(planes[band]),
                                                  fill, rng)
            ref = previous[band] if previous is not None else None
            feats = lay.features(band, anchor_coarse, size, ref)
            anchor = lay.cascade(band).reconstruct(r_anchor, feats, silent)
            anchors.append(anchor)
            anchor_coarse = lay.synthesise(band, anchor_coarse, anchor)
            out = lay.synthesise(band, out, anchor + (r_est - r_anchor))
        signals.append(out if out is not None else np.zeros(n, np.int64))
        previous = anchors if model.config.cross_channel else None
    for rd in readers:
        if rd is not None:
            rd.finish()
    if block:
        signals = [ch.shift_blocks(x, s, block, up=True) for x, s in zip(signals, block_shifts)]
    if nch == 2:
        signals = list(ch.correlate(signals[0], signals[1], mode))
    if nch == 0:
        return np.zeros((n, 0), np.int64)
    pcm = np.stack([x << int(k) for x, k in zip(signals, shifts)], axis=1)
    if not lossless:
        pcm = np.clip(pcm, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return pcm


def layer_count(model: HybridModel) -> int:
    """Layers in a complete (lossless) frame coded with ``model``."""
    return len(_FrameLayout(model).order)
