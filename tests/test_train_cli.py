"""``python -m train`` as a user runs it: DDP on two CPU processes, one-line errors.

* ``trainer=ddp trainer.devices=2`` on the tiny preset picks the CPU (gloo) where there is
  no GPU, finishes, exports a model that round-trips audio, and its output has every line
  once and no warning (in particular none about ``sync_dist``);
* a bad input stops with one line on stderr and a non-zero status, never a traceback,
  whether Hydra (composition) or training (the job) finds it; ``HYBRIDCODEC_DEBUG=1``
  shows the traceback;
* every command of the README's Training section runs as written (with step and file
  limits appended to the long ones), and the sequence there (train, resume, export,
  encode with the model, evaluate it) works: the README cannot rot.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("lightning")
pytest.importorskip("hydra")

import torch  # noqa: E402

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


# ------------------------------------------------ the README's Training section, as written

TRAIN_QUICK = ["trainer.max_steps=2", "trainer.val_check_interval=2", "data.max_files=2",
               "data.crop_length=4096", "data.batch_size=2", "data.val_crops_per_file=1",
               "init.fit_frames=1", "callbacks.coded_bits.max_files=1",
               "callbacks.coded_bits.frames_per_file=1", "callbacks.coded_bits.log_baseline=false"]
EVAL_QUICK = ["--max-files", "1", "--frames", "1"]
SONG = "instruments/speech-female-short.flac"  # stands for the README's song.flac


@dataclass
class Way:
    """How the test runs one README command: its words with ``replace`` applied (placeholders,
    paths that would write into the checkout), then ``append`` (step and file limits).
    ``expect``: ``ok``; ``gpu`` (ok with a GPU, else the one-line no-GPU error); ``starts``
    (a long search: stopped once its first progress line is out). ``skip``: why not run."""

    append: list[str] = field(default_factory=list)
    replace: dict[str, str] = field(default_factory=dict)
    expect: str = "ok"
    skip: str = ""


WAYS = {
    "python -m pip install -e '.[train]'": Way(skip="installs packages"),
    "python -m train experiment=tiny": Way(),  # in full: it is the smoke run
    "python -m train": Way(TRAIN_QUICK),
    "hybridcodec-train init.from_model=default": Way(TRAIN_QUICK),
    "python -m train model.levels=5 data.root=/my/audio data.sets=null":
        Way(TRAIN_QUICK, {"/my/audio": "../shared/data/corpus/instruments"}),
    "python -m train trainer=ddp trainer.devices=2": Way(TRAIN_QUICK),
    "python -m train trainer=gpu": Way(TRAIN_QUICK, expect="gpu"),
    "python -m train ckpt_path=outputs/train/<run>/checkpoints/last.ckpt":
        Way(["trainer.max_steps=22", "data.max_files=2"], {"<run>": "tiny"}),
    "python -m train.export outputs/train/<run>/checkpoints/last.ckpt my.hcm":
        Way(replace={"<run>": "tiny"}),
    "hybridcodec encode --model my.hcm song.flac song.hyb": Way(),
    "python -m train.evaluate default my.hcm": Way(EVAL_QUICK),
    "python -m train.fit_priors --search-lifting --out hybridcodec/models/default.hcm "
    "../shared/data/corpus/music ../shared/data/corpus/instruments":
        Way(["--max-files", "2"], {"hybridcodec/models/default.hcm": "fitted.hcm"}, "starts"),
    "python -c \"from hybridcodec.model import HybridModel; HybridModel().save('untrained.hcm')\"":
        Way(),
    "python -m train.evaluate hybridcodec/models/ccd651dbb62662d7.hcm untrained.hcm default":
        Way(EVAL_QUICK),
    "python -m train experiment=cpu15min hydra.run.dir=outputs/train/cpu15min": Way(TRAIN_QUICK),
    "python -m train experiment=cpu15min trainer.max_time=00:00:09:00 "
    "callbacks.coded_bits.frames_per_file=2": Way(TRAIN_QUICK),
    "python -m train.evaluate hybridcodec/models/ccd651dbb62662d7.hcm "
    "train/artifacts/trained-cpu.hcm": Way(EVAL_QUICK),
}
# Inline code that is a command: a program and its arguments (not a bare name in prose).
COMMAND = re.compile(r"^(python|hybridcodec-train|hybridcodec) \S")


def readme_training_commands() -> list[str]:
    """Every command of the README's Training section, in order: the lines of its code
    blocks (comments cut) and the inline code that starts like a command."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n## Training\n"):]
    section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else None]
    found: list[tuple[int, str]] = []
    for block in re.finditer(r"```sh\n(.*?)```", section, re.S):
        offset = block.start(1)
        for line in block.group(1).splitlines(keepends=True):
            command = line.split("  #")[0].strip()
            if command:
                found.append((offset, command))
            offset += len(line)
    prose = re.sub(r"```.*?```", lambda m: " " * len(m.group(0)), section, flags=re.S)
    for span in re.finditer(r"`([^`]+)`", prose):
        command = " ".join(span.group(1).split())
        if COMMAND.match(command):
            found.append((span.start(), command))
    commands = []
    for _, command in sorted(found):
        if command not in commands:
            commands.append(command)
    return commands


def _argv(command: str, way: Way) -> list[str]:
    for old, new in way.replace.items():
        command = command.replace(old, new)
    words = shlex.split(command) + way.append
    bin_dir = Path(sys.executable).parent
    if words[0] == "python":
        words[0] = sys.executable
    elif (bin_dir / words[0]).is_file():  # the console scripts of this environment
        words[0] = str(bin_dir / words[0])
    return words


@pytest.fixture(scope="module")
def readme_runs(tmp_path_factory, corpus_dir):
    """Every README training command run from a copy of the checkout's layout: the
    package, train/ and conf/ linked into a fresh folder beside a ``shared`` link to the
    corpus, so the commands' relative paths mean what they mean in the checkout and
    their outputs stay out of it. Returns {command: (CompletedProcess or None, seconds)}."""
    top = tmp_path_factory.mktemp("readme")
    (top / "shared").symlink_to(corpus_dir.parents[1])
    cwd = top / "repo"
    cwd.mkdir()
    for name in ("hybridcodec", "train", "conf"):
        (cwd / name).symlink_to(REPO / name)
    shutil.copy(corpus_dir / SONG, cwd / "song.flac")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for name in ("HYBRIDCODEC_DATA", "HYBRIDCODEC_DEBUG"):
        env.pop(name, None)
    runs = {}
    for n, command in enumerate(readme_training_commands()):
        way = WAYS.get(command)
        if way is None or way.skip:
            runs[command] = (None, 0.0)
            continue
        argv = _argv(command, way)
        trains = argv[1:3] == ["-m", "train"] or Path(argv[0]).name == "hybridcodec-train"
        if trains and not any(a.startswith("hydra.run.dir=") for a in argv):
            argv.append(f"hydra.run.dir=outputs/train/{'tiny' if command.endswith('=tiny') else n}")
        start = time.perf_counter()
        if way.expect == "starts":
            runs[command] = (_run_until_progress(argv, cwd, env), time.perf_counter() - start)
            continue
        run = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        runs[command] = (run, time.perf_counter() - start)
    print("\nREADME training commands (with the test's limits):")
    for command, (run, seconds) in runs.items():
        print(f"  {seconds:6.1f} s  {command}")
    return cwd, runs


def _run_until_progress(argv: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """Run a long command until its first line of output (progress), then stop it; the
    status is 0 when that line came, else the command's own."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    first = proc.stdout.readline()  # blocks until the first progress line (or the end)
    proc.terminate()
    rest = proc.communicate(timeout=60)[0]
    return subprocess.CompletedProcess(argv, 0 if first else proc.returncode, first + rest, "")


def test_every_readme_training_command_has_a_way_to_run():
    commands = readme_training_commands()
    assert len(commands) >= 15, commands
    assert [c for c in commands if c not in WAYS] == [], "add these README commands to WAYS"
    assert [c for c in WAYS if c not in commands] == [], "WAYS lists commands the README lost"


def test_readme_training_commands_run_as_written(readme_runs):
    cwd, runs = readme_runs
    for command, (run, _) in runs.items():
        way = WAYS[command]
        if way.skip:
            continue
        out = run.stdout + run.stderr
        if way.expect == "gpu" and not torch.cuda.is_available():
            assert run.returncode == 2 and run.stderr.count("\n") == 1, (command, out)
            assert "no GPU on this machine: use trainer=cpu" in run.stderr, (command, out)
            continue
        assert run.returncode == 0, (command, out)
        assert "Traceback" not in out, (command, out)
        warnings = [line for line in out.splitlines() if WARNING.search(line)]
        assert warnings == [], (command, warnings)
    start, _ = runs[next(c for c in runs if c.startswith("python -m train.fit_priors"))]
    assert start.stdout.startswith("lifting search start:"), start.stdout
    assert not (cwd / "fitted.hcm").exists()  # stopped during the search


def test_readme_training_sequence_gives_a_working_model(readme_runs, corpus_dir):
    cwd, runs = readme_runs
    # The smoke run's log (no progress bar) has every line once.
    tiny, _ = runs["python -m train experiment=tiny"]
    assert output_problems(tiny.stdout + tiny.stderr) == [], tiny.stdout + tiny.stderr
    # The resumed tiny run trained its checkpoint's 3 levels, not the defaults' 4.
    resume, _ = runs["python -m train ckpt_path=outputs/train/<run>/checkpoints/last.ckpt"]
    assert "training its architecture (levels=3" in resume.stdout + resume.stderr
    # Fine-tuning the shipped model kept its means (no least-squares fit).
    tune, _ = runs["hybridcodec-train init.from_model=default"]
    assert "prior means kept" in tune.stdout + tune.stderr
    assert "least-squares" not in tune.stdout + tune.stderr
    # my.hcm came from the tiny run; song.hyb decodes to song.flac with it.
    export, _ = runs["python -m train.export outputs/train/<run>/checkpoints/last.ckpt my.hcm"]
    assert re.fullmatch(r"my\.hcm: model id [0-9a-f]{16}\n", export.stdout), export.stdout
    back = cwd / "back.flac"
    hybridcodec.decode(cwd / "song.hyb", back, model=str(cwd / "my.hcm"))
    assert np.array_equal(sf.read(back, dtype="int32")[0], sf.read(corpus_dir / SONG, dtype="int32")[0])
    # Three levels against four, on the same audio.
    evaluation, _ = runs["python -m train.evaluate default my.hcm"]
    assert "| my.hcm vs default | " in evaluation.stdout and "–" in evaluation.stdout
