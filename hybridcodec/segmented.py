"""Format 4's frame payload: segmented, truncatable layers and the band-energy envelope.

The analysis is the one of formats 1-3 (:func:`hybridcodec.framecodec.analyse_frame`:
wasted bits, stereo mode, lifting, closed-loop cascades, scale classes, precision
groups); what changes is how it is laid out:

* Layer 0 holds the frame parameters, every band's anchor size and scale envelope, then
  the band-energy envelope of every output channel (:mod:`hybridcodec.perceptual.envelope`),
  then the coarse band's anchor.
* Every layer (band, group) lists its symbols **segment by segment** (a segment is
  ``segment_length`` samples of the frame; within it, channel by channel), and the
  encoder records where in the layer's word stream each segment starts
  (:meth:`~hybridcodec.entropy.SymbolWriter.finish_with_cuts`). A lower tier can so keep
  any number of a layer's first segments without re-encoding: the container cuts the
  words (docs/format.md, "Frame chunk"). Decoding needs no cascade state to read
  symbols, so a cut in one layer leaves every other layer readable.
* Probabilities reach the coder as integers (format 4's integer models).

A lower tier's decode reconstructs each band where its anchor is present (the closed
loop makes that exact), leaves the rest of the band at zero, and reports which bands it
coded where, so the decoder's fill (:mod:`hybridcodec.perceptual.fill`) can synthesise
the rest at the coded energies. Cuts must respect the dependencies between layers
(:func:`check_segments`): a refinement never reaches past its anchor, and a band's anchor
stops at least one segment before the anchor of the band above it, whose synthesis its
prior mean and coarse-band features are computed from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import channels as ch
from .entropy import SymbolReader, SymbolWriter, ZERO_CLASS, read_classes, write_classes
from .errors import CorruptStreamError, UsageError
from .framecodec import (PLANES_BITS, _FrameLayout, analyse_frame, prior_mean,
                         read_frame_params, write_frame_params)
from .model import HybridModel
from .perceptual.allocation import frame_slopes
from .perceptual.envelope import analyse
from .perceptual.masking import masking
from .precision import FILL_MODES, read_band_groups, write_band_groups


@dataclass(frozen=True)
class LayerCode:
    """One layer of one frame as the encoder writes it."""

    payload: bytes
    #: word offsets of the suffixes that decode the first j segments, j = 1 .. S-1
    cuts: tuple[int, ...]
    #: perceptual priority per segment (0 .. 255, higher = kept first)
    slopes: bytes


@dataclass
class FrameDecode:
    """What :func:`decode_frame` returns."""

    pcm: np.ndarray  # int64 (n, channels)
    envelope: np.ndarray  # int64 (channels, bands, slots): the coded band energies
    #: (bands, slots): how many precision groups of its wavelet band the tier codes there
    #: (0 = not coded, 1 = anchor only, ..., groups = exact)
    coded: np.ndarray
    exact: bool  # every layer complete: pcm is the original
    #: every layer holds the frame's first segment: its first samples are the original's
    #: (layers are kept as prefixes of segments, so a frame's end is its least precise)
    head_exact: bool = False


def num_segments(num_samples: int, segment_length: int) -> int:
    """Segments of a frame (the last may be short)."""
    return max(1, -(-num_samples // segment_length))


def band_shift(band: int, levels: int) -> int:
    """log2 of the samples one coefficient of ``band`` spans (band 0 = coarse)."""
    return levels if band == 0 else levels - band + 1


def segment_bounds(size: int, shift: int, segments: int, segment_length: int) -> np.ndarray:
    """Coefficient index where every segment of a band starts, and the band's size."""
    j = np.arange(segments + 1, dtype=np.int64)
    return np.minimum((j * segment_length) >> shift, size)


def frame_slots(model: HybridModel, sample_rate: int, num_samples: int, last: bool) -> int:
    """Envelope slots of a frame: one per hop, and one more in the stream's last frame."""
    hop = model.envelope_grid(sample_rate).hop
    return -(-num_samples // hop) + (1 if last else 0)


def check_segments(lay: _FrameLayout, segments: dict[int, int], total: int,
                   empty: frozenset[int] = frozenset()) -> str | None:
    """Why a choice of kept segments per layer id violates a dependency, or None.

    ``segments[k]`` = segments of layer k kept (0 = dropped, ``total`` = complete).
    A layer in ``empty`` (carried, with no symbols at all) constrains nothing and is
    constrained by nothing: it reads the same at any cut.
    """
    def kept(band: int, group: int) -> int:
        k = lay.layer_of[(band, group)]
        return total if k in empty else segments.get(k, 0)

    if kept(0, 0) != total:
        return "layer 0 is incomplete"
    for band in range(lay.levels + 1):
        for group in range(1, lay.groups):
            if lay.layer_of[(band, group)] not in empty and \
                    kept(band, group) > kept(band, group - 1):
                return f"layer {lay.layer_of[(band, group)]} reaches past its anchor"
        if band and lay.layer_of[(band, 0)] not in empty:
            above, here = kept(band - 1, 0), kept(band, 0)
            if here and above != total and here > above - 1:
                return (f"layer {lay.layer_of[(band, 0)]} does not stop a segment before the "
                        f"anchor of the band above")
    return None


def encode_frame(model: HybridModel, pcm: np.ndarray, sample_rate: int, *,
                 before: np.ndarray | None = None, after: np.ndarray | None = None,
                 last: bool = True, bits_per_sample: int = 16, merged: bool = False
                 ) -> list[tuple[int, LayerCode]]:
    """Code one frame of int PCM (n, channels); returns every layer in layer-id order.

    ``before`` / ``after``: the stream's samples just before and after the frame (one hop
    and two hops; fewer or None at the stream's edges), which the envelope's windows at
    the frame's edges cover. ``last``: the stream's last frame (one more envelope slot).
    ``bits_per_sample``: the source's depth (the threshold in quiet is set by it).
    ``merged``: all layers in one word stream (returned as layer 0, no cuts): a short
    clip saves the container entries and the coder's end words of every layer, and can
    then only be kept or dropped whole.
    """
    lay = _FrameLayout(model)
    cfg = model.config
    n, nch = pcm.shape
    code = analyse_frame(model, pcm)
    writers = [SymbolWriter()] * len(lay.order) if merged else \
        [SymbolWriter() for _ in lay.order]
    w0 = writers[0]
    write_frame_params(w0, code)
    for bands in code.channels:
        for band_code in bands:
            w0.uniform(np.array([band_code.planes]), PLANES_BITS)
            write_classes(w0, band_code.classes, model.tables)
    grid = model.envelope_grid(sample_rate)
    before = np.zeros((0, nch), np.int64) if before is None else np.asarray(before)
    after = np.zeros((0, nch), np.int64) if after is None else np.asarray(after)
    context = np.concatenate([before, pcm, after], axis=0)
    slots = frame_slots(model, sample_rate, n, last)
    spectra, power = analyse(context, -before.shape[0], grid, 0, slots)
    coder = model.envelope_coder(sample_rate)
    q = np.stack([coder.quantise(p) for p in power]) if nch else \
        np.zeros((0, grid.num_bands, slots), np.int64)
    for c in range(nch):
        coder.write(w0, q[c])
    segments = num_segments(n, cfg.segment_length)
    all_bounds = []
    for band in range(lay.levels + 1):
        group_ids = [lay.layer_of[(band, g)] for g in range(lay.groups)]
        group_writers = [writers[k] for k in group_ids]
        size = code.channels[0][band].residuals.size if nch else 0
        bounds = segment_bounds(size, band_shift(band, lay.levels), segments,
                                cfg.segment_length)
        all_bounds.append(bounds)
        for j in range(segments):
            if j and not merged:
                for k, w in zip(group_ids, group_writers):
                    if k:
                        w.mark()
            a, b = bounds[j], bounds[j + 1]
            for bands in code.channels:
                bc = bands[band]
                write_band_groups(group_writers, bc.residuals[a:b], bc.per[a:b],
                                  lay.planes(bc.planes), exact=True)
    if merged:
        return [(0, LayerCode(writers[0].finish(), (), b"\xff"))]
    finished = [w.finish_with_cuts() for w in writers]
    sizes = {k: segment_sizes(len(p), cuts, segments) for k, (p, cuts) in enumerate(finished)}
    masks = [masking(sp, pw, grid, bits_per_sample) for sp, pw in zip(spectra, power)]
    pri = frame_slopes(model, code, lay, grid, power, masks, all_bounds, sizes,
                       cfg.segment_length)
    out = []
    for k, (payload, cuts) in enumerate(finished):
        out.append((k, LayerCode(payload, () if k == 0 else tuple(cuts), pri[k])))
    return out


def segment_sizes(length: int, cuts: tuple[int, ...], segments: int) -> np.ndarray:
    """Bytes each segment of a layer adds (from its cut table; all but the last cut)."""
    prefix = [length - 4 * c for c in cuts[: segments - 1]] + [length]
    return np.diff(np.concatenate([[0], np.asarray(prefix, np.int64)]))


def decode_frame(model: HybridModel, units: list[tuple[int, int, bytes, int]], n: int,
                 nch: int, sample_rate: int, where: str = "frame", *, bits: int = 24,
                 fill: str = "sample", seed: int = 0, frame_index: int = 0,
                 last: bool = True, structure: bool = False) -> FrameDecode:
    """Inverse of :func:`encode_frame` for the layers a stream carries.

    ``units``: ``(first layer, layer count, payload, segments)``: a payload holding one
    layer (possibly cut to its first ``segments`` segments) or several complete layers
    in one word stream; a layer no unit covers is dropped (an empty layer comes as a unit
    with no payload and every segment). With every layer complete the result is exact;
    otherwise
    bands are reconstructed where their anchor is present (``fill`` chooses how missing
    refinement inside a coded band is drawn, as in formats 1-3) and the rest is left for
    the decoder's fill.
    """
    if fill not in FILL_MODES:
        raise UsageError(f"unknown fill mode {fill!r} (choose from {', '.join(FILL_MODES)})")
    lay = _FrameLayout(model)
    cfg = model.config
    L = lay.levels
    total = num_segments(n, cfg.segment_length)
    kept: dict[int, int] = {}
    readers: dict[int, SymbolReader] = {}
    unit_readers = []
    for first, count, payload, segs in units:
        if count < 1 or first < 0 or first + count > len(lay.order) or not 0 <= segs <= total \
                or (count > 1 and segs != total) or any(k in kept for k in
                                                         range(first, first + count)):
            raise CorruptStreamError(f"{where}: layer ids or segment counts out of range")
        rd = SymbolReader(payload, f"{where} layer {first}")
        unit_readers.append((rd, segs == total))
        for k in range(first, first + count):
            kept[k] = segs
            if segs:
                readers[k] = rd
    empty = frozenset(k for first, count, payload, segs in units if not payload and segs
                      for k in range(first, first + count))
    problem = check_segments(lay, kept, total, empty)
    if problem:
        raise CorruptStreamError(f"{where}: {problem}")
    exact = all(kept.get(k, 0) == total for k in range(len(lay.order)))
    head_exact = all(kept.get(k, 0) >= min(total, 1) for k in range(len(lay.order)))
    r0 = readers[0]
    mode, shifts, block_shifts = read_frame_params(r0, model, nch, n, where)
    block = cfg.shift_block
    sizes = lay.band_sizes(n)
    planes = np.zeros((nch, L + 1), np.int64)
    envelopes = []
    for c in range(nch):
        env_c = []
        for b, size in enumerate(sizes):
            planes[c, b] = int(r0.uniform(1, PLANES_BITS)[0])
            env_c.append(read_classes(r0, -(-size // lay.block(b)), model.tables))
        envelopes.append(env_c)
    if planes.max(initial=0) > lay.max_planes:
        raise CorruptStreamError(f"{where}: anchor planes out of range")
    grid = model.envelope_grid(sample_rate)
    slots = frame_slots(model, sample_rate, n, last)
    coder = model.envelope_coder(sample_rate)
    q = np.stack([coder.read(r0, grid.num_bands, slots) for _ in range(nch)]) if nch else \
        np.zeros((0, grid.num_bands, slots), np.int64)
    # per band, for every group: coefficients it covers (prefix of segments)
    coverage = np.zeros((L + 1, lay.groups), np.int64)
    anchor_coarse = [None] * nch
    out = [None] * nch
    lossy_draw = fill == "sample" and not exact
    for band, size in enumerate(sizes):
        group_ids = [lay.layer_of[(band, g)] for g in range(lay.groups)]
        bounds = segment_bounds(size, band_shift(band, L), total, cfg.segment_length)
        have = kept.get(group_ids[0], 0)
        coverage[band] = [bounds[kept.get(k, 0)] for k in group_ids]
        per = [np.repeat(envelopes[c][band], lay.block(band))[:size] for c in range(nch)]
        r_anchor = [np.zeros(size, np.int64) for _ in range(nch)]
        r_est = [np.zeros(size, np.int64) for _ in range(nch)]
        rngs = [np.random.default_rng([seed, frame_index, c, band]) if lossy_draw else None
                for c in range(nch)]
        for j in range(have):
            gr = [readers.get(k) if kept.get(k, 0) > j else None for k in group_ids]
            a, b = bounds[j], bounds[j + 1]
            for c in range(nch):
                ra, re, _ = read_band_groups(gr, per[c][a:b], lay.planes(int(planes[c, band])),
                                             fill, rngs[c], exact=True)
                r_anchor[c][a:b], r_est[c][a:b] = ra, re
        K = int(coverage[band, 0])
        anchors = []
        for c in range(nch):
            # the previous channel's anchors of this band (cross-channel context)
            ref = anchors[c - 1] if c and cfg.cross_channel else None
            feats = lay.features(band, anchor_coarse[c], size, ref)
            anchor = np.zeros(size, np.int64)
            if K:
                silent = per[c][:K] == ZERO_CLASS
                anchor[:K] = lay.cascade(band).reconstruct(r_anchor[c][:K], feats[:K], silent)
            anchors.append(anchor)
            values = anchor.copy()
            values[:K] += r_est[c][:K] - r_anchor[c][:K]
            if structure and band and K < size:
                # the prior's mean from the band above: what the model expects here
                values[K:] = prior_mean(model, lay.level_index(band), out[c], size)[K:]
            anchor_coarse[c] = lay.synthesise(band, anchor_coarse[c], anchor)
            out[c] = lay.synthesise(band, out[c], values)
    for rd, complete in unit_readers:
        if complete:
            rd.finish()
    signals = [o if o is not None else np.zeros(n, np.int64) for o in out]
    if block:
        signals = [ch.shift_blocks(x, s, block, up=True) for x, s in zip(signals, block_shifts)]
    if nch == 2:
        signals = list(ch.correlate(signals[0], signals[1], mode))
    if nch == 0:
        pcm = np.zeros((n, 0), np.int64)
    else:
        pcm = np.stack([x << int(k) for x, k in zip(signals, shifts)], axis=1)
    if not exact:
        pcm = np.clip(pcm, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    # precision per envelope band and slot: how many of its band's groups, from the anchor
    # on, reach it. A complete group reaches every slot (also the stream's last one,
    # centred past the end); a group past one that stops short counts for nothing there
    # (an empty refinement is "complete" however little of its anchor is kept).
    complete = np.array([[kept.get(lay.layer_of[(band, g)], 0) == total
                          for g in range(lay.groups)] for band in range(L + 1)])
    coded = np.zeros((grid.num_bands, slots), np.int64)
    centres = np.arange(slots, dtype=np.int64) * grid.hop
    for e, level in enumerate(grid.band_level):
        band = L - level + 1
        pos = centres >> band_shift(band, L)
        reach = (pos[:, None] < coverage[band][None, :]) | complete[band][None, :]
        coded[e] = np.cumprod(reach, axis=1).sum(axis=1)
    return FrameDecode(pcm, q, coded, exact, head_exact)

