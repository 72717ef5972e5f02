"""The reference decoder (``reference/``, written from docs/format.md alone) decodes every
committed golden lossless stream bit-exactly.

For each stream under ``tests/fixtures`` (hybridcodec 0.1's ``v1-cellar-01.hyb`` and
``golden/v<version>-<case>.hyb`` of every version) the reference decoder's PCM must have
the MD5 of the stream's end chunk (the compact chunk's, for a compact stream) and the
SHA-256 that ``tests/expected/golden.json`` pins for the codec's own decode (the bytes
``test_golden._pcm_sha`` hashes: the decoded WAV read back as int32 by soundfile, i.e.
each sample shifted to the top of 32 bits, then the rate). The package must not import
hybridcodec (nor anything but numpy and the standard library): checked on its sources
and by running it with hybridcodec made unimportable.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # reference/ is a top-level folder of the repository, not installed
    sys.path.insert(0, str(REPO))

import reference  # noqa: E402
from reference import cascade  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
GOLDEN = FIXTURES / "golden"
EXPECTED = REPO / "tests" / "expected" / "golden.json"
MODELS = REPO / "hybridcodec" / "models"
STREAMS = sorted(FIXTURES.glob("v*.hyb")) + sorted(GOLDEN.glob("v*.hyb"))


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads(EXPECTED.read_text())["streams"]


@pytest.fixture(scope="module")
def models() -> dict:
    return reference.load_models(MODELS)


def _pcm_sha(pcm: np.ndarray, bits: int, rate: int) -> str:
    """What test_golden._pcm_sha hashes for the decoded WAV: soundfile's int32 reading
    puts each sample at the top of 32 bits (a container of 1, 2 or 3 bytes)."""
    shift = 32 - 8 * ((bits + 7) // 8)
    data = np.ascontiguousarray((pcm.astype(np.int64) << shift).astype(np.int32)).tobytes()
    return hashlib.sha256(data + str(rate).encode()).hexdigest()


def test_every_committed_stream_is_pinned(expected):
    keys = {p.relative_to(FIXTURES).as_posix() for p in STREAMS}
    assert keys == set(expected), "golden.json and tests/fixtures disagree"
    assert {v["version"] for v in expected.values()} == {1, 2, 3, 4}


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
def test_reference_decoder_is_bit_exact(path, expected, models):
    want = expected[path.relative_to(FIXTURES).as_posix()]
    out = reference.decode(path, models)
    assert out.version == want["version"]
    assert out.pcm.shape[1] == out.channels
    assert reference.pcm_md5(out.pcm, out.bits_per_sample) == out.md5
    assert out.md5_ok, f"{path.name}: the PCM does not have the stream's MD5"
    assert _pcm_sha(out.pcm, out.bits_per_sample, out.sample_rate) == want["pcm"]


def test_bundled_models_are_found_by_the_id_computed_from_them(models):
    # the model registry of docs/format.md: every entry ships, and its id is the hash
    assert set(models) == {"e40987291b5fd215", "ccd651dbb62662d7", "966f00cb4bbff40b"}


def test_a_changed_cascade_constant_is_caught(monkeypatch, models):
    """The comparison is sensitive: the reference decoder with one cascade constant of
    the document changed no longer reproduces a stream (the OLS ridge here; the v4
    streams' cascades start with an OLS stage)."""
    path = GOLDEN / "v4-speech8k.hyb"
    assert reference.decode(path, models).md5_ok
    monkeypatch.setattr(cascade, "OLS_RHO", cascade.OLS_RHO + 1)
    try:
        out = reference.decode(path, models)
    except reference.Corrupt:
        return  # e.g. data left over, a class or sample out of range
    assert not out.md5_ok


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            yield "__import__", 0  # no dynamic imports either


def test_reference_imports_only_numpy_and_the_standard_library():
    sources = sorted((REPO / "reference").glob("*.py"))
    assert sources
    for path in sources:
        for module, level in _imports(path):
            if level:  # relative: inside reference/
                continue
            top = module.split(".")[0]
            assert top == "numpy" or top in sys.stdlib_module_names, (
                f"{path.name} imports {module}")


def test_reference_decodes_with_hybridcodec_unimportable(tmp_path):
    """In a fresh interpreter where importing hybridcodec (or constriction, numba, torch,
    soundfile) fails, the reference decoder still decodes a stream of each container
    (version 1 and a compact version 4 stream) to its MD5."""
    script = textwrap.dedent(f"""
        import sys
        BLOCKED = {{"hybridcodec", "constriction", "numba", "torch", "soundfile", "scipy"}}
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is blocked")
                return None
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(REPO)!r})
        import reference
        for p in sys.argv[1:]:
            out = reference.decode(p, {str(MODELS)!r})
            assert out.md5_ok, p
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        print("ok")
    """)
    streams = [FIXTURES / "v1-cellar-01.hyb", GOLDEN / "v4-compact.hyb"]
    run = subprocess.run([sys.executable, "-c", script, *map(str, streams)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


@pytest.mark.parametrize("source, model", [("three-channel.flac", "e40987291b5fd215"),
                                           ("speech8k.flac", "ccd651dbb62662d7")])
def test_version_4_streams_of_the_layered_models(source, model, models, tmp_path):
    """No committed stream is of version 4 with a layered (payload 2) model: the codec
    writes one here (a unit per layer), and the reference decoder decodes it to its MD5
    and to the codec's own PCM."""
    import hybridcodec
    import soundfile as sf

    stream, wav = tmp_path / "s.hyb", tmp_path / "s.wav"
    hybridcodec.encode(GOLDEN / source, stream, model=str(MODELS / f"{model}.hcm"))
    out = reference.decode(stream, models)
    assert (out.version, out.model_id) == (4, model)
    assert out.md5_ok
    hybridcodec.decode(stream, wav)
    pcm, rate = sf.read(wav, dtype="int32", always_2d=True)
    assert rate == out.sample_rate
    assert _pcm_sha(out.pcm, out.bits_per_sample, rate) == hashlib.sha256(
        np.ascontiguousarray(pcm).tobytes() + str(rate).encode()).hexdigest()
