"""Prints the closed-form finder's choice for every mix in a specs file (no video generation).

    python -m richspace.find                                       # paper's mixes, tiny checkpoint
    python -m richspace.find --model toy --experiments configs/experiments/toy.yaml   # the toy world
    python -m richspace.find --model THUDM/CogVideoX-2b            # real T5-XXL (hub id or local dir)
    python -m richspace.find --experiments my-mixes.yaml --k 60 --scoring full

Per mix: the chosen index and alpha (weight on prompt A), the token counts (A, B, guide ->
rows kept when truncating), the score curve as a sparkline with the chosen index marked, and
the index the paper reports where the spec has one (reproducible only with CogVideoX-2B's T5).
Embeddings are cached on disk: a second run does not load T5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from richspace.finder import PROJECTIONS, SCORINGS
from richspace.specs import SpecError, load_specs
from richspace.toy import TEXT_LEN as TOY_TEXT_LEN

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPECS = REPO / "configs" / "experiments" / "paper.yaml"
BARS = "▁▂▃▄▅▆▇█"


def sparkline(curve: torch.Tensor, mark: int) -> str:
    """The curve as bars, min to max, with the chosen index shown as '◆'."""
    lo, hi = float(curve.min()), float(curve.max())
    span = (hi - lo) or 1.0
    bars = [BARS[min(len(BARS) - 1, int((float(v) - lo) / span * len(BARS)))] for v in curve]
    bars[mark] = "◆"
    return "".join(bars)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m richspace.find", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--experiments", default=str(DEFAULT_SPECS), help="mix specs YAML (default: the paper's mixes)")
    p.add_argument("--model", default="tiny",
                   help="'tiny' (built offline), 'toy' (the trained toy world) or a CogVideoX hub id / local directory")
    p.add_argument("--max_sequence_length", type=int, default=None, help="text tokens (default 226; toy: 16)")
    p.add_argument("--k", type=int, default=30, help="interpolation steps: k+1 candidates (paper: 30)")
    p.add_argument("--scoring", default="both", choices=SCORINGS, help="curve maximised (paper: both)")
    p.add_argument("--projection", default="global", choices=PROJECTIONS, help="foot projection (paper: global)")
    p.add_argument("--cache_dir", default=None, help="embedding cache (default $RICHSPACE_CACHE/embeddings)")
    p.add_argument("--device", default="cpu", help="device for T5 on a cache miss, e.g. cuda")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="T5 dtype")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        specs = load_specs(args.experiments)  # before any model loads
        if args.k < 1:
            raise ValueError(f"--k must be >= 1; got {args.k}")
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device} asked for, but no CUDA GPU is visible; use --device cpu")
        from richspace.encoding import PromptEncoder
        from richspace.weights import resolve_weights
        from richspace.mixing import find_mixes

        model = resolve_weights(args.model, "cogvideox")
        length = args.max_sequence_length or (TOY_TEXT_LEN if args.model == "toy" else 226)
        encoder = PromptEncoder(model, args.cache_dir, length, device=args.device, dtype=getattr(torch, args.dtype))
        results = find_mixes(specs, encoder, k=args.k, scoring=args.scoring, projection=args.projection)
    except (SpecError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    print(f"{len(results)} mixes from {args.experiments} | model {args.model} | k={args.k} "
          f"scoring={args.scoring} projection={args.projection} | T5 loaded: {encoder.loaded}")
    width = max(len(i) for i in results)
    print(f"{'mix':<{width}}  index  alpha  n_ids(a,b,guide->rows)  paper  score curve (i = 0..k, ◆ chosen)")
    for mix_id, r in results.items():
        paper = r.spec.meta.get("paper_index", "")
        counts = f"{r.n_ids[0]},{r.n_ids[1]},{r.n_ids[2]}->{int(r.found.n_ids)}"
        print(f"{mix_id:<{width}}  {r.index:>5}  {r.alpha:5.3f}  {counts:<22}  {paper!s:>5}  "
              f"{sparkline(r.found.scores, r.index)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
