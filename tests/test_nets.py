"""One model definition, two evaluations: the training nets compute the coder's integers.

The coder evaluates the exported fixed-point integers with numpy
(:mod:`hybridcodec.intconv`); training builds float torch nets from the same config
(:mod:`train.nets`). Their exact mode must give identical integers, on CPU and (where
one is present) on a GPU, or training would optimise a model the coder does not run.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hybridcodec.model import HybridModel, ModelConfig, model_id_of  # noqa: E402
from train.nets import TrainableModel  # noqa: E402


def _perturbed(config: ModelConfig, seed: int = 0) -> TrainableModel:
    """Non-trivial weights everywhere, hidden branches active: the test means something."""
    torch.manual_seed(seed)
    net = TrainableModel(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def _signal(n: int, seed: int, bits: int = 23) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-(1 << bits), 1 << bits, n).astype(np.int64)


@pytest.mark.parametrize("hidden", [0, 8])
@pytest.mark.parametrize("n", [1, 2, 7, 50_000])
def test_training_exact_path_equals_coder(hidden, n):
    net = _perturbed(ModelConfig(lift_hidden=hidden, mean_hidden=hidden))
    codec = net.to_codec()
    x = _signal(n, seed=n)
    s_np, d_np = codec.wavelet.analyse(x)
    s_t, d_t = net.analyse_exact(torch.from_numpy(x.astype(np.float64)))
    assert np.array_equal(s_t.numpy().astype(np.int64), s_np)
    assert all(np.array_equal(a.numpy().astype(np.int64), b) for a, b in zip(d_t, d_np))
    coarse = _signal(max(n // 2, 1), seed=n + 1)
    for tnet, cnet in zip(net.means, codec.means):
        want = cnet.predict(coarse, coarse.size)
        got = tnet.predict_exact(torch.from_numpy(coarse.astype(np.float64)), coarse.size)
        assert np.array_equal(got.numpy().astype(np.int64), want)


def test_synthesis_inverts_analysis_with_trained_weights():
    codec = _perturbed(ModelConfig(lift_hidden=4)).to_codec()
    x = _signal(10_001, seed=3, bits=15)
    coarse, details = codec.wavelet.analyse(x)
    assert np.array_equal(codec.wavelet.synthesise(coarse, details), x)


def test_codec_to_training_and_back_keeps_the_model_id():
    codec = _perturbed(ModelConfig(mean_hidden=4), seed=2).to_codec()
    again = TrainableModel.from_codec(codec).to_codec()
    assert model_id_of(again) == model_id_of(codec)
    fresh = HybridModel(ModelConfig())
    assert model_id_of(TrainableModel(ModelConfig()).to_codec()) == model_id_of(fresh)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_exact_path_on_gpu_equals_coder():
    net = _perturbed(ModelConfig(lift_hidden=8, mean_hidden=8))
    codec = net.to_codec()
    x = _signal(50_000, seed=9)
    s_np, d_np = codec.wavelet.analyse(x)
    gpu = net.to("cuda")
    s_g, d_g = gpu.analyse_exact(torch.from_numpy(x.astype(np.float64)).to("cuda"))
    assert np.array_equal(s_g.cpu().numpy().astype(np.int64), s_np)
    assert all(np.array_equal(a.cpu().numpy().astype(np.int64), b) for a, b in zip(d_g, d_np))
