"""Cutting a stream down to a lower tier without re-encoding.

A tier is a prefix of the model's layer order (:mod:`hybridcodec.tiers`): truncation
keeps layers ``0 .. K-1`` of every frame and keeps the MD5 of the original PCM (which a
lossless decode must still reproduce). Encoding at a tier is encoding losslessly and then
truncating, so the two always give the same bytes.

A version 4 stream is cut frame by frame with :func:`hybridcodec.format.truncate_frame`
(layers ``K ..`` dropped) and says its tier in the header's tier field (a named tier's
code from :data:`TIER_CODES`, or the rate target); a compact stream stays compact. A
stream of versions 1-3 stays in its version: ``num_layers = K`` and the tier's name in
its JSON header.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from dataclasses import dataclass

from .atomic import atomic_output
from .container import (TIER_NAMED, TIER_NAMES, TIER_RATE, UNLISTED_EMPTY, Frame,
                        StreamHeader, StreamReader, StreamWriter, read_stream_layout,
                        truncate_frame, write_compact)
from .errors import InputFileError, UsageError
from .format import v4
from .format.common import MAX_TIER_RATE, metadata_chunk
from .layer_units import GROUPS_KEY, layer_groups
from .tiers import SLOPE_TIERS, TIERS, layer_order, layers_for_tier

__all__ = ["GROUPS_KEY", "LAYER_FRAMING", "TIER_CODES", "TruncateReport", "tier_layers",
           "truncate_file", "tier_header"]

LAYER_FRAMING = 9  # versions 1-3, per layer in a frame: table entry (id u8, length u32) + CRC
#: Named tier -> the code a version 4 header stores (append-only; see TIER_NAMES).
TIER_CODES = {name: code for code, name in TIER_NAMES.items()}


@dataclass
class TruncateReport:
    """What a truncation kept."""

    tier: str
    layers: int  # layers kept per frame
    input_bytes: int
    output_bytes: int
    num_samples: int
    sample_rate: int
    channels: int
    bits_per_sample: int = 0  # with the above: the raw PCM size the CLI's "% of PCM" uses


def _check_request(tier: str | None, kbps: float | None) -> None:
    if (tier is None) == (kbps is None):
        raise UsageError("give exactly one of a tier name or a bit rate (kbps)")
    if tier is not None and tier not in TIERS:
        raise UsageError(f"unknown tier {tier!r} (choose from {', '.join(TIERS)})")
    if kbps is not None and not kbps > 0:
        raise UsageError(f"bit rate must be positive, got {kbps}")


def _budget(header: StreamHeader, kbps: float) -> float:
    seconds = max(header.num_samples / header.sample_rate, 1e-9)
    return kbps * 1000 * seconds / 8


def tier_layers(layout, tier: str | None, kbps: float | None) -> tuple[str, int]:
    """(tier label, layers to keep) of a version 1-3 stream for a named tier or a
    bit-rate ceiling (``layout``: its :func:`read_stream_layout`)."""
    h = layout.header
    groups = layer_groups(h)
    full = (h.levels + 1) * groups
    _check_request(tier, kbps)
    if tier is not None:
        return tier, layers_for_tier(tier, h.levels, groups) if tier != "lossless" else full
    budget = _budget(h, kbps)
    # Bytes that every tier pays: header, frame headers, end chunk (framing_bytes less the
    # 9-byte table entry + CRC of every carried layer); then each layer's payload + those.
    carried = sum(layout.layer_frames.get(layer, 0) for layer in range(h.num_layers))
    size = layout.header_bytes + layout.framing_bytes - LAYER_FRAMING * carried
    keep = 1
    for layer in range(h.num_layers):
        size += layout.layer_bytes.get(layer, 0) + LAYER_FRAMING * layout.layer_frames.get(layer, 0)
        if layer == 0 or size <= budget:
            keep = layer + 1
        else:
            break
    return (("lossless" if keep == full else f"{kbps:g}kbps"), keep)


def tier_header(header: StreamHeader, tier: str | None, kbps: float | None,
                keep: int) -> StreamHeader:
    """``header`` of a version 4 stream relabelled for a truncation to ``keep`` layers,
    asked for as a named ``tier`` or a ceiling of ``kbps``."""
    if tier == "lossless" or (tier is None and keep == header.num_layers):
        return header
    if tier is not None:
        if tier not in TIER_CODES:  # a tier added to tiers.TIERS but not to the registry
            raise ValueError(f"tier {tier!r} has no code in TIER_NAMES "
                             f"(hybridcodec/format/registry.py): append one")
        return dataclasses.replace(header, tier_kind=TIER_NAMED, tier_code=TIER_CODES[tier],
                                   tier_rate=0)
    rate = min(max(round(kbps * 10), 1), MAX_TIER_RATE)
    return dataclasses.replace(header, tier_kind=TIER_RATE, tier_code=0, tier_rate=rate)


def _drop_from(keep: int, num_layers: int) -> dict[int, int]:
    return {layer: 0 for layer in range(keep, num_layers)}


@dataclass
class _Scan:
    """One pass over a version 4 stream: what a truncation needs to know."""

    compact: bool
    carried: int  # layers carried (the most any frame carries)
    #: per number of layers kept (index keep - 1): the sizes of the frame chunks, or for
    #: a compact stream the bytes that are not the header body
    sizes: list[list[int]]


def _scan_v4(path, sizes: bool) -> _Scan:
    """Check the whole stream; with ``sizes``, measure every truncation of it exactly."""
    with open(path, "rb") as fp:
        reader = StreamReader(fp)
        h = reader.header
        carried = 0
        frames = 0
        per_keep: list[list[int]] = [[] for _ in range(h.num_layers)]
        # a cut frame is not complete: measure it as part of a lower tier
        lower = dataclasses.replace(h, tier_kind=TIER_RATE, tier_code=0, tier_rate=1)
        for frame in reader.frames():
            frames += 1
            held = v4.carried_layers(frame.units, frame.flags, h.num_layers)
            carried = max(carried, max((k + 1 for k, c in enumerate(held) if c), default=0))
            if not sizes:
                continue
            for keep in range(1, h.num_layers + 1):
                cut = truncate_frame(h, frame, _drop_from(keep, h.num_layers))
                hk = h if keep == h.num_layers else lower
                if reader.compact:  # one frame: build it (the MD5's value does not matter)
                    size = len(v4.compact_bytes(hk, cut, bytes(16))) - len(v4.header_body(hk))
                else:
                    size = v4.frame_chunk_size(cut, hk)
                per_keep[keep - 1].append(size)
    if frames == 0:
        carried = h.num_layers  # no frame: nothing that could be missing
    return _Scan(reader.compact, carried, per_keep)


def _v4_size(header: StreamHeader, scan: _Scan, keep: int) -> int:
    """Bytes of the stream truncated to ``keep`` layers, with ``header``."""
    chunks = scan.sizes[keep - 1]
    if scan.compact:
        return len(v4.header_body(header)) + chunks[0]
    size = len(v4.header_chunk(header, 0))
    if header.metadata is not None:
        size += len(metadata_chunk(bytes(header.metadata)))
    if len(chunks) > 1:  # StreamWriter's rule: an index from two frames on
        offsets, at = [], size
        for chunk in chunks:
            offsets.append(at)
            at += chunk
        size += len(v4.index_bytes(offsets))
    return size + sum(chunks) + v4.END_CHUNK_SIZE


def truncate_file(src: str | os.PathLike, dst: str | os.PathLike, *, tier: str | None = None,
                  kbps: float | None = None, overwrite: bool = False) -> TruncateReport:
    """Write ``src`` cut down to ``tier`` (a name from TIERS) or to at most ``kbps``."""
    _check_request(tier, kbps)
    try:
        with open(src, "rb") as fp:
            version = StreamReader(fp, recover=True).header.version
    except OSError as exc:
        raise InputFileError(f"{os.fspath(src)}: cannot open: {exc.strerror or exc}") from None
    if version < 4:
        return _truncate_legacy(src, dst, tier, kbps, overwrite)
    return _truncate_v4(src, dst, tier, kbps, overwrite)


def _too_high(src, header: StreamHeader, carried: int) -> UsageError:
    return UsageError(f"{os.fspath(src)}: is already at tier {header.tier!r} ({carried} "
                      f"layers); a truncation can only drop layers")


def _plan_segmented(src, header: StreamHeader, tier: str | None, budget: float | None,
                    shave: float = 0.0) -> tuple[dict[int, dict[int, int]], int]:
    """Per frame, the segments to keep of every layer (format 4 payload), and the
    stream's size with them: the allocator (hybridcodec.perceptual.allocation) over the
    slopes and cut tables the encoder recorded."""
    from .perceptual.allocation import UnitInfo, choose

    order = layer_order(header.levels, header.groups)
    layer_of = {bg: k for k, bg in enumerate(order)}
    units, segments = [], {}
    whole = []  # (frame, first, end, S) of the units kept or dropped whole
    with open(src, "rb") as fp:
        for frame in StreamReader(fp).frames():
            f = frame.index
            S = header.frame_segments(f)
            segments[f] = S
            covered = set()
            for unit in frame.units:
                held = unit.segments(S)
                covered.update(range(unit.first, unit.end))
                band, group = order[unit.first]
                if unit.count > 1 or unit.first == 0:  # whole or nothing, and needed
                    whole.append((f, unit.first, unit.end, S))
                    units.append(UnitInfo(f, unit.first, band, group,
                                          np.array([len(unit.payload)] + [0] * (S - 1)),
                                          np.full(S, 255), S))
                    for layer in range(unit.first + 1, unit.end):
                        b, g = order[layer]
                        units.append(UnitInfo(f, layer, b, g, np.zeros(S, np.int64),
                                              np.full(S, 255), S))
                    continue
                if unit.cuttable:
                    bounds = [len(unit.payload) - 4 * c for c in unit.cuts] + [len(unit.payload)]
                    sizes = np.diff(np.concatenate([[0], bounds]))
                    slopes = np.frombuffer(bytes(unit.slopes), np.uint8).astype(np.int64)
                else:  # a frame of one segment
                    sizes = np.array([len(unit.payload)] + [0] * (S - 1))
                    slopes = np.full(S, int(unit.slopes[0]) if unit.slopes else 0)
                units.append(UnitInfo(f, unit.first, band, group, sizes, slopes[:held], held))
            if frame.flags & UNLISTED_EMPTY:  # empty layers: free, and never in the way
                for layer in set(range(header.num_layers)) - covered:
                    b, g = order[layer]
                    units.append(UnitInfo(f, layer, b, g, np.zeros(S, np.int64),
                                          np.full(S, 255), S))
    if budget is not None:
        # container bytes beyond the payloads: a frame's unit entry with its cut table
        # and slopes, about two bytes per kept segment and three per kept layer
        fixed = _fixed_bytes(src, header)
        kept = choose(units, segments, header.levels, header.groups, layer_of,
                      budget=budget - shave, fixed=fixed, layer_overhead=3,
                      segment_overhead=2)
    else:
        kept = choose(units, segments, header.levels, header.groups, layer_of,
                      threshold=SLOPE_TIERS[tier])
    # a unit that is not cut is kept whole, with every layer it covers, or dropped (as
    # truncate_frame does): its layers say so, so that a frame kept whole reads as complete
    for f, first, end, S in whole:
        keep = S if kept[(f, first)] else 0
        for layer in range(first, end):
            kept[(f, layer)] = keep
    plan: dict[int, dict[int, int]] = {}
    for (f, layer), k in kept.items():
        plan.setdefault(f, {})[layer] = k
    return plan, segments


def _fixed_bytes(src, header: StreamHeader) -> int:
    layout = read_stream_layout(src)
    return layout.header_bytes + 64  # header, metadata; end chunk and index, about


def _write_segmented(src, dst, header: StreamHeader, plan, overwrite: bool) -> None:
    with open(src, "rb") as fp, atomic_output(dst, overwrite=overwrite) as out:
        stream = StreamReader(fp)
        h = stream.header
        if stream.compact:
            (frame,) = stream.frames()
            write_compact(out, header, truncate_frame(h, frame, plan.get(0, {})),
                          stream.footer.md5)
            return
        writer = StreamWriter(out, header)
        for frame in stream.frames():
            writer.write_frame(truncate_frame(h, frame, plan.get(frame.index, {})))
        writer.finish(stream.footer.md5)


def _truncate_segmented(src, dst, tier, kbps, overwrite) -> TruncateReport:
    """Format 4 payload: units chosen by perceptual slope, for a named tier or a rate."""
    with open(src, "rb") as fp:
        h = StreamReader(fp).header
    own = SLOPE_TIERS.get(h.tier)  # the stream's own named tier, if it has one
    if tier == "lossless" and not h.complete or (
            tier is not None and tier != "lossless" and own is not None
            and SLOPE_TIERS[tier] < own):
        raise UsageError(f"{os.fspath(src)}: is already at tier {h.tier!r}; a truncation "
                         f"can only drop layers")
    if tier == "lossless":
        header = h
        plan = {}
    else:
        budget = _budget(h, kbps) if kbps is not None else None
        shave = 0.0
        for _ in range(6):  # the container's bytes are estimated: measure, correct
            plan, segments = _plan_segmented(src, h, tier, budget, shave)
            complete = all(k == segments[f] for f, layers in plan.items()
                           for k in layers.values())
            header = h if complete and h.complete else tier_header(h, tier, kbps, 1)
            _write_segmented(src, dst, header, plan, overwrite)
            size = os.path.getsize(dst)
            if budget is None or size <= budget:
                break
            shave += size - budget + 16
            overwrite = True
    if not plan:
        _write_segmented(src, dst, header, plan, overwrite)
    kept = max((sum(1 for k in layers.values() if k) for layers in plan.values()),
               default=h.num_layers)
    return TruncateReport(header.tier, kept, os.path.getsize(src), os.path.getsize(dst),
                          h.num_samples, h.sample_rate, h.channels, h.bits_per_sample)


def _truncate_v4(src, dst, tier, kbps, overwrite) -> TruncateReport:
    with open(src, "rb") as fp:
        h = StreamReader(fp).header
    if h.segment_length < h.frame_length:  # the segmented payload (format 4 models)
        return _truncate_segmented(src, dst, tier, kbps, overwrite)
    scan = _scan_v4(src, sizes=kbps is not None)
    with open(src, "rb") as fp:
        h = StreamReader(fp).header
    full = h.num_layers
    if tier is not None:
        keep = full if tier == "lossless" else layers_for_tier(tier, h.levels, h.groups)
        if keep > scan.carried:
            raise _too_high(src, h, scan.carried)
    else:
        budget = _budget(h, kbps)
        keep = 1
        for candidate in range(2, scan.carried + 1):
            if _v4_size(tier_header(h, None, kbps, candidate), scan, candidate) > budget:
                break
            keep = candidate
    header = tier_header(h, tier, kbps, keep)
    drop = _drop_from(keep, full)
    with open(src, "rb") as fp, atomic_output(dst, overwrite=overwrite) as out:
        stream = StreamReader(fp)
        if stream.compact:
            (frame,) = stream.frames()
            write_compact(out, header, truncate_frame(h, frame, drop), stream.footer.md5)
        else:
            writer = StreamWriter(out, header)
            for frame in stream.frames():
                writer.write_frame(truncate_frame(h, frame, drop))
            writer.finish(stream.footer.md5)
    return TruncateReport(header.tier, keep, os.path.getsize(src), os.path.getsize(dst),
                          h.num_samples, h.sample_rate, h.channels, h.bits_per_sample)


def _truncate_legacy(src, dst, tier, kbps, overwrite) -> TruncateReport:
    layout = read_stream_layout(src)
    label, keep = tier_layers(layout, tier, kbps)
    h = layout.header
    if keep > h.num_layers:
        raise _too_high(src, h, h.num_layers)
    header = dataclasses.replace(h, num_layers=keep, tier=label)
    with open(src, "rb") as fp, atomic_output(dst, overwrite=overwrite) as out:
        stream = StreamReader(fp)
        writer = StreamWriter(out, header)
        for frame in stream.frames():
            writer.write_frame(Frame(frame.index, frame.num_samples,
                                     tuple((k, p) for k, p in frame.layers if k < keep)))
        writer.finish(stream.footer.md5)
    return TruncateReport(label, keep, os.path.getsize(src), os.path.getsize(dst),
                          h.num_samples, h.sample_rate, h.channels, h.bits_per_sample)
