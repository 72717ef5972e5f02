"""Version 4 streams built byte by byte from docs/format.md, independently of
hybridcodec.format, so that a writer and a reader agreeing with each other but not with
the spec are caught; and a small parser that finds the chunks of a valid stream."""

from __future__ import annotations

import struct
import zlib

RATE_CODES = {8000: 1, 11025: 2, 12000: 3, 16000: 4, 22050: 5, 24000: 6, 32000: 7, 44100: 8,
              48000: 9, 64000: 10, 88200: 11, 96000: 12, 176400: 13, 192000: 14, 384000: 15}
CONTAINER_CODES = {"WAV": 0, "FLAC": 1, "AIFF": 2, "AIFF-C": 3, "W64": 4, "RF64": 5, "CAF": 6,
                   "RAW": 7, "WAVEX": 8}
SUBTYPE_CODES = {"PCM_16": 0, "PCM_24": 1, "PCM_S8": 2, "PCM_U8": 3, "PCM_32": 4}
MODELS = {"e40987291b5fd215": 1, "ccd651dbb62662d7": 2, "966f00cb4bbff40b": 3}


def crc(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def body(*, sample_rate=44100, channels=2, bits=16, container="WAV", subtype="PCM_16",
         num_samples=10, model="0123456789abcdef", frame_shift=2, levels=2, groups=1,
         segment_shift=None, tier=(0,), extension=b"", rate_code=None) -> bytes:
    """A header body; ``rate_code`` forces the rate byte (0: the rate follows)."""
    out = bytearray()
    code = RATE_CODES.get(sample_rate, 0) if rate_code is None else rate_code
    out.append(code)
    if code == 0:
        out += varint(sample_rate)
    c_code = CONTAINER_CODES.get(container, 15)
    s_code = SUBTYPE_CODES.get(subtype, 15)
    out += struct.pack("<H", (channels - 1) | (bits - 8) << 3 | c_code << 8 | s_code << 12)
    if c_code == 15:
        out += varint(len(container)) + container.encode()
    if s_code == 15:
        out += varint(len(subtype)) + subtype.encode()
    out += varint(num_samples)
    if isinstance(model, int):
        out.append(model)
    elif isinstance(model, bytes):  # an explicit id, whatever the registry holds
        out += b"\x00" + model
    elif model in MODELS:
        out.append(MODELS[model])
    else:
        out += b"\x00" + bytes.fromhex(model)
    out.append(frame_shift)
    out.append(levels | groups << 4)
    out.append(frame_shift if segment_shift is None else segment_shift)
    out.append(tier[0])
    if tier[0] == 1:
        out.append(tier[1])
    elif tier[0] == 2:
        out += varint(tier[1])
    out += varint(len(extension)) + extension
    return bytes(out)


def header(body_bytes: bytes, *, flags: int = 0, version: int = 4) -> bytes:
    head = b"HYBC" + bytes([version, flags]) + body_bytes
    return head + crc(head)


def simple_table(units: list[tuple[int, bytes]], compact: bool = False) -> bytes:
    """SIMPLE form: layer mask, then the lengths (in words) in layer order."""
    mask = sum(1 << layer for layer, _ in units)
    lengths = [varint(len(p) // 4) for _, p in units]
    if compact and lengths:
        lengths[-1] = b""
    return varint(mask) + b"".join(lengths)


def general_table(units: list[tuple], compact: bool = False) -> bytes:
    """General form; a unit is (first, count, payload[, state, cuts, slopes])."""
    out = [varint(len(units))]
    end = 0
    for n, unit in enumerate(units):
        first, count, payload = unit[:3]
        state, cuts, slopes = (unit[3:] + (0, (), b"\x00")[len(unit) - 3:]) if len(unit) > 3 \
            else (0, (), b"\x00")
        out += [varint(first - end), varint(count)]
        if not (compact and n == len(units) - 1):
            out.append(varint(len(payload) // 4))
        if count == 1:
            out.append(varint(state))
            if cuts:
                out.append(varint(cuts[-1]))
                out += [varint(cuts[j] - cuts[j + 1]) for j in range(len(cuts) - 2, -1, -1)]
        out.append(slopes)
        end = first + count
    return b"".join(out)


def frame(index: int, num_samples: int, flags: int, table: bytes, payload: bytes) -> bytes:
    head = b"HF" + varint(index) + varint(num_samples) + bytes([flags]) + table
    return head + crc(head) + payload + crc(payload)


def index(offsets: list[int]) -> bytes:
    data = b"HI" + varint(len(offsets))
    previous = 0
    for offset in offsets:
        data += varint(offset - previous)
        previous = offset
    return data + crc(data)


def end(num_frames: int, num_samples: int, index_offset: int, md5: bytes) -> bytes:
    data = b"HE" + struct.pack("<IQQ", num_frames, num_samples, index_offset) + md5
    return data + crc(data)


def compact(body_bytes: bytes, md5: bytes, frame_flags: int, table: bytes, payload: bytes,
            *, flags: int = 1) -> bytes:
    data = b"HYBC" + bytes([4, flags]) + body_bytes + md5 + bytes([frame_flags]) + table \
        + payload
    return data + crc(data)


# --------------------------------------------------------------------------- finding chunks


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def parse_body(data: bytes) -> dict:
    """Where a valid version 4 stream's header body ends, and its layout fields."""
    pos = 7
    if data[6] == 0:
        _, pos = read_varint(data, pos)
    (fmt,) = struct.unpack_from("<H", data, pos)
    pos += 2
    for code in ((fmt >> 8) & 15, fmt >> 12):
        if code == 15:
            n, pos = read_varint(data, pos)
            pos += n
    num_samples, pos = read_varint(data, pos)
    pos += 9 if data[pos] == 0 else 1
    model_end = pos
    frame_shift, structure, segment_shift, kind = data[pos:pos + 4]
    pos += 4
    if kind == 1:
        pos += 1
    elif kind == 2:
        _, pos = read_varint(data, pos)
    n, pos = read_varint(data, pos)
    return dict(end=pos + n, num_samples=num_samples, layout=model_end,
                frame_length=1 << frame_shift, segment_length=1 << segment_shift,
                num_layers=((structure & 15) + 1) * (structure >> 4))


def body_end(data: bytes) -> int:
    return parse_body(data)["end"]


def frame_spans(data: bytes) -> dict:
    """Chunks of a valid normal version 4 stream: ``header`` (start, end), ``metadata``,
    ``frames`` [dict(start, table, table_end, payload, payload_len, end)], ``index``,
    ``end`` (each (start, end) or None)."""
    layout = parse_body(data)
    pos = layout["end"] + 4
    out = {"header": (0, pos), "metadata": None, "frames": [], "index": None}
    if data[pos:pos + 2] == b"HM":
        length = struct.unpack_from("<I", data, pos + 2)[0]
        out["metadata"] = (pos, pos + 10 + length)
        pos += 10 + length
    while data[pos:pos + 2] == b"HF":
        start = pos
        _, p = read_varint(data, pos + 2)
        frame_samples, p = read_varint(data, p)
        segments = -(-frame_samples // layout["segment_length"])  # S
        flags = data[p]
        p += 1
        table = p
        words = []
        if flags & 2:
            n, p = read_varint(data, p)
            words.append(n)
            p += 0 if flags & 4 else 1  # a slope (the one unit covers several layers)
        elif flags & 4:
            mask, p = read_varint(data, p)
            for _ in range(bin(mask).count("1")):
                n, p = read_varint(data, p)
                words.append(n)
        else:
            count, p = read_varint(data, p)
            for _ in range(count):
                _, p = read_varint(data, p)
                c, p = read_varint(data, p)
                n, p = read_varint(data, p)
                words.append(n)
                if c == 1:  # state, its cut table, a slope per segment held if cuttable
                    state, p = read_varint(data, p)
                    cuts = 0 if state == 0 else (segments - 1 if state == 1 else state - 2)
                    for _ in range(cuts):
                        _, p = read_varint(data, p)
                    p += 1 if state == 0 else (segments if state == 1 else state - 1)
                else:
                    p += 1
        size = 4 * sum(words)
        out["frames"].append(dict(start=start, table=table, table_end=p, payload=p + 4,
                                  payload_len=size, end=p + 4 + size + 4))
        pos = p + 4 + size + 4
    if data[pos:pos + 2] == b"HI":
        out["index"] = (pos, len(data) - 42)
        pos = len(data) - 42
    out["end"] = (pos, len(data))
    assert data[pos:pos + 2] == b"HE" and pos + 42 == len(data)
    return out
