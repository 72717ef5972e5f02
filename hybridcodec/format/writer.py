"""Writing streams of every version this build writes (the current one, and the older
ones a rewriting tool keeps).

:class:`StreamWriter` is the way to write a stream: it writes the header on
construction, checks each frame against it, keeps the frame offsets, and ends the stream
with the index (version 4) and the end chunk. :func:`write_compact` writes a one-frame
version 4 stream in one piece. The free functions below write single chunks (tests,
tools); they check only what the chunk itself can tell. Every writer raises
:class:`ValueError` on a bad argument: that is a programming error, never a stream's.
"""

from __future__ import annotations

from typing import BinaryIO

from . import legacy, v4
from .common import (LEGACY_VERSIONS, MD5_LEN, FORMAT_VERSION, Frame, StreamFooter,
                     StreamHeader, check_int, metadata_chunk)


def header_problem(header: StreamHeader) -> str | None:
    """The first thing wrong with ``header`` for its version, or None."""
    problem = check_int("version", header.version, min(LEGACY_VERSIONS), FORMAT_VERSION)
    if problem:
        return problem
    if int(header.version) in LEGACY_VERSIONS:
        return legacy.header_problem(header)
    return v4.header_problem(header)


def _checked(header: StreamHeader) -> StreamHeader:
    if not isinstance(header, StreamHeader):
        raise ValueError(f"expected a StreamHeader, got {type(header).__name__}")
    problem = header_problem(header)
    if problem:
        raise ValueError(f"invalid stream header: {problem}")
    return header


def _md5(md5) -> bytes:
    if not isinstance(md5, (bytes, bytearray)) or len(md5) != MD5_LEN:
        raise ValueError(f"md5 must be {MD5_LEN} bytes, got {md5!r:.40}")
    return bytes(md5)


def write_header(fp: BinaryIO, header: StreamHeader, *, has_index: bool = False) -> None:
    """Write the header chunk, then the metadata chunk if ``header.metadata`` is set.

    ``has_index`` (version 4): set the header flag that announces an index chunk.
    Raises ValueError if ``header`` is not a valid header.
    """
    _checked(header)
    if int(header.version) in LEGACY_VERSIONS:
        legacy.write_header(fp, header)
        return
    fp.write(v4.header_chunk(header, v4.HEADER_HAS_INDEX if has_index else 0))
    if header.metadata is not None:
        fp.write(metadata_chunk(bytes(header.metadata)))


def write_frame(fp: BinaryIO, frame: Frame, header: StreamHeader | None = None) -> None:
    """Write one frame chunk: a version 1-3 chunk for a frame with ``layers``, a version
    4 chunk for one with ``units`` (which needs the stream's ``header``).

    Raises ValueError if ``frame`` breaks a rule the chunk can check.
    """
    if not isinstance(frame, Frame):
        raise ValueError(f"expected a Frame, got {type(frame).__name__}")
    if frame.units is None:
        if header is not None and int(header.version) not in LEGACY_VERSIONS:
            raise ValueError("a version 4 frame carries units, not layers")
        fp.write(legacy.frame_chunk(frame))
        return
    if header is None or int(header.version) in LEGACY_VERSIONS:
        raise ValueError("a frame with units needs the version 4 header it belongs to")
    fp.write(v4.frame_chunk(frame, _checked(header)))


def write_index(fp: BinaryIO, offsets: list[int]) -> None:
    """Write a version 4 index chunk for frames starting at ``offsets`` (bytes from the
    start of the stream, increasing)."""
    previous = -1
    for offset in offsets:
        if check_int("offset", offset, previous + 1, 2**64 - 1):
            raise ValueError(f"index offsets must be increasing integers, got {offset!r:.40}")
        previous = offset
    fp.write(v4.index_bytes([int(o) for o in offsets]))


def write_footer(fp: BinaryIO, footer: StreamFooter) -> None:
    """Write the end chunk: the version 1-3 one when ``footer.index_offset`` is None, else
    version 4's (index_offset 0: no index). Raises ValueError on a bad footer."""
    if not isinstance(footer, StreamFooter):
        raise ValueError(f"expected a StreamFooter, got {type(footer).__name__}")
    fp.write(legacy.footer_chunk(footer) if footer.index_offset is None
             else v4.footer_chunk(footer))


def write_compact(fp: BinaryIO, header: StreamHeader, frame: Frame, md5: bytes) -> None:
    """Write a whole compact stream (version 4): ``header`` of a stream of one frame
    (0 < num_samples <= frame_length) without metadata, its only ``frame``, and the MD5
    of its PCM, all in one chunk under one CRC."""
    _checked(header)
    if int(header.version) in LEGACY_VERSIONS:
        raise ValueError("a compact stream is a version 4 layout")
    if header.num_frames != 1 or header.metadata is not None:
        raise ValueError("a compact stream holds exactly one frame and no metadata")
    if not isinstance(frame, Frame) or frame.index != 0 \
            or frame.num_samples != header.num_samples:
        raise ValueError(f"a compact stream's frame is frame 0 of {header.num_samples} samples")
    fp.write(v4.compact_bytes(header, frame, _md5(md5)))


class StreamWriter:
    """Writes a stream front to back: header, frames in order, then :meth:`finish`.

    Version 4 streams get an index chunk when they have two frames or more (``index``
    overrides that); versions 1-3 have none. Nothing is ever written backwards, so ``fp``
    may be a pipe. Every frame is checked against the header first (ValueError).
    """

    def __init__(self, fp: BinaryIO, header: StreamHeader, *, index: bool | None = None):
        self._fp = fp
        self.header = _checked(header)
        self._legacy = int(header.version) in LEGACY_VERSIONS
        self._index = (not self._legacy) and (header.num_frames > 1 if index is None
                                               else bool(index))
        self._offsets: list[int] = []
        self._next = 0
        self.bytes_written = 0
        self.finished = False
        if self._legacy:
            self._write(legacy.header_chunk_bytes(header))
        else:
            self._write(v4.header_chunk(header, v4.HEADER_HAS_INDEX if self._index else 0))
        if header.metadata is not None:
            self._write(metadata_chunk(bytes(header.metadata)))

    def _write(self, data: bytes) -> None:
        self._fp.write(data)
        self.bytes_written += len(data)

    def write_frame(self, frame: Frame) -> None:
        """Write the next frame; it must be frame ``n`` of the header's length."""
        if self.finished:
            raise ValueError("the stream is finished")
        if not isinstance(frame, Frame):
            raise ValueError(f"expected a Frame, got {type(frame).__name__}")
        h = self.header
        if self._next >= h.num_frames:
            raise ValueError(f"the header declares {h.num_frames} frames; no more fit")
        if frame.index != self._next or frame.num_samples != h.frame_num_samples(self._next):
            raise ValueError(f"expected frame {self._next} of "
                             f"{h.frame_num_samples(self._next)} samples, got frame "
                             f"{frame.index} of {frame.num_samples}")
        if self._legacy:
            if frame.units is not None or any(lid >= h.num_layers for lid, _ in frame.layers):
                raise ValueError(f"frame {frame.index}: a version {h.version} frame carries "
                                 f"layers 0..{h.num_layers - 1}")
            chunk = legacy.frame_chunk(frame)
        else:
            chunk = v4.frame_chunk(frame, h)
        self._offsets.append(self.bytes_written)
        self._write(chunk)
        self._next += 1

    def finish(self, md5: bytes) -> None:
        """Write the index (if any) and the end chunk with ``md5``, the MD5 of the PCM."""
        if self.finished:
            raise ValueError("the stream is finished")
        h = self.header
        if self._next != h.num_frames:
            raise ValueError(f"{self._next} of the {h.num_frames} frames were written")
        md5 = _md5(md5)
        if self._legacy:
            self._write(legacy.footer_chunk(StreamFooter(h.num_frames, h.num_samples, md5)))
        else:
            index_offset = 0
            if self._index:
                index_offset = self.bytes_written
                self._write(v4.index_bytes(self._offsets))
            self._write(v4.end_bytes(h.num_frames, h.num_samples, index_offset, md5))
        self.finished = True
