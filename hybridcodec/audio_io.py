"""Integer PCM input and output through soundfile (libsndfile).

Samples cross this module as ``int32`` arrays of shape ``(frames, channels)``,
*right-justified*: a ``b``-bit file gives values in ``[-2**(b-1), 2**(b-1))``, whatever
the container stores (soundfile's ``int32`` read is left-justified and unsigned 8-bit WAV
comes out signed; both are undone here). Supported: integer PCM of 8, 16 or 24 bits,
1 to 8 channels, any rate, in any container libsndfile reads (WAV, FLAC, AIFF, ...).
Output goes to ``.wav``, ``.flac``, ``.aif``/``.aiff`` through
:func:`hybridcodec.atomic.atomic_output`, so a failed or interrupted write leaves nothing.

No soundfile exception leaves this module: unreadable or unsupported input raises
:class:`UnsupportedAudioError` with a one-line message that starts with the file name.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Sequence

import numpy as np
import soundfile as sf

from . import metadata as md
from .atomic import AtomicOutput, atomic_output
from .errors import UnsupportedAudioError, UsageError

__all__ = [
    "AudioInfo",
    "AudioReader",
    "AudioWriter",
    "WavStreamWriter",
    "MAX_CHANNELS",
    "SUPPORTED_BITS",
    "OUTPUT_FORMATS",
    "open_audio",
    "open_audio_writer",
    "output_format_for",
    "wav_header",
]

MAX_CHANNELS = 8
SUPPORTED_BITS = (8, 16, 24)

#: integer PCM subtypes we accept, with their bit depth
_PCM_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24}

#: how unsupported subtypes are named in error messages
_UNSUPPORTED_NAMES = {
    "FLOAT": "32-bit float",
    "DOUBLE": "64-bit float",
    "PCM_32": "32-bit integer",
}

#: output extension (lower case) -> libsndfile major format
OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".aif": "AIFF", ".aiff": "AIFF"}

_ONLY = "(integer PCM 8-24 bit only)"


@dataclass(frozen=True)
class AudioInfo:
    """What the codec needs to know about a PCM file (and stores in its header).

    ``subtype`` is libsndfile's subtype name (``PCM_16``, ``PCM_U8``, ...),
    ``source_format`` its major format name (``WAV``, ``FLAC``, ``AIFF``, ``WAVEX``, ...).
    """

    sample_rate: int
    channels: int
    num_samples: int
    bits_per_sample: int
    subtype: str
    source_format: str


def is_file_object(obj: object) -> bool:
    """Whether ``obj`` is an open file object (as opposed to a path)."""
    return hasattr(obj, "read") or hasattr(obj, "write")


def display_name(path) -> str:
    """The name to show for ``path``: the path itself, or a file object's name
    (``<stdin>``, ``<stdout>``, ``<stream>``)."""
    if is_file_object(path):
        name = getattr(path, "name", None)
        if name in (0, "<stdin>"):
            return "<stdin>"
        if name in (1, "<stdout>"):
            return "<stdout>"
        return os.fspath(name) if isinstance(name, (str, os.PathLike)) else "<stream>"
    return os.fspath(path)


def _write_error(path, exc: BaseException) -> OSError:
    """The one-line error for a failed write of ``path``."""
    return OSError(f"cannot write {display_name(path)}: {_short_reason(exc)}")


def _short_reason(exc: BaseException) -> str:
    """A short, one-line reason from a soundfile / OS exception."""
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        reason = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
    reason = " ".join(str(reason).split()).rstrip(".")
    if reason == "System error":
        reason = "system error (unreadable file)"
    if reason[1:2].islower():  # "Format not recognised" -> "format ...", keep "WAV ..."
        reason = reason[0].lower() + reason[1:]
    return reason


def _cannot_read(path: str | os.PathLike[str], reason: str) -> UnsupportedAudioError:
    return UnsupportedAudioError(f"{display_name(path)}: cannot read audio: {reason}")


def _subtype_description(subtype: str) -> str:
    if subtype in _UNSUPPORTED_NAMES:
        return _UNSUPPORTED_NAMES[subtype]
    try:
        desc = sf.available_subtypes().get(subtype)
    except Exception:  # pragma: no cover - defensive, libsndfile query
        desc = None
    return desc or subtype


_SF_COUNT_MAX = 2**63 - 1


def _flac_has_frames(path) -> bool:
    """Whether anything follows the metadata blocks of a native FLAC file (path or file)."""
    def scan(f: BinaryIO) -> bool:
        if f.read(4) != b"fLaC":
            return True
        while True:
            hdr = f.read(4)
            if len(hdr) < 4:
                return False
            f.seek(int.from_bytes(hdr[1:], "big"), os.SEEK_CUR)
            if hdr[0] & 0x80:
                return f.read(1) != b""

    try:
        if is_file_object(path):
            where = path.tell()
            try:
                path.seek(0)
                return scan(path)
            finally:
                path.seek(where)
        with open(path, "rb") as f:
            return scan(f)
    except (OSError, ValueError):
        return True


# FLAC frame headers (FLAC format, "FRAME_HEADER") are read only to learn how many
# samples the frames really hold: libsndfile believes STREAMINFO's count, and fails on
# a file holding fewer samples (or silently stops early on one holding more).


def _crc_table(poly: int, width: int) -> list[int]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
        table.append(crc)
    return table


_CRC8 = _crc_table(0x07, 8)
_CRC16 = _crc_table(0x8005, 16)
_FLAC_FRAME_BPS = {1: 8, 2: 12, 4: 16, 5: 20, 6: 24, 7: 32}
_FLAC_TAIL = 1 << 20  # bytes searched from the end for the last frame
_FLAC_MAX_CANDIDATES = 8  # frame headers tried, last first
_FLAC_MAX_ENDS = 3  # frame ends tried per header


def _crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = _CRC8[crc ^ b]
    return crc


def _flac_frame_header(buf: bytes, i: int, si: "md.FlacStreamInfo") -> tuple[int, int] | None:
    """(first sample, block size) of a frame header at ``buf[i]`` that is valid for the
    stream ``si`` describes, else None."""
    try:
        if buf[i] != 0xFF or buf[i + 1] & 0xFE != 0xF8:
            return None
        bs_code, sr_code = buf[i + 2] >> 4, buf[i + 2] & 15
        ch_code, ss_code = buf[i + 3] >> 4, (buf[i + 3] >> 1) & 7
        if bs_code == 0 or sr_code == 15 or ch_code > 10 or ss_code == 3 or buf[i + 3] & 1:
            return None
        if (ch_code + 1 if ch_code < 8 else 2) != si.channels:
            return None
        if ss_code and _FLAC_FRAME_BPS[ss_code] != si.bits_per_sample:
            return None
        j = i + 4
        lead = buf[j]
        if lead < 0x80:
            number, extra = lead, 0
        elif 0xC0 <= lead <= 0xFE:
            extra = 1
            while lead & (0x40 >> extra):
                extra += 1
            number = lead & (0x7F >> (extra + 1))
        else:
            return None
        for k in range(extra):
            b = buf[j + 1 + k]
            if b & 0xC0 != 0x80:
                return None
            number = (number << 6) | (b & 0x3F)
        j += 1 + extra
        if bs_code == 1:
            block = 192
        elif bs_code <= 5:
            block = 576 << (bs_code - 2)
        elif bs_code == 6:
            block, j = buf[j] + 1, j + 1
        elif bs_code == 7:
            block, j = (buf[j] << 8 | buf[j + 1]) + 1, j + 2
        else:
            block = 256 << (bs_code - 8)
        j += {12: 1, 13: 2, 14: 2}.get(sr_code, 0)
        if _crc8(buf[i:j]) != buf[j]:
            return None
    except IndexError:
        return None
    first = number if buf[i + 1] & 1 else number * si.max_blocksize
    return first, block


def _flac_frames_total(fp: BinaryIO, size: int,
                       si: "md.FlacStreamInfo") -> tuple[int, bool] | None:
    """(samples the frames of a FLAC file hold, exact) from its last complete frame (the
    one whose CRC-16 checks up to the next frame header or the end), or None if none is
    found. ``exact``: that frame ends where the file does; otherwise something follows it
    (a cut-off frame, or a tag or junk the count cannot see past)."""
    start = max(si.audio_offset, size - _FLAC_TAIL)
    if si.audio_offset <= 0 or start >= size:
        return None
    fp.seek(start)
    buf = fp.read(size - start)
    end = len(buf)
    if end >= 128 and buf[end - 128:end - 125] == b"TAG":
        end -= 128  # an ID3v1 tag after the frames
    found = []
    i = buf.find(b"\xff", 0, end)
    while i >= 0:
        header = _flac_frame_header(buf, i, si)
        if header is not None:
            found.append((i, header))
        i = buf.find(b"\xff", i + 1, end)
    starts = [pos for pos, _ in found] + [end]
    for k in range(len(found) - 1, max(len(found) - 1 - _FLAC_MAX_CANDIDATES, -1), -1):
        pos, (first, block) = found[k]
        crc, done = 0, pos
        for stop in starts[k + 1:k + 1 + _FLAC_MAX_ENDS]:
            for b in buf[done:stop]:
                crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ b]
            done = stop
            if crc == 0:  # the frame's CRC-16 (over the frame, itself included) checks
                return first + block, stop == end
    return None


class _PatchedFile:
    """A file read through with a few bytes replaced: STREAMINFO's sample count, so that
    libsndfile reads the samples the frames really hold. Read-only."""

    def __init__(self, fp: BinaryIO, offset: int, data: bytes, owned: bool):
        self._fp = fp
        self._offset = offset
        self._data = data
        self._owned = owned
        self.name = getattr(fp, "name", None)

    def read(self, n: int = -1) -> bytes:
        pos = self._fp.tell()
        out = self._fp.read(n)
        lo, hi = max(pos, self._offset), min(pos + len(out), self._offset + len(self._data))
        if lo < hi:
            patched = bytearray(out)
            patched[lo - pos:hi - pos] = self._data[lo - self._offset:hi - self._offset]
            out = bytes(patched)
        return out

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()

    def close(self) -> None:
        if self._owned:
            self._fp.close()


def _flac_reaches(path, samples: int) -> bool:
    """Whether libsndfile can read sample ``samples - 1`` of a FLAC file (a seek there is
    a binary search over the frames, not a decode of the whole file)."""
    try:
        where = path.tell() if is_file_object(path) else None
        try:
            with sf.SoundFile(path if where is not None else display_name(path)) as f:
                f.seek(samples - 1)
                return len(f.read(1, dtype="int32")) == 1
        finally:
            if where is not None:
                path.seek(where)
    except Exception:  # libsndfile reports a failed seek or read in several ways
        return False


def _flac_length(path, scan: "md.ContainerScan") -> tuple[_PatchedFile | None, list[str], int | None]:
    """Check a FLAC file's STREAMINFO count against its frames.

    Returns (a patched view for libsndfile or None, problems, the count the frames hold
    or None). A count of 0 means "unknown" in STREAMINFO (a FLAC written to a pipe): then
    the frames' count is used, without a problem, when the last frame ends the file.
    A smaller count than STREAMINFO's from a last frame that does not end the file is
    believed only when libsndfile cannot read STREAMINFO's last sample either: a tag
    after the frames (APEv2) must not cost a frame.
    """
    si = scan.flac
    owned = not is_file_object(path)
    fp = open(display_name(path), "rb") if owned else path
    keep = False
    try:
        where = fp.tell()
        size = fp.seek(0, os.SEEK_END)
        found = _flac_frames_total(fp, size, si)
        fp.seek(where)
        if found is None:
            return None, [], None
        real, exact = found
        declared = si.total_samples
        if real == declared or real >= 1 << 36:
            return None, [], real
        if not exact and (declared == 0 or (real < declared and _flac_reaches(path, declared))):
            return None, [], None
        problems = []
        if declared:
            problems.append(f"FLAC STREAMINFO declares {declared} samples, its frames "
                            f"hold {real}")
        fp.seek(si.offset + 10)
        packed = int.from_bytes(fp.read(8), "big")
        fp.seek(where)
        patch = ((packed & ~((1 << 36) - 1)) | real).to_bytes(8, "big")
        keep = True
        return _PatchedFile(fp, si.offset + 10, patch, owned), problems, real
    finally:
        if owned and not keep:
            fp.close()


def _precheck_path(path: str | os.PathLike[str]) -> None:
    """Clear messages for the common non-audio cases, before libsndfile sees the path."""
    p = display_name(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise _cannot_read(path, "no such file") from None
    except OSError as exc:
        raise _cannot_read(path, _short_reason(exc)) from None
    import stat

    if stat.S_ISDIR(st.st_mode):
        raise _cannot_read(path, "is a directory")
    if not os.access(p, os.R_OK):
        raise _cannot_read(path, "permission denied")


class AudioReader:
    """An open PCM file; read it block by block with :meth:`read`. A context manager."""

    def __init__(self, path: str | os.PathLike[str], sfile: sf.SoundFile, info: AudioInfo,
                 scan: md.ContainerScan | None = None, problems: Sequence[str] = (),
                 source_md5: bytes | None = None, source_md5_bits: int | None = None,
                 view: "_PatchedFile | None" = None):
        self.path = path
        self.info = info
        self._sf: sf.SoundFile | None = sfile
        self._shift = 32 - info.bits_per_sample
        self._pos = 0
        self._view = view
        scan = scan or md.ContainerScan()
        #: what the file carries besides PCM (when opened with ``metadata=True``)
        self.metadata: md.Metadata | None = scan.metadata
        #: one line each: metadata found but not captured
        self.metadata_notes: list[str] = list(scan.notes)
        #: one line each: where the file disagrees with itself (its header declares
        #: another length than its audio has); the samples read are the ones really there
        self.problems: list[str] = list(problems)
        #: FLAC: the MD5 STREAMINFO holds for the PCM, when it holds one and it can match
        self.source_md5 = source_md5
        #: the bit depth that MD5 is computed at (STREAMINFO's)
        self.source_md5_bits = source_md5_bits

    @property
    def position(self) -> int:
        """Frames returned so far."""
        return self._pos

    def read(self, n: int) -> np.ndarray:
        """Return up to ``n`` frames as right-justified int32 ``(m, channels)``; ``m == 0`` at the end.

        Raises :class:`UnsupportedAudioError` if the file turns out to be damaged or
        shorter than its header says.
        """
        ch = self.info.channels
        if self._sf is None:
            raise ValueError("read from a closed AudioReader")
        want = min(int(n), self.info.num_samples - self._pos)
        if want <= 0:
            return np.zeros((0, ch), dtype=np.int32)
        try:
            data = self._sf.read(want, dtype="int32", always_2d=True)
        except Exception as exc:
            raise _cannot_read(
                self.path,
                f"file is truncated or damaged after {self._pos} of {self.info.num_samples} "
                f"samples ({_short_reason(exc)})",
            ) from None
        m = data.shape[0]
        if m == 0:
            raise _cannot_read(
                self.path,
                f"file is truncated or damaged (ends after {self._pos} of "
                f"{self.info.num_samples} samples)",
            )
        self._pos += m
        out = np.ascontiguousarray(data, dtype=np.int32)
        if self._shift:
            out >>= self._shift  # arithmetic shift: sign preserved
        return out

    def close(self) -> None:
        sfile, self._sf = self._sf, None
        if sfile is not None:
            try:
                sfile.close()
            except Exception:
                pass
        view, self._view = self._view, None
        if view is not None:
            view.close()

    def md5_problem(self, digest: bytes | None, pcm_md5: "hashlib._Hash | None" = None) -> str | None:
        """The line saying that the PCM read does not match the FLAC STREAMINFO MD5, or
        None. ``digest`` is the MD5 of the PCM read at the file's own bit depth (the
        codec's); ``pcm_md5`` one computed at STREAMINFO's depth when that differs."""
        if self.source_md5 is None:
            return None
        got = digest if self.source_md5_bits == self.info.bits_per_sample else (
            pcm_md5.digest() if pcm_md5 is not None else None)
        if got is None or got == self.source_md5:
            return None
        return (f"FLAC STREAMINFO MD5 {self.source_md5.hex()} does not match the "
                f"{self._pos} samples decoded (the file is damaged; flac -t rejects it)")

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - GC safety net
        try:
            self.close()
        except Exception:
            pass


def open_audio(path, *, metadata: bool = False) -> AudioReader:
    """Open an integer PCM file for reading: a path, or a seekable binary file object.

    Raises :class:`UnsupportedAudioError` for a missing, unreadable or non-audio file,
    for float / 32-bit / compressed sample formats and for more than 8 channels.

    A file whose header disagrees with its audio is read as far as its audio really goes
    and ``reader.problems`` says so: a FLAC whose frames hold another number of samples
    than STREAMINFO declares, a WAV or AIFF whose header declares more samples than the
    file holds. With ``metadata`` the file's tags, pictures and chunks are captured into
    ``reader.metadata`` (:mod:`hybridcodec.metadata`).
    """
    if not is_file_object(path):
        _precheck_path(path)
    view, problems, flac_real = None, [], None
    try:
        scan = md.scan_container(path if is_file_object(path) else display_name(path),
                                 capture=metadata)
        if scan.flac is not None:
            view, problems, flac_real = _flac_length(path, scan)
    except OSError as exc:
        raise _cannot_read(path, _short_reason(exc)) from None
    try:
        if view is not None:
            sfile = sf.SoundFile(view, "r")
        else:
            sfile = sf.SoundFile(path if is_file_object(path) else display_name(path), "r")
    except Exception as exc:
        if view is not None:
            view.close()
        raise _cannot_read(path, _short_reason(exc)) from None
    try:
        subtype = str(sfile.subtype)
        fmt = str(sfile.format)
        channels = int(sfile.channels)
        rate = int(sfile.samplerate)
        frames = int(sfile.frames)
        if subtype not in _PCM_BITS:
            raise UnsupportedAudioError(
                f"{display_name(path)}: {_subtype_description(subtype)} audio is not "
                f"supported {_ONLY}"
            )
        if not 1 <= channels <= MAX_CHANNELS:
            raise UnsupportedAudioError(
                f"{display_name(path)}: {channels}-channel audio is not supported "
                f"(1 to {MAX_CHANNELS} channels only)"
            )
        if rate <= 0:
            raise UnsupportedAudioError(f"{display_name(path)}: invalid sample rate {rate}")
        if frames == _SF_COUNT_MAX and fmt == "FLAC" and not _flac_has_frames(
                path if is_file_object(path) else display_name(path)):
            frames = 0  # libsndfile reads "0 samples" in STREAMINFO as "unknown"
        if frames < 0 or frames == _SF_COUNT_MAX:
            raise _cannot_read(
                path, "length unknown (no sample count in the header, e.g. written to a pipe)"
            )
        info = AudioInfo(
            sample_rate=rate,
            channels=channels,
            num_samples=frames,
            bits_per_sample=_PCM_BITS[subtype],
            subtype=subtype,
            source_format=fmt,
        )
        source_md5 = None
        if scan.flac is not None:
            si = scan.flac
            fewer = flac_real is not None and si.total_samples and flac_real < si.total_samples
            if any(si.md5) and not fewer:  # an MD5 of samples that are not there can't match
                source_md5 = si.md5
        elif scan.declared_frames is not None and scan.declared_frames > frames:
            problems.append(f"{md.CONTAINER_NAMES[scan.container]} header declares "
                            f"{scan.declared_frames} samples, the file holds {frames}")
    except BaseException:
        try:
            sfile.close()
        except Exception:
            pass
        if view is not None:
            view.close()
        raise
    return AudioReader(path, sfile, info, scan, problems, source_md5,
                       scan.flac.bits_per_sample if scan.flac else None, view)


def output_format_for(path: str | os.PathLike[str]) -> str:
    """libsndfile major format for an output path, from its extension (case-insensitive)."""
    ext = os.path.splitext(display_name(path))[1].lower()
    try:
        return OUTPUT_FORMATS[ext]
    except KeyError:
        supported = ", ".join(OUTPUT_FORMATS)
        shown = ext or "no extension"
        raise UsageError(
            f"{display_name(path)}: cannot write audio with {shown} (supported: {supported})"
        ) from None


def _output_subtype(fmt: str, info: AudioInfo) -> str:
    bits = info.bits_per_sample
    if bits not in SUPPORTED_BITS:
        raise UsageError(f"cannot write {bits}-bit audio {_ONLY}")
    if _PCM_BITS.get(info.subtype) == bits and sf.check_format(fmt, info.subtype):
        return info.subtype
    if bits == 8:
        return "PCM_U8" if fmt in ("WAV", "WAVEX") else "PCM_S8"
    return f"PCM_{bits}"


def _empty_flac(sample_rate: int, channels: int, bits: int) -> bytes:
    """A complete FLAC file holding zero samples (as ``flac`` writes for empty input)."""
    # STREAMINFO: block sizes 4096/4096, frame sizes unknown (0), then 20-bit rate,
    # 3-bit channels-1, 5-bit bps-1, 36-bit total samples (0), 128-bit MD5 of nothing.
    packed = (sample_rate << 44) | ((channels - 1) << 41) | ((bits - 1) << 36)
    info = (
        struct.pack(">HH", 4096, 4096)
        + bytes(6)
        + packed.to_bytes(8, "big")
        + hashlib.md5(b"").digest()
    )
    return b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info


def _patch_aiff_frames(fp: BinaryIO, frames: int, bytes_per_frame: int) -> None:
    """Make an AIFF's COMM frame count and SSND size say ``frames`` (see AudioWriter)."""
    fp.seek(0)
    head = fp.read(12)
    if len(head) < 12 or head[:4] != b"FORM":
        return
    pos, end = 12, 8 + struct.unpack(">I", head[4:8])[0]
    comm = ssnd = None
    while pos + 8 <= end:
        fp.seek(pos)
        ck = fp.read(8)
        if len(ck) < 8:
            break
        cid, size = ck[:4], struct.unpack(">I", ck[4:])[0]
        if cid == b"COMM":
            comm = pos
        elif cid == b"SSND":
            ssnd = (pos, size)
        pos += 8 + size + (size & 1)
    if comm is None or ssnd is None:
        return
    fp.seek(comm + 10)
    declared = struct.unpack(">I", fp.read(4))[0]
    if declared == frames:
        return
    ssnd_pos, ssnd_size = ssnd
    fp.seek(ssnd_pos + 8)
    offset = struct.unpack(">I", fp.read(4))[0]
    new_size = 8 + offset + frames * bytes_per_frame
    if new_size + (new_size & 1) != ssnd_size + (ssnd_size & 1):
        # Only the known off-by-the-pad-byte case is repaired; anything else is a surprise.
        raise OSError(
            f"libsndfile wrote an inconsistent AIFF ({declared} frames declared, {frames} written)"
        )
    fp.seek(comm + 10)
    fp.write(struct.pack(">I", frames))
    fp.seek(ssnd_pos + 4)
    fp.write(struct.pack(">I", new_size))


class AudioWriter:
    """Writes right-justified int32 blocks; see :func:`open_audio_writer`."""

    def __init__(self, path: str | os.PathLike[str], info: AudioInfo, *, overwrite: bool,
                 metadata: md.Metadata | None = None):
        fmt = output_format_for(path)
        if fmt == "WAV" and info.source_format.upper() == "WAVEX":
            fmt = "WAVEX"
        #: what of ``metadata`` goes into the file (None: the file as libsndfile writes it)
        self.plan = _plan(metadata, fmt, info, stream=False)
        #: one line per kind of metadata the output cannot carry
        self.notes: list[str] = list(self.plan.warnings) if self.plan else []
        if not 1 <= info.channels <= MAX_CHANNELS:
            raise UsageError(f"cannot write {info.channels}-channel audio (1 to {MAX_CHANNELS})")
        if info.sample_rate <= 0:
            raise UsageError(f"cannot write audio at sample rate {info.sample_rate}")
        self.path = path
        self.info = info
        self.format = fmt
        self.subtype = _output_subtype(fmt, info)
        self._bits = info.bits_per_sample
        self._shift = 32 - self._bits
        self._lo = -(1 << (self._bits - 1))
        self._hi = (1 << (self._bits - 1)) - 1
        self._out: AtomicOutput = atomic_output(path, overwrite=overwrite)
        self._sf: sf.SoundFile | None = None
        self._fp: BinaryIO | None = None
        self.frames_written = 0

    def __enter__(self) -> "AudioWriter":
        fp = self._out.__enter__()
        self._fp = fp
        try:
            self._sf = sf.SoundFile(
                fp,
                "w",
                samplerate=self.info.sample_rate,
                channels=self.info.channels,
                subtype=self.subtype,
                format=self.format,
            )
        except BaseException as exc:
            self._out.__exit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, Exception):
                raise UsageError(
                    f"cannot write {display_name(self.path)} as {self.format} {self.subtype}, "
                    f"{self.info.channels} ch, {self.info.sample_rate} Hz: {_short_reason(exc)}"
                ) from None
            raise
        return self

    def write(self, frames: np.ndarray) -> None:
        """Append right-justified integer samples, shape ``(m, channels)`` (or ``(m,)`` for mono)."""
        if self._sf is None:
            raise ValueError("write to an AudioWriter outside its with-block")
        a = np.asarray(frames)
        if a.ndim == 1 and self.info.channels == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[1] != self.info.channels:
            raise ValueError(
                f"expected samples of shape (m, {self.info.channels}), got {a.shape}"
            )
        if a.dtype.kind not in "iu":
            raise ValueError(f"expected integer samples, got {a.dtype}")
        if a.shape[0] == 0:
            return
        if a.min() < self._lo or a.max() > self._hi:
            raise ValueError(
                f"sample out of range for {self._bits}-bit audio: [{a.min()}, {a.max()}]"
            )
        out = a.astype(np.int32)  # always a fresh copy
        if self._shift:
            out <<= self._shift
        try:
            self._sf.write(out)
        except Exception as exc:
            raise _write_error(self.path, exc) from None
        self.frames_written += a.shape[0]

    def _fix_libsndfile_output(self) -> None:
        """Repair what libsndfile 1.2 gets wrong, in the closed-but-not-renamed temp file.

        * FLAC with no samples: libsndfile writes a 0-byte file; write a valid empty
          FLAC (``fLaC`` + STREAMINFO with 0 samples) instead.
        * AIFF, 8-bit mono, odd length: libsndfile counts the chunk's pad byte as one
          more sample frame in COMM and SSND; patch both sizes back.

        Then the source's metadata goes in (:func:`hybridcodec.metadata.apply_plan`):
        libsndfile writes none of it, and a WAV's fmt chunk only in its own form.
        """
        fp = self._fp
        if self.format == "FLAC" and self.frames_written == 0:
            fp.seek(0)
            fp.truncate()
            fp.write(_empty_flac(self.info.sample_rate, self.info.channels, self._bits))
        elif self.format == "AIFF":
            _patch_aiff_frames(fp, self.frames_written, self.info.channels * (self._bits // 8))
        fp.flush()
        if self.plan is not None:
            md.apply_plan(fp, self.plan)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        sfile, self._sf = self._sf, None
        if exc_type is None:
            try:
                if sfile is not None:
                    sfile.close()  # finalises headers through the temp file object
                self._fix_libsndfile_output()
            except BaseException as close_exc:
                self._out.__exit__(type(close_exc), close_exc, close_exc.__traceback__)
                if isinstance(close_exc, Exception):
                    raise _write_error(self.path, close_exc)
                raise
            self._out.__exit__(None, None, None)
        else:
            try:
                if sfile is not None:
                    sfile.close()
            except BaseException:
                pass
            self._out.__exit__(exc_type, exc, tb)
        return False


_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_KSDATAFORMAT_SUBTYPE_PCM = bytes.fromhex("0100000000001000800000aa00389b71")


def _plan(metadata: md.Metadata | None, fmt: str, info: AudioInfo,
          stream: bool) -> md.RestorePlan | None:
    if metadata is None:
        return None
    return md.plan_restore(metadata, fmt, channels=info.channels,
                           sample_rate=info.sample_rate, bits=info.bits_per_sample,
                           stream=stream)


def wav_header(info: AudioInfo, *, fmt_chunk: bytes | None = None,
               chunks: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """The header of a canonical WAV file holding exactly ``info.num_samples`` samples.

    Integer PCM, little-endian, ``ceil(bits / 8)`` bytes per sample (8-bit unsigned, as
    WAV stores it); format tag 1 (PCM), or WAVE_FORMAT_EXTENSIBLE when the source was
    WAVEX. ``fmt `` then ``data``; a pad byte follows odd-sized data. ``fmt_chunk``
    replaces the fmt chunk's body (the source's own, which must describe the same
    audio), and ``chunks`` ((id, body) pairs) go between it and ``data``.
    Raises :class:`UsageError` when the data would not fit a RIFF file (4 GiB).
    """
    bits = info.bits_per_sample
    if bits not in SUPPORTED_BITS:
        raise UsageError(f"cannot write {bits}-bit audio {_ONLY}")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise UsageError(f"cannot write {info.channels}-channel audio (1 to {MAX_CHANNELS})")
    if not 0 < info.sample_rate < 2**32:
        raise UsageError(f"cannot write audio at sample rate {info.sample_rate}")
    width = (bits + 7) // 8
    block = width * info.channels
    data_size = info.num_samples * block
    extensible = info.source_format.upper() == "WAVEX"
    if extensible:
        fmt = struct.pack("<HHIIHHHHI16s", _WAVE_FORMAT_EXTENSIBLE, info.channels,
                          info.sample_rate, info.sample_rate * block, block, width * 8, 22,
                          bits, 0, _KSDATAFORMAT_SUBTYPE_PCM)
    else:
        fmt = struct.pack("<HHIIHH", _WAVE_FORMAT_PCM, info.channels, info.sample_rate,
                          info.sample_rate * block, block, width * 8)
    if fmt_chunk is not None:
        fmt = fmt_chunk
    extra = b"".join(cid + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)
                     for cid, body in chunks)
    riff_size = 4 + 8 + len(fmt) + (len(fmt) & 1) + len(extra) + 8 + data_size + (data_size & 1)
    if riff_size > 0xFFFFFFFF:
        raise UsageError(
            f"{info.num_samples} samples of {info.channels}-channel {bits}-bit audio do "
            "not fit a WAV file (4 GiB): decode to a .flac file instead")
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"\0" * (len(fmt) & 1) + extra
            + b"data" + struct.pack("<I", data_size))


def pcm_le_bytes(samples: np.ndarray, bits: int) -> bytes:
    """Right-justified integer samples as WAV stores them (interleaved, little-endian)."""
    if bits <= 8:
        return (samples.astype(np.int16) + 128).astype(np.uint8).tobytes()
    if bits <= 16:
        return samples.astype("<i2").tobytes()
    return samples.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


class WavStreamWriter:
    """Writes a WAV file front to back to a binary file object that need not seek
    (standard output): the header comes first, from the known sample count
    (:func:`wav_header`); see :func:`open_audio_writer`. Nothing here is atomic: what
    was written stays written, so a failed decode leaves a short file whose header
    promises more (readers see it as truncated)."""

    def __init__(self, fp: BinaryIO, info: AudioInfo, metadata: md.Metadata | None = None):
        self.path = fp
        self.info = info
        self.format = "WAV"
        self._fp = fp
        plan = _plan(metadata, "WAV", info, stream=True)
        #: one line per kind of metadata the output cannot carry
        self.notes: list[str] = list(plan.warnings) if plan else []
        fmt_chunk, chunks = md.riff_head(plan)
        self._header = wav_header(info, fmt_chunk=fmt_chunk, chunks=chunks)
        self._bits = info.bits_per_sample
        self._lo = -(1 << (self._bits - 1))
        self._hi = (1 << (self._bits - 1)) - 1
        self._open = False
        self.frames_written = 0
        #: set to accept fewer samples than declared (a recovering decode of a stream
        #: whose end is lost); the header then overstates the length
        self.allow_short = False

    def __enter__(self) -> "WavStreamWriter":
        self._put(self._header)
        self._open = True
        return self

    def _put(self, data: bytes) -> None:
        try:
            self._fp.write(data)
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:
            raise _write_error(self.path, exc) from None

    def write(self, frames: np.ndarray) -> None:
        """Append right-justified integer samples, shape ``(m, channels)`` (or ``(m,)``)."""
        if not self._open:
            raise ValueError("write to a WavStreamWriter outside its with-block")
        a = np.asarray(frames)
        if a.ndim == 1 and self.info.channels == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[1] != self.info.channels:
            raise ValueError(f"expected samples of shape (m, {self.info.channels}), got {a.shape}")
        if a.dtype.kind not in "iu":
            raise ValueError(f"expected integer samples, got {a.dtype}")
        if a.shape[0] == 0:
            return
        if self.frames_written + a.shape[0] > self.info.num_samples:
            raise ValueError("more samples than the WAV header declares")
        if a.min() < self._lo or a.max() > self._hi:
            raise ValueError(f"sample out of range for {self._bits}-bit audio: [{a.min()}, {a.max()}]")
        self._put(pcm_le_bytes(a, self._bits))
        self.frames_written += a.shape[0]

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._open = False
        if exc_type is None:
            if self.frames_written != self.info.num_samples and not (
                    self.allow_short and self.frames_written < self.info.num_samples):
                raise ValueError(
                    f"{self.frames_written} samples written, the WAV header declares "
                    f"{self.info.num_samples}")
            width = (self._bits + 7) // 8
            if (self.frames_written * self.info.channels * width) & 1:
                self._put(b"\0")
            try:
                self._fp.flush()
            except BrokenPipeError:
                raise
            except (OSError, ValueError) as exc2:
                raise _write_error(self.path, exc2) from None
        return False


def open_audio_writer(
    path, info: AudioInfo, *, overwrite: bool = False, metadata: md.Metadata | None = None
) -> AudioWriter | WavStreamWriter:
    """Open ``path`` for writing PCM described by ``info`` (use as a context manager).

    The format comes from the extension (``.wav``, ``.flac``, ``.aif``, ``.aiff``, any
    case; anything else is a :class:`UsageError`). The subtype is ``info.subtype`` where
    the format supports it, else the same bit depth (8-bit: ``PCM_U8`` in WAV,
    ``PCM_S8`` in FLAC/AIFF). The file appears only when the ``with`` block exits
    without an exception; if ``path`` exists and ``overwrite`` is false this call raises
    :class:`UsageError` before any work.

    ``path`` may also be a binary file object (standard output): the audio is then
    written as WAV front to back by a :class:`WavStreamWriter` (libsndfile cannot write
    WAV or FLAC headers to a stream that does not seek), not atomically.

    ``metadata`` (a source's, :mod:`hybridcodec.metadata`) is written into the file as
    far as its format can hold it; ``writer.notes`` names what it cannot.
    """
    if is_file_object(path):
        return WavStreamWriter(path, info, metadata)
    return AudioWriter(path, info, overwrite=overwrite, metadata=metadata)
