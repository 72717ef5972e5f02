"""What an audio file carries besides its PCM: tags, pictures, cue sheets, chunks.

The life of a file's metadata through the codec:

* :func:`scan_container` walks a FLAC, WAV (RIFF, RF64, Wave64) or AIFF/AIFF-C file and
  captures every metadata block or chunk that is not the audio or its format description,
  as raw bytes in file order (:class:`Metadata`). It also reports what the container
  itself declares about the audio's length, which :mod:`hybridcodec.audio_io` compares
  with what is really there.
* :meth:`Metadata.to_bytes` / :func:`parse_metadata` are the canonical serialisation that
  the stream's metadata chunk holds (docs/format.md, "Metadata chunk"); parsing is strict,
  since the bytes come from an untrusted stream.
* :func:`plan_restore` decides what goes back into a decoded file: everything, byte for
  byte, into the same container type; what maps cleanly into another (tags); and one
  warning line per kind of thing that cannot be carried. :func:`apply_plan` rewrites a
  file libsndfile has just written accordingly; :func:`riff_head` gives the chunks a WAV
  written front to back (to a pipe) puts before its data.

Containers are walked by hand: mutagen reads tags but does not hand out the raw blocks
and chunks in order, which a byte-identical restore needs. Mutagen does parse the blocks
whose content matters (Vorbis comments, pictures, cue sheets) for display and for
mapping tags between containers.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Iterable, Sequence

from .errors import CorruptStreamError

__all__ = [
    "Entry",
    "Metadata",
    "ContainerScan",
    "RestorePlan",
    "MAX_METADATA_BYTES",
    "BLOB_VERSION",
    "scan_container",
    "parse_metadata",
    "plan_restore",
    "apply_plan",
    "riff_head",
    "describe_metadata",
]

#: Version of the blob layout (its first byte); a reader rejects any other.
BLOB_VERSION = 1
#: The most metadata a stream holds (the blob); bigger files keep what fits, in order.
MAX_METADATA_BYTES = 1 << 26

# container codes (blob byte 1)
FLAC, WAV, RF64, W64, AIFF, AIFC = 1, 2, 3, 4, 5, 6
CONTAINER_NAMES = {FLAC: "FLAC", WAV: "WAV", RF64: "RF64", W64: "Wave64", AIFF: "AIFF",
                   AIFC: "AIFF-C"}
_FAMILY = {FLAC: "FLAC", WAV: "WAV", RF64: "WAV", W64: "WAV", AIFF: "AIFF", AIFC: "AIFF"}

# entry kinds (docs/format.md, "Metadata blob")
FLAC_BLOCK = 1
RIFF_BEFORE, RIFF_AFTER, RIFF_FMT = 2, 3, 4
AIFF_BEFORE, AIFF_AFTER = 5, 6
W64_BEFORE, W64_AFTER = 7, 8
_AFTER_KINDS = (RIFF_AFTER, AIFF_AFTER, W64_AFTER)
_KIND_CONTAINERS = {
    FLAC_BLOCK: (FLAC,),
    RIFF_BEFORE: (WAV, RF64), RIFF_AFTER: (WAV, RF64), RIFF_FMT: (WAV, RF64, W64),
    AIFF_BEFORE: (AIFF, AIFC), AIFF_AFTER: (AIFF, AIFC),
    W64_BEFORE: (W64,), W64_AFTER: (W64,),
}
_NAME_LEN = {FLAC_BLOCK: 1, RIFF_BEFORE: 4, RIFF_AFTER: 4, RIFF_FMT: 4, AIFF_BEFORE: 4,
             AIFF_AFTER: 4, W64_BEFORE: 16, W64_AFTER: 16}

_MAX_FLAC_BLOCK = (1 << 24) - 1
_MAX_FMT = 1024
_BLOB_HEAD = struct.Struct("<BBI")  # blob version, container, entry count
_ENTRY_MIN = 6  # kind u8, name_len u8, data_len u32 (plus the name)

# FLAC block types
_STREAMINFO, _PADDING, _APPLICATION, _SEEKTABLE, _VORBIS_COMMENT, _CUESHEET, _PICTURE = \
    0, 1, 2, 3, 4, 5, 6
_FLAC_BLOCK_NAMES = {_APPLICATION: "APPLICATION", _VORBIS_COMMENT: "VORBIS_COMMENT",
                     _CUESHEET: "CUESHEET", _PICTURE: "PICTURE"}

# RIFF / AIFF chunks that describe or pad the audio: the decoder writes its own
_RIFF_STRUCTURAL = {b"fmt ", b"data", b"fact", b"ds64", b"JUNK", b"junk", b"PAD ",
                    b"RIFF", b"RF64", b"BW64", b"FLLR"}
_AIFF_STRUCTURAL = {b"COMM", b"SSND", b"FVER", b"FORM"}

# Wave64 GUIDs: a chunk named by a FOURCC has the FOURCC then this suffix
_W64_SUFFIX = bytes.fromhex("f3acd3118cd100c04f8edb8a")
_W64_RIFF = bytes.fromhex("726966662e91cf11a5d628db04c10000")
_W64_LIST = bytes.fromhex("6c6973742f91cf11a5d628db04c10000")
_W64_STRUCTURAL = {fourcc + _W64_SUFFIX for fourcc in
                   (b"wave", b"fmt ", b"fact", b"data", b"junk")} | {_W64_RIFF}

_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_PCM_GUID = bytes.fromhex("0100000000001000800000aa00389b71")

#: Channel masks FLAC assumes for 1..8 channels (FLAC format, "channel assignment");
#: ``flac`` stores a WAVEFORMATEXTENSIBLE_CHANNEL_MASK tag only for other masks.
FLAC_DEFAULT_MASKS = {1: 0x4, 2: 0x3, 3: 0x7, 4: 0x33, 5: 0x607, 6: 0x60F, 7: 0x70F,
                      8: 0x63F}
_MASK_TAG = "WAVEFORMATEXTENSIBLE_CHANNEL_MASK"

# Tags that mean the same thing in every container (Vorbis comment field names)
_INFO_IDS = {"TITLE": b"INAM", "ARTIST": b"IART", "ALBUM": b"IPRD", "COMMENT": b"ICMT",
             "COPYRIGHT": b"ICOP", "DATE": b"ICRD", "GENRE": b"IGNR",
             "TRACKNUMBER": b"ITRK", "ENCODER": b"ISFT"}
_INFO_FIELDS = {v: k for k, v in _INFO_IDS.items()}
_AIFF_IDS = {"TITLE": b"NAME", "ARTIST": b"AUTH", "COPYRIGHT": b"(c) ", "COMMENT": b"ANNO"}
_AIFF_FIELDS = {v: k for k, v in _AIFF_IDS.items()}

_COPY_CHUNK = 1 << 20  # bytes moved at a time when a file is rewritten in place


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Entry:
    """One captured block or chunk: ``kind`` (see the module constants), its ``name``
    (FLAC block type as one byte, a FOURCC, or a Wave64 GUID) and its raw body."""

    kind: int
    name: bytes
    data: bytes = field(repr=False)

    @property
    def label(self) -> str:
        """A short human name: ``PICTURE``, ``bext``, ``block type 9``, ..."""
        if self.kind == FLAC_BLOCK:
            return _FLAC_BLOCK_NAMES.get(self.name[0], f"block type {self.name[0]}")
        if self.kind in (W64_BEFORE, W64_AFTER):
            fourcc = _w64_fourcc(self.name)
            return _show_id(fourcc) if fourcc else self.name.hex()
        return _show_id(self.name)


@dataclass(frozen=True)
class Metadata:
    """Everything besides PCM that a source file carried, in file order."""

    container: int
    entries: tuple[Entry, ...]

    @property
    def container_name(self) -> str:
        return CONTAINER_NAMES[self.container]

    @property
    def family(self) -> str:
        """``FLAC``, ``WAV`` or ``AIFF``: the output format that takes every entry back."""
        return _FAMILY[self.container]

    def to_bytes(self) -> bytes:
        """The canonical blob (docs/format.md, "Metadata blob")."""
        parts = [_BLOB_HEAD.pack(BLOB_VERSION, self.container, len(self.entries))]
        for e in self.entries:
            parts.append(struct.pack("<BB", e.kind, len(e.name)) + e.name
                         + struct.pack("<I", len(e.data)))
            parts.append(e.data)
        return b"".join(parts)


@dataclass
class ContainerScan:
    """What :func:`scan_container` found: the metadata, notes on what it could not keep,
    and what the container declares about the audio."""

    container: int | None = None
    metadata: Metadata | None = None
    #: one line each: what was found but not captured (too big, unreadable structure)
    notes: list[str] = field(default_factory=list)
    #: samples per channel that the header declares (WAV/AIFF), or None
    declared_frames: int | None = None
    #: FLAC STREAMINFO, when the file is FLAC
    flac: "FlacStreamInfo | None" = None


@dataclass(frozen=True)
class FlacStreamInfo:
    """The STREAMINFO fields the length and MD5 checks need."""

    offset: int  # file offset of the STREAMINFO body
    min_blocksize: int
    max_blocksize: int
    sample_rate: int
    channels: int
    bits_per_sample: int
    total_samples: int  # 0: unknown
    md5: bytes  # all zero: not computed by the writer
    audio_offset: int  # first byte after the metadata blocks


# --------------------------------------------------------------------------- small helpers


def _show_id(name: bytes) -> str:
    text = name.decode("latin-1")
    return text if text.isprintable() else name.hex()


def _w64_fourcc(guid: bytes) -> bytes | None:
    """The RIFF id a Wave64 chunk GUID stands for, or None."""
    if guid == _W64_LIST:
        return b"LIST"
    if guid[4:] == _W64_SUFFIX:
        return guid[:4]
    return None


def _printable_id(name: bytes) -> bool:
    return all(0x20 <= b <= 0x7E for b in name)


def _size(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} kiB"
    return f"{n} B"


def _text(data: bytes) -> str:
    """Text from a chunk: up to the first NUL, UTF-8 if it is, else Latin-1."""
    data = data.split(b"\0", 1)[0]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _one_line(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class _Reader:
    """Bounded reads from a seekable file (position given explicitly)."""

    def __init__(self, fp: BinaryIO, size: int):
        self.fp = fp
        self.size = size

    def at(self, pos: int, n: int) -> bytes:
        if pos < 0 or n <= 0 or pos >= self.size:
            return b""
        self.fp.seek(pos)
        return self.fp.read(min(n, self.size - pos))


# --------------------------------------------------------------------------- capture


def scan_container(src, *, capture: bool = True) -> ContainerScan:
    """Walk a FLAC/WAV/AIFF file (a path, or a seekable binary file whose position is
    kept) and return its metadata (when ``capture``), notes and declared length.

    Anything else gives an empty scan; a structure that stops making sense ends the walk
    with a note (libsndfile, not this function, decides whether the audio is readable).
    """
    if hasattr(src, "read"):
        where = src.tell()
        try:
            src.seek(0, os.SEEK_END)
            size = src.tell()
            return _scan(_Reader(src, size), capture)
        finally:
            src.seek(where)
    with open(src, "rb") as fp:
        fp.seek(0, os.SEEK_END)
        return _scan(_Reader(fp, fp.tell()), capture)


def _scan(r: _Reader, capture: bool) -> ContainerScan:
    head = r.at(0, 16)
    if head[:4] == b"fLaC" or head[:3] == b"ID3":
        return _scan_flac(r, capture)
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return _scan_riff(r, capture)
    if head == _W64_RIFF:
        return _scan_w64(r, capture)
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return _scan_aiff(r, capture)
    return ContainerScan()


class _Collector:
    """Entries in file order, within MAX_METADATA_BYTES; notes for what did not fit."""

    def __init__(self, container: int, capture: bool, scan: ContainerScan):
        self.container = container
        self.capture = capture
        self.scan = scan
        self.entries: list[Entry] = []
        self.total = _BLOB_HEAD.size
        self.skipped: list[str] = []

    def add(self, r: _Reader, kind: int, name: bytes, pos: int, length: int) -> None:
        if not self.capture:
            return
        cost = _ENTRY_MIN + len(name) + length
        if self.total + cost > MAX_METADATA_BYTES:
            self.skipped.append(f"{Entry(kind, name, b'').label} ({_size(length)})")
            return
        self.entries.append(Entry(kind, name, r.at(pos, length)))
        self.total += cost

    def finish(self) -> ContainerScan:
        if self.skipped:
            self.scan.notes.append(
                f"metadata not stored ({_size(MAX_METADATA_BYTES)} at most): "
                + ", ".join(self.skipped))
        if self.entries:
            self.scan.metadata = Metadata(self.container, tuple(self.entries))
        return self.scan


def _scan_flac(r: _Reader, capture: bool) -> ContainerScan:
    scan = ContainerScan(container=FLAC)
    pos = 0
    head = r.at(0, 10)
    if head[:3] == b"ID3" and len(head) == 10:
        # An ID3v2 tag in front of a FLAC stream is not part of FLAC: libsndfile and
        # flac skip it, and so do we (it has no place in a FLAC file we write).
        size = 0
        for b in head[6:10]:
            size = (size << 7) | (b & 0x7F)
        pos = 10 + size + (10 if head[5] & 0x10 else 0)
        scan.notes.append(f"ID3v2 tag before the FLAC stream ({_size(pos)}) not stored")
    if r.at(pos, 4) != b"fLaC":
        return ContainerScan()
    pos += 4
    out = _Collector(FLAC, capture, scan)
    while True:
        hdr = r.at(pos, 4)
        if len(hdr) < 4:
            scan.notes.append("FLAC metadata ends early (no last-block flag)")
            break
        btype, length = hdr[0] & 0x7F, int.from_bytes(hdr[1:], "big")
        body = pos + 4
        if body + length > r.size or btype == 127:
            scan.notes.append(f"FLAC metadata block at byte {pos} is damaged: later blocks "
                              "not stored")
            break
        if btype == _STREAMINFO and length >= 34 and scan.flac is None:
            scan.flac = _streaminfo(r.at(body, 34), body)
        elif btype not in (_STREAMINFO, _PADDING, _SEEKTABLE):
            out.add(r, FLAC_BLOCK, bytes([btype]), body, length)
        pos = body + length
        if hdr[0] & 0x80:
            if scan.flac is not None:
                scan.flac = replace(scan.flac, audio_offset=pos)
            break
    return out.finish()


def _streaminfo(data: bytes, offset: int) -> FlacStreamInfo:
    min_bs, max_bs = struct.unpack(">HH", data[:4])
    packed = int.from_bytes(data[10:18], "big")
    return FlacStreamInfo(
        offset=offset, min_blocksize=min_bs, max_blocksize=max_bs,
        sample_rate=packed >> 44, channels=((packed >> 41) & 7) + 1,
        bits_per_sample=((packed >> 36) & 31) + 1, total_samples=packed & ((1 << 36) - 1),
        md5=bytes(data[18:34]), audio_offset=0)


def _fmt_block_align(body: bytes) -> int | None:
    if len(body) < 16:
        return None
    align = struct.unpack_from("<H", body, 12)[0]
    return align or None


def _scan_riff(r: _Reader, capture: bool) -> ContainerScan:
    magic = r.at(0, 4)
    container = WAV if magic == b"RIFF" else RF64
    scan = ContainerScan(container=container)
    out = _Collector(container, capture, scan)
    riff_end = 8 + struct.unpack("<I", r.at(4, 4))[0]
    # A RIFF size that is wrong (0 or 0xFFFFFFFF from a pipe, or too large) is common;
    # the file's own end is the better bound then.
    end = riff_end if container == WAV and 12 <= riff_end <= r.size else r.size
    sizes: dict[bytes, int] = {}  # RF64: 64-bit sizes from ds64
    pos, after_data, align = 12, False, None
    while pos + 8 <= end:
        head = r.at(pos, 8)
        cid, length = head[:4], struct.unpack("<I", head[4:])[0]
        body = pos + 8
        if not _printable_id(cid):
            scan.notes.append(f"WAV chunk structure unreadable at byte {pos}: later chunks "
                              "not stored")
            break
        if container == RF64 and cid == b"ds64" and length >= 28:
            ds64 = r.at(body, length)
            sizes[b"data"] = struct.unpack_from("<Q", ds64, 8)[0]
            (count,) = struct.unpack_from("<I", ds64, 24)
            for i in range(min(count, (len(ds64) - 28) // 12)):
                name, big = struct.unpack_from("<4sQ", ds64, 28 + 12 * i)
                sizes[name] = big
        if container == RF64 and length == 0xFFFFFFFF and cid in sizes:
            length = sizes[cid]
        if cid == b"data":
            if align:
                scan.declared_frames = length // align
            after_data = True
            if body + length > end:
                break  # the data runs to the end of the file (or claims to)
        elif body + length > end:
            scan.notes.append(f"WAV chunk {_show_id(cid)!r} at byte {pos} runs past the end "
                              "of the file: not stored")
            break
        elif cid == b"fmt ":
            fmt = r.at(body, min(length, _MAX_FMT + 1))
            align = _fmt_block_align(fmt)
            if not _plain_pcm_fmt(fmt) and length <= _MAX_FMT:
                out.add(r, RIFF_FMT, cid, body, length)
        elif cid not in _RIFF_STRUCTURAL:
            out.add(r, RIFF_AFTER if after_data else RIFF_BEFORE, cid, body, length)
        pos = body + length + (length & 1)
    return out.finish()


def _scan_w64(r: _Reader, capture: bool) -> ContainerScan:
    scan = ContainerScan(container=W64)
    out = _Collector(W64, capture, scan)
    pos, after_data, align = 40, False, None
    while pos + 24 <= r.size:
        head = r.at(pos, 24)
        guid, length = head[:16], struct.unpack("<Q", head[16:])[0]
        if length < 24:
            scan.notes.append(f"Wave64 chunk structure unreadable at byte {pos}: later "
                              "chunks not stored")
            break
        body, blen = pos + 24, length - 24
        if guid == b"data" + _W64_SUFFIX:
            if align:
                scan.declared_frames = blen // align
            after_data = True
            if body + blen > r.size:
                break
        elif body + blen > r.size:
            scan.notes.append(f"Wave64 chunk at byte {pos} runs past the end of the file: "
                              "not stored")
            break
        elif guid == b"fmt " + _W64_SUFFIX:
            fmt = r.at(body, min(blen, _MAX_FMT + 1))
            align = _fmt_block_align(fmt)
            if not _plain_pcm_fmt(fmt) and blen <= _MAX_FMT:
                out.add(r, RIFF_FMT, b"fmt ", body, blen)
        elif guid not in _W64_STRUCTURAL:
            out.add(r, W64_AFTER if after_data else W64_BEFORE, guid, body, blen)
        pos = body + blen + (-blen % 8)
    return out.finish()


def _scan_aiff(r: _Reader, capture: bool) -> ContainerScan:
    container = AIFF if r.at(8, 4) == b"AIFF" else AIFC
    scan = ContainerScan(container=container)
    out = _Collector(container, capture, scan)
    form_end = 8 + struct.unpack(">I", r.at(4, 4))[0]
    end = form_end if 12 <= form_end <= r.size else r.size
    pos, after_data = 12, False
    while pos + 8 <= end:
        head = r.at(pos, 8)
        cid, length = head[:4], struct.unpack(">I", head[4:])[0]
        body = pos + 8
        if not _printable_id(cid):
            scan.notes.append(f"AIFF chunk structure unreadable at byte {pos}: later chunks "
                              "not stored")
            break
        if cid == b"SSND":
            after_data = True
            if body + length > end:
                break
        elif body + length > end:
            scan.notes.append(f"AIFF chunk {_show_id(cid)!r} at byte {pos} runs past the end "
                              "of the file: not stored")
            break
        elif cid == b"COMM" and length >= 8:
            scan.declared_frames = struct.unpack(">I", r.at(body + 2, 4))[0]
        elif cid not in _AIFF_STRUCTURAL:
            out.add(r, AIFF_AFTER if after_data else AIFF_BEFORE, cid, body, length)
        pos = body + length + (length & 1)
    return out.finish()


def _plain_pcm_fmt(body: bytes) -> bool:
    """A 16-byte WAVE_FORMAT_PCM fmt chunk: exactly what the decoder writes anyway."""
    return len(body) == 16 and struct.unpack_from("<H", body)[0] == _WAVE_FORMAT_PCM


# --------------------------------------------------------------------------- the blob


def _corrupt(text: str) -> CorruptStreamError:
    return CorruptStreamError(f"corrupt stream: metadata chunk: {text}")


def parse_metadata(blob: bytes) -> Metadata:
    """Parse a metadata blob, checking every rule of docs/format.md ("Metadata blob").

    Raises :class:`CorruptStreamError` (one line) for anything malformed; every length is
    checked against the bytes that remain before it is used.
    """
    data = memoryview(blob)
    if len(data) > MAX_METADATA_BYTES:
        raise _corrupt(f"{len(data)} bytes, at most {MAX_METADATA_BYTES} allowed")
    if len(data) < _BLOB_HEAD.size:
        raise _corrupt(f"{len(data)} bytes, too short for its header")
    version, container, count = _BLOB_HEAD.unpack_from(data)
    if version != BLOB_VERSION:
        raise _corrupt(f"unknown blob version {version} (this hybridcodec reads "
                       f"{BLOB_VERSION})")
    if container not in CONTAINER_NAMES:
        raise _corrupt(f"unknown source container {container}")
    pos = _BLOB_HEAD.size
    if count == 0:
        raise _corrupt("no entries (a stream without metadata has no metadata chunk)")
    if count > (len(data) - pos) // _ENTRY_MIN:
        raise _corrupt(f"{count} entries cannot fit in {len(data)} bytes")
    entries = []
    seen_after = seen_fmt = False
    for i in range(count):
        where = f"entry {i}"
        if pos + 2 > len(data):
            raise _corrupt(f"{where} is truncated")
        kind, name_len = data[pos], data[pos + 1]
        pos += 2
        if kind not in _NAME_LEN:
            raise _corrupt(f"{where} has unknown kind {kind}")
        if container not in _KIND_CONTAINERS[kind]:
            raise _corrupt(f"{where}: kind {kind} does not belong in a "
                           f"{CONTAINER_NAMES[container]} source")
        if name_len != _NAME_LEN[kind]:
            raise _corrupt(f"{where}: name of {name_len} bytes, kind {kind} needs "
                           f"{_NAME_LEN[kind]}")
        if pos + name_len + 4 > len(data):
            raise _corrupt(f"{where} is truncated")
        name = bytes(data[pos:pos + name_len])
        (length,) = struct.unpack_from("<I", data, pos + name_len)
        pos += name_len + 4
        if length > len(data) - pos:
            raise _corrupt(f"{where} declares {length} bytes, only {len(data) - pos} remain")
        problem = _entry_problem(kind, name, length)
        if problem:
            raise _corrupt(f"{where}: {problem}")
        if kind == RIFF_FMT:
            if seen_fmt:
                raise _corrupt(f"{where}: a second fmt chunk")
            seen_fmt = True
        if kind in _AFTER_KINDS:
            seen_after = True
        elif seen_after:
            raise _corrupt(f"{where}: a chunk before the audio data listed after one "
                           "that follows it")
        entries.append(Entry(kind, name, bytes(data[pos:pos + length])))
        pos += length
    if pos != len(data):
        raise _corrupt(f"{len(data) - pos} bytes after the last entry")
    return Metadata(container, tuple(entries))


def _entry_problem(kind: int, name: bytes, length: int) -> str | None:
    if kind == FLAC_BLOCK:
        if name[0] in (_STREAMINFO, _PADDING, _SEEKTABLE) or name[0] > 126:
            return f"FLAC block type {name[0]} is not stored"
        if length > _MAX_FLAC_BLOCK:
            return f"FLAC block of {length} bytes (at most {_MAX_FLAC_BLOCK})"
    elif kind == RIFF_FMT:
        if name != b"fmt ":
            return f"fmt entry named {name!r}"
        if not 16 <= length <= _MAX_FMT:
            return f"fmt chunk of {length} bytes (16..{_MAX_FMT})"
    elif kind in (RIFF_BEFORE, RIFF_AFTER):
        if not _printable_id(name) or name in _RIFF_STRUCTURAL:
            return f"RIFF chunk id {name!r} is not stored"
    elif kind in (AIFF_BEFORE, AIFF_AFTER):
        if not _printable_id(name) or name in _AIFF_STRUCTURAL:
            return f"AIFF chunk id {name!r} is not stored"
    elif name in _W64_STRUCTURAL:
        return f"Wave64 chunk {name.hex()} is not stored"
    return None


# --------------------------------------------------------------------------- tags


def _vorbis_pairs(body: bytes) -> tuple[str, list[tuple[str, str]]] | None:
    from mutagen.flac import VCFLACDict

    try:
        vc = VCFLACDict(body)
    except Exception:  # mutagen raises several types for malformed comments
        return None
    return vc.vendor, [(k, v) for k, v in vc]


def _info_pairs(body: bytes) -> list[tuple[bytes, str]]:
    """(INFO id, text) of a LIST/INFO chunk body, in order."""
    out = []
    pos = 4
    while pos + 8 <= len(body):
        cid, length = body[pos:pos + 4], struct.unpack_from("<I", body, pos + 4)[0]
        if pos + 8 + length > len(body):
            break
        out.append((cid, _text(body[pos + 8:pos + 8 + length])))
        pos += 8 + length + (length & 1)
    return out


def _info_chunk(pairs: Sequence[tuple[bytes, str]]) -> bytes:
    parts = [b"INFO"]
    for cid, text in pairs:
        value = text.encode("utf-8") + b"\0"
        parts.append(cid + struct.pack("<I", len(value)) + value + b"\0" * (len(value) & 1))
    return b"".join(parts)


def _vorbis_block(vendor: str, pairs: Iterable[tuple[str, str]]) -> bytes:
    from mutagen.flac import VCFLACDict

    vc = VCFLACDict()
    vc.vendor = vendor
    for key, value in pairs:
        vc.append((key, value))
    return vc.write()


@dataclass
class _Carried:
    """A source's metadata seen as tags and leftovers, for another container."""

    tags: list[tuple[str, str]] = field(default_factory=list)  # (FIELD, value), in order
    extra_tags: list[str] = field(default_factory=list)  # fields with no common meaning
    mask: int | None = None  # WAVE channel mask (from fmt, or FLAC's tag)
    valid_bits: int | None = None
    id3: bytes | None = None
    pictures: int = 0
    cuesheet: bool = False
    applications: list[str] = field(default_factory=list)
    other_blocks: list[str] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)  # chunks with no equivalent


def _carried(meta: Metadata) -> _Carried:
    c = _Carried()
    for e in meta.entries:
        if e.kind == FLAC_BLOCK:
            btype = e.name[0]
            if btype == _VORBIS_COMMENT:
                parsed = _vorbis_pairs(e.data)
                if parsed is None:
                    c.other_blocks.append("VORBIS_COMMENT (unreadable)")
                    continue
                for key, value in parsed[1]:
                    upper = key.upper()
                    if upper == _MASK_TAG:
                        try:
                            c.mask = int(value, 0)
                        except ValueError:
                            c.extra_tags.append(key)
                    elif upper in _INFO_IDS:
                        c.tags.append((upper, value))
                    else:
                        c.extra_tags.append(key)
            elif btype == _PICTURE:
                c.pictures += 1
            elif btype == _CUESHEET:
                c.cuesheet = True
            elif btype == _APPLICATION:
                c.applications.append(_show_id(e.data[:4]))
            else:
                c.other_blocks.append(e.label)
            continue
        if e.kind == RIFF_FMT:
            fmt = _parse_fmt(e.data)
            if fmt and fmt["extensible"]:
                c.mask, c.valid_bits = fmt["mask"], fmt["valid_bits"]
                if c.valid_bits == fmt["bits"]:
                    c.valid_bits = None
            continue
        name = e.name
        if e.kind in (W64_BEFORE, W64_AFTER):
            name = _w64_fourcc(e.name) or e.name
        if e.kind in (AIFF_BEFORE, AIFF_AFTER) and name in _AIFF_FIELDS:
            c.tags.append((_AIFF_FIELDS[name], _text(e.data)))
        elif name == b"LIST" and e.data[:4] == b"INFO":
            for cid, text in _info_pairs(e.data):
                if cid in _INFO_FIELDS:
                    c.tags.append((_INFO_FIELDS[cid], text))
                else:
                    c.extra_tags.append(_show_id(cid))
        elif name in (b"id3 ", b"ID3 ") and c.id3 is None:
            c.id3 = e.data
        else:
            label = e.label if len(name) == 16 else _show_id(name)
            if name == b"LIST" and len(e.data) >= 4:
                label = f"LIST/{_show_id(e.data[:4])}"
            c.chunks.append(label)
    return c


def _parse_fmt(body: bytes) -> dict | None:
    if len(body) < 16:
        return None
    tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", body)
    out = {"tag": tag, "channels": channels, "rate": rate, "byte_rate": byte_rate,
           "align": align, "bits": bits, "extensible": False, "mask": None,
           "valid_bits": bits}
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(body) < 40 or struct.unpack_from("<H", body, 16)[0] < 22:
            return None
        valid, mask = struct.unpack_from("<HI", body, 18)
        out.update(extensible=True, valid_bits=valid, mask=mask,
                   pcm=body[24:40] == _PCM_GUID)
    return out


def _fmt_fits(body: bytes, channels: int, rate: int, bits: int) -> bool:
    """Whether a stored fmt chunk describes the decoded audio exactly (integer PCM of
    ``bits`` in whole bytes)."""
    fmt = _parse_fmt(body)
    if fmt is None:
        return False
    width = (bits + 7) // 8
    if (fmt["channels"], fmt["rate"], fmt["align"], fmt["bits"], fmt["byte_rate"]) != (
            channels, rate, channels * width, width * 8, rate * channels * width):
        return False
    if fmt["tag"] == _WAVE_FORMAT_PCM:
        return True
    return bool(fmt["extensible"] and fmt.get("pcm") and 1 <= fmt["valid_bits"] <= width * 8)


def extensible_fmt(channels: int, rate: int, bits: int, mask: int,
                   valid_bits: int | None = None) -> bytes:
    """A WAVE_FORMAT_EXTENSIBLE fmt chunk body for integer PCM."""
    width = (bits + 7) // 8
    block = width * channels
    return struct.pack("<HHIIHHHHI16s", _WAVE_FORMAT_EXTENSIBLE, channels, rate, rate * block,
                       block, width * 8, 22, valid_bits or bits, mask, _PCM_GUID)


# --------------------------------------------------------------------------- restore


@dataclass
class RestorePlan:
    """What goes into one decoded file (see :func:`plan_restore`)."""

    target: str  # "FLAC", "WAV" or "AIFF"
    #: FLAC: blocks (type, body) after STREAMINFO, in order
    flac_blocks: list[tuple[int, bytes]] = field(default_factory=list)
    #: FLAC from another container: Vorbis comments to write (vendor: libsndfile's)
    flac_tags: list[tuple[str, str]] = field(default_factory=list)
    #: WAV: the fmt chunk body to write instead of the writer's own (None: keep it)
    riff_fmt: bytes | None = None
    #: WAV / AIFF: (id, body) chunks before and after the audio data, in order
    before: list[tuple[bytes, bytes]] = field(default_factory=list)
    after: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: one line per kind of thing that could not be carried
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to write: the writer's output stays as it is."""
        return not (self.flac_blocks or self.flac_tags or self.riff_fmt or self.before
                    or self.after)


def _target_family(fmt: str) -> str:
    fmt = fmt.upper()
    return "WAV" if fmt in ("WAV", "WAVEX", "RF64", "W64") else fmt


def plan_restore(meta: Metadata, target: str, *, channels: int, sample_rate: int,
                 bits: int, stream: bool = False) -> RestorePlan:
    """Decide what of ``meta`` goes into a ``target`` file (libsndfile major format:
    ``FLAC``, ``WAV``/``WAVEX``, ``AIFF``) holding the given audio.

    Into the source's own container type every entry goes back unchanged, in order.
    Into another, tags with a common meaning are translated (Vorbis comments, LIST/INFO,
    AIFF text chunks), ID3 chunks move between WAV and AIFF, and a channel mask becomes
    FLAC's WAVEFORMATEXTENSIBLE_CHANNEL_MASK tag and back; everything else is named in
    ``warnings``, one line per kind. ``stream``: a WAV written front to back (standard
    output), which holds no chunks after its data.
    """
    family = _target_family(target)
    plan = RestorePlan(family)
    into = "standard output" if stream else family
    if family == meta.family:
        _plan_same(meta, plan, channels, sample_rate, bits)
    else:
        _plan_across(meta, plan, channels, sample_rate, bits)
    if stream and plan.after:
        names = ", ".join(f"{_show_id(cid)} ({_size(len(body))})" for cid, body in plan.after)
        plan.warnings.append(f"chunks after the audio data not carried to {into}: {names} "
                             "(a WAV on a pipe holds chunks before its data only)")
        plan.after = []
    return plan


def _plan_same(meta: Metadata, plan: RestorePlan, channels: int, rate: int,
               bits: int) -> None:
    dropped = []
    for e in meta.entries:
        if e.kind == FLAC_BLOCK:
            plan.flac_blocks.append((e.name[0], e.data))
        elif e.kind == RIFF_FMT:
            if _fmt_fits(e.data, channels, rate, bits):
                plan.riff_fmt = e.data
            else:
                plan.warnings.append(
                    f"the source's fmt chunk ({_describe_fmt(e.data)}) does not describe the "
                    "decoded audio: not restored")
        elif e.kind in (W64_BEFORE, W64_AFTER):
            fourcc = _w64_fourcc(e.name)
            if fourcc is None or fourcc in _RIFF_STRUCTURAL:
                dropped.append(e.name.hex())
            else:
                (plan.after if e.kind == W64_AFTER else plan.before).append((fourcc, e.data))
        else:
            (plan.after if e.kind in _AFTER_KINDS else plan.before).append((e.name, e.data))
    if dropped:
        plan.warnings.append(f"metadata not carried to WAV: Wave64 chunks with no RIFF id "
                             f"{', '.join(dropped)}")


def _plan_across(meta: Metadata, plan: RestorePlan, channels: int, rate: int,
                 bits: int) -> None:
    c = _carried(meta)
    target = plan.target
    lost: list[str] = []
    if target == "FLAC":
        plan.flac_tags = list(c.tags)
        if c.mask is not None and c.mask != FLAC_DEFAULT_MASKS.get(channels):
            plan.flac_tags.append((_MASK_TAG, f"0x{c.mask:04X}"))
        if c.extra_tags:
            lost.append(f"{meta.container_name} fields {', '.join(c.extra_tags)} (no "
                        "common tag name)")
        if c.id3 is not None:
            c.chunks.append("ID3")
    elif target == "WAV":
        info = [(_INFO_IDS[k], v) for k, v in _merge(c.tags, _INFO_IDS)]
        if info:
            plan.before.append((b"LIST", _info_chunk(info)))
        if c.id3 is not None:
            plan.before.append((b"id3 ", c.id3))
        if c.mask is not None:
            plan.riff_fmt = extensible_fmt(channels, rate, bits, c.mask)
        if c.extra_tags:
            lost.append(f"tags {', '.join(c.extra_tags)} (no LIST/INFO field)")
    else:  # AIFF
        for key, value in _merge(c.tags, _AIFF_IDS, keep_comments=True):
            plan.before.append((_AIFF_IDS[key], value.encode("utf-8")))
        if c.id3 is not None:
            plan.before.append((b"ID3 ", c.id3))
        unmapped = [k for k, _ in c.tags if k not in _AIFF_IDS]
        extra = list(dict.fromkeys(unmapped + c.extra_tags))
        if extra:
            lost.append(f"tags {', '.join(extra)} (no AIFF text chunk)")
        if c.mask is not None and c.mask != FLAC_DEFAULT_MASKS.get(channels):
            lost.append(f"channel mask 0x{c.mask:X} (AIFF has none)")
    if c.valid_bits is not None:
        lost.append(f"{c.valid_bits} valid bits of {bits} (the fmt chunk's)")
    if c.pictures:
        lost.append(f"{_plural(c.pictures, 'picture')} (only FLAC holds pictures)")
    if c.cuesheet:
        lost.append("the cue sheet (FLAC CUESHEET block)")
    if c.applications:
        lost.append(f"APPLICATION blocks {', '.join(c.applications)}")
    if c.other_blocks:
        lost.append(f"FLAC metadata blocks {', '.join(c.other_blocks)}")
    if c.chunks:
        lost.append(f"{meta.container_name} chunks {', '.join(c.chunks)}")
    for what in lost:
        plan.warnings.append(f"metadata not carried to {target}: {what}")


def _merge(tags: Sequence[tuple[str, str]], ids: dict, keep_comments: bool = False):
    """Tags with a field in ``ids``, several values of one field joined with "; "
    (INFO and AIFF name fields hold one value); AIFF comments stay one chunk each."""
    merged: dict[str, list[str]] = {}
    comments = []
    for key, value in tags:
        if key not in ids:
            continue
        if keep_comments and key == "COMMENT":
            comments.append((key, value))
        else:
            merged.setdefault(key, []).append(value)
    return [(k, "; ".join(v)) for k, v in merged.items()] + comments


# --------------------------------------------------------------------------- rewriting


def riff_head(plan: RestorePlan | None) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
    """(fmt chunk body or None, chunks before the data) for a WAV written front to back."""
    if plan is None:
        return None, []
    return plan.riff_fmt, list(plan.before)


def _chunk_le(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)


def _chunk_be(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack(">I", len(body)) + body + b"\0" * (len(body) & 1)


def _move(fp: BinaryIO, src: int, dst: int, length: int) -> None:
    """Move ``length`` bytes at ``src`` to ``dst`` inside ``fp`` (regions may overlap)."""
    if src == dst or length <= 0:
        return
    if dst > src:  # back to front, so nothing is overwritten before it is copied
        done = 0
        while done < length:
            n = min(_COPY_CHUNK, length - done)
            fp.seek(src + length - done - n)
            data = fp.read(n)
            fp.seek(dst + length - done - n)
            fp.write(data)
            done += n
    else:
        done = 0
        while done < length:
            n = min(_COPY_CHUNK, length - done)
            fp.seek(src + done)
            data = fp.read(n)
            fp.seek(dst + done)
            fp.write(data)
            done += n


def _rebuild(fp: BinaryIO, payload_at: int, payload_len: int, head: bytes,
             tail: bytes) -> None:
    """Make the file ``head + payload + tail``, the payload moved in place."""
    _move(fp, payload_at, len(head), payload_len)
    fp.seek(0)
    fp.write(head)
    fp.seek(len(head) + payload_len)
    fp.write(tail)
    fp.truncate()


def apply_plan(fp: BinaryIO, plan: RestorePlan) -> None:
    """Rewrite the file libsndfile has just written (open read/write in ``fp``) so that it
    holds what ``plan`` says, the audio unchanged. Raises OSError if the file is not the
    simple layout libsndfile writes."""
    if plan.empty:
        return
    fp.flush()
    size = fp.seek(0, os.SEEK_END)
    r = _Reader(fp, size)
    if plan.target == "FLAC":
        _apply_flac(fp, r, plan)
    elif plan.target == "WAV":
        _apply_riff(fp, r, plan)
    else:
        _apply_aiff(fp, r, plan)
    fp.flush()


def _apply_flac(fp: BinaryIO, r: _Reader, plan: RestorePlan) -> None:
    if r.at(0, 4) != b"fLaC":
        raise OSError("unexpected FLAC layout from libsndfile")
    pos, keep, vendor = 4, [], None
    while True:
        hdr = r.at(pos, 4)
        if len(hdr) < 4:
            raise OSError("unexpected FLAC layout from libsndfile")
        btype, length = hdr[0] & 0x7F, int.from_bytes(hdr[1:], "big")
        body = r.at(pos + 4, length)
        if btype in (_STREAMINFO, _SEEKTABLE):
            keep.append((btype, body))
        elif btype == _VORBIS_COMMENT and vendor is None:
            parsed = _vorbis_pairs(body)
            vendor = parsed[0] if parsed else None
        pos += 4 + length
        if hdr[0] & 0x80:
            break
    blocks = keep + list(plan.flac_blocks)
    if plan.flac_tags:
        blocks.append((_VORBIS_COMMENT, _vorbis_block(vendor or "hybridcodec", plan.flac_tags)))
    head = [b"fLaC"]
    for i, (btype, body) in enumerate(blocks):
        if len(body) > _MAX_FLAC_BLOCK:
            raise OSError(f"FLAC metadata block of {len(body)} bytes is too long")
        last = 0x80 if i == len(blocks) - 1 else 0
        head.append(bytes([btype | last]) + len(body).to_bytes(3, "big") + body)
    _rebuild(fp, pos, r.size - pos, b"".join(head), b"")


def _apply_riff(fp: BinaryIO, r: _Reader, plan: RestorePlan) -> None:
    if r.at(0, 4) != b"RIFF" or r.at(8, 4) != b"WAVE":
        raise OSError("unexpected WAV layout from libsndfile")
    pos, fmt, fact, data = 12, None, None, None
    while pos + 8 <= r.size:
        head = r.at(pos, 8)
        cid, length = head[:4], struct.unpack("<I", head[4:])[0]
        if cid == b"data":
            data = (pos + 8, length)
            break
        if cid == b"fmt ":
            fmt = r.at(pos + 8, length)
        elif cid == b"fact":
            fact = r.at(pos + 8, length)
        pos += 8 + length + (length & 1)
    if fmt is None or data is None:
        raise OSError("unexpected WAV layout from libsndfile")
    chunks = [(b"fmt ", plan.riff_fmt or fmt)]
    if fact is not None:
        chunks.append((b"fact", fact))
    chunks += plan.before
    at, length = data
    head = b"".join(_chunk_le(cid, body) for cid, body in chunks)
    tail = b"\0" * (length & 1) + b"".join(_chunk_le(cid, body) for cid, body in plan.after)
    riff_size = 4 + len(head) + 8 + length + len(tail)
    if riff_size > 0xFFFFFFFF:
        raise OSError("the audio and its metadata do not fit a WAV file (4 GiB)")
    _rebuild(fp, at, length, b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + head
             + b"data" + struct.pack("<I", length), tail)


def _apply_aiff(fp: BinaryIO, r: _Reader, plan: RestorePlan) -> None:
    form = r.at(8, 4)
    if r.at(0, 4) != b"FORM" or form not in (b"AIFF", b"AIFC"):
        raise OSError("unexpected AIFF layout from libsndfile")
    pos, keep, ssnd = 12, [], None
    while pos + 8 <= r.size:
        head = r.at(pos, 8)
        cid, length = head[:4], struct.unpack(">I", head[4:])[0]
        if cid == b"SSND":
            ssnd = (pos + 8, length)
            break
        keep.append((cid, r.at(pos + 8, length)))  # COMM (and FVER for AIFF-C)
        pos += 8 + length + (length & 1)
    if ssnd is None:
        raise OSError("unexpected AIFF layout from libsndfile")
    at, length = ssnd
    head = b"".join(_chunk_be(cid, body) for cid, body in keep + plan.before)
    tail = b"\0" * (length & 1) + b"".join(_chunk_be(cid, body) for cid, body in plan.after)
    form_size = 4 + len(head) + 8 + length + len(tail)
    if form_size > 0xFFFFFFFF:
        raise OSError("the audio and its metadata do not fit an AIFF file (4 GiB)")
    _rebuild(fp, at, length, b"FORM" + struct.pack(">I", form_size) + form + head
             + b"SSND" + struct.pack(">I", length), tail)


# --------------------------------------------------------------------------- display

_PICTURE_TYPES = {0: "other", 1: "file icon", 2: "other file icon", 3: "front cover",
                  4: "back cover", 5: "leaflet page", 6: "media", 7: "lead artist",
                  8: "artist", 9: "conductor", 10: "band", 11: "composer", 12: "lyricist",
                  13: "recording location", 14: "during recording",
                  15: "during performance", 16: "screen capture", 17: "bright fish",
                  18: "illustration", 19: "band logo", 20: "publisher logo"}


def _describe_fmt(body: bytes) -> str:
    fmt = _parse_fmt(body)
    if fmt is None:
        return f"unreadable, {len(body)} B"
    if fmt["extensible"]:
        return (f"WAVE_FORMAT_EXTENSIBLE, {fmt['channels']} ch, {fmt['bits']}-bit container, "
                f"{fmt['valid_bits']} valid bits, channel mask 0x{fmt['mask']:X}")
    return f"format tag {fmt['tag']}, {fmt['channels']} ch, {fmt['bits']}-bit, {len(body)} B"


def _describe_entry(e: Entry) -> list[str]:
    if e.kind == FLAC_BLOCK:
        btype = e.name[0]
        if btype == _VORBIS_COMMENT:
            parsed = _vorbis_pairs(e.data)
            if parsed is None:
                return [f"VORBIS_COMMENT  unreadable, {_size(len(e.data))}"]
            vendor, pairs = parsed
            return ([f"VORBIS_COMMENT  vendor {_one_line(vendor)!r}, {_plural(len(pairs), 'tag')}"]
                    + [f"  {_one_line(f'{k}={v}', 72)}" for k, v in pairs])
        if btype == _PICTURE:
            from mutagen.flac import Picture

            try:
                pic = Picture(e.data)
            except Exception:
                return [f"PICTURE  unreadable, {_size(len(e.data))}"]
            kind = _PICTURE_TYPES.get(pic.type, f"type {pic.type}")
            dims = f", {pic.width}x{pic.height}" if pic.width and pic.height else ""
            return [f"PICTURE  {kind}, {_one_line(pic.mime, 30) or 'no MIME type'}{dims}, "
                    f"{_size(len(pic.data))}"]
        if btype == _CUESHEET:
            from mutagen.flac import CueSheet

            try:
                tracks = len(CueSheet(e.data).tracks)
            except Exception:
                return [f"CUESHEET  unreadable, {_size(len(e.data))}"]
            return [f"CUESHEET  {_plural(tracks, 'track')}, {_size(len(e.data))}"]
        if btype == _APPLICATION:
            return [f"APPLICATION  id {_show_id(e.data[:4])!r}, {_size(len(e.data))}"]
        return [f"{e.label}  {_size(len(e.data))}"]
    if e.kind == RIFF_FMT:
        return [f"fmt   {_describe_fmt(e.data)}"]
    where = " (after the audio)" if e.kind in _AFTER_KINDS else ""
    name = e.name if e.kind not in (W64_BEFORE, W64_AFTER) else (_w64_fourcc(e.name) or b"")
    lines = [f"{e.label:5s} {_size(len(e.data))}{where}"]
    if name == b"LIST" and e.data[:4] == b"INFO":
        lines += [f"  {_one_line(f'{_show_id(cid)}={text}', 72)}"
                  for cid, text in _info_pairs(e.data)]
    elif e.kind in (AIFF_BEFORE, AIFF_AFTER) and name in _AIFF_FIELDS:
        lines[0] += f"  {_one_line(_text(e.data))}"
    return lines


def describe_metadata(meta: Metadata) -> list[str]:
    """Lines for ``hybridcodec info``: one per entry, tags one per line, truncated."""
    unit = "block" if meta.container == FLAC else "chunk"
    total = sum(len(e.data) for e in meta.entries)
    lines = [f"from {meta.container_name}: {_plural(len(meta.entries), unit)}, {_size(total)}"]
    for e in meta.entries:
        lines += _describe_entry(e)
    return lines
