"""The ladder report (evaluation.ladder and ``python -m evaluation.ladder``).

Metric helpers on synthetic signals with known answers; the report itself on a 2 s
corpus excerpt (reference codecs off, and once with Opus/MP3 when the tools exist, once
with them made missing); the command line's files, errors and exit codes; and that it is
a tool outside the codec (the ``hybridcodec`` package neither imports it nor offers it
as a verb).
"""

from __future__ import annotations

import ast
import csv
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evaluation import ladder
from hybridcodec import cli
from hybridcodec.tiers import TIERS

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corpus"
SOURCE = CORPUS / "music" / "cellar-02.flac"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

needs_corpus = pytest.mark.skipif(not SOURCE.exists(), reason=f"{SOURCE} not found")


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- metrics


def test_snr():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48000, 2))
    assert math.isinf(ladder.snr_db(x, x.copy()))
    assert ladder.snr_db(x, x + 0.1 * rng.standard_normal(x.shape)) == pytest.approx(20, abs=0.2)
    assert ladder.snr_db(x, np.zeros_like(x)) == pytest.approx(0.0)


def test_spectral_distances():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((44100, 1)) * 0.1
    assert ladder.spectral_distances(x, x.copy(), 44100) == (0.0, 0.0)
    lsd_a, mel_a = ladder.spectral_distances(x, x * 10 ** (-3 / 20), 44100)  # -3 dB
    assert lsd_a == pytest.approx(3.0, abs=0.01) and mel_a == pytest.approx(3.0, abs=0.01)
    # more damage, larger distances
    from scipy.signal import butter, sosfilt

    low = sosfilt(butter(8, 4000, fs=44100, output="sos"), x, axis=0)
    lsd_b, mel_b = ladder.spectral_distances(x, low, 44100)
    assert lsd_b > lsd_a and mel_b > mel_a


def test_mel_filterbank_covers_every_band():
    for rate in (8000, 44100, 96000):
        fb = ladder.mel_filterbank(rate)
        assert fb.shape == (ladder.MEL_BANDS, ladder.N_FFT // 2 + 1)
        assert (fb.sum(axis=1) > 0).all()


def test_highpass_removes_dc_only():
    t = np.arange(44100) / 44100
    tone = np.sin(2 * np.pi * 440 * t)[:, None]
    out = ladder.highpass(tone + 0.5, 44100)
    assert abs(out[2000:-2000].mean()) < 1e-3
    assert ladder.snr_db(tone[2000:-2000], out[2000:-2000]) > 40


@pytest.mark.parametrize("lag", [0, 123, -57, 1152])
def test_align_finds_and_removes_a_delay(lag):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20000, 2))
    if lag >= 0:
        y = np.concatenate([np.zeros((lag, 2)), x, np.zeros((300, 2))])
    else:
        y = x[-lag:]
    out, found = ladder.align(x, y, 2000)
    assert found == lag
    assert out.shape == x.shape
    first = max(0, -lag)  # an early signal has nothing for the first samples: zeros
    assert np.array_equal(out[first:], x[first:])
    assert not out[:first].any()


def test_reference_rate_choices():
    assert ladder.mp3_kbps(51.5) == 48 and ladder.mp3_kbps(443) == 320
    assert ladder.mp3_kbps(4) == 8 and ladder.mp3_kbps(100) == 96
    assert ladder.opus_kbps(3, 2) == 12 and ladder.opus_kbps(900, 2) == 512
    assert ladder.opus_kbps(51.46, 1) == 51.5


def test_unknown_tier_and_bad_seconds(tmp_path):
    with pytest.raises(ladder.UsageError, match="unknown tier"):
        ladder.run_ladder(SOURCE, tmp_path / "x", tiers=["tiny", "huge"])
    with pytest.raises(ladder.UsageError, match="positive"):
        ladder.run_ladder(SOURCE, tmp_path / "x", seconds=0)
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    if not SOURCE.exists():
        pytest.skip(f"{SOURCE} not found")
    out = tmp_path_factory.mktemp("ladder") / "report"
    rep = ladder.run_ladder(SOURCE, out, seconds=2.0, reference_codecs=False, visqol=False)
    return rep, out


@needs_corpus
def test_report_rows_and_files(report_dir):
    rep, out = report_dir
    assert [r.setting for r in rep.rows] == list(TIERS)
    assert all(r.codec == "hybridcodec" for r in rep.rows)
    assert rep.num_samples == round(2.0 * rep.sample_rate) and rep.channels == 2
    kbps = [r.kbps for r in rep.rows]
    assert all(a > b for a, b in zip(kbps, kbps[1:])), kbps
    lossless = rep.tier("lossless")
    assert math.isinf(lossless.snr_db) and lossless.mel_db == 0 and lossless.lsd_db == 0
    # a named tier of format 4's payload is a quality (a slope threshold), not a prefix
    # of layers: each row shows the layers its stream carries, no more down the ladder
    layers = [r.layers for r in rep.rows]
    assert lossless.layers == 20 and all(a >= b for a, b in zip(layers, layers[1:])), layers
    assert 1 <= rep.tier("tiny").layers < 20
    snrs = [r.snr_db for r in rep.rows]
    assert all(a > b for a, b in zip(snrs, snrs[1:])), snrs
    assert rep.tier("tiny").pcm_ratio < 1 / 20
    assert any("not run" in n for n in rep.notes)
    # ladder.md: the table with a row per tier, the perceptual column says what it is
    md = (out / "ladder.md").read_text()
    assert "| codec | tier / setting | layers | bytes | kbit/s | size / PCM | SNR dB" in md
    assert "mel dist dB" in md and "ViSQOL (not installed: see mel dist)" in md
    for tier in TIERS:
        assert f"| hybridcodec | {tier} |" in md
    # ladder.csv: the same numbers
    rows = list(csv.DictReader((out / "ladder.csv").open()))
    assert [r["setting"] for r in rows] == list(TIERS)
    assert rows[0]["snr_db"] == "inf" and int(rows[-1]["bytes"]) == rep.tier("tiny").bytes
    assert [int(r["layers"]) for r in rows] == layers


@needs_corpus
@pytest.mark.skipif(not has_matplotlib(), reason="matplotlib not installed")
def test_report_plots(report_dir):
    rep, out = report_dir
    assert rep.spectrogram_tiers == ("medium", "tiny")
    for name in ("rate_quality.png", "spectrograms.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert sorted(Path(p).name for p in rep.written) == sorted(ladder.OUTPUT_FILES)


@needs_corpus
def test_existing_report_needs_overwrite(report_dir):
    _, out = report_dir
    with pytest.raises(ladder.UsageError, match="exists"):
        ladder.run_ladder(SOURCE, out, seconds=1.0, reference_codecs=False, visqol=False)


@needs_corpus
def test_missing_reference_tools_are_skipped_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(ladder, "tool_available", lambda name: False)
    rep = ladder.run_ladder(SOURCE, tmp_path / "r", seconds=1.0, tiers=["lossless", "tiny"],
                            visqol=False, plots=False)
    assert [r.codec for r in rep.rows] == ["hybridcodec", "hybridcodec"]
    notes = " ".join(rep.notes)
    assert "opusenc" in notes and "lame" in notes
    assert "Opus rows skipped" in (tmp_path / "r" / "ladder.md").read_text()


@needs_corpus
@pytest.mark.skipif(shutil.which("opusenc") is None or shutil.which("opusdec") is None
                    or shutil.which("lame") is None, reason="opus-tools / lame not installed")
def test_reference_codecs_at_matched_rates(tmp_path):
    rep = ladder.run_ladder(SOURCE, tmp_path / "r", seconds=2.0, tiers=["medium", "tiny"],
                            visqol=False, plots=False)
    for tier in ("medium", "tiny"):
        mine = rep.tier(tier)
        opus, mp3 = rep.reference("opus", tier), rep.reference("mp3", tier)
        assert opus is not None and mp3 is not None
        # Opus VBR is steered onto the tier's real rate; MP3 is at the nearest CBR rate
        assert abs(opus.kbps / mine.kbps - 1) <= ladder.RATE_TOLERANCE or opus.note
        assert mp3.setting == f"-b {ladder.mp3_kbps(mine.kbps)}"
        for row in (opus, mp3):
            # aligned and level-matched: a real codec at >= 48 kbit/s keeps the waveform
            assert 8 < row.snr_db < 60 and row.mel_db < 5, row
            assert abs(row.delay) < ladder.MAX_LAG_SECONDS * rep.sample_rate
    assert rep.reference("opus", "medium").snr_db > rep.reference("opus", "tiny").snr_db


@needs_corpus
@pytest.mark.skipif(not ladder.Visqol.available(), reason="visqol-python not installed")
def test_visqol_scores_order_the_tiers(tmp_path):
    rep = ladder.run_ladder(SOURCE, tmp_path / "r", seconds=1.5, tiers=["lossless", "tiny"],
                            reference_codecs=False, plots=False)
    assert rep.visqol
    assert rep.tier("lossless").visqol > 4.5 > rep.tier("tiny").visqol >= 1.0


# --------------------------------------------------------------------------- command line


def run(argv, capsys):
    """``python -m evaluation.ladder ARGV...``, in process."""
    assert argv[0] == "ladder"
    code = ladder.main([str(a) for a in argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_python_dash_m_from_the_repository_root(repo_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "evaluation.ladder", "--help"], cwd=repo_dir,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--no-reference-codecs" in proc.stdout and "--out DIR" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "evaluation.ladder",
                           str(tmp_path / "missing.flac"), "--out", str(tmp_path / "o")],
                          cwd=repo_dir, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [f"ladder: {tmp_path / 'missing.flac'}: cannot open: "
                                        "no such file"]


def test_ladder_is_not_a_hybridcodec_verb(capsys):
    assert cli.main(["ladder", "x.flac", "--out", "d"]) == 2
    assert "invalid choice: 'ladder'" in capsys.readouterr().err


def test_the_codec_does_not_import_evaluation(repo_dir):
    """Evaluation is a tool, not the codec: no module of the package imports it."""
    for path in sorted((repo_dir / "hybridcodec").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "evaluation" or n.startswith("evaluation.") for n in names), \
                f"{path.relative_to(repo_dir)} imports {names}"
    assert not (repo_dir / "hybridcodec" / "ladder.py").exists()


@needs_corpus
def test_cli_ladder_writes_table_and_plots(tmp_path, capsys):
    out = tmp_path / "ladder"
    argv = ["ladder", SOURCE, "--out", out, "--seconds", "2", "--no-reference-codecs",
            "--no-visqol", "--tiers", "lossless,medium", "tiny"]
    code, text, err = run(argv, capsys)
    assert code == 0, err
    assert "| hybridcodec | medium |" in text and "wrote " in text
    assert "encoding" in err  # progress on stderr
    expected = ["ladder.csv", "ladder.md"]
    if has_matplotlib():
        expected += ["rate_quality.png", "spectrograms.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    rows = list(csv.DictReader((out / "ladder.csv").open()))
    assert [r["setting"] for r in rows] == ["lossless", "medium", "tiny"]
    # again: refused without -f (nothing rewritten), then -f -q is silent
    code, _, err = run(argv, capsys)
    assert code == 2 and "exists (use -f" in err
    code, text, err = run(argv + ["-f", "-q"], capsys)
    assert code == 0 and text == "" and err == ""


@pytest.mark.parametrize("extra,message", [
    (["--tiers", "huge"], "unknown tier"),
    (["--seconds", "0"], "positive number of seconds"),
    (["--seconds", "x"], "not a number"),
    (["--seed", "-2"], "must be 0..2**64-1"),
    (["--fill", "noise"], "invalid choice"),
])
def test_cli_ladder_bad_options_exit_2(extra, message, tmp_path, capsys):
    code, _, err = run(["ladder", SOURCE, "--out", tmp_path / "o", *extra], capsys)
    assert code == 2 and message in err.splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_cli_ladder_needs_out_and_one_file(tmp_path, capsys):
    code, _, err = run(["ladder", SOURCE], capsys)
    assert code == 2 and "--out" in err
    code, _, err = run(["ladder", SOURCE, SOURCE, "--out", tmp_path], capsys)
    assert code == 2


def test_cli_ladder_input_errors(tmp_path, capsys):
    code, _, err = run(["ladder", tmp_path / "missing.flac", "--out", tmp_path / "o"], capsys)
    assert code == 3 and err.count("\n") == 1
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    code, _, err = run(["ladder", bad, "--out", tmp_path / "o"], capsys)
    assert code == 3 and err.count("\n") == 1
    code, _, err = run(["ladder", "-", "--out", tmp_path / "o"], capsys)
    assert code == 2
    assert not (tmp_path / "o").exists()
