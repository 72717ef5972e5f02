"""Tests of the version 1-3 container (hybridcodec/format/legacy.py, spec in
docs/format.md, "Version 1-3 container"), which this build still reads, and writes when a
tool rewrites such a stream. Version 4 is tested in test_container.py.

Streams are built two ways: with the module's writers, and with the small raw builders
below that follow docs/format.md byte by byte (so a writer and reader that agree with
each other but not with the spec are caught). The reader must turn every bad input into
CorruptStreamError (or a subclass) with a one-line message, and nothing else.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import time
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridcodec.container import (
    MAGIC,
    Frame,
    StreamFooter,
    StreamHeader,
    StreamReader,
    SUPPORTED_VERSIONS,
    read_stream_layout,
    write_footer,
    write_frame,
    write_header,
)
from hybridcodec.errors import CorruptStreamError, TruncatedStreamError, UnsupportedVersionError

MODEL_ID = "0123456789abcdef"
FORMAT_VERSION = 3  # the newest version with this layout
LEGACY_VERSIONS = sorted(v for v in SUPPORTED_VERSIONS if v <= FORMAT_VERSION)
MD5 = hashlib.md5(b"pcm").digest()
FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


# --------------------------------------------------------------------------- helpers


def make_header(**overrides) -> StreamHeader:
    values = dict(
        sample_rate=44100,
        channels=2,
        bits_per_sample=16,
        subtype="PCM_16",
        source_format="WAV",
        num_samples=10,
        frame_length=4,
        model_id=MODEL_ID,
        levels=2,
        num_layers=3,
        tier="lossless",
        version=FORMAT_VERSION,
    )
    values.update(overrides)
    return StreamHeader(**values)


def header_dict(**overrides) -> dict:
    h = make_header()
    obj = {
        key: getattr(h, key)
        for key in (
            "sample_rate channels bits_per_sample subtype source_format num_samples "
            "frame_length model_id levels num_layers tier"
        ).split()
    }
    obj.update(overrides)
    return obj


def with_crc(data: bytes) -> bytes:
    return data + struct.pack("<I", zlib.crc32(data))


def raw_header(obj=None, *, body: bytes | None = None, version: int = FORMAT_VERSION,
               flags: int = 0) -> bytes:
    if body is None:
        obj = obj if obj is not None else header_dict()
        body = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return with_crc(MAGIC + struct.pack("<BBH", version, flags, len(body)) + body)


def raw_frame(index, num_samples, layers, *, lengths=None, count=None) -> bytes:
    """A frame chunk with correct CRCs; ``lengths``/``count`` override the declared table."""
    lengths = lengths if lengths is not None else [len(p) for _, p in layers]
    count = count if count is not None else len(layers)
    head = b"HF" + struct.pack("<IIB", index, num_samples, count)
    head += b"".join(struct.pack("<BI", lid, n) for (lid, _), n in zip(layers, lengths))
    return with_crc(head) + b"".join(with_crc(p) for _, p in layers)


def raw_end(num_frames, num_samples, md5=MD5) -> bytes:
    return with_crc(b"HE" + struct.pack("<IQ", num_frames, num_samples) + md5)


FRAMES = [
    Frame(0, 4, ((0, b"coarse-0"), (1, b"d2-0"), (2, b"d1-frame-0"))),
    Frame(1, 4, ((0, b"coarse-1"), (2, b""))),
    Frame(2, 2, ((0, b"c2"),)),
]


def build(header=None, frames=FRAMES, footer=None) -> bytes:
    header = header or make_header()
    footer = footer or StreamFooter(len(frames), header.num_samples, MD5)
    fp = io.BytesIO()
    write_header(fp, header)
    for frame in frames:
        write_frame(fp, frame)
    write_footer(fp, footer)
    return fp.getvalue()


STREAM = build()
META_BLOB = b"any bytes: the container does not look inside"
META_STREAM = build(make_header(metadata=META_BLOB))


def regions(stream: bytes = STREAM, frames=FRAMES):
    """(start, end, label) of each chunk, and payload spans (start, end, frame, layer id)."""
    header_len = 12 + struct.unpack_from("<H", stream, 6)[0]
    out = [(0, header_len, "header")]
    payloads = []
    pos = header_len
    if stream[pos:pos + 2] == b"HM":
        end = pos + 10 + struct.unpack_from("<I", stream, pos + 2)[0]
        out.append((pos, end, "metadata chunk"))
        pos = end
    for frame in frames:
        start = pos
        pos += 15 + 5 * len(frame.layers)
        for lid, payload in frame.layers:
            payloads.append((pos, pos + len(payload), frame.index, lid))
            pos += len(payload) + 4
        out.append((start, pos, f"frame {frame.index}"))
    out.append((pos, pos + 34, "end chunk"))
    assert pos + 34 == len(stream)
    return out, payloads


class Pipe:
    """A non-seekable input (no tell/seek) that also returns short reads."""

    def __init__(self, data: bytes, step: int = 7):
        self._data = data
        self._pos = 0
        self._step = step
        self.largest_request = 0

    def read(self, n: int = -1) -> bytes:
        self.largest_request = max(self.largest_request, n)
        n = min(n, self._step) if n >= 0 else self._step
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out


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


# --------------------------------------------------------------------------- round trips


def test_roundtrip_bytesio_with_extra_keys_and_flags():
    extra = {"encoder": "hybridcodec 0.1", "future": [1, {"a": None}]}
    header = make_header(extra=extra, flags=0x81)
    data = build(header)
    got_header, frames, footer = read_all(data)
    assert got_header == header
    assert frames == FRAMES
    assert footer == StreamFooter(3, 10, MD5)


@pytest.mark.parametrize("pipe", [False, True])
def test_roundtrip_reader_kinds(pipe):
    header, frames, footer = read_all(STREAM, pipe=pipe)
    assert (header, frames, footer) == (make_header(), FRAMES, StreamFooter(3, 10, MD5))


def test_roundtrip_real_file_and_layout(tmp_path):
    path = tmp_path / "x.hyb"
    with open(path, "wb") as fp:
        write_header(fp, make_header())
        for frame in FRAMES:
            write_frame(fp, frame)
        write_footer(fp, StreamFooter(3, 10, MD5))
    assert path.read_bytes() == STREAM
    with open(path, "rb") as fp:
        reader = StreamReader(fp)
        assert list(reader.frames()) == FRAMES
        assert reader.footer.md5 == MD5
    layout = read_stream_layout(path)
    assert layout.num_frames == 3
    assert layout.layer_bytes == {0: 8 + 8 + 2, 1: 4, 2: 10}
    assert layout.layer_frames == {0: 3, 1: 1, 2: 2}
    assert layout.total_bytes == len(STREAM)
    assert layout.header_bytes == regions()[0][0][1]
    assert layout.header_bytes + layout.framing_bytes + layout.payload_bytes == layout.total_bytes
    assert layout.overhead_bytes == layout.total_bytes - layout.payload_bytes
    assert read_stream_layout(str(path)) == layout


def test_empty_audio_has_no_frames():
    header = make_header(num_samples=0)
    assert header.num_frames == 0
    data = build(header, frames=[])
    got, frames, footer = read_all(data)
    assert got == header and frames == [] and footer == StreamFooter(0, 0, MD5)


def test_writer_matches_the_spec_byte_for_byte():
    expected_json = (
        b'{"bits_per_sample":16,"channels":2,"frame_length":4,"levels":2,'
        b'"model_id":"0123456789abcdef","num_layers":3,"num_samples":10,'
        b'"sample_rate":44100,"source_format":"WAV","subtype":"PCM_16","tier":"lossless"}'
    )
    expected = raw_header(body=expected_json)
    expected += raw_frame(0, 4, FRAMES[0].layers) + raw_frame(1, 4, FRAMES[1].layers)
    expected += raw_frame(2, 2, FRAMES[2].layers) + raw_end(3, 10)
    assert STREAM == expected
    assert STREAM[:8] == b"HYBC\x03\x00" + struct.pack("<H", len(expected_json))
    assert FORMAT_VERSION == 3


def test_header_json_is_ascii_and_roundtrips_any_string():
    header = make_header(extra={"note": "caf\u00e9 \ud800 \u266b"})
    data = build(header)
    json_len = struct.unpack_from("<H", data, 6)[0]
    assert data[8 : 8 + json_len].isascii()
    assert read_all(data)[0] == header


def test_frame_geometry_helpers():
    header = make_header(num_samples=9, frame_length=4)
    assert header.num_frames == 3
    assert [header.frame_num_samples(i) for i in range(3)] == [4, 4, 1]
    assert make_header(num_samples=8, frame_length=4).num_frames == 2


def test_frames_can_be_iterated_once():
    reader = StreamReader(io.BytesIO(STREAM))
    list(reader.frames())
    with pytest.raises(RuntimeError):
        reader.frames()


# --------------------------------------------------------------------------- corruption


@pytest.mark.parametrize("stream", ["plain", "with metadata"])
def test_every_single_bit_flip_is_detected_and_located(stream):
    stream = STREAM if stream == "plain" else META_STREAM
    chunks, payloads = regions(stream)
    for pos in range(len(stream)):
        label = next(name for start, end, name in chunks if start <= pos < end)
        in_payload = next(((f, l) for s, e, f, l in payloads if s <= pos < e), None)
        for bit in range(8):
            data = bytearray(stream)
            data[pos] ^= 1 << bit
            error = read_error(bytes(data))
            message = str(error)
            if pos < 4:
                assert message == "not a hybridcodec stream (bad magic)"
            elif pos == 4 and data[4] in LEGACY_VERSIONS:
                assert message.startswith("corrupt stream: header CRC mismatch")
            elif pos == 4 and data[4] in SUPPORTED_VERSIONS:
                pass  # read as another layout: some error, one line
            elif pos == 4:
                assert isinstance(error, UnsupportedVersionError)
            elif label == "metadata chunk" and pos < chunks[1][0] + 2:
                # a metadata sync that is no longer "HM" is read as what follows
                assert ("frame 0 header has a bad sync code" in message
                        or "end chunk found after 0 frames" in message), (pos, bit, message)
            else:
                assert not isinstance(error, UnsupportedVersionError)
                assert label in message, (pos, bit, message)
            if in_payload is not None:
                frame, layer = in_payload
                assert f"frame {frame} layer id {layer} payload CRC mismatch" in message


@pytest.mark.parametrize("stream", ["plain", "with metadata"])
@pytest.mark.parametrize("pipe", [False, True])
def test_truncation_at_every_position(pipe, stream):
    STREAM = globals()["STREAM"] if stream == "plain" else META_STREAM
    chunks, _ = regions(STREAM)
    for n in range(len(STREAM)):
        error = read_error(STREAM[:n], pipe=pipe)
        message = str(error)
        if n < 4:
            assert message == "not a hybridcodec stream (bad magic)"
            continue
        assert isinstance(error, TruncatedStreamError), (n, message)
        assert message.startswith("truncated stream: ")
        label = next(name for start, end, name in chunks if start <= n < end)
        if label == "metadata chunk" and n - chunks[1][0] < 2:
            label = "frame 0 header"  # without its sync nothing says a metadata chunk was next
        assert label in message, (n, message)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"H",
        b"HYB",
        b"HYBc\x01",
        b"fLaC\x00\x00\x00\x22" + b"\x00" * 40,
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
    ],
)
def test_wrong_magic(data):
    assert str(read_error(data)) == "not a hybridcodec stream (bad magic)"


@pytest.mark.parametrize("version", [max(SUPPORTED_VERSIONS) + 1, 7, 255])
def test_future_version_is_refused_by_name(version):
    data = raw_header(version=version) + b"whatever a future layout holds"
    error = read_error(data)
    assert isinstance(error, UnsupportedVersionError)
    assert f"version {version}" in str(error) and str(max(SUPPORTED_VERSIONS)) in str(error)
    assert "upgrade" in str(error)


def test_version_zero_is_refused():
    assert isinstance(read_error(raw_header(version=0)), UnsupportedVersionError)


@pytest.mark.parametrize("pipe", [False, True])
@pytest.mark.parametrize("tail", [b"\x00", b"HYBC", STREAM])
def test_trailing_bytes_after_end_chunk(pipe, tail):
    error = read_error(STREAM + tail, pipe=pipe)
    assert not isinstance(error, TruncatedStreamError)
    assert "trailing data" in str(error)


# --------------------------------------------------------------------------- huge declared sizes


def _assert_fails_small_and_fast(data: bytes, expected_type, pipe: bool):
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
def test_huge_layer_length_fails_fast(pipe):
    header = raw_header(header_dict(num_samples=4, levels=0, num_layers=1))
    frame = raw_frame(0, 4, [(0, b"abc")], lengths=[2**32 - 1])
    data = header + frame + b"\x00" * 100
    error = _assert_fails_small_and_fast(data, TruncatedStreamError, pipe)
    assert "frame 0" in str(error)


@pytest.mark.parametrize("pipe", [False, True])
def test_huge_json_length_fails_fast(pipe):
    data = MAGIC + struct.pack("<BBH", 1, 0, 0xFFFF) + b"{}"
    error = _assert_fails_small_and_fast(data, TruncatedStreamError, pipe)
    assert "header" in str(error)


@pytest.mark.parametrize("pipe", [False, True])
def test_many_declared_frames_with_little_data_fails_fast(pipe):
    header = raw_header(header_dict(num_samples=2**32 - 1, frame_length=1, levels=0, num_layers=1))
    data = header + raw_frame(0, 1, [(0, b"x")])
    error = _assert_fails_small_and_fast(data, TruncatedStreamError, pipe)
    assert "frame 1" in str(error)


def test_too_many_frames_for_u32_is_rejected_in_header():
    error = read_error(raw_header(header_dict(num_samples=2**40 - 1, frame_length=1)))
    assert "frames" in str(error) and "header" in str(error)


# --------------------------------------------------------------------------- impossible fields

H3 = raw_header()  # 10 samples, frame_length 4, 3 layers


@pytest.mark.parametrize(
    "body, words",
    [
        (raw_frame(1, 4, [(0, b"a")]), "frame index 1, expected 0"),
        (raw_frame(0, 3, [(0, b"a")]), "3 samples, expected 4"),
        (
            raw_frame(0, 4, [(0, b"a")]) + raw_frame(1, 4, [(0, b"a")]) + raw_frame(2, 4, [(0, b"a")]),
            "4 samples, expected 2",
        ),
        (raw_frame(0, 4, [], count=0), "declares 0 layers"),
        (raw_frame(0, 4, [(0, b"a")] * 4, count=4), "declares 4 layers"),
        (raw_frame(0, 4, [(0, b"a"), (0, b"b")]), "not strictly increasing"),
        (raw_frame(0, 4, [(0, b"a"), (2, b"b"), (1, b"c")]), "not strictly increasing"),
        (raw_frame(0, 4, [(1, b"a")]), "does not start with layer 0"),
        (raw_frame(0, 4, [(0, b"a"), (3, b"b")]), "layer id 3"),
        (raw_end(0, 10), "end chunk found after 0 frames"),
        (b"XX" + b"\x00" * 40, "bad sync"),
    ],
)
def test_impossible_frame_fields(body, words):
    error = read_error(H3 + body + raw_end(3, 10))
    assert not isinstance(error, TruncatedStreamError)
    assert words in str(error)


def _frames3() -> bytes:
    return b"".join(
        [raw_frame(0, 4, [(0, b"a")]), raw_frame(1, 4, [(0, b"b")]), raw_frame(2, 2, [(0, b"c")])]
    )


@pytest.mark.parametrize(
    "end, words",
    [
        (raw_end(2, 10), "counts 2 frames"),
        (raw_end(3, 11), "counts 11 samples"),
        (raw_frame(3, 1, [(0, b"d")]) + raw_end(4, 10), "more frames"),
        (b"HX" + b"\x00" * 32, "end chunk has a bad sync"),
    ],
)
def test_impossible_end_chunk(end, words):
    assert read_all(H3 + _frames3() + raw_end(3, 10))[2] == StreamFooter(3, 10, MD5)
    assert words in str(read_error(H3 + _frames3() + end))


@pytest.mark.parametrize(
    "obj_or_body",
    [
        {**header_dict(), "channels": 0},
        {**header_dict(), "channels": 9},
        {**header_dict(), "channels": True},
        {**header_dict(), "sample_rate": 44100.0},
        {**header_dict(), "sample_rate": 0},
        {**header_dict(), "sample_rate": 1_000_001},
        {**header_dict(), "bits_per_sample": 7},
        {**header_dict(), "bits_per_sample": 25},
        {**header_dict(), "bits_per_sample": "16"},
        {**header_dict(), "num_samples": -1},
        {**header_dict(), "num_samples": 2**40},
        {**header_dict(), "frame_length": 0},
        {**header_dict(), "frame_length": 2**20 + 1},
        {**header_dict(), "levels": 17},
        {**header_dict(), "levels": -1},
        {**header_dict(), "num_layers": 0},
        {**header_dict(), "num_layers": 65},
        {**header_dict(), "model_id": "0123456789ABCDEF"},
        {**header_dict(), "model_id": "0123456789abcde"},
        {**header_dict(), "model_id": 1234},
        {**header_dict(), "subtype": ""},
        {**header_dict(), "tier": None},
        {**header_dict(), "source_format": "WAV\nx"},
        {**header_dict(), "subtype": "x" * 256},
        {k: v for k, v in header_dict().items() if k != "tier"},
        [1, 2, 3],
        "just a string",
        b"",
        b"{",
        b'{"a":1,"a":2}',
        b"\xff\xfe{}",
        b'{"x":NaN}',
        b'{"x":1e999}',
        b"[" * 60000,
        b'{"x":' + b"9" * 10000 + b"}",
        b"\xef\xbb\xbf{}",
    ],
)
def test_impossible_header_fields(obj_or_body):
    if isinstance(obj_or_body, bytes):
        data = raw_header(body=obj_or_body)
    else:
        data = raw_header(obj_or_body)
    error = read_error(data + raw_end(0, 0))
    assert type(error) is CorruptStreamError
    assert str(error).startswith("corrupt header: ")


def test_unknown_keys_and_flag_bits_survive_a_rewrite():
    obj = {**header_dict(), "zz_future": {"nested": [1, 2.5, "x"]}}
    data = raw_header(obj, flags=0b1010_0000) + _frames3() + raw_end(3, 10)
    header, frames, footer = read_all(data)
    assert header.extra == {"zz_future": {"nested": [1, 2.5, "x"]}}
    assert header.flags == 0b1010_0000
    assert build(header, frames, footer) == data


# --------------------------------------------------------------------------- writer validation


@pytest.mark.parametrize(
    "overrides",
    [
        dict(channels=0),
        dict(channels=9),
        dict(sample_rate=True),
        dict(bits_per_sample=32),
        dict(num_samples=-1),
        dict(frame_length=0),
        dict(model_id="xyz"),
        dict(num_layers=65),
        dict(tier=""),
        dict(flags=256),
        dict(extra={"channels": 3}),
        dict(extra={"x": object()}),
        dict(extra={"x": float("nan")}),
        dict(extra={"x": "y" * 70000}),
        dict(num_samples=2**33, frame_length=1),
    ],
)
def test_write_header_rejects_bad_headers(overrides):
    with pytest.raises(ValueError):
        write_header(io.BytesIO(), make_header(**overrides))


@pytest.mark.parametrize(
    "frame",
    [
        Frame(0, 4, ()),
        Frame(0, 4, ((1, b"a"),)),
        Frame(0, 4, ((0, b"a"), (0, b"b"))),
        Frame(0, 4, ((0, b"a"), (2, b"b"), (1, b"c"))),
        Frame(0, 4, ((0, "text"),)),
        Frame(0, 0, ((0, b"a"),)),
        Frame(-1, 4, ((0, b"a"),)),
        Frame(0, 4, ((0, b"a"), (64, b"b"))),
    ],
)
def test_write_frame_rejects_bad_frames(frame):
    with pytest.raises(ValueError):
        write_frame(io.BytesIO(), frame)


@pytest.mark.parametrize(
    "footer",
    [
        StreamFooter(0, 0, b"short"),
        StreamFooter(-1, 0, MD5),
        StreamFooter(0, -1, MD5),
        StreamFooter(0, 0, "x" * 16),
    ],
)
def test_write_footer_rejects_bad_footers(footer):
    with pytest.raises(ValueError):
        write_footer(io.BytesIO(), footer)


def test_writer_accepts_integer_likes_and_bytearrays():
    np = pytest.importorskip("numpy")
    header = make_header(num_samples=np.int64(10), channels=np.int32(2))
    fp = io.BytesIO()
    write_header(fp, header)
    for frame in FRAMES:
        layers = tuple((lid, bytearray(p)) for lid, p in frame.layers)
        write_frame(fp, Frame(np.int64(frame.index), frame.num_samples, layers))
    write_footer(fp, StreamFooter(3, 10, bytearray(MD5)))
    assert fp.getvalue() == STREAM


# --------------------------------------------------------------------------- fuzzing


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_fuzz_random_bytes_after_magic(tail, pipe):
    read_error(MAGIC + tail, pipe=pipe)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_after_valid_header(tail):
    read_error(H3 + tail)


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(STREAM) - 1), st.integers(0, 255)), min_size=1, max_size=6
    )
)
def test_fuzz_random_edits_of_a_valid_stream(edits):
    data = bytearray(STREAM)
    for pos, value in edits:
        data[pos] = value
    if bytes(data) == STREAM:
        return
    read_error(bytes(data))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(FUZZ, max_examples=60)
@given(
    st.dictionaries(
        st.sampled_from(sorted(header_dict()) + ["extra1", "x"]), json_values, max_size=14
    ),
    st.booleans(),
)
def test_fuzz_header_json_with_valid_crc(overrides, base):
    obj = {**header_dict(), **overrides} if base else overrides
    data = raw_header(obj)
    try:
        reader = StreamReader(io.BytesIO(data))
    except CorruptStreamError as error:
        assert str(error).startswith("corrupt header: ")
        return
    assert reader.header.extra == {k: v for k, v in obj.items() if k not in header_dict()}


layer_lists = st.lists(
    st.tuples(st.integers(0, 255), st.binary(max_size=6)), min_size=0, max_size=5
)


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 6), layer_lists, st.booleans()),
        max_size=4,
    ),
    st.integers(0, 5),
    st.integers(0, 12),
)
def test_fuzz_frame_fields_with_valid_crcs(frames, end_frames, end_samples):
    """Arbitrary field values behind correct CRCs: accepted only if they obey the spec."""
    data = H3
    for index, num_samples, layers, lie in frames:
        lengths = [len(p) + (1 if lie else 0) for _, p in layers]
        data += raw_frame(index, num_samples, layers, lengths=lengths)
    data += raw_end(end_frames, end_samples)
    try:
        header, got, footer = read_all(data)
    except CorruptStreamError:
        return
    assert [f.num_samples for f in got] == [4, 4, 2]
    assert [f.index for f in got] == [0, 1, 2]
    for frame in got:
        ids = [lid for lid, _ in frame.layers]
        assert ids[0] == 0 and ids == sorted(set(ids)) and ids[-1] < 3
    assert footer == StreamFooter(3, 10, MD5)


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_every_supported_version_is_read_and_kept(version):
    """Versions 1 and 2 share the container layout; a rewriting tool keeps the version."""
    header_len = 12 + struct.unpack_from("<H", STREAM, 6)[0]
    data = raw_header(body=STREAM[8:header_len - 4], version=version) + STREAM[header_len:]
    reader = StreamReader(io.BytesIO(data))
    assert reader.header.version == version
    assert len(list(reader.frames())) == len(FRAMES)
    out = io.BytesIO()
    write_header(out, reader.header)
    assert out.getvalue()[4] == version


# --------------------------------------------------------------------------- metadata chunk


def raw_metadata(blob: bytes, *, length: int | None = None) -> bytes:
    return with_crc(b"HM" + struct.pack("<I", len(blob) if length is None else length) + blob)


def test_metadata_chunk_matches_the_spec_and_roundtrips():
    header_len = 12 + struct.unpack_from("<H", META_STREAM, 6)[0]
    assert META_STREAM[:header_len] == STREAM[:header_len]  # the header chunk is unchanged
    assert META_STREAM[header_len:] == raw_metadata(META_BLOB) + STREAM[header_len:]
    for pipe in (False, True):
        header, frames, footer = read_all(META_STREAM, pipe=pipe)
        assert header.metadata == META_BLOB and header == make_header(metadata=META_BLOB)
        assert frames == FRAMES
    layout = read_stream_layout(io.BytesIO(META_STREAM))
    assert layout.metadata_bytes == 10 + len(META_BLOB)
    assert layout.header_bytes == header_len + layout.metadata_bytes
    assert layout.header_bytes + layout.framing_bytes + layout.payload_bytes == layout.total_bytes
    assert read_stream_layout(io.BytesIO(STREAM)).metadata_bytes == 0
    assert read_all(STREAM)[0].metadata is None


@pytest.mark.parametrize("version", [1, 2])
def test_older_versions_have_no_metadata_chunk(version):
    with pytest.raises(ValueError, match="has no metadata chunk"):
        write_header(io.BytesIO(), make_header(version=version, metadata=b"x"))
    # an "HM" after a version 2 header is not a metadata chunk: a bad frame sync
    data = raw_header(version=version) + raw_metadata(b"x") + STREAM[len(raw_header()):]
    assert "frame 0 header has a bad sync code" in str(read_error(data))


@pytest.mark.parametrize("blob", [b"", b"x" * ((1 << 26) + 1)])
def test_metadata_size_limits_when_writing(blob):
    with pytest.raises(ValueError, match="metadata must be"):
        write_header(io.BytesIO(), make_header(metadata=blob))


@pytest.mark.parametrize("pipe", [False, True])
@pytest.mark.parametrize("length", [0, (1 << 26) + 1, 0xFFFFFFFF])
def test_metadata_length_is_checked_before_reading(length, pipe):
    """A declared length out of bounds is refused before anything is allocated or read."""
    header_len = len(raw_header())
    data = STREAM[:header_len] + raw_metadata(b"", length=length) + STREAM[header_len:]
    tracemalloc.start()
    try:
        error = read_error(data, pipe=pipe)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"metadata chunk declares {length} bytes" in str(error)
    assert peak < 1 << 20


def test_metadata_longer_than_the_input_is_truncated_not_allocated():
    header_len = len(raw_header())
    data = STREAM[:header_len] + b"HM" + struct.pack("<I", 1 << 26) + b"tiny"
    error = read_error(data)
    assert isinstance(error, TruncatedStreamError) and "metadata chunk" in str(error)


def recover_all(data: bytes, pipe: bool = False):
    reader = StreamReader(Pipe(data) if pipe else io.BytesIO(data), recover=True)
    return reader, list(reader.frames())


@pytest.mark.parametrize("pipe", [False, True])
@pytest.mark.parametrize("damage", ["blob", "crc", "length", "huge length", "cut"])
def test_recovery_survives_a_damaged_metadata_chunk(damage, pipe):
    header_len = len(raw_header())
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
    data = STREAM[:header_len] + bytes(chunk) + STREAM[header_len:]
    reader, frames = recover_all(data, pipe=pipe)
    assert reader.header.metadata is None and reader.metadata_bytes == 0
    assert frames == FRAMES and reader.footer is not None
    assert len(reader.problems) == 1, reader.problems
    assert "metadata chunk" in reader.problems[0]
    assert reader.problems[0].endswith("metadata not restored")
    with pytest.raises(CorruptStreamError, match="metadata chunk"):
        read_all(data, pipe=pipe)


def test_recovery_keeps_an_intact_metadata_chunk():
    reader, frames = recover_all(META_STREAM)
    assert reader.header.metadata == META_BLOB and frames == FRAMES and not reader.problems
