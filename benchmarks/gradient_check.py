"""Refinement's gradient against a finite difference of its own objective, and the bias of truncating it.

    python benchmarks/gradient_check.py                       # toy, 6 development mixes, about 3 minutes
    python benchmarks/gradient_check.py --mixes 12 --params alpha offset w_a w_b

For each mix (the development set's first ones, at the finder's alpha, the mix's own noise),
the objective of configs/refine-toy.yaml is differentiated three ways: a central finite
difference (h = 1e-3), autograd through all T denoising steps (K = T, the exact gradient
the default uses), and truncated autograd through the last K steps only (K = 1, 2, 5, 10,
25: the earlier latents taken as constants). Printed per K: the fraction of
(mix, parameter) pairs whose sign agrees with the finite difference, and the median ratio
gradient / finite difference (1 is unbiased). The test suite asserts K = T's agreement;
this script measures truncation, which is why K = T is the default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from richspace.conditioning import PARAMS  # noqa: E402
from richspace.refinement import RefineDataModule, RefineModule  # noqa: E402
from richspace.runs import read_input  # noqa: E402
from richspace.sampler import Sampler  # noqa: E402


def build(config: Path, experiments: str, mixes: int, params: list[str], run_dir: str):
    cfg = read_input(config, "--config", yaml.safe_load)
    sampler = Sampler(**cfg["sampler"])
    model = cfg["model"] | {"params": params, "mode": "gradient", "grid": None, "grad_steps": None,
                            "noise_samples": 1}  # the mix's own noise, as BENCHMARKS.md measured it
    module = RefineModule(sampler, **model)
    module.load_models("cpu")
    data = RefineDataModule(experiments=experiments, run_dir=run_dir, pretrained=cfg["sampler"]["pretrained"],
                            max_sequence_length=cfg["sampler"]["max_sequence_length"],
                            guidance_scale=cfg["sampler"]["guidance_scale"], compose=None)
    data.only = [s.id for s in data.specs if s.base is None][:mixes]
    data.prepare_data()
    data.setup("predict")
    return module, data.items


def gradient(module: RefineModule, item, theta: torch.Tensor, k: int) -> torch.Tensor:
    module.hparams.grad_steps = k
    x = theta.clone().requires_grad_(True)
    with torch.enable_grad():
        terms, _ = module.objective(item, x)
        terms["objective"].backward()
    return x.grad.detach()


def finite_difference(module: RefineModule, item, theta: torch.Tensor, index: int, h: float) -> float:
    values = []
    for sign in (1.0, -1.0):
        x = theta.clone()
        x[index] += sign * h
        with torch.no_grad():
            values.append(float(module.objective(item, x)[0]["objective"]))
    return (values[0] - values[1]) / (2 * h)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "refine-toy.yaml"))
    parser.add_argument("--experiments", default=str(ROOT / "configs" / "experiments" / "toy-dev.yaml"))
    parser.add_argument("--mixes", type=int, default=6)
    parser.add_argument("--params", nargs="+", default=["alpha"], choices=PARAMS)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 5, 10, 25])
    parser.add_argument("--h", type=float, default=1e-3)
    parser.add_argument("--run_dir", default="runs/gradient-check")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    module, items = build(Path(args.config), args.experiments, args.mixes, args.params, args.run_dir)
    T = module.sampler.num_inference_steps
    ks = sorted({*args.ks, T})
    rows = []
    for item in items:
        theta = module.start(item).coefficients
        grads = {k: gradient(module, item, theta, k) for k in ks}
        for i, p in enumerate(PARAMS):
            if p not in args.params:
                continue
            fd = finite_difference(module, item, theta, i, args.h)
            rows.append({"mix": item.id, "param": p, "fd": fd, **{f"K={k}": float(g[i]) for k, g in grads.items()}})
            print(f"{item.id} d/d{p}: finite difference {fd:+.4g}; " +
                  ", ".join(f"K={k} {float(g[i]):+.4g}" for k, g in grads.items()))
    print(f"\n{len(rows)} (mix, parameter) pairs, T = {T}\n\n| K | sign agrees with finite difference | "
          "median gradient / finite difference |\n|---|---|---|")
    for k in ks:
        signs = statistics.mean((r[f"K={k}"] > 0) == (r["fd"] > 0) for r in rows)
        ratio = statistics.median(r[f"K={k}"] / r["fd"] for r in rows if r["fd"] != 0)
        print(f"| {k}{' (exact)' if k == T else ''} | {signs:.0%} | {ratio:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
