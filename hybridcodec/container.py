"""The ``.hyb`` bitstream container: a thin re-export of :mod:`hybridcodec.format`.

Kept so that ``from hybridcodec.container import ...`` goes on working; the code lives
in the :mod:`hybridcodec.format` package (version 4 in :mod:`hybridcodec.format.v4`,
versions 1-3 in :mod:`hybridcodec.format.legacy`). Normative spec: ``docs/format.md``.
"""

from .format import *  # noqa: F401,F403
from .format import __all__  # noqa: F401
from .format.common import (END_SYNC, FRAME_SYNC, INDEX_SYNC, MAX_BITS_PER_SAMPLE,  # noqa: F401
                            MAX_CHANNELS, MAX_FRAME_LENGTH, MAX_METADATA_LEN, MAX_NUM_FRAMES,
                            MAX_NUM_LAYERS, MD5_LEN, METADATA_SYNC, METADATA_VERSION,
                            MIN_BITS_PER_SAMPLE, MIN_CHANNELS)
