"""The ``.hyb`` bitstream container (normative spec: ``docs/format.md``).

Format version 4 (:mod:`.v4`) is written; versions 1-3 (:mod:`.legacy`) are still read,
and written again by tools that rewrite such a stream (``truncate``). This package knows
nothing about audio or models: payloads and the metadata blob are opaque bytes
(:mod:`hybridcodec.metadata` reads the blob). Writing validates its arguments and raises
:class:`ValueError` on a bad object (a programming error). Reading validates every byte
it is given and raises only :class:`~hybridcodec.errors.CorruptStreamError` or its
subclasses (:class:`~hybridcodec.errors.TruncatedStreamError`,
:class:`~hybridcodec.errors.UnsupportedVersionError`), with a one-line message.

Modules: :mod:`.common` (types, limits), :mod:`.varint`, :mod:`.registry` (bundled model
and tier-name tables), :mod:`.legacy`, :mod:`.v4`, :mod:`.reader`, :mod:`.writer`.
"""

from .common import (FORMAT_VERSION, MAGIC, MAX_NUM_SAMPLES, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE,
                     SUPPORTED_VERSIONS, TIER_COMPLETE, TIER_NAMED, TIER_RATE, UNIT_COMPLETE,
                     UNIT_CUTTABLE, UNLISTED_EMPTY, DamagedFrame, Frame, StreamFooter,
                     StreamHeader, StreamLayout, Unit)
from .reader import StreamReader, read_stream_layout
from .registry import BUNDLED_MODELS, TIER_NAMES
from .v4 import truncate_frame, truncate_unit
from .writer import (StreamWriter, write_compact, write_footer, write_frame, write_header,
                     write_index)

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "SUPPORTED_VERSIONS",
    "BUNDLED_MODELS",
    "TIER_NAMES",
    "TIER_COMPLETE",
    "TIER_NAMED",
    "TIER_RATE",
    "UNIT_COMPLETE",
    "UNIT_CUTTABLE",
    "UNLISTED_EMPTY",
    "StreamHeader",
    "Unit",
    "Frame",
    "StreamFooter",
    "DamagedFrame",
    "StreamLayout",
    "StreamReader",
    "StreamWriter",
    "write_header",
    "write_frame",
    "write_index",
    "write_footer",
    "write_compact",
    "read_stream_layout",
    "truncate_unit",
    "truncate_frame",
    "MAX_NUM_SAMPLES",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
]
