"""Does refinement's reward pick videos that show the mix, on noise it was not fitted to? Checked on the dev mixes.

    python benchmarks/toy_reward.py                    # development mixes, 4 noises: about 30 minutes on 2 cores
    python benchmarks/toy_reward.py --grid_points 12   # the grid's first 12 points only (no sampling after a run)
    python benchmarks/toy_reward.py --limit 10 --noises 3   # a quick look
    python benchmarks/toy_reward.py --explain diagonal-down-left-10   # why the reward picks what it picks, one mix
    python -m richspace.toy.mixes --unasked diagonal --pair up-right --out runs/extra   # more dev mixes, then:
    python benchmarks/toy_reward.py --experiments runs/extra/toy-unasked-diagonal-up-right.yaml \
        --table runs/extra/up-right.json --frames runs/extra/frames \
        --prior_table runs/toy-reward/candidates.json   # the dev table above: the prior as at test (~20 min)
    python -m richspace.toy.mixes --unasked chain --out runs/extra   # every chain no shipped set asks, then:
    python benchmarks/toy_reward.py --experiments runs/extra/toy-unasked-chain.yaml --kinds chain \
        --table runs/extra/chains.json --frames runs/extra/frames --prior_table runs/toy-reward/candidates.json
    python benchmarks/toy_reward.py --clip runs/toy-build-turn/clip --table runs/toy-reward/turn.json \
        --against runs/toy-reward/candidates.json      # another judge on the same videos, paired: about 3 minutes
    python benchmarks/toy_reward.py --chains_on runs/toy-mixing/dev/refine/refinement.json \
        --table runs/toy-reward/chains-on-refined.json # chains built on their base's refined parameters (~10 min)
    python benchmarks/toy_reward.py --world runs/toy-world-rare --labels runs/toy-mixing-rare/dev/toy_mixing.json \
        --table runs/toy-reward/rare.json --frames runs/toy-reward/rare-frames   # in another toy build (~30 min)

Two checks, on the development mixes, where settings are chosen. Given ``--experiments
configs/experiments/toy-test.yaml`` (with the test run's ``--labels`` and its own ``--table`` and
``--frames``), the same rows bound what refinement could pick on the test mixes; choose nothing there:

1. Rendered: for each mix, the world's own render of what the mix asks (the in-between hue,
   the diagonal, the striped triangle) against renders of A and of B (same noise-free world).
   A reward that sees the mix ranks the mix's render above both.
2. Generated: for each mix, every candidate of refinement's search (configs/refine-toy.yaml: the
   finder's alpha, then each grid point) is sampled on ``--noises`` noises (the fit seed's, +1,
   ...) and judged by its pixels. A chooser sees the first one or two noises (what
   ``model.noise_samples`` 1 or 2 sees) and is scored on the others, which it never saw: how
   often its choice shows the mix there. Choosers: the reward; the reward with the learned
   prior (``model.prior_weight``); the old objective (guide + soft-min of A and B); the learned
   ranker (richspace/learned.py) fitted on the other mixes' rewards, leaving the scored mix out;
   the single candidate best on the other mixes; the finder's alpha; and any candidate (the
   grid's ceiling). A second table averages over every split of the noises (each held out in
   turn, the choice made on one, two or three of the others), which one fixed split cannot; there
   the prior also weighs in on 3 or more noises (``model.noise_samples`` 3, its predictor fitted on
   as many noises of the other mixes).
   A perfect judge (the pixels' own verdicts on the noises chosen on, ties broken by the reward) bounds
   every reward from above up to its ties: among candidates that show the mix equally often on the noises
   chosen on, it keeps the reward's pick, and a better reward can break those ties better.
   A third splits, by kind, what is lost into what no candidate draws, what even a perfect judge of
   2 noises misses, and what the judge misses beyond that; beside it, how well the reward reads the
   pixels video by video (the AUROC of the reward against the verdicts over a mix's videos).
   Split by the measured "guide fails" labels of ``--labels`` (benchmarks/toy_mixing.py --split
   dev) when that file exists. ``--against TABLE`` adds the paired differences against another
   table of the same videos (another ``--clip`` or reward), chooser by chooser; with ``--prior_table``,
   ``--against_prior_table`` gives the dev table judged as TABLE was, so each side's prior is its own judge's.

The sampled table is saved to ``--table`` after each mix; a rerun continues it and only analyses
when it is complete, so ``--grid_points`` and the choosers cost no sampling. The videos go to
``--frames`` (about 8 MB a mix), so a new table for another judge (``--clip``) or reward
(``--query_temperature``, or a ``--config`` with other weights) judges the same videos again in
minutes instead of sampling.

``--chains_on`` builds each chain on its base's refined parameters (the base's whole conditioning,
composed in A's place) instead of the base's finder embedding, as a chain would build on a base
that refinement got right; only the chains are sampled again.

A mix that asks what an earlier one asks (``richspace.specs.repeats``: in its own set, or for any set but
dev, in dev) is sampled but left out of the tables: each distinct mix is one verdict.

``--explain MIX`` samples one mix's candidates on the fit seed's noise and shows, beside each one's
reward, the judge's probability of every option of every query and the pixel readout: where the
judge and the pixels disagree, the reward ranks wrongly.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from torchmetrics.functional.classification import binary_auroc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from richspace.conditioning import active, conditioning, offset_direction  # noqa: E402
from richspace.data import load_refinement  # noqa: E402
from richspace.finder import find_interpolation  # noqa: E402
from richspace.learned import fit_predictor, mix_features, standardised, with_prior  # noqa: E402
from richspace.objective import ObjectiveWeights, parse_queries  # noqa: E402
from richspace.refinement import RefineDataModule, RefineModule  # noqa: E402
from richspace.runs import atomic_write, atomic_write_text, output_dir, read_input  # noqa: E402
from richspace.sampler import Sampler  # noqa: E402
from richspace.specs import load_specs, repeated  # noqa: E402
from richspace.stats import bootstrap_difference, bootstrap_mean  # noqa: E402
from richspace.toy import world  # noqa: E402
from richspace.toy.build import finished_build, trained_models  # noqa: E402

OLD = ObjectiveWeights(w_guide=1.0, w_balance=1.0)  # the objective before the per-attribute reward


def intended(expect: dict) -> world.Attributes:
    """The world's render of what a mix asks for: the middle of a hue or direction range, the stated values."""
    if "hue_between" in expect:
        c1, c2 = (world.COLOURS[c] for c in expect["hue_between"])
        hue = (c1 + ((c2 - c1 + 180) % 360 - 180) / 2) % 360
    else:
        hue = world.COLOURS[expect["colour"]]
    if "direction_between" in expect:
        d1, d2 = expect["direction_between"]
        direction = f"{d1}-{d2}" if d1 in ("up", "down") else f"{d2}-{d1}"
    else:
        direction = expect["direction"]
    return world.Attributes(hue, expect["shape"], expect["pattern"], direction)


def plain(text: str) -> world.Attributes | None:
    """A prompt's own render where its words are all the world's (a chain's A, a mixed colour: None)."""
    _, colour, pattern, shape, _, direction = text.split()[:6]
    return world.Attributes(world.COLOURS[colour], shape, pattern, direction) if colour in world.COLOURS else None


def pixels_of(frames: torch.Tensor) -> dict:
    """The world's readout of sampled (F, 3, H, W) float frames in [0, 1], as uint8 video."""
    return world.readout((frames * 255).round().to(torch.uint8).numpy())


def guide_fails(labels: str | Path) -> dict[str, bool]:
    """Per mix id, whether the guide failed on the label seeds (a toy_mixing.json); {} where the file is missing."""
    path = Path(labels)
    return {m["id"]: m["guide_label_rate"] < 0.5 for m in read_input(path, "--labels")} if path.exists() else {}


def mix_items(sampler: dict, experiments: str, run_dir: str, seed: int) -> list:
    """The mixes of ``experiments`` as refinement sees them (finder's alpha, embeddings, noise from ``seed``), encoded
    with the ``sampler`` config's weights and settings."""
    data = RefineDataModule(experiments=experiments, run_dir=run_dir, seed=seed, compose=None,
                            pretrained=sampler["pretrained"], guidance_scale=sampler["guidance_scale"],
                            max_sequence_length=sampler["max_sequence_length"])
    data.prepare_data()
    data.setup("predict")
    return data.items


def on_refined_bases(items: list, experiments: str, refinement: str | Path, guidance: float,
                     k: int) -> tuple[list, dict]:
    """(items, bases): each chained mix built on its base's refined parameters (a refinement result of these
    mixes) instead of the base's finder embedding. The chain's A becomes the base's whole conditioning,
    composed where A's text was (``bases``: chain id -> (texts, weights), for ``RefineModule.objective``);
    the line's end E_a is the base's mixed text, and the start the finder's alpha from that end."""
    refined = load_refinement(refinement)
    by_id, base_of = {i.id: i for i in items}, {s.id: s.base for s in load_specs(experiments) if s.base}
    out, bases = [], {}
    for item in items:
        base_id = base_of.get(item.id)
        if base_id is None:
            out.append(item)
            continue
        if base_id not in refined:
            raise SystemExit(f"error: --chains_on {refinement}: no refined parameters for {base_id}, "
                             f"the base of {item.id}")
        base = by_id[base_id]
        e_a, e_b, e_guide = base.e_a.double(), base.e_b.double(), base.e_guide.double()
        texts, weights = conditioning(e_a, e_b, offset_direction(e_a, e_b, e_guide),
                                      refined[base_id]["params"].vector(guidance))
        found = find_interpolation(texts[0].float(), item.e_b, item.e_guide, item.n_ids[:3], k)
        out.append(replace(item, e_a=texts[0].float(), alpha=float(found.alpha), index=int(found.index)))
        bases[item.id] = active(texts, weights)
    return out, bases


def score(module: RefineModule, item, frames: torch.Tensor, *weights: ObjectiveWeights) -> list[float]:
    """The objective of one video under each of ``weights``, from one judge feature of it (and one D, where any
    weighs it)."""
    saved, out = module.weights, []
    with torch.no_grad():
        video = module.judge.video_features(frames)
        try:
            denoise = module.denoise_reward(item, frames) if any(w.w_denoise for w in weights) else None
            for w in weights:
                module.weights = w
                out.append(float(module.terms(item, video, torch.tensor(item.alpha), denoise)["objective"]))
        finally:
            module.weights = saved
    return out


def key(theta) -> str:
    return ",".join(f"{float(x):.6g}" for x in theta)


def sample_candidates(module: RefineModule, item, noises: int, frames: dict[str, torch.Tensor], base=None) -> dict:
    """One mix's row of the table: its features, its candidates' thetas (learned.candidate_thetas: the finder's
    alpha, then each grid point, as search clamps them) and, per distinct theta and noise, reward, old objective
    and pixel verdict. ``frames`` holds sampled videos by ``theta@seed``: those there are judged again, not
    sampled; those sampled are added. ``base``: a chain's base conditioning (``on_refined_bases``)."""
    thetas = module.listed_candidates(item.alpha)
    evals = {}
    for theta in thetas:
        if key(theta) in evals:
            continue
        evals[key(theta)] = []
        coefficients = torch.tensor(theta, dtype=torch.float64)  # as search evaluates it
        for j in range(noises):
            name = f"{key(theta)}@{item.seed + j}"
            if name not in frames:
                with torch.no_grad():
                    frames[name] = module.objective(replace(item, seed=item.seed + j), coefficients,
                                                    base)[1].contiguous()
            verdict = world.judge(item.meta["expect"], pixels_of(frames[name]))["success"]
            reward, old = score(module, item, frames[name], module.weights, OLD)
            evals[key(theta)].append({"reward": reward, "old": old, "success": bool(verdict)})
    features = mix_features(item.e_a, item.e_b, item.e_guide, item.alpha).tolist()
    return {"kind": item.meta.get("kind"), "features": features, "thetas": [key(t) for t in thetas], "evals": evals}


def frames_file(frames: str | Path, mix_id: str, on_refined_base: bool) -> Path:
    """Where a mix's sampled videos are kept under ``--frames``: a chain sampled on its base's refined parameters
    (``--chains_on``) has its own file beside the one sampled on the base's finder embedding."""
    return Path(frames) / f"{mix_id}{'.on-refined-base' if on_refined_base else ''}.safetensors"


def load_frames(path: Path, sampler: dict) -> dict[str, torch.Tensor]:
    """A mix's saved videos (``theta@seed`` -> frames); none yet where ``path`` is missing. Videos sampled with
    another ``sampler`` config (other weights or settings) are refused, not replaced (a one-line error)."""
    from safetensors import safe_open

    if not path.exists():
        return {}
    with safe_open(path, "pt") as f:
        if (f.metadata() or {}).get("sampler") != json.dumps(sampler, sort_keys=True):
            raise SystemExit(f"error: {path} holds videos sampled with other settings or weights; give another "
                             "--frames directory")
        return {name: f.get_tensor(name) for name in f.keys()}


def save_frames(path: Path, frames: dict[str, torch.Tensor], sampler: dict) -> None:
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file(frames, tmp, metadata={"sampler": json.dumps(sampler, sort_keys=True)}))


def option_words(options: tuple[str, ...]) -> list[str]:
    """The word(s) each caption of a query has that not every option shares ("a red plain circle moving left",
    "a red striped circle moving left": "plain", "striped")."""
    common = set.intersection(*(set(o.split()) for o in options))
    return [" ".join(w for w in o.split() if w not in common) or o for o in options]


def explain(module: RefineModule, item, base=None) -> None:
    """One mix: per candidate on the fit seed's noise, its reward, the judge's probability of each query's options
    (the wanted ones starred) and what the pixels show."""
    thetas = module.listed_candidates(item.alpha)
    queries = parse_queries(item.meta["queries"], item.id)
    print(f"{item.id}: expects {item.meta['expect']}; candidates on the fit seed's noise (seed {item.seed})")
    print("| # | alpha, offset, w_mix, w_a, w_b | reward | " + " | ".join(f"query {i}" for i in range(len(queries)))
          + " | pixels: colour, shape, pattern, angle | shows the mix |")
    print("|---|---|---|" + "---|" * len(queries) + "---|---|")
    for n, theta in enumerate(thetas):
        with torch.no_grad():
            terms, frames = module.objective(item, torch.tensor(theta, dtype=torch.float64), base)
            video = module.judge.video_features(frames)
            cells = []
            for q in queries:
                p = torch.softmax(100 * module.text_features(q.options) @ video / module.hparams.query_temperature, 0)
                cells.append(" ".join(f"{'*' if i in q.want else ''}{w} {float(p[i]):.2f}"
                                      for i, w in enumerate(option_words(q.options))))
        pixels = pixels_of(frames)
        seen = (f"{pixels['colour']}, {pixels['shape']}, {pixels['pattern']}, {pixels['angle']:.0f} deg"
                if pixels["present"] else "no object")
        print(f"| {n} | {key(theta)} | {float(terms['objective']):.2f} | " + " | ".join(cells)
              + f" | {seen} | {world.judge(item.meta['expect'], pixels)['success']} |")


def values(row: dict, field: str, noises, candidates: int) -> torch.Tensor:
    """(candidates,) a table row's ``field`` per candidate, the mean over ``noises``."""
    return torch.tensor([sum(row["evals"][t][j][field] for j in noises) / len(noises)
                         for t in row["thetas"][:candidates]])


def left_out_priors(rows: dict, grid: list[dict], start: dict, fit: int, steps: int,
                    fitted_on: dict | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(mixes, candidates) per mix, the scores of the predictor (richspace.learned) fitted on the other mixes' rewards
    over the ``fit`` noises: what ``python -m richspace.learned`` would give it, had it not seen the mix. With
    ``fitted_on`` (another table's rows, e.g. the dev mixes'), one predictor fitted on those alone scores every mix:
    the prior as the test set's refinement has it; a one-line error where it holds a mix of ``rows``. ``weights``
    (one per mix of ``rows``, without ``fitted_on``): each mix's weight in the fits it is part of."""
    candidates, ids = 1 + len(grid), list(rows)
    features = torch.tensor([rows[i]["features"] for i in ids])
    if fitted_on is not None and weights is not None:
        raise ValueError("left_out_priors: weights are the scored rows' own; give them without fitted_on")
    if fitted_on is not None:
        if fitted_on.keys() & rows.keys():
            raise SystemExit(f"error: --prior_table holds mixes this table scores (first: "
                             f"{sorted(fitted_on.keys() & rows.keys())[0]}); give a table of other mixes")
        theirs = list(fitted_on.values())
        model = fit_predictor(torch.tensor([row["features"] for row in theirs]),
                              torch.stack([values(row, "reward", range(fit), candidates) for row in theirs]),
                              grid, start, steps)
        with torch.no_grad():
            return model(features)
    rewards = torch.stack([values(rows[i], "reward", range(fit), candidates) for i in ids])
    out = []
    for m in range(len(ids)):
        keep = torch.arange(len(ids)) != m
        model = fit_predictor(features[keep], rewards[keep], grid, start, steps,
                              weights=None if weights is None else weights[keep])
        with torch.no_grad():
            out.append(model(features[m:m + 1])[0])
    return torch.stack(out)


def prior_rows(path: str, settings: dict, flag: str = "--prior_table") -> dict:
    """The rows of the table ``flag`` names, to fit the learned prior on; a one-line error where that table was
    sampled with another config, fit seed or fewer noises than the scored one, ``settings`` (its rewards would not
    be the same reward's)."""
    theirs = read_input(Path(path), flag)
    other = theirs.get("settings", {}) if isinstance(theirs, dict) else {}
    if any(other.get(k) != settings.get(k) for k in ("config", "seed", "noises", "world")) or not theirs.get("mixes"):
        raise SystemExit(f"error: {flag} {path} is not a table of the same config, seed, noises and world; "
                         "give a toy_reward.py table sampled as this one was (e.g. runs/toy-reward/candidates.json)")
    return theirs["mixes"]


def choices(rows: dict, grid: list[dict], fit: int, held: list[int], priors: torch.Tensor,
            prior_weight: float, prior_source: str = "this mix left out") -> dict[str, list[float]]:
    """Per chooser, per mix (``rows`` order): the held-out success rate of the candidate it picks, among the
    finder's alpha and ``grid``'s points (a prefix of the table's); ``fit`` noises to choose on; ``priors``:
    ``left_out_priors``, weighed by ``prior_weight`` against the rewards (``learned.with_prior``), fitted as
    ``prior_source`` says."""
    candidates = 1 + len(grid)
    ids = list(rows)

    rewards = torch.stack([values(rows[i], "reward", range(fit), candidates) for i in ids])
    success = torch.stack([values(rows[i], "success", held, candidates) for i in ids])
    out = {
        "reward, noise 0 only (noise_samples 1)": [float(success[m, int(values(rows[i], "reward", [0], candidates)
                                                                          .argmax())]) for m, i in enumerate(ids)],
        f"reward, noises 0-{fit - 1} (noise_samples {fit})": [float(success[m, int(rewards[m].argmax())])
                                                             for m in range(len(ids))],
        f"reward, noises 0-{fit - 1}, and the learned prior (weight {prior_weight:g}; {prior_source})": [
            float(success[m, with_prior(rewards[m], priors[m], prior_weight)]) for m in range(len(ids))],
        f"old objective, noises 0-{fit - 1}": [float(success[m, int(values(rows[i], "old", range(fit), candidates)
                                                                    .argmax())]) for m, i in enumerate(ids)],
        "the finder's alpha (the start)": success[:, 0].tolist(),
        f"learned ranker ({prior_source})": [float(success[m, int(priors[m].argmax())]) for m in range(len(ids))],
        "best fixed candidate (this mix left out)": [],
        "any candidate (the ceiling)": success.max(1).values.tolist(),
    }
    for m in range(len(ids)):
        keep = torch.arange(len(ids)) != m
        out["best fixed candidate (this mix left out)"].append(
            float(success[m, int(standardised(rewards[keep]).mean(0).argmax())]))
    return out


def perfect_pick(evals: list[list[dict]], fit) -> int:
    """The candidate a perfect judge keeps from the ``fit`` noises: the one its pixels show the mix on most often,
    ties broken by the reward (then the first): the most any reward can pick from those noises, but for the ties."""
    return max(range(len(evals)), key=lambda c: (sum(evals[c][j]["success"] for j in fit),
                                                 sum(evals[c][j]["reward"] for j in fit), -c))


def splits(noises: int, k: int):
    """Every (held-out noise, ``k`` noises chosen on) of ``noises``: each noise held out in turn, with every choice
    of ``k`` of the others."""
    for held in range(noises):
        for fit in itertools.combinations([j for j in range(noises) if j != held], k):
            yield held, list(fit)


def rotated(rows: dict, candidates: int, k: int, noises: int, priors: torch.Tensor | None = None,
            prior_weight: float = 0.0, perfect: bool = False) -> list[float]:
    """Per mix (``rows`` order): the reward's pick on ``k`` noises, scored on a noise it did not see, averaged over
    every held-out noise and every choice of ``k`` of the others: the fixed split (choose on noises 0-1, score on
    the rest) without its luck. With ``priors`` (``left_out_priors``), the pick weighs them in (``with_prior``);
    with ``perfect``, a perfect judge picks instead (``perfect_pick``)."""
    out = []
    for m, row in enumerate(rows.values()):
        evals = [row["evals"][t] for t in row["thetas"][:candidates]]
        verdicts = []
        for held, fit in splits(noises, k):
            if perfect:
                pick = perfect_pick(evals, fit)
            else:
                rewards = torch.tensor([sum(e[j]["reward"] for j in fit) for e in evals])
                pick = int(rewards.argmax()) if priors is None else with_prior(rewards, priors[m], prior_weight)
            verdicts.append(float(evals[pick][held]["success"]))
        out.append(sum(verdicts) / len(verdicts))
    return out


def best_candidate(rows: dict, candidates: int, noises: int) -> list[float]:
    """Per mix (``rows`` order): the share of the noises on which its single best candidate shows the mix, the most a
    pick of one candidate per mix (what refinement keeps for every seed) can score on them."""
    return [max(sum(e["success"] for e in row["evals"][t][:noises]) / noises for t in row["thetas"][:candidates])
            for row in rows.values()]


def reading(row: dict, candidates: int, noises: int) -> float | None:
    """How well the reward reads the pixels in one mix, video by video: the AUROC of the reward over every sampled
    video (``candidates`` x ``noises``) against its verdict (1: every video that shows the mix scores above every
    one that does not; 0.5: chance). None where the verdicts are all alike. A reward can read well here and still
    pick badly: the pick needs the top of its ranking right, not the ranking as a whole. A candidate listed twice
    (the finder's alpha on a grid point) counts once: each video is one verdict."""
    evals = [e for t in dict.fromkeys(row["thetas"][:candidates]) for e in row["evals"][t][:noises]]
    verdicts = torch.tensor([int(e["success"]) for e in evals])
    if verdicts.min() == verdicts.max():
        return None
    _, ranks = torch.unique(torch.tensor([e["reward"] for e in evals], dtype=torch.float64), return_inverse=True)
    return float(binary_auroc(ranks.double() / max(1, int(ranks.max())), verdicts))  # ranks in [0, 1]: no sigmoid


def by_kind(rows: dict, groups: dict[str, list[str]], best: list[float], perfect: list[float],
            picked: list[float], reads: list[float | None]) -> list[str]:
    """Markdown rows: per group and kind, the mixes, the best candidate's share, a perfect judge's pick's, the
    chooser's, and where the rest is lost: to the candidates (none shows the mix), to the noises chosen on (even a
    perfect judge of them keeps another) and to the judge (the chooser keeps a worse one than a perfect judge); last,
    the mean of ``reads`` (``reading``) over the kind's mixes that have one."""
    ids, out = list(rows), []
    for group, members in groups.items():
        kinds: dict[str, list[int]] = {}
        for i in members:
            kinds.setdefault(rows[i]["kind"], []).append(ids.index(i))
        for kind, idx in kinds.items():
            b, f, p = (sum(v[m] for m in idx) / len(idx) for v in (best, perfect, picked))
            known = [reads[m] for m in idx if reads[m] is not None]
            auroc = f"{sum(known) / len(known):.2f} ({len(known)})" if known else "-"
            out.append(f"| {group} | {kind} | {len(idx)} | {b:.0%} | {f:.0%} | {p:.0%} | {1 - b:.0%} | {b - f:.0%} "
                       f"| {f - p:.0%} | {auroc} |")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "refine-toy.yaml"))
    parser.add_argument("--experiments", default=str(ROOT / "configs" / "experiments" / "toy-dev.yaml"))
    parser.add_argument("--clip", default=None, help="the judge instead of the config's model.clip (a build's clip/)")
    parser.add_argument("--query_temperature", type=float, default=None, help="instead of the config's")
    parser.add_argument("--seed", type=int, default=100, help="the fit seed (benchmarks/toy_mixing.yaml)")
    parser.add_argument("--noises", type=int, default=4, help="noises per candidate: 2 to choose on, the rest scored")
    parser.add_argument("--grid_points", type=int, default=None, help="analyse the grid's first N points only")
    parser.add_argument("--labels", default=str(ROOT / "runs" / "toy-mixing" / "dev" / "toy_mixing.json"),
                        help="toy_mixing.json of the dev benchmark: its guide labels split the table")
    parser.add_argument("--table", default=str(ROOT / "runs" / "toy-reward" / "candidates.json"))
    parser.add_argument("--frames", default=str(ROOT / "runs" / "toy-reward" / "frames"),
                        help="sampled videos, per mix: a table for another judge or reward judges them again")
    parser.add_argument("--chains_on", default=None, metavar="REFINEMENT",
                        help="build each chain on its base's refined parameters from this refinement.json of the "
                             "same mixes (e.g. runs/toy-mixing/dev/refine/refinement.json), not on the base's finder "
                             "embedding; give a new --table (chains' videos go to their own frames files)")
    parser.add_argument("--steps", type=int, default=1000, help="the learned ranker's training steps")
    parser.add_argument("--prior_table", default=None, metavar="TABLE",
                        help="fit the learned prior on this table's mixes (the dev table, runs/toy-reward/"
                             "candidates.json) instead of leaving each scored mix out: the prior as test refinement "
                             "has it, for mixes outside dev (python -m richspace.toy.mixes --unasked)")
    parser.add_argument("--against", default=None, metavar="TABLE",
                        help="another --table of the same videos (another judge or reward): paired differences")
    parser.add_argument("--against_prior_table", default=None, metavar="TABLE",
                        help="with --against and --prior_table: the dev table judged as the --against table was, "
                             "on which its prior is fitted (each judge's prior from its own dev rewards)")
    parser.add_argument("--world", type=finished_build, default=None, metavar="BUILD",
                        help="a toy build (python -m richspace.toy.build --out BUILD) whose cogvideox/ samples and "
                             "whose clip/ judges, instead of the shipped ones; give its own --table and --frames")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--kinds", default=None, metavar="KIND,...",
                        help="sample and score only these kinds of mix (chain: its base still gives its A)")
    parser.add_argument("--explain", default=None, metavar="MIX", help="one mix's candidates, the judge beside the pixels")
    args = parser.parse_args(argv)
    if args.noises < 3:
        raise SystemExit("error: --noises must be at least 3: two to choose on, at least one to score")
    kinds = None if args.kinds is None else set(args.kinds.split(","))
    if kinds is not None:
        known = {s.meta.get("kind") for s in load_specs(args.experiments)}
        if kinds - known:
            raise SystemExit(f"error: --kinds {args.kinds}: {args.experiments} has no mix of kind "
                             f"{sorted(kinds - known)[0]!r} (its kinds: {', '.join(sorted(map(str, known)))})")
    # read before anything is sampled: a bad --against must not wait for the whole table
    against_table = read_input(args.against, "--against") if args.against is not None else {}
    theirs = against_table.get("mixes", {}) if args.against is not None else None
    if (args.against_prior_table is not None) != (args.against is not None and args.prior_table is not None):
        raise SystemExit("error: --against with --prior_table needs --against_prior_table (the dev table judged as "
                         "the --against table was), and --against_prior_table needs both")
    output_dir(args.frames, "--frames")
    if args.grid_points is not None and args.grid_points < 1:
        raise SystemExit("error: --grid_points must be at least 1 (or left out: the whole grid)")
    torch.set_num_threads(2)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # 41 leave-one-out fits: no banners
    cfg = read_input(args.config, "--config", yaml.safe_load)
    if args.world is not None:
        pipeline, judge = trained_models(args.world)
        cfg["sampler"]["pretrained"], cfg["model"]["clip"] = str(pipeline), str(judge)
    for name in ("clip", "query_temperature"):
        if getattr(args, name) is not None:
            cfg["model"][name] = getattr(args, name)
    module = RefineModule(Sampler(**cfg["sampler"]), **{**cfg["model"], "noise_samples": 1})
    if module.hparams.mode != "search":
        raise SystemExit(f"error: {args.config}: model.mode must be search (the reward is checked on its candidates)")
    table_path = Path(args.table)
    sampled = {k: v for k, v in cfg["model"].items()  # analysis only: --noises samples, the choosers weigh
               if k not in ("prior_from", "prior_weight", "noise_samples")}
    settings = {"config": sampled, "seed": args.seed, "noises": args.noises,
                "experiments": Path(args.experiments).name}
    if args.chains_on is not None:
        settings["chains_on"] = str(args.chains_on)
    if args.world is not None:
        settings["world"] = str(args.world.resolve())
    table = read_input(table_path, "--table") if table_path.exists() else {"settings": settings, "mixes": {}}
    if table["settings"] != settings and args.explain is None:  # --explain samples afresh: no table
        raise SystemExit(f"error: {table_path} was sampled with other settings; give another --table or delete it")
    fitted_on = prior_rows(args.prior_table, settings) if args.prior_table is not None else None
    their_prior = None if args.against_prior_table is None else prior_rows(  # the --against table's own dev table
        args.against_prior_table, against_table.get("settings", {}), "--against_prior_table")
    module.load_models("cpu")
    new = module.weights
    items = [i for i in mix_items(cfg["sampler"], args.experiments, "runs/toy-reward", args.seed)
             if "queries" in i.meta and "expect" in i.meta]
    bases = {}
    if args.chains_on is not None:
        items, bases = on_refined_bases(items, args.experiments, args.chains_on, cfg["sampler"]["guidance_scale"],
                                        cfg["data"]["k"])
    if kinds is not None:
        items = [i for i in items if i.meta.get("kind") in kinds]
    items = items[: args.limit]
    if args.explain is not None:
        chosen = [i for i in items if i.id == args.explain]
        if not chosen:
            raise SystemExit(f"error: --explain {args.explain}: no such mix with queries in {args.experiments}")
        return explain(module, chosen[0], bases.get(args.explain))
    rendered = []
    for item in items:
        # 1. rendered: the mix's own render against A's and B's (A of a chain: its base's guide, not rendered)
        expect = item.meta["expect"]
        video = torch.from_numpy(world.render_uint8(intended(expect))).float() / 255
        ends = [torch.from_numpy(world.render_uint8(a)).float() / 255
                for a in (plain(item.texts.a), plain(item.texts.b)) if a is not None]
        mix_score = score(module, item, video, new)[0]
        rendered.append(all(mix_score > score(module, item, e, new)[0] for e in ends))
        # 2. generated: every candidate on every noise (saved after each mix; a rerun continues)
        if item.id not in table["mixes"]:
            path = frames_file(args.frames, item.id, item.id in bases)
            frames = load_frames(path, cfg["sampler"])
            known = len(frames)
            table["mixes"][item.id] = sample_candidates(module, item, args.noises, frames, bases.get(item.id))
            if len(frames) > known:
                save_frames(path, frames, cfg["sampler"])
            atomic_write_text(table_path, json.dumps(table) + "\n")
        row = table["mixes"][item.id]
        print(f"{item.id}: rendered mix first {rendered[-1]}; candidates showing the mix (of {args.noises} noises): "
              f"{[sum(e['success'] for e in row['evals'][t]) for t in row['thetas']]}", flush=True)
    print(f"\nRendered: the reward ranks the mix's render above A's and B's in {bootstrap_mean(rendered)} of "
          f"{len(rendered)} mixes")
    same = repeated(args.experiments, [ROOT / "configs" / "experiments" / "toy-dev.yaml"])  # a test mix may repeat dev's
    if any(i.id in same for i in items):
        print("Left out of the tables below, each asking what an earlier mix asks (richspace.specs.repeats): "
              + ", ".join(f"{i.id} = {same[i.id]}" for i in items if i.id in same))
    rows = {i.id: table["mixes"][i.id] for i in items if i.id not in same}
    grid = module.grid_points()[: args.grid_points]
    candidates = 1 + len(grid)
    priors = left_out_priors(rows, grid, module.start_values, 2, args.steps, fitted_on)
    weight = module.hparams.prior_weight
    source = "this mix left out" if fitted_on is None else f"fitted on {args.prior_table}"
    picked = choices(rows, grid, 2, list(range(2, args.noises)), priors, weight, source)
    labels = guide_fails(args.labels)
    groups = {"all mixes": list(rows)}
    if all(i in labels for i in rows):
        groups |= {"guide fails": [i for i in rows if labels[i]], "guide works": [i for i in rows if not labels[i]]}
    ids = list(rows)
    print(f"\nGenerated: {len(rows)} mixes, {candidates} candidates each (the finder's alpha and {candidates - 1} grid "
          f"points), fit seed {args.seed}; chosen on noises 0-1, scored on noises 2-{args.noises - 1}:")
    print("| chooser | " + " | ".join(f"{g} (n = {len(m)})" for g, m in groups.items()) + " |")
    print("|---|" + "---|" * len(groups))
    for name, rates in picked.items():
        cells = [str(bootstrap_mean([rates[ids.index(i)] for i in members])) for members in groups.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nThe reward's pick on every split of the {args.noises} noises (each held out in turn, chosen on k of the "
          "others):")
    print("| chooser | " + " | ".join(f"{g} (n = {len(m)})" for g, m in groups.items()) + " |")
    print("|---|" + "---|" * len(groups))
    rotations = {f"reward, chosen on {k} noise{'s' if k > 1 else ''}": rotated(rows, candidates, k, args.noises)
                 for k in range(1, args.noises)}
    for w in sorted({0.25, 0.5, 1.0, 2.0, weight}):
        rotations[f"reward on 2 noises and the learned prior, weight {w:g}"] = rotated(rows, candidates, 2, args.noises,
                                                                                       priors, w)
    for k in range(3, args.noises):  # model.noise_samples k: its predictor is fitted on k noises' rewards too
        wider = left_out_priors(rows, grid, module.start_values, k, args.steps, fitted_on)
        rotations[f"reward on {k} noises and the learned prior, weight {weight:g}"] = rotated(
            rows, candidates, k, args.noises, wider, weight)
    perfect = {k: rotated(rows, candidates, k, args.noises, perfect=True) for k in range(1, args.noises)}
    for k, rates in perfect.items():
        rotations[f"a perfect judge: the pixels' verdicts on {k} noise{'s' if k > 1 else ''} (ties: the reward)"] = rates
    for name, rates in rotations.items():
        cells = [str(bootstrap_mean([rates[ids.index(i)] for i in members])) for members in groups.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    alone = rotations["reward, chosen on 2 noises"]
    prior = rotations[f"reward on 2 noises and the learned prior, weight {weight:g}"]
    cells = [str(bootstrap_difference([prior[ids.index(i)] for i in members], [alone[ids.index(i)] for i in members]))
             for members in groups.values()]
    print(f"| the prior (weight {weight:g}) - the reward alone, paired | " + " | ".join(cells) + " |")
    best = best_candidate(rows, candidates, args.noises)
    print(f"\nWhere the mix is lost, by kind (means over mixes, too few for intervals): the best single candidate's "
          f"share of the {args.noises} noises, a perfect judge's pick on 2 noises, and the shipped chooser's (the "
          f"reward on 2 noises and the prior, weight {weight:g}); every split:")
    print("| group | kind | mixes | best candidate | perfect judge | chooser | lost to the candidates "
          "| lost to choosing on 2 noises | lost to the judge | the reward reads the pixels (AUROC, mixes) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    reads = [reading(rows[i], candidates, args.noises) for i in ids]
    print("\n".join(by_kind(rows, groups, best, perfect[2], prior, reads)))
    if args.against is not None:
        mine = {"the reward alone": alone, f"the reward and the prior (weight {weight:g})": prior}
        print(f"\nThis table - {args.against}, paired over the same videos (every split, chosen on 2 noises):")
        print("| chooser | " + " | ".join(f"{g} (n = {len(m)})" for g, m in groups.items()) + " |")
        print("|---|" + "---|" * len(groups))
        print("\n".join(against(rows, theirs, mine, groups, grid, module.start_values, weight, args.noises,
                                args.steps, source=args.against, fitted_on=their_prior)))


def against(rows: dict, other: dict, mine: dict[str, list[float]], groups: dict[str, list[str]], grid: list[dict],
            start: dict, weight: float, noises: int, steps: int, source: str = "TABLE",
            fitted_on: dict | None = None) -> list[str]:
    """Markdown rows: ``mine`` (the reward alone, then with the prior; per mix, every split) minus the same choosers
    on ``other``, a table of the same videos judged otherwise (read from ``source``), paired per mix, per group;
    ``noises`` and ``steps`` as the table was made. ``other``'s prior is fitted as ``mine``'s was: on ``fitted_on``
    (the dev table judged as ``other`` was) where given, else on ``other``'s mixes, each left out."""
    verdicts = lambda row: [[e["success"] for e in row["evals"][t]] for t in row["thetas"]]  # noqa: E731
    different = [i for i in rows if i not in other or other[i]["thetas"] != rows[i]["thetas"]
                 or verdicts(other[i]) != verdicts(rows[i])]
    if different:
        raise SystemExit(f"error: --against {source} did not judge the same videos (first: {different[0]}); "
                         "give a table sampled with the same --config, --seed and --noises")
    other, candidates, ids = {i: other[i] for i in rows}, 1 + len(grid), list(rows)
    theirs = [rotated(other, candidates, 2, noises),
              rotated(other, candidates, 2, noises, left_out_priors(other, grid, start, 2, steps, fitted_on), weight)]
    out = []
    for (name, a), b in zip(mine.items(), theirs):
        cells = [str(bootstrap_difference([a[ids.index(i)] for i in m], [b[ids.index(i)] for i in m]))
                 for m in groups.values()]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


if __name__ == "__main__":
    main()
