"""Generation speed options on the toy world: diffusers' cache hooks and torch.compile, against plain sampling.

    python benchmarks/cache_hooks.py                     # every toy mix x 4 seeds x (guide, average, finder)
    python benchmarks/cache_hooks.py --seeds 8 --variants plain,first_block_cache

For each variant, the same videos (same embeddings and seeds; configs/toy.yaml's settings) are made
with ``Sampler.generate``; each is read out and judged (richspace.toy.world), and the table gives, per
variant: seconds per video (median of videos, after a warm-up), the verdicts that differ from plain
sampling's, and the mixing successes. Variants run one after another in one process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from richspace.data import MixDataModule  # noqa: E402
from richspace.sampler import CACHES, Sampler  # noqa: E402
from richspace.toy.world import judge, readout  # noqa: E402

VARIANTS = {"plain": {}, **{name: {"cache": name} for name in CACHES}, "compile": {"compile": True}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=4, help="the first N seeds of benchmarks/toy_mixing.yaml")
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    seeds = yaml.safe_load((ROOT / "benchmarks" / "toy_mixing.yaml").read_text())["seeds"][: args.seeds]
    settings = yaml.safe_load((ROOT / "configs" / "toy.yaml").read_text())["sampler"]
    settings = {k: v for k, v in settings.items() if k not in ("compile", "cache")}
    jobs = []  # (mix id, method, embeds, negative, seed, expect)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            data = MixDataModule(experiments=str(ROOT / "configs" / "experiments" / "toy.yaml"), run_dir=tmp,
                                 seed=seed, pretrained="toy", max_sequence_length=settings["max_sequence_length"],
                                 compose=None)  # cache hooks act in the pipeline's own loop: line methods only
            data.prepare_data()
            data.setup("predict")
            jobs += [(item.id, method, embeds, item.negative, item.seed, item.meta["expect"])
                     for item in data.items for method, embeds in item.embeddings.items()]
    print(f"cache hooks on the toy world: {len(jobs)} videos per variant ({len(seeds)} seeds), "
          f"{settings['num_inference_steps']} steps, guidance {settings['guidance_scale']}, CPU "
          f"({torch.get_num_threads()} threads), torch {torch.__version__}")
    verdicts, rows = {}, []
    for name in args.variants.split(","):
        sampler = Sampler(**settings, **VARIANTS[name]).load("cpu")
        sampler.generate(jobs[0][2], jobs[0][3], jobs[0][4])  # warm-up (compiles where compile is on)
        times, verdicts[name] = [], []
        for _, _, embeds, negative, seed, expect in jobs:
            start = time.perf_counter()
            video = sampler.generate(embeds, negative, seed)
            times.append(time.perf_counter() - start)
            verdicts[name].append(judge(expect, readout(video.numpy()))["success"])
        plain = verdicts.get("plain")
        changed = sum(a != b for a, b in zip(verdicts[name], plain)) if plain else None
        rows.append((name, statistics.median(times), changed, sum(verdicts[name])))
        base = rows[0][1]
        print(f"  {name:<28} {rows[-1][1] * 1e3:7.1f} ms/video  x{base / rows[-1][1]:.2f} of {rows[0][0]}  "
              f"verdicts changed {changed if changed is not None else '-'}/{len(jobs)}  "
              f"successes {rows[-1][3]}/{len(jobs)}", flush=True)


if __name__ == "__main__":
    main()
