"""The layered payload of :mod:`hybridcodec.framecodec` in version 4 units.

The frame codec codes a frame as layers ``[(layer_id, payload)]``, one ANS stream each,
and decodes from ``{layer_id: payload}`` plus the number of layers the stream carries (a
prefix of the layer order). In a version 4 stream each non-empty layer is one unit
(count 1, complete and not cuttable, slope 0) and a complete frame says that unlisted
layers are empty (UNLISTED_EMPTY); a truncated frame lists every layer it keeps, empty
ones as zero-length units (:func:`hybridcodec.format.truncate_frame` does that). Streams
of versions 1-3 carry the layers themselves.
"""

from __future__ import annotations

from .container import UNLISTED_EMPTY, Frame, StreamHeader, Unit
from .format.common import UNIT_COMPLETE, UNIT_CUTTABLE
from .errors import CorruptStreamError
from .format.v4 import carried_layers

__all__ = ["GROUPS_KEY", "MERGE_BELOW", "layer_groups", "frame_from_layers", "layers_from_frame",
           "frame_from_codes", "units_for_decoder"]

GROUPS_KEY = "layer_groups"  # versions 1-3 header extra: precision groups per band


def layer_groups(header: StreamHeader) -> int:
    """Precision groups per band (version 4: in the header; 1-3: in its extra keys)."""
    if header.version >= 4:
        return int(header.groups)
    groups = header.extra.get(GROUPS_KEY)
    if isinstance(groups, bool) or not isinstance(groups, int) or not 1 <= groups <= 64:
        raise CorruptStreamError(f"header: {GROUPS_KEY} missing or out of range")
    return groups


def frame_from_layers(header: StreamHeader, index: int, num_samples: int,
                      layers) -> Frame:
    """The frame of a stream with ``header`` that holds the frame codec's ``layers``."""
    if header.version < 4:
        return Frame(index, num_samples, tuple(layers))
    units = tuple(Unit(layer, 1, payload) for layer, payload in layers if payload)
    return Frame(index, num_samples, units=units, flags=UNLISTED_EMPTY)


def layers_from_frame(header: StreamHeader, frame: Frame,
                      where: str) -> tuple[dict[int, bytes], int]:
    """({layer_id: payload}, layers carried) of ``frame``, for ``decode_frame``.

    A version 4 frame must carry a prefix of the layers, layer 0 included, each whole in
    one unit of its own (or an empty multi-layer unit): that is all this payload codes.
    """
    if frame.units is None:
        return dict(frame.layers), header.num_layers
    layers: dict[int, bytes] = {}
    for unit in frame.units:
        if unit.truncated:
            raise CorruptStreamError(f"{where}: layer {unit.first} is cut to "
                                     f"{unit.state - 1} segments; this payload codes whole "
                                     f"layers only")
        if unit.count > 1 and unit.payload:
            raise CorruptStreamError(f"{where}: one payload for layers {unit.first}.."
                                     f"{unit.end - 1}; this payload codes one per layer")
        for layer in range(unit.first, unit.end):
            layers[layer] = unit.payload if unit.count == 1 else b""
    held = carried_layers(frame.units, frame.flags, header.num_layers)
    carried = held.index(False) if False in held else len(held)
    if any(held[carried:]):
        raise CorruptStreamError(f"{where}: carries layers that are not a prefix of the "
                                 f"layer order")
    if carried == 0:
        raise CorruptStreamError(f"{where}: does not carry layer 0")
    layers = {k: p for k, p in layers.items() if k < carried}
    layers.setdefault(0, b"")
    return layers, carried


#: A one-frame stream shorter than this is coded as one unit (format 4 payload): it saves
#: a container entry and the coder's closing words per layer, which is most of what a
#: short clip's container costs; such a clip can only be kept or dropped whole.
MERGE_BELOW = 1 << 16


def frame_from_codes(header: StreamHeader, index: int, num_samples: int, codes,
                     merged: bool = False) -> Frame:
    """The frame of a format 4 payload (:func:`hybridcodec.segmented.encode_frame`'s
    ``[(layer, LayerCode)]``): every non-empty layer one unit, cuttable into its
    segments when the frame has more than one; ``merged``: one unit for every layer."""
    segments = header.frame_segments(index)
    if merged:
        (layer, code), = codes
        units = (Unit(0, header.num_layers, code.payload, UNIT_COMPLETE, (), code.slopes[:1]),)
        return Frame(index, num_samples, units=units, flags=UNLISTED_EMPTY)
    units = []
    for layer, code in codes:
        if not code.payload:
            continue
        if layer == 0 or segments == 1:
            units.append(Unit(layer, 1, code.payload, UNIT_COMPLETE, (), code.slopes[:1]))
        else:
            units.append(Unit(layer, 1, code.payload, UNIT_CUTTABLE, tuple(code.cuts),
                              bytes(code.slopes)))
    return Frame(index, num_samples, units=tuple(units), flags=UNLISTED_EMPTY)


def units_for_decoder(header: StreamHeader, frame: Frame) -> list[tuple[int, int, bytes, int]]:
    """``(first, count, payload, segments)`` of every unit of a format 4 frame, for
    :func:`hybridcodec.segmented.decode_frame`; empty layers of a complete frame as empty
    units holding every segment."""
    segments = header.frame_segments(frame.index)
    out = []
    for unit in frame.units or ():
        held = unit.state - 1 if unit.truncated else segments
        out.append((unit.first, unit.count, bytes(unit.payload), held))
    if frame.flags & UNLISTED_EMPTY:
        covered = carried_layers(frame.units or (), 0, header.num_layers)
        out += [(layer, 1, b"", segments) for layer in range(header.num_layers)
                if not covered[layer]]
    return sorted(out)
