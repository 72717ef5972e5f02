"""The codec's own exception types.

Every failure a user can cause (bad input file, bad stream, wrong model, bad option)
raises a subclass of :class:`HybridCodecError`. The CLI prints ``str(error)`` on one line
and exits with ``error.exit_code``; anything else escaping is a bug.
"""

from __future__ import annotations


class HybridCodecError(Exception):
    """Base class of all errors the codec raises on purpose."""

    exit_code = 1


class UsageError(HybridCodecError):
    """An out-of-range option or an impossible request (e.g. output exists without -f)."""

    exit_code = 2


class UnsupportedAudioError(HybridCodecError):
    """Input audio that cannot be read or is in a format the codec does not handle."""

    exit_code = 3


class CorruptStreamError(HybridCodecError):
    """A .hyb stream that fails a check: bad magic, CRC, MD5, impossible field, ..."""

    exit_code = 4


class TruncatedStreamError(CorruptStreamError):
    """A .hyb stream that ends before a structure it declares is complete."""


class UnsupportedVersionError(CorruptStreamError):
    """A .hyb stream written in a format version this build cannot decode."""


class ModelError(HybridCodecError):
    """A model file that cannot be loaded, or a stream coded with a different model."""

    exit_code = 5


class ModelMismatchError(ModelError):
    """The stream names a model id different from the model given for decoding."""


class OutputWriteError(HybridCodecError):
    """An output that could not be written: disk full, I/O error, read-only file system.

    The message is ``cannot write <file>: <reason>``; the partial output is removed."""


class InputFileError(HybridCodecError):
    """An input path that cannot be opened at all (missing, a directory, no permission)."""

    exit_code = 3
