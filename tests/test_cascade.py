"""The cascade's OLS and MIX stages (hybridcodec.cascade).

For every mode the kernel must be an exact inverse (forward residuals -> inverse gives the
values back; the closed loop's anchor is what a decoder holding only the anchor layer
rebuilds), stay inside int64 for any input (clamped to CLAMP), give the same integers in
every process, and leave the stages of model format 2 (NLMS, sign-LMS) untouched: a
stream of the shipped model decodes as before (tests/test_golden.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hybridcodec import cascade as cm
from hybridcodec.cascade import MIX, NLMS, OLS, SIGN_LMS, Cascade, check_stages
from hybridcodec.framecodec import decode_frame, encode_frame
from hybridcodec.model import HybridModel, ModelConfig, load_model, validate_config

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "corpus"

DETAIL = [[OLS, 4, 8], [NLMS, 64, 26], [NLMS, 16, 26], [MIX, 0, 64]]
COARSE = [[OLS, 16, 8], [NLMS, 32, 26], [NLMS, 16, 26], [SIGN_LMS, 16, 8], [MIX, 0, 64]]

CONFIGS = {
    "ols-first": DETAIL,
    "ols-coarse": COARSE,
    "ols-features-only": [[OLS, 0, 6], [NLMS, 16, 26]],
    "ols-second": [[NLMS, 32, 26], [OLS, 8, 9], [SIGN_LMS, 16, 8]],
    "two-ols": [[OLS, 2, 7], [OLS, 24, 12], [MIX, 0, 4096]],
    "ols-alone": [[OLS, 24, 4]],
    "mix": [[NLMS, 64, 26], [NLMS, 16, 26], [SIGN_LMS, 16, 8], [MIX, 0, 64]],
}


def candidate_model() -> HybridModel:
    """The shipped model with the OLS / MIX cascades (its own, since model 966f00cb4bbff40b),
    through its model-file bytes."""
    base, _ = load_model(None)
    cfg = dict(json.loads(json.dumps(base.config.__dict__)))
    cfg.update(detail_cascade=DETAIL, coarse_cascade=COARSE)
    model = HybridModel(ModelConfig(**cfg))
    model.load_integer_state(base.integer_state())
    return HybridModel.from_bytes(model.to_bytes())


def _signals(n: int = 5000):
    rng = np.random.default_rng(7)
    t = np.arange(n)
    smooth = np.cumsum(rng.normal(0, 300, n)).astype(np.int64)
    burst = np.zeros(n, np.int64)
    burst[n // 3: n // 3 + 700] = rng.integers(-(1 << 26), 1 << 26, 700)
    return {
        "noise": rng.integers(-30000, 30000, n),
        "tone": np.round(20000 * np.sin(0.05 * t) + rng.normal(0, 3, n)).astype(np.int64),
        "smooth": smooth,
        "silence-burst-silence": burst,
        "clamp-extremes": np.where(t % 3 == 0, (1 << 40), -(1 << 40)).astype(np.int64),
        "full-scale-24": np.where((t // 7) % 2 == 0, (1 << 25) - 1, -(1 << 25)),
        "impulses": np.where(t % 501 == 0, 1 << 27, 0).astype(np.int64),
        "quiet": rng.integers(-1, 2, n),
        "zeros": np.zeros(n, np.int64),
    }


def _features(values: np.ndarray, nf: int) -> np.ndarray:
    """Side features like the coder's: a 'prior mean', a neighbour and a loud window."""
    rng = np.random.default_rng(nf)
    cols = [np.clip(values // 2 + rng.integers(-50, 50, values.size), -(1 << 30), 1 << 30)]
    shifted = np.concatenate([[0], values[:-1]])
    for k in range(1, nf):
        cols.append(np.roll(shifted, k) * (3 if k % 2 else -1))
    return np.stack(cols, axis=1).astype(np.int64)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("nf", [1, 4, 10])
def test_forward_inverse_exact(name, nf):
    cascade = Cascade(CONFIGS[name], feature_mu=12)
    for sig, values in _signals().items():
        values = np.asarray(values, np.int64)
        feats = _features(values, nf)
        r = cascade.residuals(values, feats)
        assert np.array_equal(cascade.reconstruct(r, feats), values), (name, sig)
        if sig in ("noise", "tone", "smooth"):
            assert np.abs(r).mean() <= np.abs(values).mean() * 1.5, (name, sig)


def test_ols_predicts_a_linear_mix_of_features_nearly_exactly():
    rng = np.random.default_rng(3)
    n = 8000
    feats = rng.integers(-20000, 20000, (n, 5)).astype(np.int64)
    values = (3 * feats[:, 1] - feats[:, 2] // 2 + feats[:, 4] // 4
              + rng.integers(-2, 3, n)).astype(np.int64)
    r = Cascade([[OLS, 2, 8]]).residuals(values, feats)
    # The noise is +-2; the ridge (2**-10 of each energy) shrinks the weights by ~0.1 %.
    assert np.abs(r[2000:]).mean() < 3 + 1e-3 * np.abs(values).mean()


def test_mix_only_combines():
    """MIX changes the residual, never the stages' own inputs."""
    values = _signals()["tone"]
    feats = _features(values, 4)
    plain = Cascade(CONFIGS["mix"][:-1], 12)
    mixed = Cascade(CONFIGS["mix"], 12)
    assert not np.array_equal(plain.residuals(values, feats), mixed.residuals(values, feats))
    assert np.array_equal(mixed.reconstruct(mixed.residuals(values, feats), feats), values)


def _python_run(cascade: Cascade, values, feats, mode, shifts, halfwidths, anchor):
    """The kernel run as plain Python on int64 scalars, every overflow an error."""
    names = ["_clamp", "_bit_length", "_nlms_step", "_ols_decay", "_shift", "_ols_rescale",
             "_ols_top", "_ols_block", "_ols_solve"]
    saved = {k: getattr(cm, k) for k in names}
    try:
        for k in names:
            setattr(cm, k, saved[k].py_func)
        with warnings.catch_warnings(), np.errstate(all="raise"):
            warnings.simplefilter("error")
            return cm._run.py_func(values, feats, cascade._kinds, cascade._orders,
                                   cascade._mus, cascade.feature_mu, mode, shifts,
                                   halfwidths, anchor)
    finally:
        for k, v in saved.items():
            setattr(cm, k, v)


@pytest.mark.parametrize("sig", ["clamp-extremes", "full-scale-24", "silence-burst-silence",
                                 "impulses", "quiet"])
def test_no_overflow_and_python_agrees(sig):
    """Extreme inputs in pure Python (numpy raises on int64 overflow): same integers as the
    compiled kernel, so nothing wrapped around there either."""
    values = np.asarray(_signals(1200)[sig], np.int64)
    feats = _features(values, 10)
    feats[::5, 3] = 1 << 40  # beyond CLAMP
    cascade = Cascade([[OLS, 4, 4], [NLMS, 16, 26], [MIX, 0, 4096]], 12)
    zero = np.zeros(values.size, np.int64)
    out, _ = _python_run(cascade, values, feats, cm.FORWARD, zero, zero, 1)
    assert np.array_equal(np.asarray(out, np.int64), cascade.residuals(values, feats))


def test_closed_loop_anchor_is_what_the_decoder_rebuilds():
    """closed_loop's anchor values = reconstruct() of the anchor-bin residuals."""
    model = candidate_model()
    from hybridcodec.precision import PlaneTables

    values = _signals(6000)["tone"]
    feats = _features(values, 7)
    tables = model.tables
    per = np.full(values.size, 120, np.int64)
    per[1000:1500] = 0  # a silent block
    pt = PlaneTables(tables, 2)
    shifts, halfwidths = pt.shifts_for(per)
    cascade = Cascade(DETAIL, 12)
    r, anchor = cascade.closed_loop(values, feats, shifts, halfwidths, 2)
    t, _ = tables.symbol_index(r, per)
    esc = (t == 0) | (t == 2 * tables.halfwidth[per] + 2)
    j = (t - pt.origin[per]) >> 2
    r_anchor = np.where(esc, r, pt.anchor_residual(per, j))
    silent = per == 0
    assert np.array_equal(cascade.reconstruct(r_anchor, feats, silent), anchor)


def _corpus_frames():
    picks = [("music/cellar-01.flac", 0), ("music/cellar-29.flac", 1),
             ("music/cellar-40.flac", 0), ("instruments/piano.flac", 0),
             ("music/cellar-62.flac", 0)]
    out = []
    for name, frame in picks:
        path = CORPUS / name
        if not path.is_file():
            continue
        info = sf.info(str(path))
        n = 1 << 15
        start = min(frame * n, max(info.frames - n, 0))
        data, _ = sf.read(str(path), start=start, frames=n, dtype="int32", always_2d=True)
        shift = {"PCM_16": 16, "PCM_24": 8}.get(info.subtype, 16)
        out.append(pytest.param(data.astype(np.int64) >> shift, id=name.split("/")[1]))
    return out


@pytest.fixture(scope="module")
def model():
    return candidate_model()


@pytest.mark.parametrize("pcm", _corpus_frames())
def test_corpus_frames_encode_decode_exactly(model, pcm):
    layers = encode_frame(model, pcm)
    assert np.array_equal(decode_frame(model, dict(layers), len(pcm), pcm.shape[1]), pcm)
    # A lower tier (anchors of everything, nothing else) decodes, bounded.
    anchors = {k: p for k, p in layers if k < 5}
    low = decode_frame(model, anchors, len(pcm), pcm.shape[1], carried=5, bits=24)
    assert low.shape == pcm.shape


def test_synthetic_frame_shapes(model):
    rng = np.random.default_rng(5)
    for n, c in ((1, 1), (5, 2), (33, 3), (1000, 2), (4097, 1)):
        pcm = np.cumsum(rng.integers(-300, 301, (n, c)), axis=0).astype(np.int64)
        assert np.array_equal(decode_frame(model, dict(encode_frame(model, pcm)), n, c), pcm)
    loud = np.where(np.arange(3000)[:, None] % 2 == 0, (1 << 23) - 1, -(1 << 23))
    loud = np.repeat(loud, 2, axis=1).astype(np.int64)
    assert np.array_equal(decode_frame(model, dict(encode_frame(model, loud)), 3000, 2), loud)


# ------------------------------------------------------------------ determinism, pinned

def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, "<i8").tobytes())
    return h.hexdigest()[:16]


def _pinned_residuals() -> str:
    out = []
    for name in ("ols-first", "ols-coarse", "two-ols", "mix"):
        for sig in ("tone", "silence-burst-silence", "smooth"):
            values = np.asarray(_signals(3000)[sig], np.int64)
            out.append(Cascade(CONFIGS[name], 12).residuals(values, _features(values, 7)))
    return _digest(out)


# Changes only when the OLS / MIX arithmetic changes (then streams of a model using them
# change too): regenerate on purpose.
PINNED = "7637ca8944aa2cfa"


def test_pinned_residuals():
    assert _pinned_residuals() == PINNED


_CHILD = r"""
import sys, json
sys.path.insert(0, sys.argv[1])
import numpy as np
from tests.test_cascade import _pinned_residuals, candidate_model, _digest
from hybridcodec.framecodec import encode_frame
pcm = np.load(sys.argv[2])
layers = encode_frame(candidate_model(), pcm)
print(json.dumps({"pinned": _pinned_residuals(),
                  "frame": _digest([np.frombuffer(p, np.uint8) for _, p in layers])}))
"""


def test_fresh_processes_agree(tmp_path, model):
    rng = np.random.default_rng(11)
    pcm = np.cumsum(rng.integers(-500, 501, (20000, 2)), axis=0).astype(np.int64)
    np.save(tmp_path / "pcm.npy", pcm)
    mine = _digest([np.frombuffer(p, np.uint8) for _, p in encode_frame(model, pcm)])
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(REPO),
                               str(tmp_path / "pcm.npy")],
                              capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        assert got == {"pinned": PINNED, "frame": mine}


# ------------------------------------------------------------------ configuration

@pytest.mark.parametrize("stages", [
    [[MIX, 0, 64]],  # a MIX stage alone
    [[MIX, 0, 64], [NLMS, 16, 26]],  # MIX not last
    [[NLMS, 16, 26], [MIX, 0, 64], [MIX, 0, 64]],
    [[NLMS, 16, 26], [MIX, 4, 64]],  # MIX has no taps
    [[OLS, 25, 8]],  # order beyond 24
    [[OLS, 4, 3]], [[OLS, 4, 17]],  # forgetting shift outside 4..16
    [[7, 4, 8]],  # unknown kind
    [[NLMS, 1025, 26]], [[SIGN_LMS, 16, 5000]],
])
def test_bad_stages_are_refused(stages):
    with pytest.raises(ValueError):
        check_stages(stages)
    cfg = ModelConfig(detail_cascade=stages)
    with pytest.raises(ValueError):
        validate_config(cfg)


def test_model_file_with_new_stages_round_trips(model):
    again = HybridModel.from_bytes(model.to_bytes())
    assert again.config.detail_cascade == DETAIL and again.config.coarse_cascade == COARSE
    shipped, _ = load_model(None)
    # the shipped default runs exactly these cascades (so the tests here cover it)
    assert shipped.config.detail_cascade == DETAIL and shipped.config.coarse_cascade == COARSE
