"""benchmarks/toy_reward.py's choosers on a hand-made table: each picks on the fit noises and is scored on the others."""

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from richspace.finder import find_interpolation, interpolate

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
    priors = toy_reward.left_out_priors(rows, GRID, START, fit=2, steps=50)
    assert priors.shape == (3, 3)
    out = toy_reward.choices(rows, GRID, fit=2, held=[2, 3], priors=priors, prior_weight=0.0)
    assert out["reward, noise 0 only (noise_samples 1)"][0] == 1.0  # candidate 1: held-out verdicts True, True
    assert out["reward, noises 0-1 (noise_samples 2)"][0] == 0.5  # candidate 2: False, True
    assert out["old objective, noises 0-1"][0] == 1.0  # old = -reward here: candidate 1 (mean 2, against 0 and -4)
    assert out["the finder's alpha (the start)"] == [0.5, 1.0, 1.0]
    assert out["any candidate (the ceiling)"] == [1.0, 1.0, 1.0]
    # left out, mix m sees only the other two, whose best fixed candidate is 2
    assert out["best fixed candidate (this mix left out)"][0] == 0.5
    assert all(0.0 <= v <= 1.0 for v in out["learned ranker (this mix left out)"])
    assert len(out["learned ranker (this mix left out)"]) == 3
    # the prior weighed in: at weight 0 the reward's own pick, at a large weight the learned ranker's
    combined = "reward, noises 0-1, and the learned prior (weight {:g}; this mix left out)"
    assert out[combined.format(0)] == out["reward, noises 0-1 (noise_samples 2)"]
    heavy = toy_reward.choices(rows, GRID, fit=2, held=[2, 3], priors=priors, prior_weight=1e6)
    assert heavy[combined.format(1e6)] == heavy["learned ranker (this mix left out)"]
    # a shorter grid: the same table, candidates 0 and 1 only
    short_priors = toy_reward.left_out_priors(rows, GRID[:1], START, fit=2, steps=50)
    short = toy_reward.choices(rows, GRID[:1], fit=2, held=[2, 3], priors=short_priors, prior_weight=0)
    assert short["reward, noises 0-1 (noise_samples 2)"][0] == 0.5  # candidate 0's mean 0 beats candidate 1's -2
    assert short["any candidate (the ceiling)"][0] == 1.0


def test_explain_names_each_option_by_the_words_it_does_not_share():
    assert toy_reward.option_words(("a red plain circle moving left", "a red striped circle moving left")) == [
        "plain", "striped"]
    directions = tuple(f"a green plain triangle moving {d}" for d in ("right", "up", "left", "down"))
    assert toy_reward.option_words(directions) == ["right", "up", "left", "down"]


def test_saved_frames_come_back_only_for_the_same_sampler_settings(tmp_path):
    """A table for another judge reuses sampled videos; videos of other sampling settings or weights (another
    --world) are refused, never replaced."""
    frames = {"0.5,0,3,0,0@100": torch.rand(9, 3, 32, 32), "0.3,0,3,0,0@101": torch.rand(9, 3, 32, 32)}
    sampler = {"pretrained": "toy", "num_inference_steps": 50}
    path = tmp_path / "mix.safetensors"
    assert toy_reward.load_frames(path, sampler) == {}
    toy_reward.save_frames(path, frames, sampler)
    back = toy_reward.load_frames(path, sampler)
    assert back.keys() == frames.keys() and all(torch.equal(back[k], frames[k]) for k in frames)
    for other in ({**sampler, "num_inference_steps": 20}, {**sampler, "pretrained": "runs/toy-world-rare/cogvideox"}):
        with pytest.raises(SystemExit, match="give another --frames"):
            toy_reward.load_frames(path, other)
    assert not list(tmp_path.glob("*.tmp"))


def test_chains_build_on_their_base_s_refined_parameters(tmp_path):
    """--chains_on: a chain's A is its base's refined conditioning (one text on the line, or the composed texts)."""
    specs = [s for s in yaml.safe_load((REPO / "configs/experiments/toy-dev.yaml").read_text())
             if s["id"] in ("chain-base-red-yellow-0", "chain-red-yellow-striped-0", "hue-magenta-red-11")]
    experiments = tmp_path / "mixes.yaml"
    experiments.write_text(yaml.safe_dump(specs))
    sampler = {"pretrained": "toy", "guidance_scale": 3.0, "max_sequence_length": 16}
    items = toy_reward.mix_items(sampler, str(experiments), str(tmp_path / "run"), 100)
    by_id = {i.id: i for i in items}
    base, chain = by_id["chain-base-red-yellow-0"], by_id["chain-red-yellow-striped-0"]
    assert torch.equal(chain.e_a, base.embeddings["finder"])  # before: the base's finder embedding

    def built(params: dict):
        refinement = tmp_path / "refinement.json"
        refinement.write_text(json.dumps({"mixes": {"chain-base-red-yellow-0": {"params": params}}}))
        return toy_reward.on_refined_bases(items, str(experiments), refinement, 3.0, 30)

    line = {"alpha": 0.3, "offset": 0.0, "w_mix": None, "w_a": 0.0, "w_b": 0.0}
    out, bases = built(line)
    assert [i.id for i in out] == [i.id for i in items] and list(bases) == [chain.id]
    out = {i.id: i for i in out}
    assert out[base.id] is base and out["hue-magenta-red-11"] is by_id["hue-magenta-red-11"]  # no chain: untouched
    new = out[chain.id]
    assert torch.allclose(new.e_a, interpolate(base.e_a, base.e_b, 0.3), atol=1e-5)  # the line's end: the refined one
    found = find_interpolation(new.e_a, chain.e_b, chain.e_guide, chain.n_ids[:3])
    assert new.alpha == pytest.approx(float(found.alpha))
    texts, weights = bases[chain.id]
    assert texts.shape[0] == 1 and weights.tolist() == [3.0]  # on the line: one text at the guidance scale
    composed = {"alpha": base.alpha, "offset": 0.0, "w_mix": 0.0, "w_a": 1.0, "w_b": 2.0}
    out, bases = built(composed)
    texts, weights = bases[chain.id]
    assert weights.tolist() == [1.0, 2.0]  # A and B of the base, composed as its refinement chose
    assert torch.allclose(texts.float(), torch.stack([base.e_a, base.e_b]), atol=1e-5)
    empty = tmp_path / "empty.json"
    empty.write_text('{"mixes": {}}')
    with pytest.raises(SystemExit, match="no refined parameters for chain-base-red-yellow-0"):
        toy_reward.on_refined_bases(items, str(experiments), empty, 3.0, 30)


def test_rotated_splits_hold_out_every_noise_in_turn():
    # candidate 1 wins noises 0-1 on reward but shows the mix only on noise 3; candidate 2 leads on noise 2 alone
    mix = row([[0.0, 0.0, 0.0, 0.0], [5.0, 5.0, 0.0, 0.0], [0.0, 0.0, 9.0, 0.0]],
              [[False] * 4, [False, False, False, True], [True, True, True, True]], [0.0] * 8)
    # k = 3, holding out noise h, sums over the other three: h = 0, 1: candidate 2 (9 against 5) shows it;
    # h = 2: candidate 1 (10) does not; h = 3: candidate 1 (10 against 9) does
    assert toy_reward.rotated({"m": mix}, 3, 3, 4) == [0.75]
    # k = 1: noises 0 and 1 pick candidate 1, noise 2 candidate 2, noise 3 the start (a tie: the first);
    # held out 0: picks from noises 1, 2, 3 score 0, 1, 0; held out 1: 0, 1, 0; held out 2: 0, 0, 0; held out 3: 1, 1, 1
    assert toy_reward.rotated({"m": mix}, 3, 1, 4) == [pytest.approx((1 / 3 + 1 / 3 + 0 + 1) / 4)]
    assert toy_reward.rotated({"m": mix}, 1, 2, 4) == [0.0]  # the start alone never shows it
    # a prior favouring candidate 2: at weight 0 the reward's pick as above; at a huge weight candidate 2 always
    prior = torch.tensor([[0.0, 0.0, 3.0]])
    assert toy_reward.rotated({"m": mix}, 3, 3, 4, prior, 0.0) == [0.75]
    assert toy_reward.rotated({"m": mix}, 3, 3, 4, prior, 1e6) == [1.0]  # candidate 2 shows it on every noise


def test_a_prior_fitted_on_another_table_is_the_test_refinement_s_prior():
    """With ``fitted_on`` (the dev table's rows), one predictor fitted on those rows alone scores every mix, as the
    test refinement's prior does: the same as fitting it directly, whatever the scored mixes' own rewards."""
    from richspace.learned import fit_predictor

    dev = {f"d{k}": row([[0.0] * 4, [float(k)] * 4, [2.0 - k] * 4], [[False] * 4] * 3,
                        [0.1 * k + 0.05 * i for i in range(8)]) for k in range(4)}
    scored = {"m": row([[9.0] * 4, [0.0] * 4, [0.0] * 4], [[True] * 4] * 3, [0.3] * 8),
              "n": row([[0.0] * 4, [0.0] * 4, [9.0] * 4], [[True] * 4] * 3, [0.1 * i for i in range(8)])}
    priors = toy_reward.left_out_priors(scored, GRID, START, fit=2, steps=50, fitted_on=dev)
    direct = fit_predictor(torch.tensor([r["features"] for r in dev.values()]),
                           torch.tensor([[0.0, float(k), 2.0 - k] for k in range(4)]), GRID, START, 50)
    with torch.no_grad():
        assert torch.allclose(priors, direct(torch.tensor([r["features"] for r in scored.values()])))
    flipped = {i: row([[0.0] * 4, [0.0] * 4, [-9.0] * 4], [[True] * 4] * 3, r["features"]) for i, r in scored.items()}
    assert torch.equal(priors, toy_reward.left_out_priors(flipped, GRID, START, fit=2, steps=50, fitted_on=dev))
    with pytest.raises(SystemExit, match=r"^error: --prior_table holds mixes this table scores \(first: d1\)"):
        toy_reward.left_out_priors({"d1": dev["d1"]}, GRID, START, fit=2, steps=50, fitted_on=dev)


def test_a_prior_table_of_other_settings_is_refused_in_one_line(tmp_path):
    settings = {"config": {"grid": GRID}, "seed": 100, "noises": 4, "experiments": "toy-dev.yaml"}
    table = tmp_path / "dev.json"
    table.write_text(json.dumps({"settings": settings, "mixes": {"d0": {}}}))
    assert toy_reward.prior_rows(str(table), dict(settings, experiments="extra.yaml")) == {"d0": {}}
    for other in ({"seed": 101}, {"noises": 3}, {"config": {"grid": GRID[:1]}}, {"world": "runs/toy-world-rare"}):
        with pytest.raises(SystemExit, match=r"^error: --prior_table .* is not a table of the same config"):
            toy_reward.prior_rows(str(table), dict(settings, **other))
    with pytest.raises(SystemExit, match=r"^error: --against_prior_table .* is not a table of the same config"):
        toy_reward.prior_rows(str(table), dict(settings, seed=101), "--against_prior_table")  # the other judge's


def test_losses_split_into_what_no_candidate_draws_and_what_the_pick_misses():
    # candidate 1 shows the mix on 3 of 4 noises, candidate 2 on 2: the best single candidate's share is 3/4
    mix = row([[0.0] * 4, [0.0] * 4, [1.0] * 4], [[False] * 4, [True, True, True, False], [True, False, True, False]],
              [0.0] * 8)
    never = {**row([[0.0] * 4] * 3, [[False] * 4] * 3, [0.0] * 8), "kind": "stripes"}
    rows = {"m": mix, "n": never}
    best = toy_reward.best_candidate(rows, 3, 4)
    assert best == [0.75, 0.0]
    assert toy_reward.best_candidate(rows, 2, 4) == [0.75, 0.0] and toy_reward.best_candidate(rows, 1, 4) == [0.0, 0.0]
    picked = toy_reward.rotated(rows, 3, 2, 4)  # the reward always keeps candidate 2: noises 0 and 2 of 4
    assert picked == [0.5, 0.0]
    # a perfect judge keeps candidate 1 where it leads on the fit noises, and the reward's candidate 2 on a tie:
    # held out 0: 3 of 3 splits show the mix; held out 1: none (every split ties); held out 2: 3; held out 3: none
    assert toy_reward.rotated(rows, 3, 2, 4, perfect=True) == [0.5, 0.0]
    perfect = [0.625, 0.0]  # columns apart: best, perfect, chooser; lost to candidates, to 2 noises, to the judge
    # the reward reads the videos: 5 show the mix (rewards 0, 0, 0, 1, 1), 7 do not (0 x 5, 1 x 2); of the 35 pairs
    # 10 are won and 19 tied: (10 + 19 / 2) / 35. Where no video shows the mix there is nothing to read.
    reads = [toy_reward.reading(rows[i], 3, 4) for i in rows]
    assert reads == [pytest.approx(19.5 / 35), None]
    assert toy_reward.reading(rows["m"], 2, 4) == 0.5  # the start and candidate 1 score alike: chance
    lines = toy_reward.by_kind(rows, {"all mixes": ["m", "n"], "guide fails": ["n"]}, best, perfect, picked, reads)
    assert lines == ["| all mixes | hue | 1 | 75% | 62% | 50% | 25% | 12% | 12% | 0.56 (1) |",
                     "| all mixes | stripes | 1 | 0% | 0% | 0% | 100% | 0% | 0% | - |",
                     "| guide fails | stripes | 1 | 0% | 0% | 0% | 100% | 0% | 0% | - |"]


def test_reading_is_the_rank_of_the_reward_against_the_verdicts_at_any_scale():
    """AUROC on ranks: rewards far outside [0, 1] (log-probabilities, objectives of 100) are not squashed into ties."""
    mix = row([[-300.0, -200.0, 40.0, 50.0], [60.0, 70.0, 80.0, 90.0], [0.0] * 4],
              [[False, False, True, True], [True, True, True, True], [False] * 4], [0.0] * 8)
    # shows the mix: 40, 50, 60, 70, 80, 90; does not: -300, -200, 0 x 4: every pair is won
    assert toy_reward.reading(mix, 3, 4) == 1.0
    flipped = {**mix, "evals": {t: [{**e, "reward": -e["reward"]} for e in es] for t, es in mix["evals"].items()}}
    assert toy_reward.reading(flipped, 3, 4) == 0.0
    # the finder's alpha on a grid point: listed twice, its videos read once. Shown: 1 (c0), 2 (c2); not: 3 (c0),
    # 0 (c2): 2 of 4 pairs won (counted twice, c0's 1 and 3 would make it 3 of 9)
    twice = row([[1.0, 3.0], [1.0, 3.0], [2.0, 0.0]], [[True, False], [True, False], [True, False]], [0.0] * 8)
    twice = {**twice, "thetas": ["c0", "c0", "c2"], "evals": {t: twice["evals"][t] for t in ("c0", "c2")}}
    assert toy_reward.reading(twice, 3, 2) == 0.5


def test_a_perfect_judge_keeps_what_the_pixels_show_on_the_fit_noises():
    """The bound on every reward: most verdicts of success on the noises chosen on, ties broken by the reward."""
    # candidate 0 shows the mix on noises 0, 1; candidate 1 on 0, 2, 3 with the higher reward; candidate 2 never
    evals = [[{"reward": 0.0, "success": s} for s in (True, True, False, False)],
             [{"reward": 1.0, "success": s} for s in (True, False, True, True)],
             [{"reward": 9.0, "success": False} for _ in range(4)]]
    assert toy_reward.perfect_pick(evals, (0, 1)) == 0  # 2 verdicts against 1, whatever the reward says
    assert toy_reward.perfect_pick(evals, (0,)) == 1  # a tie on noise 0: the reward breaks it
    assert toy_reward.perfect_pick(evals, (2, 3)) == 1
    evals[1] = [{**e, "reward": 0.0} for e in evals[1]]
    assert toy_reward.perfect_pick(evals, (0,)) == 0  # a tie in both: the first, as the reward's argmax keeps
    # every split, k = 1: held out 0: picks from noises 1, 2, 3 are 0, 1, 1, all show it on noise 0 (3 of 3);
    # held out 1: noises 0, 2, 3 pick 0, 1, 1 -> 1, 0, 0; held out 2: noises 0, 1, 3 pick 0, 0, 1 -> 0, 0, 1;
    # held out 3: noises 0, 1, 2 pick 0, 0, 1 -> 0, 0, 1
    mix = {"kind": "hue", "features": [0.0] * 8, "thetas": ["c0", "c1", "c2"],
           "evals": {f"c{i}": e for i, e in enumerate(evals)}}
    assert toy_reward.rotated({"m": mix}, 3, 1, 4, perfect=True) == [pytest.approx((1 + 1 / 3 + 1 / 3 + 1 / 3) / 4)]
    # the reward alone keeps candidate 2 (9) every time, which never shows it: the bound is above it
    assert toy_reward.rotated({"m": mix}, 3, 1, 4) == [0.0]


def test_against_pairs_choosers_over_the_same_videos_and_refuses_others():
    """--against: this table's choosers minus another judge's on the same videos; a table of other videos is refused."""
    # the other judge prefers candidate 1 (never shows the mix), this one candidate 2 (always shows it)
    mine = {m: row([[0.0] * 4, [0.0] * 4, [1.0] * 4], [[False] * 4, [False] * 4, [True] * 4], [0.1 * j] * 8)
            for j, m in enumerate("abc")}
    theirs = {m: row([[0.0] * 4, [1.0] * 4, [0.0] * 4], [[False] * 4, [False] * 4, [True] * 4], [0.1 * j] * 8)
              for j, m in enumerate("abc")}
    made = (4, 50)  # the table's noises and denoising steps
    alone = toy_reward.rotated(mine, 3, 2, 4)
    chosen = {"the reward alone": alone, "with the prior": alone}  # weight 0 below: the prior changes no pick
    assert chosen["the reward alone"] == [1.0, 1.0, 1.0]
    lines = toy_reward.against(mine, theirs, chosen, {"all": list(mine)}, GRID, START, 0.0, *made)
    assert lines[0].startswith("| the reward alone | 100% [") and lines[1].startswith("| with the prior | 100% [")
    other = {**theirs, "b": row([[0.0] * 4] * 3, [[True] * 4] * 3, [0.0] * 8)}  # other verdicts: other videos
    with pytest.raises(SystemExit, match="did not judge the same videos \\(first: b\\)"):
        toy_reward.against(mine, other, chosen, {"all": list(mine)}, GRID, START, 0.0, *made)
    with pytest.raises(SystemExit, match="first: c"):
        toy_reward.against(mine, {k: v for k, v in theirs.items() if k != "c"}, chosen, {"all": list(mine)}, GRID,
                           START, 0.0, *made)


def test_against_fits_the_other_judges_prior_on_its_own_dev_table():
    """With --prior_table, the other judge's prior comes from the dev table judged as it was (fitted_on), not from its
    own scored mixes left out: with the prior weighing most, the pick follows whichever table it was fitted on."""
    shows = [[False] * 4, [False] * 4, [True] * 4]
    mine = {m: row([[0.0] * 4, [0.0] * 4, [1.0] * 4], shows, [0.1 * j] * 8) for j, m in enumerate("abc")}
    theirs = {m: row([[0.0] * 4, [1.0] * 4, [0.0] * 4], shows, [0.1 * j] * 8) for j, m in enumerate("abc")}
    their_dev = {m: row([[0.0] * 4, [0.0] * 4, [1.0] * 4], shows, [0.1 * j] * 8) for j, m in enumerate("xyz")}
    chosen = {"the reward alone": [1.0] * 3, "with the prior": [1.0] * 3}
    lines = toy_reward.against(mine, theirs, chosen, {"all": list(mine)}, GRID, START, 100.0, 4, 300,
                               fitted_on=their_dev)
    assert lines[0].startswith("| the reward alone | 100% [") and lines[1].startswith("| with the prior | 0% [")
    lines = toy_reward.against(mine, theirs, chosen, {"all": list(mine)}, GRID, START, 100.0, 4, 300)
    assert lines[1].startswith("| with the prior | 100% [")  # fitted on their own rewards: their candidate 1


def test_against_with_a_prior_table_needs_the_other_judges_dev_table(tmp_path):
    """--against and --prior_table without --against_prior_table (or it alone) is one line before anything is
    sampled or written."""
    table, frames = tmp_path / "table.json", tmp_path / "f"
    given = tmp_path / "other.json"
    given.write_text('{"mixes": {}}')
    for extra in (["--against", str(given), "--prior_table", str(given)], ["--against_prior_table", str(given)]):
        with pytest.raises(SystemExit) as stop:
            toy_reward.main(["--table", str(table), "--frames", str(frames), *extra])
        assert str(stop.value.code).startswith("error: --against with --prior_table needs --against_prior_table")
    assert not table.exists() and not frames.exists()


def test_world_must_be_a_finished_build(tmp_path, capsys):
    """--world: a directory without the build's trained models is refused before anything is sampled or written."""
    table = tmp_path / "table.json"
    with pytest.raises(SystemExit) as stop:
        toy_reward.main(["--world", str(tmp_path / "unbuilt"), "--table", str(table), "--frames", str(tmp_path / "f")])
    assert stop.value.code == 2 and "run the build to the end first" in capsys.readouterr().err
    assert not table.exists() and not (tmp_path / "f").exists()


@pytest.mark.parametrize("flag", ["--config", "--table", "--against", "--frames", "--prior_table"])
def test_unreadable_inputs_are_one_line_before_anything_is_sampled(flag, tmp_path):
    """A file that is not JSON or YAML (or, for --frames, not a directory) stops the script at once, naming the
    flag; nothing is sampled or written."""
    bad = tmp_path / "bad.txt"
    bad.write_text("{not: [valid")
    table, frames = tmp_path / "table.json", tmp_path / "f"
    args = {"--table": str(table), "--frames": str(frames), flag: str(bad)}
    with pytest.raises(SystemExit) as stop:
        toy_reward.main([part for pair in args.items() for part in pair])
    assert str(stop.value.code).startswith(f"error: {flag} {bad}")
    assert not table.exists() and not frames.exists() and bad.read_text() == "{not: [valid"


def test_the_predictor_pool_bounds_one_pick_per_mix_where_the_guide_fails():
    """predictor_pool.bounds: a hue mix whose candidate 1 always wins (a perfect judge and hindsight: 100%), a
    stripes mix whose candidate 0 wins on noise 3 alone, the reward favouring candidate 1 (a perfect judge never
    scores it: it sees noise 3 only when not scored on it; hindsight: 25%); kinds weigh as dev asks them (one
    each); a mix where the guide works is not read."""
    import predictor_pool

    never, always = [False] * 4, [True] * 4
    rows = {"h": {**row([[0.0] * 4, [1.0] * 4, [0.0] * 4], [never, always, never], [0.0] * 8), "kind": "hue"},
            "s": {**row([[0.0] * 4, [1.0] * 4, [0.0] * 4], [[False, False, False, True], never, never], [0.0] * 8),
                  "kind": "stripes"},
            "w": {**row([[0.0] * 4] * 3, [never] * 3, [0.0] * 8), "kind": "hue"}}
    fails = {"h": True, "s": True, "w": False}
    lines = predictor_pool.bounds(rows, fails, {"h", "s", "w"}, 2, 4, [0.5, 0.0, 0.0])
    cells = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert [c.split(" [")[0] for c in cells["the shipped chooser (reward on 2 noises, dev's prior)"]] == ["25.0%", "50.0%"]
    for k in (1, 2, 3):
        name = f"a perfect judge of {k} noise{'s' if k > 1 else ''}"
        assert [c.split(" [")[0] for c in cells[name]] == ["50.0%", "100.0%"], name
    assert [c.split(" [")[0] for c in cells["the best candidate per mix, in hindsight"]] == ["62.5%", "100.0%"]


def test_kinds_names_only_kinds_the_file_has(tmp_path):
    """--kinds scores some kinds of a file's mixes (a chain's base still gives its A); a kind the file lacks is one
    line, before anything is sampled or written."""
    table, frames = tmp_path / "table.json", tmp_path / "f"
    with pytest.raises(SystemExit) as stop:
        toy_reward.main(["--kinds", "chain,chains", "--table", str(table), "--frames", str(frames)])
    assert str(stop.value.code).startswith("error: --kinds chain,chains: ") and "'chains'" in str(stop.value.code)
    assert "chain-base, diagonal, hue, seen, stripes" in str(stop.value.code)
    assert not table.exists() and not frames.exists()


def test_the_predictor_pool_reads_a_wider_fit_against_dev_alone(tmp_path, capsys):
    """benchmarks/predictor_pool.py: a pool whose mixes show how features pick the candidate teaches the pooled
    predictor what dev's two mixes cannot; each side is left one out; labels and weights are as documented."""
    import predictor_pool

    def mix(kind: str, x: float, best: int) -> dict:  # candidate `best` wins on every noise, the others never
        rewards = [[1.0 if c == best else 0.0] * 4 for c in range(3)]
        success = [[c == best] * 4 for c in range(3)]
        return {**row(rewards, success, [x] + [0.0] * 7), "kind": kind}

    settings = {"config": {"grid": GRID, "start": None}, "seed": 100, "noises": 4}
    dev = {"d0": mix("hue", -1.0, 1), "d1": mix("chain", -0.2, 1)}  # dev alone: candidate 1 always
    pool = {f"p{i}": mix("hue" if i % 2 else "chain", x, 1 if x < 0 else 2)  # the pool: x > 0 wants candidate 2
            for i, x in enumerate([-2.0, -1.5, -0.5, 0.5, 1.5, 2.0, 2.5, 3.0])}
    pool["q0"] = mix("stripes", 2.0, 2)
    (tmp_path / "dev.json").write_text(json.dumps({"settings": settings, "mixes": dev}))
    (tmp_path / "pool.json").write_text(json.dumps({"settings": settings, "mixes": pool}))
    labels = [{"id": i, "guide_label_rate": 0.0} for i in [*dev, *pool] if i != "q0"]
    (tmp_path / "labels.json").write_text(json.dumps(labels))

    settings_back, dev_rows, others, held = predictor_pool.load_pool(tmp_path / "dev.json", [tmp_path / "pool.json"])
    assert held == {}
    rows = {**dev_rows, **others}
    fails = predictor_pool.guide_fails(rows, [tmp_path / "labels.json"])
    assert fails["q0"] is True  # a stripes mix without a label fails by construction
    shipped = predictor_pool.shipped_priors(dev_rows, others, GRID, START, 200)
    pooled = toy_reward.left_out_priors(rows, GRID, START, 2, 200)
    before = predictor_pool.rates(rows, shipped, 3, 4, 0.25)["learned"]
    after = predictor_pool.rates(rows, pooled, 3, 4, 0.25)["learned"]
    wants_two = [m for m, i in enumerate(rows) if rows[i]["features"][0] > 0 and i in others]
    assert all(before[m] == 0.0 for m in wants_two)  # dev alone never picks candidate 2
    assert sum(after[m] for m in wants_two) / len(wants_two) > 0.8  # the pool taught it
    lines = predictor_pool.report(rows, fails, {"learned": before, "refined": before},
                                  {"learned": after, "refined": after}, set(dev_rows))
    weighed = next(line for line in lines if line.startswith("| learned | fails (weighed"))
    # dev asks hues and chains where the guide fails, one each; the stripes mix is not asked: weight 0
    strata = {"hue": [], "chain": []}
    for m, i in enumerate(rows):
        if rows[i]["kind"] in strata:
            strata[rows[i]["kind"]].append(after[m])
    expected = (sum(strata["hue"]) / len(strata["hue"]) + sum(strata["chain"]) / len(strata["chain"])) / 2
    assert f"| {expected:.1%} |" in weighed, weighed

    weights = predictor_pool.cell_weights(list(rows), rows, set(dev_rows), fails)
    by_cell: dict = {}
    for i, w in zip(rows, weights.tolist()):
        by_cell[(rows[i]["kind"], fails[i])] = by_cell.get((rows[i]["kind"], fails[i]), 0.0) + w
    assert by_cell == pytest.approx({("hue", True): 1.0, ("chain", True): 1.0, ("stripes", True): 0.0})

    # the command: the shipped side may choose among a prefix of the tables' grid (a grid the pool extends)
    files = ["--dev", str(tmp_path / "dev.json"), "--pool", str(tmp_path / "pool.json"), "--labels",
             str(tmp_path / "labels.json"), "--steps", "20"]
    predictor_pool.main([*files, "--shipped_points", "1"])
    printed = capsys.readouterr().out
    assert "2 dev mixes and 9 more fitted on, 0 read only; 11 where the guide fails" in printed
    assert "| learned | fails (weighed" in printed
    predictor_pool.main([*files, "--weighted"])
    assert "pooled fit weighed to dev cells" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--shipped_points 3: the tables' grid has 2 points"):
        predictor_pool.main([*files, "--shipped_points", "3"])

    # --held_out: the stripes mix read but fitted on by neither side; its rewards reach no fit
    held = {"q0": others.pop("q0")}
    fit_rows = {**dev_rows, **others}
    priors = predictor_pool.pooled_priors(fit_rows, held, GRID, START, 200)
    assert int(priors[-1].argmax()) == 2  # x = 2: the pool's mixes taught candidate 2
    flipped = {"q0": {**held["q0"], "evals": {theta: [{**e, "reward": -e["reward"]} for e in evals]
                                              for theta, evals in held["q0"]["evals"].items()}}}
    assert torch.equal(predictor_pool.pooled_priors(fit_rows, flipped, GRID, START, 200), priors)
    (tmp_path / "pool.json").write_text(json.dumps({"settings": settings, "mixes": others}))
    (tmp_path / "held.json").write_text(json.dumps({"settings": settings, "mixes": held}))
    predictor_pool.main([*files, "--held_out", str(tmp_path / "held.json")])
    assert "2 dev mixes and 8 more fitted on, 1 read only; 11 where the guide fails" in capsys.readouterr().out
    (tmp_path / "twice.json").write_text(json.dumps({"settings": settings, "mixes": {"p0": pool["p0"]}}))
    with pytest.raises(SystemExit, match="--held_out .*twice.json repeats mix p0"):
        predictor_pool.load_pool(tmp_path / "dev.json", [tmp_path / "pool.json"], [tmp_path / "twice.json"])

    (tmp_path / "some.json").write_text(json.dumps(labels[:1]))
    with pytest.raises(SystemExit, match="no --labels entry"):
        predictor_pool.guide_fails(rows, [tmp_path / "some.json"])
    (tmp_path / "again.json").write_text(json.dumps({"settings": settings, "mixes": {"d0": dev["d0"]}}))
    with pytest.raises(SystemExit, match="repeats mix d0"):
        predictor_pool.load_pool(tmp_path / "dev.json", [tmp_path / "again.json"])
    (tmp_path / "other.json").write_text(json.dumps({"settings": {**settings, "seed": 0}, "mixes": pool}))
    with pytest.raises(SystemExit, match="not a table of the same config"):
        predictor_pool.load_pool(tmp_path / "dev.json", [tmp_path / "other.json"])
