"""Format versions 2 and 3 and what they kept from earlier ones (docs/format.md,
"Version history"); version 3's metadata chunk itself is tested in test_container.py and
test_metadata.py.

* A stream written by hybridcodec 0.1 (format 1, its default model ccd651dbb62662d7) is a
  committed fixture; it must keep decoding bit-exactly with no ``--model``, and a
  ``truncate`` of it must stay a version 1 stream.
* Version 2's per-block wasted bits: a source whose resolution changes every few hundred
  samples (block floating point) codes exactly and pays only for the bits it uses.
* Version 2's coarse-band cascade features are aligned as specified.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hybridcodec
from hybridcodec.channels import block_wasted_bits, shift_blocks
from hybridcodec.container import FORMAT_VERSION, StreamReader, read_stream_layout
from hybridcodec.errors import CorruptStreamError
from hybridcodec.framecodec import analyse_frame, coarse_features, decode_frame, encode_frame
from hybridcodec.truncation import truncate_file
from hybridcodec.model import (HybridModel, ModelConfig, bundled_model_path, load_model,
                               model_id_of, validate_config)

FIXTURES = Path(__file__).parent / "fixtures"
V1_STREAM = FIXTURES / "v1-cellar-01.hyb"  # hybridcodec 0.1, `hybridcodec encode` of:
V1_SOURCE = FIXTURES / "v1-cellar-01.flac"  # 0.9 s of corpus/music/cellar-01.flac
V1_MODEL_ID = "ccd651dbb62662d7"


def _version(path: Path) -> int:
    with open(path, "rb") as fp:
        return StreamReader(fp).header.version


def test_v1_fixture_is_a_version_1_stream():
    assert _version(V1_STREAM) == 1 < FORMAT_VERSION
    with open(V1_STREAM, "rb") as fp:
        assert StreamReader(fp).header.model_id == V1_MODEL_ID


def test_v1_model_ships_and_keeps_its_id():
    path = bundled_model_path(V1_MODEL_ID)
    assert path is not None
    model, model_id = load_model(path)
    assert model_id == V1_MODEL_ID
    cfg = model.config
    assert (cfg.shift_block, cfg.coarse_taps, cfg.feature_mu) == (0, 0, 0)
    assert load_model(None)[1] != V1_MODEL_ID  # the default moved on
    assert bundled_model_path("0123456789abcdef") is None
    assert bundled_model_path("../default") is None


def test_v1_stream_decodes_bit_exactly_without_model(tmp_path):
    out = tmp_path / "out.wav"
    report = hybridcodec.decode(V1_STREAM, out)
    assert report.clean
    ref, _ = sf.read(V1_SOURCE, dtype="int32")
    got, _ = sf.read(out, dtype="int32")
    assert np.array_equal(got, ref)


def test_v1_stream_through_cli(tmp_path):
    out = tmp_path / "out.flac"
    run = subprocess.run([sys.executable, "-m", "hybridcodec", "decode", str(V1_STREAM),
                          "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert np.array_equal(sf.read(out, dtype="int32")[0], sf.read(V1_SOURCE, dtype="int32")[0])
    verify = subprocess.run([sys.executable, "-m", "hybridcodec", "verify", str(V1_STREAM)],
                            capture_output=True, text=True)
    assert verify.returncode == 0 and "MD5 ok" in verify.stdout


def test_truncated_v1_stream_stays_version_1(tmp_path):
    low = tmp_path / "low.hyb"
    truncate_file(V1_STREAM, low, tier="medium")
    assert _version(low) == 1
    out = tmp_path / "low.wav"
    hybridcodec.decode(low, out)
    assert sf.info(out).frames == sf.info(V1_SOURCE).frames


def test_new_streams_are_version_4(tmp_path):
    dst = tmp_path / "new.hyb"
    hybridcodec.encode(V1_SOURCE, dst)
    assert _version(dst) == FORMAT_VERSION == 4


@pytest.mark.parametrize("name", ["v2-cellar-01.hyb", "v3-cellar-01.hyb", "v3-tagged.hyb"])
def test_older_streams_truncate_in_their_own_version(tmp_path, name):
    """A truncation keeps a version 2 or 3 stream's layout (JSON header, per-layer CRCs),
    metadata chunk included, and gives what the old encoder's truncation gave: the
    layers of the tier, byte for byte."""
    src = FIXTURES / "golden" / name
    low = tmp_path / "low.hyb"
    truncate_file(src, low, tier="low")
    with open(src, "rb") as fp:
        old = StreamReader(fp)
        old_frames = list(old.frames())
    with open(low, "rb") as fp:
        new = StreamReader(fp)
        frames = list(new.frames())
    assert new.header.version == old.header.version < 4
    assert new.header.metadata == old.header.metadata
    assert new.header.num_layers == 3 and new.header.tier == "low"
    assert [f.layers for f in frames] == [tuple((k, p) for k, p in f.layers if k < 3)
                                          for f in old_frames]
    assert new.footer.md5 == old.footer.md5


def test_v2_stream_decodes_and_truncates_as_version_2(tmp_path):
    """Version 3 added the metadata chunk only: a version 2 stream (no such chunk) reads
    as before, and a truncation of it stays version 2, without a metadata chunk."""
    v2 = FIXTURES / "golden" / "v2-cellar-01.hyb"
    assert _version(v2) == 2
    low = tmp_path / "low.hyb"
    truncate_file(v2, low, tier="medium")
    assert _version(low) == 2
    with open(low, "rb") as fp:
        assert StreamReader(fp).header.metadata is None
    report = hybridcodec.decode(v2, tmp_path / "out.flac")
    assert report.clean and not report.notes


def test_v1_model_file_without_new_keys_codes_as_version_1():
    """A model file of format 1 has no shift_block/coarse_taps/feature_mu: it must load
    with version 1's values, or every stream it wrote would decode wrongly."""
    model, _ = load_model(bundled_model_path(V1_MODEL_ID))
    again = HybridModel.from_bytes(model.to_bytes())  # written as format 2, keys explicit
    assert model_id_of(again) == V1_MODEL_ID
    pcm = sf.read(V1_SOURCE, dtype="int16")[0].astype(np.int64)[:5000]
    assert encode_frame(again, pcm) == encode_frame(model, pcm)


# -- per-block wasted bits ------------------------------------------------------------

def _block_float(n: int, block: int, seed: int = 0) -> np.ndarray:
    """Stereo 16-bit audio whose low bits are zeroed per block: 0..7 bits, changing
    every ``block`` samples, like a block floating-point source (corpus cellar-14)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    x = 8000 * np.sin(2 * np.pi * 0.01 * t + np.array([0.0, 0.7])) + rng.normal(0, 400, (n, 2))
    shifts = rng.integers(0, 8, size=-(-n // block))
    per = np.repeat(shifts, block)[:n, None]
    return (np.round(x).astype(np.int64) >> per) << per


def test_block_wasted_bits_and_shift_inverse():
    x = np.array([4, 8, 0, 0, 3, 6, -16, 32, 1 << 23, 0], np.int64)
    w = block_wasted_bits(x, 2)
    assert w.tolist() == [2, 0, 0, 4, 23]
    assert np.array_equal(shift_blocks(shift_blocks(x, w, 2, up=False), w, 2, up=True), x)
    assert block_wasted_bits(np.zeros(0, np.int64), 4).size == 0


@pytest.mark.parametrize("n", [1, 511, 512, 513, 5000])
def test_block_shifted_frame_is_exact(n):
    model, _ = load_model(None)
    assert model.config.shift_block == 512
    pcm = _block_float(n, 512, seed=n)
    layers = dict(encode_frame(model, pcm))
    assert np.array_equal(decode_frame(model, layers, n, 2), pcm)


def test_block_shifts_pay_off():
    model, _ = load_model(None)
    flat = HybridModel.from_bytes(model.to_bytes())
    flat.config.shift_block = 0
    pcm = _block_float(20000, 512)
    with_shifts = sum(len(p) for _, p in encode_frame(model, pcm))
    without = sum(len(p) for _, p in encode_frame(flat, pcm))
    assert with_shifts < 0.9 * without
    # Audio with no wasted bits anywhere (not even in the side signal) pays one flag bit
    # per channel and frame, nothing more.
    plain = np.round(np.random.default_rng(3).normal(0, 3000, (20000, 2))).astype(np.int64)
    assert abs(sum(len(p) for _, p in encode_frame(model, plain))
               - sum(len(p) for _, p in encode_frame(flat, plain))) <= 8
    # Wasted bits that only the side signal has (L and R agree in their low bits) are
    # found too: they are counted on the coded signals, after the stereo decorrelation.
    common = (_block_float(20000, 20000, seed=3) >> 5 << 5) | 1
    code = analyse_frame(model, common)
    assert code.mode != 0 and code.shifts == [0, 0] and code.block_shifts[1].min() >= 5


@pytest.mark.parametrize("frame_shift, block_shift", [(0, 25), (20, 5), (24, 1)])
def test_block_shift_out_of_range_is_corrupt(frame_shift, block_shift):
    """More than 24 wasted bits in all can only come from damage: the decoder says so."""
    model, _ = load_model(None)
    from hybridcodec.entropy import SymbolWriter
    from hybridcodec.framecodec import SHIFT_BITS
    w = SymbolWriter()
    w.uniform(np.array([0]), 2)  # stereo mode
    w.uniform(np.array([frame_shift]), SHIFT_BITS)  # frame shift of the one channel
    w.uniform(np.array([1]), 1)  # block shifts present
    w.uniform(np.array([block_shift]), SHIFT_BITS)  # the one block's count
    with pytest.raises(CorruptStreamError, match="impossible frame parameters"):
        decode_frame(model, {0: w.finish()}, 100, 1)


# -- coarse-band features -------------------------------------------------------------

def test_coarse_features_window():
    s = np.array([0, 1, 4, 9, 16, 25, 36, 49], np.int64)
    h = 2 * s - np.concatenate([[s[0]], s[:-1]]) - np.concatenate([s[1:], [s[-1]]])
    f = coarse_features(s, 7, 6)
    assert f.shape == (7, 6)
    for i in range(7):  # taps s[i-2 .. i+3], edges replicated
        idx = np.clip(np.arange(i - 2, i + 4), 0, s.size - 1)
        assert f[i].tolist() == h[idx].tolist()
    assert coarse_features(np.array([5], np.int64), 1, 4).tolist() == [[0, 0, 0, 0]]


@pytest.mark.parametrize("taps", [1, 2, 3, 5, 6, 31, 32])
@pytest.mark.parametrize("n, size", [(8, 7), (3, 9), (1, 1), (40, 3)])
def test_coarse_features_follow_the_spec_for_every_width(taps, n, size):
    """docs/format.md: feature j of coefficient i is h[i - (T//2 - 1) + j], edge-extended,
    for every T = coarse_taps the model file allows (0 .. 32; T = 1 once failed in np.pad,
    a model that loaded and could not code: found by the fuzz campaign)."""
    s = np.random.default_rng(taps).integers(-1000, 1000, n)
    e = np.concatenate([s[:1], s, s[-1:]])
    h = 2 * e[1:-1] - e[:-2] - e[2:]
    f = coarse_features(s, size, taps)
    assert f.shape == (size, taps)
    for i in range(size):
        idx = np.clip(i - (taps // 2 - 1) + np.arange(taps), 0, n - 1)
        assert f[i].tolist() == h[idx].tolist()


def test_model_with_one_coarse_tap_codes_losslessly():
    model = HybridModel(ModelConfig(coarse_taps=1))
    validate_config(model.config)  # a model file may say so
    rng = np.random.default_rng(5)
    pcm = np.cumsum(rng.integers(-300, 300, (3000, 2)), axis=0)
    layers = encode_frame(model, pcm)
    assert np.array_equal(decode_frame(model, dict(layers), len(pcm), 2), pcm)


def test_new_config_keys_change_the_id():
    base = HybridModel(ModelConfig())
    ids = {model_id_of(base)}
    for key, value in (("coarse_taps", 4), ("feature_mu", 8), ("shift_block", 1024)):
        cfg = ModelConfig(**{key: value})
        ids.add(model_id_of(HybridModel(cfg)))
    assert len(ids) == 4


@pytest.mark.parametrize("path", [V1_STREAM, FIXTURES / "golden" / "v2-piano.hyb",
                                  FIXTURES / "golden" / "v3-tagged.hyb",
                                  FIXTURES / "golden" / "v4-tagged.hyb",
                                  FIXTURES / "golden" / "v4-synthetic.hyb",
                                  FIXTURES / "golden" / "v4-compact.hyb"],
                         ids=lambda p: p.name)
def test_layout_of_every_version_adds_up(path):
    layout = read_stream_layout(path)
    assert layout.header_bytes + layout.framing_bytes + layout.payload_bytes \
        == layout.total_bytes == path.stat().st_size
    assert layout.layers_carried == 20 and layout.num_frames == layout.header.num_frames
    assert hybridcodec.describe_stream(path).count("\n") > 20
