"""Refinement step cost: seconds and peak memory per step (objective, backward, Adam), one mix.

    python benchmarks/refine.py                           # tiny checkpoint on the CPU, refine-tiny settings
    python benchmarks/refine.py --full                    # CogVideoX-2B-sized random weights on a GPU:
                                                          # 480x720, 13 frames, K = 1, bf16, checkpointing on and off

--full builds the transformer and VAE from CogVideoX-2B's published config (diffusers' class
defaults) with random weights (no download), saves them as a diffusers directory and loads
them through RefineModule exactly as a real checkpoint. CLIP is the tiny one in both modes
(its cost is small next to the video model's). Peak memory is the GPU's; on the CPU, the
process's peak resident memory so far.
"""

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from richspace.refinement import RefineDataModule, RefineModule  # noqa: E402


def step_cost(module, item, steps: int) -> tuple[float, float]:
    alpha = module.alphas[0]
    optimizer = torch.optim.Adam([alpha], lr=0.05)
    times = []
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps + 1):  # the first is a warm-up
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad()
        terms, _ = module.objective(item, alpha)
        (-terms["objective"]).backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return statistics.median(times[1:]), peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true")
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = RefineDataModule(only=["red-blue"], run_dir=tmp)
        data.prepare_data()
        data.setup("fit")
        item = data.items[0]
        if args.full:
            from gpu_generate import build

            build(tmp + "/ckpt", small=not torch.cuda.is_available())
            settings = dict(pretrained=tmp + "/ckpt", dtype="bfloat16", num_frames=13, height=480, width=720,
                            num_inference_steps=50, grad_steps=1, decode_latent_frames=2, clip_frames=[0, 2, 4],
                            autocast="bfloat16")
            item = dict(item, negative=torch.randn(226, 4096), refine={k: torch.randn(226, 4096) for k in ("e_a", "e_b", "e_guide")})
            if not torch.cuda.is_available():  # the script itself, checked small on a CPU
                settings.update(num_frames=9, height=64, width=64, num_inference_steps=4, clip_frames=[0, 2])
        else:
            settings = dict(num_frames=9, height=32, width=32, num_inference_steps=8, grad_steps=1)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"refine benchmark: {'2B-sized random' if args.full else 'tiny'} | {settings} | "
              f"{torch.cuda.get_device_name() if device == 'cuda' else 'cpu'} | torch {torch.__version__}")
        for checkpointing in (True, False):
            module = RefineModule(gradient_checkpointing=checkpointing, **settings)
            module.init_coefficients(["red-blue"], [item["alpha"]])
            module.load_models(device)
            module.alphas.to(device)
            seconds, peak = step_cost(module, item, args.steps)
            unit = "GiB GPU peak" if device == "cuda" else "MiB process peak RSS (so far)"
            print(f"  gradient checkpointing {'on ' if checkpointing else 'off'}: {seconds:7.3f} s/step, {peak:8.2f} {unit}")
            del module


if __name__ == "__main__":
    main()
