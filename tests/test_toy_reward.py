"""benchmarks/toy_reward.py's choosers on a hand-made table: each picks on the fit noises and is scored on the others."""

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import toy_reward  # noqa: E402

GRID = [{"alpha": 0.5}, {"w_mix": 0.0, "w_a": 1.5, "w_b": 1.5}]
START = {"offset": 0.0, "w_mix": 3.0, "w_a": 0.0, "w_b": 0.0}


def row(rewards: list[list[float]], success: list[list[bool]], features: list[float]) -> dict:
    """A mix with 3 candidates (the start, then GRID): per candidate, per noise, its reward and verdict."""
    thetas = [f"c{i}" for i in range(3)]
    evals = {t: [{"reward": r, "old": -r, "success": s} for r, s in zip(rs, ss)]
             for t, rs, ss in zip(thetas, rewards, success)}
    return {"kind": "hue", "features": features, "thetas": thetas, "evals": evals}


def test_choosers_pick_on_fit_noises_and_score_on_held_out_ones():
    # noise 0 favours candidate 1, noises 0-1 together candidate 2; only noises 2-3 are scored
    mix = row([[0.0, 0.0, 0.0, 0.0], [5.0, -9.0, 9.0, 9.0], [4.0, 4.0, -9.0, -9.0]],
              [[False, False, False, True], [False, False, True, True], [True, True, False, True]],
              [0.1 * i for i in range(8)])
    other = row([[0.0] * 4, [1.0] * 4, [2.0] * 4], [[True] * 4, [False] * 4, [True] * 4], [0.2 * i for i in range(8)])
    rows = {"m": mix, "n": other, "o": other}
    out = toy_reward.choices(rows, GRID, START, fit=2, held=[2, 3], steps=50)
    assert out["reward, noise 0 only (noise_samples 1)"][0] == 1.0  # candidate 1: held-out verdicts True, True
    assert out["reward, noises 0-1 (noise_samples 2)"][0] == 0.5  # candidate 2: False, True
    assert out["old objective, noises 0-1"][0] == 1.0  # old = -reward here: candidate 1 (mean 2, against 0 and -4)
    assert out["the finder's alpha (the start)"] == [0.5, 1.0, 1.0]
    assert out["any candidate (the ceiling)"] == [1.0, 1.0, 1.0]
    # left out, mix m sees only the other two, whose best fixed candidate is 2
    assert out["best fixed candidate (this mix left out)"][0] == 0.5
    assert all(0.0 <= v <= 1.0 for v in out["learned ranker (this mix left out)"])
    assert len(out["learned ranker (this mix left out)"]) == 3
    # a shorter grid: the same table, candidates 0 and 1 only
    short = toy_reward.choices(rows, GRID[:1], START, fit=2, held=[2, 3], steps=50)
    assert short["reward, noises 0-1 (noise_samples 2)"][0] == 0.5  # candidate 0's mean 0 beats candidate 1's -2
    assert short["any candidate (the ceiling)"][0] == 1.0


def test_explain_names_each_option_by_the_words_it_does_not_share():
    assert toy_reward.option_words(("a red plain circle moving left", "a red striped circle moving left")) == [
        "plain", "striped"]
    directions = tuple(f"a green plain triangle moving {d}" for d in ("right", "up", "left", "down"))
    assert toy_reward.option_words(directions) == ["right", "up", "left", "down"]


def test_saved_frames_come_back_only_for_the_same_sampler_settings(tmp_path):
    """A table for another judge reuses sampled videos; other sampling settings get none (they would differ)."""
    frames = {"0.5,0,3,0,0@100": torch.rand(9, 3, 32, 32), "0.3,0,3,0,0@101": torch.rand(9, 3, 32, 32)}
    sampler = {"pretrained": "toy", "num_inference_steps": 50}
    path = tmp_path / "mix.safetensors"
    assert toy_reward.load_frames(path, sampler) == {}
    toy_reward.save_frames(path, frames, sampler)
    back = toy_reward.load_frames(path, sampler)
    assert back.keys() == frames.keys() and all(torch.equal(back[k], frames[k]) for k in frames)
    assert toy_reward.load_frames(path, {**sampler, "num_inference_steps": 20}) == {}
    assert not list(tmp_path.glob("*.tmp"))
