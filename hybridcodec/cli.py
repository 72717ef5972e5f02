"""The ``hybridcodec`` command line: ``encode``, ``decode``, ``verify``, ``info`` and
``truncate`` (cut a stream down to a lower tier).

Options may come anywhere among the paths, as flac and sox take them. Every input file is
processed on its own: an error on one prints ``hybridcodec: <file>: <message>`` on one
line to stderr and the run goes on with the next; the exit status is the ``exit_code`` of
the first error (0 when all succeeded). Usage errors exit with 2, SIGINT with 130 and
SIGTERM with 143 at any point, start-up included (outputs are written atomically, so an
interrupted run leaves no partial file), a damaged stream decoded with
``--ignore-errors`` with 6, a closed standard output (``| head``) with 141 and no message,
and anything unexpected prints one ``internal error`` line and exits with 70
(``HYBRIDCODEC_DEBUG=1`` adds the traceback). ``-`` as a path means standard input /
output.

The codec itself is imported lazily (it pulls in numba), through the small wrappers
:func:`encode_file`, :func:`decode_file`, :func:`verify_file`, :func:`describe_stream`
and :func:`decoded_suffix`, which tests may replace.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence, TextIO

from .errors import HybridCodecError, InputFileError, OutputWriteError, UsageError

PROG = "hybridcodec"
STREAM_SUFFIX = ".hyb"
EXIT_OK = 0
EXIT_USAGE = UsageError.exit_code
EXIT_DAMAGED = 4  # verify: the stream is damaged
EXIT_DAMAGED_OUTPUT = 6  # decode --ignore-errors: damaged frames written as silence
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # SIGTERM
EXIT_BROKEN_PIPE = 141  # standard output closed early (`| head`): 128 + SIGPIPE, as `cat`
STDIO = "-"

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------- codec calls
# Thin wrappers so the CLI imports the codec (and numba) only when it needs it, and so
# tests can monkeypatch them.


def _codec():
    from . import codec

    return codec


def encode_file(src: str, dst: str, **kwargs):
    """``hybridcodec.codec.encode_file``."""
    return _codec().encode_file(src, dst, **kwargs)


def decode_file(src: str, dst: str, **kwargs):
    """``hybridcodec.codec.decode_file``."""
    return _codec().decode_file(src, dst, **kwargs)


def verify_file(src, **kwargs):
    """``hybridcodec.codec.verify_file``."""
    return _codec().verify_file(src, **kwargs)


def describe_stream(src) -> str:
    """``hybridcodec.codec.describe_stream``."""
    return _codec().describe_stream(src)


def truncate_file(src: str, dst: str, **kwargs):
    """``hybridcodec.truncation.truncate_file``."""
    from . import truncation

    return truncation.truncate_file(src, dst, **kwargs)


def decoded_suffix(src: str) -> str:
    """Default extension for decoding ``src``: ``.flac`` if it was coded from FLAC, else ``.wav``."""
    codec = _codec()
    own = getattr(codec, "decoded_suffix", None)
    if own is not None:
        return own(src)
    from .container import StreamReader

    with open(src, "rb") as fp:
        source_format = StreamReader(fp).header.source_format
    return ".flac" if str(source_format).upper() == "FLAC" else ".wav"


# --------------------------------------------------------------------------- messages


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _message(src: str | None, text: str) -> str:
    """``hybridcodec: <src>: <text>`` without repeating a file name the text already starts with."""
    text = _one_line(text)
    if src is None:
        return f"{PROG}: {text}"
    if text.startswith(f"{src}:"):
        return f"{PROG}: {text}"
    return f"{PROG}: {src}: {text}"


def _os_error_text(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    name = exc.filename
    if name is not None:
        return f"{os.fspath(name)}: {reason}"
    return reason


#: What an error without a message says, by exit code (never a Python class name).
_GENERIC_ERRORS = {1: "codec error", 2: "usage error", 3: "unreadable or unsupported audio",
                   4: "corrupt or truncated stream", 5: "model problem"}


def _internal_error_text(exc: BaseException) -> str:
    detail = _one_line(str(exc))
    return (f"internal error{': ' + detail if detail else ''} (a bug: please report it; "
            "HYBRIDCODEC_DEBUG=1 adds the traceback)")


def _fmt_size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} MB"
    if n >= 1_000:
        return f"{n / 1e3:.1f} kB"
    return f"{n} B"


def pcm_size(num_samples: int, channels: int, bits_per_sample: int) -> int:
    """Bytes of the raw PCM (whole bytes per sample), what ``info``'s "% of PCM" divides by."""
    return num_samples * channels * (-(-bits_per_sample // 8))


def _of_pcm(stream_bytes: int, report) -> str:
    pcm = pcm_size(report.num_samples, report.channels, getattr(report, "bits_per_sample", 0))
    return f"{100.0 * stream_bytes / pcm:.1f} % of PCM" if pcm > 0 else "n/a % of PCM"


def summary_line(src: str, dst: str, report, verb: str = "encode") -> str:
    """``a.flac -> a.hyb: 1.23 MB -> 0.51 MB (41.2 % of PCM), 25.3x realtime``.

    The percentage is always the stream's size against the raw PCM, as ``info`` gives
    it, so it stands beside the stream's size: after the output for ``encode``, after the
    input for ``decode`` (``a.hyb -> a.wav: 0.51 MB (41.2 % of PCM) -> 1.23 MB, ...``)."""
    src = "<stdin>" if src == STDIO else src
    dst = "<stdout>" if dst == STDIO else dst
    span = getattr(report, "range", None)
    done = span[1] - span[0] if span else report.num_samples
    audio_s = done / report.sample_rate if report.sample_rate > 0 else 0.0
    if report.seconds > 0:
        speed = f"{audio_s / report.seconds:.1f}x realtime"
    else:
        speed = "instant"
    before, after = _fmt_size(report.input_bytes), _fmt_size(report.output_bytes)
    if verb == "decode":
        if span and src == "<stdin>":  # read only as far as the range: size unknown
            before += " read"
        else:
            before += f" ({_of_pcm(report.input_bytes, report)})"
        if span:
            after += f" (samples {span[0]}..{span[1] - 1})"
    else:
        after += f" ({_of_pcm(report.output_bytes, report)})"
    return f"{src} -> {dst}: {before} -> {after}, {speed}"


class ProgressLine:
    """A plain ``\\r`` progress line on a terminal, fed by ``progress(done, total)``."""

    WIDTH = 24

    def __init__(self, label: str, stream: TextIO, min_interval: float = 0.1) -> None:
        self.label = label
        self.stream = stream
        self.min_interval = min_interval
        self._last = 0.0
        self._shown = False
        self._last_len = 0
        self.columns = max(20, shutil.get_terminal_size((80, 24)).columns)

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < self.min_interval:
            return
        self._last = now
        frac = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
        filled = int(round(frac * self.WIDTH))
        text = f"{self.label} [{'#' * filled}{'-' * (self.WIDTH - filled)}] {100 * frac:3.0f} %"
        room = self.columns - 1
        if len(text) > room:  # a wrapped line would break the \r redraw
            text = "..." + text[len(text) - room + 3 :] if room > 3 else text[-room:]
        pad = " " * max(0, self._last_len - len(text))
        self._last_len = len(text)
        try:
            self.stream.write("\r" + text + pad)
            self.stream.flush()
        except (OSError, ValueError):
            return
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            try:
                self.stream.write("\r" + " " * self._last_len + "\r")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self._shown = False


# --------------------------------------------------------------------------- paths


def _same_file(a: str, b: str) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _check_input(src: str, verb: str) -> None:
    """Clear errors for a missing input or a directory, before anything else."""
    if src == STDIO:
        return
    if verb == "encode":
        # the same wording the audio reader uses (exit 3)
        from .audio_io import _precheck_path

        _precheck_path(src)
        return
    if not os.path.exists(src):
        raise InputFileError(f"{src}: cannot open: no such file")
    if os.path.isdir(src):
        raise InputFileError(f"{src}: is a directory")
    if not os.access(src, os.R_OK):
        raise InputFileError(f"{src}: cannot open: permission denied")


def _output_path(src: str, args: argparse.Namespace, suffix: Callable[[], str]) -> str:
    if args.output is not None:
        return args.output
    if src == STDIO:
        return STDIO  # a filter: standard input to standard output
    name = Path(src).with_suffix(suffix()).name if Path(src).suffix else Path(src).name + suffix()
    if args.outdir is not None:
        return os.path.join(args.outdir, name)
    return os.path.join(os.path.dirname(src), name)


_AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff")


def _is_output_name(verb: str, path: str) -> bool:
    """Whether ``path`` has the suffix of what ``verb`` writes (.hyb, or a PCM format)."""
    suffix = Path(path).suffix.lower()
    return suffix == STREAM_SUFFIX if verb == "encode" else suffix in _AUDIO_SUFFIXES


def _is_stream(path: str) -> bool:
    """Whether ``path`` starts like a .hyb stream (unreadable: assume it does, so the
    file's own turn reports why it cannot be read)."""
    from .container import MAGIC

    try:
        with open(path, "rb") as fp:
            return fp.read(len(MAGIC)) == MAGIC
    except OSError:
        return True


def _not_an_input(verb: str, path: str) -> str | None:
    """Why ``path``, the second of two paths, cannot be an input of ``verb`` (None if it can).

    Such a path was meant as the output, with a suffix that does not say so: coding the
    first input and only then failing on it would write an output nobody asked for
    (``encode rain.flac x.wav`` writing rain.hyb). A missing ``.hyb`` given to ``decode``
    stays an input: that is a missing stream, reported in its turn."""
    wanted = (f"the {STREAM_SUFFIX} suffix" if verb == "encode"
              else ", ".join(_AUDIO_SUFFIXES[:-1]) + f" or {_AUDIO_SUFFIXES[-1]}")
    if os.path.isdir(path):
        return f"{path} is a directory (to write into it, use --outdir {path})"
    if not os.path.lexists(path):
        if verb == "decode" and Path(path).suffix.lower() == STREAM_SUFFIX:
            return None
        return (f"{path} does not exist, so it is not an input, and as the output it "
                f"would need {wanted}")
    if verb == "decode" and Path(path).suffix.lower() != STREAM_SUFFIX and not _is_stream(path):
        return (f"{path} is not a {STREAM_SUFFIX} stream, so it is not an input, and as the "
                f"output it would need {wanted}")
    return None


def _make_folder(folder: str, option: str) -> None:
    """Create the folder outputs go into: ``--outdir DIR`` (``option`` "--outdir DIR"), or
    the parent of ``-o OUT`` (``option`` "-o OUT")."""
    what = "it" if option.startswith("--outdir") else f"its folder {folder}"
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"{option}: {'' if what == 'it' else what + ' is '}not a directory")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option}: cannot create {what}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- the run


class _Run:
    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO,
                 stdin_bytes=None, stdout_bytes=None) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self._stdin_bytes = stdin_bytes
        self._stdout_bytes = stdout_bytes
        self.data_on_stdout = False  # then summaries go to stderr
        self.exit_code = EXIT_OK
        self.debug = os.environ.get("HYBRIDCODEC_DEBUG", "") not in ("", "0")
        self.progress: ProgressLine | None = None
        self.printed_info = False
        self.outputs: dict[str, str] = {}  # realpath of an output -> input that claimed it
        self.working = False  # see start_work

    # -- reporting

    def fail(self, src: str | None, exc: BaseException) -> None:
        self.clear_progress()
        if self.debug:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=self.stderr)
        if isinstance(exc, HybridCodecError):
            text, code = str(exc) or _GENERIC_ERRORS.get(exc.exit_code, "error"), exc.exit_code
        elif isinstance(exc, OSError):
            text, code = _os_error_text(exc), 1
        else:
            text, code = _internal_error_text(exc), EXIT_INTERNAL
        print(_message(src, text), file=self.stderr, flush=True)
        if self.exit_code == EXIT_OK:
            self.exit_code = code

    def clear_progress(self) -> None:
        if self.progress is not None:
            self.progress.clear()
            self.progress = None

    def make_progress(self, label: str) -> ProgressFn | None:
        if getattr(self.args, "quiet", False):
            return None
        try:
            tty = self.stderr.isatty()
        except (AttributeError, ValueError):
            tty = False
        if not tty:
            return None
        self.progress = ProgressLine(os.path.basename(label) or label, self.stderr)
        return self.progress

    def say(self, text: str) -> None:
        if not getattr(self.args, "quiet", False):
            print(text, file=self.stderr if self.data_on_stdout else self.stdout, flush=True)

    def warn(self, src: str, text: str) -> None:
        self.clear_progress()
        print(_message(src, f"warning: {text}"), file=self.stderr, flush=True)

    def note_code(self, code: int) -> None:
        if self.exit_code == EXIT_OK:
            self.exit_code = code

    def stdin_bytes(self):
        if self._stdin_bytes is None:
            self._stdin_bytes = sys.stdin.buffer
        return self._stdin_bytes

    def stdout_bytes(self):
        if self._stdout_bytes is None:
            if sys.stdout.isatty():
                raise UsageError("refusing to write binary data to a terminal "
                                 "(redirect standard output, or give -o FILE)")
            self._stdout_bytes = sys.stdout.buffer
        from .atomic import GuardedFile

        # A failed write (a full disk behind `> file`) says `cannot write <stdout>: ...`;
        # a closed pipe stays a BrokenPipeError, the quiet end of the run.
        return GuardedFile(self._stdout_bytes, "<stdout>")

    def codec_kwargs(self) -> dict:
        """Options passed on only when not at their default (keeps the wrappers simple)."""
        kw = {}
        if getattr(self.args, "jobs", 1) != 1:
            kw["jobs"] = self.args.jobs
        if getattr(self.args, "ignore_errors", False):
            kw["ignore_errors"] = True
        # encode --tier/--kbps, decode --fill/--seed/--skip/--until
        for name in ("tier", "kbps", "fill", "seed", "skip", "until"):
            if getattr(self.args, name, None) is not None:
                kw[name] = getattr(self.args, name)
        if getattr(self.args, "no_metadata", False):
            kw["metadata"] = False
        if getattr(self.args, "strict", False):
            kw["strict"] = True
        return kw

    def start_work(self) -> None:
        """Called before the first output, temporary file or worker process can exist:
        load the codec while a signal still ends the process at once (start-up), then
        make signals unwind through the cleanup instead."""
        if not self.working:
            _load_codec(self.args.verb)
            _install_signal_handlers()
            self.working = True

    # -- verbs

    def claim_output(self, src: str, dst: str) -> None:
        if dst == STDIO:
            if STDIO in self.outputs:
                raise UsageError("standard output is already the output for another input")
            self.outputs[STDIO] = src
            return
        if src != STDIO and _same_file(src, dst):
            raise UsageError(f"output {dst} is the input file itself")
        key = os.path.realpath(dst)
        other = self.outputs.get(key)
        if other is not None:
            raise UsageError(f"{dst} is already the output for {other} in this run")
        self.outputs[key] = src

    def code_one(self, src: str) -> None:
        from .atomic import check_output_path

        args = self.args
        verb = args.verb
        _check_input(src, verb)
        if verb == "encode":
            dst = _output_path(src, args, lambda: STREAM_SUFFIX)
        else:
            dst = _output_path(src, args, lambda: decoded_suffix(src))
            if dst != STDIO:
                from .audio_io import output_format_for

                output_format_for(dst)  # a bad extension fails before decoding
        self.claim_output(src, dst)
        if dst != STDIO:
            check_output_path(dst, overwrite=args.force)  # before any work
        func = encode_file if verb == "encode" else decode_file
        self.start_work()
        report = func(
            self.stdin_bytes() if src == STDIO else src,
            self.stdout_bytes() if dst == STDIO else dst,
            model=args.model,
            overwrite=args.force,
            progress=self.make_progress(src),
            **self.codec_kwargs(),
        )
        self.clear_progress()
        for region in getattr(report, "damaged", None) or []:
            self.warn(src, f"{region} (written as silence)")
        for text in getattr(report, "warnings", None) or []:
            self.warn(src, text)
        for text in getattr(report, "notes", None) or []:  # not damage: exit status unchanged
            self.warn(src, text)
        self.say(summary_line(src, dst, report, verb))
        if getattr(report, "damaged", None) or getattr(report, "warnings", None):
            self.note_code(EXIT_DAMAGED_OUTPUT)

    def verify_one(self, src: str) -> None:
        _check_input(src, "verify")
        self.start_work()
        report = verify_file(
            self.stdin_bytes() if src == STDIO else src,
            model=self.args.model,
            progress=self.make_progress(src),
            **self.codec_kwargs(),
        )
        self.clear_progress()
        name = "<stdin>" if src == STDIO else src
        for region in report.damaged:
            print(_message(src, f"damaged {region}"), file=self.stderr, flush=True)
        for text in report.warnings:
            print(_message(src, text), file=self.stderr, flush=True)
        seconds = report.num_samples / report.sample_rate if report.sample_rate else 0.0
        what = (f"{report.num_samples} samples ({seconds:.2f} s), {report.num_frames} frames")
        if report.ok:
            check = "MD5 ok" if report.md5_ok else "lower tier, every frame decoded"
            self.say(f"{name}: ok, {what}, {check}")
            return
        md5 = {True: "MD5 ok", False: "MD5 mismatch", None: "MD5 not checked"}[report.md5_ok]
        print(_message(src, f"damaged: {len(report.damaged)} of {report.num_frames} frames "
                            f"bad, {md5}"), file=self.stderr, flush=True)
        self.note_code(EXIT_DAMAGED)

    def truncate_one(self, src: str) -> None:
        args = self.args
        if STDIO in (src, args.output):
            raise UsageError("truncate needs files: it reads its input twice and writes its "
                             "output atomically (standard input/output - cannot be used)")
        _check_input(src, "truncate")
        label = args.tier if args.tier is not None else f"{args.kbps:g}kbps"
        if args.output is not None:
            dst = args.output
        elif args.outdir is not None:
            dst = os.path.join(args.outdir, Path(src).name)
        else:
            dst = os.path.join(os.path.dirname(src), f"{Path(src).stem}.{label}{STREAM_SUFFIX}")
        self.claim_output(src, dst)
        from .atomic import check_output_path

        check_output_path(dst, overwrite=args.force)
        self.start_work()
        report = truncate_file(src, dst, tier=args.tier, kbps=args.kbps, overwrite=args.force)
        seconds = report.num_samples / report.sample_rate if report.sample_rate else 0.0
        rate = 8 * report.output_bytes / seconds / 1000 if seconds > 0 else 0.0
        self.say(f"{src} -> {dst}: {_fmt_size(report.input_bytes)} -> "
                 f"{_fmt_size(report.output_bytes)} ({_of_pcm(report.output_bytes, report)}), "
                 f"tier {report.tier}, "
                 f"{report.layers} layer{'s' if report.layers != 1 else ''}, "
                 f"{rate:.1f} kbit/s")
        if args.kbps is not None and rate > args.kbps:
            self.warn(src, f"the lowest tier ({report.layers} layer"
                           f"{'s' if report.layers != 1 else ''}) is {rate:.1f} kbit/s, "
                           f"above the {args.kbps:g} kbit/s asked")

    def info_one(self, src: str) -> None:
        _check_input(src, "info")
        self.start_work()
        text = describe_stream(self.stdin_bytes() if src == STDIO else src).rstrip("\n")
        if self.printed_info:
            text = "\n" + text  # a blank line between files
        print(text, file=self.stdout, flush=True)
        self.printed_info = True

    def prepare(self) -> None:
        """Check the paths and options as a whole, before any file is touched; then
        create the output folders (``--outdir DIR``, ``-o``'s parent)."""
        args = self.args
        if args.inputs.count(STDIO) > 1:
            raise UsageError("standard input (-) can be read only once")
        if args.verb in ("info", "verify"):
            return
        if args.output is None and args.outdir is None and len(args.inputs) == 2:
            self._second_path_as_output()
        if args.outdir is not None and STDIO in args.inputs:
            raise UsageError("standard input (-) has no name to put in --outdir: use -o OUT")
        self.data_on_stdout = args.output == STDIO or (
            args.output is None and STDIO in args.inputs)
        if args.output is not None and len(args.inputs) != 1:
            raise UsageError(
                f"-o/--output names one output but {len(args.inputs)} inputs were given "
                "(use --outdir DIR for several)"
            )
        if args.outdir is not None:
            _make_folder(args.outdir, f"--outdir {args.outdir}")
        elif args.output not in (None, STDIO) and os.path.dirname(args.output):
            _make_folder(os.path.dirname(args.output), f"-o {args.output}")

    def _second_path_as_output(self) -> None:
        """``VERB IN OUT``: whether the second of two paths is the output (as with -o)."""
        args = self.args
        verb = args.verb
        first, second = args.inputs
        if verb == "truncate":
            args.inputs, args.output = [first], second  # truncate IN OUT
            return
        if (_is_output_name(verb, second) or second == STDIO) and \
                first != STDIO and not _is_output_name(verb, first):
            # `encode IN OUT.hyb` / `decode IN.hyb OUT.wav` / `... IN -`
            args.inputs, args.output = [first], second
        elif first == STDIO and _is_output_name(verb, second):
            args.inputs, args.output = [first], second
        elif second != STDIO:
            problem = _not_an_input(verb, second)
            if problem is not None:
                raise UsageError(problem)

    def run(self) -> int:
        try:
            self.prepare()
        except HybridCodecError as exc:
            self.fail(None, exc)
            return self.exit_code
        one = {"info": self.info_one, "verify": self.verify_one,
               "truncate": self.truncate_one}.get(self.args.verb, self.code_one)
        for src in self.args.inputs:
            try:
                one(src)
            except (KeyboardInterrupt, SystemExit, BrokenPipeError):
                raise  # the whole run stops (BrokenPipeError: quietly, see main)
            except Exception as exc:  # noqa: BLE001 - reported per file, run goes on
                self.fail(src, exc)
        return self.exit_code


# --------------------------------------------------------------------------- parser


def _version() -> str:
    # the package's own attribute: importlib.metadata alone would take a third of --version
    from . import __version__

    return __version__


def _jobs_arg(text: str) -> int:
    from .parallel import MAX_JOBS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_JOBS}, got {value}")
    return value


FILL_CHOICES = ("sample", "mean", "zero")  # hybridcodec.precision.FILL_MODES (no import)
SEED_MAX = (1 << 64) - 1


def _kbps_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive bit rate in kbit/s, got {text}")
    return value


def seed_arg(text: str) -> int:
    """argparse type of ``--seed`` (0 .. 2**64 - 1); the ladder report uses it too."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be 0..2**64-1, got {value}")
    return value


def _position_arg(what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        from .timecode import parse

        try:
            parse(text, what)
        except UsageError as exc:
            message = str(exc)
            prefix = f"{what} {text!r}: "
            raise argparse.ArgumentTypeError(
                message[len(prefix):] if message.startswith(prefix) else message) from None
        return text  # resolved against each stream's rate and length when it is decoded

    return check


_skip_arg = _position_arg("skip")
_until_arg = _position_arg("until")


def _tier_choices() -> list[str]:
    from .tiers import TIERS

    return list(TIERS)


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as ``hybridcodec: ...`` lines (exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{PROG}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Learned lossless/lossy audio codec.",
        epilog=(
            "Options may come before, between or after the paths. "
            "exit codes: 0 ok, 1 codec error or an output that cannot be written (disk "
            "full, I/O error), 2 usage, 3 unreadable/unsupported audio, "
            "4 corrupt/truncated/damaged stream, 5 model problem, 6 damaged stream decoded "
            "with --ignore-errors (output written, damaged frames silent), 70 internal "
            "error, 130 interrupted (SIGINT), 141 standard output closed (a pipe into "
            "head: no message), 143 terminated (SIGTERM). "
            "'-' as a path: standard input / output."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="verb",
                                metavar="{encode,decode,verify,info,truncate}",
                                parser_class=_Parser)
    sub.required = True
    parser.verbs = sub.choices  # verb -> its parser, for parse_args

    def jobs_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-j", "--jobs", metavar="N", type=_jobs_arg, default=1,
            help="code frames in N worker processes (0: one per CPU; default 1); "
            "the output is the same for every N",
        )

    def ignore_errors_option(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--ignore-errors", action="store_true", help=what)

    def tier_options(p: argparse.ArgumentParser, what: str, required: bool = False) -> None:
        group = p.add_mutually_exclusive_group(required=required)
        group.add_argument("--tier", choices=_tier_choices(), metavar="NAME",
                           help=f"{what} the layers of quality tier NAME "
                           f"({', '.join(_tier_choices())})")
        group.add_argument("--kbps", type=_kbps_arg, metavar="N",
                           help=f"{what} as many layers as fit in N kbit/s (at least the "
                           "first layer)")

    def fill_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--fill", choices=FILL_CHOICES, default=None,
                       help="lower tiers: fill what dropped layers carried by sampling the "
                       "priors (sample, the default), with their medians (mean), or leave "
                       "absent bands silent (zero); lossless streams are exact either way")
        p.add_argument("--seed", type=seed_arg, metavar="N", default=None,
                       help="random seed for --fill sample (default 0): the same seed "
                       "decodes the same audio")

    def coding_verb(name: str, help_: str, default: str, out_suffix: str) -> argparse.ArgumentParser:
        extra = " [--skip T] [--until T] [--ignore-errors]" if name == "decode" else ""
        p = sub.add_parser(
            name,
            help=help_,
            description=help_,
            usage=f"%(prog)s IN [OUT{out_suffix}] | IN... [-o OUT | --outdir DIR] "
            f"[--model PATH] [-j N] [-f] [-q]{extra}",
            epilog=(
                f"With exactly two paths of which only the second ends in {out_suffix} "
                "(or is -), the second is the output (like -o); a second path that cannot "
                "be an input (it does not exist"
                + (", or is not a .hyb stream" if name == "decode" else "")
                + ") and lacks that suffix is a usage error. The folder of -o OUT and "
                "--outdir DIR are created if missing. '-' reads standard input "
                "or writes standard output"
                + (" (as WAV)" if name == "decode" else "")
                + "; input - without -o writes standard output."
            ),
        )
        p.add_argument("inputs", nargs="+", metavar="IN", help="input file(s)")
        where = p.add_mutually_exclusive_group()
        where.add_argument(
            "-o", "--output", metavar="OUT", help="output file (only with one input)"
        )
        where.add_argument(
            "--outdir",
            metavar="DIR",
            help=f"directory for the outputs (default: beside each input, {default})",
        )
        p.add_argument("--model", metavar="PATH", help="model file (default: the built-in one)")
        jobs_option(p)
        p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
        p.add_argument("-q", "--quiet", action="store_true", help="no summary line, no progress")
        return p

    encode = coding_verb(
        "encode", "encode PCM audio (WAV, FLAC, AIFF) into .hyb streams", "IN with .hyb", ".hyb"
    )
    tier_options(encode, "encode losslessly, then keep")
    encode.add_argument("--no-metadata", action="store_true",
                        help="store none of the input's tags, pictures, cue sheets and chunks")
    encode.add_argument("--strict", action="store_true",
                        help="refuse an input that disagrees with itself (a header declaring "
                        "another length than its audio has, a FLAC MD5 its audio does not "
                        "match): exit 3, no output (default: a warning, and the audio that "
                        "is there is encoded)")
    decode = coding_verb(
        "decode",
        "decode .hyb streams to PCM (output format from the output's extension: "
        ".wav, .flac, .aif, .aiff)",
        "IN with .flac if it was coded from FLAC, else .wav",
        ".wav|.flac|.aif|.aiff",
    )
    ignore_errors_option(
        decode,
        "decode past damaged frames: write each as silence, report it on stderr, keep "
        "the output and exit with 6 (default: stop at the first problem, no output)",
    )
    fill_options(decode)
    decode.add_argument("--skip", metavar="T", type=_skip_arg,
                        help="start at T: a sample number (441000) or a time M:SS.SS "
                        "(1:30, 0:12.5), as flac's --skip; the output holds exactly the "
                        "samples of the whole decode from there")
    decode.add_argument("--until", metavar="T", type=_until_arg,
                        help="stop before T (as flac's --until): a sample number or a time "
                        "M:SS.SS, -T counting back from the end (-0:10), +T forward from "
                        "--skip (+0:10); default: the end")
    decode.add_argument("--no-metadata", action="store_true",
                        help="write none of the metadata stored with the stream")
    p = sub.add_parser(
        "verify",
        help="check .hyb streams completely (every CRC, every frame decoded, the MD5) "
        "without writing audio",
        description="check .hyb streams completely (every CRC, every frame decoded, the "
        "MD5) without writing audio; exit 0 when all are intact, 4 when one is damaged",
        usage="%(prog)s FILE... [--model PATH] [-j N] [--ignore-errors] [-q]",
    )
    p.add_argument("inputs", nargs="+", metavar="FILE", help=".hyb file(s), - for stdin")
    p.add_argument("--model", metavar="PATH", help="model file (default: the built-in one)")
    jobs_option(p)
    ignore_errors_option(
        p, "read on past damaged frames and list every one (default: stop at the first)")
    p.add_argument("-q", "--quiet", action="store_true", help="nothing on success")
    p = sub.add_parser("info", help="describe .hyb streams", description="describe .hyb streams")
    p.add_argument("inputs", nargs="+", metavar="FILE", help=".hyb file(s)")

    p = sub.add_parser(
        "truncate",
        help="cut .hyb streams down to a lower quality tier, without re-encoding",
        description="cut .hyb streams down to a lower quality tier (a prefix of their "
        "layers) without re-encoding: the result is byte-identical to encoding at that "
        "tier. A stream can only lose layers: asking for a higher tier than it holds is "
        "an error (exit 2).",
        usage="%(prog)s IN OUT | IN... [-o OUT | --outdir DIR] (--tier NAME | --kbps N) "
        "[-f] [-q]",
        epilog="With exactly two paths and neither -o nor --outdir, the second is the "
        "output. Default output: beside the input, named IN.<tier>.hyb; with --outdir: "
        "DIR/<input's name>.",
    )
    p.add_argument("inputs", nargs="+", metavar="IN", help=".hyb file(s)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="OUT", help="output file (only with one input)")
    where.add_argument("--outdir", metavar="DIR", help="directory for the outputs")
    tier_options(p, "keep", required=True)
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")

    return parser


# --------------------------------------------------------------------------- entry point


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line, options anywhere among the paths (``decode a.hyb -f x.wav``).

    argparse cannot parse a sub-command's options intermixed with its paths, so the verb
    is taken first and its own parser reads the rest: a usage error then prints the
    verb's usage. Anything else (``--help``, ``--version``, no or an unknown verb) is the
    top level's to answer. Exits through ``SystemExit`` as argparse does."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in parser.verbs:
        return parser.parse_args(argv)
    rest = argv[1:]
    if argv[0] == "decode":
        rest = _join_negative_until(rest)
    args = parser.verbs[argv[0]].parse_intermixed_args(rest)
    args.verb = argv[0]
    return args


def _join_negative_until(argv: list[str]) -> list[str]:
    """``--until -0:10`` as ``--until=-0:10``: argparse takes a value that starts with
    ``-`` and is not a plain negative number for an option (flac's documentation writes
    ``--until=-mm:ss``; both forms work here)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--until" and i + 1 < len(argv) and argv[i + 1][:1] == "-" \
                and argv[i + 1][1:2].isdigit():
            out.append(f"--until={argv[i + 1]}")
            i += 2
            continue
        if argv[i] == "--":
            out += argv[i:]
            break
        out.append(argv[i])
        i += 1
    return out


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like an interrupt so that every cleanup path (temporary files,
    worker processes) runs exactly as for Ctrl-C."""


def _install_signal_handlers() -> None:
    """SIGINT -> KeyboardInterrupt, SIGTERM -> :class:`Terminated`, once: a second
    signal while the first one's cleanup runs is ignored, so the cleanup completes.

    While the codec codes, the exception is raised between two frames, not inside one
    (:mod:`hybridcodec.cancel`). Signals the caller ignores stay ignored."""
    import threading

    from . import cancel

    if threading.current_thread() is not threading.main_thread():
        return
    received: list[int] = []

    def handler(signum, frame):
        if received:
            return  # already on the way out
        received.append(signum)
        cancel.interrupt(Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue
            signal.signal(sig, handler)
        except (ValueError, OSError):  # pragma: no cover - not the main interpreter
            pass


def _restore_signal_handlers(previous: dict) -> None:
    from . import cancel

    cancel.reset()
    for sig, old in previous.items():
        try:
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        except (ValueError, OSError, TypeError):  # pragma: no cover
            pass


def _load_codec(verb: str) -> None:
    """Import what ``verb`` runs (numba, constriction, scipy: a second or more of start-up)."""
    if verb == "truncate":
        from . import truncation  # noqa: F401
    elif verb == "info":
        from . import codec  # noqa: F401 - headers only: not the coder
    else:
        from . import codec, framecodec  # noqa: F401 - codec imports the coder lazily


def _quiet_write_errors(previous: Callable, debug: bool) -> Callable:
    """An ``sys.unraisablehook`` that drops the write errors libsndfile's callbacks could
    not raise: the same error is raised when the output is finished (it is kept by
    :class:`hybridcodec.atomic.GuardedFile`), as one line, not a printed traceback."""
    def hook(unraisable) -> None:
        if debug or not isinstance(unraisable.exc_value, OutputWriteError):
            previous(unraisable)

    return hook


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin_bytes=None,
    stdout_bytes=None,
) -> int:
    """Run the CLI; returns the exit status (the console script passes it to ``sys.exit``).

    ``stdin_bytes`` / ``stdout_bytes`` are the binary streams behind the path ``-``
    (default ``sys.stdin.buffer`` / ``sys.stdout.buffer``).

    Until the first file's work begins (argument parsing, the codec's imports: numba, ...),
    SIGINT / SIGTERM end the process at once with 130 / 143 (nothing exists yet to
    clean up); from then on they unwind through every cleanup path first.
    """
    from . import cancel

    previous = cancel.exit_on_signal(PROG)  # first thing: start-up is interruptible too
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    if argv is None:  # the process's own command line: its numba is the codec's alone
        from .jit import command_line_process

        command_line_process()
    debug = os.environ.get("HYBRIDCODEC_DEBUG", "") not in ("", "0")
    unraisable = sys.unraisablehook
    sys.unraisablehook = _quiet_write_errors(unraisable, debug)
    run: _Run | None = None
    try:
        try:
            args = parse_args(argv)
        except SystemExit as exc:  # --help, --version, usage errors
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else EXIT_USAGE)
        run = _Run(args, out, err, stdin_bytes, stdout_bytes)
        return run.run()
    except KeyboardInterrupt as exc:
        if run is not None:
            run.clear_progress()
        terminated = isinstance(exc, Terminated)
        try:
            print(f"{PROG}: {'terminated' if terminated else 'interrupted'}", file=err,
                  flush=True)
        except Exception:
            pass
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except BrokenPipeError:
        # `hybridcodec info *.hyb | head -2`: the reader has gone, so stop quietly, as a
        # Unix filter killed by SIGPIPE does. Standard output is pointed at /dev/null so
        # that Python's own flush at exit does not complain about the pipe again.
        if run is not None:
            run.clear_progress()
        if stdout is None and stdout_bytes is None:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError, AttributeError):
                pass
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - last resort, outside any per-file work
        if debug:
            traceback.print_exc(file=err)
        print(f"{PROG}: {_internal_error_text(exc)}", file=err)
        return EXIT_INTERNAL
    finally:
        sys.unraisablehook = unraisable
        _restore_signal_handlers(previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
