"""All-or-nothing output files.

Every file the codec writes (``.hyb`` streams and decoded audio) goes through
:func:`atomic_output`: the bytes go to a temporary file in the destination directory,
which is renamed onto the final name (``os.replace``, atomic on POSIX and Windows) only
when the ``with`` block finishes without an exception. On any exception, including
``KeyboardInterrupt``, the temporary file is deleted, so an interrupted or failed run
never leaves a partial output behind and never damages an existing file.

Every write error (disk full, I/O error, read-only file system, ...) becomes one
:class:`~hybridcodec.errors.OutputWriteError`, ``cannot write <file>: <reason>``, and no
file whose writing failed is ever renamed into place, even when the code writing it
(libsndfile, through callbacks that cannot raise) carried on after the failure.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from .errors import OutputWriteError, UsageError

__all__ = ["atomic_output", "AtomicOutput", "GuardedFile", "check_output_path"]


def check_output_path(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Refuse an impossible output path before any work is done; return it as a Path.

    Raises :class:`UsageError` when ``path`` exists and ``overwrite`` is false, when it
    is a directory, or when its directory does not exist.
    """
    p = Path(os.fspath(path))
    name = os.fspath(path)
    if p.is_dir():
        raise UsageError(f"{name} is a directory")
    if os.path.lexists(p) and not overwrite:
        raise UsageError(f"{name} exists (use -f to overwrite)")
    parent = p.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {name}: directory {os.fspath(parent)} does not exist")
    return p


class GuardedFile:
    """A binary file object around ``fp`` that turns write errors into one clear error.

    The first ``OSError`` from writing, seeking (which flushes), flushing or truncating
    raises :class:`OutputWriteError` ``cannot write <name>: <reason>`` and is kept in
    :attr:`error`; after it every call does nothing (writes report 0 bytes), since the
    file is lost anyway. It is kept because libsndfile writes through callbacks whose
    exceptions are only printed, not raised, and it may carry on: whoever finishes the
    file must check :attr:`error` (:class:`AtomicOutput` does). ``BrokenPipeError``
    passes through unchanged: a closed pipe is not a failed write (the CLI then stops
    quietly, as Unix filters do).
    """

    def __init__(self, fp: BinaryIO, name: str) -> None:
        self._fp = fp
        self.name = name
        #: the first write error, or None
        self.error: OutputWriteError | None = None

    def _guard(self, fn, args: tuple, lost):
        if self.error is not None:
            return lost
        try:
            return fn(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            self.error = OutputWriteError(f"cannot write {self.name}: {exc.strerror or exc}")
            raise self.error from None

    def write(self, data) -> int:
        return self._guard(self._fp.write, (data,), 0)

    def flush(self) -> None:
        self._guard(self._fp.flush, (), None)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._guard(self._fp.seek, (offset, whence), 0)

    def tell(self) -> int:
        return self._guard(self._fp.tell, (), 0)

    def truncate(self, size: int | None = None) -> int:
        return self._guard(self._fp.truncate, (size,), 0)

    def read(self, size: int = -1) -> bytes:
        return self._guard(self._fp.read, (size,), b"")

    def readinto(self, buffer) -> int:
        return self._guard(self._fp.readinto, (buffer,), 0)

    def seekable(self) -> bool:
        return self._fp.seekable()

    def readable(self) -> bool:
        return self._fp.readable()

    def writable(self) -> bool:
        return self._fp.writable()

    def fileno(self) -> int:
        return self._fp.fileno()

    @property
    def closed(self) -> bool:
        return self._fp.closed


class AtomicOutput:
    """Context manager behind :func:`atomic_output` (see there).

    The overwrite check runs in the constructor, i.e. as soon as ``atomic_output(...)``
    is called; the temporary file is created on ``__enter__``.
    """

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool) -> None:
        self.path = check_output_path(path, overwrite=overwrite)
        self.overwrite = overwrite
        self.temp_path: Path | None = None
        self._fp: BinaryIO | None = None
        self._guarded: GuardedFile | None = None

    def _create_temp(self) -> tuple[Path, int]:
        # O_EXCL + mode 0o666 gives the permissions a plain open() would (umask applies),
        # unlike tempfile's 0o600.
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        for _ in range(100):
            tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.part")
            try:
                fd = os.open(tmp, flags, 0o666)
            except FileExistsError:
                continue
            except OSError as exc:
                raise UsageError(
                    f"cannot write {os.fspath(self.path)}: {exc.strerror or exc}"
                ) from exc
            return tmp, fd
        raise UsageError(f"cannot create a temporary file beside {os.fspath(self.path)}")

    def __enter__(self) -> GuardedFile:
        tmp, fd = self._create_temp()
        self.temp_path = tmp
        try:
            self._fp = os.fdopen(fd, "w+b")
        except BaseException:
            os.close(fd)
            self._remove_temp()
            raise
        self._guarded = GuardedFile(self._fp, os.fspath(self.path))
        return self._guarded

    def _remove_temp(self) -> None:
        if self.temp_path is not None:
            try:
                os.unlink(self.temp_path)
            except FileNotFoundError:
                pass
            self.temp_path = None

    def abort(self) -> None:
        """Close and delete the temporary file (idempotent)."""
        fp, self._fp = self._fp, None
        try:
            if fp is not None:
                fp.close()
        except OSError:
            pass
        finally:
            self._remove_temp()

    def write_error(self) -> OutputWriteError | None:
        """The first write error met through the file object, if any."""
        return self._guarded.error if self._guarded is not None else None

    def commit(self) -> None:
        """Flush, sync and rename the temporary file onto the final path.

        Refuses (and deletes the temporary file) if any write failed, even one that the
        writer swallowed."""
        fp, self._fp = self._fp, None
        try:
            failed = self.write_error()
            if failed is not None:
                raise failed
            try:
                if fp is not None:
                    if not fp.closed:
                        fp.flush()
                        os.fsync(fp.fileno())
                    fp.close()
                if self.temp_path is None:
                    raise RuntimeError("atomic output committed twice")
                if not self.overwrite and os.path.lexists(self.path):
                    # Someone created it while we were working: still never clobber it.
                    raise UsageError(f"{os.fspath(self.path)} exists (use -f to overwrite)")
                os.replace(self.temp_path, self.path)
            except OSError as exc:
                raise OutputWriteError(
                    f"cannot write {os.fspath(self.path)}: {exc.strerror or exc}") from None
            self.temp_path = None
        except BaseException:
            self.abort()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc_type is None:
            self.commit()
            return False
        self.abort()
        failed = self.write_error()
        if failed is not None and failed is not exc and isinstance(exc, Exception):
            # What the writer raised after a failed write (libsndfile: a short count,
            # an assertion) says less than the write error itself.
            raise failed
        return False


def atomic_output(path: str | os.PathLike[str], *, overwrite: bool) -> AtomicOutput:
    """Open ``path`` for binary writing, all or nothing.

    Use as ``with atomic_output(dst, overwrite=False) as fp: fp.write(...)``. The file
    object is a temporary file (opened ``w+b``) beside ``path``; it replaces ``path``
    when the block exits normally and is deleted when it raises (any exception, also
    ``KeyboardInterrupt``). If ``path`` exists and ``overwrite`` is false,
    :class:`UsageError` ("out.hyb exists (use -f to overwrite)") is raised by this call
    itself, before any work.
    """
    return AtomicOutput(path, overwrite=overwrite)
