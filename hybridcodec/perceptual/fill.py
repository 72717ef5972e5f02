"""The decoder's fill: a lossy tier's output brought to its coded band energies.

A lower tier leaves bands (or stretches of a band) out, and codes others coarsely. The
decoder synthesises the wavelet bands it has, then runs this post-processor on the PCM of
every output channel, on the envelope's STFT grid (:mod:`.grid`):

* a band the tier does not code in a slot is replaced by noise at the band's coded energy
  (the wavelet synthesis leaves only leakage and images of the octave below there);
* a coded band whose decoded energy exceeds its coded energy by more than ``TOLERANCE_DB``
  (quantisation noise in a quiet band) is scaled down to it, and one that falls more than
  ``HOLE_DB`` short (the soft edge of a dropped octave next to it, or coefficients the
  tier quantised to zero) gets noise for the difference; both margins are at least half
  the band's quantisation step plus 0.5 dB.

Overlap-added noise frames do not land exactly on their targets (each window also sees
its neighbours' noise), so filled bands are corrected ``ITERATIONS``
times: the output is analysed again and every filled band of every slot rescaled to its
target. With ``shape`` the decoder's own content of an uncoded band (the prior's mean,
drawn from the band above) is kept and levelled like a coded band, noise making up what
it lacks; with ``noise`` off nothing is added (bands are only brought down).

The windows overlap across frame boundaries and the fill is one continuous process over
the stream, so there is no seam at a frame boundary. Output lags the input by two hops;
:meth:`EnvelopeFill.finish` returns the rest. The noise comes from a generator per frame
and channel seeded by (seed, frame index, channel), so a decode is reproducible, and a
decode that starts at frame k gives frame k's noise.
"""

from __future__ import annotations

import numpy as np

from .envelope import EnvelopeCoder
from .grid import EnvelopeGrid
from .seams import join, join_length

TOLERANCE_DB = 1.0
HOLE_DB = 1.0
ITERATIONS = 2
# Noise synthesised in one window and overlap-added with the sine window keeps half the
# power of a windowed signal with the same spectrum (the sum of w**2 over the overlaps is
# 1, the mean of w**2 over one window 1/2): the fill's power is doubled to match.
NOISE_GAIN = 2.0


class EnvelopeFill:
    """Streaming post-processor for one decoded stream (see the module docstring).

    ``push(pcm, q, coded, frame_index, edges)`` takes a frame's decoded PCM (n, channels)
    as floats, its envelope ``q`` (channels, bands, slots of the frame), ``coded``
    (bands, slots): how many precision groups the tier codes there (0: none, 1: the
    anchor only, which the level correction applies to), and whether its first and its
    last samples are decoded exactly (the join with the neighbouring frame,
    :mod:`.seams`, then keeps them); it returns the output samples that are complete. Frames are pushed in order, from the frame that starts at sample
    ``start``.
    """

    def __init__(self, grid: EnvelopeGrid, coder: EnvelopeCoder, channels: int,
                 total: int, seed: int = 0, start: int = 0, shape: bool = False,
                 noise: bool = True) -> None:
        self.grid, self.coder, self.total = grid, coder, total
        self.channels = channels
        self.seed = seed
        self.shape = shape  # uncoded bands keep the decoded structure, levelled
        self.noise = noise  # False: nothing is added, bands are only brought down
        # A band's coded energy is only known to half its quantisation step: the
        # tolerances grow with the step of the band.
        margin = np.maximum(coder.step_db() / 2 + 0.5, TOLERANCE_DB)
        self.high = 10.0 ** (np.maximum(margin, TOLERANCE_DB) / 10.0)
        self.low = 10.0 ** (np.maximum(margin, HOLE_DB) / 10.0)
        h = grid.hop
        self.next_slot = -(-start // h)  # first slot not yet processed
        self.origin = (self.next_slot - 1) * h  # stream sample of x_buf[0] and y_acc[0]
        self.x_buf = np.zeros((max(start - self.origin, 0), channels))
        self.y_acc = np.zeros((self.x_buf.shape[0] + 2 * h, channels))
        self.emitted = start  # next output sample
        self.pushed = start
        self.pending: list[tuple[np.ndarray, np.ndarray, list]] = []  # per frame
        self.pending_slots = 0
        self._prev_exact: bool | None = None  # the last frame pushed ends exactly
        self._join = join_length(grid.sample_rate, h)
        lo = np.array([a for a, _ in grid.band_bins])
        self._starts = lo
        self._widths = np.array([b - a for a, b in grid.band_bins], np.float64)
        self._bin_band = np.full(h + 1, -1, np.int64)
        for b, (a, c) in enumerate(grid.band_bins):
            self._bin_band[a:c] = b
        self._in_band = self._bin_band >= 0
        # For shaping noise inside a band: every bin's position between the band
        # centres around it (log-target interpolation).
        centres = np.array([(a + c - 1) / 2 for a, c in grid.band_bins])
        bins = np.arange(h + 1, dtype=np.float64)
        right = np.clip(np.searchsorted(centres, bins), 1, max(len(centres) - 1, 1))
        left = right - 1
        span = np.maximum(centres[right] - centres[left], 1e-9) if len(centres) > 1 else \
            np.ones_like(bins)
        self._interp = (np.minimum(left, len(centres) - 1), np.minimum(right, len(centres) - 1),
                        np.clip((bins - centres[left]) / span, 0.0, 1.0)
                        if len(centres) > 1 else np.zeros_like(bins))

    def push(self, pcm: np.ndarray, q: np.ndarray, coded: np.ndarray,
             frame_index: int, edges: tuple[bool, bool] = (False, False)) -> np.ndarray:
        pcm = np.array(pcm, np.float64)
        if self._prev_exact is not None and self.x_buf.shape[0] and pcm.shape[0]:
            # the previous frame's last hop is not analysed yet: join the two here
            tail, head = join(self.x_buf, pcm, self._join, self._prev_exact, edges[0])
            if tail.shape[0]:
                self.x_buf[-tail.shape[0]:] = tail
                pcm[:head.shape[0]] = head
        self._prev_exact = edges[1]
        self.x_buf = np.concatenate([self.x_buf, pcm], axis=0)
        self.pushed += pcm.shape[0]
        gens = [np.random.default_rng([self.seed, frame_index, c]) for c in range(self.channels)]
        self.pending.append((np.asarray(q), np.asarray(coded, np.int64), gens))
        return self._run(final=self.pushed >= self.total)

    def finish(self) -> np.ndarray:
        """The remaining output (after the last frame)."""
        return self._run(final=True)

    # -- internals -----------------------------------------------------------------
    def _run(self, final: bool) -> np.ndarray:
        h = self.grid.hop
        # Slots whose whole window is decoded (all of them at the end of the stream).
        while self.pending:
            q, coded, gens = self.pending[0]
            limit = q.shape[2] if final else min(q.shape[2],
                                                 self.pushed // h - 1 - self.next_slot)
            if limit <= 0:
                break
            self._process(q[:, :, :limit], coded[:, :limit], gens)
            if limit == q.shape[2]:
                self.pending.pop(0)
            else:
                self.pending[0] = (q[:, :, limit:], coded[:, limit:], gens)
                break
        # Sample m is complete once both slots covering it (m // H and m // H + 1) are in.
        done = min((self.next_slot - 1) * h if not final else self.total, self.total)
        count = max(done - self.emitted, 0)
        lo = self.emitted - self.origin
        out = self.y_acc[lo: lo + count].copy()
        self.emitted += count
        cut = max(min((self.next_slot - 1) * h, self.emitted) - self.origin, 0)
        if cut:
            self.x_buf = self.x_buf[cut:]
            self.y_acc = self.y_acc[cut:]
            self.origin += cut
        return out if out.size else np.zeros((0, self.channels))

    def _band_mean(self, power: np.ndarray) -> np.ndarray:
        """(slots, bands) mean over each band's bins of (slots, bins) powers."""
        return np.add.reduceat(power[:, self._in_band], self._band_offsets(), axis=1) / \
            self._widths

    def _shape(self, target: np.ndarray) -> np.ndarray:
        """(slots, bins) amplitude shape of the fill inside each band: the coded band
        energies interpolated (in dB) between band centres, so the fill follows the
        spectral slope instead of stepping at band edges, where a flat band next to a
        much louder one would take on the louder one's level through the window's
        leakage. Outside the bands: 1."""
        left, right, frac = self._interp
        log_t = np.log(np.maximum(target, 1e-30))
        curve = np.exp(0.5 * ((1 - frac) * log_t[:, left] + frac * log_t[:, right]))
        curve[:, ~self._in_band] = 1.0
        return curve

    def _band_offsets(self) -> np.ndarray:
        return self._starts - self._starts[0]

    def _expand(self, per_band: np.ndarray, outside: float = 1.0) -> np.ndarray:
        """(slots, bands) -> (slots, bins), ``outside`` for bins in no band."""
        out = np.full((per_band.shape[0], self._bin_band.size), outside)
        out[:, self._in_band] = per_band[:, self._bin_band[self._in_band]]
        return out

    def _process(self, q: np.ndarray, coded: np.ndarray, gens: list) -> None:
        h, n = self.grid.hop, self.grid.window_length
        count = q.shape[2]
        t0 = self.next_slot
        need = (t0 + count + 1) * h - self.origin
        for name in ("x_buf", "y_acc"):
            buf = getattr(self, name)
            if buf.shape[0] < need:
                setattr(self, name, np.concatenate(
                    [buf, np.zeros((need - buf.shape[0], self.channels))], axis=0))
        w = self.grid.window
        starts = (np.arange(t0, t0 + count) - 1) * h - self.origin
        idx = starts[:, None] + np.arange(n)[None, :]
        uncoded = coded.T == 0  # (slots, bands)
        # What can put a coded band off its level: an anchor's noise, and the soft edge
        # of a wavelet octave the tier leaves out next to it (its share of the band is
        # missing). Bands coded finer and away from a gap are left alone.
        gap = np.zeros_like(uncoded)
        for shift in (-2, -1, 1, 2):
            moved = np.roll(uncoded, shift, axis=1)
            if shift > 0:
                moved[:, :shift] = False
            else:
                moved[:, shift:] = False
            gap |= moved
        coarse_only = (coded.T == 1) | (~uncoded & gap)
        fill_bins = self._expand(uncoded.astype(np.float64)) > 0.5
        fill_bins[:, ~self._in_band] = False
        region = slice(starts[0], starts[-1] + n)
        for c in range(self.channels):
            target = self.coder.power(q[c]).T  # (slots, bands)
            spec = np.fft.rfft(self.x_buf[idx, c] * w, axis=1)
            decoded = self._band_mean(np.abs(spec) ** 2)
            noise = gens[c].standard_normal((2, count, h + 1))
            noise = (noise[0] + 1j * noise[1]) * self._shape(target)
            pn = self._band_mean(np.abs(noise) ** 2)
            # coded bands: scale down where too loud, add noise for a hole
            graded = coarse_only | (uncoded & self.shape)
            # Compared over three slots: one slot's power fluctuates (a few bins, one
            # window), and a decimated band's target is the mean of several slots.
            dec_s, tgt_s = _smooth(decoded), _smooth(target)
            loud = graded & (dec_s > tgt_s * self.high)
            hole = graded & (dec_s * self.low < tgt_s)
            # only where loud (dec_s > 0 there): elsewhere the ratio could overflow
            scale = np.sqrt(np.divide(tgt_s, dec_s, out=np.ones_like(dec_s), where=loud))
            add = np.where(hole, NOISE_GAIN * np.maximum(tgt_s - dec_s, 0.0), 0.0)
            if not self.shape:
                add = np.where(uncoded, NOISE_GAIN * target, add)
            if not self.noise:
                add = np.zeros_like(add)
            keep = np.where(uncoded & ~self.shape, 0.0, scale)
            spec = spec * self._expand(keep) + noise * self._expand(
                np.sqrt(add / np.maximum(pn, 1e-300)), outside=0.0)
            base = self.y_acc[region, c].copy()
            for _ in range(ITERATIONS if self.noise else 0):
                out = base.copy()
                frames = np.fft.irfft(spec, n, axis=1) * w
                for k in range(count):
                    out[starts[k] - starts[0]: starts[k] - starts[0] + n] += frames[k]
                local = idx - starts[0]
                again = np.fft.rfft(out[local] * w, axis=1)
                got = self._band_mean(np.abs(again) ** 2)
                gain = np.where(uncoded, np.sqrt(target / np.maximum(got, 1e-300)), 1.0)
                gain[-1] = 1.0  # its next neighbour is not synthesised yet
                g = self._expand(gain)
                spec = np.where(fill_bins, again * g, spec)
            frames = np.fft.irfft(spec, n, axis=1) * w
            for k in range(count):
                self.y_acc[starts[k]: starts[k] + n, c] += frames[k]
        self.next_slot = t0 + count


def _smooth(p: np.ndarray) -> np.ndarray:
    """(slots, bands) powers averaged with the slot before and after (edges repeated)."""
    if p.shape[0] < 2:
        return p
    padded = np.concatenate([p[:1], p, p[-1:]], axis=0)
    return (padded[:-2] + padded[1:-1] + padded[2:]) / 3
