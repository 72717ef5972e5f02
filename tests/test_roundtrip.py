"""Bit-exact lossless round trips: the codec's first non-negotiable (DESIGN.md).

Three levels:

* every corpus file (music/, instruments/ and a fixed sample of speech8k/) through
  ``hybridcodec.encode`` / ``decode``, compared sample for sample and in format;
* edge-case signals (lengths, extremes, wasted bits, channels, rates) both in memory
  through ``encode_frame`` / ``decode_frame`` and as small files written with soundfile;
* size sanity: digital silence is nearly free; wasted low bits are not paid for.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hybridcodec
from hybridcodec.container import StreamReader
from hybridcodec.framecodec import decode_frame, encode_frame, layer_count
from hybridcodec.model import load_model

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpus"
MODEL, MODEL_ID = load_model(None)
FRAME = MODEL.config.frame_length
LEVELS = MODEL.config.levels
SPEECH_SAMPLE = 20


# --------------------------------------------------------------------------- helpers


def _corpus_ids() -> list[str]:
    """music/*, instruments/* and every k-th of the sorted speech8k/* (deterministic)."""
    ids = []
    for sub in ("music", "instruments"):
        ids += [f"{sub}/{p.stem}" for p in sorted((CORPUS / sub).glob("*.flac"))]
    speech = sorted((CORPUS / "speech8k").glob("*.flac"))
    if speech:
        step = max(1, len(speech) // SPEECH_SAMPLE)
        ids += [f"speech8k/{p.stem}" for p in speech[::step][:SPEECH_SAMPLE]]
    return ids


def _flac_streaminfo(path) -> tuple[int, int, int, int]:
    """(rate, channels, bits, total samples) from a native FLAC's STREAMINFO."""
    data = Path(path).read_bytes()[:42]
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, "not a FLAC with STREAMINFO first"
    packed = int.from_bytes(data[18:26], "big")
    return (packed >> 44, ((packed >> 41) & 7) + 1, ((packed >> 36) & 31) + 1,
            packed & ((1 << 36) - 1))


def _is_empty_flac(path) -> bool:
    return Path(path).suffix == ".flac" and _flac_streaminfo(path)[3] == 0


def _assert_same_audio(src, out) -> None:
    if _is_empty_flac(src):
        # libsndfile cannot read a FLAC without frames ("psf_fseek() failed").
        assert _is_empty_flac(out)
        assert _flac_streaminfo(out) == _flac_streaminfo(src)
        return
    ia, ib = sf.info(src), sf.info(out)
    assert (ib.samplerate, ib.channels, ib.frames) == (ia.samplerate, ia.channels, ia.frames)
    assert ib.subtype == ia.subtype, f"output subtype {ib.subtype}, input {ia.subtype}"
    assert ib.format == ia.format, f"output format {ib.format}, input {ia.format}"
    a, _ = sf.read(src, dtype="int32", always_2d=True)
    b, _ = sf.read(out, dtype="int32", always_2d=True)
    assert a.shape == b.shape
    if not np.array_equal(a, b):
        bad = np.argwhere(a != b)
        i, c = bad[0]
        raise AssertionError(f"{len(bad)} samples differ; first at sample {i} channel {c}: "
                             f"{a[i, c]} != {b[i, c]}")


def file_roundtrip(src: Path, work: Path, out_ext: str | None = None) -> tuple[int, Path]:
    """Encode ``src``, decode to the same kind of file, compare; returns (.hyb size, path)."""
    hyb = work / (src.stem + ".hyb")
    out = work / (src.stem + ".decoded" + (out_ext or src.suffix))
    if _is_empty_flac(src):
        rate, channels, _, frames = _flac_streaminfo(src)
    else:
        info = sf.info(src)
        rate, channels, frames = info.samplerate, info.channels, info.frames
    rep = hybridcodec.encode(src, hyb)
    assert (rep.num_samples, rep.channels, rep.sample_rate) == (frames, channels, rate)
    assert rep.output_bytes == hyb.stat().st_size
    with open(hyb, "rb") as fp:
        header = StreamReader(fp).header
    assert header.model_id == MODEL_ID
    assert (header.num_samples, header.channels, header.sample_rate) == (frames, channels, rate)
    rep = hybridcodec.decode(hyb, out)
    assert rep.num_samples == frames
    _assert_same_audio(src, out)
    return hyb.stat().st_size, hyb


def frame_roundtrip(pcm: np.ndarray, model=MODEL) -> int:
    """Code ``pcm`` (n, ch) frame by frame in memory; returns the payload bytes."""
    pcm = np.asarray(pcm, np.int64)
    n, nch = pcm.shape
    total = 0
    pieces = []
    for start in range(0, max(n, 1), model.config.frame_length):
        part = pcm[start:start + model.config.frame_length]
        layers = encode_frame(model, part)
        ids = [k for k, _ in layers]
        # Layer 0 always, then the non-empty layers in order (docs/format.md).
        assert ids[0] == 0 and ids[-1] < layer_count(model)
        assert ids == sorted(set(ids))
        assert all(isinstance(p, bytes) for _, p in layers)
        back = decode_frame(model, dict(layers), len(part), nch)
        assert back.dtype == np.int64 and back.shape == part.shape
        pieces.append(back)
        total += sum(len(p) for _, p in layers)
    got = np.concatenate(pieces) if pieces else np.zeros((0, nch), np.int64)
    if not np.array_equal(got, pcm):
        bad = np.argwhere(got != pcm)
        i, c = bad[0]
        raise AssertionError(f"{len(bad)} samples differ; first at {i},{c}: "
                             f"{got[i, c]} != {pcm[i, c]}")
    return total


def _empty_flac(rate: int, channels: int, bits: int) -> bytes:
    """fLaC + a last-block STREAMINFO saying 0 samples (MD5 of nothing), no frames."""
    packed = (rate << 44) | ((channels - 1) << 41) | ((bits - 1) << 36)
    info = (struct.pack(">HH", 4096, 4096) + bytes(6) + packed.to_bytes(8, "big")
            + hashlib.md5(b"").digest())
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info


def write_pcm(path: Path, pcm: np.ndarray, rate: int, bits: int, subtype: str,
              fmt: str | None = None) -> Path:
    """Write right-justified ``pcm`` exactly (checked by reading it back)."""
    pcm = np.asarray(pcm, np.int64)
    if len(pcm) == 0 and path.suffix == ".flac":
        # libsndfile writes a 0-byte file for an empty FLAC; write what `flac` writes.
        path.write_bytes(_empty_flac(rate, pcm.shape[1], bits))
        return path
    sf.write(path, (pcm << (32 - bits)).astype(np.int32), rate, subtype=subtype, format=fmt)
    back, _ = sf.read(path, dtype="int32", always_2d=True)
    assert np.array_equal(back.astype(np.int64) >> (32 - bits), pcm), "test setup: bad write"
    return path


def music(n: int, channels: int = 2, bits: int = 16, seed: int = 0, level: float = 0.3):
    """Smooth multi-tone signal with noise, each channel different, within ``bits``."""
    rng = np.random.default_rng(seed)
    full = 1 << (bits - 1)
    t = np.arange(n)[:, None] / 44100.0
    f = 110.0 * (1.5 ** np.arange(channels))[None, :]
    x = np.sin(2 * np.pi * f * t) + 0.4 * np.sin(2 * np.pi * 3.3 * f * t + 1.0)
    x = level * full * x / 1.4 + rng.normal(0, full * 0.002, size=(n, channels))
    return np.clip(np.round(x), -full, full - 1).astype(np.int64)


def alternating(n: int, channels: int, lo: int, hi: int) -> np.ndarray:
    x = np.where(np.arange(n) % 2 == 0, lo, hi).astype(np.int64)
    out = np.stack([x if c % 2 == 0 else x[::-1].copy() for c in range(channels)], axis=1)
    return out


def square(n: int, channels: int, amp_lo: int, amp_hi: int, period: int) -> np.ndarray:
    x = np.where((np.arange(n) // (period // 2)) % 2 == 0, amp_hi, amp_lo).astype(np.int64)
    return np.stack([np.roll(x, 7 * c) for c in range(channels)], axis=1)


def white(n: int, channels: int, bits: int, seed: int) -> np.ndarray:
    full = 1 << (bits - 1)
    return np.random.default_rng(seed).integers(-full, full, size=(n, channels), dtype=np.int64)


def impulse(n: int, channels: int, where: int, value: int) -> np.ndarray:
    x = np.zeros((n, channels), np.int64)
    x[where, 0] = value
    return x


def wasted16(n: int) -> np.ndarray:
    return music(n, 2, 16, seed=5, level=0.5) & ~np.int64(15)


def wasted24_holding20(n: int) -> np.ndarray:
    return music(n, 2, 20, seed=6, level=0.5) << 4


def wasted_one_channel(n: int) -> np.ndarray:
    x = music(n, 2, 16, seed=7, level=0.5)
    x[:, 0] &= ~np.int64(255)  # 8 wasted bits on the left channel, none on the right
    return x


# --------------------------------------------------------------------------- edge cases


@dataclass(frozen=True)
class Case:
    id: str
    pcm: np.ndarray
    bits: int = 16
    rate: int = 44100
    subtype: str = "PCM_16"
    ext: str = ".wav"


LENGTHS = [0, 1, 2, 3, 4, 5, 7, 8, 9, FRAME - 1, FRAME, FRAME + 1, 2 * FRAME + 3]

CASES = (
    [Case(f"len{n}", music(n, 2, seed=n)) for n in LENGTHS]
    + [Case(f"len{n}-flac", music(n, 1, seed=n), ext=".flac") for n in (0, 1, 2, 3, 9)]
    + [
        Case("extremes16", alternating(4000, 2, -32768, 32767)),
        Case("extremes24", alternating(4000, 2, -(1 << 23), (1 << 23) - 1), 24,
             subtype="PCM_24"),
        Case("extremes8-u8wav", alternating(4000, 2, -128, 127), 8, subtype="PCM_U8"),
        Case("extremes8-s8flac", alternating(4000, 2, -128, 127), 8, subtype="PCM_S8",
             ext=".flac"),
        Case("extremes16-mono-short", alternating(5, 1, -32768, 32767)),
        Case("min-only16", np.full((3000, 2), -32768, np.int64)),
        Case("min-only24", np.full((3000, 1), -(1 << 23), np.int64), 24, subtype="PCM_24"),
        Case("silence", np.zeros((6000, 2), np.int64)),
        Case("dc12345", np.full((6000, 2), 12345, np.int64)),
        Case("dc-neg-odd", np.full((6001, 1), -12345, np.int64)),
        Case("noise16", white(6000, 2, 16, 1)),
        Case("noise24", white(6000, 2, 24, 2), 24, subtype="PCM_24"),
        Case("noise8-u8wav", white(3000, 1, 8, 3), 8, subtype="PCM_U8"),
        Case("square16", square(6000, 2, -20000, 20000, 100)),
        Case("square16-fullscale", square(6000, 1, -32768, 32767, 64)),
        Case("square24-fullscale", square(6000, 2, -(1 << 23), (1 << 23) - 1, 50), 24,
             subtype="PCM_24"),
        Case("impulse-max", impulse(4001, 1, 1000, 32767)),
        Case("impulse-min-stereo", impulse(4000, 2, 2047, -32768)),
        Case("impulse-first", impulse(100, 2, 0, 32767)),
        Case("impulse-last", impulse(100, 1, 99, -32768)),
        Case("music8-u8wav", music(5000, 2, 8, seed=8), 8, subtype="PCM_U8"),
        Case("music8-s8flac", music(5000, 2, 8, seed=9), 8, subtype="PCM_S8", ext=".flac"),
        Case("music8-s8flac-mono", music(5001, 1, 8, seed=9), 8, subtype="PCM_S8",
             ext=".flac"),
        Case("wasted16-low4", wasted16(6000)),
        Case("wasted24-holding20", wasted24_holding20(6000), 24, subtype="PCM_24"),
        Case("wasted24-holding20-flac", wasted24_holding20(6000), 24, subtype="PCM_24",
             ext=".flac"),
        Case("wasted-one-channel", wasted_one_channel(6000)),
        Case("wasted-top-bit-only", np.where(np.arange(4000)[:, None] % 3 == 0, -32768, 0)
             .repeat(2, axis=1).astype(np.int64)),
        Case("aiff16", music(5000, 2, seed=10), ext=".aiff"),
        Case("aiff24-mono", music(5001, 1, 24, seed=11), 24, subtype="PCM_24", ext=".aiff"),
        # Stereo: libsndfile misreads its own 8-bit mono AIFF of odd length (pad byte).
        Case("aiff8", music(5001, 2, 8, seed=12), 8, subtype="PCM_S8", ext=".aiff"),
        Case("flac24-96k", music(6000, 2, 24, seed=13), 24, 96000, "PCM_24", ".flac"),
    ]
    + [Case(f"ch{c}", music(3000, c, seed=20 + c)) for c in range(1, 9)]
    + [Case(f"ch{c}-24bit", music(1500, c, 24, seed=30 + c), 24, subtype="PCM_24")
       for c in (3, 6, 8)]
    + [Case(f"rate{r}", music(3000, 2, seed=r % 97), rate=r)
       for r in (8000, 22050, 35467, 96000, 192000)]
    + [Case(f"rate{r}-flac", music(3000, 1, seed=r % 89), rate=r, ext=".flac")
       for r in (8000, 35467, 192000)]
)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_frame_roundtrip_edge_cases(case):
    frame_roundtrip(case.pcm)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_file_roundtrip_edge_cases(tmp_path, case):
    src = write_pcm(tmp_path / f"in{case.ext}", case.pcm, case.rate, case.bits, case.subtype)
    size, hyb = file_roundtrip(src, tmp_path)
    # Decoding writes exactly the PCM we put in (not merely what soundfile reads back).
    out = tmp_path / f"in.decoded{case.ext}"
    if len(case.pcm):
        data, rate = sf.read(out, dtype="int32", always_2d=True)
        assert rate == case.rate
        assert np.array_equal(data.astype(np.int64) >> (32 - case.bits), case.pcm)
    # Nothing else left in the directory (no temporary files).
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [src.name, hyb.name, out.name])


@pytest.mark.parametrize("channels", [1, 2, 3], ids=lambda c: f"ch{c}")
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9, 15, 16, 17, 33, 64, 65, 255, 1000, 1023],
                         ids=lambda n: f"n{n}")
def test_frame_roundtrip_short_random(n, channels):
    """Many short lengths (every band length pattern up to the coarse band), random PCM."""
    rng = np.random.default_rng(n * 10 + channels)
    pcm = rng.integers(-32768, 32768, size=(n, channels), dtype=np.int64)
    frame_roundtrip(pcm)
    frame_roundtrip(np.cumsum(rng.integers(-50, 51, size=(n, channels)), axis=0))


def test_frame_roundtrip_24bit_steps():
    """Full-scale jumps between the 24-bit extremes every few samples (worst predictor case)."""
    rng = np.random.default_rng(123)
    x = np.where(rng.random((5000, 2)) < 0.5, -(1 << 23), (1 << 23) - 1).astype(np.int64)
    frame_roundtrip(x)


@pytest.mark.parametrize("src_ext, subtype, bits, out_ext, out_subtype", [
    (".wav", "PCM_U8", 8, ".flac", "PCM_S8"),
    (".wav", "PCM_U8", 8, ".aiff", "PCM_U8"),  # AIFF can hold unsigned 8-bit: kept
    (".flac", "PCM_S8", 8, ".wav", "PCM_U8"),
    (".flac", "PCM_24", 24, ".wav", "PCM_24"),
    (".aiff", "PCM_16", 16, ".flac", "PCM_16"),
    (".wav", "PCM_16", 16, ".aif", "PCM_16"),
])
def test_decode_to_other_format(tmp_path, src_ext, subtype, bits, out_ext, out_subtype):
    """The decoded container follows the output extension; the samples stay exact."""
    pcm = music(3001, 2, bits, seed=bits)
    src = write_pcm(tmp_path / f"in{src_ext}", pcm, 32000, bits, subtype)
    hybridcodec.encode(src, tmp_path / "x.hyb")
    out = tmp_path / f"out{out_ext}"
    hybridcodec.decode(tmp_path / "x.hyb", out)
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (32000, 2, out_subtype)
    data, _ = sf.read(out, dtype="int32", always_2d=True)
    assert np.array_equal(data.astype(np.int64) >> (32 - bits), pcm)


# --------------------------------------------------------------------------- sizes


def test_silence_is_tiny(tmp_path):
    seconds, rate = 10, 44100
    src = write_pcm(tmp_path / "silence.wav", np.zeros((seconds * rate, 2), np.int64), rate, 16,
                    "PCM_16")
    size, _ = file_roundtrip(src, tmp_path)
    assert size / seconds < 200, f"{size} bytes for {seconds} s of stereo silence"


def test_wasted_bits_are_not_paid_for(tmp_path):
    n = 20000
    clean = music(n, 2, 16, seed=40, level=0.5) & ~np.int64(15)
    noisy = clean | np.random.default_rng(41).integers(0, 16, size=clean.shape)
    size_clean, _ = file_roundtrip(write_pcm(tmp_path / "clean.wav", clean, 44100, 16,
                                             "PCM_16"), tmp_path)
    size_noisy, _ = file_roundtrip(write_pcm(tmp_path / "noisy.wav", noisy, 44100, 16,
                                             "PCM_16"), tmp_path)
    # The noise adds 4 random bits per sample; detecting the wasted bits must save at
    # least half of them.
    assert size_clean < size_noisy - clean.size * 2 / 8, (size_clean, size_noisy)


def test_wasted_bits_24_bit_container(tmp_path):
    """20-bit audio in a 24-bit container codes like 20-bit audio, not 24-bit."""
    x20 = music(20000, 2, 20, seed=42, level=0.5)
    size24, _ = file_roundtrip(write_pcm(tmp_path / "a.wav", x20 << 4, 44100, 24, "PCM_24"),
                               tmp_path)
    noisy = (x20 << 4) | np.random.default_rng(43).integers(0, 16, size=x20.shape)
    size_noisy, _ = file_roundtrip(write_pcm(tmp_path / "b.wav", noisy, 44100, 24, "PCM_24"),
                                   tmp_path)
    assert size24 < size_noisy - x20.size * 2 / 8, (size24, size_noisy)


def test_lossless_compresses_real_signal():
    pcm = music(FRAME, 2, 16, seed=44)
    payload = frame_roundtrip(pcm)
    assert payload < pcm.size * 2 * 0.6


# --------------------------------------------------------------------------- corpus


@pytest.mark.parametrize("file_id", _corpus_ids())
def test_corpus_file_roundtrip(corpus_dir, tmp_path, file_id):
    src = corpus_dir / f"{file_id}.flac"
    file_roundtrip(src, tmp_path)
