"""Cutting a stream down to a lower tier without re-encoding.

A tier is a prefix of the model's layer order (:mod:`hybridcodec.tiers`): truncation
keeps layers ``0 .. K-1`` of every frame, writes ``num_layers = K`` and the tier's name in
the header, and keeps the end chunk (the MD5 of the original PCM, which a lossless decode
must still reproduce). Encoding at a tier is encoding losslessly and then truncating, so
the two always give the same bytes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .atomic import atomic_output
from .container import Frame, StreamReader, read_stream_layout, write_footer, write_frame, \
    write_header
from .errors import InputFileError, UsageError
from .tiers import TIERS, layers_for_tier

GROUPS_KEY = "layer_groups"  # header extra: precision groups per band (model-defined)
LAYER_FRAMING = 9  # per layer in a frame: table entry (id u8, length u32) + payload CRC


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


def tier_layers(layout, tier: str | None, kbps: float | None) -> tuple[str, int]:
    """(tier label, layers to keep) for a named tier or a bit-rate ceiling."""
    h = layout.header
    groups = int(h.extra.get(GROUPS_KEY, 1))
    full = (h.levels + 1) * groups
    if (tier is None) == (kbps is None):
        raise UsageError("give exactly one of a tier name or a bit rate (kbps)")
    if tier is not None:
        return tier, layers_for_tier(tier, h.levels, groups) if tier != "lossless" else full
    if not kbps > 0:
        raise UsageError(f"bit rate must be positive, got {kbps}")
    seconds = max(h.num_samples / h.sample_rate, 1e-9)
    budget = kbps * 1000 * seconds / 8
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


def truncate_file(src: str | os.PathLike, dst: str | os.PathLike, *, tier: str | None = None,
                  kbps: float | None = None, overwrite: bool = False) -> TruncateReport:
    """Write ``src`` cut down to ``tier`` (a name from TIERS) or to at most ``kbps``."""
    if tier is not None and tier not in TIERS:
        raise UsageError(f"unknown tier {tier!r} (choose from {', '.join(TIERS)})")
    try:
        with open(src, "rb") as fp:
            layout = read_stream_layout(fp)
    except OSError as exc:
        raise InputFileError(f"{os.fspath(src)}: cannot open: {exc.strerror or exc}") from None
    label, keep = tier_layers(layout, tier, kbps)
    h = layout.header
    if keep > h.num_layers:
        raise UsageError(f"{os.fspath(src)}: is already at tier {h.tier!r} ({h.num_layers} "
                         f"layers); a truncation can only drop layers")
    header = dataclasses.replace(h, num_layers=keep, tier=label)
    with open(src, "rb") as fp, atomic_output(dst, overwrite=overwrite) as out:
        stream = StreamReader(fp)
        write_header(out, header)
        for frame in stream.frames():
            write_frame(out, Frame(frame.index, frame.num_samples,
                                   tuple((k, p) for k, p in frame.layers if k < keep)))
        write_footer(out, stream.footer)
    return TruncateReport(label, keep, os.path.getsize(src), os.path.getsize(dst),
                          h.num_samples, h.sample_rate, h.channels, h.bits_per_sample)
