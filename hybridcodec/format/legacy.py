"""The container of format versions 1-3 (docs/format.md, "Version 1-3 container").

Kept so that old streams decode and so that ``truncate`` of an old stream writes that
stream's own version::

    header  "HYBC" | version u8 | flags u8 | json_len u16 | JSON | crc32
    meta    "HM" | length u32 | blob | crc32                    (optional, version 3)
    frame   "HF" | index u32 | num_samples u32 | num_layers u8
            | num_layers x (layer_id u8, length u32) | crc32
            | num_layers x (payload | crc32 of payload)
    end     "HE" | num_frames u32 | num_samples u64 | md5[16] | crc32
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, BinaryIO

from ..errors import CorruptStreamError
from .common import (CRC_SIZE, END_SYNC, FRAME_SYNC, LEGACY_VERSIONS, MAGIC, MAX_BITS_PER_SAMPLE,
                     MAX_CHANNELS, MAX_FRAME_LENGTH, MAX_LEVELS, MAX_LOST_RUN, MAX_NUM_FRAMES,
                     MAX_NUM_LAYERS, MAX_NUM_SAMPLES, MAX_SAMPLE_RATE, MD5_LEN,
                     MIN_BITS_PER_SAMPLE, MIN_CHANNELS, MIN_FRAME_LENGTH, MIN_NUM_LAYERS,
                     MIN_SAMPLE_RATE, MODEL_ID_RE, Frame, Source, StreamFooter, StreamHeader,
                     check_int, check_str, crc32, metadata_chunk, metadata_problem, pack_crc,
                     payload_bytes, short_repr, unpack_crc)

MAX_JSON_LEN = 2**16 - 1
MAX_LAYER_LEN = 2**32 - 1

_HEADER_FIXED = struct.Struct("<4sBBH")  # magic, version, flags, json_len
_FRAME_FIXED = struct.Struct("<2sIIB")  # sync, index, num_samples, num_layers
_LAYER_ENTRY = struct.Struct("<BI")  # layer_id, length
_END_BODY = struct.Struct("<IQ16s")  # num_frames, num_samples, md5 (after the sync)

HEADER_FIXED_SIZE = _HEADER_FIXED.size + CRC_SIZE  # 12 bytes + json_len
FRAME_FIXED_SIZE = _FRAME_FIXED.size + CRC_SIZE  # 15 bytes + 9 per layer
LAYER_OVERHEAD = _LAYER_ENTRY.size + CRC_SIZE  # 9 bytes per layer (table entry + CRC)
END_CHUNK_SIZE = len(END_SYNC) + _END_BODY.size + CRC_SIZE  # 34 bytes

HEADER_KEYS = (
    "sample_rate",
    "channels",
    "bits_per_sample",
    "subtype",
    "source_format",
    "num_samples",
    "frame_length",
    "model_id",
    "levels",
    "num_layers",
    "tier",
)


# --------------------------------------------------------------------------- header


def header_problem(header: StreamHeader) -> str | None:
    """The first thing wrong with a version 1-3 ``header``, or None."""
    problem = (
        check_int("version", header.version, min(LEGACY_VERSIONS), max(LEGACY_VERSIONS))
        or check_int("sample_rate", header.sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
        or check_int("channels", header.channels, MIN_CHANNELS, MAX_CHANNELS)
        or check_int("bits_per_sample", header.bits_per_sample, MIN_BITS_PER_SAMPLE,
                     MAX_BITS_PER_SAMPLE)
        or check_str("subtype", header.subtype)
        or check_str("source_format", header.source_format)
        or check_int("num_samples", header.num_samples, 0, MAX_NUM_SAMPLES)
        or check_int("frame_length", header.frame_length, MIN_FRAME_LENGTH, MAX_FRAME_LENGTH)
        or check_int("levels", header.levels, 0, MAX_LEVELS)
        or check_int("num_layers", header.num_layers, MIN_NUM_LAYERS, MAX_NUM_LAYERS)
        or check_str("tier", header.tier)
        or check_int("flags", header.flags, 0, 255)
    )
    if problem:
        return problem
    if not isinstance(header.model_id, str) or not MODEL_ID_RE.fullmatch(header.model_id):
        return f"model_id must be 16 lowercase hex digits, got {short_repr(header.model_id)}"
    num_frames = -(-int(header.num_samples) // int(header.frame_length))
    if num_frames > MAX_NUM_FRAMES:
        return (
            f"num_samples / frame_length gives {num_frames} frames, "
            f"more than the {MAX_NUM_FRAMES} a stream can hold"
        )
    problem = metadata_problem(header)
    if problem:
        return problem
    if not isinstance(header.extra, dict):
        return f"extra must be a dict, got {type(header.extra).__name__}"
    for key in header.extra:
        if not isinstance(key, str):
            return f"extra keys must be strings, got {short_repr(key)}"
        if key in HEADER_KEYS:
            return f"extra key {key!r} collides with a header field"
    return None


def dump_json(obj: dict[str, Any], what: str) -> bytes:
    """``obj`` as canonical JSON: ASCII (a subset of UTF-8), compact, keys sorted."""
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"invalid stream header: {what} is not JSON-serializable ({exc})") \
            from None
    data = text.encode("ascii")
    if len(data) > MAX_JSON_LEN:
        raise ValueError(
            f"invalid stream header: {what} is {len(data)} bytes of JSON, "
            f"at most {MAX_JSON_LEN} allowed"
        )
    return data


def header_json(header: StreamHeader) -> bytes:
    """The header's JSON text."""
    obj: dict[str, Any] = dict(header.extra)
    for key in HEADER_KEYS:
        value = getattr(header, key)
        obj[key] = value if isinstance(value, str) else int(value)
    return dump_json(obj, "extra")


def header_chunk_bytes(header: StreamHeader) -> bytes:
    """A version 1-3 header chunk; ``header`` must have passed :func:`header_problem`."""
    body = header_json(header)
    head = _HEADER_FIXED.pack(MAGIC, int(header.version), int(header.flags), len(body))
    return head + body + pack_crc(head, body)


def write_header(fp: BinaryIO, header: StreamHeader) -> None:
    """Write a version 1-3 header chunk and, if ``header.metadata`` is set, its metadata
    chunk. ``header`` must have passed :func:`header_problem`."""
    fp.write(header_chunk_bytes(header))
    if header.metadata is not None:
        fp.write(metadata_chunk(bytes(header.metadata)))


class _JsonProblem(Exception):
    pass


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _JsonProblem(f"duplicate key {short_repr(key)}")
        obj[key] = value
    return obj


def _json_constant(name: str) -> Any:
    raise _JsonProblem(f"non-standard constant {name}")


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JsonProblem(f"number {short_repr(text)} out of range")
    return value


def load_json(body: bytes, what: str) -> Any:
    """Strictly parsed JSON text (docs/format.md, "JSON text"); CorruptStreamError
    starting ``corrupt header: {what}`` on any violation."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptStreamError(f"corrupt header: {what} is not valid UTF-8") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_json_pairs,
            parse_constant=_json_constant,
            parse_float=_json_float,
        )
    except _JsonProblem as exc:
        raise CorruptStreamError(f"corrupt header: invalid {what} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CorruptStreamError(
            f"corrupt header: invalid {what} ({exc.msg} at character {exc.pos})"
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer with too many digits
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptStreamError(f"corrupt header: invalid {what} ({message})") from None


def _parse_header_json(body: bytes, flags: int, version: int) -> StreamHeader:
    obj = load_json(body, "JSON")
    if not isinstance(obj, dict):
        raise CorruptStreamError("corrupt header: JSON is not an object")
    missing = [key for key in HEADER_KEYS if key not in obj]
    if missing:
        raise CorruptStreamError(f"corrupt header: missing field {missing[0]!r}")
    known = {key: obj[key] for key in HEADER_KEYS}
    extra = {key: value for key, value in obj.items() if key not in HEADER_KEYS}
    header = StreamHeader(**known, extra=extra, flags=flags, version=version)
    problem = header_problem(header)
    if problem:
        raise CorruptStreamError(f"corrupt header: {problem}")
    return header


def read_header(src: Source, version: int) -> StreamHeader:
    """The version 1-3 header chunk; the magic and version byte are already consumed."""
    rest = src.read_exact(3, "header chunk")
    flags, json_len = struct.unpack("<BH", rest)
    body = src.read_exact(json_len, f"header chunk ({json_len}-byte JSON)")
    stored = unpack_crc(src.read_exact(CRC_SIZE, "header chunk CRC"))
    computed = crc32(MAGIC, bytes([version]), rest, body)
    if stored != computed:
        raise CorruptStreamError(
            f"corrupt stream: header CRC mismatch (stored {stored:08x}, computed {computed:08x})"
        )
    return _parse_header_json(body, flags, version)


# --------------------------------------------------------------------------- frames


def frame_problem(frame: Frame) -> tuple[list[tuple[int, bytes]], str | None]:
    """(the frame's layers as (id, bytes), the first frame-local rule it breaks or None)."""
    problem = check_int("frame index", frame.index, 0, MAX_NUM_FRAMES - 1) or check_int(
        "frame num_samples", frame.num_samples, 1, MAX_FRAME_LENGTH
    )
    if problem:
        return [], f"invalid frame: {problem}"
    where = f"frame {int(frame.index)}"
    if frame.units is not None:
        return [], f"{where}: a version 1-3 frame has layers, not units"
    try:
        layers = [(lid, payload) for lid, payload in frame.layers]
    except (TypeError, ValueError):
        return [], f"{where}: layers must be a sequence of (layer_id, payload) pairs"
    if not MIN_NUM_LAYERS <= len(layers) <= MAX_NUM_LAYERS:
        return [], f"{where}: needs 1..{MAX_NUM_LAYERS} layers, got {len(layers)}"
    out = []
    previous = -1
    for lid, payload in layers:
        problem = check_int("layer_id", lid, 0, MAX_NUM_LAYERS - 1)
        if problem:
            return [], f"{where}: {problem}"
        lid = int(lid)
        if lid <= previous:
            return [], f"{where}: layer ids must be strictly increasing, got {lid} after " \
                       f"{previous}"
        if previous == -1 and lid != 0:
            return [], f"{where}: the first layer must be layer 0, got {lid}"
        data = payload_bytes(payload, f"{where} layer id {lid}")
        if len(data) > MAX_LAYER_LEN:
            return [], f"{where} layer id {lid}: payload of {len(data)} bytes is too long"
        out.append((lid, data))
        previous = lid
    return out, None


def frame_chunk(frame: Frame) -> bytes:
    """A version 1-3 frame chunk. Raises ValueError if ``frame`` breaks a frame-local rule.

    Rules that need the header (index sequence, sample counts, ids < num_layers) are
    the caller's to keep; the reader checks them.
    """
    layers, problem = frame_problem(frame)
    if problem:
        raise ValueError(problem)
    head = _FRAME_FIXED.pack(FRAME_SYNC, int(frame.index), int(frame.num_samples), len(layers))
    head += b"".join(_LAYER_ENTRY.pack(lid, len(data)) for lid, data in layers)
    parts = [head, pack_crc(head)]
    for _, data in layers:
        parts += [data, pack_crc(data)]
    return b"".join(parts)


def chunk_size(frame: Frame) -> int:
    """Bytes of ``frame``'s chunk."""
    return FRAME_FIXED_SIZE + sum(LAYER_OVERHEAD + len(p) for _, p in frame.layers)


def _check_entries(name: str, entries, header: StreamHeader) -> str | None:
    previous = -1
    for layer_id, _ in entries:
        if previous == -1 and layer_id != 0:
            return f"{name} does not start with layer 0 (first id {layer_id})"
        if layer_id <= previous:
            return f"{name} layer ids not strictly increasing ({layer_id} after {previous})"
        if layer_id >= header.num_layers:
            return f"{name} has layer id {layer_id}, the header declares " \
                   f"{header.num_layers} layers"
        previous = layer_id
    return None


def read_frame_head(src: Source, header: StreamHeader, index: int,
                    num_frames: int) -> list[tuple[int, int]]:
    """The checked header of frame ``index`` at the current position: its layer table
    [(layer_id, length)]; the payloads follow."""
    name = f"frame {index}"
    sync = src.read_exact(
        len(FRAME_SYNC), f"{name} header (stream ends after {index} of {num_frames} frames)"
    )
    if sync != FRAME_SYNC:
        if sync == END_SYNC:
            raise CorruptStreamError(
                f"corrupt stream: end chunk found after {index} frames, "
                f"header declares {num_frames}"
            )
        raise CorruptStreamError(f"corrupt stream: {name} header has a bad sync code {sync!r}")
    rest = src.read_exact(_FRAME_FIXED.size - len(FRAME_SYNC), f"{name} header")
    _, frame_index, frame_samples, frame_layers = _FRAME_FIXED.unpack(sync + rest)
    if not MIN_NUM_LAYERS <= frame_layers <= header.num_layers:
        raise CorruptStreamError(
            f"corrupt stream: {name} header declares {frame_layers} layers, "
            f"the header allows 1..{header.num_layers}"
        )
    table = src.read_exact(frame_layers * _LAYER_ENTRY.size, f"{name} layer table")
    stored = unpack_crc(src.read_exact(CRC_SIZE, f"{name} header CRC"))
    computed = crc32(sync, rest, table)
    if stored != computed:
        raise CorruptStreamError(
            f"corrupt stream: {name} header CRC mismatch "
            f"(stored {stored:08x}, computed {computed:08x})"
        )
    if frame_index != index:
        raise CorruptStreamError(
            f"corrupt stream: {name} header carries frame index {frame_index}, "
            f"expected {index}"
        )
    expected_samples = header.frame_num_samples(index)
    if frame_samples != expected_samples:
        raise CorruptStreamError(
            f"corrupt stream: {name} has {frame_samples} samples, expected "
            f"{expected_samples} (frame_length {header.frame_length}, "
            f"num_samples {header.num_samples})"
        )
    entries = [_LAYER_ENTRY.unpack_from(table, i * _LAYER_ENTRY.size)
               for i in range(frame_layers)]
    problem = _check_entries(name, entries, header)
    if problem:
        raise CorruptStreamError(f"corrupt stream: {problem}")
    return entries


def payloads_size(entries) -> int:
    """Bytes of the payloads (with their CRCs) that follow a frame header."""
    return sum(length + CRC_SIZE for _, length in entries)


def read_payloads(src: Source, name: str, entries) -> tuple[tuple[int, bytes], ...]:
    layers = []
    for layer_id, length in entries:
        where = f"{name} layer id {layer_id}"
        payload = src.read_exact(length, f"{where} payload")
        stored = unpack_crc(src.read_exact(CRC_SIZE, f"{where} CRC"))
        computed = crc32(payload)
        if stored != computed:
            raise CorruptStreamError(
                f"corrupt stream: {where} payload CRC mismatch "
                f"(stored {stored:08x}, computed {computed:08x})"
            )
        layers.append((layer_id, payload))
    return tuple(layers)


def frame_candidate(src: Source, header: StreamHeader, min_index: int):
    """Recovery: a frame header at the current position whose CRC and fields are valid
    and whose index is in ``min_index .. min_index + MAX_LOST_RUN``; consumed and
    returned as (index, num_samples, entries), or None (nothing consumed)."""
    head = src.peek(_FRAME_FIXED.size)
    if len(head) < _FRAME_FIXED.size or head[:2] != FRAME_SYNC:
        return None
    _, index, frame_samples, frame_layers = _FRAME_FIXED.unpack(head)
    if not MIN_NUM_LAYERS <= frame_layers <= header.num_layers:
        return None
    size = _FRAME_FIXED.size + frame_layers * _LAYER_ENTRY.size + CRC_SIZE
    data = src.peek(size)
    if len(data) < size:
        return None
    if unpack_crc(data, size - CRC_SIZE) != crc32(data[: size - CRC_SIZE]):
        return None
    if not min_index <= index < header.num_frames or index - min_index > MAX_LOST_RUN:
        return None
    if frame_samples != header.frame_num_samples(index):
        return None
    entries = [_LAYER_ENTRY.unpack_from(data, _FRAME_FIXED.size + i * _LAYER_ENTRY.size)
               for i in range(frame_layers)]
    if _check_entries("", entries, header) is not None:
        return None
    src.read(size)
    return index, frame_samples, entries


# --------------------------------------------------------------------------- end chunk


def footer_chunk(footer: StreamFooter) -> bytes:
    """The version 1-3 end chunk. Raises ValueError if ``footer`` is not a valid footer."""
    problem = check_int("footer num_frames", footer.num_frames, 0, MAX_NUM_FRAMES) or check_int(
        "footer num_samples", footer.num_samples, 0, MAX_NUM_SAMPLES
    )
    if problem:
        raise ValueError(f"invalid footer: {problem}")
    if not isinstance(footer.md5, (bytes, bytearray)) or len(footer.md5) != MD5_LEN:
        raise ValueError(
            f"invalid footer: md5 must be {MD5_LEN} bytes, got {short_repr(footer.md5)}"
        )
    body = END_SYNC + _END_BODY.pack(
        int(footer.num_frames), int(footer.num_samples), bytes(footer.md5)
    )
    return body + pack_crc(body)


def end_candidate(src: Source) -> bytes | None:
    """Recovery: an end chunk with a valid CRC at the current position; consumed and its
    body returned, or None."""
    data = src.peek(END_CHUNK_SIZE)
    if len(data) < END_CHUNK_SIZE or data[:2] != END_SYNC:
        return None
    if unpack_crc(data, END_CHUNK_SIZE - CRC_SIZE) != crc32(data[: END_CHUNK_SIZE - CRC_SIZE]):
        return None
    src.read(END_CHUNK_SIZE)
    return data[len(END_SYNC): len(END_SYNC) + _END_BODY.size]


def parse_end_body(body: bytes) -> StreamFooter:
    end_frames, end_samples, md5 = _END_BODY.unpack(body)
    return StreamFooter(num_frames=end_frames, num_samples=end_samples, md5=md5)


def read_end(src: Source, num_frames: int) -> StreamFooter:
    """The end chunk at the current position, its CRC checked (counts: the caller's)."""
    sync = src.read_exact(len(END_SYNC), f"end chunk (after all {num_frames} frames)")
    if sync != END_SYNC:
        if sync == FRAME_SYNC:
            raise CorruptStreamError(
                f"corrupt stream: more frames than the {num_frames} the header declares"
            )
        raise CorruptStreamError(f"corrupt stream: end chunk has a bad sync code {sync!r}")
    body = src.read_exact(_END_BODY.size, "end chunk")
    stored = unpack_crc(src.read_exact(CRC_SIZE, "end chunk CRC"))
    computed = crc32(sync, body)
    if stored != computed:
        raise CorruptStreamError(
            f"corrupt stream: end chunk CRC mismatch "
            f"(stored {stored:08x}, computed {computed:08x})"
        )
    return parse_end_body(body)

