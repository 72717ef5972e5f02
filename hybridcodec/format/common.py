"""What every version of the container shares: limits, the data types, argument checks,
and the byte source the readers pull from (docs/format.md)."""

from __future__ import annotations

import io
import operator
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, TypeVar

from ..errors import CorruptStreamError, TruncatedStreamError
from .registry import TIER_NAMES
from .varint import NeedMore

# --------------------------------------------------------------------------- constants

MAGIC = b"HYBC"
FORMAT_VERSION = 4
#: Versions this build decodes. A format change bumps FORMAT_VERSION and adds it here;
#: older versions stay in the set for as long as their readers are kept.
SUPPORTED_VERSIONS = frozenset({1, 2, 3, 4})
#: The first version with a metadata chunk.
METADATA_VERSION = 3
#: Versions whose container is the JSON-header layout of docs/format.md, "Version 1-3
#: container" (:mod:`hybridcodec.format.legacy`).
LEGACY_VERSIONS = frozenset({1, 2, 3})

FRAME_SYNC = b"HF"
END_SYNC = b"HE"
METADATA_SYNC = b"HM"
INDEX_SYNC = b"HI"
#: The most bytes a metadata chunk's blob may hold (checked before anything is read).
MAX_METADATA_LEN = 1 << 26

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1, 1_000_000
MIN_CHANNELS, MAX_CHANNELS = 1, 8
MIN_BITS_PER_SAMPLE, MAX_BITS_PER_SAMPLE = 8, 24
MAX_NUM_SAMPLES = 2**40 - 1  # per channel, inclusive
MIN_FRAME_LENGTH, MAX_FRAME_LENGTH = 1, 2**20
MAX_LEVELS = 16  # versions 1-3; version 4 holds 0..15 (see MAX_LEVELS_V4)
MIN_NUM_LAYERS, MAX_NUM_LAYERS = 1, 64
MAX_NUM_FRAMES = 2**32 - 1  # frame indices and the end chunk's count are u32
MAX_STRING_LEN = 255
MODEL_ID_RE = re.compile(r"[0-9a-f]{16}")
MD5_LEN = 16

# version 4
MAX_LEVELS_V4 = 15
MIN_GROUPS, MAX_GROUPS = 1, 15
#: log2(frame_length / segment_length) is at most this: 1024 truncation segments per
#: frame, so a frame header (cut tables and slopes included) stays below 400 kB.
MAX_SEGMENT_SHIFT = 10
MAX_SEGMENTS = 1 << MAX_SEGMENT_SHIFT
MAX_EXTENSION_LEN = 2**16 - 1
#: Payload words one unit may hold (a word is 4 bytes): just under 4 GiB.
MAX_UNIT_WORDS = 2**30 - 1
MAX_TIER_RATE = 2**32 - 1  # tier kind 2: kbit/s x 10

#: Header tier kinds (version 4).
TIER_COMPLETE, TIER_NAMED, TIER_RATE = 0, 1, 2

#: Unit states (version 4): complete and not cuttable; complete with a cut table; a unit
#: truncated to its first k segments has state k + 1.
UNIT_COMPLETE, UNIT_CUTTABLE = 0, 1

#: Frame flag (version 4): a layer no unit covers is empty and complete. Without it such
#: a layer is dropped (not carried: a lower tier).
UNLISTED_EMPTY = 0x01

_CRC = struct.Struct("<I")
CRC_SIZE = _CRC.size

_READ_CHUNK = 1 << 20  # bytes per read() where the input's size is unknown
_SCAN_CHUNK = 1 << 16  # bytes looked at per step while resynchronising
#: The recovering reader reports at most this many consecutive frames as lost; a frame
#: header further ahead is not believed (docs/format.md, "Recovery").
MAX_LOST_RUN = 1 << 16


def crc32(*parts: bytes) -> int:
    """CRC-32 (zlib) of the concatenation of ``parts``."""
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc & 0xFFFFFFFF


def pack_crc(*parts: bytes) -> bytes:
    return _CRC.pack(crc32(*parts))


def unpack_crc(data: bytes, offset: int = 0) -> int:
    return _CRC.unpack_from(data, offset)[0]


def tier_label(kind: int, code: int, rate: int) -> str:
    """The human label of a version 4 tier: ``lossless``, a tier name, or ``96kbps``."""
    if kind == TIER_COMPLETE:
        return "lossless"
    if kind == TIER_NAMED:
        return TIER_NAMES.get(code, f"tier {code}")
    return f"{rate / 10:g}kbps"


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class StreamHeader:
    """What the header chunk says about the stream (docs/format.md, "Header chunk").

    Versions 1-3 store these fields as JSON; version 4 in a packed binary body, which
    adds ``groups``, ``segment_length`` and the tier fields. For a version 4 header,
    ``groups`` (if None) is derived from ``num_layers / (levels + 1)``,
    ``segment_length`` (if None) is ``frame_length``, and ``tier`` is always derived from
    ``tier_kind`` / ``tier_code`` / ``tier_rate`` (the argument is ignored).
    """

    sample_rate: int
    channels: int
    bits_per_sample: int
    subtype: str
    source_format: str
    num_samples: int
    frame_length: int
    model_id: str
    levels: int
    #: Versions 1-3: layers the stream carries (a prefix of the model's order). Version
    #: 4: the layers of the structure, (levels + 1) * groups; which of them a frame
    #: carries, and how much of each, its units say.
    num_layers: int
    #: The quality tier, as a label (versions 1-3: stored; version 4: derived).
    tier: str = "lossless"
    #: Versions 1-3: JSON keys this version does not know; version 4: the extension
    #: object. Kept and written back unchanged.
    extra: dict = field(default_factory=dict)
    #: Versions 1-3: the header's flags byte (no bit defined; kept). Version 4: always
    #: 0 here: its flag bits describe the layout, which the reader reports
    #: (:attr:`StreamReader.compact`, :attr:`StreamReader.has_index`) and the writer sets.
    flags: int = 0
    #: The format version the stream was written in. A rewriting tool keeps it.
    version: int = FORMAT_VERSION
    #: The metadata chunk's blob (version 3 on; None: the stream has no metadata chunk).
    #: Written right after the header chunk, so a rewriting tool keeps it with the header.
    metadata: bytes | None = field(default=None, repr=False)
    #: Version 4: precision groups per band (versions 1-3 keep it in ``extra``).
    groups: int | None = None
    #: Version 4: samples per truncation segment (a power of two dividing frame_length).
    segment_length: int | None = None
    #: Version 4: TIER_COMPLETE (every frame carries every layer in full), TIER_NAMED
    #: (``tier_code`` names it, see registry.TIER_NAMES) or TIER_RATE (``tier_rate``).
    tier_kind: int = TIER_COMPLETE
    tier_code: int = 0
    #: Version 4, TIER_RATE: the target in units of 0.1 kbit/s.
    tier_rate: int = 0

    def __post_init__(self) -> None:
        if as_int(self.version) is None or self.version < 4:
            return
        if self.groups is None:
            levels, layers = as_int(self.levels), as_int(self.num_layers)
            if levels is not None and layers is not None and levels >= 0 \
                    and layers % (levels + 1) == 0:
                object.__setattr__(self, "groups", layers // (levels + 1))
        if self.segment_length is None:
            object.__setattr__(self, "segment_length", self.frame_length)
        kind, code, rate = (as_int(v) for v in (self.tier_kind, self.tier_code,
                                                   self.tier_rate))
        if None not in (kind, code, rate):
            object.__setattr__(self, "tier", tier_label(kind, code, rate))

    @property
    def num_frames(self) -> int:
        """ceil(num_samples / frame_length): the number of frame chunks in the stream."""
        return -(-self.num_samples // self.frame_length)

    def frame_num_samples(self, index: int) -> int:
        """Samples per channel in frame ``index``: frame_length except for the last frame."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame index {index} out of range 0..{self.num_frames - 1}")
        return min(self.frame_length, self.num_samples - index * self.frame_length)

    def frame_segments(self, index: int) -> int:
        """Version 4: truncation segments in frame ``index`` (S in docs/format.md)."""
        return -(-self.frame_num_samples(index) // int(self.segment_length or
                                                        self.frame_length))

    @property
    def complete(self) -> bool:
        """True for a lossless stream: every frame carries every layer in full."""
        if self.version >= 4:
            return self.tier_kind == TIER_COMPLETE
        return self.tier == "lossless"


@dataclass(frozen=True)
class Unit:
    """Version 4: one payload covering layers ``first .. first + count - 1``.

    ``payload`` is a whole number of 32-bit words. ``state``: UNIT_COMPLETE (0, not
    cuttable), UNIT_CUTTABLE (1, complete, ``cuts`` has S - 1 entries) or k + 1 (cut to
    its first k segments, ``cuts`` has k - 1 entries). ``cuts[j - 1]`` is c_j, the word
    offset where the suffix that decodes the first j segments starts (c_1 >= c_2 >= ...).
    ``slopes``: one priority byte per segment the unit holds if it is cuttable, else one.
    Only a single-layer unit (count 1) can be cuttable.
    """

    first: int
    count: int
    payload: bytes
    state: int = UNIT_COMPLETE
    cuts: tuple[int, ...] = ()
    slopes: bytes = b"\x00"

    @property
    def end(self) -> int:
        """One past the last layer id the unit covers."""
        return self.first + self.count

    @property
    def cuttable(self) -> bool:
        return self.state != UNIT_COMPLETE

    @property
    def truncated(self) -> bool:
        """Cut to fewer segments than its frame has."""
        return self.state > UNIT_CUTTABLE

    def segments(self, frame_segments: int) -> int:
        """Segments the payload decodes (the frame's S unless truncated)."""
        return self.state - 1 if self.truncated else frame_segments


@dataclass(frozen=True)
class Frame:
    """One frame: its index, its length in samples per channel, and its payloads.

    Versions 1-3 carry ``layers``, (layer_id, payload) pairs with ids strictly increasing
    from 0. Version 4 carries ``units`` (in layer order, not overlapping) and ``flags``
    (UNLISTED_EMPTY or 0); ``layers`` is then empty.
    """

    index: int
    num_samples: int
    layers: tuple[tuple[int, bytes], ...] = ()
    units: tuple[Unit, ...] | None = None
    flags: int = 0

    @property
    def payload_bytes(self) -> int:
        if self.units is not None:
            return sum(len(u.payload) for u in self.units)
        return sum(len(p) for _, p in self.layers)


@dataclass(frozen=True)
class StreamFooter:
    """The end chunk: frame count, sample count and MD5 of the PCM (docs/format.md).

    ``index_offset``: version 4 only, where the index chunk starts (0: none); None for
    versions 1-3, whose end chunk has no such field.
    """

    num_frames: int
    num_samples: int
    md5: bytes
    index_offset: int | None = None


@dataclass(frozen=True)
class DamagedFrame:
    """A frame the recovering reader could not deliver (docs/format.md, "Recovery").

    ``reason`` is one line: the CRC that failed, or why the frame was not found. The
    frame's length comes from the stream header, so its samples can be filled in.
    """

    index: int
    num_samples: int
    reason: str


@dataclass(frozen=True)
class StreamLayout:
    """Where the bytes of a stream go, for ``hybridcodec info`` and ``truncate``.

    ``header_bytes + framing_bytes + sum(layer_bytes.values()) == total_bytes``. A
    version 4 unit covering several layers has its bytes counted under its first layer.
    """

    header: StreamHeader
    footer: StreamFooter
    num_frames: int
    layer_bytes: dict[int, int]  # layer_id -> payload bytes summed over all frames
    layer_frames: dict[int, int]  # layer_id -> number of frames that carry it
    header_bytes: int  # the header chunk and the metadata chunk (if any)
    framing_bytes: int  # frame headers, unit tables, CRCs, index and end chunk
    total_bytes: int
    metadata_bytes: int = 0  # the metadata chunk (part of header_bytes)
    #: Layers carried: versions 1-3 the header's num_layers; version 4 the most any
    #: frame carries (a layer counts if a unit covers it or it is unlisted and empty).
    layers_carried: int = 0
    compact: bool = False  # version 4: the whole stream is one chunk
    index_bytes: int = 0  # version 4: the index chunk (part of framing_bytes)
    units: int = 0  # version 4: units in all frames
    cuttable_units: int = 0  # ... of which have a cut table
    truncated_units: int = 0  # ... of which were cut to fewer segments
    multi_layer_units: int = 0  # ... of which cover more than one layer

    @property
    def overhead_bytes(self) -> int:
        """Everything that is not layer payload."""
        return self.header_bytes + self.framing_bytes

    @property
    def payload_bytes(self) -> int:
        return sum(self.layer_bytes.values())


# --------------------------------------------------------------------------- validation


def as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer (bools excluded), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def short_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(name: str, value: Any, lo: int, hi: int) -> str | None:
    number = as_int(value)
    if number is None:
        return f"{name} must be an integer, got {short_repr(value)}"
    if not lo <= number <= hi:
        return f"{name} must be in {lo}..{hi}, got {number}"
    return None


def check_str(name: str, value: Any, *, ascii_only: bool = False) -> str | None:
    if not isinstance(value, str):
        return f"{name} must be a string, got {short_repr(value)}"
    if not 1 <= len(value) <= MAX_STRING_LEN or not value.isprintable() \
            or (ascii_only and not value.isascii()):
        kind = "printable ASCII" if ascii_only else "printable"
        return f"{name} must be 1..{MAX_STRING_LEN} {kind} characters, got {short_repr(value)}"
    return None


def payload_bytes(payload: Any, where: str) -> bytes:
    """``payload`` as bytes; ValueError (a programming error) if it is no bytes-like."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(memoryview(payload).cast("B"))
    raise ValueError(f"{where}: payload must be bytes, got {type(payload).__name__}")


# --------------------------------------------------------------------------- reading


class Source:
    """Reads from a binary file object, counting bytes and knowing what is left if it can.

    Bytes can be looked at before they are consumed (:meth:`peek`) and pushed back
    (:meth:`unread`); :meth:`start_record` / :meth:`stop_record` keep a copy of what is
    consumed in between. The recovering reader uses these to resynchronise after a
    damaged frame on any input, a pipe included, holding at most one frame's bytes.
    Positions count from where the file was when the reader started (the stream start).
    """

    def __init__(self, fp: BinaryIO):
        self._fp = fp
        self.pos = 0  # bytes consumed since the reader started
        self._size: int | None = None  # bytes from the start position to the end, if known
        self._start = 0
        self._buf = bytearray()  # read from fp (or pushed back) but not consumed yet
        self._record: bytearray | None = None
        try:
            start = fp.tell()
            end = fp.seek(0, io.SEEK_END)
            fp.seek(start)
            if isinstance(start, int) and isinstance(end, int) and end >= start:
                self._size = end - start
                self._start = start
        except (OSError, ValueError, AttributeError, TypeError):
            self._size = None

    @property
    def seekable(self) -> bool:
        return self._size is not None

    @property
    def size(self) -> int | None:
        """The stream's size in bytes (from its start), None for a pipe."""
        return self._size

    def remaining(self) -> int | None:
        """Bytes left in the input, or None where the input cannot tell (a pipe)."""
        return None if self._size is None else max(self._size - self.pos, 0)

    def seek(self, pos: int) -> None:
        """Go to byte ``pos`` of the stream (seekable inputs only)."""
        if self._size is None:
            raise ValueError("the input is not seekable")
        self._fp.seek(self._start + pos)
        self._buf.clear()
        self.pos = pos

    def skip(self, n: int) -> int:
        """Consume ``n`` bytes without keeping them (seek where possible); the count."""
        if n <= 0:
            return 0
        remaining = self.remaining()
        if remaining is not None:
            n = min(n, remaining)
            take = min(n, len(self._buf))
            del self._buf[:take]
            if n > take:
                self._fp.seek(self._start + self.pos + n)
            self.pos += n
            return n
        done = 0
        while done < n:
            got = len(self.read(min(_READ_CHUNK, n - done)))
            if not got:
                break
            done += got
        return done

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

    def read_to_end(self) -> bytes:
        """Everything left (in bounded pieces where the size is unknown)."""
        remaining = self.remaining()
        if remaining is not None:
            return self.read(remaining)
        chunks = []
        while True:
            data = self.read(_READ_CHUNK)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

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


T = TypeVar("T")

#: The first peek of a variable-length structure; doubled until it is enough.
_FIRST_PEEK = 64


def peek_parse(src: Source, parse: Callable[[bytes], tuple[T, int]], max_size: int,
               what: str) -> tuple[T, bytes]:
    """Parse a variable-length structure at the current position without consuming it.

    ``parse(buf)`` returns (result, size) or raises :class:`NeedMore`; it is tried on a
    growing peek (at most ``max_size`` bytes, the structure's largest valid size). Returns
    (result, the structure's bytes); the caller consumes them. The input ending first is
    a :class:`TruncatedStreamError` naming ``what``.
    """
    want = min(_FIRST_PEEK, max_size)
    while True:
        buf = src.peek(want)
        try:
            result, size = parse(buf)
            return result, buf[:size]
        except NeedMore as more:
            if len(buf) < want:
                raise TruncatedStreamError(
                    f"truncated stream: {what} is cut short (the input ends after "
                    f"{len(buf)} of its bytes)") from None
            if want >= max_size:  # pragma: no cover - max_size bounds every valid parse
                raise CorruptStreamError(f"corrupt stream: {what} is too long") from None
            want = min(max(2 * want, more.needed), max_size)


# --------------------------------------------------------------------------- metadata chunk

_META_FIXED = struct.Struct("<2sI")  # sync, blob length
METADATA_OVERHEAD = _META_FIXED.size + CRC_SIZE  # 10 bytes + the blob


def metadata_chunk(blob: bytes) -> bytes:
    """The metadata chunk (versions 3 and 4): ``HM`` | length u32 | blob | CRC-32."""
    head = _META_FIXED.pack(METADATA_SYNC, len(blob))
    return head + blob + pack_crc(head, blob)


def read_metadata_chunk(src: Source) -> bytes:
    """The blob of the metadata chunk at the current position (its sync is there).

    The declared length is checked against MAX_METADATA_LEN and the input before any
    byte of the blob is read.
    """
    head = src.read_exact(_META_FIXED.size, "metadata chunk")
    _, length = _META_FIXED.unpack(head)
    if length == 0 or length > MAX_METADATA_LEN:
        raise CorruptStreamError(
            f"corrupt stream: metadata chunk declares {length} bytes, "
            f"1..{MAX_METADATA_LEN} allowed")
    blob = src.read_exact(length, f"metadata chunk ({length} bytes)")
    stored = unpack_crc(src.read_exact(CRC_SIZE, "metadata chunk CRC"))
    computed = crc32(head, blob)
    if stored != computed:
        raise CorruptStreamError(
            f"corrupt stream: metadata chunk CRC mismatch "
            f"(stored {stored:08x}, computed {computed:08x})")
    return blob


def metadata_problem(header: StreamHeader) -> str | None:
    if header.metadata is None:
        return None
    if not isinstance(header.metadata, (bytes, bytearray, memoryview)):
        return f"metadata must be bytes, got {type(header.metadata).__name__}"
    if int(header.version) < METADATA_VERSION:
        return f"a version {int(header.version)} stream has no metadata chunk"
    if not 1 <= len(header.metadata) <= MAX_METADATA_LEN:
        return f"metadata must be 1..{MAX_METADATA_LEN} bytes, got {len(header.metadata)}"
    return None
