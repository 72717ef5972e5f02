"""Layer order and named quality tiers.

A frame's layers are (band, group) pairs in order of perceptual importance; a tier is a
prefix of that order. Bands: 0 = coarse band, 1 = coarsest detail level (d_L) ... L =
finest (d_1). Groups: 0 anchor, then one refinement bit-plane each, then exact (see
:mod:`hybridcodec.precision`). Each group lowers the band's noise by about 6 dB
relative to the band's own local scale, so noise follows the signal's envelope within a
band (the masking assumption); across bands, an octave-dependent weight (the ear's lower
sensitivity and stronger masking at high frequencies) decides which band is refined
next. The order is a pure function of the number of levels, so the model id pins it.
"""

from __future__ import annotations

from .errors import UsageError

GROUP_DB = 6.0  # noise reduction per precision group (one bit-plane)
# dB of tolerated extra noise per band, by the band's top frequency as a fraction of
# the sample rate: fs/2 (finest) .. fs/2**(L+1) (coarse).
OCTAVE_WEIGHT_DB = (20.0, 11.0, 5.0, 2.0, 0.0)

# Tier name -> layers kept (a prefix of layer_order for the default 4 levels x 4 groups).
# Typical size on CD-quality stereo music (corpus/music, measured by `evaluation.ladder`,
# see README): high ~30 % of PCM, medium ~15 %, low ~7 %, tiny ~4 % (1/24).
TIERS = {
    "lossless": None,
    "high": 14,
    "medium": 7,
    "low": 3,
    "tiny": 2,
}


#: Named tiers of a stream of the format 4 (segmented) payload: a tier keeps every
#: truncation unit whose perceptual slope (hybridcodec.perceptual.allocation), made
#: non-increasing along the dependencies between units, reaches its threshold. The rates
#: follow the content (a quality, not a bit rate): typical figures are in the README.
SLOPE_TIERS = {
    "high": 90,
    "medium": 110,
    "low": 130,
    "tiny": 150,
}


def band_weight(band: int, levels: int) -> float:
    """Extra noise (dB) tolerated in ``band`` (0 coarse .. levels finest)."""
    octave_from_top = levels - band  # 0 for the finest band
    return OCTAVE_WEIGHT_DB[min(octave_from_top, len(OCTAVE_WEIGHT_DB) - 1)]


def layer_order(levels: int, groups: int) -> list[tuple[int, int]]:
    """(band, group) of every layer id, most important first; layer 0 is (0, 0)."""
    pairs = [(b, g) for b in range(levels + 1) for g in range(groups)]
    return sorted(pairs, key=lambda bg: (GROUP_DB * bg[1] + band_weight(bg[0], levels), bg[0]))


def layer_name(band: int, group: int, levels: int, groups: int) -> str:
    """What a layer holds, for ``hybridcodec info``."""
    where = "coarse band" if band == 0 else f"detail level {levels - band + 1}"
    if group == 0:
        what = "anchor" + (" + frame params" if band == 0 else "")
    elif group == groups - 1:
        what = "exact"
    else:
        what = f"refinement {group}"
    return f"{where}: {what}"


def num_layers(levels: int, groups: int) -> int:
    return (levels + 1) * groups


def layers_for_tier(name: str, levels: int, groups: int) -> int:
    """Number of layers a named tier keeps."""
    if name not in TIERS:
        raise UsageError(f"unknown tier {name!r} (choose from {', '.join(TIERS)})")
    keep = TIERS[name]
    total = num_layers(levels, groups)
    return total if keep is None else min(keep, total)
