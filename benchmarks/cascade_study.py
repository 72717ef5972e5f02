"""Cascade study: ideal coded size of cascade variants on a fixed sample of the corpus.

Every candidate is the default model with some config keys replaced (``detail_cascade``,
``coarse_cascade``, ...). For each frame of the sample the frame is analysed exactly as
the encoder codes it (:func:`hybridcodec.framecodec.analyse_frame`: lifting, prior means,
open-loop cascade, class choice, closed-loop cascade) and priced with
:func:`train.coded_bits.band_bits` (ideal code length; agrees with the real coder within
0.1 %). Prints bits per band and the total relative to the first candidate, and the time
analyse_frame took (encoder side, one core).

The sample (fixed, documented in the report): 6 CD stereo music files, 2 of the
multichannel / 48 kHz music files, 4 solo instruments; the first 3 frames (2**17 samples
each) of every file, i.e. the whole file for most.

    PYTHONPATH=. python benchmarks/cascade_study.py baseline rls16 ...
    PYTHONPATH=. python benchmarks/cascade_study.py --list
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from hybridcodec.framecodec import analyse_frame  # noqa: E402
from hybridcodec.model import load_model  # noqa: E402
from train.coded_bits import band_bits  # noqa: E402
from train.fit_priors import read_frames  # noqa: E402

CORPUS = REPO.parent / "shared" / "data" / "corpus"
SAMPLE = [f"music/cellar-{k}.flac" for k in ("01", "04", "08", "12", "17", "23")] + \
    ["music/cellar-40.flac", "music/cellar-45.flac"] + \
    [f"instruments/{k}.flac" for k in ("piano", "cello-phrase", "speech-male", "sax-phrase")]
FRAMES_PER_FILE = 3

D = [[0, 64, 26], [0, 16, 26], [1, 16, 8]]
C = [[0, 32, 26], [0, 16, 26], [1, 16, 8]]
CANDIDATES: dict[str, dict] = {
    "baseline": {},
    "proto-baseline": {"_proto": {}},
    # integer OLS / MIX (hybridcodec.cascade)
    "ols4-d": {"detail_cascade": [[2, 4, 8]] + D},
    "ols4-d-l9": {"detail_cascade": [[2, 4, 9]] + D},
    "ols8-d": {"detail_cascade": [[2, 8, 8]] + D},
    "imix64": {"detail_cascade": D + [[3, 0, 64]], "coarse_cascade": C + [[3, 0, 64]]},
    "ols2-d-mix64": {"detail_cascade": [[2, 2, 8]] + D + [[3, 0, 64]],
                     "coarse_cascade": C + [[3, 0, 64]]},
    "ols2-d-l9-mix64": {"detail_cascade": [[2, 2, 9]] + D + [[3, 0, 64]],
                        "coarse_cascade": C + [[3, 0, 64]]},
    "ols2-d-l7-mix64": {"detail_cascade": [[2, 2, 7]] + D + [[3, 0, 64]],
                        "coarse_cascade": C + [[3, 0, 64]]},
    "o4-n32": {"detail_cascade": [[2, 4, 8], [0, 32, 26], [0, 16, 26], [1, 16, 8], [3, 0, 64]],
               "coarse_cascade": C + [[3, 0, 64]]},
    "o4-n64-s": {"detail_cascade": [[2, 4, 8], [0, 64, 26], [1, 16, 8], [3, 0, 64]],
                 "coarse_cascade": C + [[3, 0, 64]]},
    "o4-n32-s": {"detail_cascade": [[2, 4, 8], [0, 32, 26], [1, 16, 8], [3, 0, 64]],
                 "coarse_cascade": C + [[3, 0, 64]]},
    "o4-n64-n16": {"detail_cascade": [[2, 4, 8], [0, 64, 26], [0, 16, 26], [3, 0, 64]],
                   "coarse_cascade": C + [[3, 0, 64]]},
    "o2-n32": {"detail_cascade": [[2, 2, 8], [0, 32, 26], [0, 16, 26], [1, 16, 8], [3, 0, 64]],
               "coarse_cascade": C + [[3, 0, 64]]},
    "nosign": {"detail_cascade": D[:2]},
    "mix-nosign": {"detail_cascade": D[:2] + [[3, 0, 64]], "coarse_cascade": C + [[3, 0, 64]]},
    "mix-nosign-c": {"detail_cascade": D[:2] + [[3, 0, 64]],
                     "coarse_cascade": C[:2] + [[3, 0, 64]]},
    "o4-n64-n16-c": {"detail_cascade": [[2, 4, 8], [0, 64, 26], [0, 16, 26], [3, 0, 64]],
                     "coarse_cascade": C[:2] + [[3, 0, 64]]},
    "o4-n64-n16-mix32": {"detail_cascade": [[2, 4, 8], [0, 64, 26], [0, 16, 26], [3, 0, 32]],
                         "coarse_cascade": C + [[3, 0, 64]]},
    "o4-n64-n16-mix128": {"detail_cascade": [[2, 4, 8], [0, 64, 26], [0, 16, 26], [3, 0, 128]],
                          "coarse_cascade": C + [[3, 0, 64]]},
    "o2-n64-n16": {"detail_cascade": [[2, 2, 8], [0, 64, 26], [0, 16, 26], [3, 0, 64]],
                   "coarse_cascade": C + [[3, 0, 64]]},
    "o4-c8": {"detail_cascade": [[2, 4, 8], [0, 64, 26], [0, 16, 26], [3, 0, 64]],
              "coarse_cascade": [[2, 8, 8]] + C + [[3, 0, 64]]},
    "o4-c16": {"detail_cascade": [[2, 4, 8], [0, 64, 26], [0, 16, 26], [3, 0, 64]],
               "coarse_cascade": [[2, 16, 8]] + C + [[3, 0, 64]]},
    "o4-c16-l9": {"detail_cascade": [[2, 4, 8], [0, 64, 26], [0, 16, 26], [3, 0, 64]],
                  "coarse_cascade": [[2, 16, 9]] + C + [[3, 0, 64]]},
    "o4-c32-l9": {"detail_cascade": [[2, 4, 8], [0, 64, 26], [0, 16, 26], [3, 0, 64]],
                  "coarse_cascade": [[2, 24, 9]] + C + [[3, 0, 64]]},
    "o3-n64-n16": {"detail_cascade": [[2, 3, 8], [0, 64, 26], [0, 16, 26], [3, 0, 64]],
                   "coarse_cascade": C + [[3, 0, 64]]},
    "o6-n64-n16": {"detail_cascade": [[2, 6, 8], [0, 64, 26], [0, 16, 26], [3, 0, 64]],
                   "coarse_cascade": C + [[3, 0, 64]]},
    "o4-mu18-26": {"detail_cascade": [[2, 4, 8], [0, 64, 18], [0, 16, 26], [3, 0, 64]],
                   "coarse_cascade": [[2, 16, 8]] + C + [[3, 0, 64]]},
    "o4-mu36-26": {"detail_cascade": [[2, 4, 8], [0, 64, 36], [0, 16, 26], [3, 0, 64]],
                   "coarse_cascade": [[2, 16, 8]] + C + [[3, 0, 64]]},
    "o4-mu26-16": {"detail_cascade": [[2, 4, 8], [0, 64, 26], [0, 16, 16], [3, 0, 64]],
                   "coarse_cascade": [[2, 16, 8]] + C + [[3, 0, 64]]},
    "o4-mu26-40": {"detail_cascade": [[2, 4, 8], [0, 64, 26], [0, 16, 40], [3, 0, 64]],
                   "coarse_cascade": [[2, 16, 8]] + C + [[3, 0, 64]]},
    "o4-mu36-40": {"detail_cascade": [[2, 4, 8], [0, 64, 36], [0, 16, 40], [3, 0, 64]],
                   "coarse_cascade": [[2, 16, 8]] + C + [[3, 0, 64]]},
    "ols4-d-mix64": {"detail_cascade": [[2, 4, 8]] + D + [[3, 0, 64]],
                     "coarse_cascade": C + [[3, 0, 64]]},
    "ols4-dc8-mix64": {"detail_cascade": [[2, 4, 8]] + D + [[3, 0, 64]],
                       "coarse_cascade": [[2, 8, 8]] + C + [[3, 0, 64]]},
    # float OLS upper bounds (prototype kernel)
    "fols16-d": {"_proto": {"ols_K": 8}, "detail_cascade": [[2, 16, 9]] + D},
    "fols16-c": {"_proto": {"ols_K": 8}, "coarse_cascade": [[2, 16, 9]] + C},
    "fols16-dc": {"_proto": {"ols_K": 8}, "detail_cascade": [[2, 16, 9]] + D,
                  "coarse_cascade": [[2, 16, 9]] + C},
    "fols32-dc": {"_proto": {"ols_K": 8}, "detail_cascade": [[2, 32, 9]] + D,
                  "coarse_cascade": [[2, 32, 9]] + C},
    "fols16-dc-l10": {"_proto": {"ols_K": 8}, "detail_cascade": [[2, 16, 10]] + D,
                      "coarse_cascade": [[2, 16, 10]] + C},
    "fols16-dc-l8": {"_proto": {"ols_K": 8}, "detail_cascade": [[2, 16, 8]] + D,
                     "coarse_cascade": [[2, 16, 8]] + C},
    "fols16-dc-nofeat": {"_proto": {"ols_K": 8, "ols_feats": 0},
                         "detail_cascade": [[2, 16, 9]] + D,
                         "coarse_cascade": [[2, 16, 9]] + C},
    "fols16-dc-K1": {"_proto": {"ols_K": 1}, "detail_cascade": [[2, 16, 9]] + D,
                     "coarse_cascade": [[2, 16, 9]] + C},
    "fols0-d": {"_proto": {"ols_K": 8}, "detail_cascade": [[2, 0, 8]] + D},
    "fols4-d": {"_proto": {"ols_K": 8}, "detail_cascade": [[2, 4, 8]] + D},
    "fols8-d": {"_proto": {"ols_K": 8}, "detail_cascade": [[2, 8, 8]] + D},
    "fols16-d-l8": {"_proto": {"ols_K": 8}, "detail_cascade": [[2, 16, 8]] + D},
    "fols16-d-l7": {"_proto": {"ols_K": 8}, "detail_cascade": [[2, 16, 7]] + D},
    "fols16-d-K32": {"_proto": {"ols_K": 32}, "detail_cascade": [[2, 16, 8]] + D},
    "fols8-d-K32": {"_proto": {"ols_K": 32}, "detail_cascade": [[2, 8, 8]] + D},
    "fols4-d-nf1": {"_proto": {"ols_K": 8, "ols_nf": 1}, "detail_cascade": [[2, 4, 8]] + D},
    "fols4-d-nf4": {"_proto": {"ols_K": 8, "ols_nf": 4}, "detail_cascade": [[2, 4, 8]] + D},
    "fols4-d-nf0": {"_proto": {"ols_K": 8, "ols_nf": 0}, "detail_cascade": [[2, 4, 8]] + D},
    "fols4-d-s1": {"_proto": {"ols_K": 8, "ols_dup": 1},
                   "detail_cascade": [D[0], [2, 4, 8]] + D[1:]},
    "fols8-d-s1": {"_proto": {"ols_K": 8, "ols_dup": 1},
                   "detail_cascade": [D[0], [2, 8, 8]] + D[1:]},
    "fols8-d-s1-nf0": {"_proto": {"ols_K": 8, "ols_dup": 1, "ols_nf": 0},
                       "detail_cascade": [D[0], [2, 8, 8]] + D[1:]},
    "fmu6": {"feature_mu": 6},
    "fmu24": {"feature_mu": 24},
    "fmu48": {"feature_mu": 48},
    "fols4-d-K32-mix64": {"_proto": {"ols_K": 32, "mix": 1, "mix_mu": 64},
                      "detail_cascade": [[2, 4, 8]] + D},
    "fols4-d-mix64": {"_proto": {"ols_K": 16, "mix": 1, "mix_mu": 64},
                      "detail_cascade": [[2, 4, 8]] + D},
    "fols4-d-l9-mix64": {"_proto": {"ols_K": 16, "mix": 1, "mix_mu": 64},
                      "detail_cascade": [[2, 4, 9]] + D},
    "fols4-d-w-mix64": {"_proto": {"ols_K": 16, "mix": 1, "mix_mu": 64, "ols_weight": 0.75},
                      "detail_cascade": [[2, 4, 8]] + D},
    "fols4-dc-mix64": {"_proto": {"ols_K": 16, "mix": 1, "mix_mu": 64},
                      "detail_cascade": [[2, 4, 8]] + D, "coarse_cascade": [[2, 8, 8]] + C},
    "mix16": {"_proto": {"mix": 1, "mix_mu": 16}},
    "mix64": {"_proto": {"mix": 1, "mix_mu": 64}},
    "mix4": {"_proto": {"mix": 1, "mix_mu": 4}},
    "mix128": {"_proto": {"mix": 1, "mix_mu": 128}},
    "mix256": {"_proto": {"mix": 1, "mix_mu": 256}},
    "bias4": {"_proto": {"bias": 1, "bias_rate": 4}},
    "bias5": {"_proto": {"bias": 1, "bias_rate": 5}},
    "bias7": {"_proto": {"bias": 1, "bias_rate": 7}},
    "boost2": {"_proto": {"init_boost": 2, "boost_len": 4096}},
    "boost4": {"_proto": {"init_boost": 4, "boost_len": 2048}},
    "d128": {"detail_cascade": [[0, 128, 26], [0, 16, 26], [1, 16, 8]]},
    "d32": {"detail_cascade": [[0, 32, 26], [0, 16, 26], [1, 16, 8]]},
    "d-3nlms": {"detail_cascade": [[0, 64, 26], [0, 32, 26], [0, 16, 26], [1, 16, 8]]},
    "fols16-dc-w": {"_proto": {"ols_K": 8, "ols_weight": 0.75},
                    "detail_cascade": [[2, 16, 9]] + D, "coarse_cascade": [[2, 16, 9]] + C},
}


def candidate_model(base, overrides: dict):
    model = copy.deepcopy(base)
    for k, v in overrides.items():
        if not k.startswith("_"):
            setattr(model.config, k, v)
    model._coding_state = None
    return model


def frames(split: int = 1):
    """The sample's frames; ``split`` > 1 cuts every frame into that many (a restart
    study: what the cascade's start from zero costs)."""
    out = []
    for name in SAMPLE:
        for pcm in read_frames(CORPUS / name, 1 << 17, FRAMES_PER_FILE):
            step = -(-len(pcm) // split)
            out.extend((name, pcm[k: k + step]) for k in range(0, len(pcm), step))
    return out


def measure(model, sample) -> tuple[dict[str, float], float, dict[str, float]]:
    cfg = model.config
    L = cfg.levels
    bands: dict[str, float] = {}
    per_file: dict[str, float] = {}
    seconds = 0.0
    for name, pcm in sample:
        t0 = time.perf_counter()
        code = analyse_frame(model, pcm)
        seconds += time.perf_counter() - t0
        total = float(code.side_bits())
        bands["side"] = bands.get("side", 0.0) + total
        for ch_bands in code.channels:
            for b, bc in enumerate(ch_bands):
                level = L + 1 - b
                key = "coarse" if b == 0 else f"d{level}"
                bits = band_bits(bc.residuals, bc.classes, cfg.block_length(level), model)
                bands[key] = bands.get(key, 0.0) + bits
                total += bits
        per_file[name] = per_file.get(name, 0.0) + total
    return bands, seconds, per_file


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=["baseline"])
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--json", help="candidate overrides as a JSON object (name 'custom')")
    ap.add_argument("--per-file", action="store_true")
    ap.add_argument("--split", type=int, default=1, help="cut every frame into N")
    args = ap.parse_args(argv)
    if args.list:
        for k, v in CANDIDATES.items():
            print(k, json.dumps(v))
        return 0
    cands = dict(CANDIDATES)
    names = list(args.names)
    if args.json:
        cands["custom"] = json.loads(args.json)
        names.append("custom")
    base, _ = load_model(None)
    sample = frames(args.split)
    samples = sum(p.size for _, p in sample)
    secs = sum(p.shape[0] for _, p in sample) / 44100.0
    print(f"sample: {len(SAMPLE)} files, {len(sample)} frames, {samples} samples")
    # warm-up (numba compilation) outside the timings
    analyse_frame(candidate_model(base, cands[names[0]]), sample[0][1][:5000])
    ref = None
    ref_files = None
    for name in names:
        model = candidate_model(base, cands[name])
        proto = cands[name].get("_proto")
        if proto is not None:
            from benchmarks import cascade_proto
            cascade_proto.install(**proto)
        analyse_frame(model, sample[0][1][:3000])
        bands, seconds, per_file = measure(model, sample)
        if proto is not None:
            cascade_proto.restore()
        total = sum(bands.values())
        if ref is None:
            ref, ref_files = total, per_file
        parts = " ".join(f"{k}={v / 8e3:.0f}" for k, v in bands.items())
        print(f"{name:24s} {total / 8e3:9.1f} kB {100 * (total / ref - 1):+7.3f} %  "
              f"analyse {seconds:6.1f} s ({secs / seconds:5.1f}x rt)  [{parts}]", flush=True)
        if args.per_file:
            for f, v in per_file.items():
                print(f"    {f:32s} {100 * (v / ref_files[f] - 1):+7.3f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
