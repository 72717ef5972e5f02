"""Start-up: where numba caches the codec's kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hybridcodec import jit

REPO = Path(__file__).resolve().parents[1]


def python(code: str, *args: str, env: dict | None = None, cwd=None) -> dict:
    """Run ``code`` in a fresh interpreter with this checkout first on the path; the code
    prints one JSON object on its last line, which is returned."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), **(env or {})}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=environ,
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    monkeypatch.setattr(jit.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
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
