"""Does refinement's reward rank the videos that show the mix first? Checked on the toy before it is used.

    python benchmarks/toy_reward.py                  # development mixes, configs/refine-toy.yaml's search grid
    python benchmarks/toy_reward.py --limit 10       # the first 10 mixes only (a quick look)

Two checks, on the development mixes only (nothing here looks at the test set):

1. Rendered: for each mix, the world's own render of what the mix asks (the in-between hue,
   the diagonal, the striped triangle) against renders of A and of B (same noise-free world).
   A reward that sees the mix ranks the mix's render above both.
2. Generated: for each mix, every candidate of refinement's search grid (configs/refine-toy.yaml)
   is sampled on the fit seed and judged by its pixels. Reported: how often the candidate the
   reward ranks first shows the mix, against the same for the old objective (guide + soft-min of
   A and B) and for any candidate (the grid's ceiling), over mixes with 95% bootstrap intervals.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from richspace.objective import ObjectiveWeights  # noqa: E402
from richspace.refinement import RefineDataModule, RefineModule  # noqa: E402
from richspace.sampler import Sampler  # noqa: E402
from richspace.stats import bootstrap_mean  # noqa: E402
from richspace.toy import world  # noqa: E402

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


def score(module: RefineModule, item, frames: torch.Tensor, weights: ObjectiveWeights) -> float:
    saved, module.weights = module.weights, weights
    try:
        with torch.no_grad():
            terms = module.terms(item, module.judge.video_features(frames), torch.tensor(item.alpha))
    finally:
        module.weights = saved
    return float(terms["objective"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "refine-toy.yaml"))
    parser.add_argument("--experiments", default=str(ROOT / "configs" / "experiments" / "toy-dev.yaml"))
    parser.add_argument("--seed", type=int, default=100, help="the fit seed (benchmarks/toy_mixing.yaml)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    cfg = yaml.safe_load(Path(args.config).read_text())
    module = RefineModule(Sampler(**cfg["sampler"]), **cfg["model"])
    module.load_models("cpu")
    new = module.weights
    data = RefineDataModule(experiments=args.experiments, run_dir="runs/toy-reward", seed=args.seed, compose=None,
                            pretrained=cfg["sampler"]["pretrained"], guidance_scale=cfg["sampler"]["guidance_scale"],
                            max_sequence_length=cfg["sampler"]["max_sequence_length"])
    data.prepare_data()
    data.setup("predict")
    items = [i for i in data.items if "queries" in i.meta and "expect" in i.meta][: args.limit]
    rendered, rows = [], []
    for item in items:
        # 1. rendered: the mix's own render against A's and B's (A of a chain: its base's guide, not rendered)
        expect = item.meta["expect"]
        video = torch.from_numpy(world.render_uint8(intended(expect))).float() / 255
        ends = [torch.from_numpy(world.render_uint8(a)).float() / 255
                for a in (plain(item.texts.a), plain(item.texts.b)) if a is not None]
        mix_score = score(module, item, video, new)
        rendered.append(all(mix_score > score(module, item, e, new) for e in ends))
        # 2. generated: every grid candidate on the fit seed
        cands = []
        for theta in module.candidates(module.start(item).coefficients):
            with torch.no_grad():
                terms, frames = module.objective(item, theta)
            verdict = world.judge(expect, world.readout((frames * 255).round().to(torch.uint8).numpy()))["success"]
            cands.append({"theta": theta.tolist(), "reward": float(terms["objective"]),
                          "old": score(module, item, frames, OLD), "success": verdict})
        top_new, top_old = max(cands, key=lambda c: c["reward"]), max(cands, key=lambda c: c["old"])
        rows.append({"id": item.id, "kind": item.meta.get("kind"), "reward_top": top_new["success"],
                     "old_top": top_old["success"], "any": any(c["success"] for c in cands),
                     "reward_theta": top_new["theta"], "candidates": cands})
        print(f"{item.id}: rendered mix first {rendered[-1]}; top by reward {top_new['success']}, by old objective "
              f"{top_old['success']}, any {rows[-1]['any']} ({sum(c['success'] for c in cands)}/{len(cands)})")
    print(f"\nRendered: the reward ranks the mix's render above A's and B's in {bootstrap_mean(rendered)} of "
          f"{len(rendered)} mixes")
    print(f"Generated ({len(rows)} mixes, fit seed {args.seed}, {len(rows[0]['candidates'])} candidates each):")
    print("| chooser | the chosen video shows the mix |\n|---|---|")
    for name, key in (("per-attribute reward", "reward_top"), ("old objective (guide + soft-min A, B)", "old_top"),
                      ("any candidate (ceiling)", "any")):
        print(f"| {name} | {bootstrap_mean([r[key] for r in rows])} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rendered": rendered, "generated": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
