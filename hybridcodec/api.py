"""The Python API on arrays and streams: :func:`encode_array`, :func:`decode_bytes` and
:func:`open_stream` (re-exported as ``hybridcodec.encode_array`` and so on).

They run the file API's coder (:mod:`hybridcodec.codec`) on PCM in memory, and make the
same streams: ``encode_array`` of the samples of a WAV file gives the stream that
``hybridcodec encode`` gives for the file, but for the header fields that name the
source (``source_format`` ``RAW``; 8-bit: ``PCM_S8``).

**PCM in memory**: integer samples, *right-justified* at their true bit depth (a 16-bit
signal lies in -32768..32767, a 24-bit one in -2**23..2**23-1), shape ``(frames,
channels)`` (``(frames,)`` for mono), 1 to 8 channels, bit depth 8, 16 or 24. Decoding
gives ``int32`` arrays of shape ``(frames, channels)``; ``soundfile.read(path,
dtype="int16")`` reads 16-bit files in this convention directly, while its ``int32`` reads
of 24-bit files are left-justified (shift them right by 8 first).

Float samples are refused: they are not integer PCM, and any rounding to make them so is
the caller's decision, not a lossless codec's. Every bad input raises a
:class:`~hybridcodec.errors.HybridCodecError` subclass with a one-line message, as the file
API does: :class:`~hybridcodec.errors.UnsupportedAudioError` for samples the codec cannot
code (dtype, shape, channels, range), :class:`~hybridcodec.errors.UsageError` for a bad
argument, :class:`~hybridcodec.errors.CorruptStreamError` (and subclasses) for bytes that
are not an intact stream, :class:`~hybridcodec.errors.ModelError` for a model problem.

Example (two seconds of a 440 Hz tone, stereo, 16-bit)::

    >>> import numpy as np
    >>> import hybridcodec
    >>> t = np.arange(2 * 44100) / 44100
    >>> tone = np.round(8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    >>> pcm = np.stack([tone, tone // 2], axis=1)             # (frames, channels)
    >>> data = hybridcodec.encode_array(pcm, 44100)           # lossless .hyb bytes
    >>> out, rate = hybridcodec.decode_bytes(data)
    >>> out.dtype, out.shape, rate
    (dtype('int32'), (88200, 2), 44100)
    >>> bool((out == pcm).all())
    True
    >>> small = hybridcodec.encode_array(pcm, 44100, tier="low")   # a lossy tier
    >>> len(small) < len(data)
    True

A clip of one frame shorter than 2**16 samples is coded as one unit, which a lower tier
keeps whole (it stays the lossless stream)::

    >>> clip = pcm[:44100]
    >>> hybridcodec.encode_array(clip, 44100, tier="low") == hybridcodec.encode_array(clip, 44100)
    True
"""

from __future__ import annotations

import io
import numbers
import os
import tempfile
from typing import BinaryIO, Generator, Iterator

import numpy as np

from .audio_io import MAX_CHANNELS, SUPPORTED_BITS, AudioInfo, is_file_object
from .container import MAX_NUM_SAMPLES, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from .errors import UnsupportedAudioError, UsageError

__all__ = ["encode_array", "decode_bytes", "open_stream", "AudioStream"]

#: the stream header's source format for PCM that came from memory, not from a file
ARRAY_SOURCE_FORMAT = "RAW"
_ARRAY_NAME = "<array>"


# --------------------------------------------------------------------------- encoding


class _ArrayReader:
    """PCM in memory behind the interface of :class:`~hybridcodec.audio_io.AudioReader`
    (what :func:`hybridcodec.codec._encode_lossless` reads): a frame at a time, int32.
    An array carries no metadata and cannot disagree with a header of its own."""

    metadata = None
    source_md5 = None
    source_md5_bits = None

    def __init__(self, pcm: np.ndarray, info: AudioInfo) -> None:
        self._pcm = pcm
        self.info = info
        self.path = _ARRAY_NAME
        self.nbytes = info.num_samples * info.channels * (info.bits_per_sample // 8)
        self.problems: list[str] = []
        self.metadata_notes: list[str] = []
        self._pos = 0

    def md5_problem(self, digest: bytes | None, pcm_md5=None) -> str | None:
        return None

    @property
    def position(self) -> int:
        return self._pos

    def read(self, n: int) -> np.ndarray:
        block = self._pcm[self._pos:self._pos + int(n)]
        self._pos += len(block)
        return np.ascontiguousarray(block, dtype=np.int32)

    def close(self) -> None:
        pass

    def __enter__(self) -> "_ArrayReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bits_for(dtype: np.dtype, bits_per_sample: int | None) -> int:
    if bits_per_sample is None:
        if dtype.itemsize > 2:
            raise UsageError(
                f"{dtype} samples need bits_per_sample (8, 16 or 24): an {dtype} array "
                "may hold audio of any of these depths, and the depth is part of the stream")
        return 8 * dtype.itemsize
    if isinstance(bits_per_sample, bool) or not isinstance(bits_per_sample, numbers.Integral) \
            or int(bits_per_sample) not in SUPPORTED_BITS:
        raise UsageError(f"bits_per_sample must be 8, 16 or 24, got {bits_per_sample!r}")
    return int(bits_per_sample)


def _check_pcm(pcm, bits_per_sample: int | None) -> tuple[np.ndarray, int]:
    """``pcm`` as a 2-D signed integer array and its bit depth, or a one-line error."""
    if isinstance(pcm, (bytes, bytearray, memoryview, str)):
        raise UsageError(f"pcm must be an array of integer samples, got {type(pcm).__name__} "
                         "(raw bytes: np.frombuffer(data, '<i2') for 16-bit little-endian)")
    try:
        a = np.asarray(pcm)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise UnsupportedAudioError(f"pcm is not an array of samples: {exc}") from None
    kind = a.dtype.kind
    if kind in "fc":
        raise UnsupportedAudioError(
            f"{a.dtype} samples are not supported: the codec is lossless on integer PCM; "
            "convert to integers at the bit depth you want, e.g. "
            "np.round(x * 32767).astype(np.int16) for 16 bits")
    if kind == "u":
        raise UnsupportedAudioError(
            f"{a.dtype} samples are not supported: pass signed integers (8-bit unsigned "
            "PCM: pcm.astype(np.int16) - 128)")
    if kind != "i":
        raise UnsupportedAudioError(f"pcm must hold integer samples, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise UnsupportedAudioError(
            f"pcm must have shape (frames,) or (frames, channels), got {a.shape}")
    frames, channels = a.shape
    if not 1 <= channels <= MAX_CHANNELS:
        hint = " (channels first? pass pcm.T)" if 1 <= frames <= MAX_CHANNELS else ""
        raise UnsupportedAudioError(
            f"{channels}-channel audio is not supported (1 to {MAX_CHANNELS} channels; "
            f"pcm is (frames, channels), got shape {a.shape}){hint}")
    if frames > MAX_NUM_SAMPLES:
        raise UnsupportedAudioError(f"{frames} frames are more than a stream can hold")
    bits = _bits_for(a.dtype, bits_per_sample)
    if frames:
        lo, hi = int(a.min()), int(a.max())
        if lo < -(1 << (bits - 1)) or hi >= 1 << (bits - 1):
            hint = ("; soundfile's int32 reads are left-justified: pcm >> (32 - bits)"
                    if a.dtype.itemsize == 4 and bits < 32 else "")
            raise UnsupportedAudioError(
                f"samples out of range for {bits}-bit audio: {lo}..{hi} (expected "
                f"{-(1 << (bits - 1))}..{(1 << (bits - 1)) - 1}){hint}")
    return a, bits


def _check_rate(sample_rate) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral):
        raise UsageError(f"sample_rate must be an integer number of Hz, got {sample_rate!r}")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise UsageError(f"sample_rate must be {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, "
                         f"got {rate}")
    return rate


def _check_tier(tier: str | None, kbps) -> None:
    from .tiers import TIERS

    if tier is not None and kbps is not None:
        raise UsageError("give a tier or kbps, not both")
    if tier is not None and tier not in TIERS:
        raise UsageError(f"unknown tier {tier!r} (choose from {', '.join(TIERS)})")
    if kbps is not None and (isinstance(kbps, bool) or not isinstance(kbps, numbers.Real)
                             or not 0 < float(kbps) < float("inf")):
        raise UsageError(f"kbps must be a positive bit rate in kbit/s, got {kbps!r}")


def encode_array(pcm: np.ndarray, sample_rate: int, *, bits_per_sample: int | None = None,
                 model: str | os.PathLike | None = None, tier: str | None = None,
                 kbps: float | None = None, jobs: int = 1) -> bytes:
    """Encode integer PCM in memory into a ``.hyb`` stream; returns its bytes.

    ``pcm``: signed integers, right-justified, shape ``(frames, channels)`` or
    ``(frames,)`` (see the module docstring). ``bits_per_sample`` (8, 16 or 24) defaults
    to the dtype's width for ``int8`` and ``int16``; ``int32`` and ``int64`` arrays must
    give it. ``model``: a model file (default: the built-in model). ``tier`` (a name from
    :data:`hybridcodec.tiers.TIERS`) or ``kbps`` (a bit-rate ceiling) make a lower tier,
    cut from the lossless stream exactly as ``hybridcodec truncate`` cuts it. ``jobs`` as
    for :func:`hybridcodec.encode`.

    >>> import numpy as np, hybridcodec
    >>> pcm = np.arange(-1000, 1000, dtype=np.int16)          # mono, 16-bit
    >>> data = hybridcodec.encode_array(pcm, 8000)
    >>> data[:4]
    b'HYBC'
    >>> wide = hybridcodec.encode_array(pcm.astype(np.int32) * 256, 8000, bits_per_sample=24)
    >>> hybridcodec.decode_bytes(wide)[0][:3, 0].tolist()
    [-256000, -255744, -255488]
    """
    from .codec import _encode_lossless

    a, bits = _check_pcm(pcm, bits_per_sample)
    rate = _check_rate(sample_rate)
    _check_tier(tier, kbps)
    info = AudioInfo(sample_rate=rate, channels=a.shape[1], num_samples=a.shape[0],
                     bits_per_sample=bits, subtype="PCM_S8" if bits == 8 else f"PCM_{bits}",
                     source_format=ARRAY_SOURCE_FORMAT)
    out = io.BytesIO()
    _encode_lossless(_ARRAY_NAME, out, model=model, jobs=jobs,
                     pcm_reader=_ArrayReader(a, info))
    if (tier is None or tier == "lossless") and kbps is None:
        return out.getvalue()
    from .truncation import truncate_file

    # truncate_file is the one definition of a tier's bytes; it works on files
    with tempfile.TemporaryDirectory(prefix="hybridcodec-") as tmp:
        full, cut = os.path.join(tmp, "full.hyb"), os.path.join(tmp, "cut.hyb")
        with open(full, "wb") as fp:
            fp.write(out.getbuffer())
        del out
        truncate_file(full, cut, tier=tier, kbps=kbps)
        with open(cut, "rb") as fp:
            return fp.read()


# --------------------------------------------------------------------------- decoding


class AudioStream:
    """A ``.hyb`` stream open for decoding, one frame at a time; see :func:`open_stream`.

    Attributes (from the stream's header): ``sample_rate``, ``channels``,
    ``bits_per_sample``, ``num_samples`` (per channel), ``frame_length``, ``num_frames``,
    ``tier`` (``"lossless"`` or the tier it was cut to), ``lossless`` (every layer is
    there: the decode is bit-exact and its MD5 is checked), ``model_id``, and ``md5_ok``:
    None until :meth:`blocks` has run to its end, then True for a lossless stream whose
    audio matched its MD5 (a mismatch raises instead), None for a lower tier or a partial
    range (:meth:`seek`, ``blocks(start, stop)``).
    """

    def __init__(self, fp: BinaryIO, name: str, owned: bool, *, model, fill: str,
                 seed: int, jobs: int) -> None:
        from .codec import _StreamDecoder

        self._fp: BinaryIO | None = fp
        self._owned = owned
        self._blocks: Generator[np.ndarray, None, None] | None = None
        self._started = False
        self._position = 0  # where the next blocks() starts (seek)
        try:
            self._decoder = _StreamDecoder(fp, name, model=model, ignore_errors=False,
                                           jobs=jobs, fill=fill, seed=seed)
        except BaseException:
            self.close()
            raise
        h = self._decoder.header
        self.sample_rate: int = h.sample_rate
        self.channels: int = h.channels
        self.bits_per_sample: int = h.bits_per_sample
        self.num_samples: int = h.num_samples
        self.frame_length: int = h.frame_length
        self.num_frames: int = h.num_frames
        self.tier: str = h.tier
        self.lossless: bool = self._decoder.lossless
        self.model_id: str = h.model_id
        self.md5_ok: bool | None = None

    def seek(self, sample) -> None:
        """Set where the next :meth:`blocks` starts: a sample number (per channel,
        ``0 <= sample < num_samples``) or a time string as ``hybridcodec decode --skip``
        takes it (``"1:30"``, ``"0:12.5"``). An iteration still running is stopped. The
        decode from there is sample-exactly the whole decode's (lower tiers included)
        and costs about one frame's decode (two for a lower tier), found through the
        stream's index; on a file object that cannot seek (a pipe) only forward."""
        from .timecode import resolve

        if self._fp is None:
            raise UsageError("the stream is closed")
        start, _ = resolve(sample, None, self.num_samples, self.sample_rate)
        self._stop_iteration()
        self._position = start
        self._started = False

    def blocks(self, start=None, stop=None) -> Iterator[np.ndarray]:
        """The decoded PCM, one frame per block: ``int32`` arrays of shape ``(n,
        channels)``, ``frame_length`` samples each but the last; memory stays bounded.

        ``start`` / ``stop``: only the samples ``[start, stop)``, sample-exactly those of
        the whole decode (the first and last blocks are cut to the range); ints are
        sample numbers, a negative ``stop`` counts from the end, strings take the
        ``--skip`` / ``--until`` syntax (see :func:`hybridcodec.decode`). ``start``
        defaults to where :meth:`seek` went (else 0), ``stop`` to the end. A range
        outside the stream or an empty one is a :class:`~hybridcodec.errors.UsageError`.

        A damaged stream raises :class:`~hybridcodec.errors.CorruptStreamError` at the
        frame where the damage is; for a lossless stream decoded whole the MD5 of all the
        audio is checked after the last block, so a mismatch raises when the iteration
        ends: the blocks are only known to be right once it has ended without an error.
        A partial range cannot be checked against the MD5 (:attr:`md5_ok` stays None;
        each frame's CRC still is). The blocks can be iterated once per
        :func:`open_stream` or :meth:`seek`.
        """
        from .timecode import resolve

        if self._fp is None:
            raise UsageError("the stream is closed")
        if self._started:
            raise UsageError("blocks() can be iterated only once per open_stream() or "
                             "seek()")
        first, last = resolve(self._position if start is None else start, stop,
                              self.num_samples, self.sample_rate)
        self._started = True
        self.md5_ok = None
        self._blocks = self._iterate(first, last)
        return self._blocks

    def _iterate(self, start: int, stop: int) -> Iterator[np.ndarray]:
        blocks = self._decoder.blocks(start, stop)
        try:
            yield from blocks
            self._decoder.finish()
            self.md5_ok = self._decoder.md5_ok
        finally:
            blocks.close()  # a loop left early: stop the worker processes (jobs > 1) now

    def _stop_iteration(self) -> None:
        blocks, self._blocks = self._blocks, None
        if blocks is not None:
            blocks.close()

    def close(self) -> None:
        """Stop decoding and close the file that :func:`open_stream` opened (a file
        object passed in stays open)."""
        self._stop_iteration()
        fp, self._fp = self._fp, None
        if fp is not None and self._owned:
            fp.close()

    def __enter__(self) -> "AudioStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fp is None else "open"
        return (f"<AudioStream {state}: {self.sample_rate} Hz, {self.channels} ch, "
                f"{self.bits_per_sample}-bit, {self.num_samples} samples, tier {self.tier}>")


def open_stream(src: str | os.PathLike | BinaryIO | bytes, *,
                model: str | os.PathLike | None = None, fill: str = "sample", seed: int = 0,
                jobs: int = 1) -> AudioStream:
    """Open a ``.hyb`` stream for decoding frame by frame: ``src`` is a path, a binary
    file object (read front to back; a pipe will do) or the stream's bytes.

    The header is read (and checked) here; :meth:`AudioStream.blocks` then yields the PCM.
    ``model``: the model file that coded the stream (default: the built-in model, or the
    earlier default that ships with the package when the stream names it). A lower tier
    is filled in per ``fill`` (``sample``, ``mean``, ``zero``) and ``seed``, as
    ``hybridcodec decode --fill --seed`` does. ``jobs`` > 1 decodes frames ahead in
    worker processes (at most 2 x ``jobs`` frames in flight).

    >>> import numpy as np, hybridcodec
    >>> pcm = (np.arange(200_000) % 200 - 100).astype(np.int16)   # two frames' worth
    >>> data = hybridcodec.encode_array(pcm, 48000)
    >>> with hybridcodec.open_stream(data) as stream:
    ...     print(stream.sample_rate, stream.channels, stream.bits_per_sample, stream.tier)
    ...     sizes = [len(block) for block in stream.blocks()]
    ...     print(sizes, stream.md5_ok)
    48000 1 16 lossless
    [131072, 68928] True
    """
    from .codec import _check_fill, _check_jobs, _check_seed, _open_stream

    fill = _check_fill(fill)
    seed = _check_seed(seed)
    jobs = _check_jobs(jobs)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return AudioStream(io.BytesIO(src), "<bytes>", True, model=model, fill=fill,
                           seed=seed, jobs=jobs)
    if is_file_object(src):
        if isinstance(src, io.TextIOBase) or not hasattr(src, "read"):
            raise UsageError("open_stream needs a file object open for reading in binary "
                             "mode ('rb')")
        from .audio_io import display_name

        return AudioStream(src, display_name(src), False, model=model, fill=fill, seed=seed,
                           jobs=jobs)
    if not isinstance(src, (str, os.PathLike)):
        raise UsageError(f"open_stream takes a path, a binary file object or bytes, got "
                         f"{type(src).__name__}")
    return AudioStream(_open_stream(src), os.fspath(src), True, model=model, fill=fill,
                       seed=seed, jobs=jobs)


def decode_bytes(data: bytes, *, model: str | os.PathLike | None = None,
                 fill: str = "sample", seed: int = 0, skip: int | str | None = None,
                 until: int | str | None = None) -> tuple[np.ndarray, int]:
    """Decode a whole ``.hyb`` stream held in memory: ``(pcm, sample_rate)``, ``pcm`` an
    ``int32`` array of shape ``(frames, channels)``, right-justified at the stream's bit
    depth (``open_stream(data).bits_per_sample``).

    A lossless stream decodes bit-exactly and is checked against its MD5; a lower tier
    is filled in per ``fill`` and ``seed`` (see :func:`open_stream`). For a stream too
    long to hold decoded, iterate :meth:`AudioStream.blocks` instead.

    ``skip`` / ``until``: only the samples ``[skip, until)``, exactly those of the whole
    decode, as for :func:`hybridcodec.decode` (ints are samples, a negative ``until``
    counts from the end; strings as ``--skip`` / ``--until``: ``"0:12.5"``, ``"-0:10"``).

    >>> import numpy as np, hybridcodec
    >>> pcm = np.array([[0, 1], [-2, 3], [4, -5]], dtype=np.int16)
    >>> out, rate = hybridcodec.decode_bytes(hybridcodec.encode_array(pcm, 16000))
    >>> out.tolist(), rate
    ([[0, 1], [-2, 3], [4, -5]], 16000)
    >>> hybridcodec.decode_bytes(hybridcodec.encode_array(pcm, 16000), skip=1)[0].tolist()
    [[-2, 3], [4, -5]]
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UsageError(f"decode_bytes takes the stream's bytes, got {type(data).__name__} "
                         "(for paths and file objects use open_stream)")
    with open_stream(data, model=model, fill=fill, seed=seed) as stream:
        blocks = list(stream.blocks(skip, until))
        rate, channels = stream.sample_rate, stream.channels
    pcm = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.int32)
    return pcm, rate
