"""A reference decoder of hybridcodec streams, written from ``docs/format.md`` alone.

It exists to show that the document is sufficient: everything here was written from the
text of the specification (Part 1, the container; Part 2, the layer payloads and the
model file), without looking at or importing the codec. It uses numpy and the Python
standard library only: no ``hybridcodec``, no constriction, no numba, no torch.

Covered: **lossless** streams of every format version (1 to 4): the version 1-3
container and the version 4 container (normal and compact layouts, the index chunk),
the model file (npz archive, validation, version defaults, the model id, by which a
stream names its model), constriction's stack ANS decoder, the integer nets and the
lifting wavelet, channels (wasted bits, stereo modes), scale classes, precision groups,
the prior mean and features, the cascade (NLMS, sign-LMS, OLS and MIX stages), the
layered payload (model payload 2) and the segmented payload (payload 4) with the
band-energy envelope that its layer 0 carries (parsed, returned, not used), and the MD5.

Out of scope: lower tiers (truncated streams) and their fill, which the document marks
informative; recovery past damage; writing anything but the decoded PCM. The decoder is
strict: any rule of the document broken raises ``reference.Corrupt``.

Deliberately slow and simple: pure Python loops over symbols and samples, numpy where
the document's arithmetic allows it (nets, sums of bounded int64 products). Usage::

    import reference
    out = reference.decode("stream.hyb", "hybridcodec/models")
    out.pcm, out.sample_rate, out.channels, out.bits_per_sample, out.md5_ok

or ``python -m reference IN.hyb [OUT.wav] [--models DIR]``.
"""

from .ans import Corrupt
from .decoder import Decoded, decode, pcm_md5
from .model import Model, ModelError, load_models

__all__ = ["Corrupt", "Decoded", "Model", "ModelError", "decode", "load_models", "pcm_md5"]
