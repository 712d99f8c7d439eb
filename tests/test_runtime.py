import os

import numpy as np
import pytest
import torch

from shared import runtime


def _draws() -> tuple[float, float, list[float]]:
    import random

    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_repeats_every_generator():
    runtime.seed_everything(123)
    first = _draws()
    runtime.seed_everything(123)
    assert _draws() == first
    runtime.seed_everything(124)
    assert _draws() != first


def test_setup_is_deterministic_for_a_training_step():
    def one_step() -> torch.Tensor:
        runtime.setup(seed=7, device="cpu", threads=1, deterministic=True)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(2))
        x = torch.rand(4, 3, 8, 8)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        net(x).logsumexp(1).mean().backward()
        opt.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    assert torch.equal(one_step(), one_step())
    assert torch.are_deterministic_algorithms_enabled()
    runtime.set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
    runtime.set_deterministic(True)


def test_pick_device_env_overrides_config(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    assert runtime.pick_device("auto").type == "cpu"
    monkeypatch.setenv(runtime.DEVICE_ENV, "tpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        runtime.pick_device("auto")


def test_pick_device_auto_and_missing_cuda(monkeypatch):
    monkeypatch.delenv(runtime.DEVICE_ENV, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.pick_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            runtime.pick_device("cuda")


def test_deterministic_mode_sets_cublas_workspace(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    runtime.set_deterministic(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_autocast_is_off_by_default():
    a = torch.rand(4, 4)
    with runtime.autocast("cpu"):
        assert (a @ a).dtype == torch.float32
    with runtime.autocast("cpu", enabled=True):
        assert (a @ a).dtype == torch.bfloat16


def test_private_generator_is_independent_of_global_state():
    g1 = runtime.generator(5)
    torch.manual_seed(99)
    g2 = runtime.generator(5)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
