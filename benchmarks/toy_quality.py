"""The toy world's quality floor at the default generation settings (configs/toy.yaml).

    python benchmarks/toy_quality.py              # about 2 minutes on 2 CPU cores
    python benchmarks/toy_quality.py --seeds 8
    python benchmarks/toy_quality.py --clip runs/toy-build-turn/clip   # another build's judge
    python benchmarks/toy_quality.py --world runs/toy-world-rare      # another build's generator and judge

Per set of captions, the fraction of generated videos whose readout matches the caption, per
attribute, and the fraction where CLIP ranks the true value first among captions that differ
in that attribute alone (richspace/toy/evaluate.py). "CLIP" is the toy judge, which sees
three frames at once (richspace/videotext.py). The floor (the issue's) applies to the
combinations held out of training; training combinations, the never-seen pair (striped
triangles) and the judge on the world's own renders are shown for comparison. Last, the
judge on diagonal motion no caption names: how often its top two direction captions are the
two the diagonal lies between (chance: 1 in 6), and how evenly it splits between them.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from richspace.cli import one_line  # noqa: E402
from richspace.runs import read_input  # noqa: E402
from richspace.toy import evaluate, world  # noqa: E402
from richspace.toy.build import finished_build, trained_models  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="videos per held-out combination")
    parser.add_argument("--config", default=str(ROOT / "configs" / "toy.yaml"), help="generation settings")
    parser.add_argument("--guidance_scale", type=float, default=None, help="override the config's guidance")
    parser.add_argument("--steps", type=int, default=None, help="override the config's denoising steps")
    parser.add_argument("--clip", default="toy", help="the judge: toy (shipped) or a build's clip directory")
    parser.add_argument("--world", type=finished_build, default=None, metavar="BUILD",
                        help="a toy build directory: its cogvideox/ and clip/ instead of the shipped ones (and --clip)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = read_input(args.config, "--config", yaml.safe_load)["sampler"]
    settings = dict(steps=args.steps or model["num_inference_steps"],
                    guidance=model["guidance_scale"] if args.guidance_scale is None else args.guidance_scale,
                    max_sequence_length=model["max_sequence_length"])
    print(f"settings: {settings['steps']} steps, guidance {settings['guidance']}")
    models = {"clip": args.clip}
    if args.world is not None:
        pipeline, judge = trained_models(args.world)
        models = {"clip": str(judge), "pretrained": str(pipeline)}
    try:
        pipe, encode, judge = evaluate.load_toy(**models)
    except OSError as e:  # weights not found or not loadable (richspace.weights)
        raise SystemExit(f"error: {one_line(e)}") from None
    rng = np.random.default_rng(0)
    train = world.training_combinations()
    unseen_pair = [c for c in world.all_combinations() if (c[1], c[2]) in world.HELD_OUT_PAIRS]
    sets = {
        "held out (floor)": (world.held_out_combinations(), list(range(args.seeds))),
        "held out, rendered (ground truth)": (world.held_out_combinations(), list(range(args.seeds))),
        "training": ([train[i] for i in rng.choice(len(train), 12, replace=False)], [100, 101]),
        "never-seen pair": ([unseen_pair[i] for i in rng.choice(len(unseen_pair), 12, replace=False)], [200, 201]),
    }
    results = {}
    header = "| set | videos | " + " | ".join(f"readout {a}" for a in evaluate.ATTRIBUTES) + " | " + \
        " | ".join(f"CLIP {a}" for a in evaluate.ATTRIBUTES) + " |"
    lines = [header, "|---" * (2 + 2 * len(evaluate.ATTRIBUTES)) + "|"]
    for name, (combos, seeds) in sets.items():
        r = evaluate.quality(pipe, encode, judge, combos, seeds, **settings, rendered="rendered" in name)
        results[name] = r
        cells = [f"{r['readout'][a]:.0%}" for a in evaluate.ATTRIBUTES] + [f"{r['clip'][a]:.0%}" for a in evaluate.ATTRIBUTES]
        lines.append(f"| {name} | {r['videos']} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    results["diagonals"] = evaluate.diagonal_ranks(judge, list(range(300, 300 + 2 * args.seeds)))
    d = results["diagonals"]
    print(f"\ndiagonal motion (rendered, never captioned): the judge's top two directions are the diagonal's two "
          f"in {d['top_two']:.0%} of {d['videos']} videos (chance 17%); the weaker holds {d['even']:.0%} of the "
          "two's probability (even: 50%)")
    low = evaluate.meets_floor(results["held out (floor)"])
    print("\nfloor (held out): " + ("met" if not low else "NOT met: " + "; ".join(low)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
