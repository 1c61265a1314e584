"""Does switching the conditioning during sampling draw mixes that no fixed mixing parameters draw? Dev mixes.

    python benchmarks/toy_switch.py              # dev mixes where the guide fails, 4 noises: about 15 minutes on 2 cores
    python benchmarks/toy_switch.py --limit 3    # a quick look

Issue 13 offered "a step where the conditioning switches" as a mixing parameter. The idea: a
diffusion model settles coarse structure (shape, hue) in its early steps and fine texture
(stripes) in its late ones, so conditioning on A early and on B late might draw A's shape with
B's stripes: the striped triangle no point of refinement's grid draws.

Each schedule conditions the first ``s`` of the denoising steps on one set of weights over the
texts (E_mix at the finder's alpha, E_a, E_b) and the rest on another (``Sampler.sample`` with
per-step weights). Every schedule is sampled on the noises of benchmarks/toy_reward.py's table
(the fit seed's, +1, ...) and judged by its pixels. Where that table exists (same noises), the
grid's ceiling (any of refinement's candidates) is set beside the ceiling with the schedules
added: the question is whether any mix gains a candidate that shows it. Results are saved to
``--out`` after each mix; a rerun continues.
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

from richspace.conditioning import COMPOSE_WEIGHT, conditioning, offset_direction  # noqa: E402
from richspace.runs import atomic_write_text, read_input  # noqa: E402
from richspace.sampler import Sampler  # noqa: E402
from richspace.stats import bootstrap_mean  # noqa: E402
from richspace.toy import world  # noqa: E402
from toy_reward import guide_fails, mix_items, pixels_of  # noqa: E402  (benchmarks/: the reward check's helpers)


def schedules(guidance: float) -> dict[str, tuple[list[float], list[float], float]]:
    """name: (weights of E_mix, E_a, E_b before the switch, after it, the switch as a fraction of the steps)."""
    mix, a, b, both = [guidance, 0, 0], [0, guidance, 0], [0, 0, guidance], [0, COMPOSE_WEIGHT, COMPOSE_WEIGHT]
    out = {"compose, no switch (a grid point)": (both, both, 0.0)}
    for s in (0.3, 0.5, 0.7):
        out[f"A, then B from {s:.0%} of the steps"] = (a, b, s)
    for s in (0.3, 0.5):
        out[f"B, then A from {s:.0%}"] = (b, a, s)
        out[f"mixed text, then A and B composed from {s:.0%}"] = (mix, both, s)
        out[f"A and B composed, then the mixed text from {s:.0%}"] = (both, mix, s)
    return out


def per_step(early: list[float], late: list[float], switch: float, steps: int) -> torch.Tensor:
    """(steps, 3) weights: ``early`` for the first round(switch * steps) steps, ``late`` after."""
    n = round(switch * steps)
    return torch.tensor([early] * n + [late] * (steps - n), dtype=torch.float64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "refine-toy.yaml"))
    parser.add_argument("--experiments", default=str(ROOT / "configs" / "experiments" / "toy-dev.yaml"))
    parser.add_argument("--seed", type=int, default=100, help="the fit seed (benchmarks/toy_mixing.yaml)")
    parser.add_argument("--noises", type=int, default=4, help="noises per schedule (the fit seed's, +1, ...)")
    parser.add_argument("--labels", default=str(ROOT / "runs" / "toy-mixing" / "dev" / "toy_mixing.json"),
                        help="toy_mixing.json of the dev benchmark: only mixes where the guide fails are sampled")
    parser.add_argument("--table", default=str(ROOT / "runs" / "toy-reward" / "candidates.json"),
                        help="benchmarks/toy_reward.py's table: the grid's ceiling on the same noises")
    parser.add_argument("--out", default=str(ROOT / "runs" / "toy-switch" / "switch.json"))
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    if args.noises < 1:
        raise SystemExit("error: --noises must be at least 1")
    torch.set_num_threads(2)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    cfg = read_input(args.config, "--config", yaml.safe_load)["sampler"]
    plans = schedules(cfg["guidance_scale"])
    out_path = Path(args.out)
    settings = {"sampler": cfg, "seed": args.seed, "noises": args.noises, "schedules": plans,
                "experiments": Path(args.experiments).name}
    saved = read_input(out_path, "--out") if out_path.exists() else {"settings": settings, "mixes": {}}
    if json.loads(json.dumps(saved["settings"])) != json.loads(json.dumps(settings)):
        raise SystemExit(f"error: {out_path} was sampled with other settings; give another --out or delete it")
    labels = guide_fails(args.labels)
    sampler = Sampler(**cfg).load("cpu")
    items = [i for i in mix_items(cfg, args.experiments, "runs/toy-switch", args.seed)
             if "expect" in i.meta and labels.get(i.id, True)][: args.limit]
    for item in items:
        if item.id not in saved["mixes"]:
            e_a, e_b = item.e_a.double(), item.e_b.double()
            theta = torch.tensor([item.alpha, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # E_mix: the finder's
            texts, _ = conditioning(e_a, e_b, offset_direction(e_a, e_b, item.e_guide.double()), theta)
            row = {}
            for name, (early, late, switch) in plans.items():
                weights = per_step(early, late, switch, sampler.num_inference_steps)
                row[name] = []
                for j in range(args.noises):
                    with torch.no_grad():
                        frames = sampler.sample(texts, item.negative, item.seed + j, 0, None,
                                                weights).float()
                    row[name].append(bool(world.judge(item.meta["expect"], pixels_of(frames))["success"]))
            saved["mixes"][item.id] = {"kind": item.meta.get("kind"), "success": row}
            atomic_write_text(out_path, json.dumps(saved) + "\n")
        print(f"{item.id}: " + ", ".join(f"{sum(v)}" for v in saved["mixes"][item.id]["success"].values()), flush=True)
    rows = {i.id: saved["mixes"][i.id] for i in items}
    scope = "where the guide fails" if labels else "all mixes (no labels file)"
    print(f"\n{len(rows)} dev mixes {scope}, each schedule on {args.noises} noises (fit seed {args.seed}): "
          "share of videos that show the mix")
    print("| schedule | shows the mix |\n|---|---|")
    for name in plans:
        print(f"| {name} | {bootstrap_mean([sum(r['success'][name]) / args.noises for r in rows.values()])} |")
    table = read_input(args.table, "--table") if Path(args.table).exists() else None
    if table is None or table["settings"]["seed"] != args.seed or table["settings"]["noises"] != args.noises:
        print(f"\n(no grid ceiling: {args.table} is missing or sampled on other noises)")
        return
    grid, both, gains = [], [], []
    for mix_id, row in rows.items():
        evals = table["mixes"][mix_id]["evals"]
        best_grid = max(sum(e["success"] for e in v) for v in evals.values()) / args.noises
        best_switch = max(sum(v) for v in row["success"].values()) / args.noises
        grid.append(best_grid)
        both.append(max(best_grid, best_switch))
        if best_switch > best_grid:
            gains.append(f"{mix_id} ({best_grid:.0%} to {best_switch:.0%})")
    print(f"\nCeiling (the best candidate's share, mean over mixes): the grid {bootstrap_mean(grid)}; "
          f"the grid and the schedules {bootstrap_mean(both)}")
    print(f"Mixes a schedule draws better than any grid candidate: {len(gains)} of {len(rows)}"
          + (f": {'; '.join(gains)}" if gains else ""))


if __name__ == "__main__":
    main()
