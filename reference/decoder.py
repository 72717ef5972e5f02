"""Decode a whole lossless stream: container, model, payloads, MD5."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ans import Corrupt
from .container import read_stream
from .model import Model, load_models
from .payload import check_layered_v4, decode_layered, decode_segmented

DEFAULT_MODELS = Path(__file__).resolve().parents[1] / "hybridcodec" / "models"


@dataclass
class Decoded:
    pcm: np.ndarray  # int64, samples x channels
    sample_rate: int
    channels: int
    bits_per_sample: int
    version: int
    model_id: str
    md5: bytes  # the stream's
    md5_ok: bool  # the decoded PCM's MD5 is the stream's


def pcm_md5(pcm: np.ndarray, bits: int) -> bytes:
    """MD5 of the PCM as little-endian signed integers of bits rounded up to whole bytes,
    interleaved by channel ("MD5")."""
    width = (bits + 7) // 8
    flat = np.ascontiguousarray(pcm, np.int64).reshape(-1)
    raw = flat.astype("<i8").view(np.uint8).reshape(-1, 8)[:, :width]
    return hashlib.md5(np.ascontiguousarray(raw).tobytes()).digest()


def decode(path, models=None) -> Decoded:
    """Decode the lossless stream at ``path``. ``models``: a folder of model files, a
    {model id: Model} dict, or None (the folder of models hybridcodec ships, read as
    data: the stream names its model by id, computed here from each file)."""
    if models is None or isinstance(models, (str, Path)):
        models = load_models(models or DEFAULT_MODELS)
    stream = read_stream(Path(path).read_bytes())
    h = stream.header
    if not h.complete:
        raise Corrupt(f"not a lossless stream (tier {h.tier}): out of scope")
    if h.model_id not in models:
        raise Corrupt(f"no model file with id {h.model_id}")
    model: Model = models[h.model_id]
    # the header against the model ("Which payload a stream has")
    if h.levels != model.L or h.frame_length != model.config["frame_length"]:
        raise Corrupt("corrupt header: levels or frame length disagree with the model")
    if h.version == 4:
        if h.groups != model.G:
            raise Corrupt("corrupt header: groups disagree with the model")
        want = model.config["segment_length"] if model.payload == 4 else model.config["frame_length"]
        if h.segment_length != want:
            raise Corrupt("corrupt header: segment field disagrees with the model")
    else:
        if model.payload != 2:
            raise Corrupt("a payload 4 model in a version 1-3 stream")
        if h.num_layers > model.num_layers:
            raise Corrupt("corrupt header: more layers than the model has")
    C, bits = h.channels, h.bits_per_sample
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    out = []
    for fr in stream.frames:
        if model.payload == 2:
            layers = fr.layers if fr.units is None else check_layered_v4(model, fr.units)
            pcm = decode_layered(model, layers, fr.num_samples, C)
        else:
            last = fr.index == h.num_frames - 1
            pcm, _ = decode_segmented(model, fr.units, fr.num_samples, C, h.sample_rate, last)
        if pcm.size and (pcm.min() < lo or pcm.max() > hi):
            raise Corrupt(f"frame {fr.index}: a sample outside {bits} bits")
        out.append(pcm)
    pcm = np.concatenate(out) if out else np.zeros((0, C), np.int64)
    return Decoded(pcm=pcm, sample_rate=h.sample_rate, channels=C, bits_per_sample=bits,
                   version=h.version, model_id=h.model_id, md5=stream.md5,
                   md5_ok=pcm_md5(pcm, bits) == stream.md5)
