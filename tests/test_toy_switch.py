"""benchmarks/toy_switch.py's schedules: per-step weights that switch at the stated fraction of the steps."""

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import toy_switch  # noqa: E402


def test_a_schedule_switches_at_its_fraction_of_the_steps():
    weights = toy_switch.per_step([0, 3, 0], [0, 0, 3], 0.3, 50)
    assert weights.shape == (50, 3)
    assert torch.equal(weights[:15], torch.tensor([[0.0, 3.0, 0.0]] * 15, dtype=torch.float64))
    assert torch.equal(weights[15:], torch.tensor([[0.0, 0.0, 3.0]] * 35, dtype=torch.float64))
    assert torch.equal(toy_switch.per_step([1, 2, 3], [4, 5, 6], 0.0, 4), torch.tensor([[4.0, 5, 6]] * 4).double())


def test_every_schedule_weighs_some_text_at_every_step_and_the_reference_does_not_switch():
    plans = toy_switch.schedules(3.0)
    early, late, switch = plans["compose, no switch (a grid point)"]
    assert early == late and switch == 0.0
    for early, late, switch in plans.values():
        weights = toy_switch.per_step(early, late, switch, 50)
        assert (weights != 0).any(dim=1).all() and 0.0 <= switch < 1.0
