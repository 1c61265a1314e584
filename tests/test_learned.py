"""The mixing-parameter predictor (richspace.learned): its features mean what they say, it fits and generalises
on a known relation, it round-trips through safetensors, and infer.py samples its parameters as ``learned``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from richspace.conditioning import MixParams
from richspace.finder import interpolate
from richspace.learned import FEATURES, fit_predictor, load_predictor, mix_features, save_predictor

REPO = Path(__file__).resolve().parents[1]


def test_features_of_a_guide_on_the_line_and_off_it():
    g = torch.Generator().manual_seed(0)
    e_a, e_b = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    on = mix_features(e_a, e_b, interpolate(e_a, e_b, 0.3), 0.25)
    named = dict(zip(FEATURES, on.tolist()))
    assert named["finder_alpha"] == 0.25
    assert named["foot"] == pytest.approx(0.3, abs=1e-5)  # the foot sits where the guide is: weight 0.3 on A
    assert named["off_line"] == pytest.approx(0.0, abs=1e-5)
    normal = torch.randn(16, 8, generator=g)
    normal -= (normal * (e_b - e_a)).sum() / (e_b - e_a).pow(2).sum() * (e_b - e_a)  # orthogonal to the line
    off = dict(zip(FEATURES, mix_features(e_a, e_b, interpolate(e_a, e_b, 0.3) + normal, 0.25).tolist()))
    assert off["foot"] == pytest.approx(0.3, abs=1e-4)
    assert off["off_line"] == pytest.approx(float(normal.norm() / (e_a - e_b).norm()), rel=1e-4)


def test_the_predictor_learns_a_relation_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, len(FEATURES), generator=g)
    y = torch.stack([0.2 + 0.6 * x[:, 1], 1.0 + x[:, 2]], dim=1)  # alpha from the foot, w_a from the offset
    model = fit_predictor(x[:48], y[:48], ["alpha", "w_a"], {"offset": 0.0, "w_mix": 0.0, "w_b": 1.5}, steps=600)
    with torch.no_grad():
        held_out = (model(x[48:]) - y[48:]).abs().mean()
        baseline = (y[:48].mean(0) - y[48:]).abs().mean()
    assert held_out < 0.25 * baseline  # far better than predicting the mean, on examples it never saw
    params = model.predict_params(x[50])
    assert isinstance(params, MixParams) and params.w_b == 1.5 and params.w_mix == 0.0
    save_predictor(model, tmp_path / "p")
    again = load_predictor(tmp_path / "p")
    assert again.predict_params(x[50]) == params
    with pytest.raises(ValueError, match="is not a saved mixing-parameter predictor"):
        load_predictor(tmp_path / "missing")


def test_infer_samples_the_learned_parameters(tmp_path):
    x = torch.rand(8, len(FEATURES))
    y = torch.stack([torch.full((8,), 0.3), torch.full((8,), 2.0)], dim=1)
    save_predictor(fit_predictor(x, y, ["alpha", "w_a"], {"offset": 0.0, "w_mix": None, "w_b": 0.0}, steps=50),
                   tmp_path / "p")
    run_dir = tmp_path / "gen"
    proc = subprocess.run([sys.executable, str(REPO / "infer.py"), "--config", str(REPO / "configs" / "tiny.yaml"),
                           "--run_dir", str(run_dir), "--data.only", "[red-blue]", "--data.learned_from",
                           str(tmp_path / "p")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((run_dir / "results.jsonl").read_text())
    assert "learned" in row["videos"] and row["alphas"]["learned"] == pytest.approx(0.3, abs=0.05)
    bad = subprocess.run([sys.executable, str(REPO / "infer.py"), "--config", str(REPO / "configs" / "tiny.yaml"),
                          "--run_dir", str(tmp_path / "bad"), "--data.learned_from", str(tmp_path / "nothing")],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "is not a saved mixing-parameter predictor" in bad.stderr.strip().splitlines()[-1]
