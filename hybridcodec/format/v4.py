"""Format version 4: packed header, unit tables, frame, index, end and compact chunks
(docs/format.md, "Version 4 container"), and truncation of units.

Everything here works on bytes: ``*_bytes`` functions build a structure, ``parse_*``
functions read one from a buffer, raising :class:`~hybridcodec.format.varint.NeedMore`
when the buffer ends inside it (the reader then peeks further) and
:class:`~hybridcodec.errors.CorruptStreamError` on a value that leaves the layout
undefined. Checks that need no more bytes but the structure's are made after its CRC.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Mapping

from ..errors import CorruptStreamError, UnsupportedVersionError
from .common import (CRC_SIZE, END_SYNC, FRAME_SYNC, INDEX_SYNC, MAGIC, MAX_BITS_PER_SAMPLE,
                     MAX_CHANNELS, MAX_EXTENSION_LEN, MAX_FRAME_LENGTH, MAX_GROUPS,
                     MAX_LEVELS_V4, MAX_NUM_FRAMES, MAX_NUM_LAYERS, MAX_NUM_SAMPLES,
                     MAX_SAMPLE_RATE, MAX_SEGMENT_SHIFT, MAX_STRING_LEN, MAX_TIER_RATE,
                     MAX_UNIT_WORDS, MD5_LEN, MIN_BITS_PER_SAMPLE, MIN_CHANNELS, MIN_GROUPS,
                     MIN_SAMPLE_RATE, MODEL_ID_RE, TIER_COMPLETE, TIER_NAMED, TIER_RATE,
                     UNIT_COMPLETE, UNIT_CUTTABLE, UNLISTED_EMPTY, Frame, StreamFooter,
                     StreamHeader, Unit, as_int, check_int, check_str, crc32,
                     metadata_problem, pack_crc, payload_bytes, short_repr, unpack_crc)
from .registry import BUNDLED_MODELS, bundled_model_index
from .varint import MAX_VARINT, NeedMore, VarintError, decode_varint, encode_varint, \
    varint_size

VERSION = 4

# header flags
HEADER_COMPACT = 0x01
HEADER_HAS_INDEX = 0x02
HEADER_RESERVED = 0xFC

# frame flags: UNLISTED_EMPTY (common) is about meaning, these two about the unit table
FRAME_ONE_UNIT = 0x02
FRAME_SIMPLE = 0x04
FRAME_RESERVED = 0xF8

#: rate code -> sample rate (code 0: the rate follows as a varint)
RATES = (0, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200,
         96000, 176400, 192000, 384000)
_RATE_CODE = {rate: code for code, rate in enumerate(RATES) if code}
#: 4-bit source container codes (soundfile's format names); 15: the name follows
CONTAINERS = {0: "WAV", 1: "FLAC", 2: "AIFF", 3: "AIFF-C", 4: "W64", 5: "RF64", 6: "CAF",
              7: "RAW", 8: "WAVEX"}
#: 4-bit source subtype codes (soundfile's subtype names); 15: the name follows
SUBTYPES = {0: "PCM_16", 1: "PCM_24", 2: "PCM_S8", 3: "PCM_U8", 4: "PCM_32"}
OTHER = 15
_CONTAINER_CODE = {name: code for code, name in CONTAINERS.items()}
_SUBTYPE_CODE = {name: code for code, name in SUBTYPES.items()}

MODEL_EXPLICIT = 0
MODEL_ID_LEN = 8

_END_BODY = struct.Struct("<IQQ16s")  # num_frames, num_samples, index_offset, md5
END_CHUNK_SIZE = len(END_SYNC) + _END_BODY.size + CRC_SIZE  # 42 bytes
#: The longest header chunk a reader parses: every varint at its longest (10 bytes), two
#: 255-byte names, a 65535-byte extension. A reader never peeks further.
MAX_HEADER_SIZE = 6 + (1 + 10) + 2 + 2 * (2 + MAX_STRING_LEN) + 10 + (1 + 8) + 4 + (1 + 10) \
    + 3 + MAX_EXTENSION_LEN + CRC_SIZE
#: The longest frame header (sync .. header CRC) a reader parses: a 10-byte mask or 64
#: cuttable units of 1024 segments with 5-byte cuts (the varints' limits bound the rest).
#: Below 400 kB; a reader never peeks further.
MAX_FRAME_HEADER_SIZE = 2 + 5 + 3 + 1 + 10 + MAX_NUM_LAYERS * (
    1 + 1 + 5 + 2 + (1024 - 1) * 5 + 1024) + CRC_SIZE
#: Offsets in the index: the first frame is at most this far in (header + metadata),
#: a frame chunk at most this long.
MAX_INDEX_OFFSET = 2**40
#: The smallest frame chunk: sync, index, samples, flags, an empty mask, two CRCs.
MIN_FRAME_CHUNK = 2 + 1 + 1 + 1 + 1 + CRC_SIZE + CRC_SIZE


def _corrupt(message: str) -> CorruptStreamError:
    return CorruptStreamError(f"corrupt stream: {message}")


def _varint(buf, pos: int, limit: int, what: str) -> tuple[int, int]:
    try:
        return decode_varint(buf, pos, limit, what)
    except VarintError as exc:
        raise _corrupt(str(exc)) from None


def _need(buf, end: int) -> None:
    if end > len(buf):
        raise NeedMore(end)


def _log2(value: int) -> int | None:
    """log2 of a power of two, else None."""
    return value.bit_length() - 1 if value > 0 and value & (value - 1) == 0 else None


# --------------------------------------------------------------------------- header


def header_problem(header: StreamHeader) -> str | None:
    """The first thing wrong with a version 4 ``header``, or None."""
    problem = (
        check_int("sample_rate", header.sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
        or check_int("channels", header.channels, MIN_CHANNELS, MAX_CHANNELS)
        or check_int("bits_per_sample", header.bits_per_sample, MIN_BITS_PER_SAMPLE,
                     MAX_BITS_PER_SAMPLE)
        or check_str("subtype", header.subtype, ascii_only=True)
        or check_str("source_format", header.source_format, ascii_only=True)
        or check_int("num_samples", header.num_samples, 0, MAX_NUM_SAMPLES)
        or check_int("frame_length", header.frame_length, 1, MAX_FRAME_LENGTH)
        or check_int("levels", header.levels, 0, MAX_LEVELS_V4)
        or check_int("groups", header.groups, MIN_GROUPS, MAX_GROUPS)
        or check_int("num_layers", header.num_layers, 1, MAX_NUM_LAYERS)
        or check_int("segment_length", header.segment_length, 1, MAX_FRAME_LENGTH)
        or check_int("tier_kind", header.tier_kind, TIER_COMPLETE, TIER_RATE)
        or check_int("tier_code", header.tier_code, 0, 255)
        or check_int("tier_rate", header.tier_rate, 0, MAX_TIER_RATE)
        or check_int("flags", header.flags, 0, 0)
    )
    if problem:
        return problem
    if not isinstance(header.model_id, str) or not MODEL_ID_RE.fullmatch(header.model_id):
        return f"model_id must be 16 lowercase hex digits, got {short_repr(header.model_id)}"
    frame_shift = _log2(int(header.frame_length))
    segment_shift = _log2(int(header.segment_length))
    if frame_shift is None:
        return f"frame_length must be a power of two, got {int(header.frame_length)}"
    if segment_shift is None or not frame_shift - MAX_SEGMENT_SHIFT <= segment_shift \
            <= frame_shift:
        return (f"segment_length must be a power of two from frame_length / "
                f"{1 << MAX_SEGMENT_SHIFT} to frame_length, got {int(header.segment_length)}")
    if int(header.num_layers) != (int(header.levels) + 1) * int(header.groups):
        return (f"num_layers must be (levels + 1) * groups = "
                f"{(int(header.levels) + 1) * int(header.groups)}, got {int(header.num_layers)}")
    kind = int(header.tier_kind)
    if kind == TIER_RATE and header.tier_rate == 0:
        return "a rate-target tier needs tier_rate 1.. (0.1 kbit/s units)"
    if kind != TIER_RATE and header.tier_rate != 0:
        return "tier_rate is only set for a rate-target tier"
    if kind != TIER_NAMED and header.tier_code != 0:
        return "tier_code is only set for a named tier"
    num_frames = -(-int(header.num_samples) // int(header.frame_length))
    if num_frames > MAX_NUM_FRAMES:
        return (f"num_samples / frame_length gives {num_frames} frames, "
                f"more than the {MAX_NUM_FRAMES} a stream can hold")
    problem = metadata_problem(header)
    if problem:
        return problem
    if not isinstance(header.extra, dict):
        return f"extra must be a dict, got {type(header.extra).__name__}"
    for key in header.extra:
        if not isinstance(key, str):
            return f"extra keys must be strings, got {short_repr(key)}"
    return None


def _name_bytes(name: str) -> bytes:
    data = name.encode("ascii")
    return encode_varint(len(data)) + data


def extension_bytes(header: StreamHeader) -> bytes:
    """The extension field: its varint length and, unless ``extra`` is empty, its JSON."""
    from .legacy import dump_json

    if not header.extra:
        return encode_varint(0)
    data = dump_json(dict(header.extra), "extra")
    return encode_varint(len(data)) + data


def header_body(header: StreamHeader) -> bytes:
    """The header body (docs/format.md, "Header body"); ``header`` must be valid."""
    out = bytearray()
    rate = int(header.sample_rate)
    code = _RATE_CODE.get(rate, 0)
    out.append(code)
    if code == 0:
        out += encode_varint(rate)
    container = _CONTAINER_CODE.get(header.source_format, OTHER)
    subtype = _SUBTYPE_CODE.get(header.subtype, OTHER)
    out += struct.pack("<H", (int(header.channels) - 1) | (int(header.bits_per_sample) - 8) << 3
                       | container << 8 | subtype << 12)
    if container == OTHER:
        out += _name_bytes(header.source_format)
    if subtype == OTHER:
        out += _name_bytes(header.subtype)
    out += encode_varint(int(header.num_samples))
    model = bundled_model_index(header.model_id)
    out.append(model)
    if model == MODEL_EXPLICIT:
        out += bytes.fromhex(header.model_id)
    out.append(_log2(int(header.frame_length)))
    out.append(int(header.levels) | int(header.groups) << 4)
    out.append(_log2(int(header.segment_length)))
    kind = int(header.tier_kind)
    out.append(kind)
    if kind == TIER_NAMED:
        out.append(int(header.tier_code))
    elif kind == TIER_RATE:
        out += encode_varint(int(header.tier_rate))
    out += extension_bytes(header)
    return bytes(out)


def header_chunk(header: StreamHeader, flags: int) -> bytes:
    """Magic, version, ``flags``, body and (for a normal stream) the header CRC."""
    head = MAGIC + bytes([VERSION, flags]) + header_body(header)
    return head if flags & HEADER_COMPACT else head + pack_crc(head)


@dataclass
class ParsedHeader:
    """A header body as read, before its CRC is checked: the fields, the flags byte, and
    the first problem a field has (raised only once the CRC is known to match)."""

    fields: dict
    flags: int
    end: int  # offset just after the body
    problem: str | None
    unsupported: str | None = None  # a bundled model this build does not know


def _name(buf, pos: int, what: str) -> tuple[str, int, str | None]:
    length, pos = _varint(buf, pos, MAX_STRING_LEN, f"header {what} name length")
    _need(buf, pos + length)
    raw = bytes(buf[pos:pos + length])
    text = raw.decode("ascii", "replace")
    problem = None
    if length == 0 or not raw.isascii() or not text.isprintable():
        problem = f"{what} name must be 1..{MAX_STRING_LEN} printable ASCII characters"
    return text, pos + length, problem


def parse_header(buf) -> ParsedHeader:
    """The header at the start of ``buf`` (magic and version 4 included)."""
    _need(buf, 6)
    flags = buf[5]
    problems: list[str] = []
    unsupported = None
    if flags & HEADER_RESERVED:
        raise CorruptStreamError(f"corrupt header: reserved flag bits set (flags {flags:#04x})")
    pos = 6
    _need(buf, pos + 1)
    code = buf[pos]
    pos += 1
    if code == 0:
        rate, pos = _varint(buf, pos, MAX_VARINT, "header sample rate")
        if rate in _RATE_CODE:
            problems.append(f"sample rate {rate} written out although it has code "
                            f"{_RATE_CODE[rate]}")
    elif code < len(RATES):
        rate = RATES[code]
    else:
        problems.append(f"unknown sample rate code {code}")
        rate = 0
    _need(buf, pos + 2)
    (fmt,) = struct.unpack_from("<H", buf, pos)
    pos += 2
    channels, bits = (fmt & 7) + 1, ((fmt >> 3) & 31) + 8
    container, subtype = (fmt >> 8) & 15, fmt >> 12
    names = {}
    for what, value, table in (("container", container, CONTAINERS),
                               ("subtype", subtype, SUBTYPES)):
        if value == OTHER:
            text, pos, problem = _name(buf, pos, what)
            if problem:
                problems.append(problem)
            elif text in table.values():
                problems.append(f"{what} {text!r} written out although it has a code")
            names[what] = text
        elif value in table:
            names[what] = table[value]
        else:
            problems.append(f"unknown {what} code {value}")
            names[what] = f"code {value}"
    num_samples, pos = _varint(buf, pos, MAX_VARINT, "header num_samples")
    _need(buf, pos + 1)
    model = buf[pos]
    pos += 1
    if model == MODEL_EXPLICIT:
        _need(buf, pos + MODEL_ID_LEN)
        model_id = bytes(buf[pos:pos + MODEL_ID_LEN]).hex()
        pos += MODEL_ID_LEN
    else:
        model_id = BUNDLED_MODELS.get(model)
        if model_id is None:
            # a newer writer's registry: only an error once the CRC shows it is no damage
            unsupported = (
                f"stream coded with bundled model #{model}, unknown to this hybridcodec "
                f"(it knows #{min(BUNDLED_MODELS)}..#{max(BUNDLED_MODELS)}): upgrade "
                f"hybridcodec to decode it")
            model_id = "0" * 16
    _need(buf, pos + 4)
    frame_byte, structure, segment_shift, kind = buf[pos:pos + 4]
    pos += 4
    if frame_byte & 0xE0:
        problems.append(f"reserved bits set in the frame-length byte ({frame_byte:#04x})")
    frame_shift = frame_byte & 0x1F
    if frame_shift > 20 or segment_shift > 20:
        problems.append("frame or segment length above 2^20")
    levels, groups = structure & 15, structure >> 4
    code, rate_target = 0, 0
    if kind == TIER_NAMED:
        _need(buf, pos + 1)
        code = buf[pos]
        pos += 1
    elif kind == TIER_RATE:
        rate_target, pos = _varint(buf, pos, MAX_VARINT, "header tier rate")
    elif kind != TIER_COMPLETE:
        problems.append(f"unknown tier kind {kind}")
    length, pos = _varint(buf, pos, MAX_EXTENSION_LEN, "header extension length")
    _need(buf, pos + length)
    extension = bytes(buf[pos:pos + length])
    pos += length
    fields = dict(
        sample_rate=rate, channels=channels, bits_per_sample=bits,
        subtype=names["subtype"], source_format=names["container"], num_samples=num_samples,
        frame_length=1 << min(frame_shift, 40), model_id=model_id, levels=levels,
        groups=groups, num_layers=(levels + 1) * groups,
        segment_length=1 << min(segment_shift, 40), tier_kind=kind, tier_code=code,
        tier_rate=rate_target, extension=extension)
    return ParsedHeader(fields, flags, pos, problems[0] if problems else None, unsupported)


def parse_header_chunk(buf) -> tuple[ParsedHeader, int]:
    """A normal stream's header chunk at the start of ``buf``: (parsed, size with CRC)."""
    parsed = parse_header(buf)
    _need(buf, parsed.end + CRC_SIZE)
    return parsed, parsed.end + CRC_SIZE


def make_header(parsed: ParsedHeader) -> StreamHeader:
    """The checked StreamHeader of a parsed header (call once its CRC matched)."""
    from .legacy import load_json

    if parsed.unsupported:
        raise UnsupportedVersionError(parsed.unsupported)
    if parsed.problem:
        raise CorruptStreamError(f"corrupt header: {parsed.problem}")
    fields = dict(parsed.fields)
    extension = fields.pop("extension")
    extra = {}
    if extension:
        extra = load_json(extension, "extension JSON")
        if not isinstance(extra, dict):
            raise CorruptStreamError("corrupt header: extension JSON is not an object")
    header = StreamHeader(**fields, extra=extra, version=VERSION)
    problem = header_problem(header)
    if problem:
        raise CorruptStreamError(f"corrupt header: {problem}")
    return header


# --------------------------------------------------------------------------- units


def unit_problem(unit: Unit, num_layers: int, segments: int) -> str | None:
    """The first rule ``unit`` breaks in a frame of ``segments`` segments, or None."""
    problem = (check_int("first", unit.first, 0, num_layers - 1)
               or check_int("count", unit.count, 1, num_layers - int(unit.first)))
    if problem:
        return problem
    if not isinstance(unit.payload, (bytes, bytearray, memoryview)):
        return f"payload must be bytes, got {type(unit.payload).__name__}"
    length = len(unit.payload)
    if length % 4:
        return f"payload of {length} bytes is not a whole number of 32-bit words"
    if length // 4 > MAX_UNIT_WORDS:
        return f"payload of {length} bytes is too long"
    problem = check_int("state", unit.state, 0, segments)
    if problem:
        return problem
    state = int(unit.state)
    if state != UNIT_COMPLETE and unit.count != 1:
        return "only a single-layer unit can be cuttable"
    try:
        cuts = tuple(unit.cuts)
    except TypeError:
        return "cuts must be a sequence of word offsets"
    wanted = 0 if state == UNIT_COMPLETE else (segments - 1 if state == UNIT_CUTTABLE
                                               else state - 2)
    if len(cuts) != wanted:
        return f"state {state} needs {wanted} cuts, got {len(cuts)}"
    previous = length // 4
    for j, cut in enumerate(cuts, 1):
        if as_int(cut) is None or not 0 <= cut <= previous:
            return (f"cut c_{j} = {short_repr(cut)} must be in 0..{previous} "
                    f"(c_1 >= c_2 >= ..., at most the payload's {length // 4} words)")
        previous = cut
    if not isinstance(unit.slopes, (bytes, bytearray)):
        return f"slopes must be bytes, got {type(unit.slopes).__name__}"
    held = 1 if state == UNIT_COMPLETE else unit.segments(segments)
    if len(unit.slopes) != held:
        return f"needs {held} slope byte{'s' if held != 1 else ''}, got {len(unit.slopes)}"
    return None


def units_problem(units, num_layers: int, segments: int, flags: int) -> str | None:
    """The first rule a frame's units (and flags) break, or None."""
    if as_int(flags) is None or flags & ~UNLISTED_EMPTY:
        return f"frame flags must be 0 or UNLISTED_EMPTY, got {short_repr(flags)}"
    end = 0
    for k, unit in enumerate(units):
        if not isinstance(unit, Unit):
            return f"unit {k}: expected a Unit, got {type(unit).__name__}"
        problem = unit_problem(unit, num_layers, segments)
        if problem:
            return f"unit {k}: {problem}"
        if unit.first < end:
            return f"unit {k} starts at layer {unit.first}, before the previous unit ends " \
                   f"({end})"
        end = unit.end
    return None


def frame_complete(units, flags: int, num_layers: int) -> bool:
    """True when a frame carries every layer in full (what a lossless stream needs)."""
    if any(u.state > UNIT_CUTTABLE for u in units):
        return False
    return bool(flags & UNLISTED_EMPTY) or sum(u.count for u in units) == num_layers


def carried_layers(units, flags: int, num_layers: int) -> list[bool]:
    """Per layer id: whether the frame carries it (a unit covers it, or it is unlisted
    and UNLISTED_EMPTY says it is empty)."""
    carried = [bool(flags & UNLISTED_EMPTY)] * num_layers
    for unit in units:
        for layer in range(unit.first, unit.end):
            carried[layer] = True
    return carried


def _table_form(units, num_layers: int) -> int:
    """The frame flag bits of the shortest unit table for ``units`` (writers' choice)."""
    form = 0
    if len(units) == 1 and units[0].first == 0 and units[0].count == num_layers:
        form |= FRAME_ONE_UNIT
    if all(u.state == UNIT_COMPLETE and bytes(u.slopes) == b"\x00"
           and (u.count == 1 or form & FRAME_ONE_UNIT) for u in units):
        form |= FRAME_SIMPLE
    return form


def _cut_table(unit: Unit) -> bytes:
    """c_m, then c_j - c_{j+1} for j = m - 1 .. 1 (all varints, all >= 0)."""
    cuts = tuple(int(c) for c in unit.cuts)
    if not cuts:
        return b""
    out = [encode_varint(cuts[-1])]
    out += [encode_varint(cuts[j] - cuts[j + 1]) for j in range(len(cuts) - 2, -1, -1)]
    return b"".join(out)


def _unit_tail(unit: Unit) -> bytes:
    """A unit entry's fields after its length: state and cut table (single-layer units
    only), slopes."""
    out = b""
    if unit.count == 1:
        out += encode_varint(int(unit.state)) + _cut_table(unit)
    return out + bytes(unit.slopes)


def unit_table(units, num_layers: int, compact: bool) -> tuple[int, bytes]:
    """(frame flag bits of its form, bytes) of the unit table for ``units``.

    In a compact stream the last unit's length is left out (its payload runs to the CRC).
    """
    form = _table_form(units, num_layers)
    lengths = [encode_varint(len(u.payload) // 4) for u in units]
    if compact and lengths:
        lengths[-1] = b""
    if form & FRAME_ONE_UNIT:
        body = lengths[0] + (b"" if form & FRAME_SIMPLE else _unit_tail(units[0]))
    elif form & FRAME_SIMPLE:
        mask = 0
        for u in units:
            mask |= 1 << u.first
        body = encode_varint(mask) + b"".join(lengths)
    else:
        parts = [encode_varint(len(units))]
        end = 0
        for u, length in zip(units, lengths):
            parts += [encode_varint(u.first - end), encode_varint(u.count), length,
                      _unit_tail(u)]
            end = u.end
        body = b"".join(parts)
    return form, body


@dataclass(frozen=True)
class Entry:
    """A unit table entry as read: ``words`` is None for a compact stream's last unit."""

    first: int
    count: int
    words: int | None
    state: int
    cuts: tuple[int, ...]
    slopes: bytes


def _read_tail(buf, pos: int, count: int, segments: int, where: str):
    """State, cuts and slopes of an entry (the inverse of :func:`_unit_tail`)."""
    state = UNIT_COMPLETE
    cuts: tuple[int, ...] = ()
    if count == 1:
        state, pos = _varint(buf, pos, segments, f"{where} state")
        wanted = 0 if state == UNIT_COMPLETE else (segments - 1 if state == UNIT_CUTTABLE
                                                   else state - 2)
        deltas = []
        for _ in range(wanted):
            delta, pos = _varint(buf, pos, MAX_UNIT_WORDS, f"{where} cut table")
            deltas.append(delta)
        total = 0
        values = []
        for delta in deltas:  # c_m first, then c_{j} - c_{j+1} upwards
            total += delta
            values.append(total)
        cuts = tuple(reversed(values))
    held = 1 if state == UNIT_COMPLETE else (segments if state == UNIT_CUTTABLE else state - 1)
    _need(buf, pos + held)
    return state, cuts, bytes(buf[pos:pos + held]), pos + held


def parse_unit_table(buf, pos: int, flags: int, num_layers: int, segments: int,
                     compact: bool, where: str) -> tuple[list[Entry], int]:
    """The unit table at ``buf[pos:]`` (a frame header's or a compact stream's)."""
    entries: list[Entry] = []

    def length(last: bool):
        nonlocal pos
        if compact and last:
            return None
        words, pos = _varint(buf, pos, MAX_UNIT_WORDS, f"{where} unit length")
        return words

    if flags & FRAME_ONE_UNIT:
        words = length(True)
        if flags & FRAME_SIMPLE:
            entries.append(Entry(0, num_layers, words, UNIT_COMPLETE, (), b"\x00"))
        else:
            state, cuts, slopes, pos = _read_tail(buf, pos, num_layers, segments, where)
            entries.append(Entry(0, num_layers, words, state, cuts, slopes))
    elif flags & FRAME_SIMPLE:
        mask, pos = _varint(buf, pos, (1 << num_layers) - 1, f"{where} layer mask")
        ids = [k for k in range(num_layers) if mask >> k & 1]
        for n, layer in enumerate(ids):
            entries.append(Entry(layer, 1, length(n == len(ids) - 1), UNIT_COMPLETE, (),
                                 b"\x00"))
    else:
        count_units, pos = _varint(buf, pos, num_layers, f"{where} unit count")
        end = 0
        for n in range(count_units):
            name = f"{where} unit {n}"
            delta, pos = _varint(buf, pos, num_layers - 1, f"{name} first layer")
            count, pos = _varint(buf, pos, num_layers, f"{name} layer count")
            first = end + delta
            if count == 0 or first + count > num_layers:
                raise _corrupt(f"{name} covers layers {first}..{first + count - 1}, outside "
                               f"0..{num_layers - 1}")
            words = length(n == count_units - 1)
            state, cuts, slopes, pos = _read_tail(buf, pos, count, segments, name)
            entries.append(Entry(first, count, words, state, cuts, slopes))
            end = first + count
    return entries, pos


def entries_problem(entries: list[Entry], where: str) -> str | None:
    """What the parse could not check: cut tables against the lengths."""
    for n, entry in enumerate(entries):
        if entry.cuts and entry.words is not None and entry.cuts[0] > entry.words:
            return (f"{where} unit {n} (layer {entry.first}) has a cut at word "
                    f"{entry.cuts[0]}, beyond its {entry.words} words")
    return None


def make_units(entries: list[Entry], payload: bytes) -> tuple[Unit, ...]:
    """Units from their entries and the concatenated payloads (all lengths known)."""
    units = []
    pos = 0
    for entry in entries:
        size = 4 * entry.words
        units.append(Unit(entry.first, entry.count, payload[pos:pos + size], entry.state,
                          entry.cuts, entry.slopes))
        pos += size
    return tuple(units)


# --------------------------------------------------------------------------- frames


def _frame_units(frame: Frame, header: StreamHeader) -> tuple[Unit, ...]:
    """``frame``'s units, checked against ``header``; ValueError on a broken rule."""
    problem = check_int("frame index", frame.index, 0, MAX_NUM_FRAMES - 1) or check_int(
        "frame num_samples", frame.num_samples, 1, int(header.frame_length))
    if problem:
        raise ValueError(f"invalid frame: {problem}")
    where = f"frame {int(frame.index)}"
    if frame.units is None or frame.layers:
        raise ValueError(f"{where}: a version 4 frame carries units (and no layers)")
    try:
        units = tuple(frame.units)
    except TypeError:
        raise ValueError(f"{where}: units must be a sequence of Unit") from None
    segments = -(-int(frame.num_samples) // int(header.segment_length))
    units = tuple(Unit(u.first, u.count, payload_bytes(u.payload, f"{where} unit {k}"),
                       u.state, u.cuts, u.slopes) if isinstance(u, Unit) else u
                  for k, u in enumerate(units))
    problem = units_problem(units, int(header.num_layers), segments, frame.flags)
    if problem:
        raise ValueError(f"{where}: {problem}")
    if header.complete and not frame_complete(units, frame.flags, int(header.num_layers)):
        raise ValueError(f"{where}: a lossless stream's frames carry every layer in full")
    return units


def frame_chunk(frame: Frame, header: StreamHeader) -> bytes:
    """The frame chunk of ``frame`` in a stream with ``header``; ValueError if it breaks a
    rule (index sequence and sample counts are the caller's to keep)."""
    units = _frame_units(frame, header)
    form, table = unit_table(units, int(header.num_layers), compact=False)
    head = (FRAME_SYNC + encode_varint(int(frame.index)) + encode_varint(int(frame.num_samples))
            + bytes([int(frame.flags) | form]) + table)
    payload = b"".join(u.payload for u in units)
    return head + pack_crc(head) + payload + pack_crc(payload)


def frame_chunk_size(frame: Frame, header: StreamHeader) -> int:
    """Bytes of ``frame``'s chunk (as :func:`frame_chunk` would write it)."""
    units = _frame_units(frame, header)
    _, table = unit_table(units, int(header.num_layers), compact=False)
    return (len(FRAME_SYNC) + varint_size(int(frame.index)) + varint_size(int(frame.num_samples))
            + 1 + len(table) + CRC_SIZE + sum(len(u.payload) for u in units) + CRC_SIZE)


@dataclass(frozen=True)
class FrameHead:
    """A frame header as read: everything but the payloads."""

    index: int
    num_samples: int
    flags: int  # UNLISTED_EMPTY or 0 (the table-form bits removed)
    entries: list[Entry]

    @property
    def payload_size(self) -> int:
        return 4 * sum(e.words for e in self.entries)


def parse_frame_head(buf, header: StreamHeader, name: str) -> tuple[FrameHead, int]:
    """The frame header at the start of ``buf`` ("HF" through the header CRC), its CRC
    checked; (head, size). ``name`` ("frame N") goes into messages. The index and sample
    count are the caller's to check."""
    _need(buf, 2)
    if buf[:2] != FRAME_SYNC:
        raise _corrupt(f"{name} header has a bad sync code {bytes(buf[:2])!r}")
    index, pos = _varint(buf, 2, MAX_NUM_FRAMES - 1, f"{name} header frame index")
    samples, pos = _varint(buf, pos, int(header.frame_length), f"{name} header num_samples")
    if samples == 0:
        raise _corrupt(f"{name} header declares 0 samples")
    _need(buf, pos + 1)
    flags = buf[pos]
    pos += 1
    if flags & FRAME_RESERVED:
        raise _corrupt(f"{name} header has reserved flag bits set (flags {flags:#04x})")
    segments = -(-samples // int(header.segment_length))
    entries, pos = parse_unit_table(buf, pos, flags, int(header.num_layers), segments,
                                    compact=False, where=f"{name} header")
    _need(buf, pos + CRC_SIZE)
    stored, computed = unpack_crc(buf, pos), crc32(bytes(buf[:pos]))
    if stored != computed:
        raise _corrupt(f"{name} header CRC mismatch (stored {stored:08x}, computed "
                       f"{computed:08x})")
    problem = entries_problem(entries, f"{name} header")
    if problem:
        raise _corrupt(problem)
    head = FrameHead(index, samples, flags & UNLISTED_EMPTY, entries)
    if header.complete and not frame_complete(entries, head.flags, int(header.num_layers)):
        raise _corrupt(f"{name} does not carry every layer in full, but the header "
                       f"declares a lossless stream")
    return head, pos + CRC_SIZE


# --------------------------------------------------------------------------- index


def index_bytes(offsets: list[int]) -> bytes:
    """The index chunk for frames starting at ``offsets`` (bytes from the stream start)."""
    parts = [INDEX_SYNC, encode_varint(len(offsets))]
    previous = 0
    for offset in offsets:
        parts.append(encode_varint(offset - previous))
        previous = offset
    body = b"".join(parts)
    return body + pack_crc(body)


def parse_index(data: bytes, num_frames: int) -> list[int]:
    """The frame offsets of a whole index chunk ``data``; CorruptStreamError unless its
    CRC, its count (``num_frames``) and every offset are right."""
    if len(data) < len(INDEX_SYNC) + 1 + CRC_SIZE or data[:2] != INDEX_SYNC:
        raise _corrupt("index chunk has a bad sync code or is too short")
    stored, computed = unpack_crc(data, len(data) - CRC_SIZE), crc32(data[:-CRC_SIZE])
    if stored != computed:
        raise _corrupt(f"index chunk CRC mismatch (stored {stored:08x}, computed "
                       f"{computed:08x})")
    body = memoryview(data)[:-CRC_SIZE]
    try:
        count, pos = decode_varint(body, 2, MAX_NUM_FRAMES, "index chunk frame count")
        if count != num_frames:
            raise _corrupt(f"index chunk lists {count} frames, the header declares "
                           f"{num_frames}")
        offsets = []
        offset = 0
        for i in range(count):
            delta, pos = decode_varint(body, pos, MAX_INDEX_OFFSET, "index chunk offset")
            if i and delta < MIN_FRAME_CHUNK:
                raise _corrupt(f"index chunk puts frame {i} {delta} bytes after frame "
                               f"{i - 1}, less than a frame chunk")
            offset += delta
            offsets.append(offset)
    except NeedMore:
        raise _corrupt("index chunk ends inside its offsets") from None
    except VarintError as exc:
        raise _corrupt(str(exc)) from None
    if pos != len(body):
        raise _corrupt(f"index chunk has {len(body) - pos} bytes after its offsets")
    return offsets


def parse_index_prefix(buf, num_frames: int) -> int:
    """Recovery: the size of an index chunk at the start of ``buf`` whose frame count is
    ``num_frames`` and whose CRC matches; raises NeedMore / CorruptStreamError."""
    _need(buf, 2)
    if buf[:2] != INDEX_SYNC:
        raise _corrupt("no index chunk")
    count, pos = _varint(buf, 2, MAX_NUM_FRAMES, "index chunk frame count")
    if count != num_frames:
        raise _corrupt("index chunk count mismatch")
    for _ in range(count):
        _, pos = _varint(buf, pos, MAX_INDEX_OFFSET, "index chunk offset")
    _need(buf, pos + CRC_SIZE)
    if unpack_crc(buf, pos) != crc32(bytes(buf[:pos])):
        raise _corrupt("index chunk CRC mismatch")
    return pos + CRC_SIZE


# --------------------------------------------------------------------------- end chunk


def end_bytes(num_frames: int, num_samples: int, index_offset: int, md5: bytes) -> bytes:
    body = END_SYNC + _END_BODY.pack(num_frames, num_samples, index_offset, md5)
    return body + pack_crc(body)


def footer_chunk(footer: StreamFooter) -> bytes:
    """The version 4 end chunk of ``footer``; ValueError if it is not a valid footer."""
    problem = (check_int("footer num_frames", footer.num_frames, 0, MAX_NUM_FRAMES)
               or check_int("footer num_samples", footer.num_samples, 0, MAX_NUM_SAMPLES)
               or check_int("footer index_offset", footer.index_offset, 0, 2**64 - 1))
    if problem:
        raise ValueError(f"invalid footer: {problem}")
    if not isinstance(footer.md5, (bytes, bytearray)) or len(footer.md5) != MD5_LEN:
        raise ValueError(f"invalid footer: md5 must be {MD5_LEN} bytes, got "
                         f"{short_repr(footer.md5)}")
    return end_bytes(int(footer.num_frames), int(footer.num_samples),
                     int(footer.index_offset), bytes(footer.md5))


def parse_end(data: bytes) -> StreamFooter:
    """The end chunk ``data`` (END_CHUNK_SIZE bytes), its sync and CRC checked."""
    if data[:2] != END_SYNC:
        if data[:2] == FRAME_SYNC:
            raise _corrupt("more frames than the header declares")
        raise _corrupt(f"end chunk has a bad sync code {bytes(data[:2])!r}")
    stored, computed = unpack_crc(data, END_CHUNK_SIZE - CRC_SIZE), \
        crc32(data[:END_CHUNK_SIZE - CRC_SIZE])
    if stored != computed:
        raise _corrupt(f"end chunk CRC mismatch (stored {stored:08x}, computed "
                       f"{computed:08x})")
    frames, samples, index_offset, md5 = _END_BODY.unpack_from(data, 2)
    return StreamFooter(frames, samples, md5, index_offset)


# --------------------------------------------------------------------------- compact


def compact_bytes(header: StreamHeader, frame: Frame, md5: bytes) -> bytes:
    """The whole compact stream of a one-frame ``header`` without metadata."""
    units = _frame_units(frame, header)
    form, table = unit_table(units, int(header.num_layers), compact=True)
    head = header_chunk(header, HEADER_COMPACT)
    body = head + bytes(md5) + bytes([int(frame.flags) | form]) + table \
        + b"".join(u.payload for u in units)
    return body + pack_crc(body)


@dataclass
class ParsedCompact:
    header: ParsedHeader
    md5: bytes
    flags: int
    entries: list[Entry]
    table_end: int  # offset of the first payload byte


def parse_compact_head(buf) -> tuple[ParsedCompact, int]:
    """A compact stream's header, MD5 and unit table at the start of ``buf``."""
    parsed = parse_header(buf)
    pos = parsed.end
    _need(buf, pos + MD5_LEN + 1)
    md5 = bytes(buf[pos:pos + MD5_LEN])
    flags = buf[pos + MD5_LEN]
    pos += MD5_LEN + 1
    if flags & FRAME_RESERVED:
        raise _corrupt(f"compact stream has reserved frame flag bits set (flags {flags:#04x})")
    fields = parsed.fields
    frame_length = fields["frame_length"]
    num_samples = fields["num_samples"]
    if not 0 < num_samples <= frame_length or frame_length > MAX_FRAME_LENGTH:
        raise CorruptStreamError(
            f"corrupt header: a compact stream holds one frame (1..{frame_length} samples), "
            f"this one declares {num_samples}")
    segments = -(-num_samples // fields["segment_length"])
    if not 1 <= fields["num_layers"] <= MAX_NUM_LAYERS or segments > 1 << MAX_SEGMENT_SHIFT:
        raise CorruptStreamError("corrupt header: layer or segment structure out of range")
    entries, pos = parse_unit_table(buf, pos, flags, fields["num_layers"], segments,
                                    compact=True, where="compact stream")
    return ParsedCompact(parsed, md5, flags & UNLISTED_EMPTY, entries, pos), pos


# --------------------------------------------------------------------------- truncation


def truncate_unit(unit: Unit, keep: int, segments: int) -> Unit | None:
    """``unit`` cut to its first ``keep`` segments (docs/format.md, "Truncating units").

    ``segments``: S of the unit's frame. ``keep`` 0 drops the unit (None); ``keep`` at
    least what the unit holds returns it unchanged. Cutting needs no model: the payload
    loses its first c_keep words, the cut table is rebased, the slopes shortened.
    ValueError for a unit that cannot be cut (not cuttable) asked for a part of it.
    """
    if keep == 0:
        return None
    held = unit.segments(segments) if unit.cuttable else segments
    if keep >= held:
        return unit
    if not unit.cuttable or keep < 0:
        raise ValueError(f"unit at layer {unit.first} cannot be cut to {keep} of {held} "
                         f"segments (it is not cuttable)")
    cut = unit.cuts[keep - 1]
    return Unit(unit.first, unit.count, bytes(unit.payload[4 * cut:]), keep + 1,
                tuple(c - cut for c in unit.cuts[:keep - 1]), bytes(unit.slopes[:keep]))


def truncate_frame(header: StreamHeader, frame: Frame, keep: Mapping[int, int]) -> Frame:
    """``frame`` with ``keep[layer]`` segments of each layer (0: drop it; a layer not in
    ``keep``: as it is).

    A cuttable single-layer unit is cut (:func:`truncate_unit`); a unit that is not
    cuttable or covers several layers is kept whole unless every layer it covers is
    dropped. When a frame whose unlisted layers were empty (UNLISTED_EMPTY) loses a layer,
    the flag goes and every unlisted layer that stays gets an explicit empty unit, so that
    it still reads as empty rather than dropped.
    """
    segments = header.frame_segments(frame.index)
    num_layers = int(header.num_layers)
    units = []
    for unit in frame.units or ():
        decisions = [keep.get(layer) for layer in range(unit.first, unit.end)]
        if all(d == 0 for d in decisions):
            continue
        if unit.count == 1 and unit.cuttable and decisions[0] is not None:
            unit = truncate_unit(unit, decisions[0], segments)
        units.append(unit)
    flags = frame.flags
    if flags & UNLISTED_EMPTY:
        covered = carried_layers(units, 0, num_layers)
        lost = [layer for layer in range(num_layers) if not covered[layer]
                and keep.get(layer) == 0]
        if lost:
            flags &= ~UNLISTED_EMPTY
            units += [Unit(layer, 1, b"") for layer in range(num_layers)
                      if not covered[layer] and keep.get(layer) != 0]
            units.sort(key=lambda u: u.first)
    return Frame(frame.index, frame.num_samples, units=tuple(units), flags=flags)
