"""Refinement step cost on the CPU: seconds per step (objective, backward, Adam), one mix, tiny checkpoint.

    python benchmarks/refine.py                 # configs/refine-tiny.yaml's settings: 32x32, 9 frames, 8 steps, K = 1
    python benchmarks/refine.py --grad_steps 8  # K = T: the exact gradient

The GPU figures (the 2B-shaped step at 480x720, 13 frames) come from benchmarks/gpu_check.py,
which refuses to run without a GPU. Peak memory here is the process's peak resident memory so far.
"""

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from richspace.refinement import RefineDataModule, RefineModule  # noqa: E402
from richspace.sampler import Sampler  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--grad_steps", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = RefineDataModule(only=["red-blue"], run_dir=tmp)
        data.prepare_data()
        data.setup("predict")
        item = data.items[0]
        print(f"refine benchmark: tiny checkpoint, CPU ({torch.get_num_threads()} threads), 32x32, 9 frames, 8 steps, "
              f"K = {args.grad_steps} | torch {torch.__version__}")
        for checkpointing in (True, False):
            sampler = Sampler(num_frames=9, height=32, width=32, num_inference_steps=8,
                              gradient_checkpointing=checkpointing)
            module = RefineModule(sampler, grad_steps=args.grad_steps)
            module.load_models("cpu")
            alpha = torch.nn.Parameter(torch.tensor(item.alpha, dtype=torch.float64))
            optimizer = torch.optim.Adam([alpha], lr=0.05)
            times = []
            for _ in range(args.steps + 1):  # the first is a warm-up
                start = time.perf_counter()
                optimizer.zero_grad()
                terms, _ = module.objective(item, alpha)
                (-terms["objective"]).backward()
                optimizer.step()
                times.append(time.perf_counter() - start)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
            print(f"  gradient checkpointing {'on ' if checkpointing else 'off'}: {statistics.median(times[1:]):7.3f} "
                  f"s/step, {rss:8.1f} MiB process peak RSS (so far)")


if __name__ == "__main__":
    main()
