"""Damaged, foreign and mismatched streams (DESIGN.md: "never a crash, a hang, or silent
garbage").

A real stream (a short excerpt of a corpus recording) is truncated at ~200 places,
including every chunk boundary, and has single bits flipped at ~200 places. Every decode
must raise a :class:`CorruptStreamError` (or its subclasses
:class:`TruncatedStreamError` / :class:`UnsupportedVersionError`) -- checked by exact type,
so nothing else may escape -- and must leave no output file (not even a temporary one).
"""

from __future__ import annotations

import collections
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hybridcodec
import v4raw
from hybridcodec import cli
from hybridcodec.container import FORMAT_VERSION, StreamReader
from hybridcodec.errors import (CorruptStreamError, ModelMismatchError, TruncatedStreamError,
                                UnsupportedVersionError)
from hybridcodec.model import HybridModel, load_model, model_id_of

EXCERPT_SOURCE = "instruments/cello-phrase.flac"
EXCERPT_SECONDS = 6.2  # > 2 frames of the default model at 44.1 kHz: 3 frame chunks

STREAM_ERRORS = (CorruptStreamError, TruncatedStreamError, UnsupportedVersionError)


# --------------------------------------------------------------------------- fixtures


class Stream:
    """A valid .hyb file, its bytes, its chunk boundaries and the audio it holds."""

    def __init__(self, path: Path, wav: Path):
        self.path = path
        self.wav = wav
        self.data = path.read_bytes()
        self.audio, self.rate = sf.read(wav, dtype="int32", always_2d=True)
        with open(path, "rb") as fp:
            reader = StreamReader(fp)
            self.header = reader.header
            bounds = [0, reader.header_bytes]
            for _ in reader.frames():
                bounds.append(reader.bytes_read)
            bounds.append(reader.bytes_read)  # after the end chunk
            self.header_len = reader.header_bytes - reader.metadata_bytes
        assert bounds[-1] == len(self.data)
        #: bytes of the end chunk (version 4: 42, fixed, after the index chunk)
        self.end_size = 42 if self.header.version >= 4 else 34
        bounds.append(len(self.data) - self.end_size)
        #: start of the header, of every frame chunk, of the index and end chunks, and the
        #: file end
        self.boundaries = sorted(set(bounds))


@pytest.fixture(scope="module")
def stream(tmp_path_factory, corpus_dir) -> Stream:
    d = tmp_path_factory.mktemp("stream")
    src = corpus_dir / EXCERPT_SOURCE
    if not src.is_file():
        pytest.skip(f"corpus file {src} not found")
    info = sf.info(src)
    data, rate = sf.read(src, frames=int(EXCERPT_SECONDS * info.samplerate), dtype="int32",
                         always_2d=True)
    wav = d / "excerpt.wav"
    sf.write(wav, data, rate, subtype=info.subtype)
    hyb = d / "excerpt.hyb"
    hybridcodec.encode(wav, hyb)
    s = Stream(hyb, wav)
    assert s.header.num_frames >= 3, "want several frame boundaries"
    return s


@pytest.fixture
def decode_expecting_error(tmp_path):
    """decode(bytes) -> the exception; asserts its exact type and that nothing was written."""
    src = tmp_path / "damaged.hyb"
    outdir = tmp_path / "out"
    outdir.mkdir()

    def run(data: bytes, allowed=STREAM_ERRORS, what: str = "", **kw) -> BaseException:
        src.write_bytes(data)
        out = outdir / "decoded.wav"
        try:
            hybridcodec.decode(src, out, **kw)
        except BaseException as exc:  # noqa: BLE001 - the type is what we check
            error = exc
        else:
            raise AssertionError(f"{what}: decode succeeded on a damaged stream")
        assert type(error) in allowed, (
            f"{what}: {type(error).__module__}.{type(error).__name__}: {error}")
        message = str(error)
        assert message and "\n" not in message, f"{what}: message {message!r}"
        left = sorted(os.listdir(outdir))
        assert left == [], f"{what}: decode left {left}"
        return error

    return run


def _spread(length: int, count: int, seed: int) -> list[int]:
    """``count`` distinct positions in [0, length) spread evenly, jittered."""
    rng = np.random.default_rng(seed)
    base = np.linspace(0, length - 1, count)
    jitter = rng.uniform(-0.5, 0.5, count) * (length / count)
    return sorted(set(np.clip(np.round(base + jitter), 0, length - 1).astype(int).tolist()))


# --------------------------------------------------------------------------- sanity


def test_intact_stream_decodes(stream, tmp_path):
    out = tmp_path / "ok.wav"
    hybridcodec.decode(stream.path, out)
    data, rate = sf.read(out, dtype="int32", always_2d=True)
    assert rate == stream.rate and np.array_equal(data, stream.audio)


# --------------------------------------------------------------------------- truncation


def test_truncation_everywhere(stream, decode_expecting_error):
    n = len(stream.data)
    positions = set(_spread(n, 185, seed=1))
    for b in stream.boundaries:  # every chunk boundary and its neighbours
        positions.update(p for p in (b - 1, b, b + 1) if 0 <= p < n)
    positions.update([0, 1, 3, 4, 5, 8, n - 1, n - 2, n - stream.end_size,
                      n - stream.end_size + 1])
    positions = sorted(p for p in positions if 0 <= p < n)
    assert len(positions) >= 195
    for p in positions:
        decode_expecting_error(stream.data[:p], what=f"truncated to {p} of {n} bytes",
                               allowed=(CorruptStreamError, TruncatedStreamError))


def test_truncation_at_frame_boundaries_is_truncated_error(stream, decode_expecting_error):
    """Cutting exactly between chunks is reported as a truncated stream."""
    for b in stream.boundaries[2:-1]:  # after the header's frame chunks, before the end
        err = decode_expecting_error(stream.data[:b], what=f"cut at chunk boundary {b}")
        assert type(err) is TruncatedStreamError, f"cut at {b}: {type(err).__name__}: {err}"


def test_truncated_stream_info_raises(stream, tmp_path):
    """``describe_stream`` (hybridcodec info) on truncated data: our error, nothing else."""
    src = tmp_path / "cut.hyb"
    for p in _spread(len(stream.data), 60, seed=2):
        src.write_bytes(stream.data[:p])
        with pytest.raises(CorruptStreamError) as info:
            hybridcodec.describe_stream(src)
        assert type(info.value) in (CorruptStreamError, TruncatedStreamError), p


# --------------------------------------------------------------------------- bit flips


def test_single_bit_flips(stream, decode_expecting_error):
    n = len(stream.data)
    positions = set(_spread(n, 185, seed=3))
    # The fixed fields too: magic, version, flags, header body, first frame header, end.
    positions.update(range(0, 8))
    positions.update(range(stream.boundaries[1], stream.boundaries[1] + 11))
    positions.update(range(n - stream.end_size, n, 4))
    rng = np.random.default_rng(4)
    positions = sorted(positions)
    assert len(positions) >= 200
    for p in positions:
        bit = int(rng.integers(0, 8))
        data = bytearray(stream.data)
        data[p] ^= 1 << bit
        decode_expecting_error(bytes(data), what=f"bit {bit} of byte {p} flipped")


def _payload_spans(stream: Stream) -> list[tuple[int, int]]:
    """(start, length) of every frame's payloads in the file (their CRC follows them)."""
    return [(f["payload"], f["payload_len"]) for f in v4raw.frame_spans(stream.data)["frames"]]


def test_payload_damage_with_valid_crc(stream, tmp_path):
    """Flipped payload bits whose CRC is fixed up (as a buggy writer or a deliberate
    forgery would produce): the frame decoder must raise CorruptStreamError (MD5, range
    or payload checks) -- never crash, hang or write wrong audio. The command line: exit
    4 and no output; with --ignore-errors exit 6, the frames found damaged silent and
    every other one exact (or, where only the MD5 tells, a warning that says so)."""
    spans = [s for s in _payload_spans(stream) if s[1] > 0]
    assert len(spans) == stream.header.num_frames
    rng = np.random.default_rng(5)
    outdir = tmp_path / "out"
    outdir.mkdir()
    src = tmp_path / "forged.hyb"
    frame_length = stream.header.frame_length
    outcomes = collections.Counter()
    for trial in range(60):
        frame = trial % len(spans)
        start, length = spans[frame]
        p = start + int(rng.integers(0, length))
        data = bytearray(stream.data)
        data[p] ^= 1 << int(rng.integers(0, 8))
        payload = bytes(data[start:start + length])
        data[start + length:start + length + 4] = struct.pack("<I", zlib.crc32(payload))
        src.write_bytes(bytes(data))
        out = outdir / "decoded.wav"
        what = f"trial {trial}: payload byte {p} (span {start}+{length})"
        try:
            hybridcodec.decode(src, out)
        except BaseException as exc:  # noqa: BLE001
            assert type(exc) is CorruptStreamError, f"{what}: {type(exc).__name__}: {exc}"
            assert os.listdir(outdir) == [], what
        else:
            # Only acceptable if the damage did not matter: the audio is exactly right.
            got, _ = sf.read(out, dtype="int32", always_2d=True)
            assert np.array_equal(got, stream.audio), f"{what}: wrong audio written"
            out.unlink()
            outcomes["harmless"] += 1
            continue
        if trial % 2:  # recovering: every other trial (a decode costs 0.4 s)
            continue
        report = hybridcodec.decode(src, out, ignore_errors=True)
        got, _ = sf.read(out, dtype="int32", always_2d=True)
        out.unlink()
        assert got.shape == stream.audio.shape and not report.clean, what
        bad = np.zeros(len(got), bool)
        for region in report.damaged:
            assert region.frame == frame, what
            assert (region.start, region.end) == (frame * frame_length, min(
                (frame + 1) * frame_length, len(got))), what
            bad[region.start:region.end] = True
        assert not got[bad].any(), what
        if report.damaged:
            assert np.array_equal(got[~bad], stream.audio[~bad]), what
            outcomes["frame silenced"] += 1
        else:  # decoded without a complaint: only the MD5 caught it
            assert report.md5_ok is False, what
            assert any("decoded audio is wrong" in w for w in report.warnings), what
            outcomes["MD5 mismatch"] += 1
        if outcomes["cli"] < 3:  # the exit codes, in process
            outcomes["cli"] += 1
            stdout, stderr = io.StringIO(), io.StringIO()
            assert cli.main(["decode", str(src), "-o", str(out), "-q"], stdout=stdout,
                            stderr=stderr) == 4, (what, stderr.getvalue())
            assert os.listdir(outdir) == [], what
            assert cli.main(["decode", str(src), "-o", str(out), "-q", "--ignore-errors"],
                            stdout=stdout, stderr=stderr) == 6, (what, stderr.getvalue())
            out.unlink()
    assert outcomes["frame silenced"] + outcomes["MD5 mismatch"] >= 20, outcomes


# --------------------------------------------------------------------------- foreign files


def test_random_garbage(decode_expecting_error):
    rng = np.random.default_rng(6)
    for size in (1, 3, 4, 100, 5000):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        if data.startswith(b"HYBC"):
            continue
        err = decode_expecting_error(data, allowed=(CorruptStreamError,), what=f"{size} bytes")
        assert "bad magic" in str(err)


def test_garbage_after_magic(decode_expecting_error):
    rng = np.random.default_rng(7)
    body = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    decode_expecting_error(b"HYBC\x01" + body, what="magic + garbage")
    decode_expecting_error(b"HYBC", allowed=(CorruptStreamError, TruncatedStreamError),
                           what="magic only")


def test_empty_file(decode_expecting_error):
    decode_expecting_error(b"", allowed=(CorruptStreamError,), what="empty file")


def test_wav_named_hyb(stream, decode_expecting_error):
    err = decode_expecting_error(stream.wav.read_bytes(), allowed=(CorruptStreamError,),
                                 what="a WAV file named .hyb")
    assert "bad magic" in str(err)


def test_flac_named_hyb(decode_expecting_error, corpus_dir):
    src = corpus_dir / EXCERPT_SOURCE
    if not src.is_file():
        pytest.skip("corpus file not found")
    decode_expecting_error(src.read_bytes(), allowed=(CorruptStreamError,), what="FLAC")


def test_stream_with_trailing_garbage(stream, decode_expecting_error):
    decode_expecting_error(stream.data + b"\x00", allowed=(CorruptStreamError,),
                           what="one trailing byte")
    decode_expecting_error(stream.data + stream.data, allowed=(CorruptStreamError,),
                           what="stream twice")


def test_frames_swapped(stream, decode_expecting_error):
    b = stream.boundaries
    first, second = stream.data[b[1]:b[2]], stream.data[b[2]:b[3]]
    data = stream.data[:b[1]] + second + first + stream.data[b[3]:]
    decode_expecting_error(data, allowed=(CorruptStreamError,), what="frames 0 and 1 swapped")


def test_frame_dropped(stream, decode_expecting_error):
    b = stream.boundaries
    data = stream.data[:b[2]] + stream.data[b[3]:]
    decode_expecting_error(data, allowed=(CorruptStreamError,), what="frame 1 removed")


# --------------------------------------------------------------------------- model / version


def test_other_model_is_refused(stream, decode_expecting_error, tmp_path):
    other = HybridModel()
    other_path = tmp_path / "other.hcm"
    other_id = other.save(other_path)
    default_id = load_model(None)[1]
    assert other_id == model_id_of(other) != default_id
    assert stream.header.model_id == default_id
    err = decode_expecting_error(stream.data, allowed=(ModelMismatchError,),
                                 what="decoded with another model", model=str(other_path))
    assert default_id in str(err) and other_id in str(err), str(err)


def test_stream_of_other_model_refused_by_default(tmp_path, decode_expecting_error, stream):
    """The reverse: a stream coded with a user model, decoded with the default."""
    other = HybridModel()
    other_path = tmp_path / "user.hcm"
    other_id = other.save(other_path)
    hyb = tmp_path / "user.hyb"
    hybridcodec.encode(stream.wav, hyb, model=str(other_path))
    err = decode_expecting_error(hyb.read_bytes(), allowed=(ModelMismatchError,),
                                 what="user-model stream, default model")
    assert other_id in str(err) and load_model(None)[1] in str(err), str(err)


def _with_version(data: bytes, version: int) -> bytes:
    """The stream with its header's version byte replaced and the header CRC recomputed."""
    end = v4raw.body_end(data)
    head = data[:4] + bytes([version]) + data[5:end]
    return head + v4raw.crc(head) + data[end + 4:]


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 200, 255])
def test_future_version(stream, decode_expecting_error, version):
    err = decode_expecting_error(_with_version(stream.data, version),
                                 allowed=(UnsupportedVersionError,), what=f"version {version}")
    assert str(version) in str(err)


def test_version_zero(stream, decode_expecting_error):
    decode_expecting_error(_with_version(stream.data, 0), allowed=(UnsupportedVersionError,),
                           what="version 0")


def test_version_rewrite_helper_is_faithful(stream, tmp_path):
    """_with_version(data, FORMAT_VERSION) reproduces the original stream (so the tests
    above damage only the version)."""
    assert _with_version(stream.data, FORMAT_VERSION) == stream.data


def _with_header(data: bytes, flags_or: int = 0, **changes) -> bytes:
    """The stream with its header body rebuilt (docs/format.md, byte by byte) from its
    fields and ``changes`` (keywords of :func:`v4raw.body`), ``flags_or`` set in its
    flags, the header CRC valid."""
    h = StreamReader(io.BytesIO(data)).header
    flags = data[5] | flags_or
    fields = dict(sample_rate=h.sample_rate, channels=h.channels, bits=h.bits_per_sample,
                  container=h.source_format, subtype=h.subtype, num_samples=h.num_samples,
                  model=h.model_id, frame_shift=h.frame_length.bit_length() - 1,
                  levels=h.levels, groups=h.groups,
                  segment_shift=h.segment_length.bit_length() - 1, tier=(0,))
    fields.update(changes)
    return v4raw.header(v4raw.body(**fields), flags=flags) + data[v4raw.body_end(data) + 4:]


FORGED_HEADERS = {
    "channels+1": (lambda h: {"channels": h.channels + 1}, (CorruptStreamError,)),
    "channels+2": (lambda h: {"channels": h.channels + 2}, (CorruptStreamError,)),
    "bits8": (lambda h: {"bits": 8}, (CorruptStreamError,)),
    "bits24": (lambda h: {"bits": 24}, (CorruptStreamError,)),
    "samples-1": (lambda h: {"num_samples": h.num_samples - 1}, (CorruptStreamError,)),
    "samples+1": (lambda h: {"num_samples": h.num_samples + 1}, (CorruptStreamError,)),
    "frame_length": (lambda h: {"frame_shift": 16, "segment_shift": 16},
                     (CorruptStreamError,)),
    "levels-1": (lambda h: {"levels": h.levels - 1}, (CorruptStreamError,)),
    "levels+1": (lambda h: {"levels": h.levels + 1}, (CorruptStreamError,)),
    "groups-1": (lambda h: {"groups": h.groups - 1}, (CorruptStreamError,)),
    "model_id": (lambda h: {"model": "0123456789abcdef"}, (ModelMismatchError,)),
    "model-unknown": (lambda h: {"model": 99}, (UnsupportedVersionError,)),
    "rate0": (lambda h: {"sample_rate": 0, "rate_code": 0}, (CorruptStreamError,)),
    "rate-code": (lambda h: {"rate_code": 16}, (CorruptStreamError,)),
    "rate-not-canonical": (lambda h: {"rate_code": 0}, (CorruptStreamError,)),
    "tier-kind": (lambda h: {"tier": (7,)}, (CorruptStreamError,)),
    "segment-too-short": (lambda h: {"segment_shift": 3}, (CorruptStreamError,)),
    "extension-not-object": (lambda h: {"extension": b"[1]"}, (CorruptStreamError,)),
    "flags-reserved": (lambda h: {"flags_or": 0x80}, (CorruptStreamError,)),
    "flags-compact": (lambda h: {"flags_or": 0x01}, (CorruptStreamError,)),
}


@pytest.mark.parametrize("name", sorted(FORGED_HEADERS))
def test_forged_header_fields(stream, decode_expecting_error, name):
    """A header whose CRC is valid but whose fields disagree with the frames (or with the
    format's limits) is refused with the right error; nothing is written."""
    make, allowed = FORGED_HEADERS[name]
    changes = make(stream.header)
    data = _with_header(stream.data, **changes)
    decode_expecting_error(data, allowed=allowed, what=f"header {changes}")


def test_header_rewrite_helper_is_faithful(stream):
    assert _with_header(stream.data) == stream.data


# --------------------------------------------------------------------------- existing outputs


def test_failed_decode_keeps_existing_output(stream, tmp_path):
    """With overwrite=True, a decode that fails must not touch the existing file."""
    out = tmp_path / "existing.wav"
    out.write_bytes(b"precious")
    bad = tmp_path / "bad.hyb"
    bad.write_bytes(stream.data[:-10])
    with pytest.raises(TruncatedStreamError):
        hybridcodec.decode(bad, out, overwrite=True)
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.hyb", "existing.wav"]
