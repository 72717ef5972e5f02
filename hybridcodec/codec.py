"""File-level encode / decode: frames, MD5, container, model check, atomic output.

This is the public entry point of the library (re-exported as ``hybridcodec.encode`` and
``hybridcodec.decode``). Audio is read and written one frame at a time, so memory stays
bounded whatever the file length.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable

import numpy as np
import torch

from .atomic import atomic_output
from .audio_io import AudioInfo, open_audio, open_audio_writer
from .container import (Frame, StreamFooter, StreamHeader, StreamReader, read_stream_layout,
                        write_footer, write_frame, write_header)
from .errors import CorruptStreamError, InputFileError, ModelMismatchError
from .framecodec import decode_frame, encode_frame
from .model import load_model

Progress = Callable[[int, int], None]


@dataclass
class CodingReport:
    """What one encode or decode did (for the CLI's summary line and the benchmarks)."""

    input_bytes: int
    output_bytes: int
    num_samples: int
    sample_rate: int
    channels: int
    seconds: float


def single_threaded(fn):
    """Run a coding entry point with one torch thread, then restore the caller's setting.

    The exact nets are tiny convolutions: extra intra-op threads only fight each other
    (10x slower on a loaded 2-core machine). Results are identical either way, since
    the exact path does not depend on summation order.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)
    return wrapper


def pcm_bytes(pcm: np.ndarray, bits: int) -> bytes:
    """PCM as little-endian signed integers of whole bytes, interleaved (what the MD5 covers)."""
    if bits <= 8:
        return pcm.astype(np.int8).tobytes()
    if bits <= 16:
        return pcm.astype("<i2").tobytes()
    return pcm.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


@single_threaded
def encode_file(src: str | os.PathLike, dst: str | os.PathLike, *, model: str | None = None,
                overwrite: bool = False, progress: Progress | None = None) -> CodingReport:
    """Encode an audio file (WAV/FLAC/AIFF, integer PCM) losslessly into a .hyb stream."""
    start = time.perf_counter()
    net, model_id = load_model(model)
    cfg = net.config
    with open_audio(src) as reader:
        info = reader.info
        header = StreamHeader(
            sample_rate=info.sample_rate, channels=info.channels,
            bits_per_sample=info.bits_per_sample, subtype=info.subtype,
            source_format=info.source_format, num_samples=info.num_samples,
            frame_length=cfg.frame_length, model_id=model_id, levels=cfg.levels,
            num_layers=cfg.levels + 1)
        md5 = hashlib.md5()
        with atomic_output(dst, overwrite=overwrite) as fp:
            write_header(fp, header)
            done = 0
            for index in range(header.num_frames):
                pcm = reader.read(cfg.frame_length)
                if len(pcm) != header.frame_num_samples(index):
                    raise InputFileError(f"{os.fspath(src)}: audio ends after {done + len(pcm)} "
                                         f"of {info.num_samples} declared samples")
                md5.update(pcm_bytes(pcm, info.bits_per_sample))
                write_frame(fp, Frame(index, len(pcm), tuple(encode_frame(net, pcm))))
                done += len(pcm)
                if progress:
                    progress(done, info.num_samples)
            write_footer(fp, StreamFooter(header.num_frames, info.num_samples, md5.digest()))
    return CodingReport(os.path.getsize(src), os.path.getsize(dst), info.num_samples,
                        info.sample_rate, info.channels, time.perf_counter() - start)


def _open_stream(src: str | os.PathLike) -> BinaryIO:
    try:
        return open(src, "rb")
    except IsADirectoryError:
        raise InputFileError(f"{os.fspath(src)}: is a directory") from None
    except OSError as exc:
        raise InputFileError(f"{os.fspath(src)}: cannot open: {exc.strerror or exc}") from None


def check_model(header: StreamHeader, model_id: str, model: str | None, src) -> None:
    """Refuse to decode with a model other than the one that coded the stream."""
    if header.model_id != model_id:
        given = "the embedded default model" if model is None else f"model {os.fspath(model)}"
        raise ModelMismatchError(
            f"{os.fspath(src)}: coded with model {header.model_id}, but {given} is "
            f"{model_id} (pass the right --model)")


@single_threaded
def decode_file(src: str | os.PathLike, dst: str | os.PathLike, *, model: str | None = None,
                overwrite: bool = False, progress: Progress | None = None) -> CodingReport:
    """Decode a .hyb stream to WAV/FLAC/AIFF (by ``dst``'s extension), verifying its MD5."""
    start = time.perf_counter()
    with _open_stream(src) as fp:
        stream = StreamReader(fp)
        header = stream.header
        net, model_id = load_model(model)
        check_model(header, model_id, model, src)
        if header.levels != net.config.levels or header.frame_length != net.config.frame_length:
            raise CorruptStreamError(f"{os.fspath(src)}: header disagrees with its model")
        info = AudioInfo(header.sample_rate, header.channels, header.num_samples,
                         header.bits_per_sample, header.subtype, header.source_format)
        md5 = hashlib.md5()
        lo, hi = -(1 << (header.bits_per_sample - 1)), 1 << (header.bits_per_sample - 1)
        with open_audio_writer(dst, info, overwrite=overwrite) as out:
            done = 0
            for frame in stream.frames():
                where = f"{os.fspath(src)}: frame {frame.index}"
                pcm = decode_frame(net, dict(frame.layers), frame.num_samples,
                                   header.channels, where)
                if pcm.size and (pcm.min() < lo or pcm.max() >= hi):
                    raise CorruptStreamError(f"{where}: decoded samples out of range")
                md5.update(pcm_bytes(pcm, header.bits_per_sample))
                out.write(pcm.astype(np.int32))
                done += frame.num_samples
                if progress:
                    progress(done, header.num_samples)
            if md5.digest() != stream.footer.md5:
                raise CorruptStreamError(f"{os.fspath(src)}: MD5 mismatch, decoded audio is wrong")
    return CodingReport(os.path.getsize(src), os.path.getsize(dst), header.num_samples,
                        header.sample_rate, header.channels, time.perf_counter() - start)


def describe_stream(src: str | os.PathLike) -> str:
    """Human-readable stream info, layer table and sizes (``hybridcodec info``)."""
    with _open_stream(src) as fp:
        layout = read_stream_layout(fp)
    h = layout.header
    seconds = h.num_samples / h.sample_rate
    pcm = h.num_samples * h.channels * (-(-h.bits_per_sample // 8))
    lines = [
        f"{os.fspath(src)}:",
        f"  format      hybridcodec stream, tier {h.tier}",
        f"  audio       {h.sample_rate} Hz, {h.channels} ch, {h.bits_per_sample}-bit "
        f"({h.subtype}, from {h.source_format}), {h.num_samples} samples, {seconds:.2f} s",
        f"  model       {h.model_id}, {h.levels} levels",
        f"  frames      {layout.num_frames} x {h.frame_length} samples",
        f"  md5         {layout.footer.md5.hex()}",
        f"  size        {layout.total_bytes} bytes"
        + (f", {100 * layout.total_bytes / pcm:.1f} % of PCM, "
           f"{8 * layout.total_bytes / seconds / 1000:.1f} kbit/s" if pcm else ""),
        "  layers:",
    ]
    for layer_id, nbytes in sorted(layout.layer_bytes.items()):
        what = "frame params + coarse band" if layer_id == 0 else \
            f"detail level {h.levels - layer_id + 1}"
        lines.append(f"    {layer_id:2d}  {what:28s} {nbytes:10d} bytes "
                     f"({100 * nbytes / max(layout.total_bytes, 1):5.1f} %)")
    lines.append(f"    --  container overhead           {layout.overhead_bytes:10d} bytes")
    return "\n".join(lines)
