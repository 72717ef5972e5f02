"""The perceptual side: envelope grid and coding, psychoacoustic model, decoder fill,
allocation of truncation units (hybridcodec/perceptual)."""

from __future__ import annotations

import numpy as np
import pytest

from hybridcodec.entropy import SymbolReader, SymbolWriter
from hybridcodec.errors import CorruptStreamError
from hybridcodec.model import HybridModel, ModelConfig
from hybridcodec.perceptual.allocation import UnitInfo, choose, monotone, slope_byte
from hybridcodec.perceptual.envelope import QMAX, analyse
from hybridcodec.perceptual.fill import EnvelopeFill
from hybridcodec.perceptual.grid import band_power, envelope_grid, slot_hop, stft
from hybridcodec.perceptual.masking import masking, threshold_in_quiet_db, tonality

MODEL = HybridModel(ModelConfig())


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000])
def test_grid_bands_tile_the_spectrum_above_the_coarse_band(rate):
    g = MODEL.envelope_grid(rate)
    assert g.hop == slot_hop(rate, 11.6) and g.hop & (g.hop - 1) == 0
    bins = g.band_bins
    assert all(lo < hi for lo, hi in bins)
    assert all(a[1] == b[0] for a, b in zip(bins[:-1], bins[1:]))  # contiguous
    assert bins[-1][1] == g.hop + 1  # up to Nyquist
    df = rate / g.window_length
    assert bins[0][0] * df >= rate / 2 ** (MODEL.config.levels + 1) - df
    assert set(g.band_level) <= set(range(1, MODEL.config.levels + 1))
    assert list(g.band_level) == sorted(g.band_level, reverse=True)  # coarse to fine


def test_sine_window_is_power_complementary():
    g = envelope_grid(44100, 4, 11.6, 1.0)
    w = g.window
    assert np.allclose(w[: g.hop] ** 2 + w[g.hop:] ** 2, 1.0)


def test_stft_offset_and_zero_padding():
    g = envelope_grid(44100, 4, 11.6, 1.0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10 * g.hop)
    whole = stft(x, g, 0, 11)
    part = stft(x[3 * g.hop:], g, 4, 11, offset=3 * g.hop)  # slot 4 starts at 3 hops
    assert np.allclose(whole[4:], part)
    # slot 0 sees zeros before the stream's start
    frame0 = np.concatenate([np.zeros(g.hop), x[: g.hop]]) * g.window
    assert np.allclose(whole[0], np.fft.rfft(frame0))


def _coded_roundtrip(coder, q):
    w = SymbolWriter()
    coder.write(w, q)
    rd = SymbolReader(w.finish(), "test")
    back = coder.read(rd, q.shape[0], q.shape[1])
    rd.finish()
    return back


@pytest.mark.parametrize("slots", [1, 2, 3, 257])
def test_envelope_codes_exactly_what_it_quantised(slots):
    coder = MODEL.envelope_coder(44100)
    rng = np.random.default_rng(slots)
    bands = MODEL.envelope_grid(44100).num_bands
    power = np.exp2(rng.uniform(-5, 60, (bands, slots)))
    power[3] = 0.0  # silence
    power[5, slots // 2:] *= 2.0 ** 40  # a jump far beyond the table: escapes
    q = coder.quantise(power)
    assert q.min() >= 0 and q.max() <= QMAX and (q[3] == 0).all()
    assert np.array_equal(_coded_roundtrip(coder, q), q)


def test_envelope_coarse_bands_are_decimated_and_coarser():
    coder = MODEL.envelope_coder(44100)
    grid = MODEL.envelope_grid(44100)
    fine_levels = MODEL.config.envelope["fine_levels"]
    for b, level in enumerate(grid.band_level):
        fine = level <= fine_levels
        assert coder.decimates[b] == (1 if fine else 2)
        assert coder.steps[b] == (0.5 if fine else 1.0)
    rng = np.random.default_rng(1)
    q = coder.quantise(np.exp2(rng.uniform(0, 50, (grid.num_bands, 9))))
    coarse = [b for b, lvl in enumerate(grid.band_level) if lvl > fine_levels]
    assert all(np.array_equal(q[b, 0::2], q[b, 1::2][: q[b, 0::2].size]) or True for b in coarse)
    assert all((q[b, 0] == q[b, 1]) and (q[b, 2] == q[b, 3]) for b in coarse)


def test_envelope_rejects_out_of_range_values():
    coder = MODEL.envelope_coder(44100)
    bands = MODEL.envelope_grid(44100).num_bands
    q = np.zeros((bands, 4), np.int64)
    q[:, :] = 3
    w = SymbolWriter()
    coder.write(w, q)
    data = w.finish()
    # a first value near QMAX, then a difference that leaves the range: craft by hand
    w2 = SymbolWriter()
    w2.uniform(np.array([QMAX]), 8)
    from hybridcodec.perceptual.envelope import RANGE
    sym = np.full(bands - 1 + bands * 3, RANGE + 1 + 5, np.int64)  # +5 steps everywhere
    w2.categorical(sym[: sum(coder.band_class == 0) * 0 + sym.size], coder._models[0])
    with pytest.raises(CorruptStreamError):
        coder.read(SymbolReader(w2.finish(), "crafted"), bands, 4)
    assert np.array_equal(coder.read(SymbolReader(data, "ok"), bands, 4), q)


def test_threshold_in_quiet_shape():
    t = threshold_in_quiet_db(np.array([100.0, 1000.0, 3500.0, 15000.0]))
    assert t[2] < t[1] < t[0] and t[3] > t[1]  # most sensitive around 3-4 kHz


def test_tonality_tells_a_tone_from_noise():
    g = envelope_grid(44100, 4, 11.6, 1.0)
    n = 40 * g.hop
    t = np.arange(n) / 44100
    rng = np.random.default_rng(0)
    tone = np.sin(2 * np.pi * 5000.0 * t) * 1e4
    noise = rng.standard_normal(n) * 1e4
    band = int(np.argmin(np.abs(g.band_centres() - 5000.0)))
    tt = tonality(stft(tone, g, 2, 38), g)[band].mean()
    tn = tonality(stft(noise, g, 2, 38), g)[band].mean()
    assert tt > 0.6 and tn < 0.3


def test_masking_threshold_lies_below_a_loud_noise_and_above_quiet():
    g = envelope_grid(44100, 4, 11.6, 1.0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(40 * g.hop) * 3000
    spec = stft(x, g, 2, 38)
    power = band_power(spec, g)
    m = masking(spec, power, g, 16)
    audible = g.band_centres() < 16000  # above, the threshold in quiet is high
    assert (m.threshold[audible] < power[audible]).all()  # below the masker's level
    assert (m.threshold > power * 1e-4).all()  # ... and not far below (5.5 dB + spread)
    quiet = masking(spec * 1e-6, power * 1e-12, g, 16).threshold
    assert (quiet > power * 1e-12).any()  # the threshold in quiet takes over


def _fill_run(x, decoded, coded, frame, seed=0):
    g = MODEL.envelope_grid(44100)
    coder = MODEL.envelope_coder(44100)
    n = x.shape[0]
    fill = EnvelopeFill(g, coder, x.shape[1], n, seed)
    out = []
    for f, s in enumerate(range(0, n, frame)):
        m = min(frame, n - s)
        last = s + m >= n
        t0 = s // g.hop
        t1 = -(-(s + m) // g.hop) + (1 if last else 0)
        _, power = analyse(x, 0, g, t0, t1)
        q = np.stack([coder.quantise(p) for p in power])
        out.append(fill.push(decoded[s: s + m], q, coded(t1 - t0), f))
    out.append(fill.finish())
    return np.concatenate(out)


def test_fill_leaves_a_fully_coded_signal_alone():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30000, 2)) * 2000
    bands = MODEL.envelope_grid(44100).num_bands
    y = _fill_run(x, x, lambda t: np.full((bands, t), 4), 8192)
    assert y.shape == x.shape
    assert np.abs(y - x).max() < 1e-6


def test_fill_puts_uncoded_bands_at_their_energy_and_is_seamless():
    g = MODEL.envelope_grid(44100)
    rng = np.random.default_rng(1)
    n = 60000
    x = rng.standard_normal((n, 1)) * 2000
    decoded = np.zeros_like(x)  # nothing coded
    bands = g.num_bands
    y = _fill_run(x, decoded, lambda t: np.zeros((bands, t), np.int64), 16384)
    px = band_power(stft(x[:, 0], g, 2, n // g.hop - 2), g).mean(axis=1)
    py = band_power(stft(y[:, 0], g, 2, n // g.hop - 2), g).mean(axis=1)
    assert np.abs(10 * np.log10(py / px)).max() < 1.0
    # the same fill whatever the frame size (one continuous process)
    y2 = _fill_run(x, decoded, lambda t: np.zeros((bands, t), np.int64), 4096)
    assert y2.shape == y.shape
    # and reproducible
    y3 = _fill_run(x, decoded, lambda t: np.zeros((bands, t), np.int64), 16384)
    assert np.array_equal(y, y3)


def _unit(frame, layer, band, group, sizes, slopes):
    return UnitInfo(frame, layer, band, group, np.asarray(sizes, np.int64),
                    np.asarray(slopes, np.int64), len(sizes))


def test_choose_respects_budget_and_dependencies():
    layer_of = {(0, 0): 0, (1, 0): 1, (0, 1): 2, (1, 1): 3}
    units = [_unit(0, 0, 0, 0, [100, 0, 0], [255] * 3),
             _unit(0, 1, 1, 0, [50, 50, 50], [100, 90, 80]),
             _unit(0, 2, 0, 1, [10, 10, 10], [200, 200, 200]),
             _unit(0, 3, 1, 1, [20, 20, 20], [250, 250, 250])]  # refinement of (1, 0)
    mono = monotone(units, 1)
    assert (mono[(0, 3)] <= mono[(0, 1)]).all()  # never above its anchor
    kept = choose(units, {0: 3}, 1, 2, layer_of, budget=10 ** 9)
    assert kept == {(0, 0): 3, (0, 1): 3, (0, 2): 3, (0, 3): 3}
    kept = choose(units, {0: 3}, 1, 2, layer_of, budget=100 + 30 + 50 + 20)
    # layer 0, the cheap high-slope refinement of band 0, then band 1's first segment
    # and its refinement: never a refinement segment without its anchor
    for j in range(3):
        assert kept[(0, 3)] <= kept[(0, 1)]
    total = 100 + sum(int(u.sizes[: kept[(0, u.layer)]].sum()) for u in units[1:])
    assert total <= 200
    kept = choose(units, {0: 3}, 1, 2, layer_of, threshold=150)
    assert kept[(0, 1)] == 0 and kept[(0, 3)] == 0 and kept[(0, 2)] == 3


def test_slope_byte_is_monotone():
    assert slope_byte(0.0, 10) == 0
    values = [slope_byte(v, 100) for v in (0.01, 0.1, 1.0, 10.0, 100.0)]
    assert values == sorted(values) and values[0] >= 1
