"""numba for the codec's kernels: where their compiled code is cached, and a cheaper first
use in the processes the codec owns.

Importing this module does not import numba; :func:`njit` does, when the first kernel is
defined (``hybridcodec.cascade``).

**Cache.** ``njit(cache=True)`` saves each kernel's machine code so that later processes
load it instead of compiling it again (seconds). numba's own choice of directory is the
package's ``__pycache__`` when it is writable, else ``~/.cache/numba``, and when neither
is (a system-wide install used by an account with no writable home) it fails at import.
:func:`cache_location` keeps the first and replaces the rest: the kernels of a read-only
install are cached in the user's cache directory
(``$XDG_CACHE_HOME/hybridcodec/numba``, default ``~/.cache/hybridcodec/numba``), else in
a private directory under the system's temporary directory, else not at all (compiled in
every process: slower, never an error). ``NUMBA_CACHE_DIR``, when set, is obeyed as numba
obeys it. Only the codec's own kernels are redirected; other numba code in the process
keeps numba's settings.

**Start-up of a command-line process.** The first time numba loads or compiles anything
in a process it loads its whole type system: about 10**5 long-lived objects, which the
cyclic garbage collector then traverses again and again (0.1 s per command), and two
optional imports: ``scipy.linalg``, to find out whether compiled code may call BLAS
(0.2 s), and ``cffi``'s C parser (0.04 s). The codec's kernels are integer loops that need
neither. :func:`command_line_process`, for processes whose numba code is the codec's
alone (the command line, its ``--jobs`` workers), lets numba find neither, loads its
type system right when the first kernel is defined, with the collector paused, and then
freezes those objects out of the collector's sight (:func:`gc.freeze`). A library
user's process is left alone: their own numba code may need ``np.dot``.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from pathlib import Path
from typing import Callable, Mapping

__all__ = ["cache_location", "command_line_process", "njit", "NO_CACHE"]

#: :func:`cache_location`'s answer when no directory can hold the cache.
NO_CACHE = ""

_PACKAGE_DIR = Path(__file__).resolve().parent
_location: str | None | object = ...  # cache_location() of this process, once known
_command_line = False  # command_line_process() was called
_numba_loaded = False  # ... and numba's type system has been loaded for it


def _writable_dir(path: Path) -> bool:
    """Whether ``path`` exists or can be made, and a file can be created in it (numba's
    own test: permission bits alone say nothing for root or on a read-only mount)."""
    import tempfile  # here: --version imports this module and needs none of it

    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def _private_dir(path: Path) -> bool:
    """Whether ``path`` is a real directory owned by this user that nobody else can write.

    A shared temporary directory is open to every account, and numba runs what it finds in
    its cache: a directory someone else made (or replaced by a link) must not be used.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    import stat

    getuid = getattr(os, "getuid", None)
    owner_ok = getuid is None or st.st_uid == getuid()
    return stat.S_ISDIR(st.st_mode) and owner_ok and not st.st_mode & 0o022


def _user_cache_root(environ: Mapping[str, str]) -> Path | None:
    if sys.platform == "win32":
        base = environ.get("LOCALAPPDATA")
        return Path(base) if base else None
    base = environ.get("XDG_CACHE_HOME")
    if base and os.path.isabs(base):
        return Path(base)
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".cache" if home and home != "~" else None


def cache_location(package_dir: str | os.PathLike | None = None,
                   environ: Mapping[str, str] | None = None) -> str | None:
    """Where the codec's compiled kernels are cached: ``None`` for numba's own choice
    (``NUMBA_CACHE_DIR`` when set, else the package's writable ``__pycache__``), a
    directory, or :data:`NO_CACHE` when nothing is writable (see the module docstring).

    ``package_dir`` (default: this package) and ``environ`` (default: ``os.environ``)
    are parameters so that the choice can be checked for any installation.
    """
    environ = os.environ if environ is None else environ
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    package = Path(package_dir) if package_dir is not None else _PACKAGE_DIR
    if _writable_dir(package / "__pycache__"):
        return None
    root = _user_cache_root(environ)
    if root is not None:
        user = root / "hybridcodec" / "numba"
        if _writable_dir(user):
            return str(user)
    import tempfile

    getuid = getattr(os, "getuid", None)
    scratch = Path(tempfile.gettempdir()) / f"hybridcodec-{getuid() if getuid else 'user'}"
    if _private_dir(scratch) and _writable_dir(scratch / "numba"):
        return str(scratch / "numba")
    return NO_CACHE


def _process_location() -> str | None:
    global _location
    if _location is ...:
        _location = cache_location()
    return _location  # type: ignore[return-value]


def command_line_process() -> None:
    """Tune this process's start-up for the codec alone (see the module docstring).

    Call it first thing in a process whose numba code is the codec's alone. The
    collector stays paused until the first kernel is defined (for a run that never
    codes, e.g. ``info``, until the end); at exit it is frozen, so that tearing the
    interpreter down does not traverse every object once more.
    """
    global _command_line
    if _command_line:
        return
    _command_line = True
    if "numba" in sys.modules:
        return  # too late to spare numba anything
    gc.disable()
    atexit.register(gc.freeze)


#: numba's optional imports that the codec's kernels never need (see the module docstring)
_SKIPPED_IMPORTS = ("scipy.linalg", "cffi")


def _load_numba_for_command_line() -> None:
    # numba.np.arraymath probes for BLAS when it is imported (`import scipy.linalg.
    # cython_blas`, an ImportError meaning "no BLAS"), numba.core.typing.cffi_utils
    # likewise for cffi; the registry refresh then loads the rest of the type system.
    # A None entry in sys.modules makes an import fail at once; the entries are removed
    # right after, so both import normally later (the ladder report uses scipy.signal).
    blocked = [name for name in _SKIPPED_IMPORTS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import numba.core.typing.cffi_utils  # noqa: F401
        import numba.np.arraymath  # noqa: F401
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()
    except Exception:  # pragma: no cover - a numba that moved things: it loads as usual
        pass
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
        gc.freeze()
        gc.enable()


def njit(**options) -> Callable:
    """``numba.njit(**options)``, with ``cache=True`` cached at :func:`cache_location`."""
    cache = bool(options.pop("cache", False))

    def decorate(fn: Callable) -> Callable:
        import numba
        from numba.core import config

        global _numba_loaded
        if _command_line and not _numba_loaded:
            _numba_loaded = True
            _load_numba_for_command_line()
        where = _process_location() if cache else NO_CACHE
        if where and config.CACHE_DIR:
            where = None  # set through numba's own config: numba's choice
        if where == NO_CACHE:
            return numba.njit(**options)(fn)
        if where is None:
            return numba.njit(cache=True, **options)(fn)
        # numba reads its cache directory when a function is decorated, and keeps it:
        # setting it just for the codec's kernels leaves everyone else's numba as it was.
        saved = config.CACHE_DIR
        config.CACHE_DIR = where
        try:
            return numba.njit(cache=True, **options)(fn)
        finally:
            config.CACHE_DIR = saved

    return decorate
