"""Format 4's frame payload (hybridcodec/segmented.py): exact when complete, decodable at
every cut the dependency rules allow, corrupt or impossible cuts refused."""

from __future__ import annotations

import numpy as np
import pytest

from hybridcodec import segmented as sg
from hybridcodec.errors import CorruptStreamError
from hybridcodec.framecodec import _FrameLayout
from hybridcodec.model import HybridModel, ModelConfig, load_model

BASE, _ = load_model(None)


def _model() -> HybridModel:
    """The shipped nets with format 4's payload (what train.upgrade_model makes)."""
    from train.upgrade_model import upgrade

    return upgrade(BASE)


MODEL = _model()
LAY = _FrameLayout(MODEL)


def _audio(n: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None] / 44100
    f = 220.0 * 1.5 ** np.arange(channels)[None, :]
    x = 6000 * np.sin(2 * np.pi * f * t) + 2000 * np.sin(2 * np.pi * 9.3 * f * t)
    x += rng.normal(0, 300, (n, channels))
    return np.clip(np.round(x), -32768, 32767).astype(np.int64)


def _units(layers, keep=None, total=None):
    out = []
    for k, code in layers:
        s = total if keep is None else keep.get(k, 0)
        if not s:
            continue
        payload = code.payload if (s == total or k == 0) else code.payload[4 * code.cuts[s - 1]:]
        out.append((k, 1, payload, s))
    return out


@pytest.mark.parametrize("n, channels", [(1, 1), (3, 2), (5000, 1), (40000, 2), (70001, 3)])
def test_complete_frame_is_exact(n, channels):
    pcm = _audio(n, channels, seed=n)
    layers = sg.encode_frame(MODEL, pcm, 44100)
    total = sg.num_segments(n, MODEL.config.segment_length)
    dec = sg.decode_frame(MODEL, _units(layers, total=total), n, channels, 44100)
    assert dec.exact and np.array_equal(dec.pcm, pcm)
    assert dec.envelope.shape[:2] == (channels, MODEL.envelope_grid(44100).num_bands)


@pytest.mark.parametrize("n, last", [(5000, True), (40000, False), (40000, True)])
def test_complete_layers_are_coded_in_every_slot(n, last):
    """A complete group reaches every envelope slot, the stream's last one too (centred
    past the frame's end): the fill leaves a complete frame alone whatever the header's
    tier; a layer cut short leaves the slots past its cut uncoded."""
    pcm = _audio(n, 1, seed=n)
    layers = sg.encode_frame(MODEL, pcm, 44100, last=last)
    total = sg.num_segments(n, MODEL.config.segment_length)
    dec = sg.decode_frame(MODEL, _units(layers, total=total), n, 1, 44100, last=last)
    assert dec.coded.shape[1] == sg.frame_slots(MODEL, 44100, n, last)
    assert (dec.coded == LAY.groups).all()
    if total > 1:
        keep = {k: total for k, _ in layers}
        finest = [LAY.layer_of[(LAY.levels, g)] for g in range(LAY.groups)]
        keep.update({k: 1 for k in finest})  # the finest band: its first segment only
        dec = sg.decode_frame(MODEL, _units(layers, keep, total), n, 1, 44100, last=last)
        hop = MODEL.envelope_grid(44100).hop
        late = np.arange(dec.coded.shape[1]) * hop >= MODEL.config.segment_length
        finest_bands = np.array(MODEL.envelope_grid(44100).band_level) == 1
        assert (dec.coded[np.ix_(finest_bands, late)] == 0).all()
        assert (dec.coded[np.ix_(~finest_bands, np.ones(late.size, bool))] == LAY.groups).all()


def test_merged_frame_is_exact_and_smaller():
    pcm = _audio(6000, 1, seed=3)
    merged = sg.encode_frame(MODEL, pcm, 44100, merged=True)
    separate = sg.encode_frame(MODEL, pcm, 44100)
    assert len(merged) == 1
    assert len(merged[0][1].payload) < sum(len(c.payload) for _, c in separate)
    total = sg.num_segments(6000, MODEL.config.segment_length)
    dec = sg.decode_frame(MODEL, [(0, len(LAY.order), merged[0][1].payload, total)], 6000, 1,
                          44100)
    assert dec.exact and np.array_equal(dec.pcm, pcm)


def test_every_allowed_cut_decodes_and_anchors_are_exact_where_kept():
    n = 5 * MODEL.config.segment_length + 777
    pcm = _audio(n, 2, seed=7)
    layers = sg.encode_frame(MODEL, pcm, 44100, last=True)
    total = sg.num_segments(n, MODEL.config.segment_length)
    full = sg.decode_frame(MODEL, _units(layers, total=total), n, 2, 44100)
    assert full.exact
    d4 = LAY.layer_of[(1, 0)]
    d3 = LAY.layer_of[(2, 0)]
    d3_ref = LAY.layer_of[(2, 1)]
    for cut in range(0, total):  # d3's anchor cut at `cut` segments, its refinement one less
        keep = {0: total, d4: total, d3: cut, d3_ref: max(cut - 1, 0)}
        assert sg.check_segments(LAY, keep, total) is None
        dec = sg.decode_frame(MODEL, _units(layers, keep, total), n, 2, 44100, fill="zero")
        assert not dec.exact and dec.pcm.shape == pcm.shape
        # the envelope is the same whatever the tier
        assert np.array_equal(dec.envelope, full.envelope)
        level3 = [e for e, lvl in enumerate(MODEL.envelope_grid(44100).band_level) if lvl == 3]
        covered = (np.arange(dec.coded.shape[1]) * MODEL.envelope_grid(44100).hop) < \
            cut * MODEL.config.segment_length
        assert ((dec.coded[level3] > 0) == covered[None, :]).all()


def test_cuts_that_break_a_dependency_are_refused():
    n = 3 * MODEL.config.segment_length
    total = 3
    lay = LAY
    anchor = {b: lay.layer_of[(b, 0)] for b in range(lay.levels + 1)}
    ok = {anchor[0]: total, anchor[1]: 2, anchor[2]: 1}
    assert sg.check_segments(lay, ok, total) is None
    bad_refinement = {**ok, lay.layer_of[(1, 1)]: 3}
    assert "past its anchor" in sg.check_segments(lay, bad_refinement, total)
    bad_anchor = {**ok, anchor[2]: 2}
    assert "segment before" in sg.check_segments(lay, bad_anchor, total)
    assert "layer 0" in sg.check_segments(lay, {anchor[1]: 1}, total)
    pcm = _audio(n, 1)
    layers = sg.encode_frame(MODEL, pcm, 44100)
    with pytest.raises(CorruptStreamError, match="segment before"):
        sg.decode_frame(MODEL, _units(layers, bad_anchor, total), n, 1, 44100)


def test_damaged_payload_is_a_corrupt_stream():
    n = 20000
    pcm = _audio(n, 2, seed=2)
    layers = sg.encode_frame(MODEL, pcm, 44100)
    total = sg.num_segments(n, MODEL.config.segment_length)
    units = _units(layers, total=total)
    rng = np.random.default_rng(0)
    failures = 0
    for trial in range(40):
        k = int(rng.integers(len(units)))
        first, count, payload, segs = units[k]
        if len(payload) < 8:
            continue
        buf = bytearray(payload)
        pos = int(rng.integers(len(buf)))
        buf[pos] ^= 1 << int(rng.integers(8))
        damaged = list(units)
        damaged[k] = (first, count, bytes(buf), segs)
        try:
            out = sg.decode_frame(MODEL, damaged, n, 2, 44100)
        except CorruptStreamError:
            failures += 1
            continue
        # a flip the decoder cannot see (ANS has no redundancy) gives other audio;
        # the stream's MD5 catches that one level up
        assert out.pcm.shape == pcm.shape
    assert failures > 0


def test_slopes_rank_the_anchor_of_a_band_above_its_exact_bits():
    pcm = _audio(3 * MODEL.config.segment_length, 2, seed=5)
    layers = dict(sg.encode_frame(MODEL, pcm, 44100))
    for band in range(1, LAY.levels + 1):
        anchor = np.frombuffer(layers[LAY.layer_of[(band, 0)]].slopes, np.uint8)
        exact = np.frombuffer(layers[LAY.layer_of[(band, LAY.groups - 1)]].slopes, np.uint8)
        assert anchor.mean() >= exact.mean() or anchor.mean() == 0
