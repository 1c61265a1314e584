"""Do the search's pattern moves add anything over the grid's best candidate? Scored on seeds it never saw.

    python train.py --experiments configs/experiments/toy-dev.yaml --data.seed 100 --model.steps 6 \
        --run_dir runs/search-moves/refine       # dev mixes on the fit seed, with 6 moves: about 16 minutes
    python benchmarks/search_moves.py            # both picks on scored seeds 0-2: about 2 minutes

Search mode (richspace/refinement.py) evaluates the start and every grid point, then makes
``model.steps`` pattern moves from the best. Per mix of a saved refinement (``--refinement``,
train.py's refinement.json, fitted on the fit seed), this samples two candidates on the scored
seeds: the best of the grid alone (the history's first evaluations) and the final best (after
the moves), and judges each video by its pixels. Where they are the same candidate, both score
the same. Split by the guide labels of ``--labels`` when that file exists.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from richspace.conditioning import active, conditioning, offset_direction  # noqa: E402
from richspace.refinement import RefineModule  # noqa: E402
from richspace.runs import read_input  # noqa: E402
from richspace.sampler import Sampler  # noqa: E402
from richspace.stats import bootstrap_difference, bootstrap_mean  # noqa: E402
from richspace.toy import world  # noqa: E402
from toy_reward import guide_fails, mix_items  # noqa: E402  (benchmarks/: the reward check's helpers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "refine-toy.yaml"), help="the refinement's config")
    parser.add_argument("--experiments", default=str(ROOT / "configs" / "experiments" / "toy-dev.yaml"))
    parser.add_argument("--refinement", default=str(ROOT / "runs" / "search-moves" / "refine" / "refinement.json"),
                        help="train.py's refinement.json, refined with pattern moves (model.steps > 0)")
    parser.add_argument("--labels", default=str(ROOT / "runs" / "toy-mixing" / "dev" / "toy_mixing.json"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="scored seeds (never the fit seed)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    cfg = read_input(args.config, "--config", yaml.safe_load)
    module = RefineModule(Sampler(**cfg["sampler"]), **cfg["model"])  # its candidates and its sampler (no judge)
    if module.hparams.mode != "search":
        raise SystemExit(f"error: {args.config}: model.mode must be search")
    try:
        refined = json.loads(Path(args.refinement).read_text())["mixes"]
    except (OSError, ValueError, KeyError):
        raise SystemExit(f"error: {args.refinement} is not a readable refinement.json (from train.py)") from None
    sampler = module.sampler.load("cpu")
    labels = guide_fails(args.labels)
    wins: dict[str, dict[str, list[float]]] = {}
    for seed in args.seeds:
        items = mix_items(cfg["sampler"], args.experiments, "runs/search-moves", seed)
        for item in (i for i in items if i.id in refined and "expect" in i.meta):
            history = refined[item.id]["trajectory"]
            grid = len(module.candidates(module.start(item).coefficients))
            if len(history) < grid or any("theta" not in h for h in history):
                raise SystemExit(f"error: {args.refinement}: mix {item.id} was not refined by this config's search")
            picks = {"grid's best": max(history[:grid], key=lambda h: h["objective"])["theta"],
                     "after the moves": max(history, key=lambda h: h["objective"])["theta"]}
            e_a, e_b = item.e_a.double(), item.e_b.double()
            direction = offset_direction(e_a, e_b, item.e_guide.double())
            row = wins.setdefault(item.id, {name: [] for name in picks})
            for name, theta in picks.items():
                texts, weights = active(*conditioning(e_a, e_b, direction, torch.tensor(theta, dtype=torch.float64)))
                video = sampler.generate(texts, item.negative, item.seed, weights)
                row[name].append(float(world.judge(item.meta["expect"], world.readout(video.numpy()))["success"]))
    groups = {"all mixes": list(wins)}
    if labels and all(i in labels for i in wins):
        groups |= {"guide fails": [i for i in wins if labels[i]], "guide works": [i for i in wins if not labels[i]]}
    rate = {i: {n: sum(v) / len(v) for n, v in row.items()} for i, row in wins.items()}
    print(f"{len(wins)} mixes of {args.refinement}, scored seeds {args.seeds}: share of videos that show the mix")
    print("| candidate | " + " | ".join(f"{g} (n = {len(m)})" for g, m in groups.items()) + " |")
    print("|---|" + "---|" * len(groups))
    for name in ("grid's best", "after the moves"):
        print(f"| {name} | " + " | ".join(str(bootstrap_mean([rate[i][name] for i in m])) for m in groups.values())
              + " |")
    print("| after - grid (paired) | " + " | ".join(
        str(bootstrap_difference([rate[i]["after the moves"] for i in m], [rate[i]["grid's best"] for i in m]))
        for m in groups.values()) + " |")


if __name__ == "__main__":
    main()
