"""Compact streams (format 4) from the real encoder: a clip of one frame without metadata
is written as one chunk (docs/format.md, "Compact stream").

* 1 s of 44.1 kHz mono 16-bit audio with the default model (a one-frame clip under
  ``MERGE_BELOW`` samples) is one unit covering every layer: 40 bytes of container (39 and
  the unit's slope byte); a one-frame clip from ``MERGE_BELOW`` on has one unit per
  non-empty layer and costs 39 + its unit table;
* the encoder writes the same compact stream to a file and to a pipe; a lower tier is
  compact too (a one-unit clip is kept whole: it stays the complete stream), and
  ``encode --tier`` equals ``truncate`` byte for byte;
* every truncation and every bit flip of a real compact stream is caught by the decoder
  (strict: an error, nothing written; recovering: one damaged frame or an error).
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import soundfile as sf
from nonseekable import NoSeek

import hybridcodec
from hybridcodec import codec, framecodec
from hybridcodec.container import StreamReader, read_stream_layout
from hybridcodec.errors import CorruptStreamError
from hybridcodec.format import v4
from hybridcodec.layer_units import MERGE_BELOW
from hybridcodec.truncation import truncate_file


class Sink(io.RawIOBase):
    """A pipe to write to: not seekable, keeps what it gets."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += bytes(b)
        return len(b)


@pytest.fixture(scope="module")
def one_second(tmp_path_factory, corpus_dir):
    """1 s of corpus speech, 44.1 kHz mono 16-bit, as a plain WAV (no metadata)."""
    path = tmp_path_factory.mktemp("compact") / "one-second.wav"
    pcm, rate = sf.read(corpus_dir / "instruments" / "speech-female.flac", dtype="int16",
                        frames=44100)
    assert rate == 44100 and pcm.ndim == 1
    sf.write(path, pcm, rate, subtype="PCM_16")
    return path


def _container_bytes(path) -> int:
    return read_stream_layout(path).overhead_bytes


@pytest.fixture(scope="module")
def two_seconds(tmp_path_factory, corpus_dir):
    """2 s of the same speech (88200 samples: one frame, above MERGE_BELOW)."""
    path = tmp_path_factory.mktemp("compact") / "two-seconds.wav"
    pcm, rate = sf.read(corpus_dir / "instruments" / "speech-female.flac", dtype="int16",
                        frames=88200)
    assert rate == 44100 and pcm.ndim == 1 and len(pcm) == 88200
    sf.write(path, pcm, rate, subtype="PCM_16")
    return path


def test_one_second_clip_is_compact(one_second, tmp_path):
    out = tmp_path / "a.hyb"
    hybridcodec.encode(one_second, out)
    reader = StreamReader(io.BytesIO(out.read_bytes()))
    (frame,) = list(reader.frames())
    assert 44100 < MERGE_BELOW
    assert reader.compact and len(frame.units) == 1
    (unit,) = frame.units
    assert (unit.first, unit.count) == (0, 20) and not unit.cuttable and len(unit.slopes) == 1
    # magic, version, flags (6), header body (12), MD5 (16), frame flags (1), CRC (4),
    # and the unit table: one unit of every layer (no length: it runs to the CRC) and its
    # slope byte, which is not 0
    _, table = v4.unit_table(frame.units, 20, compact=True)
    assert table == bytes(unit.slopes) and unit.slopes != b"\x00"
    assert _container_bytes(out) == 6 + 12 + 16 + 1 + 4 + 1 == 40
    layout = read_stream_layout(out)
    assert layout.units == 1 and layout.total_bytes - layout.payload_bytes == 40
    decoded = tmp_path / "a.wav"
    assert hybridcodec.decode(out, decoded).clean
    assert np.array_equal(sf.read(decoded, dtype="int16")[0], sf.read(one_second,
                                                                      dtype="int16")[0])


def test_a_one_frame_clip_from_merge_below_on_has_a_unit_per_layer(two_seconds, tmp_path):
    out = tmp_path / "b.hyb"
    hybridcodec.encode(two_seconds, out)
    reader = StreamReader(io.BytesIO(out.read_bytes()))
    (frame,) = list(reader.frames())
    assert 88200 >= MERGE_BELOW and reader.compact
    assert [(u.first, u.count) for u in frame.units] == [(k, 1) for k in range(20)]
    # layer 0 (with the envelope) is complete, every other layer cuttable in the 6
    # segments of 16384 samples the frame's 88200 samples make
    assert not frame.units[0].cuttable and all(u.cuttable for u in frame.units[1:])
    assert reader.header.frame_segments(0) == 6
    assert all(len(u.cuts) == 5 and len(u.slopes) == 6 for u in frame.units[1:])
    _, table = v4.unit_table(frame.units, 20, compact=True)
    assert _container_bytes(out) == 6 + 12 + 16 + 1 + 4 + len(table)
    decoded = tmp_path / "b.wav"
    assert hybridcodec.decode(out, decoded).clean
    assert np.array_equal(sf.read(decoded, dtype="int16")[0], sf.read(two_seconds,
                                                                      dtype="int16")[0])


def test_pipe_output_is_the_same_compact_stream(one_second, tmp_path):
    out = tmp_path / "file.hyb"
    hybridcodec.encode(one_second, out)
    sink = Sink()
    report = codec.encode_file(one_second, sink)
    assert bytes(sink.data) == out.read_bytes() and report.output_bytes == len(sink.data)
    data = out.read_bytes()
    assert codec.decode_file(NoSeek(data), io.BytesIO()).clean


def test_lower_tiers_of_a_compact_stream(one_second, two_seconds, tmp_path):
    # a one-unit clip can only be kept whole: every lower tier, and any rate (the CLI
    # warns when it is above the rate asked), is the complete stream, byte for byte
    full = tmp_path / "full.hyb"
    hybridcodec.encode(one_second, full)
    for tier, kbps in (("low", None), ("tiny", None), (None, 100)):
        direct, cut = tmp_path / "direct.hyb", tmp_path / "cut.hyb"
        hybridcodec.encode(one_second, direct, tier=tier, kbps=kbps, overwrite=True)
        report = truncate_file(full, cut, tier=tier, kbps=kbps, overwrite=True)
        assert direct.read_bytes() == cut.read_bytes() == full.read_bytes()
        layout = read_stream_layout(cut)
        assert layout.compact and layout.units == 1 and layout.layers_carried == 20
        assert report.layers == 20 and report.tier == layout.header.tier == "lossless"
        got = hybridcodec.decode(cut, tmp_path / "whole.wav", overwrite=True)
        assert got.clean and got.md5_ok is True
    # a one-frame clip of a unit per layer is cut, and stays compact
    full = tmp_path / "full2.hyb"
    hybridcodec.encode(two_seconds, full)
    for tier, kbps in (("low", None), (None, 100)):
        direct, cut = tmp_path / "direct.hyb", tmp_path / "cut.hyb"
        hybridcodec.encode(two_seconds, direct, tier=tier, kbps=kbps, overwrite=True)
        report = truncate_file(full, cut, tier=tier, kbps=kbps, overwrite=True)
        assert direct.read_bytes() == cut.read_bytes()
        layout = read_stream_layout(cut)
        assert layout.compact and 1 <= report.layers < 20 and layout.units == report.layers
        assert report.tier == layout.header.tier == (tier or "100kbps")
        if kbps:  # 2 s: bytes * 8 / 2 = bits per s
            assert 0.95 * kbps <= 8 * os.path.getsize(cut) / 2 / 1000 <= kbps
        out = tmp_path / "low.wav"
        got = hybridcodec.decode(cut, out, overwrite=True)
        assert got.md5_ok is None and sf.info(out).frames == 88200


def test_a_stream_with_metadata_is_not_compact(tmp_path, corpus_dir):
    src = corpus_dir / "speech8k" / "0_george_0.flac"  # 0.3 s; a Vorbis comment
    with_meta, bare = tmp_path / "m.hyb", tmp_path / "b.hyb"
    hybridcodec.encode(src, with_meta)
    hybridcodec.encode(src, bare, metadata=False)
    meta_reader = StreamReader(io.BytesIO(with_meta.read_bytes()))
    bare_reader = StreamReader(io.BytesIO(bare.read_bytes()))
    assert not meta_reader.compact and meta_reader.header.metadata is not None
    assert not meta_reader.has_index  # one frame: nothing to seek
    assert bare_reader.compact
    # the normal layout of one frame: header chunk (its body and CRC), metadata chunk,
    # frame chunk (sync, index, samples, flags, unit table, two CRCs), end chunk
    (frame,) = list(meta_reader.frames())
    h = meta_reader.header
    _, table = v4.unit_table(frame.units, h.num_layers, compact=False)
    assert _container_bytes(with_meta) == (
        6 + len(v4.header_body(h)) + 4 + meta_reader.metadata_bytes
        + 2 + 1 + len(v4.encode_varint(h.num_samples)) + 1 + len(table) + 4 + 4 + 42)
    for path in (with_meta, bare):
        assert hybridcodec.decode(path, tmp_path / "x.flac", overwrite=True).clean


@pytest.fixture(scope="module")
def short_stream(tmp_path_factory, corpus_dir) -> tuple[bytes, np.ndarray]:
    d = tmp_path_factory.mktemp("short")
    src = d / "clip.wav"
    pcm, rate = sf.read(corpus_dir / "speech8k" / "0_george_1.flac", dtype="int16")
    sf.write(src, pcm, rate, subtype="PCM_16")
    out = d / "clip.hyb"
    hybridcodec.encode(src, out)
    assert StreamReader(io.BytesIO(out.read_bytes())).compact
    return out.read_bytes(), pcm


def _decode(data: bytes, **kw):
    out = io.BytesIO()
    report = codec.decode_file(io.BytesIO(data), out, **kw)
    return sf.read(io.BytesIO(out.getvalue()), dtype="int16")[0], report


def test_every_truncation_of_a_real_compact_stream_is_caught(short_stream):
    data, pcm = short_stream
    assert np.array_equal(_decode(data)[0], pcm)
    positions = set(range(0, 80)) | set(range(80, len(data), 97)) | {len(data) - 1}
    for n in sorted(positions):
        with pytest.raises(CorruptStreamError) as info:
            _decode(data[:n])
        assert "\n" not in str(info.value)
        with pytest.raises(CorruptStreamError):  # cut: nothing says what is missing
            StreamReader(io.BytesIO(data[:n]))


def test_every_bit_flip_of_a_real_compact_stream_is_caught(short_stream):
    data, pcm = short_stream
    # every bit of everything but the payload at the container, sampled bits with the
    # whole decoder (strict and recovering)
    table_end = read_stream_layout(io.BytesIO(data)).overhead_bytes - 4
    for pos in list(range(table_end)) + [len(data) - 4, len(data) - 1]:
        for bit in range(8):
            damaged = bytearray(data)
            damaged[pos] ^= 1 << bit
            with pytest.raises(CorruptStreamError):
                list(StreamReader(io.BytesIO(bytes(damaged))).frames())
    rng = np.random.default_rng(3)
    for pos in sorted(set(rng.integers(0, len(data), 60).tolist())):
        damaged = bytearray(data)
        damaged[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(CorruptStreamError):
            _decode(bytes(damaged))
        try:
            got, report = _decode(bytes(damaged), ignore_errors=True)
        except CorruptStreamError as exc:  # a header that does not parse
            assert "\n" not in str(exc)
            continue
        assert [d.frame for d in report.damaged] == [0] and not got.any()
        assert len(got) == report.num_samples


def test_info_shows_the_layout_and_units(one_second, tmp_path):
    out = tmp_path / "a.hyb"
    hybridcodec.encode(one_second, out)
    text = hybridcodec.describe_stream(out)
    assert "  container   format 4, compact (the whole stream in one chunk)\n" in text
    assert ("  units       1 (1.0 per frame): 1 multi-layer; segments of 16384 samples, "
            "8 per frame\n") in text
    assert "20 layers carried" in text
    rows = [line for line in text.splitlines() if line.endswith(" bytes") or " bytes (" in line]
    columns = {line.index(" bytes") for line in rows}
    assert len(rows) == 21 and len(columns) == 1, rows  # 20 layers and the overhead, aligned
    assert rows[-1].split() == ["--", "container", "overhead", "40", "bytes"]
    # the one unit counts under its first layer
    assert "(a unit of several layers counts under its first)" in text
    assert all(line.endswith(" 0 bytes (  0.0 %)") for line in rows[1:-1]), rows
    low = tmp_path / "low.hyb"
    truncate_file(out, low, tier="low")  # kept whole
    assert hybridcodec.describe_stream(low).replace(str(low), str(out)) == text


def test_info_of_a_cut_compact_stream(two_seconds, tmp_path):
    out, low = tmp_path / "b.hyb", tmp_path / "low.hyb"
    hybridcodec.encode(two_seconds, out)
    text = hybridcodec.describe_stream(out)
    assert ("  units       20 (20.0 per frame): 19 cuttable; segments of 16384 samples, "
            "8 per frame\n") in text
    report = truncate_file(out, low, tier="low")
    layout = read_stream_layout(low)
    text = hybridcodec.describe_stream(low)
    assert "tier low" in text and f"{layout.layers_carried} layers carried" in text
    assert f"  units       {report.layers} ({report.layers}.0 per frame): " in text
    assert layout.units == report.layers and layout.layers_carried < 20
