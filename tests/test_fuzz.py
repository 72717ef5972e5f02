"""Fuzzing the whole decoder (container + frame codec + MD5) with mutated valid streams.

A few hundred seeded cases per stream: bit flips, byte insertions and deletions,
truncation at every chunk / field boundary (and one byte either side), random headers
with a valid CRC, huge declared lengths with valid CRCs, frames duplicated, swapped or
taken from another stream, frames cut to fewer layers behind valid CRCs, and garbage. The
streams: with format 4's segmented payload (the default model's), a format 4 stream of
four frames (with its index) and a format 4 compact stream (one frame, one unit); with
the layered payload of formats 1-3, four frames in format 4 and the same four frames in
the format 3 layout. Every case is decoded
twice, strictly and with ``ignore_errors``, from a seekable or a pipe-like input, and
every outcome must be one of:

* exact audio (strict decode succeeded: the output equals the original samples);
* a lower tier: a stream that (CRCs and all) carries fewer layers than the original is a
  valid lower-tier stream, decoded without the MD5 check;
* the codec's own error (a ``HybridCodecError`` subclass), with a one-line message;
* with ``ignore_errors``: a report listing damaged frames, where every frame *not*
  listed decodes to exactly the original samples (when the header is the original one).

No other exception, no case slower than ``CASE_SECONDS`` (a hang trips faulthandler's
watchdog, which ends the run with a traceback), and for the huge-length cases no
allocation beyond ``MAX_ALLOC`` bytes (tracemalloc). Outcome counts are printed: run with
``-s`` to see them. The mutations and the rules live in ``fuzzcases.py``, which the long
campaign (``python -m benchmarks.fuzz_campaign``) shares.
"""

from __future__ import annotations

import collections
import contextlib
import faulthandler
import io
import random
import time

import pytest

import v4raw
from fuzzcases import (FRAME, MAX_ALLOC, Target, allocation_cap, as_version_3, encode,
                       fuzz_models, mutations, mutations_compact, mutations_v4, outcome, parse,
                       source_audio)
from hybridcodec.container import StreamReader

SEED = 20240606
CASE_SECONDS = 10.0  # per case (both decodes); typical is ~0.05 s
WATCHDOG_SECONDS = 120  # a case this slow is a hang: faulthandler ends the run


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory) -> dict[str, str]:
    """Models of short frames: see fuzzcases.fuzz_models."""
    return fuzz_models(tmp_path_factory.mktemp("fuzzmodel"))


@pytest.mark.parametrize("layout", ["v4", "v4-compact", "v4-layered", "v3"])
def test_fuzz_decoder(model_paths, repo_dir, layout):
    corpus = repo_dir.parent / "shared" / "data" / "corpus" / "music" / "cellar-01.flac"
    corpus = str(corpus) if corpus.exists() else None
    model_path = model_paths["layered" if layout in ("v4-layered", "v3") else "segmented"]
    n = FRAME - 100 if layout == "v4-compact" else 3 * FRAME + 100  # 1 frame, or 4
    x = source_audio(corpus, n, 2, 1)
    data = encode(x, model_path)
    other = encode(source_audio(None, n, 2, 2), model_path)
    if layout == "v3":
        data, other = as_version_3(data), as_version_3(other)
        header_end = parse(data)[0]
        cases_of = mutations
    elif layout in ("v4", "v4-layered"):
        header_end = v4raw.frame_spans(data)["header"][1]
        cases_of = mutations_v4
    else:
        assert StreamReader(io.BytesIO(data)).compact
        header_end = v4raw.body_end(data)
        cases_of = mutations_compact
    target = Target(data, header_end, model_path, 16, {("sample", 0): x})
    rng = random.Random(SEED)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    totals: collections.Counter = collections.Counter()
    slowest = 0.0
    cases = 0
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, repeat=True, exit=True)
    try:
        for kind, mutated in cases_of(data, other, rng):
            cases += 1
            seekable = cases % 2 == 0
            start = time.perf_counter()
            watch = allocation_cap(MAX_ALLOC, f"{kind} case {cases}") \
                if kind == "huge-length" else contextlib.nullcontext()
            with watch:
                strict, recovering = outcome(target, kind, mutated, seekable)
            elapsed = time.perf_counter() - start
            slowest = max(slowest, elapsed)
            assert elapsed < CASE_SECONDS, (kind, cases, elapsed)
            counts[kind][f"strict: {strict}"] += 1
            counts[kind][f"ignore-errors: {recovering}"] += 1
            totals[f"strict: {strict}"] += 1
            totals[f"ignore-errors: {recovering}"] += 1
    finally:
        faulthandler.cancel_dump_traceback_later()
    print(f"\nfuzz {layout}: {cases} cases from a {len(data)}-byte stream "
          f"({len(x)} samples, {-(-len(x) // FRAME)} frames); slowest case {slowest:.2f} s")
    for kind in sorted(counts):
        n = sum(counts[kind].values()) // 2
        print(f"  {kind} ({n}): " + ", ".join(f"{k} {v}" for k, v in sorted(counts[kind].items())))
    print("  all: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    assert cases >= (200 if layout == "v4-compact" else 300)
    assert totals["strict: exact"] >= 1  # e.g. truncation of nothing, a flip in a no-op spot
