"""The band-energy envelope: what a lossy tier knows about the bands it does not code.

Per output channel (not per coded channel: a frame's stereo mode changes from frame to
frame, and the fill runs across frame boundaries; nor mid/side: independent fills of a
mid and a side that were correlated, such as a source panned to one side, put the wrong
level in both output channels), per band of the
:class:`~.grid.EnvelopeGrid` and per slot: the mean power per FFT bin of the sine-windowed
PCM, quantised on a log2 scale, ``q = round(log2(E) / step)`` clipped to 0 .. QMAX
(``q = 0``: below one LSB squared per bin, treated as silence).

Coding (in layer 0 of every frame, after the scale envelopes): per channel, one bit per
band saying it holds one value all frame long, then per band the first slot as a
difference from the band below (band 0: uniform 8 bits) and, unless flat, every later
slot as a difference from the slot before. Differences go through one integer frequency table
of ``2R + 3`` symbols (``R`` = ``RANGE``): the two outer symbols are escapes for larger
differences, followed by the excess in 8 uniform bits. The table is part of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..entropy import TABLE_PRECISION, SymbolReader, SymbolWriter, integer_model
from ..errors import CorruptStreamError
from .grid import EnvelopeGrid, band_power, stft

QMAX = 255
RANGE = 12
ESCAPE_BITS = 10  # a first value predicted across a step change can be 500+ off
FIRST_BITS = 8


def envelope_table(scale: float) -> np.ndarray:
    """Integer frequencies (sum 2**TABLE_PRECISION) of a discrete Laplace of ``scale``
    over the differences -R .. R, with the two escape symbols outside them."""
    r = np.arange(-RANGE, RANGE + 1, dtype=np.float64)
    p = np.exp(-np.abs(r) / max(scale, 1e-3))
    tail = np.exp(-(RANGE + 1) / max(scale, 1e-3)) / (1 - np.exp(-1 / max(scale, 1e-3)))
    p = np.concatenate([[tail], p, [tail]])
    return _integer_frequencies(p)


def _integer_frequencies(p: np.ndarray) -> np.ndarray:
    total = 1 << TABLE_PRECISION
    f = np.maximum(1, np.floor(p / p.sum() * (total - p.size))).astype(np.int64)
    f[np.argmax(f)] += total - f.sum()
    return f


@dataclass(frozen=True)
class Resolution:
    """How finely one class of bands is described."""

    step: float  # log2 units per quantisation step (0.5: 1.5 dB)
    decimate: int  # one value per this many slots (their mean power)
    freq: np.ndarray  # integer frequencies of the difference table (2 RANGE + 3 symbols)


class EnvelopeCoder:
    """Quantisation and coding of a model's envelope on one grid.

    The bands of the finest ``fine_levels`` wavelet octaves get the ``fine`` resolution,
    the others ``coarse``: a lower tier fills the top octaves at most rates, and the ones
    below only at the lowest, where a coarser envelope costs little quality.
    """

    def __init__(self, fine: Resolution, coarse: Resolution, fine_levels: int,
                 band_level: tuple[int, ...]) -> None:
        self.resolutions = (fine, coarse)
        self.band_class = np.array([0 if lvl <= fine_levels else 1 for lvl in band_level],
                                   np.int64)
        self.steps = np.array([self.resolutions[k].step for k in self.band_class])
        self.decimates = np.array([self.resolutions[k].decimate for k in self.band_class])
        self._models = tuple(integer_model(r.freq) for r in self.resolutions)

    def step_db(self) -> np.ndarray:
        """Quantisation step of every band in dB."""
        return 10 * np.log10(2.0) * self.steps

    def quantise(self, power: np.ndarray) -> np.ndarray:
        """(bands, slots) quantised values, each band in its own step; a band decimated
        by d gives groups of d slots (from the frame's first slot) the value of their mean
        power."""
        bands, slots = power.shape
        q = np.empty((bands, slots), np.int64)
        for b in range(bands):
            p = power[b]
            d = int(self.decimates[b])
            if d > 1 and slots:
                groups = -(-slots // d)
                pad = np.zeros(groups * d)
                pad[:slots] = p
                counts = np.full(groups, d, np.float64)
                counts[-1] = slots - (groups - 1) * d
                p = np.repeat(pad.reshape(groups, d).sum(axis=1) / counts, d)[:slots]
            with np.errstate(divide="ignore"):
                v = np.round(np.log2(np.maximum(p, 1e-300)) / self.steps[b])
            q[b] = np.clip(v, 0, QMAX)
        return q

    def power(self, q: np.ndarray) -> np.ndarray:
        """Target power per bin of quantised values (0 for q = 0); q is (bands, ...)."""
        step = self.steps.reshape((-1,) + (1,) * (q.ndim - 1))
        return np.where(q > 0, np.exp2(q * step), 0.0)

    def _sequences(self, q: np.ndarray) -> list[np.ndarray]:
        return [q[b, :: int(self.decimates[b])] for b in range(q.shape[0])]

    def _first_prediction(self, prev_first: int, b: int) -> int:
        return int(round(prev_first * self.steps[b - 1] / self.steps[b]))

    def write(self, w: SymbolWriter, q: np.ndarray) -> None:
        """Code one channel's (bands, slots) values: per band its first value (from the
        band below's, rescaled to this band's step; band 0 in 8 uniform bits), then its
        differences in time; class by class, each with its table."""
        if q.size == 0:
            return
        seqs = self._sequences(q)
        # A band that holds one value all frame long (silence, a steady level) says so
        # with one bit and codes no differences.
        flat = np.array([int((seq == seq[0]).all()) for seq in seqs], np.int64)
        w.uniform(flat, 1)
        w.uniform(seqs[0][:1], FIRST_BITS)
        diffs = [[], []]
        for b, seq in enumerate(seqs):
            k = self.band_class[b]
            if b:
                diffs[k].append(np.array([seq[0] - self._first_prediction(seqs[b - 1][0], b)]))
            if not flat[b]:
                diffs[k].append(np.diff(seq))
        for k in (0, 1):
            d = np.concatenate(diffs[k]) if diffs[k] else np.zeros(0, np.int64)
            w.categorical(np.clip(d, -RANGE - 1, RANGE + 1) + RANGE + 1, self._models[k])
            esc = np.abs(d) > RANGE
            w.uniform(np.abs(d[esc]) - RANGE - 1, ESCAPE_BITS)

    def read(self, rd: SymbolReader, bands: int, slots: int) -> np.ndarray:
        """Inverse of :meth:`write`."""
        if bands * slots == 0:
            return np.zeros((bands, slots), np.int64)
        lengths = [-(-slots // int(self.decimates[b])) for b in range(bands)]
        flat = rd.uniform(bands, 1)
        first0 = int(rd.uniform(1, FIRST_BITS)[0])
        counts = [0, 0]
        for b in range(bands):
            counts[self.band_class[b]] += (0 if flat[b] else lengths[b] - 1) + (1 if b else 0)
        got = []
        for k in (0, 1):
            d = rd.categorical(counts[k], self._models[k]) - RANGE - 1
            esc = np.abs(d) > RANGE
            excess = rd.uniform(int(esc.sum()), ESCAPE_BITS)
            d[esc] = np.sign(d[esc]) * (RANGE + 1 + excess)
            got.append(d)
        pos = [0, 0]
        q = np.empty((bands, slots), np.int64)
        prev_first = first0
        for b in range(bands):
            k = self.band_class[b]
            d = got[k]
            if b:
                first = self._first_prediction(prev_first, b) + int(d[pos[k]])
                pos[k] += 1
            else:
                first = first0
            n = 0 if flat[b] else lengths[b] - 1
            seq = first + np.concatenate([[0], np.cumsum(d[pos[k]: pos[k] + n])])
            if flat[b]:
                seq = np.full(lengths[b], first, np.int64)
            pos[k] += n
            prev_first = first
            q[b] = np.repeat(seq, int(self.decimates[b]))[:slots]
        if q.min() < 0 or q.max() > QMAX:
            raise CorruptStreamError(f"{rd.what}: band energy out of range")
        return q


def analyse(pcm: np.ndarray, offset: int, grid: EnvelopeGrid, t0: int, t1: int
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per channel, the STFT (slots, bins) and band powers (bands, slots) of slots
    t0..t1-1; ``pcm`` (n, channels) starts at stream sample ``offset`` and should reach
    one hop before and two after the frame (what it lacks counts as silence)."""
    x = np.asarray(pcm, np.float64)
    spectra = [stft(x[:, c], grid, t0, t1, offset) for c in range(x.shape[1])]
    return spectra, [band_power(s, grid) for s in spectra]


def measure(pcm: np.ndarray, offset: int, grid: EnvelopeGrid, t0: int, t1: int,
            coder: EnvelopeCoder) -> np.ndarray:
    """Quantised envelope (C, bands, t1 - t0) of slots t0..t1-1 (see :func:`analyse`)."""
    _, power = analyse(pcm, offset, grid, t0, t1)
    out = np.empty((len(power), grid.num_bands, max(t1 - t0, 0)), np.int64)
    for c, p in enumerate(power):
        out[c] = coder.quantise(p)
    return out
