"""Start-up: what the command line imports, where numba caches the kernels, and that a
command-line process spares numba's optional imports while a library process keeps them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hybridcodec
from hybridcodec import jit

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "numba", "scipy", "constriction", "torch", "soundfile", "llvmlite")


def python(code: str, *args: str, env: dict | None = None, cwd=None) -> dict:
    """Run ``code`` in a fresh interpreter with this checkout first on the path; the code
    prints one JSON object on its last line, which is returned."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), **(env or {})}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=environ,
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


LOADED = """
import json, sys
def loaded(prefixes):
    return sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in prefixes})
"""


def test_import_cli_loads_nothing_heavy():
    got = python(LOADED + f"""
import hybridcodec, hybridcodec.cli
print(json.dumps({{"loaded": loaded({HEAVY!r})}}))
""")
    assert got["loaded"] == []


def test_version_loads_nothing_heavy():
    got = python(LOADED + f"""
import io, contextlib
sys.argv = ["hybridcodec", "--version"]
from hybridcodec.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main()
print(json.dumps({{"code": code, "out": out.getvalue(),
                  "loaded": loaded({HEAVY!r} + ("importlib.metadata",))}}))
""")
    assert got["code"] == 0 and got["loaded"] == []
    assert got["out"].strip() == f"hybridcodec {hybridcodec.__version__}"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    rng = np.random.default_rng(0)
    sf.write(path, rng.integers(-3000, 3000, (3000, 2)).astype(np.int16), 44100,
             subtype="PCM_16")
    return path


COMMAND_LINE = LOADED + """
import gc
sys.argv = ["hybridcodec", *sys.argv[1:]]
from hybridcodec.cli import main
code = main()
import numba.np.arraymath
print(json.dumps({"code": code, "gc": gc.isenabled(), "blas": numba.np.arraymath._HAVE_BLAS,
                  "loaded": sorted(m for m in ("scipy.linalg", "cffi", "multiprocessing",
                                               "concurrent.futures") if m in sys.modules)}))
"""


def test_command_line_spares_numba_what_the_kernels_do_not_need(clip, tmp_path):
    """The command line (main() on sys.argv) codes without scipy.linalg, cffi or a process
    pool, with the collector running again, and writes the bytes the library writes."""
    out = tmp_path / "clip.hyb"
    got = python(COMMAND_LINE, "encode", str(clip), str(out), "-q")
    assert got == {"code": 0, "gc": True, "blas": False, "loaded": []}
    expected = tmp_path / "library.hyb"
    hybridcodec.encode(clip, expected)
    assert out.read_bytes() == expected.read_bytes()
    got = python(COMMAND_LINE, "decode", str(out), str(tmp_path / "back.wav"), "-q")
    assert got == {"code": 0, "gc": True, "blas": False, "loaded": []}
    assert np.array_equal(sf.read(tmp_path / "back.wav", dtype="int16")[0],
                          sf.read(clip, dtype="int16")[0])


def test_command_line_with_workers(clip, tmp_path):
    out = tmp_path / "clip.hyb"
    got = python(COMMAND_LINE, "encode", str(clip), str(out), "-q", "-j", "2")
    assert got["code"] == 0 and got["gc"] is True
    expected = tmp_path / "library.hyb"
    hybridcodec.encode(clip, expected)
    assert out.read_bytes() == expected.read_bytes()


def test_library_process_keeps_numbas_probes(clip):
    """main(argv) and the library leave numba as it is: a user's own numba code in the
    same process may need np.dot (BLAS), and scipy is installed here."""
    pytest.importorskip("scipy.linalg")
    got = python("""
import gc, json, sys
from hybridcodec import cli
code = cli.main(["verify", "-q", sys.argv[1]])
import numba.np.arraymath
print(json.dumps({"code": code, "gc": gc.isenabled(), "frozen": gc.get_freeze_count(),
                  "blas": numba.np.arraymath._HAVE_BLAS}))
""", str(_encoded(clip)))
    assert got == {"code": 0, "gc": True, "frozen": 0, "blas": True}


def _encoded(clip: Path) -> Path:
    hyb = clip.with_suffix(".hyb")
    if not hyb.exists():
        hybridcodec.encode(clip, hyb)
    return hyb


def test_info_does_not_load_the_coder(clip):
    got = python(LOADED + """
import io, contextlib
sys.argv = ["hybridcodec", "info", sys.argv[1]]
from hybridcodec.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main()
print(json.dumps({"code": code, "loaded": loaded(("numba", "constriction", "llvmlite"))}))
""", str(_encoded(clip)))
    assert got == {"code": 0, "loaded": []}


# --------------------------------------------------------------------------- numba's cache


@pytest.fixture
def read_only_package(monkeypatch, tmp_path):
    """A package directory that cannot be written (as an install in site-packages owned by
    another account): _writable_dir answers as the operating system would there."""
    package = tmp_path / "site-packages" / "hybridcodec"
    package.mkdir(parents=True)
    real = jit._writable_dir
    blocked = [package]

    def writable(path: Path) -> bool:
        if any(path == b or b in path.parents for b in blocked):
            return False
        return real(path)

    monkeypatch.setattr(jit, "_writable_dir", writable)
    return package, blocked


def test_cache_stays_in_a_writable_package(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    assert jit.cache_location(package, {"HOME": str(tmp_path / "home")}) is None  # numba's
    assert (package / "__pycache__").is_dir()


def test_cache_follows_numba_cache_dir(read_only_package, tmp_path):
    package, _ = read_only_package
    assert jit.cache_location(package, {"NUMBA_CACHE_DIR": str(tmp_path / "n")}) is None


def test_read_only_package_caches_in_the_user_cache(read_only_package, tmp_path):
    package, _ = read_only_package
    home = tmp_path / "home"
    where = jit.cache_location(package, {"HOME": str(home)})
    assert where == str(home / ".cache" / "hybridcodec" / "numba") and Path(where).is_dir()
    xdg = tmp_path / "xdg"
    assert jit.cache_location(package, {"HOME": str(home), "XDG_CACHE_HOME": str(xdg)}) == \
        str(xdg / "hybridcodec" / "numba")


def test_no_writable_home_uses_a_private_temporary_directory(read_only_package, tmp_path,
                                                             monkeypatch):
    package, blocked = read_only_package
    home = tmp_path / "home"
    blocked.append(home)
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path / "tmp"))
    where = Path(jit.cache_location(package, {"HOME": str(home)}))
    assert where.parent == tmp_path / "tmp" / f"hybridcodec-{os.getuid()}"
    assert where.is_dir() and not where.parent.stat().st_mode & 0o077
    # someone else's (here: group-writable) directory of that name is not trusted
    where.parent.chmod(0o777)
    assert jit.cache_location(package, {"HOME": str(home)}) == jit.NO_CACHE
    where.parent.chmod(0o700)
    blocked.append(tmp_path / "tmp")
    assert jit.cache_location(package, {"HOME": str(home)}) == jit.NO_CACHE


def test_no_cache_still_compiles(monkeypatch):
    monkeypatch.setattr(jit, "_location", jit.NO_CACHE)

    @jit.njit(cache=True)
    def twice(x):
        return 2 * x

    assert twice(21) == 42
    assert type(twice._cache).__name__ == "NullCache"


def test_kernels_cache_in_the_chosen_directory(tmp_path):
    """The real thing: with the package read-only, the codec's kernels are saved under the
    user cache directory by one process and loaded from there by the next, and the rest
    of numba keeps its own cache directory setting."""
    code = """
import json, sys
from pathlib import Path
from hybridcodec import jit
real = jit._writable_dir
jit._writable_dir = lambda p: False if p == jit._PACKAGE_DIR / "__pycache__" else real(p)
import numpy as np
from hybridcodec import cascade
from numba.core import config
x = np.arange(300, dtype=np.int64)
cascade.Cascade([[0, 8, 26], [1, 4, 8]]).residuals(x, np.zeros(300, np.int64))
stats = cascade._run.stats
print(json.dumps({"path": stats.cache_path, "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values()), "config": config.CACHE_DIR}))
"""
    env = {"XDG_CACHE_HOME": str(tmp_path), "NUMBA_CACHE_DIR": ""}
    first = python(code, env=env)
    root = tmp_path / "hybridcodec" / "numba"
    assert Path(first["path"]).parent == root and first["misses"] == 1
    assert list(root.glob("*/cascade._run-*.nbi")), "no index written"
    second = python(code, env=env)
    assert second["path"] == first["path"] and second["hits"] == 1 and second["misses"] == 0
    assert second["config"] == ""  # numba's own setting for everyone else


@pytest.mark.parametrize("payload", [2, 4])
def test_a_loaded_model_does_not_build_tables(monkeypatch, payload):
    """Loading a model file takes its tables from the file (the scale-class tables, and a
    format 4 model's envelope tables); only a new model builds them."""
    from hybridcodec import model as model_module
    from hybridcodec.entropy import TableSpec, build_tables, delta_frequencies
    from hybridcodec.perceptual.envelope import envelope_table

    config = model_module.ModelConfig() if payload == 4 else \
        model_module.ModelConfig(**model_module._VERSION_2_DEFAULTS)
    assert config.payload == payload
    data = model_module.HybridModel(config).to_bytes()

    def refuse(*args, **kwargs):
        raise AssertionError("tables built for a model that brought its own")

    monkeypatch.setattr(model_module, "build_tables", refuse)
    monkeypatch.setattr(model_module, "envelope_table", refuse)
    monkeypatch.setattr(model_module, "delta_frequencies", refuse)
    loaded = model_module.HybridModel.from_bytes(data)
    assert loaded.tables.num_classes == TableSpec().num_classes
    if payload == 4:
        assert loaded.envelope_coder(44100) is not None
    monkeypatch.undo()
    expected = build_tables(TableSpec(), normalise=payload == 4)
    if payload == 4:
        envelope = model_module.DEFAULT_ENVELOPE
        expected["envelope_fine"] = envelope_table(envelope["fine"]["scale"])
        expected["envelope_coarse"] = envelope_table(envelope["coarse"]["scale"])
        expected["table_delta"] = delta_frequencies(TableSpec().num_classes)
    fresh = model_module.HybridModel(config)
    for tables in (fresh.table_arrays, loaded.table_arrays):
        assert sorted(tables) == sorted(expected)
        for key, table in expected.items():
            assert np.array_equal(tables[key], table), key
