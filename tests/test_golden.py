"""Golden bitstreams: the bytes this build writes and the PCM it decodes are pinned.

``tests/expected/golden.json`` holds, for every source in ``CASES``, the SHA-256 of the
stream the current encoder writes (default model), of the PCM its lossless decode gives,
and of every named lower tier (the truncated stream and its decode with each fill mode).
Every stream committed under ``tests/fixtures`` (one per source and format version, plus
hybridcodec 0.1's ``v1-cellar-01.hyb``) is pinned by the PCM it decodes to, so streams of
every earlier version keep decoding exactly.

Any change that alters a stream (a constant of the cascade, the tables, the layer order,
the fill's random draws, ...) fails here. Such a change is a format change: bump
``FORMAT_VERSION`` in ``hybridcodec/format/common.py``, then regenerate on purpose::

    HYBRIDCODEC_REGENERATE_GOLDEN=1 python -m pytest tests/test_golden.py

which rewrites ``golden.json`` and writes ``tests/fixtures/golden/v<version>-<case>.hyb``
for the new version. It refuses to overwrite a committed stream of an existing version
with different bytes: that is exactly the silent format change this file exists to stop.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hybridcodec
from hybridcodec.container import FORMAT_VERSION, StreamReader
from hybridcodec.model import load_model
from hybridcodec.precision import FILL_MODES
from hybridcodec.tiers import TIERS
from hybridcodec.truncation import truncate_file

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"
EXPECTED = Path(__file__).parent / "expected" / "golden.json"
REGENERATE = os.environ.get("HYBRIDCODEC_REGENERATE_GOLDEN") == "1"


def _synthetic(path: Path) -> None:
    """Mono 16-bit 8 kHz, two frames and a bit (so frame boundaries are pinned too):
    a sawtooth with integer LCG noise, digital silence, a stretch with 3 wasted bits and
    a clipped stretch. Only integer arithmetic, so the source is identical everywhere."""
    n = (1 << 17) + 777
    idx = np.arange(n, dtype=np.int64)
    state = (idx * 1103515245 + 12345) % (1 << 31)
    noise = (state >> 16) % 9 - 4
    x = (idx * 37) % 2000 - 1000 + noise
    x[20000:26000] = 0
    x[40000:50000] = (x[40000:50000] * 5) << 3
    x[90000:91000] = 32767
    sf.write(path, x.astype(np.int16), 8000, subtype="PCM_16", format="WAV")


def _riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(cid + struct.pack("<I", len(b)) + b + b"\0" * (len(b) & 1)
                    for cid, b in chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def _tagged(path: Path) -> None:
    """5.1 (side) 24-bit WAVE_FORMAT_EXTENSIBLE, channel mask 0x60F, 1000 samples of
    integer LCG noise, with LIST/INFO and bext chunks before the data and an id3 chunk
    after it; built byte by byte (no libsndfile), so the source, the stream's metadata
    chunk and the decoded file are pinned exactly. Its chunks are laid out as the decoder
    writes them (fmt, fact, the rest), so a decode gives back this very file."""
    n, ch = 1000, 6
    idx = np.arange(n * ch, dtype=np.int64)
    x = ((idx * 1103515245 + 12345) % (1 << 31) >> 7) - (1 << 23)
    data = x.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    fmt = struct.pack("<HHIIHHHHI16s", 0xFFFE, ch, 48000, 48000 * ch * 3, ch * 3, 24, 22, 24,
                      0x60F, bytes.fromhex("0100000000001000800000aa00389b71"))
    info = b"INFO" + b"INAM" + struct.pack("<I", 12) + b"Golden take\0" \
        + b"IART" + struct.pack("<I", 7) + b"Nobody\0\0"
    bext = b"golden".ljust(256, b"\0") + bytes(346)
    path.write_bytes(_riff([(b"fmt ", fmt), (b"fact", struct.pack("<I", n)), (b"LIST", info),
                            (b"bext", bext), (b"data", data), (b"id3 ", b"ID3\x04" + bytes(6))]))


def _bare_speech(path: Path) -> None:
    """The speech8k clip's PCM as a plain WAV: no metadata, one frame, so the stream is
    compact (format 4: the whole stream in one chunk)."""
    pcm, rate = sf.read(GOLDEN / "speech8k.flac", dtype="int16")
    sf.write(path, pcm, rate, subtype="PCM_16", format="WAV")


# name -> source file (in tests/fixtures) or a generator writing it into a temp folder
CASES = {
    "cellar-01": FIXTURES / "v1-cellar-01.flac",  # 0.9 s CD stereo (stereo modes)
    "mono24": GOLDEN / "mono24.flac",  # 24-bit mono test-bench signal (cellar-62)
    "three-channel": GOLDEN / "three-channel.flac",  # cross-channel context (cellar-38)
    "piano": GOLDEN / "piano.flac",  # solo instrument
    "speech8k": GOLDEN / "speech8k.flac",  # a whole 0.3 s speech8k clip
    "synthetic": _synthetic,  # two frames, silence, wasted bits, clipping
    "tagged": _tagged,  # metadata chunk: WAVEX fmt (mask 0x60F), LIST/INFO, bext, id3
    "compact": _bare_speech,  # one frame, no metadata: a compact stream
}
LOWER_TIERS = [t for t in TIERS if t != "lossless"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pcm_sha(path: Path) -> str:
    pcm, rate = sf.read(path, dtype="int32", always_2d=True)
    return _sha(np.ascontiguousarray(pcm).tobytes() + str(rate).encode())


def _source(name: str, tmp: Path) -> Path:
    src = CASES[name]
    if callable(src):
        path = tmp / f"{name}.wav"
        src(path)
        return path
    return src


def _committed_streams() -> list[Path]:
    return sorted(FIXTURES.glob("v*.hyb")) + sorted(GOLDEN.glob("v*.hyb"))


def _version(path: Path) -> int:
    with open(path, "rb") as fp:
        return StreamReader(fp).header.version


def _measure(name: str, tmp: Path) -> dict:
    """Everything pinned for one source: current encoder output and its decodes."""
    src = _source(name, tmp)
    stream = tmp / f"{name}.hyb"
    hybridcodec.encode(src, stream, overwrite=True)
    decoded = tmp / f"{name}.wav"
    hybridcodec.decode(stream, decoded, overwrite=True)
    assert _pcm_sha(decoded) == _pcm_sha(src), f"{name}: lossless decode is not exact"
    entry = {"stream": _sha(stream.read_bytes()), "pcm": _pcm_sha(decoded), "tiers": {}}
    for tier in LOWER_TIERS:
        low = tmp / f"{name}-{tier}.hyb"
        truncate_file(stream, low, tier=tier, overwrite=True)
        t = {"stream": _sha(low.read_bytes())}
        for fill in FILL_MODES:
            out = tmp / f"{name}-{tier}-{fill}.wav"
            hybridcodec.decode(low, out, fill=fill, seed=0, overwrite=True)
            t[f"pcm_{fill}"] = _pcm_sha(out)
        entry["tiers"][tier] = t
    return entry


def _regenerate(tmp: Path) -> None:
    cases = {}
    for name in CASES:
        cases[name] = _measure(name, tmp)
        committed = GOLDEN / f"v{FORMAT_VERSION}-{name}.hyb"
        data = (tmp / f"{name}.hyb").read_bytes()
        if committed.exists() and committed.read_bytes() != data:
            raise AssertionError(
                f"{committed.name}: the encoder now writes different bytes for format "
                f"version {FORMAT_VERSION}. Bump FORMAT_VERSION (format/common.py) and keep "
                f"this stream as the fixture of version {FORMAT_VERSION}.")
        committed.write_bytes(data)
    streams = {}
    for path in _committed_streams():
        out = tmp / f"committed-{path.stem}.wav"
        hybridcodec.decode(path, out, overwrite=True)
        streams[path.relative_to(FIXTURES).as_posix()] = {"version": _version(path),
                                                          "pcm": _pcm_sha(out)}
    EXPECTED.parent.mkdir(exist_ok=True)
    EXPECTED.write_text(json.dumps({
        "format_version": FORMAT_VERSION, "model_id": load_model(None)[1],
        "cases": cases, "streams": streams}, indent=1, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> dict:
    if REGENERATE:
        _regenerate(tmp_path_factory.mktemp("regenerate"))
    return json.loads(EXPECTED.read_text())


def test_golden_file_describes_this_format_version(expected):
    assert expected["format_version"] == FORMAT_VERSION, (
        "golden.json was made for another format version: regenerate it on purpose")
    assert expected["model_id"] == load_model(None)[1], (
        "the embedded default model changed: streams change with it, so bump the "
        "format version and regenerate")
    assert set(expected["cases"]) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_encoder_output_is_pinned(name, expected, tmp_path):
    got = _measure(name, tmp_path)
    want = expected["cases"][name]
    assert got["stream"] == want["stream"], (
        f"{name}: the encoder's bytes changed. That is a format change: bump "
        f"FORMAT_VERSION and regenerate (see this module's docstring)")
    assert got["pcm"] == want["pcm"]
    for tier in LOWER_TIERS:
        assert got["tiers"][tier] == want["tiers"][tier], f"{name}: tier {tier} changed"


def test_every_case_has_a_committed_stream_of_this_version():
    for name in CASES:
        assert (GOLDEN / f"v{FORMAT_VERSION}-{name}.hyb").is_file(), name


def test_committed_streams_match_this_encoder(tmp_path):
    """The fixture of the current version is byte for byte what the encoder writes."""
    for name in CASES:
        stream = tmp_path / f"{name}.hyb"
        hybridcodec.encode(_source(name, tmp_path), stream)
        committed = GOLDEN / f"v{FORMAT_VERSION}-{name}.hyb"
        assert stream.read_bytes() == committed.read_bytes(), name


@pytest.mark.parametrize("path", _committed_streams(), ids=lambda p: p.name)
def test_committed_stream_decodes_as_pinned(path, expected, tmp_path):
    """Streams of every format version keep decoding to exactly the same PCM."""
    key = path.relative_to(FIXTURES).as_posix()
    assert key in expected["streams"], f"{key}: not pinned; regenerate golden.json"
    want = expected["streams"][key]
    assert _version(path) == want["version"]
    out = tmp_path / "out.wav"
    report = hybridcodec.decode(path, out)
    assert report.md5_ok is True
    assert _pcm_sha(out) == want["pcm"]


def test_committed_streams_cover_every_version(expected):
    versions = {v["version"] for v in expected["streams"].values()}
    assert versions == set(range(1, FORMAT_VERSION + 1))


def test_committed_streams_cover_both_layouts_of_this_version():
    """Format 4 has two layouts: normal (with and without metadata and index) and
    compact; each is pinned."""
    seen = set()
    for name in CASES:
        with open(GOLDEN / f"v{FORMAT_VERSION}-{name}.hyb", "rb") as fp:
            reader = StreamReader(fp)
            seen.add((reader.compact, reader.has_index, reader.header.metadata is not None))
    assert (True, False, False) in seen  # compact
    assert (False, True, False) in seen  # several frames, an index
    assert (False, False, True) in seen  # one frame with metadata


def test_pcm_hash_sees_one_sample(tmp_path):
    """The pin is sensitive: one changed sample gives another hash."""
    pcm = np.zeros((100, 2), np.int16)
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, pcm, 44100)
    pcm[57, 1] = 1
    sf.write(b, pcm, 44100)
    assert _pcm_sha(a) != _pcm_sha(b)


def test_tagged_stream_decodes_to_its_source_file_byte_for_byte(tmp_path):
    """The committed stream of the metadata case gives back the source file itself:
    audio, fmt chunk (WAVE_FORMAT_EXTENSIBLE, mask 0x60F) and every chunk around the data."""
    source = tmp_path / "tagged.wav"
    _tagged(source)
    out = tmp_path / "out.wav"
    report = hybridcodec.decode(GOLDEN / f"v{FORMAT_VERSION}-tagged.hyb", out)
    assert report.clean and not report.notes
    assert out.read_bytes() == source.read_bytes()
