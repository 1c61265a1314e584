"""benchmarks/reward_forms.py: Q and D rebuilt from per-option readings, weighed in several forms, picked on every
split of the noises; checked against toy_reward.py's own chooser and refinement's own rewards."""

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from richspace.objective import Query, parse_queries, query_reward

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import reward_forms  # noqa: E402
import toy_reward  # noqa: E402

QUERIES = (Query(("red", "green", "blue"), (0,)), Query(("up", "down"), (0, 1)))


def test_reward_of_is_the_mean_over_queries_of_the_wanted_options_log_softmax():
    scores = torch.tensor([2.0, 0.0, -1.0, 0.5, 0.5])
    first = 2.0 - torch.logsumexp(torch.tensor([2.0, 0.0, -1.0]), 0)
    second = torch.log(torch.tensor(0.5))  # two equal options, both wanted
    assert reward_of_ok(scores, 1.0, float((first + second) / 2))
    scaled = torch.log_softmax(torch.tensor([2.0, 0.0, -1.0]) / 0.5, 0)[0]
    assert reward_of_ok(scores, 0.5, float((scaled + second) / 2))


def reward_of_ok(scores, temperature, expected) -> bool:
    return reward_forms.reward_of(scores, QUERIES, temperature) == pytest.approx(expected, rel=1e-6)


def table_row(q: torch.Tensor, d: torch.Tensor, success: torch.Tensor) -> dict:
    """A toy_reward.py row whose reward is Q + D, for candidates c0, c1, ... on each noise."""
    thetas = [f"c{i}" for i in range(q.shape[0])]
    evals = {t: [{"reward": float(q[c, j] + d[c, j]), "old": 0.0, "success": bool(success[c, j])}
                 for j in range(q.shape[1])] for c, t in enumerate(thetas)}
    return {"kind": "hue", "features": [0.0] * 8, "thetas": thetas, "evals": evals}


def test_the_shipped_form_picks_what_toy_reward_s_chooser_picks():
    gen = torch.Generator().manual_seed(0)
    rows, mixes = {}, []
    for m in range(12):
        q, d = torch.randn(5, 4, generator=gen, dtype=torch.float64), torch.randn(5, 4, generator=gen, dtype=torch.float64)
        success = torch.rand(5, 4, generator=gen) < 0.5
        rows[f"m{m}"] = table_row(q, d, success)
        mixes.append(reward_forms.MixRewards(q, d, success))
    theirs = toy_reward.rotated(rows, 5, 2, 4)
    mine = [reward_forms.every_split(mix, reward_forms.form("sum:1")) for mix in mixes]
    assert mine == pytest.approx(theirs)
    prior = torch.randn(12, 5, generator=gen)
    theirs = toy_reward.rotated(rows, 5, 2, 4, prior, 0.5)
    mine = [reward_forms.every_split(mix, reward_forms.form("sum:1"), 2, prior[m], 0.5) for m, mix in enumerate(mixes)]
    assert mine == pytest.approx(theirs)
    assert len(set(mine)) > 2  # the random mixes are not all alike


def test_each_form_weighs_q_and_d_as_named():
    q, d = torch.tensor([3.0, 1.0, 0.0]), torch.tensor([0.0, 0.3, 0.2])
    assert int(reward_forms.form("sum:0")(q, d).argmax()) == 0  # Q alone
    assert int(reward_forms.form("d")(q, d).argmax()) == 1  # D alone
    assert reward_forms.form("sum:20")(q, d).tolist() == pytest.approx([3.0, 7.0, 4.0])
    # standardised: the spread of each reward over the candidates does not matter, only its shape
    z = reward_forms.form("z:1")
    assert torch.allclose(z(q, d), z(100 * q, d / 7), atol=1e-6)
    assert int(z(q, d).argmax()) == 1 and int(reward_forms.form("sum:1")(q, d).argmax()) == 0  # sum: Q's spread wins
    assert reward_forms.form("rank")(q, d).tolist() == [2.0, 3.0, 1.0]  # ranks (2, 1, 0) + (0, 2, 1)


@pytest.mark.parametrize("name", ["sum", "z:x", "d:1", "mean:1", "rank:2"])
def test_an_unknown_form_is_a_one_line_error(name):
    with pytest.raises(SystemExit, match="unknown form"):
        reward_forms.form(name)


def test_mix_rewards_read_each_video_once_and_share_a_theta_listed_twice():
    row = {"thetas": ["a", "b", "a"], "evals": {t: [{"success": t == "b"}, {"success": False}] for t in "ab"}}
    readings = {f"{t}@{7 + j}": (torch.tensor([1.0 + j, 0.0, 0.0, 0.0, 0.0]) * (t == "a"),
                                 torch.tensor([0.0, 1.0, 2.0, 0.0, 0.0]) * (j + 1))
                for t in "ab" for j in range(2)}
    mix = reward_forms.mix_rewards(row, readings, QUERIES, 7, 3, 1.0, 0.5)
    assert mix.q.shape == mix.d.shape == mix.success.shape == (3, 2)
    assert torch.equal(mix.q[0], mix.q[2]) and torch.equal(mix.d[0], mix.d[2])
    assert mix.success.tolist() == [[False, False], [True, False], [False, False]]
    expected = reward_forms.reward_of(-readings["b@8"][1], QUERIES, 0.5)
    assert float(mix.d[1, 1]) == pytest.approx(expected)
    assert float(mix.q[0, 1]) > float(mix.q[1, 1])  # "a" reads red more, and red is wanted


def test_readings_give_refinement_s_own_q_and_d_back(striped_triangle):
    """The judge scores and generator errors read from a video rebuild exactly the Q and D refinement computes."""
    from richspace.refinement import RefineModule

    item, sampler = striped_triangle
    module = RefineModule(sampler, clip="toy", mode="search", steps=0, w_guide=0.0, w_balance=0.0, w_queries=1.0,
                          w_denoise=1.0, denoise_pairs=4, query_temperature=0.5, denoise_temperature=0.02)
    module.load_models("cpu")
    queries = parse_queries(item.meta["queries"], item.id)
    with torch.no_grad():
        terms, frames = module.objective(item, torch.tensor(item.alpha, dtype=torch.float64))
    judge, errors = reward_forms.read_videos(module, item, {"v": frames})["v"]
    assert reward_forms.reward_of(judge, queries, 0.5) == pytest.approx(float(terms["queries"]), rel=1e-4)
    assert reward_forms.reward_of(-errors, queries, 0.02) == pytest.approx(float(terms["denoise"]), rel=1e-4)
    assert float(terms["denoise"]) != pytest.approx(float(query_reward(list((-errors).split(
        [len(q.options) for q in queries])), queries, 0.01)))  # the temperature is D's own


def test_refuses_a_table_without_d_and_readings_of_another_table(tmp_path):
    table = tmp_path / "q.json"
    table.write_text(json.dumps({"settings": {"config": {"w_denoise": 0.0}}, "mixes": {}}))
    with pytest.raises(SystemExit, match="D off"):
        reward_forms.main(["--table", str(table)])
    with pytest.raises(SystemExit, match="does not exist"):
        reward_forms.main(["--table", str(tmp_path / "none.json")])
    with pytest.raises(SystemExit, match="positive temperature"):
        reward_forms.main(["--table", str(table), "--denoise_temperature", "0"])
    with pytest.raises(SystemExit, match="comma-separated"):
        reward_forms.main(["--table", str(table), "--priors", "0,a"])
    cache = tmp_path / "readings.pt"
    torch.save({"settings": {"table": 1}, "mixes": {"m": {}}}, cache)
    assert reward_forms.load_readings(cache, {"table": 1})["mixes"] == {"m": {}}
    with pytest.raises(SystemExit, match="another table"):
        reward_forms.load_readings(cache, {"table": 2})
    assert reward_forms.load_readings(tmp_path / "new.pt", {"table": 2}) == {"settings": {"table": 2}, "mixes": {}}


def test_columns_split_by_the_guide_labels_and_by_kind():
    rows = {"h1": {"kind": "hue"}, "d1": {"kind": "diagonal"}, "h2": {"kind": "hue"}}
    assert reward_forms.groups_of(rows, {}) == {"all mixes": ["h1", "d1", "h2"]}
    assert reward_forms.groups_of(rows, {"h1": True}, by_kind=True) == {  # labels of some mixes only: no split
        "all mixes": ["h1", "d1", "h2"], "all mixes, hue": ["h1", "h2"], "all mixes, diagonal": ["d1"]}
    labels = {"h1": True, "d1": True, "h2": False}
    assert reward_forms.groups_of(rows, labels, by_kind=True) == {
        "guide fails": ["h1", "d1"], "guide works": ["h2"], "guide fails, hue": ["h1"],
        "guide fails, diagonal": ["d1"], "guide works, hue": ["h2"]}


def test_a_chains_on_table_is_read_from_its_chains_own_videos(tmp_path):
    dev = REPO / "configs" / "experiments" / "toy-dev.yaml"
    chains = {m["id"] for m in yaml.safe_load(dev.read_text()) if "base" in m}  # read here, not by load_specs
    assert chains and reward_forms.chained_ids({"chains_on": "refinement.json"}, dev) == chains
    assert reward_forms.chained_ids({"chains_on": None}, dev) == set() == reward_forms.chained_ids({}, dev)
    # the file toy_reward.py --chains_on samples a chain into, and the one it samples every other mix into
    assert toy_reward.frames_file(tmp_path, "c", True) == tmp_path / "c.on-refined-base.safetensors"
    assert toy_reward.frames_file(str(tmp_path), "m", False) == tmp_path / "m.safetensors"
