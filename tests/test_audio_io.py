"""PCM I/O (hybridcodec.audio_io) and all-or-nothing outputs (hybridcodec.atomic)."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import soundfile as sf

from hybridcodec.atomic import atomic_output
from hybridcodec.audio_io import AudioInfo, open_audio, open_audio_writer
from hybridcodec.errors import UnsupportedAudioError, UsageError

BITS = {"PCM_U8": 8, "PCM_S8": 8, "PCM_16": 16, "PCM_24": 24}


def read_all(path, block: int = 333) -> tuple[np.ndarray, AudioInfo]:
    with open_audio(path) as reader:
        blocks = []
        while True:
            b = reader.read(block)
            assert b.dtype == np.int32 and b.ndim == 2 and b.shape[1] == reader.info.channels
            assert len(b) <= block
            if len(b) == 0:
                break
            blocks.append(b)
        assert len(reader.read(block)) == 0  # stays at the end
        info = reader.info
    data = np.concatenate(blocks) if blocks else np.zeros((0, info.channels), np.int32)
    return data, info


def random_pcm(n: int, channels: int, bits: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    x = rng.integers(lo, hi, size=(n, channels), dtype=np.int64).astype(np.int32)
    if n >= 2:
        x[0, :] = lo  # both extremes
        x[1, :] = hi - 1
    return x


def files_in(directory) -> list[str]:
    return sorted(os.listdir(directory))


def wav_bytes(samples: bytes, *, channels: int, bits: int, rate: int = 8000) -> bytes:
    """A minimal canonical PCM WAV, built by hand (independent of libsndfile's writer)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    pad = b"\0" if len(samples) % 2 else b""
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(samples))
        + samples
        + pad
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("channels", [1, 2, 8])
@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_S8", "PCM_16", "PCM_24"])
@pytest.mark.parametrize("ext", [".wav", ".flac", ".aiff", ".AIF"])
def test_write_read_identical(tmp_path, ext, subtype, channels):
    bits = BITS[subtype]
    info = AudioInfo(44100, channels, 0, bits, subtype, "WAV")
    x = random_pcm(1001, channels, bits, seed=channels * 7 + bits)  # odd length on purpose
    path = tmp_path / f"out{ext}"
    with open_audio_writer(path, info) as w:
        w.write(x[:500])
        w.write(x[500:500])  # empty block is fine
        w.write(x[500:])
    y, got = read_all(path)
    np.testing.assert_array_equal(y, x)
    assert got.num_samples == len(x)
    assert (got.sample_rate, got.channels, got.bits_per_sample) == (44100, channels, bits)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".aiff": "AIFF", ".aif": "AIFF"}[ext.lower()]
    assert got.source_format == fmt
    # the original subtype where the format has it, else the same depth
    if bits == 8:
        expected = "PCM_U8" if fmt == "WAV" else ("PCM_S8" if fmt == "FLAC" else subtype)
    else:
        expected = subtype
    assert got.subtype == expected
    assert files_in(tmp_path) == [f"out{ext}"]  # no temporary left over


@pytest.mark.parametrize("n", [0, 1, 2, 3])
@pytest.mark.parametrize("subtype", ["PCM_S8", "PCM_16", "PCM_24"])
@pytest.mark.parametrize("ext", [".wav", ".flac", ".aiff"])
def test_tiny_lengths(tmp_path, ext, subtype, n):
    bits = BITS[subtype]
    if ext == ".wav" and bits == 8:
        subtype = "PCM_U8"
    info = AudioInfo(8000, 1, n, bits, subtype, "FLAC")
    x = random_pcm(n, 1, bits)
    path = tmp_path / f"t{ext}"
    with open_audio_writer(path, info) as w:
        w.write(x)
    y, got = read_all(path)
    assert got.num_samples == n
    np.testing.assert_array_equal(y, x)


def test_mono_1d_write_and_unsigned_input(tmp_path):
    info = AudioInfo(8000, 1, 0, 16, "PCM_16", "WAV")
    x = np.array([-32768, 0, 32767], dtype=np.int16)  # any integer dtype, 1-D for mono
    with open_audio_writer(tmp_path / "m.wav", info) as w:
        w.write(x)
    y, _ = read_all(tmp_path / "m.wav")
    np.testing.assert_array_equal(y[:, 0], x)


# ----------------------------------------------------------------------------- justification


def test_8bit_wav_is_unsigned_on_disk_signed_in_memory(tmp_path):
    raw = bytes([0, 1, 127, 128, 129, 255])
    path = tmp_path / "u8.wav"
    path.write_bytes(wav_bytes(raw, channels=1, bits=8))
    y, info = read_all(path)
    assert info.subtype == "PCM_U8" and info.bits_per_sample == 8
    np.testing.assert_array_equal(y[:, 0], [-128, -127, -1, 0, 1, 127])
    # and written back as unsigned bytes again, identical file data
    out = tmp_path / "back.wav"
    with open_audio_writer(out, info) as w:
        w.write(y)
    assert raw in out.read_bytes()


def test_values_are_right_justified(tmp_path):
    # 24-bit little-endian stereo: (1, -1), (8388607, -8388608), (-2, 256)
    vals = [1, -1, 8388607, -8388608, -2, 256]
    raw = b"".join(v.to_bytes(3, "little", signed=True) for v in vals)
    path = tmp_path / "s24.wav"
    path.write_bytes(wav_bytes(raw, channels=2, bits=24))
    y, info = read_all(path)
    assert info.bits_per_sample == 24 and info.channels == 2
    np.testing.assert_array_equal(y, np.array(vals).reshape(3, 2))
    # 16-bit
    vals16 = [-32768, -1, 0, 1, 32767]
    path16 = tmp_path / "s16.wav"
    path16.write_bytes(wav_bytes(struct.pack("<5h", *vals16), channels=1, bits=16))
    y16, _ = read_all(path16)
    np.testing.assert_array_equal(y16[:, 0], vals16)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "subtype, words",
    [
        ("FLOAT", "32-bit float audio is not supported (integer PCM 8-24 bit only)"),
        ("DOUBLE", "64-bit float audio is not supported"),
        ("PCM_32", "32-bit integer audio is not supported"),
        ("ULAW", "U-Law audio is not supported"),
        ("IMA_ADPCM", "not supported"),
    ],
)
def test_unsupported_subtypes(tmp_path, subtype, words):
    path = tmp_path / "song.wav"
    sf.write(path, np.zeros((100, 1), np.int16), 8000, subtype=subtype)
    with pytest.raises(UnsupportedAudioError) as exc:
        open_audio(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and words in msg
    assert "\n" not in msg


def test_more_than_8_channels(tmp_path):
    path = tmp_path / "nine.wav"
    sf.write(path, np.zeros((10, 9), np.int16), 8000, subtype="PCM_16")
    with pytest.raises(UnsupportedAudioError, match="9-channel audio is not supported"):
        open_audio(path)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "g.wav").write_bytes(os.urandom(3000)) and d / "g.wav", "cannot read audio"),
        (lambda d: (d / "e.wav").write_bytes(b"") or d / "e.wav", "cannot read audio"),
        (lambda d: (d / "t.txt").write_text("RIFF? no.\n") and d / "t.txt", "cannot read audio"),
    ],
    ids=["missing", "directory", "garbage", "empty", "text"],
)
def test_unreadable_inputs(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(UnsupportedAudioError) as exc:
        open_audio(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: cannot read audio: ")
    assert reason in msg and "\n" not in msg


def test_truncated_flac_reads_its_complete_frames(tmp_path):
    """STREAMINFO promises 20000 samples, the cut file holds fewer: the complete frames
    are read and the reader says how many there are (libsndfile alone fails)."""
    x = random_pcm(20000, 2, 16)
    full = tmp_path / "full.flac"
    sf.write(full, x << 16, 8000, subtype="PCM_16")
    cut = tmp_path / "cut.flac"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with open_audio(cut) as reader:
        n = reader.info.num_samples
        assert 0 < n < 20000 and n % 4096 == 0  # libsndfile's FLAC frames: 4096 samples
        assert reader.problems == [f"FLAC STREAMINFO declares 20000 samples, its frames hold {n}"]
        assert reader.source_md5 is None  # an MD5 of 20000 samples cannot match fewer
    assert np.array_equal(read_all(cut, block=4096)[0], x[:n])


def test_flac_with_a_tag_after_its_frames_is_read_whole(tmp_path):
    """Junk after the last frame (an APEv2 tag) hides where the frames end; that must not
    cost the last frame, nor give a warning."""
    x = random_pcm(20000, 2, 16)
    path = tmp_path / "ape.flac"
    sf.write(path, x << 16, 8000, subtype="PCM_16")
    path.write_bytes(path.read_bytes() + b"APETAGEX" + bytes(200))
    with open_audio(path) as reader:
        assert reader.info.num_samples == 20000 and reader.problems == []
    assert np.array_equal(read_all(path, block=4096)[0], x)


def test_flac_damaged_inside_raises_our_error(tmp_path):
    x = random_pcm(20000, 2, 16)
    full = tmp_path / "full.flac"
    sf.write(full, x << 16, 8000, subtype="PCM_16")
    data = bytearray(full.read_bytes())
    data[len(data) // 2:len(data) // 2 + 200] = bytes(200)
    bad = tmp_path / "bad.flac"
    bad.write_bytes(data)
    with pytest.raises(UnsupportedAudioError, match="bad.flac: cannot read audio"):
        read_all(bad, block=4096)


# ----------------------------------------------------------------------------- writer


def test_writer_rejects_unknown_extension(tmp_path):
    info = AudioInfo(8000, 1, 0, 16, "PCM_16", "WAV")
    with pytest.raises(UsageError) as exc:
        open_audio_writer(tmp_path / "x.mp3", info)
    for ext in (".wav", ".flac", ".aif", ".aiff"):
        assert ext in str(exc.value)
    assert files_in(tmp_path) == []


def test_writer_extension_case_insensitive(tmp_path):
    info = AudioInfo(8000, 2, 0, 16, "PCM_16", "WAV")
    x = random_pcm(50, 2, 16)
    with open_audio_writer(tmp_path / "X.FLAC", info) as w:
        w.write(x)
    y, got = read_all(tmp_path / "X.FLAC")
    assert got.source_format == "FLAC"
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_writer_leaves_nothing_on_exception(tmp_path, exc_type):
    info = AudioInfo(8000, 1, 0, 16, "PCM_16", "WAV")
    with pytest.raises(exc_type):
        with open_audio_writer(tmp_path / "o.flac", info) as w:
            w.write(random_pcm(5000, 1, 16))
            raise exc_type()
    assert files_in(tmp_path) == []


def test_writer_refuses_to_overwrite(tmp_path):
    info = AudioInfo(8000, 1, 0, 16, "PCM_16", "WAV")
    out = tmp_path / "o.wav"
    out.write_bytes(b"precious")
    with pytest.raises(UsageError, match=r"o\.wav exists \(use -f to overwrite\)"):
        open_audio_writer(out, info)  # raised by the call itself, before any work
    assert out.read_bytes() == b"precious"
    # with overwrite, replaced only once the block completes
    with open_audio_writer(out, info, overwrite=True) as w:
        w.write(random_pcm(10, 1, 16))
        assert out.read_bytes() == b"precious"
    assert read_all(out)[1].num_samples == 10
    assert files_in(tmp_path) == ["o.wav"]


def test_writer_checks_samples(tmp_path):
    info = AudioInfo(8000, 2, 0, 8, "PCM_U8", "WAV")
    with pytest.raises(ValueError):
        with open_audio_writer(tmp_path / "o.wav", info) as w:
            w.write(np.array([[128, 0]]))  # out of 8-bit range
    with pytest.raises(ValueError):
        with open_audio_writer(tmp_path / "o.wav", info) as w:
            w.write(np.zeros((3, 1), np.int32))  # wrong channel count
    assert files_in(tmp_path) == []


# ----------------------------------------------------------------------------- atomic_output


def test_atomic_output_success_and_refusal(tmp_path):
    out = tmp_path / "out.hyb"
    with atomic_output(out, overwrite=False) as fp:
        fp.write(b"abc")
        assert not out.exists()
    assert out.read_bytes() == b"abc"
    with pytest.raises(UsageError) as exc:
        atomic_output(out, overwrite=False)  # before any work, no `with` needed
    assert str(exc.value) == f"{out} exists (use -f to overwrite)"
    with atomic_output(out, overwrite=True) as fp:
        fp.write(b"new")
    assert out.read_bytes() == b"new"
    assert files_in(tmp_path) == ["out.hyb"]


@pytest.mark.parametrize("exc_type", [ValueError, KeyboardInterrupt])
def test_atomic_output_cleans_up(tmp_path, exc_type):
    out = tmp_path / "out.hyb"
    with pytest.raises(exc_type):
        with atomic_output(out, overwrite=False) as fp:
            fp.write(b"partial")
            raise exc_type("stop")
    assert files_in(tmp_path) == []
    out.write_bytes(b"old")
    with pytest.raises(exc_type):
        with atomic_output(out, overwrite=True) as fp:
            fp.write(b"partial")
            raise exc_type("stop")
    assert out.read_bytes() == b"old"
    assert files_in(tmp_path) == ["out.hyb"]


def test_atomic_output_bad_targets(tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        atomic_output(tmp_path, overwrite=True)
    with pytest.raises(UsageError, match="does not exist"):
        atomic_output(tmp_path / "nodir" / "x.hyb", overwrite=True)


def test_atomic_output_normal_permissions(tmp_path):
    out = tmp_path / "p.hyb"
    with atomic_output(out, overwrite=False) as fp:
        fp.write(b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


# ----------------------------------------------------------------------------- real audio


@pytest.mark.parametrize(
    "rel, rate, channels, bits",
    [
        ("speech8k/0_george_0.flac", 8000, 1, 16),
        ("instruments/flute-A4.flac", 44100, 1, 16),
        ("music/cellar-01.flac", 44100, 2, 16),
        ("music/cellar-19.flac", 35467, 2, 16),
        ("music/cellar-62.flac", 44100, 1, 24),
        ("music/cellar-43.flac", 44100, 8, 16),
    ],
)
def test_corpus_files(corpus_dir, rel, rate, channels, bits):
    path = corpus_dir / rel
    if not path.exists():
        pytest.skip(f"{rel} not in this corpus")
    ref, ref_rate = sf.read(path, dtype="int32", always_2d=True, frames=50_000)
    with open_audio(path) as reader:
        info = reader.info
        assert (info.sample_rate, info.channels, info.bits_per_sample) == (rate, channels, bits)
        assert info.source_format == "FLAC" and info.subtype == f"PCM_{bits}"
        assert info.num_samples == sf.info(path).frames
        got = np.concatenate([reader.read(20_000) for _ in range(3)])[:50_000]
    assert ref_rate == rate
    np.testing.assert_array_equal(got, ref >> (32 - bits))
    assert got.min() >= -(1 << (bits - 1)) and got.max() < 1 << (bits - 1)
