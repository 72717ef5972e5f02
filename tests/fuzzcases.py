"""Mutated streams and the rules their decodes must follow: the fuzzing shared by
``tests/test_fuzz.py`` (the bounded fuzz CI runs) and ``benchmarks/fuzz_campaign.py``
(the long campaign).

The mutations of a valid stream (:func:`mutations` for format 3, :func:`mutations_v4`
for a normal format 4 stream, :func:`mutations_compact` for a compact one): bit flips,
byte insertions and deletions, truncation at every chunk / field boundary (and one byte
either side), random headers with a valid CRC, huge declared lengths with valid CRCs,
frames duplicated, swapped or taken from another stream, frames cut to fewer layers
behind valid CRCs, and garbage. Each yields ``(kind, bytes)``, seeded by its ``rng``.

:func:`outcome` decodes a mutated stream twice, strictly and with ``ignore_errors``, and
names what happened; every outcome must be one of:

* exact audio (strict decode succeeded: the output equals what the unmutated stream
  decodes to: the original samples for a lossless stream, the lossy decode with the same
  fill and seed for a lower tier);
* a lower tier: a stream that (CRCs and all) carries less than the original (fewer
  layers, or fewer segments of a layer in a frame: :func:`fewer`) is a valid lower-tier
  stream, decoded without the MD5 check;
* the codec's own error (a ``HybridCodecError`` subclass), with a one-line message;
* with ``ignore_errors``: a report listing damaged frames, where every frame *not*
  listed decodes to exactly what it decodes to unmutated (when the header is the
  original one);
* only where the caller says the mutation forges its checks (``forgeable``: a header,
  a table or a frame of another stream behind a valid CRC) and no MD5 vouches for the
  audio (a lower tier has none): other audio, "forged: other audio". Nothing in the
  stream can tell such a forgery from a genuine stream.

Anything else raises :class:`FuzzBug` (wrong audio without an error, a message of more
than one line, an allocation over the cap of :func:`allocation_cap`); any exception
that is not a ``HybridCodecError`` propagates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import random
import struct
import tracemalloc
import zlib

import numpy as np
import soundfile as sf
from nonseekable import NoSeek

import v4raw
from hybridcodec import codec
from hybridcodec.container import (UNIT_CUTTABLE, UNLISTED_EMPTY, DamagedFrame, Frame,
                                   StreamHeader, StreamReader, StreamWriter, truncate_frame,
                                   write_compact)
from hybridcodec.errors import CorruptStreamError, HybridCodecError
from hybridcodec.layer_units import layers_from_frame
from hybridcodec.model import _VERSION_2_DEFAULTS, HybridModel, ModelConfig

FRAME = 512  # the fuzz models' frame length: streams of a few frames stay small
MAX_ALLOC = 32 << 20  # bytes, for the huge-length cases
#: mutations that forge a check (a CRC recomputed, a frame of another stream that passes
#: its own): only an MD5 can catch what they change
FORGING_KINDS = frozenset({"header", "huge-length", "forged", "frames"})


def crc(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)


# --------------------------------------------------------------------------- structure


def parse(data: bytes):
    """(header_end, frames, end_start) of a valid format 3 stream, straight from
    docs/format.md.

    frames: list of dicts with start, table (offset of the layer table), n (layers),
    payloads [(offset, length)], end.
    """
    json_len = struct.unpack_from("<H", data, 6)[0]
    pos = 12 + json_len
    header_end = pos
    frames = []
    while data[pos: pos + 2] == b"HF":
        n = data[pos + 10]
        entries = [struct.unpack_from("<BI", data, pos + 11 + 5 * i) for i in range(n)]
        f = {"start": pos, "table": pos + 11, "n": n, "payloads": []}
        p = pos + 15 + 5 * n
        for _, length in entries:
            f["payloads"].append((p, length))
            p += length + 4
        f["end"] = p
        frames.append(f)
        pos = p
    return header_end, frames, pos


def boundaries(data: bytes) -> list[int]:
    """Every chunk and field boundary one byte either side; every layer payload's start
    and its CRC's start."""
    header_end, frames, end_start = parse(data)
    cuts = {0, 3, 4, 5, 8, header_end - 4, header_end, end_start, end_start + 2,
            end_start + 30, len(data) - 1}
    for f in frames:
        cuts |= {f["start"], f["start"] + 2, f["table"], f["table"] + 5 * f["n"],
                 f["table"] + 5 * f["n"] + 4}
    out = set()
    for c in cuts:
        out |= {c - 1, c, c + 1}
    for f in frames:
        for off, length in f["payloads"]:
            out |= {off, off + length}
    return sorted(c for c in out if 0 <= c < len(data))


# --------------------------------------------------------------------------- mutations


def byte_edits(data: bytes, rng: random.Random, spots: list[int]):
    """Yield (kind, mutated bytes): 110 bit flips (every other one at ``spots``, the
    structure's boundaries), 35 byte insertions and 35 deletions."""
    n = len(data)
    for i in range(110):
        d = bytearray(data)
        for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
            pos = rng.randrange(n) if i % 2 else rng.choice(spots)
            d[pos] ^= 1 << rng.randrange(8)
        yield "bitflip", bytes(d)
    for _ in range(35):
        d = bytearray(data)
        pos = rng.randrange(n + 1)
        d[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 3, 16, 100])))
        yield "insert", bytes(d)
    for _ in range(35):
        d = bytearray(data)
        pos = rng.randrange(n)
        del d[pos: pos + rng.choice([1, 2, 3, 16, 100])]
        yield "delete", bytes(d)


def frame_edits(data: bytes, frames: list[dict], head: bytes, tail: bytes, other: bytes,
                other_frames: list[dict], rng: random.Random):
    """Yield ("frames", mutated bytes): the frame chunks (``start``, ``end`` of each of
    ``frames``) between ``head`` and ``tail`` duplicated, swapped and dropped, six times
    each, then each replaced by the same frame of ``other``."""
    chunks = [data[fr["start"]:fr["end"]] for fr in frames]
    for _ in range(6):
        i = rng.randrange(len(chunks))
        yield "frames", head + b"".join(chunks[: i + 1] + chunks[i:]) + tail
        j = rng.randrange(len(chunks))
        c = list(chunks)
        c[i], c[j] = c[j], c[i]
        yield "frames", head + b"".join(c) + tail
        yield "frames", head + b"".join(chunks[:i] + chunks[i + 1:]) + tail
    for i in range(min(len(chunks), len(other_frames))):
        c = list(chunks)
        c[i] = other[other_frames[i]["start"]: other_frames[i]["end"]]
        yield "frames", head + b"".join(c) + tail


def mutations(data: bytes, other: bytes, rng: random.Random):
    """Yield (kind, mutated bytes) of a format 3 stream."""
    header_end, frames, end_start = parse(data)
    n = len(data)
    yield "control", data  # unchanged: must decode exactly
    # truncation at every boundary (+-1)
    for cut in boundaries(data):
        yield "truncate", data[:cut]
    # bit flips, anywhere and in the structure; bytes inserted and deleted
    yield from byte_edits(data, rng, boundaries(data))
    # random headers with a valid CRC, followed by the original frames
    original = json.loads(data[8:header_end - 4])
    for _ in range(30):
        obj = dict(original)
        for key in rng.sample(sorted(obj), rng.randrange(1, 4)):
            obj[key] = rng.choice([
                0, 1, -1, 7, 2**31, 2**40, 2**64, 10**30, 1.5, True, None, "", "x" * 300,
                "PCM_16", [1], {"a": 1}, obj[key]])
        if rng.random() < 0.2:
            obj.pop(rng.choice(sorted(obj)))
        body = json.dumps(obj).encode()
        head = b"HYBC" + bytes([3, 0]) + struct.pack("<H", len(body)) + body
        yield "header", head + crc(head) + data[header_end:]
    # huge declared lengths, with CRCs recomputed so that the length itself is read
    f = frames[len(frames) // 2]
    table_end = f["table"] + 5 * f["n"]
    for value in (2**32 - 1, 2**31, n, n - f["payloads"][0][0] + 1):
        d = bytearray(data)
        struct.pack_into("<I", d, f["table"] + 1, value)
        d[table_end: table_end + 4] = crc(bytes(d[f["start"]: table_end]))
        yield "huge-length", bytes(d)
    for field, value in (("num_samples", 2**40 - 1), ("num_samples", 2**33),
                         ("frame_length", 2**20), ("channels", 8), ("levels", 16),
                         ("num_layers", 64)):
        obj = dict(original, **{field: value})
        body = json.dumps(obj).encode()
        head = b"HYBC" + bytes([3, 0]) + struct.pack("<H", len(body)) + body
        yield "huge-length", head + crc(head) + data[header_end:]
    full = original["num_layers"]
    for value in sorted({1, 2, full // 2, full - 1} - {0, full}):  # a lower tier, or not
        obj = dict(original, num_layers=value)
        body = json.dumps(obj).encode()
        head = b"HYBC" + bytes([3, 0]) + struct.pack("<H", len(body)) + body
        yield "fewer-layers", head + crc(head) + data[header_end:]
    for value in (65535, 60000):  # json_len beyond the input
        d = bytearray(data)
        struct.pack_into("<H", d, 6, value)
        yield "huge-length", bytes(d)
    for value in (2**32 - 1, 2**20):  # frame sample count, CRC fixed
        d = bytearray(data)
        struct.pack_into("<I", d, f["start"] + 6, value)
        d[table_end: table_end + 4] = crc(bytes(d[f["start"]: table_end]))
        yield "huge-length", bytes(d)
    # frames duplicated, swapped, dropped, or from another stream
    yield from frame_edits(data, frames, data[:header_end], data[end_start:], other,
                           parse(other)[1], rng)
    # garbage
    for size in (0, 1, 4, 12, 100, 5000):
        yield "garbage", bytes(rng.randrange(256) for _ in range(size))
        yield "garbage", b"HYBC\x01" + bytes(rng.randrange(256) for _ in range(size))


def read_stream(data: bytes) -> tuple[StreamHeader, list[Frame], bytes]:
    reader = StreamReader(io.BytesIO(data))
    frames = list(reader.frames())
    return reader.header, frames, reader.footer.md5


def write_stream(header: StreamHeader, frames: list[Frame], md5: bytes, compact: bool) -> bytes:
    out = io.BytesIO()
    if compact:
        write_compact(out, header, frames[0], md5)
    else:
        writer = StreamWriter(out, header)
        for frame in frames:
            writer.write_frame(frame)
        writer.finish(md5)
    return out.getvalue()


def header_fields(h: StreamHeader) -> dict:
    return dict(sample_rate=h.sample_rate, channels=h.channels, bits=h.bits_per_sample,
                container=h.source_format, subtype=h.subtype, num_samples=h.num_samples,
                model=h.model_id, frame_shift=h.frame_length.bit_length() - 1,
                levels=h.levels, groups=h.groups,
                segment_shift=h.segment_length.bit_length() - 1, tier=tier_field(h))


def tier_field(h: StreamHeader) -> tuple:
    """The header's tier field as :func:`v4raw.body` takes it."""
    kind = h.tier_kind
    return (kind,) if kind == 0 else (kind, h.tier_code if kind == 1 else h.tier_rate)


FIELD_VALUES = {
    "sample_rate": [1, 8000, 44100, 96000, 1_000_000, 1_000_001, 0],
    "channels": [1, 2, 3, 8], "bits": [8, 16, 17, 24, 25, 39],
    "num_samples": [0, 1, 511, 512, 513, 2047, 2048, 2**33, 2**40 - 1, 2**40],
    "model": [1, 2, 3, 255, "0123456789abcdef", bytes(8)],
    "frame_shift": [0, 8, 9, 10, 20, 21, 31], "segment_shift": [0, 5, 9, 10, 40],
    "levels": [0, 1, 3, 4, 15], "groups": [0, 1, 4, 15],
    "tier": [(0,), (1, 3), (1, 250), (2, 1), (2, 0), (2, 2**32), (3,)],
    "container": ["WAV", "FLAC", "X", "AIFF-C", ""], "subtype": ["PCM_16", "PCM_24", "Y"],
    "extension": [b"", b"{}", b'{"a":1}', b"[1]", b"{", b'{"a":1,"a":2}'],
}


def mutations_v4(data: bytes, other: bytes, rng: random.Random):
    """Yield (kind, mutated bytes) of a normal format 4 stream."""
    spans = v4raw.frame_spans(data)
    header_end = spans["header"][1]
    frames = spans["frames"]
    n = len(data)
    yield "control", data
    cuts = {0, 3, 4, 5, 6, 7, header_end - 4, header_end, spans["end"][0],
            spans["end"][0] + 2, spans["end"][0] + 22, spans["end"][0] + 38, n - 1}
    if spans["index"]:
        cuts |= {spans["index"][0], spans["index"][0] + 2, spans["index"][0] + 3}
    for f in frames:
        cuts |= {f["start"], f["start"] + 2, f["start"] + 3, f["table"] - 1, f["table"],
                 f["table_end"], f["payload"], f["payload"] + f["payload_len"], f["end"]}
    bounds = sorted(c + d for c in cuts for d in (-1, 0, 1) if 0 <= c + d < n)
    for cut in bounds:
        yield "truncate", data[:cut]
    yield from byte_edits(data, rng, bounds)
    # random header fields, CRC valid, the original frames after them
    header, decoded, md5 = read_stream(data)
    original = header_fields(header)
    for _ in range(30):
        fields = dict(original)
        for key in rng.sample(sorted(FIELD_VALUES), rng.randrange(1, 4)):
            fields[key] = rng.choice(FIELD_VALUES[key])
        flags = data[5] ^ (rng.choice([0, 0, 0, 1, 2, 4, 0x80]))
        try:
            head = v4raw.header(v4raw.body(**fields), flags=flags)
        except (ValueError, struct.error):
            continue
        yield "header", head + data[header_end:]
    # huge declared lengths behind valid header CRCs
    f = frames[len(frames) // 2]
    head = bytearray(data[f["start"]:f["table_end"]])
    mask, p = v4raw.read_varint(head, f["table"] - f["start"])
    for value in (2**30 - 1, 2**28, n // 4, n // 4 - 10):
        table = v4raw.varint(mask) + v4raw.varint(value)
        _, p2 = v4raw.read_varint(head, p)
        new_head = head[:f["table"] - f["start"]] + table + head[p2:]
        yield "huge-length", (data[:f["start"]] + new_head + v4raw.crc(bytes(new_head))
                              + data[f["table_end"] + 4:])
    for key, value in (("num_samples", 2**40 - 1), ("num_samples", 2**33), ("frame_shift", 20),
                       ("channels", 8), ("levels", 15), ("groups", 15)):
        yield "huge-length", v4raw.header(v4raw.body(**{**original, key: value}),
                                          flags=data[5]) + data[header_end:]
    # frames cut to fewer layers behind valid CRCs: a lower tier if the header says so,
    # else refused (a lossless header promises every layer)
    lower = dataclasses.replace(header, tier_kind=2, tier_code=0, tier_rate=1)
    for keep in (1, 2, header.num_layers // 2, header.num_layers - 1):
        cut = [truncate_frame(header, fr, {k: 0 for k in range(keep, header.num_layers)})
               for fr in decoded]
        yield "fewer-layers", write_stream(lower, cut, md5, compact=False)
        chunks = write_stream(lower, cut, md5, compact=False)
        lower_end = v4raw.body_end(chunks) + 4
        yield "fewer-layers", data[:header_end] + chunks[lower_end:]
    # frames duplicated, swapped, dropped, or from another stream (the index is then off)
    yield from frame_edits(data, frames, data[:header_end], data[frames[-1]["end"]:], other,
                           v4raw.frame_spans(other)["frames"], rng)
    for size in (0, 1, 4, 12, 100, 5000):
        yield "garbage", bytes(rng.randrange(256) for _ in range(size))
        yield "garbage", b"HYBC\x04" + bytes(rng.randrange(256) for _ in range(size))


def mutations_compact(data: bytes, other: bytes, rng: random.Random):
    """Yield (kind, mutated bytes) of a compact format 4 stream (one CRC over it all)."""
    n = len(data)
    header, (frame,), md5 = read_stream(data)
    body_end = v4raw.body_end(data)
    yield "control", data
    cuts = {0, 3, 4, 5, 6, 7, body_end, body_end + 16, body_end + 17, body_end + 18,
            n - frame.payload_bytes - 4, n - 4, n - 1}
    for cut in sorted(c + d for c in cuts for d in (-1, 0, 1) if 0 <= c + d < n):
        yield "truncate", data[:cut]
    for _ in range(40):
        yield "truncate", data[:rng.randrange(n)]
    for i in range(80):
        d = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 8])):
            pos = rng.randrange(n) if i % 2 else rng.randrange(min(n, body_end + 40))
            d[pos] ^= 1 << rng.randrange(8)
        yield "bitflip", bytes(d)
    for _ in range(15):
        d = bytearray(data)
        pos = rng.randrange(n + 1)
        d[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 16])))
        yield "insert", bytes(d)
        d = bytearray(data)
        pos = rng.randrange(n)
        del d[pos: pos + rng.choice([1, 2, 5, 40])]
        yield "delete", bytes(d)
    # header fields forged behind a valid CRC (the one CRC covers the whole stream)
    original = header_fields(header)
    rest = data[body_end:n - 4]
    for _ in range(40):
        fields = dict(original)
        for key in rng.sample(sorted(FIELD_VALUES), rng.randrange(1, 3)):
            fields[key] = rng.choice(FIELD_VALUES[key])
        try:
            body = v4raw.body(**fields)
        except (ValueError, struct.error):
            continue
        forged = b"HYBC\x04" + bytes([data[5] ^ rng.choice([0, 0, 2, 0x40])]) + body + rest
        yield "header", forged + v4raw.crc(forged)
    # the table and payload forged behind a valid CRC
    for _ in range(20):
        d = bytearray(data[:n - 4])
        pos = rng.randrange(body_end, len(d))
        d[pos] = rng.randrange(256)
        yield "forged", bytes(d) + v4raw.crc(bytes(d))
    lower = dataclasses.replace(header, tier_kind=2, tier_code=0, tier_rate=1)
    for keep in (1, 2, header.num_layers - 1):
        cut = truncate_frame(header, frame, {k: 0 for k in range(keep, header.num_layers)})
        yield "fewer-layers", write_stream(lower, [cut], md5, compact=True)
        try:
            yield "fewer-layers", write_stream(header, [cut], md5, compact=True)
        except ValueError:  # a lossless header refuses the cut frame
            pass
    o_header, (o_frame,), o_md5 = read_stream(other)
    yield "frames", write_stream(header, [o_frame], md5, compact=True)  # another clip's frame
    for size in (0, 1, 12, 100):
        yield "garbage", b"HYBC\x04\x01" + bytes(rng.randrange(256) for _ in range(size))


def as_version_3(data: bytes) -> bytes:
    """The frames of a format 4 stream in the format 3 layout (same payloads)."""
    header, frames, md5 = read_stream(data)
    legacy = dataclasses.replace(header, version=3, groups=None, segment_length=None,
                                 extra={"layer_groups": header.groups})
    out = io.BytesIO()
    writer = StreamWriter(out, legacy)
    for frame in frames:
        layers, _ = layers_from_frame(header, frame, "frame")
        writer.write_frame(Frame(frame.index, frame.num_samples, tuple(sorted(
            (k, p) for k, p in layers.items() if p or k == 0))))
    writer.finish(md5)
    return out.getvalue()




# --------------------------------------------------------------------------- streams


def fuzz_models(directory) -> dict[str, str]:
    """Model files of short frames in ``directory``: "segmented" (format 4's payload,
    the default) and "layered" (the payload of formats 1-3, which a version 3 stream
    holds; format 4 carries it too). Returns name -> path."""
    out = {}
    for name, config in (("segmented", ModelConfig(frame_length=FRAME)),
                         ("layered", ModelConfig(frame_length=FRAME, **_VERSION_2_DEFAULTS))):
        path = f"{directory}/{name}.hcm"
        HybridModel(config).save(path)
        out[name] = path
    assert ModelConfig().payload == 4 and ModelConfig(**_VERSION_2_DEFAULTS).payload == 2
    return out


def source_audio(corpus: str | None, n: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if corpus:
        x, _ = sf.read(corpus, dtype="int16", always_2d=True, frames=n, start=20000)
        x = x[:, :channels]
        if x.shape[1] == channels and len(x) == n:
            return x
    t = np.arange(n)[:, None]
    return (4000 * np.sin(t * (0.01 + 0.02 * np.arange(channels))) +
            rng.normal(0, 200, (n, channels))).astype(np.int16)


SUBTYPES = {8: "PCM_U8", 16: "PCM_16", 24: "PCM_24"}


def encode(x: np.ndarray, model: str, bits: int = 16, rate: int = 44100) -> bytes:
    """The lossless stream of ``x`` (integers at ``bits`` bits, right-justified), coded
    from a WAV file."""
    wav = io.BytesIO()
    sf.write(wav, np.asarray(x, np.int32) << (32 - bits), rate, subtype=SUBTYPES[bits],
             format="WAV")
    wav.seek(0)
    out = io.BytesIO()
    codec.encode_file(wav, out, model=model)
    return out.getvalue()


def decode(data: bytes, model: str, seekable: bool, bits: int = 16, **kw):
    """(samples at ``bits`` bits, report) of a decode from a seekable or pipe-like input."""
    out = io.BytesIO()
    src = io.BytesIO(data) if seekable else NoSeek(data)
    report = codec.decode_file(src, out, model=model, **kw)
    y, _ = sf.read(io.BytesIO(out.getvalue()), dtype="int32", always_2d=True)
    return y >> (32 - bits), report


def carried(data: bytes):
    """What the stream carries: format 3, the header's num_layers; format 4, for every
    frame that can be read, the segments it holds of each layer ({frame: {layer: n}}; a
    unit cut to k segments holds k, an unlisted layer of a frame flagged UNLISTED_EMPTY is
    held whole). See :func:`fewer`."""
    reader = StreamReader(io.BytesIO(data), recover=True)
    header = reader.header
    if header.version < 4:
        return header.num_layers
    out = {}
    try:
        for frame in reader.frames():
            if isinstance(frame, DamagedFrame):
                continue
            segments = -(-frame.num_samples // header.segment_length)
            held = dict.fromkeys(range(header.num_layers), segments) \
                if frame.flags & UNLISTED_EMPTY else {}
            for unit in frame.units:
                n = segments if unit.state <= UNIT_CUTTABLE else unit.state - 1
                held.update(dict.fromkeys(range(unit.first, unit.end), n))
            out[frame.index] = held
    except CorruptStreamError:
        pass
    return out


def fewer(held, original) -> bool:
    """Whether a stream that carries ``held`` (:func:`carried`) carries less than the
    original: fewer layers (format 3), or a frame of the original's with fewer segments
    of one of its layers (format 4: a lower tier cuts layers and segments frame by
    frame). Such a stream, CRCs and all, is a valid lower-tier stream."""
    if isinstance(held, int) or isinstance(original, int):
        return isinstance(held, int) and isinstance(original, int) and held < original
    return any(held[f].get(layer, 0) < n for f in held.keys() & original.keys()
               for layer, n in original[f].items())


# --------------------------------------------------------------------------- outcomes


class FuzzBug(AssertionError):
    """An outcome none of the rules allows; ``category`` says which rule it broke
    ("wrong audio", "multi-line message", "over-memory")."""

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(f"{category}: {detail}")
        self.category = category
        self.detail = detail


@dataclasses.dataclass
class Target:
    """A stream under fuzz and what its decodes must give.

    ``expect`` maps a decode's ``(fill, seed)`` to the samples the unmutated stream
    decodes to with them (a lossless stream: the original samples for every key);
    ``fill_crosses_frames``: a lower tier of the segmented payload, whose envelope fill
    runs across frames (unless ``fill`` is "zero"): next to a damaged frame the others
    may then differ from the unmutated decode, and :meth:`independent` says so."""

    data: bytes
    header_end: int  # the header chunk: a mutation that keeps it keeps the header
    model: str
    bits: int
    expect: dict
    lossless: bool = True
    fill_crosses_frames: bool = False

    def __post_init__(self) -> None:
        self.carried = carried(self.data)

    def independent(self, fill: str) -> bool:
        return self.lossless or not self.fill_crosses_frames or fill == "zero"


def one_line(exc: HybridCodecError, kind: str) -> str:
    message = str(exc)
    if "\n" in message:
        raise FuzzBug("multi-line message", f"{kind}: {type(exc).__name__}: {message!r}")
    return type(exc).__name__


def _same(y: np.ndarray, x: np.ndarray) -> bool:
    return y.shape == x.shape and np.array_equal(y, x)


def outcome(t: Target, kind: str, mutated: bytes, seekable: bool, fill: str = "sample",
            seed: int = 0, forgeable: bool = False) -> tuple[str, str]:
    """(strict outcome, ignore-errors outcome) of decoding ``mutated`` (see the module
    docstring); raises :class:`FuzzBug` on an outcome no rule allows."""
    x = t.expect[fill, seed]
    kw = {"fill": fill, "seed": seed}
    # strict: exact audio, a lower tier, the codec's own error (or an undetectable forgery)
    try:
        y, report = decode(mutated, t.model, seekable, t.bits, **kw)
    except HybridCodecError as exc:
        strict = one_line(exc, kind)
    else:
        if _same(y, x):
            strict = "exact"
        elif fewer(carried(mutated), t.carried):
            strict = "lower tier"
        elif forgeable and report.md5_ok is not True:
            strict = "forged: other audio"
        else:
            raise FuzzBug("wrong audio", f"{kind}: decoded to wrong audio without an error")
    # recovering: same, or a list of damaged frames; the rest must be exact
    try:
        y, report = decode(mutated, t.model, seekable, t.bits, ignore_errors=True, **kw)
    except HybridCodecError as exc:
        recovering = one_line(exc, kind)
    else:
        if report.clean:
            if not _same(y, x):
                raise FuzzBug("wrong audio", f"{kind}: a clean report of wrong audio")
            recovering = "clean"
        elif fewer(carried(mutated), t.carried) and report.md5_ok is None \
                and not report.damaged:
            recovering = "lower tier"
        elif not report.damaged and not report.warnings and _same(y, x):
            recovering = "clean"  # a lower tier: no MD5 to check
        else:
            recovering = f"recovered ({len(report.damaged)} damaged)" \
                if report.damaged else "recovered (warnings only)"
            wrong = any("decoded audio is wrong" in w for w in report.warnings)
            if mutated[:t.header_end] == t.data[:t.header_end] and not wrong \
                    and t.independent(fill):
                # (a frame spliced in from another stream passes its CRCs and decodes;
                # only the MD5 can tell, and it did: skip this check)
                problem = _damage_problem(y, x, report)
                if problem and forgeable and report.md5_ok is not True:
                    recovering = "forged: other audio"
                elif problem:
                    raise FuzzBug("wrong audio", f"{kind}: {problem}")
    return strict, recovering


def ranged_outcome(t: Target, kind: str, mutated: bytes, start: int, stop: int,
                   fill: str = "sample", seed: int = 0, forgeable: bool = False) -> str:
    """The outcome of decoding only the samples ``[start, stop)`` of ``mutated`` (a seek:
    format 4's index, else frame headers walked): exactly those samples of the unmutated
    decode, a lower tier, the codec's own error, or (``forgeable``) other audio, which no
    MD5 can catch here: a partial decode checks none."""
    x = t.expect[fill, seed][start:stop]
    try:
        y, _ = decode(mutated, t.model, True, t.bits, fill=fill, seed=seed, skip=start,
                      until=stop)
    except HybridCodecError as exc:
        return one_line(exc, kind)
    if _same(y, x):
        return "exact"
    if fewer(carried(mutated), t.carried):
        return "lower tier"
    if forgeable:
        return "forged: other audio"
    raise FuzzBug("wrong audio", f"{kind}: samples {start}..{stop - 1} decoded to wrong audio "
                  "without an error")


def _damage_problem(y: np.ndarray, x: np.ndarray, report) -> str | None:
    """What is wrong with a recovering decode ``y`` of a stream whose undamaged frames
    decode to ``x`` (None: nothing). The output may end early (a lost tail), and says so."""
    if len(y) > len(x) or y.shape[1] != x.shape[1]:
        return f"output of shape {y.shape}, the stream's is {x.shape}"
    if len(y) < len(x) and not (report.warnings and "stream ends after" in report.warnings[0]):
        return f"output ends early ({len(y)} of {len(x)} samples) and no warning says so"
    bad = np.zeros(len(y), bool)
    for r in report.damaged:
        bad[r.start: r.end] = True
    if not np.array_equal(y[~bad], x[: len(y)][~bad]):
        return "a frame not reported damaged decoded to other audio"
    if y[bad].any():
        return "a frame reported damaged is not silence"
    return None


@contextlib.contextmanager
def allocation_cap(limit: int, what: str = ""):
    """Trace the allocations of the block (tracemalloc); :class:`FuzzBug` ("over-memory")
    when their peak reaches ``limit`` bytes."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if peak >= limit:
        raise FuzzBug("over-memory", f"{what}: {peak} bytes allocated (cap {limit})")
