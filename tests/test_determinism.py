"""Deterministic arithmetic on the coding path (DESIGN.md, "Non-negotiables").

Encoder and decoder must compute identical lifting steps, prior means and cascade
predictions whatever the thread count: one differing rounding breaks the stream. These
tests code the same audio in this process and in fresh processes with OMP / MKL / NUMBA
thread settings varied, and require identical bytes and identical decoded PCM. The
children also prove that the coding path never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hybridcodec
from hybridcodec.framecodec import decode_frame, encode_frame
from hybridcodec.model import load_model

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "corpus"
MODEL, MODEL_ID = load_model(None)
FRAME = MODEL.config.frame_length


def _signal(n: int, channels: int, seed: int) -> np.ndarray:
    """Music-like 16-bit PCM with transients and a loud noisy burst (large residuals)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None] / 44100.0
    f = 220.0 * (1.26 ** np.arange(channels))[None, :]
    x = 8000 * np.sin(2 * np.pi * f * t) + 3000 * np.sin(2 * np.pi * 5.1 * f * t)
    x += rng.normal(0, 200, size=(n, channels))
    x[n // 3: n // 3 + n // 10] += rng.normal(0, 9000, size=(n // 10, channels))
    return np.clip(np.round(x), -32768, 32767).astype(np.int64)


def _layers_digest(layers) -> str:
    h = hashlib.sha256()
    for k, payload in layers:
        h.update(k.to_bytes(1, "little") + len(payload).to_bytes(4, "little") + payload)
    return h.hexdigest()


def _pcm_digest(pcm: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pcm, "<i8").tobytes()).hexdigest()


@pytest.fixture(scope="module")
def frame_pcm() -> np.ndarray:
    return _signal(FRAME, 2, 1)


# --------------------------------------------------------------------------- in process


def test_frame_roundtrip_in_process(frame_pcm):
    layers = encode_frame(MODEL, frame_pcm)
    pcm = decode_frame(MODEL, dict(layers), len(frame_pcm), frame_pcm.shape[1])
    assert np.array_equal(pcm, frame_pcm)
    three = _signal(FRAME // 2 + 5, 3, 2)
    assert np.array_equal(decode_frame(MODEL, dict(encode_frame(MODEL, three)), len(three), 3),
                          three)


def test_repeated_encode_in_process_is_identical(frame_pcm):
    a = encode_frame(MODEL, frame_pcm)
    b = encode_frame(MODEL, frame_pcm.copy())
    assert a == b


# --------------------------------------------------------------------------- subprocesses

_CHILD = r"""
import hashlib, json, sys
import numpy as np
import hybridcodec
from hybridcodec.framecodec import decode_frame, encode_frame
from hybridcodec.model import load_model

job = json.loads(sys.argv[1])
model, model_id = load_model(None)
with np.load(job["npz"]) as z:
    pcm = z["pcm"]
    parent_layers = {int(k[len("layer"):]): z[k].tobytes() for k in z.files if k.startswith("layer")}
layers = encode_frame(model, pcm)
h = hashlib.sha256()
for k, payload in layers:
    h.update(k.to_bytes(1, "little") + len(payload).to_bytes(4, "little") + payload)
decoded = decode_frame(model, parent_layers, len(pcm), pcm.shape[1])
hybridcodec.encode(job["wav"], job["hyb"])
hybridcodec.decode(job["parent_hyb"], job["out_wav"])
print(json.dumps({
    "model_id": model_id,
    "torch_loaded": "torch" in sys.modules,
    "encode": h.hexdigest(),
    "decode": hashlib.sha256(np.ascontiguousarray(decoded, "<i8").tobytes()).hexdigest(),
}))
"""

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _run_child(tmp_path: Path, tag: str, env_threads: dict, npz: Path, wav: Path,
               parent_hyb: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    env.update({k: str(v) for k, v in env_threads.items()})
    job = {"npz": str(npz), "wav": str(wav), "hyb": str(tmp_path / f"{tag}.hyb"),
           "parent_hyb": str(parent_hyb), "out_wav": str(tmp_path / f"{tag}.wav")}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(job)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_subprocess_thread_settings_identical(tmp_path, frame_pcm):
    # Parent: frame bytes, a stereo 16-bit WAV of 1.5 frames and its .hyb.
    layers = encode_frame(MODEL, frame_pcm)
    npz = tmp_path / "job.npz"
    np.savez(npz, pcm=frame_pcm,
             **{f"layer{k}": np.frombuffer(p, np.uint8) for k, p in layers})
    wav = tmp_path / "in.wav"
    audio = _signal(FRAME + FRAME // 2, 2, 3)
    sf.write(wav, audio.astype(np.int16), 44100, subtype="PCM_16")
    parent_hyb = tmp_path / "parent.hyb"
    hybridcodec.encode(wav, parent_hyb)

    configs = {
        "one": ({"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1,
                 "NUMBA_NUM_THREADS": 1}),
        "two": ({"OMP_NUM_THREADS": 2, "MKL_NUM_THREADS": 2, "OPENBLAS_NUM_THREADS": 2,
                 "NUMBA_NUM_THREADS": 2}),
    }
    results = {tag: _run_child(tmp_path, tag, env, npz, wav, parent_hyb)
               for tag, env in configs.items()}
    assert not any(r["torch_loaded"] for r in results.values())  # the coder is torch-free

    expected_encode = _layers_digest(layers)
    expected_decode = _pcm_digest(frame_pcm)
    for tag, r in results.items():
        assert r["model_id"] == MODEL_ID, tag
        assert r["encode"] == expected_encode, f"{tag}: frame bytes differ from the parent's"
        assert r["decode"] == expected_decode, f"{tag}: decoded PCM differs"
        # Whole files: the child's .hyb equals the parent's byte for byte, and the
        # child's decode of the parent's .hyb is the input audio.
        assert (tmp_path / f"{tag}.hyb").read_bytes() == parent_hyb.read_bytes(), tag
        out, _ = sf.read(tmp_path / f"{tag}.wav", dtype="int16", always_2d=True)
        assert np.array_equal(out, audio), tag


# --------------------------------------------------------------------------- whole files


def _excerpt(tmp_path: Path) -> Path:
    """~1.5 s of a real stereo corpus file (or a synthetic stand-in) as a WAV."""
    src = CORPUS / "music" / "cellar-01.flac"
    if src.is_file():
        info = sf.info(src)
        data, rate = sf.read(src, frames=int(1.5 * info.samplerate), dtype="int32",
                             always_2d=True)
        path = tmp_path / "excerpt.wav"
        sf.write(path, data, rate, subtype=info.subtype)
        return path
    path = tmp_path / "synthetic.wav"
    sf.write(path, _signal(66000, 2, 4).astype(np.int16), 44100, subtype="PCM_16")
    return path


def test_two_encodes_of_a_file_are_identical(tmp_path):
    src = _excerpt(tmp_path)
    hybridcodec.encode(src, tmp_path / "a.hyb")
    hybridcodec.encode(src, tmp_path / "b.hyb")
    a, b = (tmp_path / "a.hyb").read_bytes(), (tmp_path / "b.hyb").read_bytes()
    assert len(a) > 100 and a == b
    # ... and decoding twice gives byte-identical files too.
    hybridcodec.decode(tmp_path / "a.hyb", tmp_path / "a.wav")
    hybridcodec.decode(tmp_path / "b.hyb", tmp_path / "b.wav")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    x, _ = sf.read(src, dtype="int32")
    y, _ = sf.read(tmp_path / "a.wav", dtype="int32")
    assert np.array_equal(x, y)
