"""The time-frequency grid of the band-energy envelope and of the decoder's fill.

An STFT with hop ``H`` (a power of two near ``slot_ms``: 512 samples at 44.1 and 48 kHz)
and a sine window of ``2H`` samples, which is power-complementary at 50 % overlap
(``w[n]**2 + w[n + H]**2 == 1``), so analysis followed by synthesis with the same window is
the identity, and noise synthesised frame by frame keeps its energy. Slot ``t`` is the
window over samples ``(t - 1) H .. (t + 1) H - 1`` of the stream (zero outside it); sample
``n`` is covered by slots ``n // H`` and ``n // H + 1``.

The frequency axis above the coarse wavelet band (which every tier codes) is split into
bands of equal width on the ERB-rate scale (Glasberg & Moore: ``21.4 log10(1 + 0.00437 f)``),
``erb_per_band`` wide, up to 20 kHz; what lies above 20 kHz (sources at 88.2 kHz and up) is
one more band. Every band holds at least one FFT bin. Each band belongs to the wavelet
detail level whose octave contains its centre, which is how the decoder knows whether a
tier codes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TOP_HZ = 20000.0


def erb_rate(f: np.ndarray | float) -> np.ndarray | float:
    """ERB-rate (Cams) of frequency ``f`` in Hz."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(f, np.float64))


def erb_frequency(e: np.ndarray | float) -> np.ndarray | float:
    """Inverse of :func:`erb_rate`."""
    return (10.0 ** (np.asarray(e, np.float64) / 21.4) - 1.0) / 0.00437


def slot_hop(sample_rate: int, slot_ms: float) -> int:
    """The STFT hop: the power of two nearest ``slot_ms`` milliseconds, 16 .. 4096."""
    target = sample_rate * slot_ms / 1000.0
    return int(2 ** min(12, max(4, round(np.log2(max(target, 1.0))))))


@dataclass(frozen=True)
class EnvelopeGrid:
    """Slots and bands for one sample rate and model (see the module docstring)."""

    sample_rate: int
    hop: int
    levels: int
    band_bins: tuple[tuple[int, int], ...]  # [lo, hi) FFT bins of every band
    band_level: tuple[int, ...]  # wavelet detail level (1 = finest) of every band

    @property
    def window_length(self) -> int:
        return 2 * self.hop

    @property
    def num_bands(self) -> int:
        return len(self.band_bins)

    @property
    def window(self) -> np.ndarray:
        return _sine_window(self.window_length)

    def band_centres(self) -> np.ndarray:
        """Centre frequency (Hz) of every band."""
        df = self.sample_rate / self.window_length
        return np.array([(lo + hi - 1) / 2 * df for lo, hi in self.band_bins])

    def frame_slots(self, start: int, num_samples: int, total: int) -> tuple[int, int]:
        """Slots ``[t0, t1)`` a frame of ``num_samples`` samples starting at sample
        ``start`` of a ``total``-sample stream carries: those whose centre lies in the
        frame, and for the last frame also the slot centred at or after the end, whose
        window covers the stream's last samples."""
        h = self.hop
        t0 = -(-start // h)
        end = start + num_samples
        t1 = -(-end // h)
        if end >= total:
            t1 = -(-total // h) + 1
        return t0, t1


@lru_cache(maxsize=None)
def _sine_window(n: int) -> np.ndarray:
    w = np.sin(np.pi * (np.arange(n) + 0.5) / n)
    w.setflags(write=False)
    return w


@lru_cache(maxsize=64)
def envelope_grid(sample_rate: int, levels: int, slot_ms: float,
                  erb_per_band: float) -> EnvelopeGrid:
    """The grid for a sample rate and a model's envelope parameters (cached)."""
    hop = slot_hop(sample_rate, slot_ms)
    n = 2 * hop
    df = sample_rate / n
    nyquist_bin = n // 2
    f_lo = sample_rate / 2 ** (levels + 1)
    f_top = min(sample_rate / 2, TOP_HZ)
    edges_hz: list[float] = []
    if f_top > f_lo:
        span = erb_rate(f_top) - erb_rate(f_lo)
        count = max(1, int(round(span / erb_per_band)))
        edges_hz = list(erb_frequency(np.linspace(erb_rate(f_lo), erb_rate(f_top), count + 1)))
    # ceil with a margin: an edge that is a whole bin in exact arithmetic (fs/2**(L+1)
    # always is) must not move up by one on a platform whose float rounding differs
    bins = sorted({int(np.ceil(f / df - 1e-6)) for f in edges_hz})
    bins = [min(max(b, 1), nyquist_bin + 1) for b in bins]
    if sample_rate / 2 > TOP_HZ:
        bins.append(nyquist_bin + 1)
    elif bins:
        bins[-1] = nyquist_bin + 1
    bands = [(lo, hi) for lo, hi in zip(bins[:-1], bins[1:]) if hi > lo]
    level_of = []
    for lo, hi in bands:
        centre = (lo + hi - 1) / 2 * df
        level = int(np.floor(np.log2(sample_rate / 2 / max(centre, 1e-9)))) + 1
        level_of.append(min(max(level, 1), max(levels, 1)))
    return EnvelopeGrid(sample_rate, hop, levels, tuple(bands), tuple(level_of))


def stft(x: np.ndarray, grid: EnvelopeGrid, t0: int, t1: int, offset: int = 0) -> np.ndarray:
    """Complex spectra (t1 - t0, H + 1) of slots ``t0 .. t1 - 1`` of a signal whose first
    sample is stream sample ``offset`` (samples outside ``x`` count as zero)."""
    h, n = grid.hop, grid.window_length
    count = max(t1 - t0, 0)
    if count == 0:
        return np.zeros((0, h + 1), np.complex128)
    first = (t0 - 1) * h - offset  # index in x of the first window's first sample
    lo, hi = max(first, 0), min(first + (count + 1) * h, x.shape[0])
    buf = np.zeros((count + 1) * h, np.float64)
    if hi > lo:
        buf[lo - first: hi - first] = x[lo:hi]
    frames = np.lib.stride_tricks.sliding_window_view(buf, n)[::h][:count]
    return np.fft.rfft(frames * grid.window, axis=1)


def band_power(spectra: np.ndarray, grid: EnvelopeGrid) -> np.ndarray:
    """(bands, slots): mean |X|**2 over each band's bins."""
    p = np.abs(spectra) ** 2
    out = np.empty((grid.num_bands, spectra.shape[0]), np.float64)
    for b, (lo, hi) in enumerate(grid.band_bins):
        out[b] = p[:, lo:hi].mean(axis=1)
    return out
