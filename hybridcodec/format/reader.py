"""Reading streams of every supported version: :class:`StreamReader` (strict or
recovering, front to back or from a frame found by :meth:`StreamReader.seek_frame`) and
:func:`read_stream_layout`.

Every byte read is checked; every problem is a
:class:`~hybridcodec.errors.CorruptStreamError` (or its subclasses
:class:`~hybridcodec.errors.TruncatedStreamError`,
:class:`~hybridcodec.errors.UnsupportedVersionError`) with a one-line message, and no
length read from the stream is used to allocate or loop before it has been checked
against the format's limits and against what the input can still deliver.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import replace
from typing import BinaryIO, Iterator

from ..errors import CorruptStreamError, TruncatedStreamError, UnsupportedVersionError
from . import legacy, v4
from .common import (CRC_SIZE, END_SYNC, FRAME_SYNC, INDEX_SYNC, LEGACY_VERSIONS, MAGIC,
                     MAX_LOST_RUN, METADATA_SYNC, METADATA_VERSION, SUPPORTED_VERSIONS,
                     DamagedFrame, Frame, Source, StreamFooter, StreamHeader, StreamLayout,
                     crc32, peek_parse, read_metadata_chunk, unpack_crc)
from .varint import NeedMore

#: An index chunk larger than this is not loaded for seeking (frames are walked instead):
#: it would stand for millions of frames, and the reader keeps 8 bytes per frame.
MAX_INDEX_LOAD = 1 << 26
#: The recovering reader checks an index chunk it meets only up to this size; a longer
#: one is skipped as unchecked bytes.
MAX_INDEX_PEEK = 1 << 24


def _reason(exc: CorruptStreamError) -> str:
    return str(exc).replace("corrupt stream: ", "").replace("truncated stream: ", "truncated: ")


def _try_peek(src: Source, parse, max_size: int):
    """Like peek_parse, but None where the bytes are not the structure (recovery)."""
    want = min(64, max_size)
    while True:
        buf = src.peek(want)
        try:
            return parse(buf)
        except NeedMore as more:
            if len(buf) < want or want >= max_size:
                return None
            want = min(max(2 * want, more.needed), max_size)
        except CorruptStreamError:
            return None


class StreamReader:
    """Reads and checks a stream: the header on construction, frames lazily.

    ``reader.header`` is available at once; iterate ``reader.frames()`` for the frames in
    order; when it finishes, ``reader.footer`` holds the checked end chunk and the input
    has been checked to end there. :meth:`seek_frame` moves to another frame first.
    A compact stream (version 4) is read and checked whole on construction.
    """

    def __init__(self, fp: BinaryIO, *, recover: bool = False):
        self._src = Source(fp)
        #: Recovering reader: :meth:`frames` yields a :class:`DamagedFrame` in place of
        #: each frame it cannot deliver instead of raising, and resynchronises on the next
        #: good frame header (docs/format.md, "Recovery"). The header must be intact.
        self.recover = recover
        #: Recovering reader: problems that are not a damaged frame (metadata chunk
        #: damaged, index or end chunk missing or damaged, trailing data), one line each.
        #: ``footer`` stays None when the end chunk could not be used.
        self.problems: list[str] = []
        #: Version 4: the whole stream is one compact chunk.
        self.compact = False
        #: Version 4: the header announces an index chunk.
        self.has_index = False
        #: Bytes of the index chunk read so far (0: none met).
        self.index_bytes = 0
        self.footer: StreamFooter | None = None
        #: Recovering reader: the first frame of a missing tail (the input ended, or its
        #: end chunk disagrees with the header, before that frame): frames from there on
        #: were neither delivered nor reported. None when the stream was read to its end.
        self.missing_from: int | None = None
        self._skip_reported = False  # bytes skipped next were reported already
        self._cursor = 0  # the frame at the current position
        self._at_frame = True  # the input is at the start of frame _cursor (or of the tail)
        self._armed = True  # frames() may be called
        self._generation = 0
        self._offsets = array("Q")  # where frames 0 .. _cursor - 1 start
        self._index: array | None = None  # offsets from the index chunk, once loaded
        self._index_tried = False
        self._compact_frame: Frame | DamagedFrame | None = None
        header = self._read_header()
        start = self._src.pos
        if header.version >= METADATA_VERSION and not self.compact:
            blob = self._read_metadata()
            if blob is not None:
                header = _with_metadata(header, blob)
        self.header: StreamHeader = header
        #: bytes of the metadata chunk (0: none, or damaged and skipped by recovery)
        self.metadata_bytes: int = self._src.pos - start if header.metadata is not None else 0
        #: the header chunk and the metadata chunk (compact: magic, version, flags, body)
        self.header_bytes: int = self._compact_header_bytes if self.compact \
            else self._src.pos
        self._frames_start = self._src.pos

    @property
    def bytes_read(self) -> int:
        """Bytes consumed from the input so far."""
        return self._src.pos

    # -- header ------------------------------------------------------------------------

    def _read_header(self) -> StreamHeader:
        src = self._src
        magic = src.read(len(MAGIC))
        if magic != MAGIC:
            raise CorruptStreamError("not a hybridcodec stream (bad magic)")
        version = src.read_exact(1, "header chunk")[0]
        if version not in SUPPORTED_VERSIONS:
            newest = max(SUPPORTED_VERSIONS)
            if version > newest:
                raise UnsupportedVersionError(
                    f"unsupported stream format version {version}: this hybridcodec reads "
                    f"versions up to {newest}; upgrade hybridcodec to decode it")
            raise UnsupportedVersionError(
                f"unsupported stream format version {version}: this hybridcodec reads "
                f"versions {', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}")
        if version in LEGACY_VERSIONS:
            return legacy.read_header(src, version)
        src.unread(magic + bytes([version]))
        flags = src.peek(6)[5:6]
        if flags and flags[0] & v4.HEADER_COMPACT:
            return self._read_compact()
        parsed, raw = peek_parse(src, v4.parse_header_chunk, v4.MAX_HEADER_SIZE, "header chunk")
        src.read(len(raw))
        stored, computed = unpack_crc(raw, parsed.end), crc32(raw[:parsed.end])
        if stored != computed:
            raise CorruptStreamError(f"corrupt stream: header CRC mismatch (stored "
                                     f"{stored:08x}, computed {computed:08x})")
        header = v4.make_header(parsed)
        self.has_index = bool(parsed.flags & v4.HEADER_HAS_INDEX)
        return header

    def _read_compact(self) -> StreamHeader:
        """A whole compact stream; its frame is kept for :meth:`frames`."""
        src = self._src
        self.compact = True
        head, raw = peek_parse(src, v4.parse_compact_head,
                               v4.MAX_HEADER_SIZE + v4.MAX_FRAME_HEADER_SIZE, "compact stream")
        src.read(len(raw))
        rest = src.read_to_end()
        known = 4 * sum(e.words for e in head.entries[:-1]) if head.entries else 0
        if len(rest) < known + CRC_SIZE:
            raise TruncatedStreamError(
                f"truncated stream: compact stream payloads need at least "
                f"{known + CRC_SIZE} bytes, only {len(rest)} remain")
        stored, computed = unpack_crc(rest, len(rest) - CRC_SIZE), crc32(raw, rest[:-CRC_SIZE])
        self._compact_header_bytes = head.header.end
        if stored != computed:
            message = (f"compact stream CRC mismatch (stored {stored:08x}, computed "
                       f"{computed:08x}): the stream is damaged or truncated")
            if not self.recover:
                raise CorruptStreamError(f"corrupt stream: {message}")
            try:  # the header is not verified: a field that fails may just be damaged
                header = v4.make_header(head.header)
            except CorruptStreamError:
                raise CorruptStreamError(f"corrupt stream: {message}") from None
            self.problems.append(f"{message}; its header could not be verified")
            self._compact_frame = DamagedFrame(0, header.num_samples, message)
            return header
        header = v4.make_header(head.header)
        if head.header.flags & v4.HEADER_HAS_INDEX:
            raise CorruptStreamError("corrupt header: a compact stream has no index chunk")
        payload = rest[:-CRC_SIZE]
        last = len(payload) - known
        if head.entries:
            if last % 4:
                raise CorruptStreamError(
                    f"corrupt stream: compact stream's last payload is {last} bytes, not a "
                    f"whole number of words")
            entries = head.entries[:-1] + [replace(head.entries[-1], words=last // 4)]
        else:
            entries = []
            if payload:
                raise CorruptStreamError(f"corrupt stream: compact stream has {len(payload)} "
                                         f"payload bytes but no unit")
        problem = v4.entries_problem(entries, "compact stream")
        if problem:
            raise CorruptStreamError(f"corrupt stream: {problem}")
        if header.complete and not v4.frame_complete(entries, head.flags, header.num_layers):
            raise CorruptStreamError("corrupt stream: compact stream does not carry every "
                                     "layer in full, but the header declares a lossless stream")
        self._compact_frame = Frame(0, header.num_samples, units=v4.make_units(entries, payload),
                                    flags=head.flags)
        self._compact_md5 = head.md5
        return header

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
            blob = read_metadata_chunk(src)
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

    # -- frames ------------------------------------------------------------------------

    def frames(self) -> Iterator[Frame | DamagedFrame]:
        """The frames from the current one (0, or where :meth:`seek_frame` went) to the
        last, each fully checked (CRCs included) before it is yielded; then the index and
        end chunks are checked. Can be called once, and again after each seek."""
        if not self._armed:
            raise RuntimeError("StreamReader.frames() can only be iterated once per seek")
        self._armed = False
        return self._iter_frames(self._generation)

    def _check_generation(self, generation: int) -> None:
        if generation != self._generation:
            raise RuntimeError("the reader was moved by seek_frame(): iterate frames() again")

    def _iter_frames(self, generation: int) -> Iterator[Frame | DamagedFrame]:
        header = self.header
        num_frames = header.num_frames
        if self.compact:
            if self._cursor == 0 and self._compact_frame is not None:
                self._cursor = 1
                yield self._compact_frame
            if isinstance(self._compact_frame, Frame):
                self.footer = StreamFooter(1, header.num_samples, self._compact_md5, 0)
            return
        if self.recover:
            self._at_frame = False
            yield from self._iter_recovering(num_frames, generation)
            return
        while self._cursor < num_frames:
            frame = self._read_frame(self._cursor, num_frames)
            self._check_generation(generation)
            self._cursor += 1
            yield frame
            self._check_generation(generation)
        self._at_frame = False
        self.footer = self._read_tail(num_frames)

    def _read_frame(self, index: int, num_frames: int) -> Frame:
        src = self._src
        offset = src.pos
        self._at_frame = False  # until the whole frame is read
        if self.header.version in LEGACY_VERSIONS:
            entries = legacy.read_frame_head(src, self.header, index, num_frames)
            layers = legacy.read_payloads(src, f"frame {index}", entries)
            frame = Frame(index=index, num_samples=self.header.frame_num_samples(index),
                          layers=layers)
        else:
            head = self._read_frame_head_v4(index, num_frames)
            frame = self._read_payloads_v4(f"frame {index}", head)
        self._note_offset(index, offset)
        self._at_frame = True
        return frame

    def _note_offset(self, index: int, offset: int) -> None:
        if index == len(self._offsets):
            self._offsets.append(offset)
        if self._index is not None and self._index[index] != offset and not self.recover:
            raise CorruptStreamError(
                f"corrupt stream: index chunk puts frame {index} at byte {self._index[index]}, "
                f"it is at byte {offset}")

    def _read_frame_head_v4(self, index: int, num_frames: int) -> v4.FrameHead:
        src, header = self._src, self.header
        name = f"frame {index}"
        sync = src.peek(len(FRAME_SYNC))
        if sync in (END_SYNC, INDEX_SYNC):
            chunk = "end" if sync == END_SYNC else "index"
            raise CorruptStreamError(f"corrupt stream: {chunk} chunk found after {index} "
                                     f"frames, header declares {num_frames}")
        if len(sync) < len(FRAME_SYNC):
            src.read_exact(len(FRAME_SYNC), f"{name} header (stream ends after {index} of "
                                            f"{num_frames} frames)")
        head, raw = peek_parse(src, lambda buf: v4.parse_frame_head(buf, header, name),
                               v4.MAX_FRAME_HEADER_SIZE, f"{name} header")
        if head.index != index:
            raise CorruptStreamError(f"corrupt stream: {name} header carries frame index "
                                     f"{head.index}, expected {index}")
        expected = header.frame_num_samples(index)
        if head.num_samples != expected:
            raise CorruptStreamError(
                f"corrupt stream: {name} has {head.num_samples} samples, expected {expected} "
                f"(frame_length {header.frame_length}, num_samples {header.num_samples})")
        src.read(len(raw))
        return head

    def _read_payloads_v4(self, name: str, head: v4.FrameHead) -> Frame:
        src = self._src
        payload = src.read_exact(head.payload_size, f"{name} payload")
        stored = unpack_crc(src.read_exact(CRC_SIZE, f"{name} payload CRC"))
        computed = crc32(payload)
        if stored != computed:
            raise CorruptStreamError(f"corrupt stream: {name} payload CRC mismatch (stored "
                                     f"{stored:08x}, computed {computed:08x})")
        return Frame(head.index, head.num_samples, units=v4.make_units(head.entries, payload),
                     flags=head.flags)

    def _read_tail(self, num_frames: int) -> StreamFooter:
        """Strict: the index chunk (version 4, if announced), the end chunk, nothing after."""
        src, header = self._src, self.header
        if header.version in LEGACY_VERSIONS:
            footer = legacy.read_end(src, num_frames)
        else:
            index_offset = 0
            if self.has_index:
                index_offset = src.pos
                self._read_index_strict(num_frames)
            sync = src.read_exact(len(END_SYNC), f"end chunk (after all {num_frames} frames)")
            if sync == INDEX_SYNC:
                raise CorruptStreamError("corrupt stream: index chunk found, but the header "
                                         "announces none")
            body = src.read_exact(v4.END_CHUNK_SIZE - len(END_SYNC), "end chunk")
            footer = v4.parse_end(sync + body)
            if footer.index_offset != index_offset:
                raise CorruptStreamError(
                    f"corrupt stream: end chunk puts the index chunk at byte "
                    f"{footer.index_offset}, it is at byte {index_offset}")
        if footer.num_frames != num_frames:
            raise CorruptStreamError(f"corrupt stream: end chunk counts {footer.num_frames} "
                                     f"frames, {num_frames} were read")
        if footer.num_samples != header.num_samples:
            raise CorruptStreamError(f"corrupt stream: end chunk counts {footer.num_samples} "
                                     f"samples, the header declares {header.num_samples}")
        if not src.at_end():
            remaining = src.remaining()
            amount = f"{remaining} bytes of" if remaining is not None else "unexpected"
            raise CorruptStreamError(f"corrupt stream: {amount} trailing data after the end "
                                     f"chunk")
        return footer

    def _read_index_strict(self, num_frames: int) -> None:
        """The index chunk must be exactly what the frames read imply (it is canonical)."""
        src = self._src
        sync = src.peek(len(INDEX_SYNC))
        if sync == FRAME_SYNC:
            raise CorruptStreamError(
                f"corrupt stream: more frames than the {num_frames} the header declares")
        if len(sync) == len(INDEX_SYNC) and sync != INDEX_SYNC:
            raise CorruptStreamError(f"corrupt stream: index chunk has a bad sync code "
                                     f"{sync!r}")
        expected = v4.index_bytes(list(self._offsets))
        data = src.read_exact(len(expected), f"index chunk (after all {num_frames} frames)")
        self.index_bytes = len(data)
        if data != expected:
            stored, computed = unpack_crc(data, len(data) - CRC_SIZE), crc32(data[:-CRC_SIZE])
            if stored != computed:
                raise CorruptStreamError(f"corrupt stream: index chunk CRC mismatch (stored "
                                         f"{stored:08x}, computed {computed:08x})")
            raise CorruptStreamError("corrupt stream: index chunk does not match the frames")

    # -- recovery (docs/format.md, "Recovery") ---------------------------------------

    def _iter_recovering(self, num_frames: int, generation: int
                         ) -> Iterator[Frame | DamagedFrame]:
        src, header = self._src, self.header
        after_damage = self._skip_reported  # the search starts inside a reported chunk
        self._skip_reported = False
        while True:
            start = src.pos
            found, skipped, quiet = self._scan(self._cursor)
            self._check_generation(generation)
            noted = skipped and not after_damage and not quiet  # bytes nobody reported yet
            after_damage = False
            where = f"{skipped} bytes of damaged data skipped from byte {start}" if skipped \
                else ""
            if found is None or found[0] == "end":
                agrees = found is not None and self._accept_end(found[1], num_frames)
                if agrees and num_frames - self._cursor <= MAX_LOST_RUN:
                    # the end chunk confirms the length: the missing frames were there
                    while self._cursor < num_frames:
                        index = self._cursor
                        self._cursor += 1
                        yield DamagedFrame(index, header.frame_num_samples(index),
                                           f"lost ({where or 'missing'})")
                elif self._cursor < num_frames:
                    # nothing says how long the stream really was: stop here
                    self.missing_from = self._cursor
                    first = self._cursor * header.frame_length
                    self.problems.insert(0, (
                        f"stream ends after sample {first} of {header.num_samples}: frames "
                        f"{self._cursor}..{num_frames - 1} missing"
                        + (f" ({where})" if where else "")))
                if noted and self._cursor == num_frames:
                    self.problems.append(f"{where} (no frame lost)")
                if found is None:
                    self.problems.append(
                        "end chunk missing (stream truncated or damaged at its end): "
                        "MD5 not checked")
                return
            _, index, frame_samples, head = found
            if noted and index == self._cursor:
                self.problems.append(f"{where} (no frame lost)")
            while self._cursor < index:
                lost = self._cursor
                self._cursor += 1
                yield DamagedFrame(lost, header.frame_num_samples(lost),
                                   f"lost ({where or 'missing'})")
                self._check_generation(generation)
            self._cursor = index + 1
            src.start_record()
            try:
                frame = self._read_payloads(index, head)
            except CorruptStreamError as exc:
                # The header was good, so the frame is where it says; but its payload may
                # have lost or gained bytes: search again from just after its header.
                src.unread(src.stop_record())
                yield DamagedFrame(index, frame_samples, _reason(exc))
                self._check_generation(generation)
                after_damage = True
                continue
            src.stop_record()
            yield frame
            self._check_generation(generation)

    def _read_payloads(self, index: int, head) -> Frame:
        name = f"frame {index}"
        if self.header.version in LEGACY_VERSIONS:
            layers = legacy.read_payloads(self._src, name, head)
            return Frame(index=index, num_samples=self.header.frame_num_samples(index),
                         layers=layers)
        return self._read_payloads_v4(name, head)

    def _scan(self, min_index: int):
        """Find the next good chunk from the current position on; returns
        (found, skipped, quiet).

        ``found`` is ``("frame", index, num_samples, head)`` for a frame header whose CRC
        and fields are valid and whose index is at least ``min_index``, ``("end", body)``
        for an end chunk with a valid CRC, or None at the end of input. A valid index
        chunk on the way is passed over; ``quiet``: a damaged one was reported, so the
        bytes skipped need no report of their own.
        """
        src = self._src
        skipped = 0
        quiet = False
        while True:
            at = src.pos
            found = self._frame_candidate(min_index) or self._end_candidate()
            if found is not None:
                return found, skipped, quiet
            index_state = self._index_candidate()
            if index_state == "ok":
                continue
            if index_state == "damaged":
                quiet = True
            if src.at_end():
                return None, skipped, quiet
            skipped += src.skip_to(FRAME_SYNC[0])  # every sync starts with "H"
            if src.pos == at:  # pragma: no cover - defensive
                return None, skipped, quiet

    def _frame_candidate(self, min_index: int):
        src, header = self._src, self.header
        if header.version in LEGACY_VERSIONS:
            found = legacy.frame_candidate(src, header, min_index)
            return None if found is None else ("frame", *found)
        if src.peek(2) != FRAME_SYNC:
            return None
        parsed = _try_peek(src, lambda buf: v4.parse_frame_head(buf, header, "frame"),
                           v4.MAX_FRAME_HEADER_SIZE)
        if parsed is None:
            return None
        head, size = parsed
        index = head.index
        if not min_index <= index < header.num_frames or index - min_index > MAX_LOST_RUN:
            return None
        if head.num_samples != header.frame_num_samples(index):
            return None
        src.read(size)
        return "frame", index, head.num_samples, head

    def _end_candidate(self):
        src = self._src
        if self.header.version in LEGACY_VERSIONS:
            body = legacy.end_candidate(src)
            return None if body is None else ("end", legacy.parse_end_body(body))
        data = src.peek(v4.END_CHUNK_SIZE)
        if len(data) < v4.END_CHUNK_SIZE or data[:2] != END_SYNC:
            return None
        try:
            footer = v4.parse_end(data)
        except CorruptStreamError:
            return None
        src.read(v4.END_CHUNK_SIZE)
        return "end", footer

    def _index_candidate(self) -> str | None:
        """Recovery: pass over an index chunk at the current position. "ok": a valid one
        was consumed; "damaged": one whose sync and frame count are right but whose rest
        is not (reported; nothing consumed); None: no index chunk here."""
        src, header = self._src, self.header
        if header.version in LEGACY_VERSIONS or src.peek(2) != INDEX_SYNC:
            return None
        size = _try_peek(src, lambda buf: (v4.parse_index_prefix(buf, header.num_frames), 0),
                         MAX_INDEX_PEEK)
        if size is not None:
            self.index_bytes = size[0]
            src.read(size[0])
            return "ok"
        start = src.peek(12)
        try:
            count, _ = v4.decode_varint(start, 2, 2**32, "index")
        except (NeedMore, ValueError):
            return None
        if count != header.num_frames:
            return None
        self.problems.append(f"index chunk at byte {src.pos} damaged (ignored)")
        return "damaged"

    def _accept_end(self, footer: StreamFooter, num_frames: int) -> bool:
        """Take a found end chunk; True when its counts agree with the header."""
        src, header = self._src, self.header
        agrees = footer.num_frames == num_frames and footer.num_samples == header.num_samples
        if not agrees:
            self.problems.append(
                f"end chunk counts {footer.num_frames} frames / {footer.num_samples} samples, "
                f"the header declares {num_frames} / {header.num_samples}: MD5 not checked")
        else:
            self.footer = footer
        if not src.at_end():
            remaining = src.remaining()
            amount = f"{remaining} bytes of" if remaining is not None else "unexpected"
            self.problems.append(f"{amount} trailing data after the end chunk (ignored)")
        return agrees

    # -- seeking -----------------------------------------------------------------------

    def seek_frame(self, index: int) -> None:
        """Move to frame ``index`` (0 .. num_frames; num_frames: past the last frame), so
        that the next :meth:`frames` starts there.

        Version 4 with an index chunk on a seekable input: the index (its CRC, its count,
        every offset in range) says where the frame is, and the frame header found there
        must be that frame's. Otherwise, and where the index fails those checks
        (recovering: with a note in :attr:`problems`; strict: CorruptStreamError), frame
        headers are walked from the first frame (or, going forward, from the current one)
        without reading payloads. A pipe can only go forward, from a frame boundary
        (ValueError otherwise); IndexError outside 0 .. num_frames.
        """
        header = self.header
        if isinstance(index, bool) or not isinstance(index, int) \
                or not 0 <= index <= header.num_frames:
            raise IndexError(f"frame index {index!r} out of range 0..{header.num_frames}")
        self._generation += 1
        self._armed = True
        self.footer = None
        self.missing_from = None
        if self.compact:
            self._cursor = index
            return
        src = self._src
        here = src.pos
        if src.seekable and self.has_index:
            found = self._index_target(index)
            if found is not None:
                frame, offset = found
                src.seek(offset)
                self._offsets = array("Q", self._index[:frame])
                self._cursor = frame
                self._at_frame = True
                self._walk(index)  # the frame itself, or past the last one
                return
        if index < self._cursor or not self._at_frame:
            if not src.seekable:
                raise ValueError("cannot seek backwards (or from inside a frame) on an input "
                                 "that is not seekable")
            src.seek(self._frames_start)
            self._cursor = 0
            del self._offsets[:]
            self._at_frame = True
        elif src.seekable:
            src.seek(here)
        self._walk(index)

    def _index_target(self, index: int) -> tuple[int, int] | None:
        """(frame, offset) to start from for ``index``, by the index chunk: the frame
        itself, or for ``index == num_frames`` the last one. None where no index can be
        used (strict: CorruptStreamError where it is wrong). Moves the input."""
        if not self._index_tried:
            self._index_tried = True
            try:
                self._index = self._load_index()
            except CorruptStreamError as exc:
                if not self.recover:
                    raise
                self.problems.append(f"{_reason(exc)}: frames found by walking instead")
        if not self._index:
            return None
        frame = min(index, len(self._index) - 1)
        offset = self._index[frame]
        src = self._src
        src.seek(offset)
        name = f"frame {frame}"
        parsed = _try_peek(src, lambda buf: v4.parse_frame_head(buf, self.header, name),
                           v4.MAX_FRAME_HEADER_SIZE)
        if parsed is not None and parsed[0].index == frame:
            return frame, offset
        message = f"index chunk puts frame {frame} at byte {offset}, where no such frame starts"
        if not self.recover:
            raise CorruptStreamError(f"corrupt stream: {message}")
        self.problems.append(f"{message}: frames found by walking instead")
        self._index = None
        return None

    def _load_index(self) -> array | None:
        """The frame offsets of the index chunk, found through the end chunk; None when it
        is too large to load. CorruptStreamError when anything about it is wrong."""
        src, header = self._src, self.header
        size = src.size
        end_at = size - v4.END_CHUNK_SIZE
        if end_at < self._frames_start:
            raise CorruptStreamError("corrupt stream: stream too short for its end chunk")
        src.seek(end_at)
        footer = v4.parse_end(src.read(v4.END_CHUNK_SIZE))
        if footer.num_frames != header.num_frames or footer.num_samples != header.num_samples:
            raise CorruptStreamError("corrupt stream: end chunk counts disagree with the "
                                     "header")
        at = footer.index_offset
        if not self._frames_start <= at < end_at:
            raise CorruptStreamError(f"corrupt stream: end chunk puts the index chunk at "
                                     f"byte {at}, outside the stream's frames")
        if end_at - at > MAX_INDEX_LOAD:
            return None
        src.seek(at)
        offsets = v4.parse_index(src.read(end_at - at), header.num_frames)
        if offsets and (offsets[0] != self._frames_start or offsets[-1] >= at):
            raise CorruptStreamError("corrupt stream: index chunk offsets lie outside the "
                                     "stream's frames")
        return array("Q", offsets)

    def _walk(self, index: int) -> None:
        """Step over frames from the current one to ``index`` by their headers alone."""
        src, header = self._src, self.header
        num_frames = header.num_frames
        while self._cursor < index:
            offset = src.pos
            try:
                if header.version in LEGACY_VERSIONS:
                    entries = legacy.read_frame_head(src, header, self._cursor, num_frames)
                    size = legacy.payloads_size(entries)
                else:
                    size = self._read_frame_head_v4(self._cursor, num_frames).payload_size \
                        + CRC_SIZE
            except CorruptStreamError as exc:
                if not self.recover:
                    raise
                self.problems.append(f"seeking to frame {index}: {_reason(exc)}; searching "
                                     f"for frame {index} from there")
                self._skip_reported = True
                if src.seekable:
                    src.seek(offset)
                self._cursor = index
                self._at_frame = False
                return
            self._note_offset(self._cursor, offset)
            if src.skip(size) < size:
                if not self.recover:
                    raise TruncatedStreamError(f"truncated stream: frame {self._cursor} "
                                               f"payloads cut short")
                self._cursor = index
                self._at_frame = False
                return
            self._cursor += 1


def _with_metadata(header: StreamHeader, blob: bytes) -> StreamHeader:
    return replace(header, metadata=blob)


# --------------------------------------------------------------------------- layout


def read_stream_layout(path: str | os.PathLike | BinaryIO) -> StreamLayout:
    """Read and check a whole stream; say how many bytes each part takes."""
    if hasattr(path, "read"):
        return _layout(path)  # type: ignore[arg-type]
    with open(path, "rb") as fp:
        return _layout(fp)


def _layout(fp: BinaryIO) -> StreamLayout:
    reader = StreamReader(fp)
    header = reader.header
    layer_bytes: dict[int, int] = {}
    layer_frames: dict[int, int] = {}
    payload = 0
    num_frames = 0
    carried = header.num_layers if header.version in LEGACY_VERSIONS else 0
    units = cuttable = truncated = multi = 0
    for frame in reader.frames():
        num_frames += 1
        if frame.units is None:
            pairs = [(lid, len(p)) for lid, p in frame.layers]
        else:
            pairs = [(u.first, len(u.payload)) for u in frame.units]
            units += len(frame.units)
            cuttable += sum(u.cuttable for u in frame.units)
            truncated += sum(u.truncated for u in frame.units)
            multi += sum(u.count > 1 for u in frame.units)
            held = v4.carried_layers(frame.units, frame.flags, header.num_layers)
            carried = max(carried, max((k + 1 for k, c in enumerate(held) if c), default=0))
        for layer_id, size in pairs:
            layer_bytes[layer_id] = layer_bytes.get(layer_id, 0) + size
            layer_frames[layer_id] = layer_frames.get(layer_id, 0) + 1
            payload += size
    assert reader.footer is not None
    total = reader.bytes_read
    return StreamLayout(
        header=header,
        footer=reader.footer,
        num_frames=num_frames,
        layer_bytes=dict(sorted(layer_bytes.items())),
        layer_frames=dict(sorted(layer_frames.items())),
        header_bytes=reader.header_bytes,
        framing_bytes=total - reader.header_bytes - payload,
        total_bytes=total,
        metadata_bytes=reader.metadata_bytes,
        layers_carried=carried,
        compact=reader.compact,
        index_bytes=reader.index_bytes,
        units=units,
        cuttable_units=cuttable,
        truncated_units=truncated,
        multi_layer_units=multi,
    )
