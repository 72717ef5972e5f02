"""benchmarks/lossless.py: the reference-coder columns (MPEG-4 ALS, Sac) and their rules.

Tiny synthetic corpora only; the test that runs the real binaries skips when they are
absent or cannot run here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("bench_lossless",
                                                  REPO / "benchmarks" / "lossless.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


bench = _load()


def _corpus(tmp_path: Path, with_24bit: bool = False) -> Path:
    rng = np.random.default_rng(3)
    t = np.arange(8820)
    x = np.sin(t * 0.02)[:, None] * 6000 + rng.standard_normal((8820, 2)) * 100
    folder = tmp_path / "corpus" / "a"
    folder.mkdir(parents=True)
    sf.write(str(folder / "s16.flac"), x.astype(np.int16), 44100, subtype="PCM_16")
    if with_24bit:
        sf.write(str(folder / "s24.flac"), (x * 256).astype(np.int32), 44100,
                 subtype="PCM_24")
    return tmp_path / "corpus"


def _run(corpus: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    out = tmp_path / "report.md"
    code = bench.main(["--corpus", str(corpus), "--sets", "a", "--per-file",
                       "--output", str(out), *extra])
    return code, out.read_text()


def test_sac_takes_16bit_mono_stereo_only():
    assert bench.anchor_ineligible("sac", "PCM_16", 1) is None
    assert bench.anchor_ineligible("sac", "PCM_16", 2) is None
    assert bench.anchor_ineligible("sac", "PCM_24", 2) == "24-bit"
    assert bench.anchor_ineligible("sac", "PCM_U8", 1) == "8-bit"
    assert bench.anchor_ineligible("sac", "PCM_16", 3) == "3 ch"
    assert bench.anchor_ineligible("als", "PCM_24", 8) is None


def test_no_anchors_keeps_the_old_table(tmp_path, capsys):
    code, report = _run(_corpus(tmp_path), tmp_path, "--no-anchors")
    assert code == 0
    assert "als -7" not in report and "sac --normal" not in report
    assert "All 1 hybridcodec round trips bit-exact." in report
    header = next(ln for ln in report.splitlines() if ln.startswith("| set | files"))
    assert header.count("|") - 1 == len(bench.SUMMARY_HEADER)


def test_missing_binary_reads_na(tmp_path, capsys):
    code, report = _run(_corpus(tmp_path), tmp_path, "--anchors-bin",
                        str(tmp_path / "nowhere"))
    assert code == 0  # the reference coders never change the exit status
    assert "mp4alsRM23 not found" in report and "sac not found" in report
    assert "n/a (see note)" in report


@pytest.mark.skipif(os.name != "posix", reason="fake coder is a shell script")
def test_a_coder_that_does_not_round_trip_is_marked(tmp_path, capsys):
    """A 'sac' that stores the WAV and flips a byte of the decoded copy (probe clip spared)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sac").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--decode" ]; then cp "$2" "$3"; n=$(wc -c < "$3");\n'
        '  [ "$n" -gt 30000 ] && printf U | dd of="$3" bs=1 seek=$((n - 10)) '
        "conv=notrunc 2>/dev/null; exit 0; fi\n"
        '[ $# -eq 0 ] && exit 0\ncp "$4" "$5"\n')
    (fake / "sac").chmod(0o755)
    code, report = _run(_corpus(tmp_path), tmp_path, "--anchors-bin", str(fake), "--no-als")
    assert code == 0
    assert "**not exact**" in report
    assert "**sac --normal failed on a/s16.flac**: not bit-exact" in report
    assert "n/a (no file coded)" in report  # not counted in the totals


def test_real_reference_coders(tmp_path, capsys):
    probe = tmp_path / "probe"
    probe.mkdir()
    status = bench.anchor_status(bench.DEFAULT_ANCHOR_BIN, {"als": True, "sac": True}, probe)
    if any(status.values()):
        pytest.skip(f"reference coders unusable here: {status}")
    code, report = _run(_corpus(tmp_path, with_24bit=True), tmp_path)
    assert code == 0
    assert "All 2 als -7 round trips bit-exact." in report
    assert "All 1 sac --normal round trips bit-exact." in report
    assert "skip (24-bit)" in report
    assert "1/2 files" in report  # Sac's totals run over its subset, and say so
