"""Finder speed: the one-pass closed form against the paper's literal per-candidate loop.

    python benchmarks/finder.py            # n=226, d=4096, k=30, float32, one thread
    python benchmarks/finder.py --dtype float64 --threads 2

Both run side by side in one process on the same T5-shaped inputs (shared padding rows),
interleaved round by round so that a noisy machine slows both alike; ratios are medians of
the per-round ratios. Also prints the finder against one elementwise pass over the three
inputs (torch.addcmul reads E_a, E_b, E_c once: the memory floor).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from richspace.finder import find_interpolation  # noqa: E402
from tests.paper_reference import literal_find  # noqa: E402


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Times each function once per round, in turn, for `repeats` rounds (after one warm-up)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(seconds(fn))
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=226)
    p.add_argument("--d", type=int, default=4096)
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=31)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    n, d, k = args.n, args.d, args.k
    pad = torch.randn(d, generator=g)
    e_a, e_b, e_c = (torch.randn(n, d, generator=g) for _ in range(3))
    for e in (e_a, e_b, e_c):  # T5-like: real rows first, then near-identical pad rows
        e[40:] = pad + 0.05 * torch.randn(n - 40, d, generator=g)
    e_a, e_b, e_c = (e.to(dtype) for e in (e_a, e_b, e_c))
    n_ids = (24, 26, 38)

    ours = find_interpolation(e_a, e_b, e_c, n_ids, k=k)
    ref_index, *_ = literal_find(e_a, e_b, e_c, *n_ids, k=k)
    times = interleaved(
        {
            "literal": lambda: literal_find(e_a, e_b, e_c, *n_ids, k=k),
            "finder": lambda: find_interpolation(e_a, e_b, e_c, n_ids, k=k),
            "floor": lambda: torch.addcmul(e_a, e_b, e_c),
        },
        args.repeats,
    )
    t_literal, t_finder, t_floor = (statistics.median(times[n]) for n in ("literal", "finder", "floor"))
    ratios = sorted(lit / fin for lit, fin in zip(times["literal"], times["finder"]))
    speedup = statistics.median(ratios)
    quartiles = (ratios[len(ratios) // 4], ratios[3 * len(ratios) // 4])
    over_floor = statistics.median(fin / flo for fin, flo in zip(times["finder"], times["floor"]))

    print(f"finder benchmark: n={n} d={d} k={k} {args.dtype} threads={args.threads} torch={torch.__version__}")
    print(f"  same index: {int(ours.index) == ref_index} (finder {int(ours.index)}, literal {ref_index})")
    print(f"  literal per-candidate loop   {t_literal * 1e3:9.3f} ms")
    print(f"  richspace.find_interpolation {t_finder * 1e3:9.3f} ms")
    print(f"  one elementwise pass (floor) {t_floor * 1e3:9.3f} ms")
    print(f"  per-round speedup quartiles   {quartiles[0]:.1f}x .. {quartiles[1]:.1f}x over {len(ratios)} rounds")
    print(f"speedup over literal: {speedup:.1f}x   finder / floor: {over_floor:.1f}x")


if __name__ == "__main__":
    main()
