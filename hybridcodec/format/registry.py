"""Append-only tables a version 4 stream refers to by number (docs/format.md, "Registries").

An entry, once released, never changes or goes away: streams name it by its number.
Adding an entry is not a format change: a reader that does not know a model number
refuses the stream as written by a newer hybridcodec (it could not decode it without
that model anyway), and an unknown tier code only changes the label it shows.
"""

from __future__ import annotations

__all__ = ["BUNDLED_MODELS", "TIER_NAMES", "bundled_model_index"]

#: Model registry: header ``model`` byte 1..255 -> the model id it stands for (the models
#: shipped in ``hybridcodec/models``). 0 in the byte means an explicit 8-byte id follows.
BUNDLED_MODELS: dict[int, str] = {
    1: "e40987291b5fd215",  # default model of hybridcodec 0.2.0 (formats 2, 3)
    2: "ccd651dbb62662d7",  # default model of hybridcodec 0.1 (format 1)
    3: "966f00cb4bbff40b",  # default model of hybridcodec 0.3 (format 4, segmented payload)
}

#: Named tiers: header tier code (tier kind 1) -> name. The codec's table (it names the
#: prefixes in :mod:`hybridcodec.tiers`); the container keeps the byte and uses this only
#: for :attr:`StreamHeader.tier`, the label. An unknown code is labelled ``tier N``.
TIER_NAMES: dict[int, str] = {
    1: "high",
    2: "medium",
    3: "low",
    4: "tiny",
}


def bundled_model_index(model_id: str) -> int:
    """The registry number of ``model_id``, 0 if it has none (the id is then written out)."""
    for index, known in BUNDLED_MODELS.items():
        if known == model_id:
            return index
    return 0
