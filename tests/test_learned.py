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


CANDIDATES = [{"alpha": 0.2}, {"alpha": 0.8}, {"w_mix": 0.0, "w_a": 1.5, "w_b": 1.5}]
START = {"offset": 0.0, "w_mix": 3.0, "w_a": 0.0, "w_b": 0.0}


def rewards_for(x: torch.Tensor) -> torch.Tensor:
    """A known rule: the finder (candidate 0) when the foot is low, composition when A and B differ late in the
    text, alpha 0.8 otherwise; the chosen candidate's reward 1, the others' 0."""
    y = torch.zeros(len(x), 1 + len(CANDIDATES))
    best = torch.where(x[:, 1] < 0.3, 0, torch.where(x[:, 6] > 0.5, 3, 2))
    y[torch.arange(len(x)), best] = 1.0
    return y


def test_the_predictor_learns_a_rule_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(96, len(FEATURES), generator=g)
    y = rewards_for(x)
    model = fit_predictor(x[:72], y[:72], CANDIDATES, START, steps=800)
    with torch.no_grad():
        chosen = model(x[72:]).argmax(1)
    hits = float((y[72:][torch.arange(24), chosen] == 1).float().mean())
    assert hits >= 0.7  # on examples it never saw; always the commonest candidate scores 42% here
    params = model.predict_params(x[80])
    assert isinstance(params, MixParams)
    index = int(chosen[8])
    assert params == model.params_of(index, float(x[80, 0]))
    assert model.params_of(0, 0.37) == MixParams(0.37, 0.0, 3.0, 0.0, 0.0)  # the finder's alpha at the start values
    assert model.params_of(3, 0.37) == MixParams(0.37, 0.0, 0.0, 1.5, 1.5)
    save_predictor(model, tmp_path / "p")
    again = load_predictor(tmp_path / "p")
    assert again.predict_params(x[80]) == params
    with pytest.raises(ValueError, match="is not a saved mixing-parameter predictor"):
        load_predictor(tmp_path / "missing")


def test_infer_samples_the_learned_parameters(tmp_path):
    x = torch.rand(8, len(FEATURES))
    y = torch.zeros(8, 1 + len(CANDIDATES))
    y[:, 1] = 1.0  # alpha 0.2 always best
    save_predictor(fit_predictor(x, y, CANDIDATES, START, steps=200), tmp_path / "p")
    run_dir = tmp_path / "gen"
    proc = subprocess.run([sys.executable, str(REPO / "infer.py"), "--config", str(REPO / "configs" / "tiny.yaml"),
                           "--run_dir", str(run_dir), "--data.only", "[red-blue]", "--data.learned_from",
                           str(tmp_path / "p")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((run_dir / "results.jsonl").read_text())
    assert "learned" in row["videos"] and row["alphas"]["learned"] == 0.2
    bad = subprocess.run([sys.executable, str(REPO / "infer.py"), "--config", str(REPO / "configs" / "tiny.yaml"),
                          "--run_dir", str(tmp_path / "bad"), "--data.learned_from", str(tmp_path / "nothing")],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "is not a saved mixing-parameter predictor" in bad.stderr.strip().splitlines()[-1]


def test_learned_from_a_search_refinement(tmp_path):
    """train.py's search on toy mixes measures every candidate's reward; the predictor learns from exactly those,
    and refuses a refinement that is not a search."""
    from richspace.learned import main as learned_main, training_set

    refine = tmp_path / "refine"
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "--run_dir", str(refine), "--data.only",
                           "[orange, up-left, striped-triangle]", "--model.steps", "0"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    toy = str(REPO / "configs" / "experiments" / "toy.yaml")
    x, y, candidates, start = training_set(refine / "refinement.json", toy, "toy", 16)
    entries = json.loads((refine / "refinement.json").read_text())["mixes"]
    assert x.shape == (3, len(FEATURES)) and y.shape == (3, 1 + len(candidates))
    for row, entry in zip(y, entries.values()):
        assert float(row.max()) == pytest.approx(entry["objective_after"], abs=1e-5)  # no moves: the grid's best
        assert float(row[0]) == pytest.approx(entry["objective_before"], abs=1e-5)  # candidate 0: the start
    assert learned_main(["--refinement", str(refine / "refinement.json"), "--experiments", toy, "--out",
                         str(tmp_path / "p"), "--steps", "50"]) == 0
    assert load_predictor(tmp_path / "p").config["candidates"] == candidates
    gradient = tmp_path / "gradient"
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "--run_dir", str(gradient), "--data.only",
                           "[orange]", "--model.mode", "gradient", "--model.params", "[alpha]", "--model.grid", "null",
                           "--model.steps", "1", "--model.grad_steps", "2"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert learned_main(["--refinement", str(gradient / "refinement.json"), "--experiments", toy, "--out",
                         str(tmp_path / "q")]) == 2


def test_per_mix_weights_decide_between_mixes_that_disagree():
    """Two groups of mixes with the same features want different candidates; the heavier group wins, and equal
    weights are the unweighted fit, bit for bit."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, len(FEATURES), generator=g).repeat(6, 1)
    y = torch.zeros(6, 1 + len(CANDIDATES))
    y[:3, 1], y[3:, 2] = 1.0, 1.0  # three mixes want candidate 1, three candidate 2
    probe = x[:1]
    for heavy, wanted in ((slice(0, 3), 1), (slice(3, 6), 2)):
        weights = torch.full((6,), 0.1)
        weights[heavy] = 1.0
        with torch.no_grad():
            assert int(fit_predictor(x, y, CANDIDATES, START, steps=300, weights=weights)(probe).argmax()) == wanted
    plain, equal = (fit_predictor(x, y, CANDIDATES, START, steps=50, weights=w) for w in (None, torch.full((6,), 2.0)))
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), equal.state_dict().values()))
    for bad in (torch.ones(5), torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0, 1.0]), torch.zeros(6)):
        with pytest.raises(ValueError, match="non-negative numbers with a positive sum"):
            fit_predictor(x, y, CANDIDATES, START, steps=1, weights=bad)


@pytest.mark.parametrize("case", ["no refinement", "out is a file", "out holds a predictor", "not json"])
def test_fitting_errors_are_one_line_and_overwrite_nothing(case, tmp_path, capsys):
    from richspace.learned import main as learned_main

    refinement, out = tmp_path / "refinement.json", tmp_path / "p"
    toy = str(REPO / "configs" / "experiments" / "toy.yaml")
    expected = {"no refinement": f"{refinement} is not a readable refinement result file",
                "not json": f"{refinement} is not a readable refinement result file",
                "out is a file": f"--out {out} is a file",
                "out holds a predictor": f"--out {out} already holds a predictor; give a new --out, or --overwrite"}
    if case == "not json":
        refinement.write_text("mixes: {}")
    if case == "out is a file":
        out.write_text("results")
    if case == "out holds a predictor":
        out.mkdir()
        (out / "config.json").write_text("{}")
    try:
        code = learned_main(["--refinement", str(refinement), "--experiments", toy, "--out", str(out)])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: " in last and expected[case] in last, last
    if case == "out is a file":
        assert out.read_text() == "results"
    if case == "out holds a predictor":
        assert (out / "config.json").read_text() == "{}"


def test_the_prior_decides_between_close_rewards_not_far_ones():
    from richspace.learned import with_prior

    rewards = torch.tensor([1.0, 1.1, -5.0])
    prior = torch.tensor([0.0, -2.0, 4.0])
    assert with_prior(rewards, prior, 0.0) == 1  # the rewards alone
    assert with_prior(rewards, prior, 1e6) == 2  # the prior alone
    assert with_prior(rewards, prior, 0.25) == 0  # close rewards: the prior tips them; candidate 2 stays out
    assert with_prior(rewards * 100 + 7, prior, 0.25) == 0  # standardised: the rewards' scale does not matter
