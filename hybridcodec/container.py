"""The ``.hyb`` bitstream container, format version 3 (normative spec: ``docs/format.md``).

A stream is a header chunk, an optional metadata chunk (version 3 on), one frame chunk
per frame, and an end chunk, all little-endian and each protected by a CRC-32
(``zlib.crc32``)::

    header  "HYBC" | version u8 | flags u8 | json_len u16 | JSON | crc32
    meta    "HM" | length u32 | blob | crc32                    (optional, version >= 3)
    frame   "HF" | index u32 | num_samples u32 | num_layers u8
            | num_layers x (layer_id u8, length u32) | crc32
            | num_layers x (payload | crc32 of payload)
    end     "HE" | num_frames u32 | num_samples u64 | md5[16] | crc32

This module knows nothing about audio or models: payloads and the metadata blob are
opaque bytes (:mod:`hybridcodec.metadata` reads the blob). Writing
validates its arguments and raises :class:`ValueError` on a bad object (a programming
error). Reading validates every byte it is given and raises only
:class:`~hybridcodec.errors.CorruptStreamError` or its subclasses
(:class:`~hybridcodec.errors.TruncatedStreamError`,
:class:`~hybridcodec.errors.UnsupportedVersionError`), with a one-line message; no
length read from the stream is used to allocate or loop before it has been checked
against the format's limits and against what the input can still deliver.
"""

from __future__ import annotations

import io
import json
import math
import operator
import os
import re
import struct
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Iterator

from .errors import CorruptStreamError, TruncatedStreamError, UnsupportedVersionError

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "SUPPORTED_VERSIONS",
    "StreamHeader",
    "Frame",
    "StreamFooter",
    "DamagedFrame",
    "StreamLayout",
    "StreamReader",
    "write_header",
    "write_frame",
    "write_footer",
    "read_stream_layout",
]

# --------------------------------------------------------------------------- constants

MAGIC = b"HYBC"
FORMAT_VERSION = 3
#: Versions this build decodes. A format change bumps FORMAT_VERSION and adds it here;
#: older versions stay in the set for as long as their readers are kept.
SUPPORTED_VERSIONS = frozenset({1, 2, 3})
#: The first version with a metadata chunk.
METADATA_VERSION = 3

FRAME_SYNC = b"HF"
END_SYNC = b"HE"
METADATA_SYNC = b"HM"
#: The most bytes a metadata chunk's blob may hold (checked before anything is read).
MAX_METADATA_LEN = 1 << 26

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1, 1_000_000
MIN_CHANNELS, MAX_CHANNELS = 1, 8
MIN_BITS_PER_SAMPLE, MAX_BITS_PER_SAMPLE = 8, 24
MAX_NUM_SAMPLES = 2**40 - 1  # per channel, inclusive
MIN_FRAME_LENGTH, MAX_FRAME_LENGTH = 1, 2**20
MAX_LEVELS = 16
MIN_NUM_LAYERS, MAX_NUM_LAYERS = 1, 64
MAX_NUM_FRAMES = 2**32 - 1  # frame indices and the end chunk's count are u32
MAX_JSON_LEN = 2**16 - 1
MAX_STRING_LEN = 255
MODEL_ID_RE = re.compile(r"[0-9a-f]{16}")
MAX_LAYER_LEN = 2**32 - 1
MD5_LEN = 16

_HEADER_FIXED = struct.Struct("<4sBBH")  # magic, version, flags, json_len
_FRAME_FIXED = struct.Struct("<2sIIB")  # sync, index, num_samples, num_layers
_LAYER_ENTRY = struct.Struct("<BI")  # layer_id, length
_END_BODY = struct.Struct("<IQ16s")  # num_frames, num_samples, md5 (after the sync)
_META_FIXED = struct.Struct("<2sI")  # sync, blob length
_CRC = struct.Struct("<I")

HEADER_FIXED_SIZE = _HEADER_FIXED.size + _CRC.size  # 12 bytes + json_len
FRAME_FIXED_SIZE = _FRAME_FIXED.size + _CRC.size  # 15 bytes + 9 per layer
LAYER_OVERHEAD = _LAYER_ENTRY.size + _CRC.size  # 9 bytes per layer (table entry + CRC)
END_CHUNK_SIZE = len(END_SYNC) + _END_BODY.size + _CRC.size  # 34 bytes
METADATA_OVERHEAD = _META_FIXED.size + _CRC.size  # 10 bytes + the blob

_READ_CHUNK = 1 << 20  # bytes per read() where the input's size is unknown
_SCAN_CHUNK = 1 << 16  # bytes looked at per step while resynchronising
#: The recovering reader reports at most this many consecutive frames as lost; a frame
#: header further ahead is not believed (docs/format.md, "Recovery").
MAX_LOST_RUN = 1 << 16

_HEADER_KEYS = (
    "sample_rate",
    "channels",
    "bits_per_sample",
    "subtype",
    "source_format",
    "num_samples",
    "frame_length",
    "model_id",
    "levels",
    "num_layers",
    "tier",
)


def _crc32(*parts: bytes) -> int:
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc & 0xFFFFFFFF


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class StreamHeader:
    """What the header chunk says about the stream (see docs/format.md, "Header chunk")."""

    sample_rate: int
    channels: int
    bits_per_sample: int
    subtype: str
    source_format: str
    num_samples: int
    frame_length: int
    model_id: str
    levels: int
    num_layers: int
    tier: str = "lossless"
    #: JSON keys this version does not know; kept and written back unchanged.
    extra: dict = field(default_factory=dict)
    #: The header's flags byte. No bit is defined in versions 1-3; readers keep it.
    flags: int = 0
    #: The format version the stream was written in. The container layout of versions
    #: 1 and 2 is the same (they differ in layer payloads, which the model's config
    #: selects), so a rewriting tool keeps the version it read.
    version: int = FORMAT_VERSION
    #: The metadata chunk's blob (version 3 on; None: the stream has no metadata chunk).
    #: Written right after the header chunk, so a rewriting tool keeps it with the header.
    metadata: bytes | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        """ceil(num_samples / frame_length): the number of frame chunks in the stream."""
        return -(-self.num_samples // self.frame_length)

    def frame_num_samples(self, index: int) -> int:
        """Samples per channel in frame ``index``: frame_length except for the last frame."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame index {index} out of range 0..{self.num_frames - 1}")
        return min(self.frame_length, self.num_samples - index * self.frame_length)


@dataclass(frozen=True)
class Frame:
    """One frame chunk: its index, length in samples per channel, and its layers."""

    index: int
    num_samples: int
    layers: tuple[tuple[int, bytes], ...]  # (layer_id, payload), ids strictly increasing


@dataclass(frozen=True)
class StreamFooter:
    """The end chunk: frame count, sample count and MD5 of the PCM (see docs/format.md)."""

    num_frames: int
    num_samples: int
    md5: bytes


@dataclass(frozen=True)
class DamagedFrame:
    """A frame the recovering reader could not deliver (see docs/format.md, "Recovery").

    ``reason`` is one line: the CRC that failed, or why the frame was not found. The
    frame's length comes from the stream header, so its samples can be filled in.
    """

    index: int
    num_samples: int
    reason: str


@dataclass(frozen=True)
class StreamLayout:
    """Where the bytes of a stream go, for ``hybridcodec info``.

    ``header_bytes + framing_bytes + sum(layer_bytes.values()) == total_bytes``.
    """

    header: StreamHeader
    footer: StreamFooter
    num_frames: int
    layer_bytes: dict[int, int]  # layer_id -> payload bytes summed over all frames
    layer_frames: dict[int, int]  # layer_id -> number of frames that carry it
    header_bytes: int  # the header chunk and the metadata chunk (if any)
    framing_bytes: int  # frame headers, layer tables, payload CRCs, end chunk
    total_bytes: int
    metadata_bytes: int = 0  # the metadata chunk (part of header_bytes)

    @property
    def overhead_bytes(self) -> int:
        """Everything that is not layer payload."""
        return self.header_bytes + self.framing_bytes

    @property
    def payload_bytes(self) -> int:
        return sum(self.layer_bytes.values())


# --------------------------------------------------------------------------- validation


def _as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer (bools excluded), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _short_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_int(name: str, value: Any, lo: int, hi: int) -> str | None:
    number = _as_int(value)
    if number is None:
        return f"{name} must be an integer, got {_short_repr(value)}"
    if not lo <= number <= hi:
        return f"{name} must be in {lo}..{hi}, got {number}"
    return None


def _check_str(name: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{name} must be a string, got {_short_repr(value)}"
    if not 1 <= len(value) <= MAX_STRING_LEN or not value.isprintable():
        return (
            f"{name} must be 1..{MAX_STRING_LEN} printable characters, "
            f"got {_short_repr(value)}"
        )
    return None


def _header_problem(header: StreamHeader) -> str | None:
    """The first thing wrong with ``header``, or None if it is a valid header."""
    problem = (
        _check_int("version", header.version, min(SUPPORTED_VERSIONS), FORMAT_VERSION)
        or _check_int("sample_rate", header.sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
        or _check_int("channels", header.channels, MIN_CHANNELS, MAX_CHANNELS)
        or _check_int(
            "bits_per_sample",
            header.bits_per_sample,
            MIN_BITS_PER_SAMPLE,
            MAX_BITS_PER_SAMPLE,
        )
        or _check_str("subtype", header.subtype)
        or _check_str("source_format", header.source_format)
        or _check_int("num_samples", header.num_samples, 0, MAX_NUM_SAMPLES)
        or _check_int("frame_length", header.frame_length, MIN_FRAME_LENGTH, MAX_FRAME_LENGTH)
        or _check_int("levels", header.levels, 0, MAX_LEVELS)
        or _check_int("num_layers", header.num_layers, MIN_NUM_LAYERS, MAX_NUM_LAYERS)
        or _check_str("tier", header.tier)
        or _check_int("flags", header.flags, 0, 255)
    )
    if problem:
        return problem
    if not isinstance(header.model_id, str) or not MODEL_ID_RE.fullmatch(header.model_id):
        return f"model_id must be 16 lowercase hex digits, got {_short_repr(header.model_id)}"
    num_frames = -(-int(header.num_samples) // int(header.frame_length))
    if num_frames > MAX_NUM_FRAMES:
        return (
            f"num_samples / frame_length gives {num_frames} frames, "
            f"more than the {MAX_NUM_FRAMES} a stream can hold"
        )
    if header.metadata is not None:
        if not isinstance(header.metadata, (bytes, bytearray, memoryview)):
            return f"metadata must be bytes, got {type(header.metadata).__name__}"
        if int(header.version) < METADATA_VERSION:
            return f"a version {int(header.version)} stream has no metadata chunk"
        if not 1 <= len(header.metadata) <= MAX_METADATA_LEN:
            return f"metadata must be 1..{MAX_METADATA_LEN} bytes, got {len(header.metadata)}"
    if not isinstance(header.extra, dict):
        return f"extra must be a dict, got {type(header.extra).__name__}"
    for key in header.extra:
        if not isinstance(key, str):
            return f"extra keys must be strings, got {_short_repr(key)}"
        if key in _HEADER_KEYS:
            return f"extra key {key!r} collides with a header field"
    return None


def _header_json(header: StreamHeader) -> bytes:
    """The header's JSON text: ASCII (a subset of UTF-8), compact, keys sorted."""
    obj: dict[str, Any] = dict(header.extra)
    for key in _HEADER_KEYS:
        value = getattr(header, key)
        obj[key] = value if isinstance(value, str) else int(value)
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(
            f"invalid stream header: extra is not JSON-serializable ({exc})"
        ) from None
    data = text.encode("ascii")
    if len(data) > MAX_JSON_LEN:
        raise ValueError(
            f"invalid stream header: JSON is {len(data)} bytes, at most {MAX_JSON_LEN} allowed"
        )
    return data


# --------------------------------------------------------------------------- writing


def write_header(fp: BinaryIO, header: StreamHeader) -> None:
    """Write the header chunk, then the metadata chunk if ``header.metadata`` is set.
    Raises ValueError if ``header`` is not a valid header."""
    if not isinstance(header, StreamHeader):
        raise ValueError(f"expected a StreamHeader, got {type(header).__name__}")
    problem = _header_problem(header)
    if problem:
        raise ValueError(f"invalid stream header: {problem}")
    body = _header_json(header)
    head = _HEADER_FIXED.pack(MAGIC, int(header.version), int(header.flags), len(body))
    fp.write(head + body + _CRC.pack(_crc32(head, body)))
    if header.metadata is not None:
        blob = bytes(header.metadata)
        meta = _META_FIXED.pack(METADATA_SYNC, len(blob))
        fp.write(meta + blob + _CRC.pack(_crc32(meta, blob)))


def _payload_bytes(payload: Any, where: str) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(memoryview(payload).cast("B"))
    raise ValueError(f"{where}: payload must be bytes, got {type(payload).__name__}")


def write_frame(fp: BinaryIO, frame: Frame) -> None:
    """Write one frame chunk. Raises ValueError if ``frame`` breaks a frame-local rule.

    Rules that need the header (index sequence, sample counts, ids < num_layers) are
    the caller's to keep; the reader checks them.
    """
    if not isinstance(frame, Frame):
        raise ValueError(f"expected a Frame, got {type(frame).__name__}")
    problem = _check_int("frame index", frame.index, 0, MAX_NUM_FRAMES - 1) or _check_int(
        "frame num_samples", frame.num_samples, 1, MAX_FRAME_LENGTH
    )
    if problem:
        raise ValueError(f"invalid frame: {problem}")
    where = f"frame {int(frame.index)}"
    try:
        layers = [(lid, payload) for lid, payload in frame.layers]
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: layers must be a sequence of (layer_id, payload) pairs"
        ) from None
    if not MIN_NUM_LAYERS <= len(layers) <= MAX_NUM_LAYERS:
        raise ValueError(f"{where}: needs 1..{MAX_NUM_LAYERS} layers, got {len(layers)}")
    table = []
    payloads = []
    previous = -1
    for lid, payload in layers:
        problem = _check_int("layer_id", lid, 0, MAX_NUM_LAYERS - 1)
        if problem:
            raise ValueError(f"{where}: {problem}")
        lid = int(lid)
        if lid <= previous:
            raise ValueError(
                f"{where}: layer ids must be strictly increasing, got {lid} after {previous}"
            )
        if previous == -1 and lid != 0:
            raise ValueError(f"{where}: the first layer must be layer 0, got {lid}")
        data = _payload_bytes(payload, f"{where} layer id {lid}")
        if len(data) > MAX_LAYER_LEN:
            raise ValueError(f"{where} layer id {lid}: payload of {len(data)} bytes is too long")
        table.append(_LAYER_ENTRY.pack(lid, len(data)))
        payloads.append(data)
        previous = lid
    head = _FRAME_FIXED.pack(FRAME_SYNC, int(frame.index), int(frame.num_samples), len(layers))
    head += b"".join(table)
    fp.write(head + _CRC.pack(_crc32(head)))
    for data in payloads:
        fp.write(data)
        fp.write(_CRC.pack(_crc32(data)))


def write_footer(fp: BinaryIO, footer: StreamFooter) -> None:
    """Write the end chunk. Raises ValueError if ``footer`` is not a valid footer."""
    if not isinstance(footer, StreamFooter):
        raise ValueError(f"expected a StreamFooter, got {type(footer).__name__}")
    problem = _check_int("footer num_frames", footer.num_frames, 0, MAX_NUM_FRAMES) or _check_int(
        "footer num_samples", footer.num_samples, 0, MAX_NUM_SAMPLES
    )
    if problem:
        raise ValueError(f"invalid footer: {problem}")
    if not isinstance(footer.md5, (bytes, bytearray)) or len(footer.md5) != MD5_LEN:
        raise ValueError(
            f"invalid footer: md5 must be {MD5_LEN} bytes, got {_short_repr(footer.md5)}"
        )
    body = END_SYNC + _END_BODY.pack(
        int(footer.num_frames), int(footer.num_samples), bytes(footer.md5)
    )
    fp.write(body + _CRC.pack(_crc32(body)))


# --------------------------------------------------------------------------- reading


class _Source:
    """Reads from a binary file object, counting bytes and knowing what is left if it can.

    Bytes can be looked at before they are consumed (:meth:`peek`) and pushed back
    (:meth:`unread`); :meth:`start_record` / :meth:`stop_record` keep a copy of what is
    consumed in between. The recovering reader uses these to resynchronise after a
    damaged frame on any input, a pipe included, holding at most one frame's bytes.
    """

    def __init__(self, fp: BinaryIO):
        self._fp = fp
        self.pos = 0  # bytes consumed since the reader started
        self._size: int | None = None  # bytes from the start position to the end, if known
        self._buf = bytearray()  # read from fp (or pushed back) but not consumed yet
        self._record: bytearray | None = None
        try:
            start = fp.tell()
            end = fp.seek(0, io.SEEK_END)
            fp.seek(start)
            if isinstance(start, int) and isinstance(end, int) and end >= start:
                self._size = end - start
        except (OSError, ValueError, AttributeError, TypeError):
            self._size = None

    def remaining(self) -> int | None:
        """Bytes left in the input, or None where the input cannot tell (a pipe)."""
        return None if self._size is None else max(self._size - self.pos, 0)

    def _read_fp(self, n: int) -> bytes:
        """Up to ``n`` bytes from the file itself (behind the buffer), in bounded pieces.

        Where the size is unknown, reads at most _READ_CHUNK bytes at a time so that a
        huge declared length costs only as much memory as the input really holds.
        """
        if self._size is not None:
            n = min(n, max(self._size - self.pos - len(self._buf), 0))
        if n <= 0:
            return b""
        step = n if self._size is not None else _READ_CHUNK
        chunks = []
        got = 0
        while got < n:
            data = self._fp.read(min(step, n - got))
            if not data:
                break
            chunks.append(bytes(data))
            got += len(data)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the input)."""
        if n <= 0:
            return b""
        remaining = self.remaining()
        if remaining is not None:
            n = min(n, remaining)
        if self._buf:
            data = bytes(self._buf[:n])
            del self._buf[:n]
            if len(data) < n:
                data += self._read_fp(n - len(data))
        else:
            data = self._read_fp(n)
        self.pos += len(data)
        if self._record is not None:
            self._record += data
        return data

    def read_exact(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes, else TruncatedStreamError naming ``what``."""
        remaining = self.remaining()
        if remaining is not None and n > remaining:
            raise TruncatedStreamError(
                f"truncated stream: {what} needs {n} bytes, only {remaining} remain"
            )
        data = self.read(n)
        if len(data) < n:
            raise TruncatedStreamError(
                f"truncated stream: {what} needs {n} bytes, only {len(data)} remain"
            )
        return data

    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes from the current position, without consuming them."""
        if len(self._buf) < n:
            self._buf += self._read_fp(n - len(self._buf))
        return bytes(self._buf[:n])

    def unread(self, data: bytes) -> None:
        """Push ``data`` (the bytes just consumed) back in front of the input."""
        self._buf[:0] = data
        self.pos -= len(data)

    def skip_to(self, marker: int) -> int:
        """Consume at least one byte, then up to the next ``marker`` byte or the end.

        Returns the number of bytes consumed. Nothing consumed here is recorded.
        """
        record, self._record = self._record, None
        skipped = len(self.read(1))
        while True:
            if not self._buf:
                self._buf += self._read_fp(_SCAN_CHUNK)
                if not self._buf:
                    break
            k = self._buf.find(marker)
            take = len(self._buf) if k < 0 else k
            del self._buf[:take]
            self.pos += take
            skipped += take
            if k >= 0:
                break
        self._record = record
        return skipped

    def start_record(self) -> None:
        self._record = bytearray()

    def stop_record(self) -> bytes:
        data, self._record = self._record, None
        return bytes(data or b"")

    def at_end(self) -> bool:
        if self._buf:
            return False
        remaining = self.remaining()
        if remaining is not None:
            return remaining == 0
        data = self._fp.read(1)
        if data:
            self._buf += data
            return False
        return True


class _JsonProblem(Exception):
    pass


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _JsonProblem(f"duplicate key {_short_repr(key)}")
        obj[key] = value
    return obj


def _json_constant(name: str) -> Any:
    raise _JsonProblem(f"non-standard constant {name}")


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JsonProblem(f"number {_short_repr(text)} out of range")
    return value


def _parse_header_json(body: bytes, flags: int) -> StreamHeader:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptStreamError("corrupt header: JSON is not valid UTF-8") from None
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_json_pairs,
            parse_constant=_json_constant,
            parse_float=_json_float,
        )
    except _JsonProblem as exc:
        raise CorruptStreamError(f"corrupt header: invalid JSON ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CorruptStreamError(
            f"corrupt header: invalid JSON ({exc.msg} at character {exc.pos})"
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer with too many digits
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptStreamError(f"corrupt header: invalid JSON ({message})") from None
    if not isinstance(obj, dict):
        raise CorruptStreamError("corrupt header: JSON is not an object")
    missing = [key for key in _HEADER_KEYS if key not in obj]
    if missing:
        raise CorruptStreamError(f"corrupt header: missing field {missing[0]!r}")
    known = {key: obj[key] for key in _HEADER_KEYS}
    extra = {key: value for key, value in obj.items() if key not in _HEADER_KEYS}
    header = StreamHeader(**known, extra=extra, flags=flags)
    problem = _header_problem(header)
    if problem:
        raise CorruptStreamError(f"corrupt header: {problem}")
    return header


def _read_header(src: _Source) -> StreamHeader:
    magic = src.read(len(MAGIC))
    if magic != MAGIC:
        raise CorruptStreamError("not a hybridcodec stream (bad magic)")
    version = src.read_exact(1, "header chunk")[0]
    if version not in SUPPORTED_VERSIONS:
        newest = max(SUPPORTED_VERSIONS)
        if version > newest:
            raise UnsupportedVersionError(
                f"unsupported stream format version {version}: this hybridcodec reads "
                f"versions up to {newest}; upgrade hybridcodec to decode it"
            )
        raise UnsupportedVersionError(
            f"unsupported stream format version {version}: this hybridcodec reads "
            f"versions {', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}"
        )
    rest = src.read_exact(3, "header chunk")
    flags, json_len = struct.unpack("<BH", rest)
    body = src.read_exact(json_len, f"header chunk ({json_len}-byte JSON)")
    (stored,) = _CRC.unpack(src.read_exact(_CRC.size, "header chunk CRC"))
    computed = _crc32(magic, bytes([version]), rest, body)
    if stored != computed:
        raise CorruptStreamError(
            f"corrupt stream: header CRC mismatch (stored {stored:08x}, computed {computed:08x})"
        )
    return replace(_parse_header_json(body, flags), version=version)


class StreamReader:
    """Reads and checks a stream: the header on construction, frames lazily.

    ``reader.header`` is available at once; iterate ``reader.frames()`` (once) for the
    frames in order; when it finishes, ``reader.footer`` holds the checked end chunk and
    the input has been checked to end there.
    """

    def __init__(self, fp: BinaryIO, *, recover: bool = False):
        self._src = _Source(fp)
        header = _read_header(self._src)
        #: Recovering reader: :meth:`frames` yields a :class:`DamagedFrame` in place of
        #: each frame it cannot deliver instead of raising, and resynchronises on the next
        #: good frame header (docs/format.md, "Recovery"). The header must be intact.
        self.recover = recover
        #: Recovering reader: problems that are not a damaged frame (metadata chunk
        #: damaged, end chunk missing or damaged, trailing data), one line each.
        #: ``footer`` stays None when the end chunk could not be used.
        self.problems: list[str] = []
        self._skip_reported = False  # bytes skipped next were reported already
        start = self._src.pos
        if header.version >= METADATA_VERSION:
            blob = self._read_metadata()
            if blob is not None:
                header = replace(header, metadata=blob)
        self.header: StreamHeader = header
        #: bytes of the metadata chunk (0: none, or damaged and skipped by recovery)
        self.metadata_bytes: int = self._src.pos - start if header.metadata is not None else 0
        self.header_bytes: int = self._src.pos
        self.footer: StreamFooter | None = None
        #: Recovering reader: the first frame of a missing tail (the input ended, or its
        #: end chunk disagrees with the header, before that frame): frames from there on
        #: were neither delivered nor reported. None when the stream was read to its end.
        self.missing_from: int | None = None
        self._started = False

    @property
    def bytes_read(self) -> int:
        """Bytes consumed from the input so far."""
        return self._src.pos

    def _read_metadata(self) -> bytes | None:
        """The metadata chunk's blob if one follows the header, else None.

        Recovering, a damaged chunk is reported and skipped: the search for the first
        frame starts just after its sync, and the bytes it skips are not reported again.
        """
        src = self._src
        if src.peek(len(METADATA_SYNC)) != METADATA_SYNC:
            return None
        src.start_record()
        try:
            head = src.read_exact(_META_FIXED.size, "metadata chunk")
            _, length = _META_FIXED.unpack(head)
            if length == 0 or length > MAX_METADATA_LEN:
                raise CorruptStreamError(
                    f"corrupt stream: metadata chunk declares {length} bytes, "
                    f"1..{MAX_METADATA_LEN} allowed")
            blob = src.read_exact(length, f"metadata chunk ({length} bytes)")
            (stored,) = _CRC.unpack(src.read_exact(_CRC.size, "metadata chunk CRC"))
            computed = _crc32(head, blob)
            if stored != computed:
                raise CorruptStreamError(
                    f"corrupt stream: metadata chunk CRC mismatch "
                    f"(stored {stored:08x}, computed {computed:08x})")
        except CorruptStreamError as exc:
            data = src.stop_record()
            if not self.recover:
                raise
            src.unread(data[len(METADATA_SYNC):])
            reason = str(exc).replace("corrupt stream: ", "").replace("truncated stream: ", "")
            self.problems.append(f"{reason}: metadata not restored")
            self._skip_reported = True
            return None
        src.stop_record()
        return blob

    def frames(self) -> Iterator[Frame]:
        """The frames in order, each fully checked (CRCs included) before it is yielded."""
        if self._started:
            raise RuntimeError("StreamReader.frames() can only be iterated once")
        self._started = True
        return self._iter_frames()

    def _iter_frames(self) -> Iterator[Frame]:
        num_frames = self.header.num_frames
        if self.recover:
            yield from self._iter_recovering(num_frames)
            return
        for index in range(num_frames):
            yield self._read_frame(index, num_frames)
        self.footer = self._read_end(num_frames)

    # -- recovery (docs/format.md, "Recovery") ---------------------------------------

    def _iter_recovering(self, num_frames: int) -> Iterator[Frame | DamagedFrame]:
        src, header = self._src, self.header
        next_index = 0  # the lowest frame index not yet delivered or reported
        after_damage = self._skip_reported  # the search starts inside a reported chunk
        while True:
            start = src.pos
            found, skipped = self._scan(next_index)
            noted = skipped and not after_damage  # skipped bytes nobody reported yet
            after_damage = False
            where = f"{skipped} bytes of damaged data skipped from byte {start}" if skipped \
                else ""
            if found is None or found[0] == "end":
                agrees = found is not None and self._accept_end(found[1], num_frames)
                if agrees and num_frames - next_index <= MAX_LOST_RUN:
                    # the end chunk confirms the length: the missing frames were there
                    for index in range(next_index, num_frames):
                        yield DamagedFrame(index, header.frame_num_samples(index),
                                           f"lost ({where or 'missing'})")
                elif next_index < num_frames:
                    # nothing says how long the stream really was: stop here
                    self.missing_from = next_index
                    first = next_index * header.frame_length
                    self.problems.insert(0, (
                        f"stream ends after sample {first} of {header.num_samples}: frames "
                        f"{next_index}..{num_frames - 1} missing"
                        + (f" ({where})" if where else "")))
                if noted and next_index == num_frames:
                    self.problems.append(f"{where} (no frame lost)")
                if found is None:
                    self.problems.append(
                        "end chunk missing (stream truncated or damaged at its end): "
                        "MD5 not checked")
                return
            _, index, frame_samples, entries = found
            if noted and index == next_index:
                self.problems.append(f"{where} (no frame lost)")
            for lost in range(next_index, index):
                yield DamagedFrame(lost, header.frame_num_samples(lost),
                                   f"lost ({where or 'missing'})")
            next_index = index + 1
            src.start_record()
            try:
                layers = self._read_payloads(f"frame {index}", entries)
            except CorruptStreamError as exc:
                # The header was good, so the frame is where it says; but its payload may
                # have lost or gained bytes: search again from just after its header.
                src.unread(src.stop_record())
                yield DamagedFrame(index, frame_samples,
                                   str(exc).replace("corrupt stream: ", "").replace(
                                       "truncated stream: ", "truncated: "))
                after_damage = True
                continue
            src.stop_record()
            yield Frame(index=index, num_samples=frame_samples, layers=tuple(layers))

    def _scan(self, min_index: int):
        """Find the next good chunk from the current position on; returns (found, skipped).

        ``found`` is ``("frame", index, num_samples, entries)`` for a frame header
        whose CRC and fields are valid and whose index is at least ``min_index``,
        ``("end", body)`` for an end chunk with a valid CRC, or None at the end of input.
        """
        src = self._src
        skipped = 0
        while True:
            at = src.pos
            found = self._frame_candidate(min_index) or self._end_candidate()
            if found is not None:
                return found, skipped
            if src.at_end():
                return None, skipped
            skipped += src.skip_to(FRAME_SYNC[0])  # both syncs start with "H"
            if src.pos == at:  # pragma: no cover - defensive
                return None, skipped

    def _frame_candidate(self, min_index: int):
        src, header = self._src, self.header
        head = src.peek(_FRAME_FIXED.size)
        if len(head) < _FRAME_FIXED.size or head[:2] != FRAME_SYNC:
            return None
        _, index, frame_samples, frame_layers = _FRAME_FIXED.unpack(head)
        if not MIN_NUM_LAYERS <= frame_layers <= header.num_layers:
            return None
        size = _FRAME_FIXED.size + frame_layers * _LAYER_ENTRY.size + _CRC.size
        data = src.peek(size)
        if len(data) < size:
            return None
        (stored,) = _CRC.unpack_from(data, size - _CRC.size)
        if stored != _crc32(data[: size - _CRC.size]):
            return None
        if not min_index <= index < header.num_frames or index - min_index > MAX_LOST_RUN:
            return None
        if frame_samples != header.frame_num_samples(index):
            return None
        entries = [_LAYER_ENTRY.unpack_from(data, _FRAME_FIXED.size + i * _LAYER_ENTRY.size)
                   for i in range(frame_layers)]
        previous = -1
        for layer_id, _ in entries:
            if (previous == -1 and layer_id != 0) or layer_id <= previous \
                    or layer_id >= header.num_layers:
                return None
            previous = layer_id
        src.read(size)
        return "frame", index, frame_samples, entries

    def _end_candidate(self):
        src = self._src
        data = src.peek(END_CHUNK_SIZE)
        if len(data) < END_CHUNK_SIZE or data[:2] != END_SYNC:
            return None
        (stored,) = _CRC.unpack_from(data, END_CHUNK_SIZE - _CRC.size)
        if stored != _crc32(data[: END_CHUNK_SIZE - _CRC.size]):
            return None
        src.read(END_CHUNK_SIZE)
        return "end", data[len(END_SYNC): len(END_SYNC) + _END_BODY.size]

    def _accept_end(self, body: bytes, num_frames: int) -> bool:
        """Take a found end chunk; True when its counts agree with the header."""
        src, header = self._src, self.header
        end_frames, end_samples, md5 = _END_BODY.unpack(body)
        agrees = end_frames == num_frames and end_samples == header.num_samples
        if not agrees:
            self.problems.append(
                f"end chunk counts {end_frames} frames / {end_samples} samples, the header "
                f"declares {num_frames} / {header.num_samples}: MD5 not checked")
        else:
            self.footer = StreamFooter(num_frames=end_frames, num_samples=end_samples, md5=md5)
        if not src.at_end():
            remaining = src.remaining()
            amount = f"{remaining} bytes of" if remaining is not None else "unexpected"
            self.problems.append(f"{amount} trailing data after the end chunk (ignored)")
        return agrees

    def _read_frame(self, index: int, num_frames: int) -> Frame:
        src, header = self._src, self.header
        name = f"frame {index}"
        sync = src.read_exact(
            len(FRAME_SYNC), f"{name} header (stream ends after {index} of {num_frames} frames)"
        )
        if sync != FRAME_SYNC:
            if sync == END_SYNC:
                raise CorruptStreamError(
                    f"corrupt stream: end chunk found after {index} frames, "
                    f"header declares {num_frames}"
                )
            raise CorruptStreamError(f"corrupt stream: {name} header has a bad sync code {sync!r}")
        rest = src.read_exact(_FRAME_FIXED.size - len(FRAME_SYNC), f"{name} header")
        _, frame_index, frame_samples, frame_layers = _FRAME_FIXED.unpack(sync + rest)
        if not MIN_NUM_LAYERS <= frame_layers <= header.num_layers:
            raise CorruptStreamError(
                f"corrupt stream: {name} header declares {frame_layers} layers, "
                f"the header allows 1..{header.num_layers}"
            )
        table = src.read_exact(frame_layers * _LAYER_ENTRY.size, f"{name} layer table")
        (stored,) = _CRC.unpack(src.read_exact(_CRC.size, f"{name} header CRC"))
        computed = _crc32(sync, rest, table)
        if stored != computed:
            raise CorruptStreamError(
                f"corrupt stream: {name} header CRC mismatch "
                f"(stored {stored:08x}, computed {computed:08x})"
            )
        if frame_index != index:
            raise CorruptStreamError(
                f"corrupt stream: {name} header carries frame index {frame_index}, "
                f"expected {index}"
            )
        expected_samples = header.frame_num_samples(index)
        if frame_samples != expected_samples:
            raise CorruptStreamError(
                f"corrupt stream: {name} has {frame_samples} samples, expected "
                f"{expected_samples} (frame_length {header.frame_length}, "
                f"num_samples {header.num_samples})"
            )
        entries = [
            _LAYER_ENTRY.unpack_from(table, i * _LAYER_ENTRY.size) for i in range(frame_layers)
        ]
        previous = -1
        for layer_id, _ in entries:
            if previous == -1 and layer_id != 0:
                raise CorruptStreamError(
                    f"corrupt stream: {name} does not start with layer 0 (first id {layer_id})"
                )
            if layer_id <= previous:
                raise CorruptStreamError(
                    f"corrupt stream: {name} layer ids not strictly increasing "
                    f"({layer_id} after {previous})"
                )
            if layer_id >= header.num_layers:
                raise CorruptStreamError(
                    f"corrupt stream: {name} has layer id {layer_id}, "
                    f"the header declares {header.num_layers} layers"
                )
            previous = layer_id
        layers = self._read_payloads(name, entries)
        return Frame(index=index, num_samples=frame_samples, layers=tuple(layers))

    def _read_payloads(self, name: str, entries) -> list[tuple[int, bytes]]:
        src = self._src
        layers = []
        for layer_id, length in entries:
            where = f"{name} layer id {layer_id}"
            payload = src.read_exact(length, f"{where} payload")
            (stored,) = _CRC.unpack(src.read_exact(_CRC.size, f"{where} CRC"))
            computed = _crc32(payload)
            if stored != computed:
                raise CorruptStreamError(
                    f"corrupt stream: {where} payload CRC mismatch "
                    f"(stored {stored:08x}, computed {computed:08x})"
                )
            layers.append((layer_id, payload))
        return layers

    def _read_end(self, num_frames: int) -> StreamFooter:
        src, header = self._src, self.header
        sync = src.read_exact(len(END_SYNC), f"end chunk (after all {num_frames} frames)")
        if sync != END_SYNC:
            if sync == FRAME_SYNC:
                raise CorruptStreamError(
                    f"corrupt stream: more frames than the {num_frames} the header declares"
                )
            raise CorruptStreamError(f"corrupt stream: end chunk has a bad sync code {sync!r}")
        body = src.read_exact(_END_BODY.size, "end chunk")
        (stored,) = _CRC.unpack(src.read_exact(_CRC.size, "end chunk CRC"))
        computed = _crc32(sync, body)
        if stored != computed:
            raise CorruptStreamError(
                f"corrupt stream: end chunk CRC mismatch "
                f"(stored {stored:08x}, computed {computed:08x})"
            )
        end_frames, end_samples, md5 = _END_BODY.unpack(body)
        if end_frames != num_frames:
            raise CorruptStreamError(
                f"corrupt stream: end chunk counts {end_frames} frames, {num_frames} were read"
            )
        if end_samples != header.num_samples:
            raise CorruptStreamError(
                f"corrupt stream: end chunk counts {end_samples} samples, "
                f"the header declares {header.num_samples}"
            )
        if not src.at_end():
            remaining = src.remaining()
            amount = f"{remaining} bytes of" if remaining is not None else "unexpected"
            raise CorruptStreamError(f"corrupt stream: {amount} trailing data after the end chunk")
        return StreamFooter(num_frames=end_frames, num_samples=end_samples, md5=md5)


def read_stream_layout(path: str | os.PathLike | BinaryIO) -> StreamLayout:
    """Read and check a whole stream; say how many bytes each part takes."""
    if hasattr(path, "read"):
        return _layout(path)  # type: ignore[arg-type]
    with open(path, "rb") as fp:
        return _layout(fp)


def _layout(fp: BinaryIO) -> StreamLayout:
    reader = StreamReader(fp)
    layer_bytes: dict[int, int] = {}
    layer_frames: dict[int, int] = {}
    framing = 0
    num_frames = 0
    for frame in reader.frames():
        num_frames += 1
        framing += FRAME_FIXED_SIZE + LAYER_OVERHEAD * len(frame.layers)
        for layer_id, payload in frame.layers:
            layer_bytes[layer_id] = layer_bytes.get(layer_id, 0) + len(payload)
            layer_frames[layer_id] = layer_frames.get(layer_id, 0) + 1
    framing += END_CHUNK_SIZE
    assert reader.footer is not None
    return StreamLayout(
        header=reader.header,
        footer=reader.footer,
        num_frames=num_frames,
        layer_bytes=dict(sorted(layer_bytes.items())),
        layer_frames=dict(sorted(layer_frames.items())),
        header_bytes=reader.header_bytes,
        framing_bytes=framing,
        total_bytes=reader.bytes_read,
        metadata_bytes=reader.metadata_bytes,
    )
