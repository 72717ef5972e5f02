"""Frame boundaries of a lossy decode: joined without a step (hybridcodec.perceptual.seams)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfiltfilt

import hybridcodec
from hybridcodec.perceptual.seams import has_step, join
from hybridcodec.truncation import truncate_file

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus"
FRAME = 1 << 17


def _tone(n: int, start: int = 0) -> np.ndarray:
    t = np.arange(start, start + n)
    return 8000 * np.sin(2 * np.pi * 440 * t / 44100) + 3000 * np.sin(2 * np.pi * 1250 * t / 44100)


def test_a_step_is_joined_and_exact_sides_are_kept():
    left = _tone(4096)[:, None]
    right = _tone(4096, 4096)[:, None]
    bad_left = left.copy()
    bad_left[-40:, 0] = bad_left[-40, 0]  # the held edge of a frame that lost its detail
    assert has_step(bad_left[:, 0], right[:, 0])
    assert not has_step(left[:, 0], right[:, 0])
    tail, head = join(bad_left, right, 64, left_exact=False, right_exact=True)
    assert np.array_equal(head, right[:64])  # the exact side is not touched
    # the joined tail ends where the signal was going (the right side continued back)
    assert abs(tail[-1, 0] - left[-1, 0]) < 0.05 * abs(bad_left[-1, 0] - left[-1, 0])
    assert np.abs(tail[:, 0] - left[-64:, 0]).max() < np.abs(bad_left[-64:, 0] - left[-64:, 0]).max()
    # two exact sides, or two sides that meet smoothly, are left alone
    for pair in ((True, True), (False, False)):
        t2, h2 = join(left, right, 64, *pair)
        assert np.array_equal(t2, left[-64:]) and np.array_equal(h2, right[:64])


def _seam_db(x: np.ndarray, rate: int, b: int) -> float:
    sos = butter(8, 8000, "highpass", fs=rate, output="sos")
    h = sosfiltfilt(sos, x.astype(np.float64), axis=0)
    near, around = int(0.002 * rate), int(0.010 * rate)
    inner = (h[b - near: b + near] ** 2).mean()
    outer = np.concatenate([h[b - around: b - near], h[b + near: b + around]])
    return 10 * math.log10((inner + 1e-30) / ((outer ** 2).mean() + 1e-30))


@pytest.mark.skipif(not (CORPUS / "instruments" / "sax-phrase.flac").exists(),
                    reason="corpus not available")
def test_sax_at_64_kbits_has_no_click_at_its_frame_boundaries(tmp_path):
    """A solo saxophone whose frame ends are coded coarsely and the next frame's start
    exactly: the decode's energy above 8 kHz within 2 ms of each boundary stays within
    3 dB of the 20 ms around it (without the join: +26 dB at the first boundary)."""
    x, rate = sf.read(CORPUS / "instruments" / "sax-phrase.flac", dtype="int16",
                      always_2d=True, frames=3 * FRAME)
    src = tmp_path / "sax.wav"
    sf.write(src, x, rate, subtype="PCM_16")
    full, cut, out = tmp_path / "sax.hyb", tmp_path / "sax64.hyb", tmp_path / "sax64.wav"
    hybridcodec.encode(src, full)
    truncate_file(full, cut, kbps=64)
    hybridcodec.decode(cut, out)
    y, _ = sf.read(out, dtype="int16", always_2d=True)
    for b in range(FRAME, len(y) - 1000, FRAME):
        assert _seam_db(y, rate, b) <= 3.0, b
