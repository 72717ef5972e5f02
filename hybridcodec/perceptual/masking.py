"""The encoder's psychoacoustic model: masking threshold and tonality per band and slot.

It works on the envelope's grid (:mod:`.grid`: ~1 ERB bands, ~11.6 ms slots) and follows
the classic recipe (MPEG-1 psychoacoustic model 1, Painter & Spanias' review), in dB:

1. **Tonality** per band and slot from the spectral flatness of its bins, smoothed over
   three slots: ``T = clip(SFM_dB / -30, 0, 1)`` (a pure tone is 1, white noise 0).
2. **Spreading** across bands on the ERB-rate scale: a masker at ``z_m`` raises the
   threshold at ``z`` by ``-27 dB/ERB`` below it and ``-10 dB/ERB`` above it (the upward
   spread of masking), summed in power.
3. **Masking offset**, by the masker's tonality: a tone masks noise ``14.5 + z`` dB below
   its level, noise masks ``5.5`` dB below (interpolated by T).
4. **Temporal masking**: the threshold decays at most ``POST_MASK_DB_PER_MS`` after a
   loud slot (forward masking); one slot of backward masking.
5. **Threshold in quiet** (Terhardt's formula), with full scale of the source's bit depth
   taken as 96 dB SPL, is the floor.

The result, :class:`Masking`, gives the threshold ``M`` (power per bin, the envelope's
units) and ``T`` per band and slot; the allocator (:mod:`.allocation`) turns noise levels
into perceptual distortion with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import EnvelopeGrid, erb_rate

SPREAD_DOWN_DB = 27.0  # per ERB, masker above the target
SPREAD_UP_DB = 10.0  # per ERB, masker below the target
TONE_OFFSET_DB = 14.5  # + z (ERB-rate) for a tonal masker
NOISE_OFFSET_DB = 5.5
POST_MASK_DB_PER_MS = 0.5  # forward masking: about 100 ms to fall 50 dB
FULL_SCALE_SPL = 96.0
SFM_TONAL_DB = -30.0
QUIET_CEILING_DB = 90.0


@dataclass
class Masking:
    """Masking threshold and tonality of one signal on the envelope grid."""

    threshold: np.ndarray  # (bands, slots), power per bin, same units as the envelope
    tonality: np.ndarray  # (bands, slots), 0 (noise) .. 1 (tone)


def threshold_in_quiet_db(f: np.ndarray) -> np.ndarray:
    """Terhardt's absolute threshold of hearing, dB SPL, at frequencies ``f`` (Hz)."""
    k = np.maximum(np.asarray(f, np.float64), 20.0) / 1000.0
    db = 3.64 * k ** -0.8 - 6.5 * np.exp(-0.6 * (k - 3.3) ** 2) + 1e-3 * k ** 4
    # The k**4 term runs away above 16 kHz (200 dB at 22 kHz): hold it at a level that
    # still means "practically inaudible" without overflowing the model.
    return np.minimum(db, QUIET_CEILING_DB)


def tonality(spectra: np.ndarray, grid: EnvelopeGrid) -> np.ndarray:
    """(bands, slots) tonality from the spectral flatness of each band's bins."""
    p = np.abs(spectra) ** 2 + 1e-12
    out = np.empty((grid.num_bands, spectra.shape[0]))
    for b, (lo, hi) in enumerate(grid.band_bins):
        lo2 = max(lo - 1, 0)  # a bin either side: a one-bin band has a flatness too
        hi2 = min(hi + 1, p.shape[1])
        band = p[:, lo2:hi2]
        gm = np.exp(np.mean(np.log(band), axis=1))
        am = band.mean(axis=1)
        sfm_db = 10 * np.log10(gm / am)
        out[b] = np.clip(sfm_db / SFM_TONAL_DB, 0.0, 1.0)
    if out.shape[1] >= 3:  # flatness of a few bins is noisy: smooth over three slots
        padded = np.pad(out, ((0, 0), (1, 1)), mode="edge")
        out = (padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]) / 3
    return out


def masking(spectra: np.ndarray, power: np.ndarray, grid: EnvelopeGrid,
            bits_per_sample: int) -> Masking:
    """The model of the module docstring. ``spectra`` (slots, bins) and ``power`` (bands,
    slots): the STFT and band powers of the *original* signal on the grid."""
    bands, slots = power.shape
    tone = tonality(spectra, grid)
    z = erb_rate(grid.band_centres())
    dz = z[:, None] - z[None, :]  # target minus masker
    spread_db = np.where(dz < 0, SPREAD_DOWN_DB * dz, -SPREAD_UP_DB * dz)
    spread = 10.0 ** (spread_db / 10.0)  # (target, masker)
    offset_db = tone * (TONE_OFFSET_DB + z[:, None]) + (1 - tone) * NOISE_OFFSET_DB
    masker = power * 10.0 ** (-offset_db / 10.0)
    thr = spread @ masker  # (bands, slots)
    # Forward masking: the threshold falls at most so fast after a loud slot.
    step = 10.0 ** (-POST_MASK_DB_PER_MS * grid.hop / grid.sample_rate * 1000 / 10.0)
    for t in range(1, slots):
        thr[:, t] = np.maximum(thr[:, t], thr[:, t - 1] * step)
    if slots > 1:  # one slot of backward masking, 20 dB down
        thr[:, :-1] = np.maximum(thr[:, :-1], thr[:, 1:] * 0.01)
    # Threshold in quiet: full scale (a sine at the clipping level) is FULL_SCALE_SPL.
    # A signal of power P in a band of k bins has a mean |X|^2 of N * mean(w^2) * P / k
    # per bin (N the window length, mean(w^2) = 1/2 for the sine window).
    full = (2.0 ** (bits_per_sample - 1)) ** 2 / 2  # power of a full-scale sine
    widths = np.array([hi - lo for lo, hi in grid.band_bins], np.float64)
    quiet = full * grid.window_length * 0.5 / widths * 10.0 ** (
        (threshold_in_quiet_db(grid.band_centres()) - FULL_SCALE_SPL) / 10.0)
    thr = np.maximum(thr, quiet[:, None])
    return Masking(thr, tone)
