"""File-level encode / decode: frames, MD5, container, model check, atomic output.

This is the public entry point of the library (re-exported as ``hybridcodec.encode`` and
``hybridcodec.decode``). Audio is read and written one frame at a time, so memory stays
bounded whatever the file length.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

import numpy as np

from . import cancel
from .atomic import atomic_output
from .audio_io import AudioInfo, display_name, is_file_object, open_audio, open_audio_writer
from .container import (DamagedFrame, StreamHeader, StreamReader, StreamWriter,
                        read_stream_layout, write_compact)
from .errors import (CorruptStreamError, HybridCodecError, InputFileError, ModelError,
                     ModelMismatchError, UnsupportedAudioError, UsageError)
from .layer_units import (MERGE_BELOW, frame_from_codes, frame_from_layers, layer_groups,
                          layers_from_frame, units_for_decoder)
from .tiers import layer_name, layer_order
from .truncation import truncate_file

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DamagedRegion:
    """A frame that could not be decoded (``--ignore-errors``): written as silence."""

    frame: int
    start: int  # first sample (per channel) of the frame
    end: int  # one past its last sample
    reason: str

    def __str__(self) -> str:
        return f"frame {self.frame} (samples {self.start}..{self.end - 1}): {self.reason}"


@dataclass
class CodingReport:
    """What one encode or decode did (for the CLI's summary line and the benchmarks)."""

    input_bytes: int
    output_bytes: int
    num_samples: int
    sample_rate: int
    channels: int
    seconds: float
    #: decode with ``ignore_errors``: the frames written as silence, in order
    damaged: list[DamagedRegion] = field(default_factory=list)
    #: decode with ``ignore_errors``: other problems (end chunk, MD5), one line each
    warnings: list[str] = field(default_factory=list)
    #: whether the decoded PCM matched the stream's MD5 (None: it could not be checked)
    md5_ok: bool | None = True
    #: warnings that are not damage, one line each: metadata the output could not carry,
    #: an input that disagrees with itself (encode). They do not change the exit status.
    notes: list[str] = field(default_factory=list)
    #: bits per sample of the audio: with the sample and channel counts, the raw PCM size
    bits_per_sample: int = 0
    #: decode with ``skip`` / ``until``: the samples ``[start, stop)`` written (None: the
    #: whole stream). ``num_samples`` stays the stream's length.
    range: tuple[int, int] | None = None

    @property
    def clean(self) -> bool:
        """No damage, no warning, MD5 matched."""
        return not self.damaged and not self.warnings and self.md5_ok is True


@dataclass
class VerifyReport:
    """What :func:`verify_file` found. ``ok`` means every frame decoded and the MD5 matched."""

    path: str
    num_samples: int
    sample_rate: int
    channels: int
    num_frames: int
    input_bytes: int
    seconds: float
    damaged: list[DamagedRegion] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    md5_ok: bool | None = True
    #: the stream is a lower tier: its MD5 (of the original PCM) cannot be reproduced
    lower_tier: bool = False

    @property
    def ok(self) -> bool:
        md5_fine = self.md5_ok is True or (self.lower_tier and self.md5_ok is None)
        return not self.damaged and not self.warnings and md5_fine


def single_threaded(fn):
    """Run a coding entry point with SIGINT/SIGTERM from the CLI deferred to the next
    frame boundary (:mod:`hybridcodec.cancel`). The coding path is sequential numpy and
    numba code; ``--jobs`` is how it uses several cores."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with cancel.deferred():
            return fn(*args, **kwargs)
    return wrapper


def pcm_bytes(pcm: np.ndarray, bits: int) -> bytes:
    """PCM as little-endian signed integers of whole bytes, interleaved (what the MD5 covers)."""
    if bits <= 8:
        return pcm.astype(np.int8).tobytes()
    if bits <= 16:
        return pcm.astype("<i2").tobytes()
    return pcm.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


def _seekable(fp) -> bool:
    try:
        return bool(fp.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _size(obj) -> int:
    """Size in bytes of a path or a seekable file object (0 where unknown)."""
    try:
        if not is_file_object(obj):
            return os.path.getsize(obj)
        if _seekable(obj):
            where = obj.tell()
            end = obj.seek(0, os.SEEK_END)
            obj.seek(where)
            return end
    except (OSError, ValueError):
        pass
    return 0


#: Bytes of piped input audio held in memory before spooling goes to a temporary file.
SPOOL_MEMORY = 16 << 20


def _spool(fp: BinaryIO) -> tempfile.SpooledTemporaryFile:
    """Copy a non-seekable input (a pipe) to a seekable temporary file, in bounded pieces.

    The header needs the audio's length before the first frame, and a piped WAV often
    has none (or a wrong one); libsndfile also needs to seek. Memory stays bounded: past
    SPOOL_MEMORY the copy goes to an anonymous file in the temp directory (deleted when
    closed, also on an interrupt).
    """
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    try:
        while True:
            cancel.checkpoint()
            data = fp.read(1 << 20)
            if not data:
                break
            spool.write(data)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


class _Counting:
    """A write-only file object that counts the bytes passed to ``fp`` (standard output)."""

    def __init__(self, fp: BinaryIO) -> None:
        self._fp = fp
        self.name = getattr(fp, "name", None)
        self.count = 0

    def write(self, data: bytes) -> int:
        self._fp.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self._fp.flush()


class _Output:
    """``atomic_output(dst)`` for a path; the file object itself (not closed) otherwise."""

    def __init__(self, dst, overwrite: bool) -> None:
        self._atomic = None if is_file_object(dst) else atomic_output(dst, overwrite=overwrite)
        self._fp = dst

    def __enter__(self) -> BinaryIO:
        return self._atomic.__enter__() if self._atomic is not None else self._fp

    def __exit__(self, *exc) -> bool:
        if self._atomic is not None:
            return self._atomic.__exit__(*exc)
        if exc[0] is None:
            self._fp.flush()
        return False


def _check_fill(fill: str) -> str:
    from .precision import FILL_MODES

    if fill not in FILL_MODES:
        raise UsageError(f"unknown fill mode {fill!r} (choose from {', '.join(FILL_MODES)})")
    return fill


#: the largest --seed (numpy's seed sequences take any non-negative integer)
SEED_MAX = (1 << 64) - 1


def _check_seed(seed) -> int:
    import numbers

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
            or not 0 <= int(seed) <= SEED_MAX:
        raise UsageError(f"seed must be an integer in 0..2**64-1, got {seed!r}")
    return int(seed)


def _check_jobs(jobs) -> int:
    from .parallel import check_jobs

    return check_jobs(jobs)


def encode_file(src: str | os.PathLike | BinaryIO, dst: str | os.PathLike | BinaryIO, *,
                model: str | None = None, overwrite: bool = False,
                progress: Progress | None = None, jobs: int = 1, tier: str | None = None,
                kbps: float | None = None, metadata: bool = True,
                strict: bool = False) -> CodingReport:
    """Encode an audio file (WAV/FLAC/AIFF, integer PCM) into a .hyb stream.

    Lossless unless ``tier`` (a name from :data:`hybridcodec.tiers.TIERS`) or ``kbps`` (a
    bit-rate ceiling) asks for a lower tier: the file is then encoded losslessly and
    truncated, exactly as ``hybridcodec truncate`` would do it.

    ``metadata``: store the input's tags, pictures, cue sheets and chunks in the stream
    (:mod:`hybridcodec.metadata`). An input that disagrees with itself (a header that
    declares another length than its audio has, a FLAC MD5 that its audio does not match)
    is encoded as far as its audio really goes, with a line in ``report.notes``; with
    ``strict`` it is an :class:`~hybridcodec.errors.UnsupportedAudioError` instead and
    nothing is written.
    """
    if (tier is None or tier == "lossless") and kbps is None:
        return _encode_lossless(src, dst, model=model, overwrite=overwrite,
                                progress=progress, jobs=jobs, metadata=metadata,
                                strict=strict)
    if is_file_object(dst):
        raise UsageError("a lower tier needs a file output (truncation reads the stream twice)")
    from .atomic import check_output_path

    check_output_path(dst, overwrite=overwrite)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hybridcodec-") as tmp:
        full = os.path.join(tmp, "full.hyb")
        report = _encode_lossless(src, full, model=model, overwrite=True, progress=progress,
                                  jobs=jobs, metadata=metadata, strict=strict)
        cut = truncate_file(full, dst, tier=tier, kbps=kbps, overwrite=overwrite)
    report.output_bytes = cut.output_bytes
    report.seconds = time.perf_counter() - start
    return report


@single_threaded
def _encode_lossless(src: str | os.PathLike | BinaryIO, dst: str | os.PathLike | BinaryIO, *,
                     model: str | None = None, overwrite: bool = False,
                     progress: Progress | None = None, jobs: int = 1,
                     metadata: bool = True, strict: bool = False,
                     pcm_reader=None) -> CodingReport:
    """Lossless encode (see :func:`encode_file`).

    ``src`` and ``dst`` are paths or binary file objects (e.g. ``sys.stdin.buffer`` /
    ``sys.stdout.buffer``). A non-seekable input is first spooled to a temporary file
    (the header needs the length); a path output is written atomically, a file object
    front to back. ``jobs`` > 1 codes frames in that many worker processes (0: one per
    CPU); the stream is byte-identical to ``jobs=1``.

    ``pcm_reader``: PCM that is already open, read instead of ``src`` (which then only
    names it in messages): an object with the interface of
    :class:`~hybridcodec.audio_io.AudioReader` that the code below uses, plus ``nbytes``
    (:func:`hybridcodec.api.encode_array`'s array).
    """
    from .framecodec import layer_count  # the coder (numba) only where it codes: not for info
    from .model import load_model
    from .parallel import frame_runner

    start = time.perf_counter()
    jobs = _check_jobs(jobs)
    name = display_name(src)
    net, model_id = load_model(model)
    cfg = net.config
    spool = None
    if pcm_reader is None and is_file_object(src) and not _seekable(src):
        spool = _spool(src)
    try:
        source = spool if spool is not None else src
        input_bytes = _size(source) if pcm_reader is None else pcm_reader.nbytes
        with (open_audio(source, metadata=metadata) if pcm_reader is None
              else pcm_reader) as reader:
            info = reader.info
            notes: list[str] = []
            for problem in reader.problems:
                _inconsistent(name, problem, strict, notes,
                              f"encoded the {info.num_samples} samples present")
            captured = reader.metadata if metadata else None
            if metadata:
                notes += reader.metadata_notes
            if cfg.frame_length & (cfg.frame_length - 1):
                raise ModelError(f"model {model_id}: frame_length {cfg.frame_length} is not a "
                                 f"power of two, which stream format 4 needs")
            segmented = cfg.payload == 4
            # The layered payload of formats 1-3 is cut by whole layers: one truncation
            # segment per frame says so; format 4's payload has the model's segments.
            header = StreamHeader(
                sample_rate=info.sample_rate, channels=info.channels,
                bits_per_sample=info.bits_per_sample, subtype=info.subtype,
                source_format=info.source_format, num_samples=info.num_samples,
                frame_length=cfg.frame_length, model_id=model_id, levels=cfg.levels,
                num_layers=layer_count(net), groups=layer_count(net) // (cfg.levels + 1),
                segment_length=cfg.segment_length if segmented else cfg.frame_length,
                metadata=captured.to_bytes() if captured is not None else None)
            merged = segmented and header.num_frames == 1 and info.num_samples < MERGE_BELOW
            hop = net.envelope_grid(info.sample_rate).hop if segmented else 0
            # A one-frame stream without metadata is written compact, in one piece at the
            # end (its MD5 comes first): the one frame is all that is held back.
            compact = header.num_frames == 1 and header.metadata is None
            md5 = hashlib.md5()
            # FLAC's MD5 is of the PCM at STREAMINFO's depth, which libsndfile may have
            # widened (12 and 20 bits): then it needs its own hash of the samples
            bits = reader.source_md5_bits
            flac_md5 = hashlib.md5() if reader.source_md5 is not None and bits is not None \
                and bits != info.bits_per_sample else None

            def frames():
                done = 0
                for index in range(header.num_frames):
                    cancel.checkpoint()
                    pcm = reader.read(cfg.frame_length)
                    if len(pcm) != header.frame_num_samples(index):
                        raise InputFileError(f"{name}: audio ends after {done + len(pcm)} "
                                             f"of {info.num_samples} declared samples")
                    md5.update(pcm_bytes(pcm, info.bits_per_sample))
                    if flac_md5 is not None:
                        flac_md5.update(pcm_bytes(pcm >> (info.bits_per_sample - bits), bits))
                    done += len(pcm)
                    yield pcm

            def tasks():
                if not segmented:
                    for pcm in frames():
                        yield "encode", pcm
                    return
                # The envelope's windows at a frame's edges reach a hop into the frame
                # before and two into the one after: read one frame ahead.
                before = np.zeros((0, info.channels), np.int64)
                source = frames()
                current = next(source, None)
                index = 0
                while current is not None:
                    following = next(source, None)
                    after = following[: 2 * hop] if following is not None else None
                    yield ("encode4", current, info.sample_rate,
                           {"before": before, "after": after, "last": following is None,
                            "bits_per_sample": info.bits_per_sample, "merged": merged})
                    before = current[-hop:]
                    current, index = following, index + 1

            target = _Counting(dst) if is_file_object(dst) else dst
            with _Output(target, overwrite) as fp, frame_runner(jobs, net, model) as runner:
                writer = None if compact else StreamWriter(fp, header)
                held = None
                written = 0
                for index, layers in enumerate(runner.run(tasks())):
                    n = header.frame_num_samples(index)
                    frame = frame_from_codes(header, index, n, layers, merged) if segmented \
                        else frame_from_layers(header, index, n, layers)
                    if writer is None:
                        held = frame
                    else:
                        writer.write_frame(frame)
                    written += n
                    if progress:
                        progress(written, info.num_samples)
                # before the end chunk, so that --strict leaves no complete stream
                problem = reader.md5_problem(md5.digest(), flac_md5)
                if problem:
                    _inconsistent(name, problem, strict, notes, "encoded the audio as decoded")
                if writer is None:
                    write_compact(fp, header, held, md5.digest())
                else:
                    writer.finish(md5.digest())
    finally:
        if spool is not None:
            spool.close()
    output_bytes = target.count if is_file_object(dst) else os.path.getsize(dst)
    return CodingReport(input_bytes, output_bytes, info.num_samples,
                        info.sample_rate, info.channels, time.perf_counter() - start,
                        notes=notes, bits_per_sample=info.bits_per_sample)


def _inconsistent(name: str, problem: str, strict: bool, notes: list[str], went_on: str) -> None:
    """An input that disagrees with itself: an error with ``strict``, else a note."""
    if strict:
        raise UnsupportedAudioError(f"{name}: {problem} (refused: --strict)")
    notes.append(f"{problem}; {went_on}")


def _open_stream(src) -> BinaryIO:
    if is_file_object(src):
        return contextlib.nullcontext(src)
    try:
        return open(src, "rb")
    except IsADirectoryError:
        raise InputFileError(f"{os.fspath(src)}: is a directory") from None
    except OSError as exc:
        raise InputFileError(f"{os.fspath(src)}: cannot open: {exc.strerror or exc}") from None


def check_model(header: StreamHeader, model_id: str, model: str | None, src) -> None:
    """Refuse to decode with a model other than the one that coded the stream.

    ``model`` is the model file given (None: the built-in default), ``model_id`` its id.
    The message names the stream's model and says whether this package has it (the
    built-in default, or an earlier default that ships with it and is found without
    ``--model``) or not (then only the model file that coded the stream can decode it).
    """
    from .model import bundled_model_path, load_model

    wanted = header.model_id
    if wanted == model_id:
        return
    default_id = load_model(None)[1]
    given = ("the built-in default model" if model is None
             else f"model file {os.fspath(model)}"
             + (" (the built-in default)" if model_id == default_id else ""))
    if wanted == default_id:
        known = f"the built-in default model {wanted}"
        hint = "decode without --model"
    elif bundled_model_path(wanted) is not None:
        known = f"model {wanted}, an earlier default that ships with hybridcodec"
        hint = "decode without --model"
    else:
        known = f"model {wanted}, which does not ship with hybridcodec"
        hint = "decode with --model and the model file that coded it"
    raise ModelMismatchError(f"{display_name(src)}: coded with {known}, but {given} is "
                             f"{model_id}: {hint}")


@dataclass
class _DecodeResult:
    header: StreamHeader
    damaged: list[DamagedRegion]
    warnings: list[str]
    md5_ok: bool | None
    bytes_read: int
    notes: list[str] = field(default_factory=list)
    range: tuple[int, int] | None = None


def _stream_metadata(header: StreamHeader, name: str, ignore_errors: bool,
                     warnings: list[str]):
    """The stream's metadata parsed, or None; a malformed blob is corrupt (recovering:
    a warning, and no metadata)."""
    from .metadata import parse_metadata

    if header.metadata is None:
        return None
    try:
        return parse_metadata(header.metadata)
    except CorruptStreamError as exc:
        if not ignore_errors:
            raise CorruptStreamError(f"{name}: {exc}") from None
        warnings.append(f"{str(exc).replace('corrupt stream: ', '')}: metadata not restored")
        return None


#: A lower tier's fill (:class:`~hybridcodec.perceptual.fill.EnvelopeFill`) carries state
#: across frames: its overlap-add, and level corrections that analyse the output around
#: each slot, the slot before included. It processes a frame's slots in one batch (all
#: but the last, which waits for the next frame's samples), and within a batch a slot's
#: output depends on the batch's past only through its first two slots, so with at
#: least FILL_EXACT_SLOTS slots per frame (every shipped model: 256 at 44.1 kHz) a fill
#: started one frame early gives the whole decode's output bit for bit from the next
#: frame on. With fewer (models with tiny frames) every slot is a batch of its own and
#: the dependence is a chain that decays (about 50x every two hops, down to float
#: rounding, 1e-12 of a sample): the fill then starts FILL_WARMUP_HOPS hops early.
FILL_EXACT_SLOTS = 8
FILL_WARMUP_HOPS = 64


class _StreamDecoder:
    """One stream decoded frame by frame: the loop behind :func:`decode_file`,
    :func:`verify_file` and :func:`hybridcodec.api.open_stream`.

    Construction reads the header, checks the model and parses the stream's metadata
    (:attr:`metadata`; errors raise there); :meth:`blocks` yields each frame's PCM as
    int32 ``(n, channels)``; :meth:`finish`, after the last block, checks the MD5.
    Strict (``ignore_errors`` false): the first problem raises. Otherwise a frame that
    cannot be decoded (container damage, payload CRC, codec error, samples out of range)
    becomes silence and is listed, and the rest is decoded (docs/format.md, "Recovery").
    """

    def __init__(self, fp: BinaryIO, name: str, *, model: str | None, ignore_errors: bool,
                 jobs: int, fill: str = "sample", seed: int = 0) -> None:
        from .framecodec import layer_count  # the coder (numba) only where it codes
        from .model import bundled_model_path, load_model

        self.name = name
        self.stream = stream = StreamReader(fp, recover=ignore_errors)
        self.header = header = stream.header
        net, model_id = load_model(model)
        if model is None and header.model_id != model_id:
            earlier = bundled_model_path(header.model_id)  # written by an earlier release
            if earlier is not None:
                model = earlier
                net, model_id = load_model(model)
        check_model(header, model_id, model, name)
        full = layer_count(net)
        expected_segment = net.config.segment_length if net.config.payload == 4 else \
            net.config.frame_length
        if header.levels != net.config.levels or \
                header.frame_length != net.config.frame_length \
                or header.num_layers > full or (header.version >= 4 and header.num_layers != full) \
                or (header.version >= 4 and header.segment_length != expected_segment):
            raise CorruptStreamError(f"{name}: header disagrees with its model")
        self.lossless = header.complete if header.version >= 4 else header.num_layers == full
        self.info = AudioInfo(header.sample_rate, header.channels, header.num_samples,
                              header.bits_per_sample, header.subtype, header.source_format)
        self._meta_warnings: list[str] = []
        #: the stream's metadata, parsed (None: it has none)
        self.metadata = _stream_metadata(header, name, ignore_errors, self._meta_warnings)
        self.damaged: list[DamagedRegion] = []
        self.warnings: list[str] = []
        self.md5_ok: bool | None = None
        self.done = 0  # samples (per channel) yielded
        #: the samples [start, stop) that blocks() decodes, and whether that is less than
        #: the whole stream (then the MD5 cannot be checked)
        self.range = (0, header.num_samples)
        self.partial = False
        self._used = False  # blocks() has read frames: another call seeks first
        self._net, self._model, self._jobs = net, model, jobs
        self._ignore_errors, self._fill, self._seed = ignore_errors, fill, seed
        self._md5 = hashlib.md5()

    def blocks(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Each frame's PCM, in order; damaged frames as silence (``ignore_errors``).

        ``start`` / ``stop``: only the samples ``[start, stop)`` (checked by the caller:
        ``0 <= start < stop <= num_samples``, or the whole stream), sample-exactly those
        of the whole decode. The reader seeks to the frame that holds ``start``
        (:meth:`StreamReader.seek_frame`: the index of format 4, else frame headers
        walked; a pipe reads forward), and decoding stops once ``stop`` is reached; the
        first and last blocks are cut to the range. A lower tier's fill runs across frame
        boundaries, so it starts a frame earlier (:data:`FILL_EXACT_SLOTS`) and runs over
        that frame, whose output is dropped: from the frame that holds ``start`` on it
        carries the state it has in the whole decode (tests/test_seek.py compares). A
        partial range cannot be checked against the stream's MD5 (:attr:`md5_ok` stays
        None; nor is the end chunk read when the range stops short of it); every frame's
        CRC still is.
        """
        header = self.header
        total = header.num_samples
        stop = total if stop is None else stop
        self.range = (start, stop)
        self.partial = (start, stop) != (0, total)
        frame_length = header.frame_length
        first = start // frame_length if start < total else header.num_frames
        if first and self._fill_active():
            first = max(first - self._fill_warmup(), 0)
        if first or self._used:
            try:
                self.stream.seek_frame(first)
            except ValueError as exc:  # a pipe that has been read past the frame
                raise UsageError(f"{self.name}: {exc}") from None
        self._used = True
        self.done = 0
        self.damaged = []
        self._md5 = hashlib.md5()
        pos = first * frame_length  # stream sample of the next block's first sample
        blocks = self._blocks(first)
        try:
            for pcm in blocks:
                n = pcm.shape[0]
                lo, hi = max(start - pos, 0), min(stop - pos, n)
                pos += n
                if hi > lo:
                    out = pcm if (lo, hi) == (0, n) else pcm[lo:hi]
                    self.done += out.shape[0]
                    yield out
                if pos >= stop and self.partial:
                    break
        finally:
            blocks.close()
            self.warnings = list(self.stream.problems) + self._meta_warnings

    def _fill_warmup(self) -> int:
        """Frames the fill runs over before the frame a seek starts in (see
        :data:`FILL_EXACT_SLOTS`)."""
        hop = self._net.envelope_grid(self.header.sample_rate).hop
        length = self.header.frame_length
        if length // hop >= FILL_EXACT_SLOTS:
            return 1
        return -(-FILL_WARMUP_HOPS * hop // length)

    def _fill_active(self) -> bool:
        """Whether the decode runs a lower tier through the envelope fill (whose state
        carries across frames): not at a sample rate whose envelope grid has no band
        (near 1 MHz), where it would have nothing to fill."""
        return self._net.config.payload == 4 and not self.lossless and \
            self._fill != "zero" and self._net.envelope_grid(self.header.sample_rate).num_bands > 0

    def _blocks(self, first: int) -> Iterator[np.ndarray]:
        """The decoded PCM from frame ``first`` on, in order (the fill's output comes in
        pieces that do not follow frame boundaries)."""
        from .parallel import frame_runner

        header, name, stream = self.header, self.name, self.stream
        lo, hi = -(1 << (header.bits_per_sample - 1)), 1 << (header.bits_per_sample - 1)
        check_md5 = not self.partial

        def tasks():
            for item in stream.frames():
                cancel.checkpoint()
                if isinstance(item, DamagedFrame):
                    yield "pass", item
                    continue
                where = f"{name}: frame {item.index}"
                if segmented:
                    yield ("decode4", units_for_decoder(header, item), item.num_samples,
                           header.channels, header.sample_rate, where,
                           {"bits": header.bits_per_sample, "fill": self._fill,
                            "seed": self._seed, "frame_index": item.index,
                            "last": item.index == header.num_frames - 1,
                            "structure": self._fill == "mean"})
                    continue
                try:
                    layers, carried = layers_from_frame(header, item, where)
                except CorruptStreamError as exc:
                    if not self._ignore_errors:
                        raise
                    yield "pass", DamagedFrame(item.index, item.num_samples,
                                               str(exc).replace(f"{where}: ", ""))
                    continue
                yield ("decode", layers, item.num_samples, header.channels, where,
                       {"carried": carried, "bits": header.bits_per_sample,
                        "fill": self._fill, "seed": self._seed, "frame_index": item.index})

        def damage(index: int, n: int, reason: str) -> np.ndarray:
            first = index * header.frame_length
            self.damaged.append(DamagedRegion(index, first, first + n, reason))
            return np.zeros((n, header.channels), np.int64)

        segmented = self._net.config.payload == 4
        # A lower tier of the format 4 payload goes through the envelope fill, which lags
        # its input by two hops and runs across frame boundaries (no seam).
        # fill modes: sample = noise at the coded energies, replacing what the synthesis
        # leaves in an absent band (leakage, and images of the octave below, which are
        # tonal where that octave is); mean = the prior's mean only, levelled
        # (deterministic); zero = absent bands silent.
        fill = None
        if self._fill_active():
            from .perceptual.fill import EnvelopeFill

            rate = header.sample_rate
            fill = EnvelopeFill(self._net.envelope_grid(rate), self._net.envelope_coder(rate),
                                header.channels, header.num_samples, self._seed,
                                start=first * header.frame_length,
                                shape=self._fill == "mean", noise=self._fill == "sample")
        with frame_runner(self._jobs, self._net, self._model) as runner:
            index = first
            for result in runner.run(tasks()):
                n = header.frame_num_samples(index)
                where = f"{name}: frame {index}"
                if segmented and not isinstance(result, (DamagedFrame, HybridCodecError)):
                    if fill is not None:
                        out = fill.push(result.pcm.astype(np.float64), result.envelope,
                                        result.coded, index,
                                        (result.head_exact, result.exact))
                        index += 1
                        if out.size:
                            yield np.clip(np.rint(out), lo, hi - 1).astype(np.int32)
                        continue
                    result = result.pcm
                if isinstance(result, DamagedFrame):
                    pcm = damage(index, n, result.reason)
                elif isinstance(result, HybridCodecError):
                    if not self._ignore_errors:
                        raise result
                    pcm = damage(index, n, str(result).replace(f"{where}: ", "").replace(
                        f"{where} ", ""))
                elif result.size and (result.min() < lo or result.max() >= hi):
                    if not self._ignore_errors:
                        raise CorruptStreamError(f"{where}: decoded samples out of range")
                    pcm = damage(index, n, "decoded samples out of range")
                else:
                    pcm = result
                if fill is not None:  # a damaged frame of a lower tier: silence, no fill
                    grid = self._net.envelope_grid(header.sample_rate)
                    slots = self._frame_slots(index, n)
                    out = fill.push(pcm.astype(np.float64),
                                    np.zeros((header.channels, grid.num_bands, slots), np.int64),
                                    np.full((grid.num_bands, slots), 99), index)
                    index += 1
                    if out.size:
                        yield np.clip(np.rint(out), lo, hi - 1).astype(np.int32)
                    continue
                if check_md5:
                    self._md5.update(pcm_bytes(pcm, header.bits_per_sample))
                index += 1
                yield pcm.astype(np.int32)
            if fill is not None:
                out = fill.finish()
                if out.size:
                    yield np.clip(np.rint(out), lo, hi - 1).astype(np.int32)

    def _frame_slots(self, index: int, n: int) -> int:
        from .segmented import frame_slots

        return frame_slots(self._net, self.header.sample_rate, n,
                           index == self.header.num_frames - 1)

    def finish(self) -> None:
        """After the last block: compare the MD5 (lossless streams, whole range), set
        :attr:`md5_ok`."""
        footer = self.stream.footer
        if footer is None or not self.lossless or self.partial:
            self.md5_ok = None  # a lower tier cannot reproduce the original PCM
            return
        self.md5_ok = self._md5.digest() == footer.md5
        if not self.md5_ok:
            if not self._ignore_errors:
                raise CorruptStreamError(f"{self.name}: MD5 mismatch, decoded audio is wrong")
            if self.damaged:
                n = len(self.damaged)
                self.warnings.append(f"MD5 mismatch, as expected with {n} damaged "
                                     f"frame{'s' if n != 1 else ''}")
            else:
                self.warnings.append("MD5 mismatch, decoded audio is wrong")


def _decode_stream(fp: BinaryIO, name: str, *, model: str | None, progress: Progress | None,
                   ignore_errors: bool, jobs: int, open_sink, fill: str = "sample",
                   seed: int = 0, skip=None, until=None) -> _DecodeResult:
    """Decode a stream frame by frame, handing PCM blocks to
    ``open_sink(info, metadata)``'s writer (``metadata``: the stream's, parsed, or None;
    see :class:`_StreamDecoder`). ``skip`` / ``until``: only that range
    (:func:`hybridcodec.timecode.resolve`), checked before the sink is opened."""
    from .timecode import resolve

    decoder = _StreamDecoder(fp, name, model=model, ignore_errors=ignore_errors, jobs=jobs,
                             fill=fill, seed=seed)
    header = decoder.header
    start, stop = resolve(skip, until, header.num_samples, header.sample_rate)
    info = decoder.info
    if (start, stop) != (0, header.num_samples):
        info = dataclasses.replace(info, num_samples=stop - start)
    with open_sink(info, decoder.metadata) as out, \
            contextlib.closing(decoder.blocks(start, stop)) as blocks:
        for pcm in blocks:
            if out is not None:
                out.write(pcm)
            if progress:
                progress(decoder.done, stop - start)
        warnings = decoder.warnings
        if decoder.stream.missing_from is not None and out is not None:
            # the output ends early; a WAV on a pipe keeps the longer length it declared
            if hasattr(out, "allow_short"):
                out.allow_short = True
                warnings.append(f"the WAV header written to {display_name(out.path)} declares "
                                f"{info.num_samples} samples, {decoder.done} were written")
        decoder.finish()
    notes = list(getattr(out, "notes", None) or [])
    return _DecodeResult(header, decoder.damaged, decoder.warnings, decoder.md5_ok,
                         decoder.stream.bytes_read, notes, decoder.range if decoder.partial
                         else None)


@single_threaded
def decode_file(src: str | os.PathLike | BinaryIO, dst: str | os.PathLike | BinaryIO, *,
                model: str | None = None, overwrite: bool = False,
                progress: Progress | None = None, ignore_errors: bool = False,
                jobs: int = 1, fill: str = "sample", seed: int = 0,
                metadata: bool = True, skip: int | str | None = None,
                until: int | str | None = None) -> CodingReport:
    """Decode a .hyb stream to WAV/FLAC/AIFF (by ``dst``'s extension), verifying its MD5.

    A lower-tier stream decodes to full-band audio: what its dropped layers carried is
    filled per ``fill`` (``sample``: drawn from the priors, reproducible with ``seed``;
    ``mean``: the priors' medians; ``zero``: absent bands silent); no MD5 check then.

    ``src`` and ``dst`` are paths or binary file objects; a file object output gets WAV,
    written front to back (:class:`~hybridcodec.audio_io.WavStreamWriter`). With
    ``ignore_errors`` a damaged frame is written as silence and decoding goes on (the
    report lists the frames and warnings; the output is kept); without it the first
    problem raises and no output is left. ``jobs`` as for :func:`encode_file`.

    ``metadata``: write the metadata stored with the stream into the output, all of it
    when the output has the source's container type, else what maps (``report.notes``
    names what could not be carried).

    ``skip`` / ``until``: decode only the samples ``[skip, until)``, exactly as they are
    in the whole decode (lower tiers included), seeking to the frame that holds
    ``skip``: ints are sample numbers (per channel), a negative ``until`` counts from the
    end; strings take the command line's ``--skip`` / ``--until`` syntax (``"1:30"``,
    ``"0:12.5"``, ``"441000"``, ``"-0:10"`` from the end, ``"+0:10"`` after ``skip``;
    :mod:`hybridcodec.timecode`). A range outside the stream or an empty one is a
    :class:`~hybridcodec.errors.UsageError` before anything is written. A partial decode
    cannot check the stream's MD5: ``report.md5_ok`` is None (each frame's CRC is still
    checked) and ``report.range`` holds the range.
    """
    start = time.perf_counter()
    jobs = _check_jobs(jobs)
    name = display_name(src)
    target = _Counting(dst) if is_file_object(dst) else dst

    def sink(info, meta):
        return open_audio_writer(target, info, overwrite=overwrite,
                                 metadata=meta if metadata else None)

    with _open_stream(src) as fp:
        result = _decode_stream(
            fp, name, model=model, progress=progress, ignore_errors=ignore_errors, jobs=jobs,
            open_sink=sink, fill=_check_fill(fill), seed=_check_seed(seed), skip=skip,
            until=until)
    h = result.header
    input_bytes = _size(src) if not is_file_object(src) else result.bytes_read
    output_bytes = target.count if is_file_object(dst) else os.path.getsize(dst)
    return CodingReport(input_bytes, output_bytes, h.num_samples, h.sample_rate, h.channels,
                        time.perf_counter() - start, result.damaged, result.warnings,
                        result.md5_ok, result.notes, h.bits_per_sample, result.range)


@single_threaded
def verify_file(src: str | os.PathLike | BinaryIO, *, model: str | None = None,
                progress: Progress | None = None, ignore_errors: bool = False,
                jobs: int = 1) -> VerifyReport:
    """Check a stream completely without writing audio: every CRC, every frame decoded,
    the MD5 compared. Strict: the first problem raises (as :func:`decode_file` would).
    With ``ignore_errors`` it reads on past damaged frames and returns a report listing
    all of them (``report.ok`` is then False)."""
    start = time.perf_counter()
    jobs = _check_jobs(jobs)
    name = display_name(src)
    with _open_stream(src) as fp:
        result = _decode_stream(fp, name, model=model, progress=progress,
                                ignore_errors=ignore_errors, jobs=jobs,
                                open_sink=lambda info, meta: contextlib.nullcontext(None))
    h = result.header
    return VerifyReport(name, h.num_samples, h.sample_rate, h.channels, h.num_frames,
                        result.bytes_read, time.perf_counter() - start, result.damaged,
                        result.warnings, result.md5_ok, lower_tier=not h.complete)


def describe_stream(src: str | os.PathLike) -> str:
    """Human-readable stream info, layer table and sizes (``hybridcodec info``)."""
    with _open_stream(src) as fp:
        layout = read_stream_layout(fp)
    src = display_name(src)
    h = layout.header
    seconds = h.num_samples / h.sample_rate
    pcm = h.num_samples * h.channels * (-(-h.bits_per_sample // 8))
    v4 = h.version >= 4
    carried = layout.layers_carried if v4 else h.num_layers
    if layout.compact:
        chunks = "compact (the whole stream in one chunk)"
    else:
        chunks = (f"header, {'metadata, ' if layout.metadata_bytes else ''}"
                  f"{layout.num_frames} frame chunk{'s' if layout.num_frames != 1 else ''}, "
                  f"{'index, ' if layout.index_bytes else ''}end chunk")
    lines = [
        f"{os.fspath(src)}:",
        f"  format      hybridcodec stream, tier {h.tier}",
        f"  container   format {h.version}, {chunks}",
        f"  audio       {h.sample_rate} Hz, {h.channels} ch, {h.bits_per_sample}-bit "
        f"({h.subtype}, from {h.source_format}), {h.num_samples} samples, {seconds:.2f} s",
        f"  model       {h.model_id}, {h.levels} levels, {carried} layers carried",
        f"  frames      {layout.num_frames} x {h.frame_length} samples",
    ]
    if v4:
        per_frame = h.frame_length // h.segment_length
        kinds = [f"{n} {what}" for n, what in ((layout.cuttable_units, "cuttable"),
                                               (layout.truncated_units, "truncated"),
                                               (layout.multi_layer_units, "multi-layer")) if n]
        lines.append(
            f"  units       {layout.units}"
            + (f" ({layout.units / layout.num_frames:.1f} per frame)" if layout.num_frames
               else "")
            + (f": {', '.join(kinds)}" if kinds else "")
            + f"; segments of {h.segment_length} samples, {per_frame} per frame")
    lines += [
        f"  md5         {layout.footer.md5.hex()}",
        f"  size        {layout.total_bytes} bytes"
        + (f", {100 * layout.total_bytes / pcm:.1f} % of PCM, "
           f"{8 * layout.total_bytes / seconds / 1000:.1f} kbit/s" if pcm else ""),
    ]
    if h.metadata is not None:
        from .metadata import describe_metadata, parse_metadata

        try:
            meta = parse_metadata(h.metadata)
        except CorruptStreamError as exc:
            raise CorruptStreamError(f"{src}: {exc}") from None
        first, *rest = describe_metadata(meta)
        lines.append(f"  metadata    {first}")
        lines += [f"    {line}" for line in rest]
    lines.append("  layers:" + ("  (a unit of several layers counts under its first)"
                                if layout.multi_layer_units else ""))
    groups = layer_groups(h)
    order = layer_order(h.levels, groups)
    names = [layer_name(*order[layer_id], h.levels, groups) for layer_id in range(carried)]
    overhead = "container overhead"
    width = max([len(overhead), *map(len, names)])  # one column for every row
    for layer_id, name in enumerate(names):
        nbytes = layout.layer_bytes.get(layer_id, 0)
        lines.append(f"    {layer_id:2d}  {name:<{width}s} {nbytes:10d} bytes "
                     f"({100 * nbytes / max(layout.total_bytes, 1):5.1f} %)")
    if layout.metadata_bytes:
        lines.append(f"    --  {'metadata chunk':<{width}s} {layout.metadata_bytes:10d} bytes")
    lines.append(f"    --  {overhead:<{width}s} "
                 f"{layout.overhead_bytes - layout.metadata_bytes:10d} bytes")
    return "\n".join(lines)


def decoded_suffix(src: str | os.PathLike) -> str:
    """The default output extension for decoding ``src``: ``.flac`` if it was coded from
    FLAC, else ``.wav``. Only the header chunk is read (a damaged metadata chunk is the
    decoder's to report)."""
    with _open_stream(src) as fp:
        source_format = StreamReader(fp, recover=True).header.source_format
    return ".flac" if str(source_format).upper() == "FLAC" else ".wav"
