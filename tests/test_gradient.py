"""Refinement's gradient is right: autograd through every denoising step (the default, K = T) agrees with a
central finite difference of the same objective, in sign and size, on the toy (per-attribute rewards Q and D, every
mixing parameter, composed sampling) and on the tiny checkpoint (CLIP objective, alpha).
benchmarks/gradient_check.py measures what truncation (K < T) does to it.

The difference's step and tolerance are each case's, from measurement (float32 throughout): the toy's objective
(about 4) bends within 0.01 in the offset, so its step is 0.001, where rounding moves the difference by up to
0.002 (the absolute tolerance 0.003; measured with the shipped judge and the composed one); the tiny
checkpoint's (about 30) is straight over 0.03 and rounds by up to 0.008 at a step of 0.001, and by under 0.0002
at 0.03, whatever the number of threads."""

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
        step=1e-3, tolerance=3e-3,
    ),
    "tiny": dict(
        sampler=dict(pretrained="tiny", num_frames=9, height=32, width=32, num_inference_steps=8),
        model=dict(clip="tiny"),
        data=dict(only=["red-blue", "strawberry-blueberry"]),  # slopes well above the tolerance
        step=3e-2, tolerance=1e-3,
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
    return module, data.items, spec["step"], spec["tolerance"]


def objective(module, item, theta) -> float:
    with torch.no_grad():
        return float(module.objective(item, theta)[0]["objective"])


def test_exact_gradient_matches_a_finite_difference(case):
    module, items, h, tolerance = case
    assert module.hparams.grad_steps == module.sampler.num_inference_steps  # the default is the exact gradient
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
            assert grad == pytest.approx(fd, rel=0.05, abs=tolerance), (item.id, name, grad, fd)
            checked += abs(fd) > 3 * tolerance
    assert checked >= len(items)  # not a vacuous agreement of zeros
