"""How should the judge's reward Q and the generator's reward D be weighed together? Every form on the same videos.

    python benchmarks/reward_forms.py        # shipped world, dev: ~10 min the first time (readings cached), then ~2 min
    python benchmarks/reward_forms.py --world runs/toy-world-rare --labels runs/toy-mixing-rare/dev/toy_mixing.json \
        --table runs/toy-reward/rare-denoise.json --frames runs/toy-reward/rare-frames \
        --readings runs/toy-reward/rare-readings.pt                  # the rare world (its toy_reward table first)

It needs a table of ``benchmarks/toy_reward.py`` made with D on (the shipped ``configs/refine-toy.yaml``:
``--table runs/toy-reward/denoise.json``) and that table's saved videos (``--frames``). For every saved video
it reads, once, each query option's judge score and generator error (``Sampler.denoising_errors``), and caches
them in ``--readings`` after each mix, so a killed run resumes. From those readings Q and D are rebuilt per
video; their weighted sum must give the table's own reward back (checked: a one-line error otherwise).

Each form scores a mix's candidates from Q and D summed over the noises chosen on, and is scored, as
``toy_reward.py``'s every-split table is, on a noise it did not see (each noise held out in turn, chosen on 2 of
the others). With a prior weight, the learned prior weighs in (``learned.with_prior``), as refinement's
``model.prior_weight`` does: for every form the same prior, fitted on the other mixes' table rewards (the
shipped Q + D), so forms differ in the mix's own reward alone. Forms:

- ``sum:W``: Q + W D (``sum:1`` at the table's temperatures is the shipped reward; ``sum:0`` is Q alone);
- ``d``: D alone;
- ``z:W``: Q and D each standardised over the mix's candidates, then Q + W D (a weight on D per mix, set by
  how widely each reward spreads there);
- ``rank``: the sum of the two rewards' ranks over the candidates.

``--prior_table`` fits the prior on another table's mixes instead (the dev mixes', as the test refinement's prior is
fitted), for tables of mixes outside dev (``python -m richspace.toy.mixes --unasked``); ``--by_kind`` adds a column
per kind of mix. A table made with ``toy_reward.py --chains_on`` (chains sampled on their base's refined parameters)
is read from its chains' own videos, so the forms compare on chains built on refined bases too.

``--denoise_temperature`` rebuilds D at another softmax temperature. Choose forms here, on dev; this script
never touches the test mixes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from richspace.learned import standardised, with_prior  # noqa: E402
from richspace.objective import Query, parse_queries, query_reward  # noqa: E402
from richspace.refinement import RefineModule, options_of  # noqa: E402
from richspace.runs import atomic_write, read_input  # noqa: E402
from richspace.sampler import Sampler  # noqa: E402
from richspace.specs import load_specs  # noqa: E402
from richspace.stats import bootstrap_difference, bootstrap_mean  # noqa: E402
from richspace.toy.build import finished_build, trained_models  # noqa: E402

import toy_reward  # noqa: E402

Form = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (Q, D) per candidate -> scores per candidate


@dataclass
class MixRewards:
    """One mix's candidates (the table's listed thetas) on its noises: Q, D and the pixels' verdicts, each
    (candidates, noises)."""

    q: torch.Tensor
    d: torch.Tensor
    success: torch.Tensor


def reward_of(scores: torch.Tensor, queries: tuple[Query, ...], temperature: float) -> float:
    """The per-attribute reward (``objective.query_reward``) from one video's scores of every option, in query
    order: the judge's 100 x cosines give Q, the generator's minus errors give D."""
    return float(query_reward(list(scores.split([len(q.options) for q in queries])), queries, temperature))


def mix_rewards(row: dict, readings: dict[str, tuple[torch.Tensor, torch.Tensor]], queries: tuple[Query, ...],
                seed: int, candidates: int, query_temperature: float, denoise_temperature: float) -> MixRewards:
    """A table row's Q, D and verdicts per listed candidate and noise, from the readings of its videos
    (``theta@seed`` -> (judge scores, generator errors)); a theta listed twice shares its videos."""
    thetas = row["thetas"][:candidates]
    noises = len(row["evals"][thetas[0]])
    q, d = torch.zeros(len(thetas), noises, dtype=torch.float64), torch.zeros(len(thetas), noises, dtype=torch.float64)
    for c, theta in enumerate(thetas):
        for j in range(noises):
            judge, errors = readings[f"{theta}@{seed + j}"]
            q[c, j] = reward_of(judge, queries, query_temperature)
            d[c, j] = reward_of(-errors, queries, denoise_temperature)
    success = torch.tensor([[e["success"] for e in row["evals"][t]] for t in thetas])
    return MixRewards(q, d, success)


def form(name: str) -> Form:
    """A named way to weigh Q and D (the module docstring); a one-line error for an unknown one."""
    kind, _, weight = name.partition(":")
    try:
        w = float(weight) if weight else None
    except ValueError:
        w = None
    if kind == "sum" and w is not None:
        return lambda q, d: q + w * d
    if kind == "z" and w is not None:
        return lambda q, d: standardised(q) + w * standardised(d)
    if kind == "d" and not weight:
        return lambda q, d: d
    if kind == "rank" and not weight:
        return lambda q, d: (q.argsort().argsort() + d.argsort().argsort()).double()
    raise SystemExit(f"error: --forms: unknown form {name!r}; use sum:W, z:W, d or rank (W a number)")


def every_split(mix: MixRewards, score: Form, k: int = 2, prior: torch.Tensor | None = None,
                prior_weight: float = 0.0) -> float:
    """The share of held-out noises on which the candidate ``score`` picks (from Q and D summed over ``k`` other
    noises, with ``prior`` at ``prior_weight`` where given) shows the mix: every noise held out in turn, every
    choice of ``k`` of the others (``toy_reward.rotated``'s splits)."""
    verdicts = []
    for held, fit in toy_reward.splits(mix.q.shape[1], k):
        scores = score(mix.q[:, fit].sum(1), mix.d[:, fit].sum(1))
        pick = int(scores.argmax()) if prior is None or not prior_weight else with_prior(scores, prior, prior_weight)
        verdicts.append(float(mix.success[pick, held]))
    return sum(verdicts) / len(verdicts)


def groups_of(rows: dict, labels: dict[str, bool], by_kind: bool = False) -> dict[str, list[str]]:
    """The table's columns, each a list of mix ids: where the guide fails and where it works when ``labels`` (mix ->
    guide fails) has every mix, else all mixes; with ``by_kind``, then each of those split by kind, in table order."""
    ids = list(rows)
    groups = {"all mixes": ids}
    if all(i in labels for i in ids):
        groups = {"guide fails": [i for i in ids if labels[i]], "guide works": [i for i in ids if not labels[i]]}
    if by_kind:
        for group, members in list(groups.items()):
            for kind in dict.fromkeys(rows[i]["kind"] for i in members):
                groups[f"{group}, {kind}"] = [i for i in members if rows[i]["kind"] == kind]
    return groups


def read_videos(module: RefineModule, item, frames: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, ...]]:
    """Per saved video of a mix: every query option's judge score (100 x cosine) and generator error, in query
    order, as refinement's Q and D read them (``RefineModule.terms``, ``RefineModule.denoise_reward``)."""
    texts = module.text_features(tuple(options_of(parse_queries(item.meta["queries"], item.id))))
    out = {}
    with torch.no_grad():
        for name, video in frames.items():
            judge = 100 * texts @ module.judge.video_features(video)
            errors = module.sampler.denoising_errors(video, item.option_embeds, module.hparams.denoise_pairs,
                                                     item.seed)
            out[name] = (judge.double().cpu(), errors.double().cpu())
    return out


def chained_ids(settings: dict, experiments: str | Path) -> set[str]:
    """The mixes that a table made with ``toy_reward.py --chains_on`` sampled on their base's refined parameters
    (their videos in ``toy_reward.frames_file``'s own file); none for any other table."""
    return {s.id for s in load_specs(experiments) if s.base} if settings.get("chains_on") else set()


def load_readings(path: Path, settings: dict) -> dict:
    """The cached readings (mix -> video -> (judge, errors)); refused where made for another table or world."""
    if not path.exists():
        return {"settings": settings, "mixes": {}}
    cached = torch.load(path, weights_only=True)
    if cached.get("settings") != settings:
        raise SystemExit(f"error: {path} holds readings of another table or world; give another --readings")
    return cached


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "refine-toy.yaml"))
    parser.add_argument("--experiments", default=str(ROOT / "configs" / "experiments" / "toy-dev.yaml"))
    parser.add_argument("--seed", type=int, default=100, help="the fit seed the table was sampled with")
    parser.add_argument("--labels", default=str(ROOT / "runs" / "toy-mixing" / "dev" / "toy_mixing.json"),
                        help="toy_mixing.json of the dev benchmark: its guide labels split the table")
    parser.add_argument("--table", default=str(ROOT / "runs" / "toy-reward" / "denoise.json"),
                        help="a toy_reward.py table sampled with D on")
    parser.add_argument("--frames", default=str(ROOT / "runs" / "toy-reward" / "frames"), help="its saved videos")
    parser.add_argument("--readings", default=str(ROOT / "runs" / "toy-reward" / "readings.pt"),
                        help="cache of every video's per-option judge scores and generator errors")
    parser.add_argument("--world", type=finished_build, default=None, metavar="BUILD",
                        help="the toy build the table was sampled in (toy_reward.py --world)")
    parser.add_argument("--forms", default="sum:1,sum:0,d,sum:3,sum:10,z:0.5,z:1,z:2,rank")
    parser.add_argument("--priors", default="0,0.25,0.5", help="prior weights (the learned prior, left out)")
    parser.add_argument("--denoise_temperature", type=float, default=None, help="rebuild D at this temperature")
    parser.add_argument("--steps", type=int, default=1000, help="the learned prior's training steps")
    parser.add_argument("--prior_table", default=None, metavar="TABLE",
                        help="fit the prior on this table's mixes (the dev table of --table's config) instead of "
                             "leaving each mix out: for mixes outside dev (toy_reward.py --prior_table)")
    parser.add_argument("--by_kind", action="store_true", help="also a column per kind of mix")
    args = parser.parse_args(argv)
    forms = {name: form(name) for name in args.forms.split(",")}
    try:
        priors = [float(w) for w in args.priors.split(",")]
    except ValueError:
        raise SystemExit(f"error: --priors {args.priors}: give comma-separated numbers, e.g. 0,0.25") from None
    if args.denoise_temperature is not None and args.denoise_temperature <= 0:
        raise SystemExit(f"error: --denoise_temperature {args.denoise_temperature}: give a positive temperature")
    table_path = Path(args.table)
    if not table_path.exists():
        raise SystemExit(f"error: --table {table_path} does not exist; make it with benchmarks/toy_reward.py first")
    table = read_input(table_path, "--table")
    model = table["settings"]["config"]
    if not model.get("w_denoise"):
        raise SystemExit(f"error: --table {table_path} was sampled with D off (model.w_denoise 0); give a table "
                         "made with D on")
    if any(model.get(w) for w in ("w_guide", "w_balance", "w_anchor")):
        raise SystemExit(f"error: --table {table_path} weighs terms besides Q and D (w_guide, w_balance or "
                         "w_anchor); give a table whose reward is Q and D alone")
    torch.set_num_threads(2)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    cfg = read_input(args.config, "--config", yaml.safe_load)
    if args.world is not None:
        pipeline, judge = trained_models(args.world)
        cfg["sampler"]["pretrained"], cfg["model"]["clip"] = str(pipeline), str(judge)
    module = RefineModule(Sampler(**cfg["sampler"]), **{**model, "noise_samples": 1})
    module.load_models("cpu")
    items = {i.id: i for i in toy_reward.mix_items(cfg["sampler"], args.experiments, "runs/toy-reward", args.seed)}
    missing = [i for i in table["mixes"] if i not in items]
    if missing:
        raise SystemExit(f"error: --table has mixes that --experiments lacks (first: {missing[0]})")
    readings_path = Path(args.readings)
    readings = load_readings(readings_path, {"table": table["settings"], "world": str(args.world)})
    chained = chained_ids(table["settings"], args.experiments)
    for mix_id in table["mixes"]:
        if mix_id not in readings["mixes"]:
            frames = toy_reward.load_frames(toy_reward.frames_file(args.frames, mix_id, mix_id in chained),
                                            cfg["sampler"])
            if not frames:
                raise SystemExit(f"error: --frames {args.frames} has no videos of {mix_id}; give the table's --frames")
            readings["mixes"][mix_id] = read_videos(module, items[mix_id], frames)
            atomic_write(readings_path, lambda tmp: torch.save(readings, tmp))
            print(f"read {mix_id} ({len(readings['mixes'])} of {len(table['mixes'])})", flush=True)

    grid = module.grid_points()
    candidates = 1 + len(grid)
    t_q, t_d = model["query_temperature"], args.denoise_temperature or model["denoise_temperature"]
    rows, mixes, as_table = table["mixes"], {}, {}
    for mix_id, row in rows.items():
        queries = parse_queries(items[mix_id].meta["queries"], mix_id)
        as_table[mix_id] = mix_rewards(row, readings["mixes"][mix_id], queries, items[mix_id].seed, candidates, t_q,
                                       model["denoise_temperature"])
        rebuilt = model["w_queries"] * as_table[mix_id].q + model["w_denoise"] * as_table[mix_id].d
        stored = torch.tensor([[e["reward"] for e in row["evals"][t]] for t in row["thetas"][:candidates]])
        if not torch.allclose(rebuilt, stored.double(), atol=1e-3, rtol=1e-4):
            raise SystemExit(f"error: the readings of {mix_id} do not give --table's rewards back; give the --frames, "
                             "--world and --config the table was made with")
        mixes[mix_id] = as_table[mix_id] if t_d == model["denoise_temperature"] else mix_rewards(
            row, readings["mixes"][mix_id], queries, items[mix_id].seed, candidates, t_q, t_d)
    fitted_on = toy_reward.prior_rows(args.prior_table, table["settings"]) if args.prior_table else None
    prior = toy_reward.left_out_priors(rows, grid, module.start_values, 2, args.steps, fitted_on)
    ids = list(rows)
    groups = groups_of(rows, toy_reward.guide_fails(args.labels), args.by_kind)
    shipped_weight = cfg["model"].get("prior_weight", 0.0)
    table_reward = lambda q, d: model["w_queries"] * q + model["w_denoise"] * d  # noqa: E731  the table's own
    shipped = [every_split(as_table[i], table_reward, 2, prior[m], shipped_weight) for m, i in enumerate(ids)]
    print(f"\n{len(ids)} mixes, {candidates} candidates each, every split (chosen on 2 noises, scored on a third); "
          f"D at temperature {t_d:g}; paired against the table's own reward at its temperatures with the prior at "
          f"{shipped_weight:g} (the shipped chooser):")
    print("| form | prior weight | " + " | ".join(f"{g} (n = {len(m)})" for g, m in groups.items())
          + " | " + " | ".join(f"{g}: - shipped, paired" for g in groups) + " |")
    print("|---|---|" + "---|" * 2 * len(groups))
    for name, score in forms.items():
        for weight in priors:
            rates = [every_split(mixes[i], score, 2, prior[m], weight) for m, i in enumerate(ids)]
            cells = [str(bootstrap_mean([rates[ids.index(i)] for i in members])) for members in groups.values()]
            diffs = [str(bootstrap_difference([rates[ids.index(i)] for i in members],
                                              [shipped[ids.index(i)] for i in members])) for members in groups.values()]
            print(f"| {name} | {weight:g} | " + " | ".join(cells + diffs) + " |", flush=True)


if __name__ == "__main__":
    main()
