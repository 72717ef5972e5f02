"""Fuzzing the whole decoder (container + frame codec + MD5) with mutated valid streams.

A few hundred seeded cases: bit flips, byte insertions and deletions, truncation at every
chunk / layer boundary (and one byte either side), random header JSON with a valid CRC,
huge declared lengths with valid CRCs, frames duplicated, swapped or taken from another
stream, and garbage. Every case is decoded twice, strictly and with ``ignore_errors``,
from a seekable or a pipe-like input, and every outcome must be one of:

* exact audio (strict decode succeeded: the output equals the original samples);
* a lower tier: a header that (CRC and all) declares fewer layers than the original is a
  valid lower-tier stream, decoded without the MD5 check;
* the codec's own error (a ``HybridCodecError`` subclass), with a one-line message;
* with ``ignore_errors``: a report listing damaged frames, where every frame *not*
  listed decodes to exactly the original samples (when the header is the original one).

No other exception, no case slower than ``CASE_SECONDS`` (a hang trips faulthandler's
watchdog, which ends the run with a traceback), and for the huge-length cases no
allocation beyond ``MAX_ALLOC`` bytes (tracemalloc). Outcome counts are printed: run with
``-s`` to see them.
"""

from __future__ import annotations

import collections
import faulthandler
import io
import json
import random
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from nonseekable import NoSeek
import soundfile as sf

from hybridcodec import codec
from hybridcodec.container import StreamReader
from hybridcodec.errors import HybridCodecError
from hybridcodec.model import HybridModel, ModelConfig

SEED = 20240606
FRAME = 512
CASE_SECONDS = 10.0  # per case (both decodes); typical is ~0.05 s
WATCHDOG_SECONDS = 120  # a case this slow is a hang: faulthandler ends the run
MAX_ALLOC = 32 << 20  # bytes, for the huge-length cases


def crc(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)


# --------------------------------------------------------------------------- structure


def parse(data: bytes):
    """(header_end, frames, end_start) of a valid stream, straight from docs/format.md.

    frames: list of dicts with start, table (offset of the layer table), n (layers),
    payloads [(offset, length)], end.
    """
    json_len = struct.unpack_from("<H", data, 6)[0]
    pos = 12 + json_len
    header_end = pos
    frames = []
    while data[pos: pos + 2] == b"HF":
        n = data[pos + 10]
        entries = [struct.unpack_from("<BI", data, pos + 11 + 5 * i) for i in range(n)]
        f = {"start": pos, "table": pos + 11, "n": n, "payloads": []}
        p = pos + 15 + 5 * n
        for _, length in entries:
            f["payloads"].append((p, length))
            p += length + 4
        f["end"] = p
        frames.append(f)
        pos = p
    return header_end, frames, pos


def boundaries(data: bytes) -> list[int]:
    """Every chunk and field boundary one byte either side; every layer payload's start
    and its CRC's start."""
    header_end, frames, end_start = parse(data)
    cuts = {0, 3, 4, 5, 8, header_end - 4, header_end, end_start, end_start + 2,
            end_start + 30, len(data) - 1}
    for f in frames:
        cuts |= {f["start"], f["start"] + 2, f["table"], f["table"] + 5 * f["n"],
                 f["table"] + 5 * f["n"] + 4}
    out = set()
    for c in cuts:
        out |= {c - 1, c, c + 1}
    for f in frames:
        for off, length in f["payloads"]:
            out |= {off, off + length}
    return sorted(c for c in out if 0 <= c < len(data))


# --------------------------------------------------------------------------- mutations


def mutations(data: bytes, other: bytes, rng: random.Random):
    """Yield (kind, mutated bytes)."""
    header_end, frames, end_start = parse(data)
    n = len(data)
    yield "control", data  # unchanged: must decode exactly
    # truncation at every boundary (+-1)
    for cut in boundaries(data):
        yield "truncate", data[:cut]
    # bit flips, anywhere and in the structure
    for i in range(110):
        d = bytearray(data)
        for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
            pos = rng.randrange(n) if i % 2 else rng.choice(boundaries(data))
            d[pos] ^= 1 << rng.randrange(8)
        yield "bitflip", bytes(d)
    for _ in range(35):
        d = bytearray(data)
        pos = rng.randrange(n + 1)
        d[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 3, 16, 100])))
        yield "insert", bytes(d)
    for _ in range(35):
        d = bytearray(data)
        pos = rng.randrange(n)
        del d[pos: pos + rng.choice([1, 2, 3, 16, 100])]
        yield "delete", bytes(d)
    # random headers with a valid CRC, followed by the original frames
    original = json.loads(data[8:header_end - 4])
    for _ in range(30):
        obj = dict(original)
        for key in rng.sample(sorted(obj), rng.randrange(1, 4)):
            obj[key] = rng.choice([
                0, 1, -1, 7, 2**31, 2**40, 2**64, 10**30, 1.5, True, None, "", "x" * 300,
                "PCM_16", [1], {"a": 1}, obj[key]])
        if rng.random() < 0.2:
            obj.pop(rng.choice(sorted(obj)))
        body = json.dumps(obj).encode()
        head = b"HYBC" + bytes([1, 0]) + struct.pack("<H", len(body)) + body
        yield "header", head + crc(head) + data[header_end:]
    # huge declared lengths, with CRCs recomputed so that the length itself is read
    f = frames[len(frames) // 2]
    table_end = f["table"] + 5 * f["n"]
    for value in (2**32 - 1, 2**31, n, n - f["payloads"][0][0] + 1):
        d = bytearray(data)
        struct.pack_into("<I", d, f["table"] + 1, value)
        d[table_end: table_end + 4] = crc(bytes(d[f["start"]: table_end]))
        yield "huge-length", bytes(d)
    for field, value in (("num_samples", 2**40 - 1), ("num_samples", 2**33),
                         ("frame_length", 2**20), ("channels", 8), ("levels", 16),
                         ("num_layers", 64)):
        obj = dict(original, **{field: value})
        body = json.dumps(obj).encode()
        head = b"HYBC" + bytes([1, 0]) + struct.pack("<H", len(body)) + body
        yield "huge-length", head + crc(head) + data[header_end:]
    full = original["num_layers"]
    for value in sorted({1, 2, full // 2, full - 1} - {0, full}):  # a lower tier, or not
        obj = dict(original, num_layers=value)
        body = json.dumps(obj).encode()
        head = b"HYBC" + bytes([1, 0]) + struct.pack("<H", len(body)) + body
        yield "fewer-layers", head + crc(head) + data[header_end:]
    for value in (65535, 60000):  # json_len beyond the input
        d = bytearray(data)
        struct.pack_into("<H", d, 6, value)
        yield "huge-length", bytes(d)
    for value in (2**32 - 1, 2**20):  # frame sample count, CRC fixed
        d = bytearray(data)
        struct.pack_into("<I", d, f["start"] + 6, value)
        d[table_end: table_end + 4] = crc(bytes(d[f["start"]: table_end]))
        yield "huge-length", bytes(d)
    # frames duplicated, swapped, dropped, or from another stream
    chunks = [data[fr["start"]: fr["end"]] for fr in frames]
    head, tail = data[:header_end], data[end_start:]
    for _ in range(6):
        i = rng.randrange(len(chunks))
        yield "frames", head + b"".join(chunks[: i + 1] + chunks[i:]) + tail
        j = rng.randrange(len(chunks))
        c = list(chunks)
        c[i], c[j] = c[j], c[i]
        yield "frames", head + b"".join(c) + tail
        yield "frames", head + b"".join(chunks[:i] + chunks[i + 1:]) + tail
    o_end, o_frames, _ = parse(other)
    for i in range(min(len(chunks), len(o_frames))):
        c = list(chunks)
        c[i] = other[o_frames[i]["start"]: o_frames[i]["end"]]
        yield "frames", head + b"".join(c) + tail
    # garbage
    for size in (0, 1, 4, 12, 100, 5000):
        yield "garbage", bytes(rng.randrange(256) for _ in range(size))
        yield "garbage", b"HYBC\x01" + bytes(rng.randrange(256) for _ in range(size))


# --------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("fuzzmodel") / "fuzz.hcm"
    HybridModel(ModelConfig(frame_length=FRAME)).save(path)
    return str(path)


def source_audio(corpus: str | None, n: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if corpus:
        x, _ = sf.read(corpus, dtype="int16", always_2d=True, frames=n, start=20000)
        x = x[:, :channels]
        if x.shape[1] == channels and len(x) == n:
            return x
    t = np.arange(n)[:, None]
    return (4000 * np.sin(t * (0.01 + 0.02 * np.arange(channels))) +
            rng.normal(0, 200, (n, channels))).astype(np.int16)


def encode(x: np.ndarray, model: str) -> bytes:
    wav = io.BytesIO()
    sf.write(wav, x, 44100, subtype="PCM_16", format="WAV")
    wav.seek(0)
    out = io.BytesIO()
    codec.encode_file(wav, out, model=model)
    return out.getvalue()


def decode(data: bytes, model: str, seekable: bool, **kw):
    out = io.BytesIO()
    src = io.BytesIO(data) if seekable else NoSeek(data)
    report = codec.decode_file(src, out, model=model, **kw)
    y, _ = sf.read(io.BytesIO(out.getvalue()), dtype="int16", always_2d=True)
    return y, report


def carried(data: bytes) -> int:
    """The header's num_layers: fewer than the original's makes a (valid) lower tier."""
    return StreamReader(io.BytesIO(data)).header.num_layers


def test_fuzz_decoder(model_path, repo_dir):
    corpus = repo_dir.parent / "shared" / "data" / "corpus" / "music" / "cellar-01.flac"
    corpus = str(corpus) if corpus.exists() else None
    x = source_audio(corpus, 3 * FRAME + 100, 2, 1)  # 4 frames, the last short
    data = encode(x, model_path)
    other = encode(source_audio(None, 3 * FRAME + 100, 2, 2), model_path)
    header_end = parse(data)[0]
    rng = random.Random(SEED)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    totals: collections.Counter = collections.Counter()
    slowest = 0.0
    cases = 0
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, repeat=True, exit=True)
    try:
        for kind, mutated in mutations(data, other, rng):
            cases += 1
            seekable = cases % 2 == 0
            start = time.perf_counter()
            watch = kind == "huge-length"
            if watch:
                tracemalloc.start()
            # strict: exact audio, a lower tier, or the codec's own error
            try:
                y, report = decode(mutated, model_path, seekable)
            except HybridCodecError as exc:
                assert "\n" not in str(exc), (kind, str(exc))
                strict = type(exc).__name__
            else:
                if y.shape == x.shape and np.array_equal(y, x):
                    strict = "exact"
                elif carried(mutated) < carried(data):
                    strict = "lower tier"
                else:
                    pytest.fail(f"{kind} case {cases}: decoded to wrong audio without an error")
            # recovering: same, or a list of damaged frames; the rest must be exact
            try:
                y, report = decode(mutated, model_path, seekable, ignore_errors=True)
            except HybridCodecError as exc:
                assert "\n" not in str(exc), (kind, str(exc))
                recovering = type(exc).__name__
            else:
                if report.clean:
                    assert np.array_equal(y, x), (kind, cases)
                    recovering = "clean"
                elif carried(mutated) < carried(data) and report.md5_ok is None \
                        and not report.damaged:
                    recovering = "lower tier"
                else:
                    recovering = f"recovered ({len(report.damaged)} damaged)" \
                        if report.damaged else "recovered (warnings only)"
                    wrong = any("decoded audio is wrong" in w for w in report.warnings)
                    if mutated[:header_end] == data[:header_end] and not wrong:
                        # (a frame spliced in from another stream passes its CRCs and
                        # decodes; only the MD5 can tell, and it did: skip this check)
                        # the output may end early (a lost tail), and says so
                        assert len(y) <= len(x) and y.shape[1] == x.shape[1]
                        if len(y) < len(x):
                            assert "stream ends after" in report.warnings[0], (kind, cases)
                        bad = np.zeros(len(y), bool)
                        for r in report.damaged:
                            bad[r.start: r.end] = True
                        assert np.array_equal(y[~bad], x[: len(y)][~bad]), (kind, cases)
                        assert not y[bad].any()
            if watch:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                assert peak < MAX_ALLOC, (kind, cases, peak)
            elapsed = time.perf_counter() - start
            slowest = max(slowest, elapsed)
            assert elapsed < CASE_SECONDS, (kind, cases, elapsed)
            counts[kind][f"strict: {strict}"] += 1
            counts[kind][f"ignore-errors: {recovering}"] += 1
            totals[f"strict: {strict}"] += 1
            totals[f"ignore-errors: {recovering}"] += 1
    finally:
        faulthandler.cancel_dump_traceback_later()
        if tracemalloc.is_tracing():
            tracemalloc.stop()
    print(f"\nfuzz: {cases} cases from a {len(data)}-byte stream "
          f"({len(x)} samples, {-(-len(x) // FRAME)} frames); slowest case {slowest:.2f} s")
    for kind in sorted(counts):
        n = sum(counts[kind].values()) // 2
        print(f"  {kind} ({n}): " + ", ".join(f"{k} {v}" for k, v in sorted(counts[kind].items())))
    print("  all: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    assert cases >= 300
    assert totals["strict: exact"] >= 1  # e.g. truncation of nothing, a flip in a no-op spot
