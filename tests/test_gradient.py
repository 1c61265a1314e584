"""Refinement's gradient is right: autograd through every denoising step (the default, K = T) agrees with a
central finite difference of the same objective, in sign and size, on the toy (per-attribute rewards Q and D, every
mixing parameter, composed sampling) and on the tiny checkpoint (CLIP objective, alpha).
benchmarks/gradient_check.py measures what truncation (K < T) does to it."""

import pytest
import torch

from richspace.conditioning import PARAMS
from richspace.refinement import RefineDataModule, RefineModule
from richspace.sampler import Sampler

CASES = {
    "toy": dict(
        sampler=dict(pretrained="toy", num_frames=9, height=32, width=32, num_inference_steps=20, guidance_scale=3.0,
                     max_sequence_length=16),
        model=dict(clip="toy", params=list(PARAMS), start={"w_a": 0.5, "w_b": 0.5}, w_guide=0.0, w_balance=0.0,
                   w_queries=1.0, w_denoise=1.0, alpha_range=(-1.0, 2.0)),
        data=dict(experiments="configs/experiments/toy.yaml", only=["orange", "up-left"], pretrained="toy",
                  max_sequence_length=16, guidance_scale=3.0),
    ),
    "tiny": dict(
        sampler=dict(pretrained="tiny", num_frames=9, height=32, width=32, num_inference_steps=8),
        model=dict(clip="tiny"),
        data=dict(only=["red-blue", "tiger-zebra"]),
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    spec = CASES[request.param]
    module = RefineModule(Sampler(**spec["sampler"]), **spec["model"])
    module.load_models("cpu")
    data = RefineDataModule(run_dir=str(tmp_path_factory.mktemp("g")), compose=None, **spec["data"])
    data.prepare_data()
    data.setup("predict")
    return module, data.items


def objective(module, item, theta) -> float:
    with torch.no_grad():
        return float(module.objective(item, theta)[0]["objective"])


def test_exact_gradient_matches_a_finite_difference(case):
    module, items = case
    assert module.hparams.grad_steps == module.sampler.num_inference_steps  # the default is the exact gradient
    h = 1e-3
    checked = 0
    for item in items:
        theta = module.start(item).coefficients
        x = theta.clone().requires_grad_(True)
        with torch.enable_grad():
            module.objective(item, x)[0]["objective"].backward()
        for i, name in enumerate(PARAMS):
            if name not in module.hparams.params:
                continue
            up, down = theta.clone(), theta.clone()
            up[i] += h
            down[i] -= h
            fd = (objective(module, item, up) - objective(module, item, down)) / (2 * h)
            grad = float(x.grad[i])
            assert grad == pytest.approx(fd, rel=0.05, abs=1e-3), (item.id, name, grad, fd)
            checked += abs(fd) > 1e-3
    assert checked >= len(items)  # not a vacuous agreement of zeros
