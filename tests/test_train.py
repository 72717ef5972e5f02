"""The training stack (train/, conf/): Hydra configs, a tiny CPU run, export, real-coder checks.

* Hydra overrides (compose API) change the model that is built, and the config groups
  (trainer=gpu/ddp, experiment=tiny) compose as documented;
* the tiny preset trains a few steps on CPU and the loss goes down; it resumes from its
  checkpoint, and a resumed run exports its own best checkpoint or its final weights;
* a model file's architecture is adopted (and its means kept) by ``init.from_model``;
  bad inputs raise the one-line errors the entry points print;
* the exported model is integer-exact: corpus files round-trip bit-exactly through
  ``hybridcodec.encode`` / ``decode`` and the CLI with ``--model``;
* the exact-path estimate of the coded size agrees with the real coder within 1 %.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("lightning")
pytest.importorskip("hydra")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # train/ is a top-level folder of the repository, not installed
    sys.path.insert(0, str(REPO))

from hydra import compose, initialize_config_dir  # noqa: E402

import hybridcodec  # noqa: E402
from hybridcodec.model import HybridModel, ModelConfig, load_model  # noqa: E402
from train.coded_bits import Evaluation, evaluate, file_frames  # noqa: E402
from train.data import Augment, apply_gain  # noqa: E402
from train.errors import CheckpointError, DataError, TrainingError  # noqa: E402
from train.evaluate import main as evaluate_main, report_table  # noqa: E402
from train.export import main as export_main  # noqa: E402
from train.loss import latent_bits, logistic_bits  # noqa: E402
from train.module import model_from_checkpoint  # noqa: E402
from train.nets import TrainableModel  # noqa: E402
from train.run import (adopt_architecture, build_datamodule, build_model,  # noqa: E402
                       command_line_model_keys, train)

ROUNDTRIP_FILES = ["music/cellar-21.flac", "instruments/speech-female-short.flac"]


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """train() sets torch's thread count (``threads``): restore it for the tests after."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


# ----------------------------------------------------------------------- configs


def test_overrides_change_the_model(tmp_path):
    cfg = _compose([f"paths.output_dir={tmp_path}", "model.levels=3", "model.lift_taps=4",
                    "model.mean_taps=8", "model.lift_hidden=2"])
    model = build_model(cfg.model)
    assert model.config.levels == 3
    assert len(model.wavelet.predict) == len(model.wavelet.update) == len(model.means) == 3
    assert model.wavelet.predict[0].taps == 4 and model.means[2].taps == 8
    assert model.wavelet.update[1].hidden == 2


def test_default_model_config_is_the_library_default(tmp_path):
    cfg = _compose([f"paths.output_dir={tmp_path}"])
    built = asdict(build_model(cfg.model).config)
    default = asdict(ModelConfig())
    built.pop("description"), default.pop("description")
    assert built == default


def test_config_groups_compose(tmp_path):
    gpu = _compose([f"paths.output_dir={tmp_path}", "trainer=gpu", "trainer.devices=4",
                    "data.root=/my/audio"])
    assert gpu.trainer.accelerator == "gpu" and gpu.trainer.devices == 4
    assert gpu.data.root == "/my/audio"
    ddp = _compose([f"paths.output_dir={tmp_path}", "trainer=ddp"])
    assert ddp.trainer.strategy == "ddp" and ddp.trainer._target_ == "lightning.pytorch.Trainer"
    # Over CUDA GPUs where there are some, else over CPU processes.
    assert ddp.trainer.accelerator == ("gpu" if torch.cuda.is_available() else "cpu")
    tiny = _compose([f"paths.output_dir={tmp_path}", "experiment=tiny"])
    assert tiny.model.levels == 3 and tiny.trainer.accelerator == "cpu"
    assert tiny.trainer.max_steps < 100


def test_datamodule_split_is_file_level(tmp_path, corpus_dir):
    cfg = _compose([f"paths.output_dir={tmp_path}", f"data.root={corpus_dir}"])
    dm = build_datamodule(cfg.data)
    train_names = {f.name for f in dm.train_files}
    val_names = {f.name for f in dm.val_files}
    assert train_names and val_names and not train_names & val_names


# ------------------------------------------------------------------ loss, augment


def test_logistic_bits_is_a_distribution():
    r = torch.arange(-4000, 4001, dtype=torch.float64)  # > 60 scales either side
    for scale in (0.125, 1.0, 7.3, 60.0):
        bits = logistic_bits(r, torch.full_like(r, scale))
        assert torch.isfinite(bits).all()
        assert abs(float((2.0 ** -bits).sum()) - 1.0) < 1e-6


def test_augment_keeps_integers_in_range():
    rng = np.random.default_rng(0)
    x = (rng.integers(-2048, 2048, size=(4000, 2)) << 4).astype(np.int64)  # 12 bits in 16
    x[0] = [-32768, 32752]
    for seed in range(20):
        y = Augment(gain_prob=1.0, gain_db=(-12.0, 12.0))(x, 16, np.random.default_rng(seed))
        assert y.dtype == np.int64 and y.min() >= -32768 and y.max() <= 32767
        assert not (y & 15).any()  # gain works above the wasted low bits
    assert np.array_equal(apply_gain(x, 16, 1.0), x)


# ------------------------------------------------------------- tiny training run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, corpus_dir):
    """The tiny preset from zero prior means (so a few steps have something to learn)."""
    out = tmp_path_factory.mktemp("tiny")
    overrides = ["experiment=tiny", f"paths.output_dir={out}", f"data.root={corpus_dir}",
                 "init.fit_means=false"]
    cfg = _compose(overrides)
    threads = torch.get_num_threads()  # a module fixture: the autouse one does not cover it
    result = train(cfg)
    torch.set_num_threads(threads)
    return cfg, out, result


def test_tiny_training_lowers_the_loss(tiny_run):
    cfg, out, result = tiny_run
    assert result["global_step"] == cfg.trainer.max_steps
    dm = build_datamodule(cfg.data)
    dm.setup()
    batch = torch.stack([dm.train_set[i] for i in range(cfg.trainer.max_steps * 4)])
    before = build_model(cfg.model)  # what training started from (fit_means=false)
    after = model_from_checkpoint(str(out / "checkpoints" / "last.ckpt"))
    k = cfg.loss.lpc_order
    with torch.no_grad():
        loss_before = float(latent_bits(before, batch, lpc_order=k).bits_per_sample())
        loss_after = float(latent_bits(after, batch, lpc_order=k).bits_per_sample())
    print(f"tiny run: loss {loss_before:.4f} -> {loss_after:.4f} bits/sample")
    assert loss_after < loss_before
    for key in ("val/coded_bps", "val/estimated_bps", "val/coder_loss_bps", "val/loss_bps",
                "val/estimated_bpc_d1", "val/estimated_bpc_coarse"):
        assert np.isfinite(result[key]), key
    assert (out / "csv").is_dir() and (out / "tensorboard").is_dir()


def test_tiny_training_resumes(tiny_run, tmp_path, corpus_dir):
    cfg, out, first = tiny_run
    steps = cfg.trainer.max_steps + 5  # no validation in the resumed steps (every 10)
    resumed = train(_compose([
        "experiment=tiny", f"paths.output_dir={tmp_path}", f"data.root={corpus_dir}",
        f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", f"trainer.max_steps={steps}"]))
    assert resumed["global_step"] == steps
    # The data module records the crops used, so a resumed run draws new ones.
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["AudioDataModule"] == {"crops_used": cfg.trainer.max_steps * cfg.data.batch_size}
    # No validation ran: the export is the final weights, not the first run's best.
    assert resumed["best_checkpoint"] is None
    _, final_id = load_model(resumed["exported"])
    again = tmp_path / "last.hcm"
    assert export_main([str(tmp_path / "checkpoints" / "last.ckpt"), str(again)]) == 0
    assert load_model(again)[1] == final_id != first["model_id"]


def test_resumed_run_exports_its_own_best_checkpoint(tiny_run, tmp_path, corpus_dir):
    cfg, out, first = tiny_run
    steps = cfg.trainer.max_steps + cfg.trainer.val_check_interval  # one validation
    resumed = train(_compose([
        "experiment=tiny", f"paths.output_dir={tmp_path}", f"data.root={corpus_dir}",
        f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", f"trainer.max_steps={steps}"]))
    best = Path(resumed["best_checkpoint"])
    assert best.parent == tmp_path / "checkpoints"
    assert torch.load(best, weights_only=False)["global_step"] == steps
    assert resumed["model_id"] != first["model_id"]


def test_resume_adopts_the_checkpoint_architecture(tiny_run, tmp_path, corpus_dir):
    _, out, _ = tiny_run
    # Without experiment=tiny the configured model has 4 levels; the checkpoint has 3.
    cfg = _compose([f"paths.output_dir={tmp_path}", f"data.root={corpus_dir}", "export=null",
                    f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", "trainer.max_steps=21",
                    "data.max_files=1", "data.crop_length=2048", "data.batch_size=2",
                    "callbacks.coded_bits.max_files=1"])
    assert train(cfg)["global_step"] == 21
    with pytest.raises(TrainingError, match=r"has levels=3, .* sets model\.levels=4"):
        train(cfg, explicit_model_keys={"levels"})


def _read(path: Path) -> np.ndarray:
    return sf.read(str(path), dtype="int32", always_2d=True)[0]


def test_exported_model_roundtrips_corpus_files(tiny_run, tmp_path, corpus_dir, capsys):
    _, out, result = tiny_run
    model_file = Path(result["exported"])
    assert model_file.is_file()
    # python -m train.export gives the same file from the same checkpoint.
    again = tmp_path / "again.hcm"
    assert export_main([result["best_checkpoint"], str(again)]) == 0
    assert result["model_id"] in capsys.readouterr().out
    assert again.read_bytes() == model_file.read_bytes()
    model, model_id = load_model(model_file)
    assert model_id == result["model_id"] and model.config.levels == 3
    for name in ROUNDTRIP_FILES:
        src = corpus_dir / name
        hyb, back = tmp_path / (src.stem + ".hyb"), tmp_path / (src.stem + ".flac")
        hybridcodec.encode(src, hyb, model=str(model_file))
        hybridcodec.decode(hyb, back, model=str(model_file))
        assert np.array_equal(_read(back), _read(src)), name


def test_exported_model_works_with_the_cli(tiny_run, tmp_path, corpus_dir):
    model_file = tiny_run[2]["exported"]
    src = corpus_dir / ROUNDTRIP_FILES[1]
    hyb, back = tmp_path / "x.hyb", tmp_path / "x.wav"
    for args in (["encode", str(src), "-o", str(hyb)], ["decode", str(hyb), "-o", str(back)]):
        subprocess.run([sys.executable, "-m", "hybridcodec", *args, "--model", model_file, "-q"],
                       check=True, cwd=REPO)
    assert np.array_equal(_read(back), _read(src))


# ------------------------------------------------------- starting from a model file


def _nets(model: HybridModel) -> dict[str, np.ndarray]:
    return {k: v for k, v in model.integer_state().items() if k.startswith(("wavelet.", "means."))}


def test_from_model_trains_the_file_architecture_and_keeps_its_means(tmp_path, corpus_dir):
    default, _ = load_model(None)
    overrides = ["experiment=tiny", "init.from_model=default", f"data.root={corpus_dir}",
                 "trainer.max_steps=0", "callbacks.coded_bits.log_baseline=false"]
    kept = train(_compose(overrides + [f"paths.output_dir={tmp_path / 'kept'}"]))
    model, _ = load_model(kept["exported"])
    # The file's architecture, not the tiny preset's; the configured description.
    assert asdict(model.config) == {**asdict(default.config),
                                    "description": model.config.description}
    assert model.config.description.startswith("tiny")
    assert all(np.array_equal(a, _nets(default)[k]) for k, a in _nets(model).items())
    refit = train(_compose(overrides + [f"paths.output_dir={tmp_path / 'refit'}",
                                        "init.fit_means=true"]))
    means = {k: a for k, a in _nets(load_model(refit["exported"])[0]).items()
             if k.startswith("means.")}
    assert any(not np.array_equal(a, _nets(default)[k]) for k, a in means.items())


def test_adopt_architecture_names_the_conflicting_keys():
    theirs, ours = ModelConfig(), ModelConfig(levels=3, frame_length=4096, description="mine")
    adopted = adopt_architecture("init.from_model=default", theirs, ours)
    assert adopted.levels == 4 and adopted.frame_length == 1 << 17
    assert adopted.description == "mine"
    with pytest.raises(TrainingError) as err:
        adopt_architecture("init.from_model=default", theirs, ours, {"levels", "description"})
    message = str(err.value)
    assert "\n" not in message and "frame_length" not in message
    assert "init.from_model=default has levels=4" in message
    assert "sets model.levels=3" in message and "drop model.levels=3" in message


def test_command_line_model_keys(tmp_path):
    cfg = _compose([f"paths.output_dir={tmp_path}"])
    keys = command_line_model_keys(
        ["model.levels=3", "+model.coarse_cascade=[[0,32,26]]", "experiment=tiny",
         "init.from_model=default", "hydra.run.dir=/tmp/x"], cfg.model)
    assert keys == {"levels", "coarse_cascade"}
    assert command_line_model_keys(["model=default"], cfg.model) == set(cfg.model)


# ------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("override, error, pattern", [
    ("data.root=/nonexistent", DataError, r"data folder not found: /nonexistent/music .*data\.sets"),
    ("ckpt_path=/nonexistent.ckpt", CheckpointError, r"ckpt_path=/nonexistent.ckpt: no such"),
    (f"ckpt_path={REPO / 'README.md'}", CheckpointError, r"not a readable checkpoint"),
    (f"init.from_model={REPO / 'README.md'}", CheckpointError, r"not a hybridcodec model file"),
    ("model.levels=99", TrainingError, r"^model\.levels=99 is not an integer in 0\.\.12$"),
    ("data.crop_length=0", TrainingError, r"data\.crop_length=0: need an integer >= 2"),
])
def test_bad_inputs_are_one_line_errors(override, error, pattern, tmp_path, corpus_dir):
    cfg = _compose([f"paths.output_dir={tmp_path}", f"data.root={corpus_dir}", override])
    from hydra.errors import InstantiationException
    with pytest.raises((error, InstantiationException)) as err:
        train(cfg)
    exc = err.value if isinstance(err.value, error) else err.value.__cause__
    assert isinstance(exc, error) and re.search(pattern, str(exc)) and "\n" not in str(exc)
    assert not list(tmp_path.iterdir())  # failed before anything was written


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_gpu_trainer_without_gpu_is_a_one_line_error(tmp_path):
    with pytest.raises(TrainingError, match="no GPU on this machine: use trainer=cpu"):
        train(_compose([f"paths.output_dir={tmp_path}", "trainer=gpu"]))


def test_export_of_a_bad_checkpoint_is_one_line(tmp_path, capsys):
    assert export_main([str(tmp_path / "missing.ckpt"), str(tmp_path / "x.hcm")]) == 5
    assert capsys.readouterr().err == f"python -m train.export: {tmp_path / 'missing.ckpt'}: no such checkpoint file\n"
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    assert export_main([str(tmp_path / "other.ckpt"), str(tmp_path / "x.hcm")]) == 5
    assert "not a hybridcodec training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.hcm").exists()


# ------------------------------------------------------- estimate vs real coder


@pytest.mark.parametrize("which", ["default", "tiny"])
def test_estimated_and_actual_coded_bits_agree(which, tiny_run, corpus_dir):
    model, _ = load_model(None if which == "default" else tiny_run[2]["exported"])
    files = [corpus_dir / "music/cellar-21.flac", corpus_dir / "music/cellar-40.flac",
             corpus_dir / "instruments/piano.flac"]
    ev = evaluate(model, file_frames(files, model.config.frame_length, 1),
                  loss_model=TrainableModel.from_codec(model))
    assert ev.actual > 0
    assert abs(ev.relative_error) < 0.01, ev.metrics()
    m = ev.metrics()
    # The training loss ignores the adaptive cascade: an estimate, not the coded size.
    assert np.isfinite(m["loss_bps"])


def test_evaluate_compares_models_of_different_levels_on_the_same_audio(tiny_run, corpus_dir,
                                                                        capsys):
    tiny = tiny_run[2]["exported"]
    assert evaluate_main(["default", tiny, "--data", str(corpus_dir), "--sets", "music",
                          "--max-files", "2", "--frames", "1"]) == 0
    captured = capsys.readouterr()
    # Both coded the first 2**17 samples (the default's frame) of both files, stereo.
    assert captured.err.count(f"2 files, {2 * 2 * (1 << 17)} samples") == 2, captured.err
    cells = [[c.strip() for c in line.strip().strip("|").split("|")]
             for line in captured.out.splitlines() if line.startswith("| ")]
    rows = {row[0]: row for row in cells}
    head = rows["model"]
    d4, coarse, d1 = (head.index(f"{b} bits/coef") for b in ("d4", "coarse", "d1"))
    assert rows[tiny][d4] == "–" and rows["default"][d4] != "–"
    comparison = rows[f"{tiny} vs default"]
    assert comparison[1].endswith("%") and comparison[coarse] == "–" and comparison[d4] == "–"
    assert comparison[d1].startswith(("+", "-"))
    assert "Levels: default 4" in captured.out


def test_evaluate_refuses_to_compare_different_audio():
    a, b = Evaluation(samples=100, actual=400.0), Evaluation(samples=200, actual=800.0)
    for ev in (a, b):
        ev.estimate, ev.counts = {"coarse": ev.actual}, {"coarse": ev.samples}
    assert "+0.00 %" in report_table(["a", "b"], [a, a])
    with pytest.raises(ValueError, match="different amounts of audio"):
        report_table(["a", "b"], [a, b])


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    assert evaluate_main(["default", str(tmp_path / "none.hcm")]) == 5
    assert capsys.readouterr().err.count("\n") == 1
    assert evaluate_main(["default", "--data", str(tmp_path / "nowhere")]) == 3
    assert "data folder not found" in capsys.readouterr().err


# ----------------------------------------------------------------------- entry points

def test_console_script_is_declared_and_runs():
    from importlib.metadata import entry_points
    (script,) = entry_points(group="console_scripts", name="hybridcodec-train")
    assert script.value == "train.__main__:main"
    run = subprocess.run([sys.executable, "-c", "import sys; from train.__main__ import main; "
                          "sys.argv = ['hybridcodec-train', '--cfg', 'job', 'model.levels=3']; main()"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "levels: 3" in run.stdout


# ----------------------------------------------------------------------- lifting search

def test_symmetric_lifting_keeps_dc_gain():
    from train.fit_priors import set_symmetric_lifting
    model = HybridModel(ModelConfig(levels=2))
    set_symmetric_lifting(model, 1, [-0.0625, 0.01], [-0.03, 0.0, 0.002])
    one = 2.0 ** 14  # fixed-point weights
    p = model.wavelet.predict[1].linear / one
    u = model.wavelet.update[1].linear / one
    assert p.sum() == pytest.approx(1.0, abs=1e-3) and u.sum() == pytest.approx(0.5, abs=1e-3)
    assert np.allclose(p, p[::-1]) and np.allclose(u, u[::-1])
    assert p[3] == pytest.approx(0.5 + 0.0625 - 0.01, abs=1e-4)
    assert p[2] == pytest.approx(-0.0625)
    # Level 0 untouched: still LeGall 5/3.
    assert (model.wavelet.predict[0].linear[3:5] / one).tolist() == [0.5, 0.5]


def test_lifting_search_lowers_the_coded_cost(corpus_dir):
    from train.fit_priors import coded_cost, middle_excerpt, search_lifting
    files = [corpus_dir / "music" / "cellar-21.flac"]
    model = HybridModel(ModelConfig(levels=2, frame_length=8192))
    frames = [middle_excerpt(files[0], 8192)]
    legall = coded_cost(HybridModel.from_bytes(model.to_bytes()), frames)
    gain = search_lifting(model, files, excerpt=8192, steps=(8 / 256,), log=lambda _: None)
    assert gain <= 1.0
    searched = coded_cost(HybridModel.from_bytes(model.to_bytes()), frames)
    assert searched < legall  # the (13,7) start alone beats LeGall 5/3 on real music
