"""hybridcodec: a learned, layered audio codec from bit-exact lossless to lossy.

Public API::

    hybridcodec.encode("song.flac", "song.hyb")           # files: tags, pictures, chunks kept
    hybridcodec.decode("song.hyb", "out.flac")            # ... and written back
    hybridcodec.decode("song.hyb", "out.wav", metadata=False)
    data = hybridcodec.encode_array(pcm, 44100)           # arrays (hybridcodec.api)
    pcm, rate = hybridcodec.decode_bytes(data)
    with hybridcodec.open_stream("song.hyb") as stream:   # frame by frame
        for block in stream.blocks(): ...

The coding functions are imported on first use, so ``import hybridcodec`` (and the CLI's
``--help`` or argument errors) do not pay for loading numpy and numba.
"""

from __future__ import annotations

from .errors import HybridCodecError

__all__ = ["encode", "decode", "describe_stream", "CodingReport", "encode_array",
           "decode_bytes", "open_stream", "AudioStream", "HybridCodecError"]
__version__ = "0.3.0"

#: public name -> (module, attribute), imported when first asked for
_LAZY = {"encode": ("codec", "encode_file"), "decode": ("codec", "decode_file"),
         "describe_stream": ("codec", "describe_stream"),
         "CodingReport": ("codec", "CodingReport"),
         "encode_array": ("api", "encode_array"), "decode_bytes": ("api", "decode_bytes"),
         "open_stream": ("api", "open_stream"), "AudioStream": ("api", "AudioStream")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'hybridcodec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
