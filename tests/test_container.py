"""Tests of the version 4 container (hybridcodec/format, spec in docs/format.md,
"Version 4 container"); versions 1-3 are tested in test_container_legacy.py.

Streams are built two ways: with the package's writers, and byte by byte from the spec
(tests/v4raw.py), so a writer and reader that agree with each other but not with the spec
are caught. The reader must turn every bad input into CorruptStreamError (or a subclass)
with a one-line message, and nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import struct
import time
import tracemalloc

import constriction
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import v4raw
from hybridcodec.container import (BUNDLED_MODELS, FORMAT_VERSION, SUPPORTED_VERSIONS,
                                   TIER_NAMED, TIER_RATE, UNIT_CUTTABLE, UNLISTED_EMPTY,
                                   DamagedFrame, Frame, StreamFooter, StreamHeader,
                                   StreamReader, StreamWriter, Unit, read_stream_layout,
                                   truncate_frame, truncate_unit, write_compact, write_footer,
                                   write_frame, write_header, write_index)
from hybridcodec.errors import CorruptStreamError, TruncatedStreamError, UnsupportedVersionError
from hybridcodec.format import v4
from hybridcodec.format.varint import (MAX_VARINT, NeedMore, VarintError, decode_varint,
                                       encode_varint, varint_size)

MODEL_ID = "0123456789abcdef"
DEFAULT_MODEL = "e40987291b5fd215"
MD5 = hashlib.md5(b"pcm").digest()
FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def make_header(**overrides) -> StreamHeader:
    values = dict(sample_rate=44100, channels=2, bits_per_sample=16, subtype="PCM_16",
                  source_format="WAV", num_samples=10, frame_length=4, model_id=MODEL_ID,
                  levels=2, num_layers=3)
    values.update(overrides)
    return StreamHeader(**values)


FRAMES = [
    Frame(0, 4, units=(Unit(0, 1, b"coar"), Unit(1, 1, b"d2d2d2d2"), Unit(2, 1, b"d1-f")),
          flags=UNLISTED_EMPTY),
    Frame(1, 4, units=(Unit(0, 1, b"co-1"),), flags=UNLISTED_EMPTY),  # layers 1, 2 empty
    Frame(2, 2, units=(Unit(0, 3, b"all three layers"),), flags=UNLISTED_EMPTY),
]


def build(header=None, frames=FRAMES, md5=MD5, index=None) -> bytes:
    header = header or make_header()
    fp = io.BytesIO()
    writer = StreamWriter(fp, header, index=index)
    for frame in frames:
        writer.write_frame(frame)
    writer.finish(md5)
    return fp.getvalue()


STREAM = build()
META_BLOB = b"any bytes: the container does not look inside"
META_STREAM = build(make_header(metadata=META_BLOB))


class Pipe:
    """A non-seekable input (no tell/seek) that also returns short reads."""

    def __init__(self, data: bytes, step: int = 7):
        self._data = data
        self._pos = 0
        self._step = step
        self.largest_request = 0
        self.delivered = 0

    def read(self, n: int = -1) -> bytes:
        self.largest_request = max(self.largest_request, n)
        n = min(n, self._step) if n >= 0 else self._step
        out = self._data[self._pos:self._pos + n]
        self._pos += len(out)
        self.delivered += len(out)
        return out


class Counting(io.BytesIO):
    """A seekable input that counts the bytes read from it."""

    delivered = 0

    def read(self, n: int = -1) -> bytes:
        data = super().read(n)
        self.delivered += len(data)
        return data


def read_all(data: bytes, pipe: bool = False):
    reader = StreamReader(Pipe(data) if pipe else io.BytesIO(data))
    frames = list(reader.frames())
    return reader.header, frames, reader.footer


def read_error(data: bytes, pipe: bool = False) -> CorruptStreamError:
    with pytest.raises(CorruptStreamError) as info:
        read_all(data, pipe)
    message = str(info.value)
    assert message and "\n" not in message
    return info.value


def regions(stream: bytes):
    """(start, end, label) of every chunk of a normal stream, and the payload spans."""
    spans = v4raw.frame_spans(stream)
    out = [(*spans["header"], "header")]
    if spans["metadata"]:
        out.append((*spans["metadata"], "metadata chunk"))
    payloads = []
    for i, f in enumerate(spans["frames"]):
        out.append((f["start"], f["end"], f"frame {i}"))
        payloads.append((f["payload"], f["payload"] + f["payload_len"], i))
    if spans["index"]:
        out.append((*spans["index"], "index chunk"))
    out.append((*spans["end"], "end chunk"))
    return out, payloads


# --------------------------------------------------------------------------- varints


@pytest.mark.parametrize("value, size", [(0, 1), (1, 1), (127, 1), (128, 2), (16383, 2),
                                         (16384, 3), (2**21 - 1, 3), (2**35, 6),
                                         (2**63, 10), (2**64 - 1, 10)])
def test_varint_roundtrip_and_size(value, size):
    data = encode_varint(value)
    assert len(data) == size == varint_size(value)
    assert decode_varint(data, 0, MAX_VARINT, "x") == (value, size)
    assert decode_varint(b"\xaa" + data + b"tail", 1, value, "x") == (value, size + 1)


def test_varint_is_leb128():
    assert encode_varint(300) == b"\xac\x02"
    assert encode_varint(44100) == b"\xc4\xd8\x02"
    assert encode_varint(2**64 - 1) == b"\xff" * 9 + b"\x01"


@pytest.mark.parametrize("data, words", [
    (b"\x80\x00", "not minimally"),
    (b"\xff\x80\x00", "not minimally"),
    (b"\x80\x80\x80\x00", "not minimally"),
    (b"\xff" * 9 + b"\x02", "at most"),  # 65 bits
    (b"\xff" * 10 + b"\x01", "longer than 10"),
    (b"\x80" * 11, "longer than 10"),
])
def test_varint_rejects_non_minimal_and_long(data, words):
    with pytest.raises(VarintError, match=words):
        decode_varint(data, 0, MAX_VARINT, "field")


def test_varint_limit_and_need_more():
    assert decode_varint(b"\x05", 0, 5, "f") == (5, 1)
    with pytest.raises(VarintError, match="f is 6, at most 5"):
        decode_varint(b"\x06", 0, 5, "f")
    for data in (b"", b"\x80", b"\xff\xff"):
        with pytest.raises(NeedMore):
            decode_varint(data, 0, MAX_VARINT, "f")
    for bad in (-1, 2**64, True, 1.0):
        with pytest.raises(ValueError):
            encode_varint(bad)


# --------------------------------------------------------------------------- header


def test_header_of_a_one_second_clip_is_22_bytes():
    """docs/format.md's example: the default model, 1 s of 44.1 kHz mono 16-bit WAV."""
    h = make_header(channels=1, num_samples=44100, frame_length=1 << 17, model_id=DEFAULT_MODEL,
                    levels=4, num_layers=20)
    body = v4.header_body(h)
    assert body.hex(" ") == "08 40 00 c4 d8 02 01 11 44 11 00 00"
    assert len(body) == 12
    fp = io.BytesIO()
    write_header(fp, h)
    assert fp.getvalue() == v4raw.header(body) and len(fp.getvalue()) == 22


def test_writer_matches_the_spec_byte_for_byte():
    assert FORMAT_VERSION == 4 and SUPPORTED_VERSIONS == {1, 2, 3, 4}
    head = v4raw.header(v4raw.body(), flags=0x02)  # an index: three frames
    f0 = v4raw.frame(0, 4, UNLISTED_EMPTY | v4.FRAME_SIMPLE,
                     v4raw.simple_table([(0, b"coar"), (1, b"d2d2d2d2"), (2, b"d1-f")]),
                     b"coard2d2d2d2d1-f")
    f1 = v4raw.frame(1, 4, UNLISTED_EMPTY | v4.FRAME_SIMPLE, v4raw.simple_table([(0, b"co-1")]),
                     b"co-1")
    f2 = v4raw.frame(2, 2, UNLISTED_EMPTY | v4.FRAME_ONE_UNIT | v4.FRAME_SIMPLE,
                     v4raw.varint(4), b"all three layers")
    offsets = [len(head), len(head) + len(f0), len(head) + len(f0) + len(f1)]
    tail = v4raw.index(offsets)
    at = len(head) + len(f0) + len(f1) + len(f2)
    expected = head + f0 + f1 + f2 + tail + v4raw.end(3, 10, at, MD5)
    assert STREAM == expected
    assert STREAM[4:6] == b"\x04\x02"


@pytest.mark.parametrize("overrides, body", [
    ({}, {}),
    (dict(sample_rate=44056), dict(sample_rate=44056)),  # no code: written out
    (dict(sample_rate=1, frame_length=1), dict(sample_rate=1, frame_shift=0)),
    (dict(sample_rate=1_000_000), dict(sample_rate=1_000_000)),
    (dict(source_format="NIST", subtype="PCM_24"), dict(container="NIST", subtype="PCM_24")),
    (dict(source_format="FLAC", subtype="ULAW"), dict(container="FLAC", subtype="ULAW")),
    (dict(source_format="WAVEX", subtype="PCM_U8", bits_per_sample=8),
     dict(container="WAVEX", subtype="PCM_U8", bits=8)),
    (dict(model_id=DEFAULT_MODEL), dict(model=1)),
    (dict(model_id="ccd651dbb62662d7"), dict(model=2)),
    (dict(num_samples=2**40 - 1, frame_length=2**20), dict(num_samples=2**40 - 1, frame_shift=20)),
    (dict(num_samples=0), dict(num_samples=0)),
    (dict(channels=8, bits_per_sample=24), dict(channels=8, bits=24)),
    (dict(levels=15, num_layers=64 // 16 * 16, groups=4), dict(levels=15, groups=4)),
    (dict(levels=0, num_layers=15), dict(levels=0, groups=15)),
    (dict(frame_length=1 << 12, segment_length=1 << 2),
     dict(frame_shift=12, segment_shift=2)),
    (dict(tier_kind=TIER_NAMED, tier_code=3), dict(tier=(1, 3))),
    (dict(tier_kind=TIER_NAMED, tier_code=200), dict(tier=(1, 200))),
    (dict(tier_kind=TIER_RATE, tier_rate=960), dict(tier=(2, 960))),
    (dict(tier_kind=TIER_RATE, tier_rate=2**32 - 1), dict(tier=(2, 2**32 - 1))),
    (dict(extra={"encoder": "x", "n": [1, 2.5]}), dict(extension=b'{"encoder":"x","n":[1,2.5]}')),
])
def test_every_header_field_roundtrips_as_specified(overrides, body):
    h = make_header(**overrides)
    data = build(h, frames=[]) if h.num_samples == 0 else None
    fp = io.BytesIO()
    write_header(fp, h)
    assert fp.getvalue() == v4raw.header(v4raw.body(**{**dict(num_samples=h.num_samples), **body}))
    got = StreamReader(io.BytesIO(fp.getvalue() + b"rest")).header
    assert got == h
    if data is not None:
        assert read_all(data)[0] == h


def test_tier_labels():
    assert make_header().tier == "lossless"
    assert make_header(tier_kind=TIER_NAMED, tier_code=3).tier == "low"
    assert make_header(tier_kind=TIER_NAMED, tier_code=99).tier == "tier 99"
    assert make_header(tier_kind=TIER_RATE, tier_rate=965).tier == "96.5kbps"
    assert make_header(tier_kind=TIER_RATE, tier_rate=960, tier="ignored").tier == "96kbps"
    assert not make_header(tier_kind=TIER_RATE, tier_rate=1).complete


def test_model_registry_is_append_only_and_used():
    assert BUNDLED_MODELS[1] == "e40987291b5fd215" and BUNDLED_MODELS[2] == "ccd651dbb62662d7"
    assert BUNDLED_MODELS[3] == "966f00cb4bbff40b"
    data = v4raw.header(v4raw.body(model=DEFAULT_MODEL))
    assert data[10] == 1 and StreamReader(io.BytesIO(data)).header.model_id == DEFAULT_MODEL
    # an explicit id of a registry model (a writer with an older table) is read too
    explicit = v4raw.header(v4raw.body(model=bytes.fromhex(DEFAULT_MODEL)))
    assert StreamReader(io.BytesIO(explicit)).header.model_id == DEFAULT_MODEL
    fp = io.BytesIO()
    write_header(fp, make_header(model_id=DEFAULT_MODEL))
    assert fp.getvalue() == data


def _header_error(body: bytes, flags: int = 0, tail: bytes = b"") -> CorruptStreamError:
    with pytest.raises(CorruptStreamError) as info:
        StreamReader(io.BytesIO(v4raw.header(body, flags=flags) + tail))
    message = str(info.value)
    assert message and "\n" not in message
    return info.value


@pytest.mark.parametrize("body, words", [
    (v4raw.body(sample_rate=0, rate_code=0), "sample_rate must be in 1..1000000"),
    (v4raw.body(sample_rate=1_000_001), "sample_rate must be in"),
    (v4raw.body(sample_rate=44100, rate_code=0), "written out although it has code 8"),
    (v4raw.body(rate_code=16), "unknown sample rate code 16"),
    (v4raw.body(rate_code=255), "unknown sample rate code 255"),
    (v4raw.body(bits=25), "bits_per_sample must be in 8..24"),
    (v4raw.body(bits=39), "bits_per_sample"),
    (v4raw.body(container="WAV\x01"), "container name must be"),
    (v4raw.body(container="FLAC", subtype="\xe9"), "subtype name must be"),
    (v4raw.body(num_samples=2**40), "num_samples must be in 0..1099511627775"),
    (v4raw.body(num_samples=2**64 - 1), "num_samples"),
    (v4raw.body(frame_shift=21), "above 2^20"),
    (v4raw.body(frame_shift=0x22), "reserved bits set in the frame-length byte"),
    (v4raw.body(frame_shift=4, segment_shift=5), "segment_length must be"),
    (v4raw.body(frame_shift=20, segment_shift=9), "segment_length must be"),
    (v4raw.body(levels=3, groups=0), "groups must be in 1..15"),
    (v4raw.body(levels=15, groups=5), "num_layers must be in 1..64"),
    (v4raw.body(tier=(3,)), "unknown tier kind 3"),
    (v4raw.body(tier=(2, 0)), "rate-target tier needs"),
    (v4raw.body(tier=(2, 2**32)), "tier_rate must be in"),
    (v4raw.body(extension=b"[1]"), "extension JSON is not an object"),
    (v4raw.body(extension=b'{"a":1,"a":2}'), "duplicate key"),
    (v4raw.body(extension=b'{"a":NaN}'), "non-standard constant"),
    (v4raw.body(extension=b"\xff{}"), "not valid UTF-8"),
    (v4raw.body(extension=b"{"), "invalid extension JSON"),
    (v4raw.body(num_samples=2**33, frame_shift=0), "frames, more than"),
])
def test_impossible_header_fields(body, words):
    error = _header_error(body)
    assert type(error) is CorruptStreamError
    assert str(error).startswith("corrupt header: ") and words in str(error), str(error)


def test_container_and_subtype_names_with_a_code_must_use_it():
    body = bytearray(v4raw.body(container="X"))
    assert b"\x01X" in body
    body[body.index(b"\x01X"):body.index(b"\x01X") + 2] = b"\x04FLAC"
    assert "container 'FLAC' written out" in str(_header_error(bytes(body)))


@pytest.mark.parametrize("flags", [0x04, 0x80, 0xFC])
def test_reserved_header_flags_are_rejected(flags):
    assert "reserved flag bits" in str(_header_error(v4raw.body(), flags=flags))


def test_unknown_bundled_model_asks_for_an_upgrade_but_only_with_a_good_crc():
    unknown = max(BUNDLED_MODELS) + 1  # the first number a newer writer's registry adds
    assert unknown <= 255 and unknown not in BUNDLED_MODELS
    error = _header_error(v4raw.body(model=unknown))
    assert type(error) is UnsupportedVersionError and f"bundled model #{unknown}" in str(error)
    assert "upgrade" in str(error)
    damaged = bytearray(v4raw.header(v4raw.body(model=unknown)))
    damaged[-1] ^= 1
    with pytest.raises(CorruptStreamError, match="header CRC mismatch") as info:
        StreamReader(io.BytesIO(bytes(damaged)))
    assert type(info.value) is CorruptStreamError


def test_non_minimal_varint_in_the_header_is_rejected():
    body = v4raw.body(num_samples=10)
    at = body.index(b"\x0a")
    bad = body[:at] + b"\x8a\x00" + body[at + 1:]
    assert "not minimally encoded" in str(_header_error(bad))


@pytest.mark.parametrize("overrides", [
    dict(frame_length=100), dict(frame_length=2**21), dict(segment_length=8),
    dict(frame_length=1 << 12, segment_length=1), dict(segment_length=3), dict(levels=16),
    dict(groups=0, levels=2, num_layers=3), dict(groups=2), dict(num_layers=65, levels=0),
    dict(flags=1), dict(tier_kind=3), dict(tier_rate=5), dict(tier_kind=TIER_RATE),
    dict(tier_code=1), dict(subtype="PCM_\u00e9"), dict(source_format="x" * 256),
    dict(extra={"x": object()}), dict(extra={"x": "y" * 70000}), dict(extra={1: 2}),
    dict(model_id="XYZ"), dict(channels=9), dict(num_samples=-1),
    dict(num_samples=2**33, frame_length=1), dict(metadata=b""),
])
def test_write_header_rejects_bad_headers(overrides):
    with pytest.raises(ValueError):
        write_header(io.BytesIO(), make_header(**overrides))


def test_header_flags_are_the_layout_s():
    assert STREAM[5] == 0x02  # has an index
    assert build(index=False)[5] == 0
    reader = StreamReader(io.BytesIO(STREAM))
    assert reader.has_index and not reader.compact and reader.header.flags == 0


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("pipe", [False, True])
@pytest.mark.parametrize("index", [None, False])
def test_roundtrip(pipe, index):
    data = build(index=index)
    header, frames, footer = read_all(data, pipe)
    assert header == make_header() and frames == FRAMES
    assert footer == StreamFooter(3, 10, MD5, len(data) - 42 - 10 if index is None else 0)


def test_roundtrip_with_metadata_and_layout():
    header, frames, _ = read_all(META_STREAM)
    assert header.metadata == META_BLOB and frames == FRAMES
    for data in (STREAM, META_STREAM):
        layout = read_stream_layout(io.BytesIO(data))
        assert layout.num_frames == 3 and layout.total_bytes == len(data)
        assert layout.layer_bytes == {0: 4 + 4 + 16, 1: 8, 2: 4}  # the 3-layer unit: layer 0
        assert layout.layer_frames == {0: 3, 1: 1, 2: 1}
        assert layout.header_bytes + layout.framing_bytes + layout.payload_bytes == len(data)
        assert layout.units == 5 and layout.multi_layer_units == 1 and layout.layers_carried == 3
        assert layout.index_bytes == 10 and not layout.compact
    assert read_stream_layout(io.BytesIO(META_STREAM)).metadata_bytes == 10 + len(META_BLOB)


def test_empty_stream():
    header = make_header(num_samples=0)
    data = build(header, frames=[])
    assert data[5] == 0  # no index for no frames
    assert read_all(data) == (header, [], StreamFooter(0, 0, MD5, 0))


def test_frames_can_be_iterated_once():
    reader = StreamReader(io.BytesIO(STREAM))
    list(reader.frames())
    with pytest.raises(RuntimeError):
        reader.frames()


UNIT_CASES = [
    # general form: a cuttable unit, a truncated one, a multi-layer one, a gap
    (dict(frame_length=16, segment_length=4, num_samples=16, levels=3, num_layers=4),
     Frame(0, 16, units=(Unit(0, 1, b"a" * 12, UNIT_CUTTABLE, (3, 1, 0), b"\x01\x02\x03\x04"),
                         Unit(1, 1, b"b" * 8, 3, (1,), b"\x09\x08"),
                         Unit(3, 1, b"", 0, (), b"\x07")))),
    (dict(frame_length=16, segment_length=4, num_samples=13, levels=1, num_layers=4, groups=2),
     Frame(0, 13, units=(Unit(0, 2, b"xy" * 6, 0, (), b"\x05"), Unit(2, 1, b"", 2, (), b"\x01")),
           flags=UNLISTED_EMPTY)),
    # ONE_UNIT without SIMPLE (a slope)
    (dict(), Frame(0, 4, units=(Unit(0, 3, b"abcd", 0, (), b"\x10"),))),
    # a one-layer structure: ONE_UNIT with a state
    (dict(levels=0, num_layers=1, frame_length=8, segment_length=2, num_samples=8),
     Frame(0, 8, units=(Unit(0, 1, b"w" * 16, UNIT_CUTTABLE, (4, 2, 0), b"\x01\x01\x01\x01"),))),
    # no unit at all
    (dict(), Frame(0, 4, units=(), flags=UNLISTED_EMPTY)),
    (dict(), Frame(0, 4, units=())),
]


@pytest.mark.parametrize("overrides, frame", UNIT_CASES)
def test_unit_tables_roundtrip_in_frames_and_compact_streams(overrides, frame):
    overrides = {"num_samples": 4, "tier_kind": TIER_RATE, "tier_rate": 10, **overrides}
    h = make_header(**overrides)
    normal = build(h, frames=[frame])
    assert read_all(normal)[1] == [frame]
    fp = io.BytesIO()
    write_compact(fp, h, frame, MD5)
    header, frames, footer = read_all(fp.getvalue())
    assert header == h and frames == [frame] and footer.md5 == MD5


def test_general_unit_table_bytes():
    h, frame = UNIT_CASES[0]
    h = make_header(**h, tier_kind=TIER_RATE, tier_rate=10)
    table = v4raw.general_table([(0, 1, b"a" * 12, 1, (3, 1, 0), b"\x01\x02\x03\x04"),
                                 (1, 1, b"b" * 8, 3, (1,), b"\x09\x08"),
                                 (3, 1, b"", 0, (), b"\x07")])
    # cut table c_1 = 3, c_2 = 1, c_3 = 0 is stored as c_3 = 0, c_2 - c_3 = 1, c_1 - c_2 = 2
    assert table.hex(" ") == "03 00 01 03 01 00 01 02 01 02 03 04 00 01 02 03 01 09 08 01 01 00 " \
                             "00 07"
    chunk = v4.frame_chunk(frame, h)
    assert chunk == v4raw.frame(0, 16, 0, table, b"a" * 12 + b"b" * 8)


def test_frame_index_and_sample_count_are_varints():
    h = make_header(num_samples=300 * 4)
    frames = [Frame(i, 4, units=(Unit(0, 1, b"abcd"),), flags=UNLISTED_EMPTY) for i in range(300)]
    data = build(h, frames)
    spans = v4raw.frame_spans(data)["frames"]
    assert data[spans[200]["start"]:spans[200]["start"] + 4] == b"HF\xc8\x01"
    got = read_all(data)[1]
    assert got == frames


# --------------------------------------------------------------------------- frame rules


def test_minimal_frame_chunk_is_14_bytes():
    h = make_header(tier_kind=TIER_RATE, tier_rate=1)
    chunk = v4.frame_chunk(Frame(0, 4, units=()), h)
    assert len(chunk) == v4.MIN_FRAME_CHUNK == 14


def _stream_with(frames: list[bytes], header=None, count=None) -> bytes:
    header = header or v4raw.header(v4raw.body())
    count = len(frames) if count is None else count
    return header + b"".join(frames) + v4raw.end(count, 10, 0, MD5)


def simple(index, n, units, flags=UNLISTED_EMPTY):
    return v4raw.frame(index, n, flags | v4.FRAME_SIMPLE, v4raw.simple_table(units),
                       b"".join(p for _, p in units))


GOOD3 = [simple(0, 4, [(0, b"abcd")]), simple(1, 4, [(0, b"abcd")]), simple(2, 2, [(0, b"ab12")])]


@pytest.mark.parametrize("frames, words", [
    ([simple(1, 4, [(0, b"abcd")])], "frame index 1, expected 0"),
    ([simple(0, 3, [(0, b"abcd")])], "3 samples, expected 4"),
    ([simple(0, 5, [(0, b"abcd")])], "num_samples is 5, at most 4"),
    ([simple(0, 0, [(0, b"abcd")])], "declares 0 samples"),
    ([v4raw.frame(0, 4, 0x08, b"\x00", b"")], "reserved flag bits"),
    ([v4raw.frame(0, 4, 0x84, b"\x00", b"")], "reserved flag bits"),
    ([v4raw.frame(0, 4, v4.FRAME_SIMPLE, v4raw.varint(8), b"")], "layer mask is 8, at most 7"),
    ([v4raw.frame(0, 4, 0, v4raw.varint(4), b"")], "unit count is 4, at most 3"),
    ([v4raw.frame(0, 4, 0, b"\x01\x00\x04\x00\x00", b"")], "layer count is 4, at most 3"),
    ([v4raw.frame(0, 4, 0, b"\x01\x00\x00\x00\x00", b"")], "covers layers 0..-1"),
    ([v4raw.frame(0, 4, 0, b"\x01\x02\x02\x00\x00", b"")], "covers layers 2..3"),
    ([v4raw.frame(0, 4, 0, b"\x02\x00\x02\x00\x00\x00\x02\x00\x00", b"")], "covers layers 2..3"),
    ([v4raw.frame(0, 4, 0, b"\x01\x00\x01\x00\x02\x00", b"")], "state is 2, at most 1"),
    ([v4raw.frame(0, 4, 0, b"\x01\x00\x01\x80\x00\x00\x00", b"")], "not minimally"),
    ([v4raw.frame(0, 4, UNLISTED_EMPTY | v4.FRAME_SIMPLE, v4raw.varint(1) + b"\x01", b"abc")
      + b""], "payload CRC"),
])
def test_impossible_frame_fields(frames, words):
    error = read_error(_stream_with(frames + GOOD3[1:]))
    assert words in str(error), str(error)


def test_cut_beyond_the_payload_and_incomplete_lossless_frames():
    h = make_header(frame_length=8, segment_length=4, num_samples=8, tier_kind=TIER_RATE,
                    tier_rate=5)
    body = v4raw.header(v4raw.body(num_samples=8, frame_shift=3, segment_shift=2, tier=(2, 5)))
    cut = v4raw.frame(0, 8, 0, v4raw.general_table([(0, 1, b"abcd", 1, (2,), b"\x01\x01")]),
                      b"abcd")
    assert "cut at word 2, beyond its 1 words" in str(read_error(body + cut + v4raw.end(1, 8, 0,
                                                                                       MD5)))
    assert h.num_frames == 1
    lossless = v4raw.header(v4raw.body())
    dropped = simple(0, 4, [(0, b"abcd")], flags=0)  # layers 1, 2 dropped
    assert "does not carry every layer" in str(read_error(_stream_with([dropped] + GOOD3[1:],
                                                                      lossless)))
    two_segments = v4raw.header(v4raw.body(num_samples=8, frame_shift=3, segment_shift=2))
    truncated = v4raw.frame(0, 8, UNLISTED_EMPTY, v4raw.general_table(
        [(0, 1, b"abcd", 2, (), b"\x01")]), b"abcd")  # 1 of its 2 segments
    assert "does not carry every layer" in str(read_error(two_segments + truncated
                                                          + v4raw.end(1, 8, 0, MD5)))


@pytest.mark.parametrize("end, words", [
    (v4raw.end(2, 10, 0, MD5), "counts 2 frames"),
    (v4raw.end(3, 11, 0, MD5), "counts 11 samples"),
    (v4raw.end(3, 10, 5, MD5), "puts the index chunk at byte 5"),
    (simple(3, 1, [(0, b"abcd")]) + v4raw.end(4, 10, 0, MD5), "more frames"),
    (b"HX" + bytes(40), "end chunk has a bad sync"),
    (v4raw.index([1, 2, 3]) + v4raw.end(3, 10, 0, MD5), "index chunk found"),
])
def test_impossible_end_chunk(end, words):
    head = v4raw.header(v4raw.body())
    assert read_all(head + b"".join(GOOD3) + v4raw.end(3, 10, 0, MD5))[2].md5 == MD5
    assert words in str(read_error(head + b"".join(GOOD3) + end))


@pytest.mark.parametrize("frame", [
    Frame(0, 4, units=(Unit(0, 1, b"abc"),)),  # not whole words
    Frame(0, 4, units=(Unit(0, 2, b"abcd"), Unit(1, 1, b""))),  # overlap
    Frame(0, 4, units=(Unit(1, 1, b""), Unit(0, 1, b""))),  # out of order
    Frame(0, 4, units=(Unit(2, 2, b""),)),  # beyond the layers
    Frame(0, 4, units=(Unit(0, 0, b""),)),
    Frame(0, 4, units=(Unit(0, 2, b"", UNIT_CUTTABLE, (), b"\x00"),)),  # multi-layer cuttable
    Frame(0, 4, units=(Unit(0, 1, b"", 2, (), b"\x00"),)),  # state above S (1 segment)
    Frame(0, 4, units=(Unit(0, 1, b"", 0, (), b""),)),  # no slope
    Frame(0, 4, units=(Unit(0, 1, b"", 0, (), b"\x00\x00"),)),
    Frame(0, 4, units=(Unit(0, 1, "text"),)),
    Frame(0, 4, units=(Unit(0, 1, b""),), flags=v4.FRAME_SIMPLE),  # a table-form bit
    Frame(0, 4, layers=((0, b"abcd"),)),  # a version 1-3 frame
    Frame(0, 4, units=((0, 1, b""),)),
    Frame(0, 5, units=()),
    Frame(-1, 4, units=()),
])
def test_write_frame_rejects_bad_frames(frame):
    h = make_header(tier_kind=TIER_RATE, tier_rate=1)
    with pytest.raises(ValueError):
        write_frame(io.BytesIO(), frame, h)


@pytest.mark.parametrize("units, segments, words", [
    ((Unit(0, 1, b"x" * 8, UNIT_CUTTABLE, (1,), b"\x00\x00\x00"),), 3, "needs 2 cuts"),
    ((Unit(0, 1, b"x" * 8, UNIT_CUTTABLE, (1, 2), b"\x00\x00\x00"),), 3, "c_1 >= c_2"),
    ((Unit(0, 1, b"x" * 8, UNIT_CUTTABLE, (3, 1), b"\x00\x00\x00"),), 3, "c_1 >= c_2"),
    ((Unit(0, 1, b"x" * 8, UNIT_CUTTABLE, (2, 1), b"\x00\x00"),), 3, "needs 3 slope"),
    ((Unit(0, 1, b"x" * 8, 3, (1, 0), b"\x00\x00"),), 3, "needs 1 cuts"),
    ((Unit(0, 1, b"x" * 8, 3, (1,), b"\x00"),), 3, "needs 2 slope"),
])
def test_cut_tables_are_checked_when_writing(units, segments, words):
    problem = v4.units_problem(units, 3, segments, 0)
    assert problem and words in problem, problem


def test_stream_writer_keeps_the_frame_sequence():
    h = make_header()
    writer = StreamWriter(io.BytesIO(), h)
    with pytest.raises(ValueError, match="expected frame 0"):
        writer.write_frame(FRAMES[1])
    writer.write_frame(FRAMES[0])
    with pytest.raises(ValueError, match="0 of the 3|1 of the 3"):
        writer.finish(MD5)
    writer = StreamWriter(io.BytesIO(), make_header(tier_kind=0))
    with pytest.raises(ValueError, match="every layer in full"):
        writer.write_frame(Frame(0, 4, units=(Unit(0, 1, b"abcd"),)))
    with pytest.raises(ValueError, match="needs the version 4 header"):
        write_frame(io.BytesIO(), FRAMES[0])


def test_free_writers_make_the_same_stream():
    fp = io.BytesIO()
    write_header(fp, make_header(), has_index=True)
    offsets = []
    for frame in FRAMES:
        offsets.append(fp.tell())
        write_frame(fp, frame, make_header())
    at = fp.tell()
    write_index(fp, offsets)
    write_footer(fp, StreamFooter(3, 10, MD5, at))
    assert fp.getvalue() == STREAM
    with pytest.raises(ValueError):
        write_index(io.BytesIO(), [5, 3])
    with pytest.raises(ValueError):
        write_footer(io.BytesIO(), StreamFooter(3, 10, b"short", 0))


# --------------------------------------------------------------------------- every byte


@pytest.mark.parametrize("stream", ["plain", "with metadata"])
def test_every_single_bit_flip_is_detected_and_located(stream):
    data0 = STREAM if stream == "plain" else META_STREAM
    chunks, payloads = regions(data0)
    for pos in range(len(data0)):
        label = next(name for start, end, name in chunks if start <= pos < end)
        in_payload = next((f for s, e, f in payloads if s <= pos < e), None)
        for bit in range(8):
            data = bytearray(data0)
            data[pos] ^= 1 << bit
            error = read_error(bytes(data))
            message = str(error)
            if pos < 4:
                assert message == "not a hybridcodec stream (bad magic)"
            elif pos in (4, 5):
                pass  # another version's layout, or a compact stream: some error, one line
            elif label == "metadata chunk" and pos < chunks[1][0] + 2:
                assert ("frame 0 header has a bad sync code" in message
                        or "chunk found after 0 frames" in message), (pos, bit, message)
            elif label == "header":
                assert "header" in message, (pos, bit, message)
            else:
                assert label in message or (label == "index chunk" and "frame" in message), \
                    (pos, bit, label, message)
            if in_payload is not None:
                assert f"frame {in_payload} payload CRC mismatch" in message


@pytest.mark.parametrize("stream", ["plain", "with metadata"])
@pytest.mark.parametrize("pipe", [False, True])
def test_truncation_at_every_position(pipe, stream):
    data = STREAM if stream == "plain" else META_STREAM
    chunks, _ = regions(data)
    for n in range(len(data)):
        error = read_error(data[:n], pipe=pipe)
        message = str(error)
        if n < 4:
            assert message == "not a hybridcodec stream (bad magic)"
            continue
        assert isinstance(error, TruncatedStreamError), (n, message)
        label = next(name for start, end, name in chunks if start <= n < end)
        if label == "metadata chunk" and n - chunks[1][0] < 2:
            label = "frame 0 header"
        if label == "header":
            label = "header chunk"
        assert label in message, (n, label, message)


@pytest.mark.parametrize("pipe", [False, True])
@pytest.mark.parametrize("tail", [b"\x00", b"HYBC", STREAM])
def test_trailing_bytes_after_end_chunk(pipe, tail):
    error = read_error(STREAM + tail, pipe=pipe)
    assert not isinstance(error, TruncatedStreamError) and "trailing data" in str(error)


@pytest.mark.parametrize("version", [5, 7, 255, 0])
def test_other_versions_are_refused_by_name(version):
    data = bytearray(STREAM)
    data[4] = version
    error = read_error(bytes(data))
    assert isinstance(error, UnsupportedVersionError) and f"version {version}" in str(error)


# --------------------------------------------------------------------------- huge sizes


def _fails_small_and_fast(data: bytes, expected_type, pipe: bool):
    source = Pipe(data, step=1 << 30) if pipe else io.BytesIO(data)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(expected_type) as info:
            reader = StreamReader(source)
            list(reader.frames())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 4 << 20, peak
    if pipe:
        assert source.largest_request <= 1 << 20
    return info.value


@pytest.mark.parametrize("pipe", [False, True])
def test_huge_unit_length_fails_fast(pipe):
    frame = v4raw.frame(0, 4, UNLISTED_EMPTY | v4.FRAME_SIMPLE,
                        v4raw.varint(1) + v4raw.varint(2**30 - 1), b"abcd")
    error = _fails_small_and_fast(_stream_with([frame]) + bytes(100), TruncatedStreamError, pipe)
    assert "frame 0 payload" in str(error)


@pytest.mark.parametrize("pipe", [False, True])
def test_huge_compact_stream_lengths_fail_fast(pipe):
    # two units: the first claims 2^30 - 1 words, the last runs to the CRC
    table = b"\x02" + b"\x00\x01" + v4raw.varint(2**30 - 1) + b"\x00\x00" + b"\x00\x01\x00\x00"
    data = v4raw.compact(v4raw.body(num_samples=4, tier=(2, 1)), MD5, 0, table, b"abcd")
    error = _fails_small_and_fast(data, TruncatedStreamError, pipe)
    assert "compact stream" in str(error)


@pytest.mark.parametrize("pipe", [False, True])
def test_many_declared_frames_with_little_data_fails_fast(pipe):
    head = v4raw.header(v4raw.body(num_samples=2**32 - 1, frame_shift=0, levels=0, groups=1))
    data = head + v4raw.frame(0, 1, UNLISTED_EMPTY | v4.FRAME_SIMPLE | v4.FRAME_ONE_UNIT,
                              v4raw.varint(1), b"abcd")
    error = _fails_small_and_fast(data, TruncatedStreamError, pipe)
    assert "frame 1" in str(error)


@pytest.mark.parametrize("pipe", [False, True])
def test_huge_extension_length_fails_fast(pipe):
    body = v4raw.body()
    data = b"HYBC\x04\x00" + body[:-1] + v4raw.varint(65535) + b"{}"
    error = _fails_small_and_fast(data, TruncatedStreamError, pipe)
    assert "header chunk" in str(error)


def test_huge_cut_tables_are_bounded_by_the_segments():
    """A state claiming many segments is refused before any cut is read."""
    body = v4raw.header(v4raw.body(num_samples=8, frame_shift=3, segment_shift=0, tier=(2, 5)))
    frame = v4raw.frame(0, 8, 0, b"\x01\x00\x01\x00" + v4raw.varint(2**20), b"")
    assert "state is 1048576, at most 8" in str(read_error(body + frame))


# --------------------------------------------------------------------------- compact


ONE_SECOND = make_header(channels=1, num_samples=44100, frame_length=1 << 17,
                         model_id=DEFAULT_MODEL, levels=4, num_layers=20)


def compact(header, frame, md5=MD5) -> bytes:
    fp = io.BytesIO()
    write_compact(fp, header, frame, md5)
    return fp.getvalue()


def test_compact_stream_of_one_unit_is_39_bytes_of_container():
    """The target: at most 40 bytes that are not payload for 1 s of 44.1 kHz mono with the
    default model. One unit covering every layer: header body 12, magic/version/flags 6,
    MD5 16, frame flags 1, CRC 4 = 39; with a slope byte 40."""
    payload = bytes(range(256)) * 40  # 10240 bytes: its length is not stored either
    frame = Frame(0, 44100, units=(Unit(0, 20, payload),), flags=UNLISTED_EMPTY)
    data = compact(ONE_SECOND, frame)
    assert len(data) - len(payload) == 39
    body = v4.header_body(ONE_SECOND)
    assert data == v4raw.compact(body, MD5, UNLISTED_EMPTY | v4.FRAME_ONE_UNIT | v4.FRAME_SIMPLE,
                                 b"", payload)
    sloped = Frame(0, 44100, units=(Unit(0, 20, payload, 0, (), b"\x07"),), flags=UNLISTED_EMPTY)
    assert len(compact(ONE_SECOND, sloped)) - len(payload) == 40
    silent = Frame(0, 44100, units=(Unit(0, 1, b"abcd"),), flags=UNLISTED_EMPTY)  # layer 0 only
    assert len(compact(ONE_SECOND, silent)) - 4 == 40
    assert read_all(data)[1] == [frame] and read_all(data)[2].md5 == MD5


def test_compact_stream_of_the_layered_payload():
    """Today's payload: one unit per layer; the lengths but the last are stored (words)."""
    units = tuple(Unit(k, 1, bytes(4 * (k + 40))) for k in range(20))
    frame = Frame(0, 44100, units=units, flags=UNLISTED_EMPTY)
    data = compact(ONE_SECOND, frame)
    table = v4raw.simple_table([(u.first, u.payload) for u in units], compact=True)
    assert table[:3] == b"\xff\xff\x3f" and len(table) == 3 + 19
    assert len(data) - frame.payload_bytes == 38 + 1 + len(table)
    assert read_all(data)[1] == [frame]
    layout = read_stream_layout(io.BytesIO(data))
    assert layout.compact and layout.header_bytes == 18 and layout.overhead_bytes == 38 + 1 + 22


def _small_compact() -> bytes:
    h = make_header(num_samples=3, tier_kind=TIER_RATE, tier_rate=7)
    frame = Frame(0, 3, units=(Unit(0, 1, b"abcd", 0, (), b"\x03"), Unit(2, 1, b"12345678")),
                  flags=0)
    return compact(h, frame)


COMPACTS = {"one unit": compact(ONE_SECOND, Frame(0, 44100, units=(Unit(0, 20, b"payload!"),),
                                                  flags=UNLISTED_EMPTY)),
            "general": _small_compact()}


@pytest.mark.parametrize("name", sorted(COMPACTS))
def test_compact_every_bit_flip_and_truncation_is_detected(name):
    data0 = COMPACTS[name]
    read_all(data0)
    for pos in range(len(data0)):
        for bit in range(8):
            data = bytearray(data0)
            data[pos] ^= 1 << bit
            read_error(bytes(data))
            try:  # recovering: the stream is one frame, damaged
                reader = StreamReader(io.BytesIO(bytes(data)), recover=True)
            except CorruptStreamError as exc:
                assert "\n" not in str(exc)
                continue
            items = list(reader.frames())
            assert len(items) == 1 and reader.footer is None
            assert isinstance(items[0], DamagedFrame) and items[0].index == 0
            assert "compact stream CRC mismatch" in reader.problems[0]
    for n in range(len(data0)):
        for pipe in (False, True):
            read_error(data0[:n], pipe=pipe)


def test_compact_stream_rules():
    h = make_header(num_samples=3)
    good = Frame(0, 3, units=(Unit(0, 3, b"abcd"),), flags=UNLISTED_EMPTY)
    for bad in (make_header(num_samples=5), make_header(num_samples=3, metadata=b"m")):
        with pytest.raises(ValueError):
            write_compact(io.BytesIO(), bad, good, MD5)
    with pytest.raises(ValueError):
        write_compact(io.BytesIO(), h, Frame(0, 2, units=good.units), MD5)
    with pytest.raises(ValueError):
        write_compact(io.BytesIO(), h, good, b"short")
    # no compact stream of 0 samples, of more than one frame, or with an index
    for body, flags in ((v4raw.body(num_samples=0), 1), (v4raw.body(num_samples=5), 1),
                        (v4raw.body(num_samples=3), 3)):
        data = v4raw.compact(body, MD5, UNLISTED_EMPTY | 6, b"", b"abcd", flags=flags)
        assert "corrupt header" in str(read_error(data))
    # the last payload must be whole words; no payload without a unit
    data = v4raw.compact(v4raw.body(num_samples=3), MD5, UNLISTED_EMPTY | 6, b"", b"abcde")
    assert "not a whole number of words" in str(read_error(data))
    data = v4raw.compact(v4raw.body(num_samples=3), MD5, UNLISTED_EMPTY | 4, b"\x00", b"abcd")
    assert "no unit" in str(read_error(data))


def test_compact_stream_truncates_to_a_compact_stream():
    h = ONE_SECOND
    frame = Frame(0, 44100, units=tuple(Unit(k, 1, bytes([k]) * 8) for k in range(20)),
                  flags=UNLISTED_EMPTY)
    low = dataclasses.replace(ONE_SECOND, tier_kind=TIER_NAMED, tier_code=3)
    cut = truncate_frame(h, frame, {k: 0 for k in range(3, 20)})
    data = compact(low, cut)
    reader = StreamReader(io.BytesIO(data))
    assert reader.compact and reader.header.tier == "low"
    assert list(reader.frames()) == [cut] and len(cut.units) == 3


# --------------------------------------------------------------------------- truncation


def ans_segments(rng, segments: int):
    """(payload, cuts, symbols per segment): segments coded last to first with
    constriction's stack coder, as docs/format.md, "Cut tables" says."""
    model = constriction.stream.model.Categorical(np.array([0.5, 0.25, 0.125, 0.125]),
                                                  perfect=False)
    symbols = [rng.integers(0, 4, size=int(rng.integers(0, 80))).astype(np.int32)
               for _ in range(segments)]
    coder = constriction.stream.stack.AnsCoder()
    before = [0] * segments  # n_j: words before segment j is coded
    for j in range(segments - 1, -1, -1):
        before[j] = coder.num_words()
        if len(symbols[j]):
            coder.encode_reverse(symbols[j], model)
    words = coder.get_compressed()
    # c_k, the word where the suffix that decodes the first k segments starts, is
    # n_{k-1} - 2 (the coder's two state words belong to the segment coded after)
    cuts = tuple(max(0, before[k - 1] - 2) for k in range(1, segments))
    return words.astype("<u4").tobytes(), cuts, symbols, model


def decode_segments(payload: bytes, count: int, symbols, model) -> bool:
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(payload, "<u4").copy())
    for j in range(count):
        got = coder.decode(model, len(symbols[j])) if len(symbols[j]) else np.zeros(0)
        if not np.array_equal(got, symbols[j]):
            return False
    return True


def test_cut_table_of_an_ans_stream_makes_every_prefix_decodable():
    rng = np.random.default_rng(7)
    for trial in range(150):
        segments = int(rng.integers(1, 9))
        payload, cuts, symbols, model = ans_segments(rng, segments)
        unit = Unit(0, 1, payload, UNIT_CUTTABLE, cuts, bytes(range(segments)))
        assert v4.unit_problem(unit, 1, segments) is None, (trial, cuts)
        assert decode_segments(unit.payload, segments, symbols, model)
        for k in range(1, segments + 1):
            cut = truncate_unit(unit, k, segments)
            assert cut.segments(segments) == k and cut.slopes == bytes(range(k))
            assert v4.unit_problem(cut, 1, segments) is None
            assert decode_segments(cut.payload, k, symbols, model), (trial, k)
            for j in range(1, k):  # a cut unit cuts again, as if cut once
                assert truncate_unit(cut, j, segments) == truncate_unit(unit, j, segments)
        assert truncate_unit(unit, 0, segments) is None
        assert truncate_unit(unit, segments + 3, segments) is unit


def test_cut_units_survive_the_container():
    """A cuttable unit written, read, truncated by the frame helper, written and read
    again still decodes its first k segments."""
    rng = np.random.default_rng(11)
    segments = 6
    payload, cuts, symbols, model = ans_segments(rng, segments)
    h = make_header(num_samples=48, frame_length=64, segment_length=8, levels=1, num_layers=2,
                    tier_kind=TIER_RATE, tier_rate=3)
    assert h.frame_segments(0) == 6
    frame = Frame(0, 48, units=(Unit(0, 1, payload, UNIT_CUTTABLE, cuts, b"\x06" * 6),
                                Unit(1, 1, b"last")), flags=UNLISTED_EMPTY)
    first = read_all(build(h, [frame]))[1][0]
    assert first == frame
    for k in range(1, 7):
        cut = truncate_frame(h, first, {0: k})
        again = read_all(build(h, [cut]))[1][0]
        assert again == cut and decode_segments(again.units[0].payload, k, symbols, model)
        assert again.units[1].payload == b"last" and again.flags == UNLISTED_EMPTY


def test_truncate_frame_rules():
    h = make_header(levels=3, num_layers=4, frame_length=8, segment_length=4, num_samples=8)
    frame = Frame(0, 8, units=(Unit(0, 1, b"a" * 8, UNIT_CUTTABLE, (1,), b"\x01\x02"),
                               Unit(1, 2, b"bbbb"),  # two layers, one payload
                               ), flags=UNLISTED_EMPTY)  # layer 3 is empty
    assert truncate_frame(h, frame, {}) == frame
    # cutting segments keeps the flag: the unlisted layer is still empty
    half = truncate_frame(h, frame, {0: 1})
    assert half.flags == UNLISTED_EMPTY and half.units[0] == Unit(0, 1, b"a" * 4, 2, (), b"\x01")
    # a multi-layer unit stays whole unless all its layers go
    assert truncate_frame(h, frame, {1: 0}).units[1] == frame.units[1]
    # dropping a layer: the flag goes, the kept unlisted layer becomes an empty unit
    low = truncate_frame(h, frame, {1: 0, 2: 0})
    assert low.flags == 0 and low.units == (frame.units[0], Unit(3, 1, b""))
    assert v4.carried_layers(low.units, low.flags, 4) == [True, False, False, True]
    gone = truncate_frame(h, frame, {3: 0})
    assert gone.flags == 0 and gone.units == frame.units
    with pytest.raises(ValueError, match="not cuttable"):
        truncate_unit(Unit(0, 1, b"abcd"), 1, 2)
    assert truncate_unit(Unit(0, 1, b"abcd"), 2, 2) == Unit(0, 1, b"abcd")


# --------------------------------------------------------------------------- seeking


def long_stream(version: int = 4, frames: int = 12, payload: int = 4096, index=None,
                metadata=None) -> tuple[bytes, list]:
    n = 64
    h = make_header(num_samples=frames * n - 9, frame_length=n, version=version,
                    metadata=metadata, **({} if version >= 4 else {"groups": None}))
    out = []
    for i in range(frames):
        count = h.frame_num_samples(i)
        body = bytes([i]) * payload
        if version >= 4:
            out.append(Frame(i, count, units=(Unit(0, 1, body), Unit(2, 1, b"tail")),
                             flags=UNLISTED_EMPTY))
        else:
            out.append(Frame(i, count, ((0, body), (2, b"tail"))))
    return build(h, out, index=index), out


@pytest.mark.parametrize("version, index", [(4, None), (4, False), (3, None), (1, None)])
@pytest.mark.parametrize("pipe", [False, True])
def test_seek_frame_then_read_on(version, index, pipe):
    data, frames = long_stream(version, index=index)
    for target in (0, 5, 11, 12, 3, 0, 7):
        if pipe:
            source = Pipe(data, step=1 << 16)
            reader = StreamReader(source)
            reader.seek_frame(target)
            assert source.delivered < len(data) // 2 + 100 or target > 5
        else:
            source = Counting(data)
            reader = StreamReader(source)
            reader.seek_frame(target)
            # found without reading payloads (by the index, or by the frame headers)
            assert source.delivered < 64 * (target + 2) + 1000, (target, source.delivered)
        assert list(reader.frames()) == frames[target:]
        assert reader.footer.md5 == MD5


@pytest.mark.parametrize("version", [4, 3])
def test_seek_back_and_forth_on_one_reader(version):
    data, frames = long_stream(version)
    reader = StreamReader(io.BytesIO(data))
    position = 0
    for target in (9, 2, 2, 11, 0, 12, 1):
        pending = reader.frames()
        assert next(pending, None) == (frames[position] if position < 12 else None)
        reader.seek_frame(target)
        if position < 12:
            with pytest.raises(RuntimeError):
                next(pending)  # an iterator from before the seek is stale
        assert list(reader.frames()) == frames[target:] and reader.footer is not None
        reader.seek_frame(target)
        position = target
    with pytest.raises(IndexError):
        reader.seek_frame(13)
    with pytest.raises(IndexError):
        reader.seek_frame(-1)


def test_pipes_seek_forward_only():
    data, frames = long_stream()
    reader = StreamReader(Pipe(data))
    reader.seek_frame(4)
    it = reader.frames()
    assert next(it) == frames[4]
    reader.seek_frame(8)
    assert list(reader.frames()) == frames[8:]
    with pytest.raises(ValueError, match="backwards"):
        reader.seek_frame(2)


def _index_span(data: bytes) -> tuple[int, int]:
    return v4raw.frame_spans(data)["index"]


def test_seek_with_a_damaged_index():
    data, frames = long_stream()
    start, end = _index_span(data)
    damaged = bytearray(data)
    damaged[start + 4] ^= 0x10
    reader = StreamReader(io.BytesIO(bytes(damaged)))
    with pytest.raises(CorruptStreamError, match="index chunk CRC mismatch"):
        reader.seek_frame(5)
    reader = StreamReader(io.BytesIO(bytes(damaged)), recover=True)
    reader.seek_frame(5)
    assert list(reader.frames()) == frames[5:]
    assert reader.problems[0].startswith("index chunk CRC mismatch (stored ")
    assert reader.problems[0].endswith(": frames found by walking instead")
    # the strict sequential reader checks the index too
    with pytest.raises(CorruptStreamError, match="index chunk CRC mismatch"):
        read_all(bytes(damaged))


def test_seek_with_a_forged_index():
    """An index whose CRC is right but whose offsets are not (a buggy writer): the frame
    header found at the offset must be the frame's, and strict reading compares them."""
    data, frames = long_stream()
    start, end = _index_span(data)
    spans = v4raw.frame_spans(data)["frames"]
    offsets = [f["start"] for f in spans]
    forged_offsets = offsets[:6] + [offsets[6] + 4] + offsets[7:]  # frame 6 off by 4 bytes
    forged = data[:start] + v4raw.index(forged_offsets) + data[end:]
    assert len(forged) == len(data)
    reader = StreamReader(io.BytesIO(forged))
    with pytest.raises(CorruptStreamError, match="index chunk puts frame 6 at byte"):
        reader.seek_frame(6)
    reader = StreamReader(io.BytesIO(forged), recover=True)
    reader.seek_frame(6)
    assert list(reader.frames()) == frames[6:] and "walking instead" in reader.problems[0]
    reader = StreamReader(io.BytesIO(forged))
    reader.seek_frame(2)  # found, but reading on meets frame 6 elsewhere
    with pytest.raises(CorruptStreamError, match="index chunk puts frame 6"):
        list(reader.frames())
    with pytest.raises(CorruptStreamError, match="index chunk does not match the frames"):
        read_all(forged)


def test_index_chunk_rules():
    data, _ = long_stream()
    start, end = _index_span(data)
    offsets = [f["start"] for f in v4raw.frame_spans(data)["frames"]]
    assert data[start:end] == v4raw.index(offsets)
    assert v4.parse_index(data[start:end], 12) == offsets
    for bad, words in ((v4raw.index(offsets[:-1]), "lists 11 frames"),
                       (v4raw.index([offsets[0]] + [offsets[1]] * 11), "less than a frame"),
                       (data[start:end - 4] + b"\x00" + v4raw.crc(data[start:end - 4] + b"\x00"),
                        "bytes after its offsets"),
                       (b"HI\x0c" + v4raw.crc(b"HI\x0c"), "ends inside its offsets")):
        with pytest.raises(CorruptStreamError, match=words):
            v4.parse_index(bad, 12)


def test_walking_a_stream_whose_frame_header_is_damaged():
    data, frames = long_stream(index=False)
    spans = v4raw.frame_spans(data)["frames"]
    damaged = bytearray(data)
    damaged[spans[3]["start"] + 3] ^= 0x01
    reader = StreamReader(io.BytesIO(bytes(damaged)))
    with pytest.raises(CorruptStreamError, match="frame 3 header"):
        reader.seek_frame(6)
    reader = StreamReader(io.BytesIO(bytes(damaged)), recover=True)
    reader.seek_frame(6)
    assert list(reader.frames()) == frames[6:]
    assert reader.problems and "seeking to frame 6" in reader.problems[0]


def test_seek_in_a_compact_stream():
    data = COMPACTS["general"]
    reader = StreamReader(io.BytesIO(data))
    reader.seek_frame(1)
    assert list(reader.frames()) == []
    reader.seek_frame(0)
    assert len(list(reader.frames())) == 1
    with pytest.raises(IndexError):
        reader.seek_frame(2)


# --------------------------------------------------------------------------- recovery


def test_recovery_on_every_bit_flip_of_a_normal_stream():
    """Recovering never raises past the header: every other flip costs at most the frame
    it hits, and every intact frame is delivered exactly."""
    data0, frames = long_stream(frames=4, payload=40)
    chunks, _ = regions(data0)
    header_end = chunks[0][1]
    for pos in range(header_end, len(data0)):
        data = bytearray(data0)
        data[pos] ^= 1 << (pos % 8)
        reader = StreamReader(io.BytesIO(bytes(data)), recover=True)
        items = list(reader.frames())
        good = [f for f in items if isinstance(f, Frame)]
        assert all(f == frames[f.index] for f in good), pos
        assert len(good) >= 3 or reader.missing_from is not None, (pos, items)
        assert [f.index for f in items] == list(range(len(items)))


# --------------------------------------------------------------------------- fuzzing


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_fuzz_random_bytes_after_magic_and_version(tail, pipe):
    read_error(b"HYBC\x04" + tail, pipe=pipe)


@FUZZ
@given(st.sampled_from(["normal", "meta", "compact", "general"]),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
       st.booleans())
def test_fuzz_random_edits_of_valid_streams(which, edits, recover):
    data0 = {"normal": STREAM, "meta": META_STREAM, "compact": COMPACTS["one unit"],
             "general": COMPACTS["general"]}[which]
    data = bytearray(data0)
    for pos, value in edits:
        data[pos % len(data)] = value
    if bytes(data) == data0:
        return
    if not recover:
        read_error(bytes(data))
        return
    try:
        reader = StreamReader(io.BytesIO(bytes(data)), recover=True)
        list(reader.frames())
    except CorruptStreamError as exc:
        assert "\n" not in str(exc)


unit_entries = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 3),
                                  st.integers(0, 3)), max_size=4)


@FUZZ
@given(st.integers(0, 7), unit_entries, st.integers(0, 3), st.booleans())
def test_fuzz_unit_tables_with_valid_crcs(flags, entries, mask, lie):
    """Arbitrary unit tables behind correct CRCs: accepted only if they obey the spec."""
    if flags & v4.FRAME_SIMPLE and not flags & v4.FRAME_ONE_UNIT:
        table = v4raw.varint(mask) + b"".join(v4raw.varint(1) for _ in range(bin(mask).count("1")))
    elif flags & v4.FRAME_ONE_UNIT:
        table = v4raw.varint(1) + (b"" if flags & v4.FRAME_SIMPLE else b"\x00")
    else:
        table = v4raw.varint(len(entries)) + b"".join(
            v4raw.varint(d) + v4raw.varint(c) + v4raw.varint(1) + (v4raw.varint(s) if c == 1
                                                                    else b"") + b"\x00"
            for d, c, s, _ in entries)
    payload = b"abcd" * (8 + (1 if lie else 0))
    body = v4raw.header(v4raw.body(num_samples=4, tier=(2, 1)))
    data = body + v4raw.frame(0, 4, flags, table, payload) + v4raw.end(1, 4, 0, MD5)
    try:
        _, frames, _ = read_all(data)
    except CorruptStreamError:
        return
    (frame,) = frames
    end = 0
    for unit in frame.units:
        assert unit.first >= end and 1 <= unit.count and unit.end <= 3
        assert unit.state == 0 or (unit.count == 1 and unit.state <= 1)
        end = unit.end


# --------------------------------------------------------------------------- metadata chunk


def raw_metadata(blob: bytes, *, length: int | None = None) -> bytes:
    head = b"HM" + struct.pack("<I", len(blob) if length is None else length)
    return head + blob + v4raw.crc(head + blob)


def test_metadata_chunk_follows_the_header_unchanged_from_version_3():
    header_end = v4raw.body_end(STREAM) + 4
    assert META_STREAM[:header_end] == STREAM[:header_end]
    assert META_STREAM[header_end:header_end + 10 + len(META_BLOB)] == raw_metadata(META_BLOB)
    for pipe in (False, True):
        header, frames, _ = read_all(META_STREAM, pipe=pipe)
        assert header == make_header(metadata=META_BLOB) and frames == FRAMES


@pytest.mark.parametrize("pipe", [False, True])
@pytest.mark.parametrize("length", [0, (1 << 26) + 1, 0xFFFFFFFF])
def test_metadata_length_is_checked_before_reading(length, pipe):
    header_end = v4raw.body_end(STREAM) + 4
    data = STREAM[:header_end] + raw_metadata(b"", length=length) + STREAM[header_end:]
    tracemalloc.start()
    try:
        error = read_error(data, pipe=pipe)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"metadata chunk declares {length} bytes" in str(error)
    assert peak < 1 << 20


@pytest.mark.parametrize("pipe", [False, True])
@pytest.mark.parametrize("damage", ["blob", "crc", "length", "huge length", "cut"])
def test_recovery_survives_a_damaged_metadata_chunk(damage, pipe):
    """As in version 3; the index chunk still matches, since the offsets count the
    damaged chunk's bytes as they were."""
    header_end = v4raw.body_end(STREAM) + 4
    chunk = bytearray(raw_metadata(META_BLOB))
    if damage == "blob":
        chunk[10] ^= 0x20
    elif damage == "crc":
        chunk[-1] ^= 1
    elif damage == "length":
        chunk[2] += 3  # reaches into the first frame
    elif damage == "huge length":
        chunk[2:6] = struct.pack("<I", 0xFFFFFFF0)
    else:
        chunk = chunk[:12]  # most of the chunk lost
    data = META_STREAM[:header_end] + bytes(chunk) + META_STREAM[header_end + 10 + len(META_BLOB):]
    reader = StreamReader(Pipe(data) if pipe else io.BytesIO(data), recover=True)
    frames = list(reader.frames())
    assert reader.header.metadata is None and reader.metadata_bytes == 0
    assert frames == FRAMES and reader.footer is not None
    assert len(reader.problems) == 1 and "metadata chunk" in reader.problems[0], reader.problems
    assert reader.problems[0].endswith("metadata not restored")
    with pytest.raises(CorruptStreamError, match="metadata chunk"):
        read_all(data, pipe=pipe)


def test_recovery_keeps_an_intact_metadata_chunk():
    reader = StreamReader(io.BytesIO(META_STREAM), recover=True)
    assert list(reader.frames()) == FRAMES and not reader.problems
    assert reader.header.metadata == META_BLOB
