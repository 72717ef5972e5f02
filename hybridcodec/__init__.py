"""hybridcodec: a learned, layered audio codec from bit-exact lossless to lossy.

Public API::

    hybridcodec.encode("song.flac", "song.hyb")        # tags, pictures, chunks kept
    hybridcodec.decode("song.hyb", "out.flac")          # ... and written back
    hybridcodec.decode("song.hyb", "out.wav", metadata=False)

The coding functions are imported on first use, so ``import hybridcodec`` (and the CLI's
``--help`` or argument errors) do not pay for loading numba.
"""

from __future__ import annotations

from .errors import HybridCodecError

__all__ = ["encode", "decode", "describe_stream", "CodingReport", "HybridCodecError"]
__version__ = "0.2.0"

_LAZY = {"encode": "encode_file", "decode": "decode_file",
         "describe_stream": "describe_stream", "CodingReport": "CodingReport"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import codec
        return getattr(codec, _LAZY[name])
    raise AttributeError(f"module 'hybridcodec' has no attribute {name!r}")
