"""The array and streaming API (hybridcodec.api): round trips, the same streams as the
file API, frame-by-frame decoding with the MD5 checked at the end, and a one-line
HybridCodecError for every bad input."""

from __future__ import annotations

import dataclasses
import doctest
import io
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from nonseekable import NoSeek

import hybridcodec
from hybridcodec import api
from hybridcodec.container import StreamReader, StreamWriter
from hybridcodec.errors import (CorruptStreamError, HybridCodecError, InputFileError,
                                ModelMismatchError, TruncatedStreamError,
                                UnsupportedAudioError, UsageError)
from hybridcodec.model import HybridModel, ModelConfig

FRAME = 1024  # the small model's frame: multi-frame streams stay fast
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "small.hcm"
    HybridModel(ModelConfig(frame_length=FRAME)).save(path)
    return str(path)


def audio(n: int, channels: int = 2, bits: int = 16, seed: int = 0) -> np.ndarray:
    """Tones plus noise filling most of a ``bits``-bit range, as int32 (n, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    peak = (1 << (bits - 1)) - 1
    x = 0.4 * peak * np.sin(2 * np.pi * (220 + 110 * np.arange(channels)) * t / 44100)
    x = x + rng.normal(0, peak / 20, (n, channels))
    return np.clip(np.round(x), -peak - 1, peak).astype(np.int32)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text
    return text


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype,bits,channels", [
    (np.int16, None, 2), (np.int16, None, 1), (np.int8, None, 1), (np.int32, 24, 2),
    (np.int64, 16, 3), (np.int16, 24, 1), (np.int32, 8, 8)])
def test_round_trip_is_bit_exact(small_model, dtype, bits, channels):
    depth = bits or 8 * np.dtype(dtype).itemsize
    pcm = audio(3 * FRAME + 17, channels, depth).astype(dtype)
    data = hybridcodec.encode_array(pcm, 44100, bits_per_sample=bits, model=small_model)
    out, rate = hybridcodec.decode_bytes(data, model=small_model)
    assert rate == 44100
    assert out.dtype == np.int32 and out.shape == (len(pcm), channels)
    assert np.array_equal(out, pcm.astype(np.int32).reshape(len(pcm), channels))
    with hybridcodec.open_stream(data, model=small_model) as s:
        assert (s.bits_per_sample, s.channels, s.num_samples) == (depth, channels, len(pcm))


def test_mono_1d_and_extremes(small_model):
    pcm = np.array([-32768, 32767, 0, -1, 1] * 300, dtype=np.int16)
    out, _ = hybridcodec.decode_bytes(hybridcodec.encode_array(pcm, 8000, model=small_model),
                                      model=small_model)
    assert out.shape == (len(pcm), 1) and np.array_equal(out[:, 0], pcm)


def test_empty_array(small_model):
    data = hybridcodec.encode_array(np.zeros((0, 2), np.int16), 48000, model=small_model)
    out, rate = hybridcodec.decode_bytes(data, model=small_model)
    assert out.shape == (0, 2) and out.dtype == np.int32 and rate == 48000


def test_default_model_round_trip():
    pcm = audio(5000, 2)
    data = hybridcodec.encode_array(pcm.astype(np.int16), 44100)
    out, _ = hybridcodec.decode_bytes(data)
    assert np.array_equal(out, pcm)


def test_same_frames_as_the_file_api(small_model, tmp_path):
    """encode_array codes what encode_file codes: only the fields naming the source differ."""
    pcm = audio(4 * FRAME + 100, 2).astype(np.int16)
    wav, hyb = tmp_path / "a.wav", tmp_path / "a.hyb"
    sf.write(wav, pcm, 44100, subtype="PCM_16")
    hybridcodec.encode(wav, hyb, model=small_model)
    data = hybridcodec.encode_array(pcm, 44100, model=small_model)
    with open(hyb, "rb") as fp:
        from_file = StreamReader(fp)
        file_frames = list(from_file.frames())
    from_array = StreamReader(io.BytesIO(data))
    array_frames = list(from_array.frames())
    assert array_frames == file_frames
    assert from_array.footer == from_file.footer  # same MD5 of the PCM
    assert dataclasses.replace(from_array.header, source_format="WAV") == from_file.header
    assert from_array.header.source_format == "RAW"


def test_tiers_are_the_truncated_lossless_stream(small_model, tmp_path):
    pcm = audio(3 * FRAME, 2).astype(np.int16)
    full = hybridcodec.encode_array(pcm, 44100, model=small_model)
    (tmp_path / "full.hyb").write_bytes(full)
    from hybridcodec.truncation import truncate_file

    truncate_file(tmp_path / "full.hyb", tmp_path / "low.hyb", tier="low")
    low = hybridcodec.encode_array(pcm, 44100, model=small_model, tier="low")
    assert low == (tmp_path / "low.hyb").read_bytes() and len(low) < len(full)
    assert hybridcodec.encode_array(pcm, 44100, model=small_model, tier="lossless") == full
    with hybridcodec.open_stream(low, model=small_model) as s:
        assert s.tier == "low" and not s.lossless
        blocks = list(s.blocks())
        assert s.md5_ok is None  # a lower tier cannot reproduce the original's MD5
    assert sum(map(len, blocks)) == len(pcm)
    capped = hybridcodec.encode_array(pcm, 44100, model=small_model, kbps=200)
    assert len(capped) < len(full)
    a, _ = hybridcodec.decode_bytes(low, model=small_model, seed=1)
    b, _ = hybridcodec.decode_bytes(low, model=small_model, seed=1)
    c, _ = hybridcodec.decode_bytes(low, model=small_model, fill="zero")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# --------------------------------------------------------------------------- streaming


def test_blocks_are_frames(small_model, tmp_path):
    pcm = audio(5 * FRAME + 300, 2).astype(np.int16)
    data = hybridcodec.encode_array(pcm, 44100, model=small_model)
    path = tmp_path / "a.hyb"
    path.write_bytes(data)
    for src in (data, path, str(path), io.BytesIO(data), NoSeek(data)):
        with hybridcodec.open_stream(src, model=small_model) as s:
            assert (s.sample_rate, s.channels, s.num_frames, s.frame_length) == (
                44100, 2, 6, FRAME)
            assert s.lossless and s.tier == "lossless" and s.md5_ok is None
            blocks = list(s.blocks())
            assert s.md5_ok is True
        assert [len(b) for b in blocks] == [FRAME] * 5 + [300]
        assert all(b.dtype == np.int32 and b.shape[1] == 2 for b in blocks)
        assert np.array_equal(np.concatenate(blocks), pcm)


def test_blocks_come_before_the_rest_is_decoded(small_model):
    """Frame by frame: the first blocks arrive before a damaged third frame is read."""
    pcm = audio(4 * FRAME, 1).astype(np.int16)
    data = bytearray(hybridcodec.encode_array(pcm, 44100, model=small_model))
    reader = StreamReader(io.BytesIO(bytes(data)))
    frames = reader.frames()
    next(frames), next(frames)
    frame_2 = reader.bytes_read  # the header and the first two frames: where frame 2 starts
    data[frame_2 + 40] ^= 0xFF
    with hybridcodec.open_stream(bytes(data), model=small_model) as s:
        blocks = s.blocks()
        assert np.array_equal(next(blocks), pcm[:FRAME])
        assert np.array_equal(next(blocks), pcm[FRAME:2 * FRAME])
        with pytest.raises(CorruptStreamError, match="frame 2") as err:
            next(blocks)
    one_line(err.value)


def _with_footer_md5(data: bytes, md5: bytes) -> bytes:
    reader = StreamReader(io.BytesIO(data))
    frames = list(reader.frames())
    out = io.BytesIO()
    writer = StreamWriter(out, reader.header)
    for f in frames:
        writer.write_frame(f)
    writer.finish(md5)
    return out.getvalue()


def test_md5_is_checked_after_the_last_block(small_model):
    pcm = audio(3 * FRAME, 2).astype(np.int16)
    data = _with_footer_md5(hybridcodec.encode_array(pcm, 44100, model=small_model),
                            bytes(16))
    with hybridcodec.open_stream(data, model=small_model) as s:
        got = []
        with pytest.raises(CorruptStreamError, match="MD5 mismatch"):
            for block in s.blocks():
                got.append(block)
        assert len(got) == 3 and s.md5_ok is None
    with pytest.raises(CorruptStreamError, match="MD5 mismatch"):
        hybridcodec.decode_bytes(data, model=small_model)


def test_stream_state_errors(small_model, tmp_path):
    data = hybridcodec.encode_array(audio(2 * FRAME, 1).astype(np.int16), 8000,
                                    model=small_model)
    s = hybridcodec.open_stream(data, model=small_model)
    it = s.blocks()
    next(it)
    with pytest.raises(UsageError, match="once"):
        s.blocks()
    s.close()  # leaving the loop early is fine: the iteration just ends
    with pytest.raises(StopIteration):
        next(it)
    with pytest.raises(UsageError, match="closed"):
        s.blocks()
    path = tmp_path / "a.hyb"
    path.write_bytes(data)
    fp = open(path, "rb")
    with hybridcodec.open_stream(fp, model=small_model) as s:
        list(s.blocks())
    assert not fp.closed  # the caller's file object stays open
    fp.close()
    assert "8000 Hz" in repr(s)


def test_parallel_stream(small_model):
    pcm = audio(6 * FRAME + 5, 2).astype(np.int16)
    data = hybridcodec.encode_array(pcm, 44100, model=small_model, jobs=2)
    assert data == hybridcodec.encode_array(pcm, 44100, model=small_model)
    with hybridcodec.open_stream(data, model=small_model, jobs=2) as s:
        assert np.array_equal(np.concatenate(list(s.blocks())), pcm)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("pcm,kwargs,error,pattern", [
    (np.zeros(100, np.float32), {}, UnsupportedAudioError, "float32 samples"),
    (np.zeros(100, np.float64), {"bits_per_sample": 16}, UnsupportedAudioError, "float64"),
    (np.zeros(100, np.uint8), {}, UnsupportedAudioError, "signed integers"),
    (np.zeros(100, bool), {}, UnsupportedAudioError, "integer samples"),
    (np.array(["a", "b"]), {}, UnsupportedAudioError, "integer samples"),
    (np.zeros((10, 2, 2), np.int16), {}, UnsupportedAudioError, "shape"),
    (np.zeros((100, 9), np.int16), {}, UnsupportedAudioError, "9-channel"),
    (np.zeros((2, 100), np.int16), {}, UnsupportedAudioError, r"pcm\.T"),
    (np.zeros((5, 0), np.int16), {}, UnsupportedAudioError, "0-channel"),
    ([[1, 2], [3]], {}, UnsupportedAudioError, "not an array"),
    (b"\x00\x01", {}, UsageError, "np.frombuffer"),
    (np.zeros(100, np.int32), {}, UsageError, "need bits_per_sample"),
    (np.zeros(100, np.int64), {"bits_per_sample": 12}, UsageError, "8, 16 or 24"),
    (np.zeros(100, np.int16), {"bits_per_sample": True}, UsageError, "8, 16 or 24"),
    (np.array([0, 200], np.int16), {"bits_per_sample": 8}, UnsupportedAudioError,
     "out of range for 8-bit"),
    (np.array([0, -(1 << 31)], np.int32), {"bits_per_sample": 24}, UnsupportedAudioError,
     "left-justified"),
    (np.zeros(10, np.int16), {"sample_rate": 0}, UsageError, "sample_rate"),
    (np.zeros(10, np.int16), {"sample_rate": 2_000_000}, UsageError, "sample_rate"),
    (np.zeros(10, np.int16), {"sample_rate": 44100.0}, UsageError, "integer"),
    (np.zeros(10, np.int16), {"sample_rate": True}, UsageError, "integer"),
    (np.zeros(10, np.int16), {"tier": "huge"}, UsageError, "unknown tier"),
    (np.zeros(10, np.int16), {"tier": "low", "kbps": 100}, UsageError, "not both"),
    (np.zeros(10, np.int16), {"kbps": -3}, UsageError, "kbps"),
    (np.zeros(10, np.int16), {"kbps": "100"}, UsageError, "kbps"),
    (np.zeros(10, np.int16), {"jobs": -1}, UsageError, "jobs"),
    (np.zeros(10, np.int16), {"jobs": "2"}, UsageError, "jobs"),
])
def test_encode_array_rejects(pcm, kwargs, error, pattern):
    kwargs = {"sample_rate": 44100, **kwargs}
    with pytest.raises(error) as err:
        hybridcodec.encode_array(pcm, **kwargs)
    assert re.search(pattern, one_line(err.value)), str(err.value)


def test_bad_model_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.hcm"
    bad.write_bytes(b"not a model")
    with pytest.raises(hybridcodec.HybridCodecError) as err:
        hybridcodec.encode_array(np.zeros(10, np.int16), 8000, model=bad)
    assert err.value.exit_code == 5 and str(bad) in one_line(err.value)


def test_decode_rejects(small_model, tmp_path):
    data = hybridcodec.encode_array(audio(2 * FRAME, 1).astype(np.int16), 8000,
                                    model=small_model)
    cases = [
        (lambda: hybridcodec.decode_bytes("x.hyb"), UsageError, "open_stream"),
        (lambda: hybridcodec.decode_bytes(b""), CorruptStreamError, "not a hybridcodec stream"),
        (lambda: hybridcodec.decode_bytes(data[:10]), TruncatedStreamError, ""),
        (lambda: hybridcodec.decode_bytes(b"RIFF" + bytes(100)), CorruptStreamError, ""),
        (lambda: hybridcodec.decode_bytes(data[:-30], model=small_model), CorruptStreamError,
         ""),
        (lambda: hybridcodec.decode_bytes(data), ModelMismatchError, "coded with"),
        (lambda: hybridcodec.decode_bytes(data, model=small_model, fill="noise"), UsageError,
         "fill"),
        (lambda: hybridcodec.decode_bytes(data, model=small_model, seed=-1), UsageError,
         "seed"),
        (lambda: hybridcodec.decode_bytes(data, model=small_model, seed=1.5), UsageError,
         "seed"),
        (lambda: hybridcodec.open_stream(tmp_path / "missing.hyb"), InputFileError,
         "missing.hyb"),
        (lambda: hybridcodec.open_stream(tmp_path), InputFileError, "directory"),
        (lambda: hybridcodec.open_stream(io.StringIO("HYBC")), UsageError, "binary"),
        (lambda: hybridcodec.open_stream(42), UsageError, "int"),
        (lambda: hybridcodec.open_stream(data, model=small_model, jobs=0.5), UsageError,
         "jobs"),
    ]
    for call, error, pattern in cases:
        with pytest.raises(error) as err:
            call()
        assert re.search(pattern, one_line(err.value)), str(err.value)


def test_every_flipped_byte_is_a_clean_error(small_model):
    """Damage anywhere in a stream: a HybridCodecError (never a raw exception) or, where
    the byte is in no checked field, the exact audio."""
    pcm = audio(2 * FRAME, 1).astype(np.int16)
    data = hybridcodec.encode_array(pcm, 8000, model=small_model)
    for where in range(0, len(data), max(1, len(data) // 150)):
        bad = bytearray(data)
        bad[where] ^= 0x5A
        try:
            out, _ = hybridcodec.decode_bytes(bytes(bad), model=small_model)
        except HybridCodecError as exc:
            one_line(exc)
        else:
            assert np.array_equal(out[:, 0], pcm), where


# --------------------------------------------------------------------------- documentation


def test_docstring_examples_run():
    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


def readme_python_api_code() -> str:
    """The code block of README.md's "Python API" section, as written."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Python API\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Python API' section"
    block = re.search(r"^```python\n(.*?)^```", section.group(1), re.S | re.M)
    assert block, "the Python API section has no ```python block"
    return block.group(1)


def test_readme_python_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example writes its files where it runs
    code = readme_python_api_code()
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, "README.md (Python API)", "exec"), namespace)
    assert namespace["out"].dtype == np.int32  # the example ran to its end


def test_file_decode_checks_its_seed(small_model, tmp_path):
    """The file API refuses a bad seed as the array API does (numpy would raise its own)."""
    hyb = tmp_path / "a.hyb"
    hyb.write_bytes(hybridcodec.encode_array(audio(FRAME, 1).astype(np.int16), 8000,
                                             model=small_model, tier="low"))
    for seed in (-1, 2**64, "3", 1.0):
        with pytest.raises(UsageError, match="seed"):
            hybridcodec.decode(hyb, tmp_path / "a.wav", model=small_model, seed=seed)
    hybridcodec.decode(hyb, tmp_path / "a.wav", model=small_model, seed=2**64 - 1)
