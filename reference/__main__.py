"""``python -m reference IN.hyb [OUT.wav] [--models DIR]``: decode a lossless stream with
the reference decoder, print its facts and whether the PCM has the stream's MD5, and
optionally write the PCM as a WAV file (standard library ``wave``)."""

from __future__ import annotations

import argparse
import sys
import time
import wave

import numpy as np

from . import Corrupt, ModelError, decode


def write_wav(path, pcm: np.ndarray, rate: int, bits: int) -> None:
    width = (bits + 7) // 8
    if width == 1:
        raw = (pcm + 128).astype(np.uint8).tobytes()  # 8-bit WAV is unsigned
    else:
        raw = pcm.astype("<i4").reshape(-1).view(np.uint8).reshape(-1, 4)[:, :width].tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reference", description=__doc__)
    ap.add_argument("stream")
    ap.add_argument("wav", nargs="?")
    ap.add_argument("--models", help="folder of model files (default: hybridcodec/models)")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    try:
        out = decode(args.stream, args.models)
    except (Corrupt, ModelError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.stream}: version {out.version}, model {out.model_id}, {out.sample_rate} Hz, "
          f"{out.channels} ch, {out.bits_per_sample} bits, {out.pcm.shape[0]} samples, "
          f"MD5 {out.md5.hex()} {'OK' if out.md5_ok else 'MISMATCH'} "
          f"({time.perf_counter() - t:.1f} s)")
    if args.wav:
        write_wav(args.wav, out.pcm, out.sample_rate, out.bits_per_sample)
    return 0 if out.md5_ok else 2


if __name__ == "__main__":
    sys.exit(main())
