"""``python -m train`` as a user runs it: DDP on two CPU processes, one-line errors.

* ``trainer=ddp trainer.devices=2`` on the tiny preset picks the CPU (gloo) where there is
  no GPU, finishes, exports a model that round-trips audio, and its output has every line
  once and no warning (in particular none about ``sync_dist``);
* a bad input stops with one line on stderr and a non-zero status, never a traceback,
  whether Hydra (composition) or training (the job) finds it; ``HYBRIDCODEC_DEBUG=1``
  shows the traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("lightning")
pytest.importorskip("hydra")

import hybridcodec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# A Python warning as Lightning formats it ("/path/file.py:123: message") or as Python does.
WARNING = re.compile(r"^\S+\.py:\d+: |Warning: ")
LOG_PREFIX = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\]")  # Hydra's job logging timestamp


def run_train(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m train ARGS`` with this checkout first on the path."""
    environ = {**os.environ,
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    environ.pop("HYBRIDCODEC_DEBUG", None)  # what a user sees, unless a test asks
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=600)


def output_problems(text: str) -> list[str]:
    """Lines a readable training log should not have: warnings, and lines printed twice
    (timestamps aside; rules and blank lines of Lightning's tables excepted)."""
    lines = [LOG_PREFIX.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line.strip("-| ")]
    counts = Counter(lines)
    return [f"warning: {line}" for line in lines if WARNING.search(line)] + \
        [f"{n}x: {line}" for line, n in counts.items() if n > 1]


def test_ddp_on_two_cpu_processes(tmp_path, corpus_dir):
    run = run_train(["experiment=tiny", "trainer=ddp", "trainer.devices=2",
                     "trainer.max_steps=4", "trainer.val_check_interval=2",
                     f"data.root={corpus_dir}", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    import torch
    if not torch.cuda.is_available():
        assert "distributed_backend=gloo" in out and "Starting with 2 processes" in out, out
    assert "sync_dist" not in out
    assert output_problems(out) == [], out
    # Rank 0 logged each validation once; rank 1 logged nothing of ours.
    assert out.count("step 4: coded") == 1 and out.count("initial model: coded") == 1, out
    assert (tmp_path / "train_ddp_process_1.log").read_text() == ""
    assert "best val/coded_bps" in out
    model = tmp_path / "model.hcm"
    src = corpus_dir / "instruments" / "speech-female-short.flac"
    hyb, back = tmp_path / "x.hyb", tmp_path / "x.flac"
    hybridcodec.encode(src, hyb, model=str(model))
    hybridcodec.decode(hyb, back, model=str(model))
    assert np.array_equal(sf.read(back, dtype="int32")[0], sf.read(src, dtype="int32")[0])


@pytest.mark.parametrize("args, status, message", [
    # Found by training (inside Hydra's job).
    (["experiment=tiny", "init.from_model=default", "model.levels=3"], 2,
     "hybridcodec-train: init.from_model=default has levels=4, but the command line sets "
     "model.levels=3; weights fix their architecture: drop model.levels=3, or drop "
     "init.from_model to train a fresh model"),
    # Found by Hydra (composing the config).
    (["model.levelz=3"], 2,
     "hybridcodec-train: Could not override 'model.levelz'. To append to your config use "
     "+model.levelz=3 (Key 'levelz' is not in struct)"),
], ids=["architecture", "unknown-key"])
def test_bad_input_is_one_line_without_traceback(args, status, message, tmp_path, corpus_dir):
    run = run_train(args + [f"data.root={corpus_dir}", f"hydra.run.dir={tmp_path / 'run'}"],
                    cwd=tmp_path)
    assert (run.returncode, run.stderr.strip()) == (status, message), run.stderr
    assert "Traceback" not in run.stdout + run.stderr and "Error executing job" not in run.stderr


def test_debug_shows_the_traceback(tmp_path):
    run = run_train(["data.root=/nonexistent", f"hydra.run.dir={tmp_path / 'run'}"],
                    cwd=tmp_path, HYBRIDCODEC_DEBUG="1")
    assert run.returncode != 0
    assert "Traceback" in run.stderr and "DataError: data folder not found" in run.stderr

