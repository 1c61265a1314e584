"""Generation overhead on the CPU: our path against bare diffusers pipeline calls, tiny checkpoint.

    python benchmarks/generate.py                       # 64x64, 17 frames, 20 steps, 2 mixes x 3 methods
    python benchmarks/generate.py --height 32 --width 32 --frames 9 --steps 4   # the embedded default's size

Ours: `Trainer.predict` over the mixes, with and without the run writer (Lightning's loop, the module's
generate, uint8 conversion, mp4 encoding, atomic records), timed from the first batch to the
end of the loop, so model loading is excluded; CLIP evaluation is off (--model.clip null).
Bare: `CogVideoXPipeline.__call__` on the very same embeddings, negatives, seeds and
settings, nothing written. Rounds alternate which goes first; the ratio is the median of
per-round ratios. Lightning predicts under torch.inference_mode, the bare call under no_grad.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from richspace.cli import build_cli  # noqa: E402
from richspace.data import MixDataModule  # noqa: E402
from richspace.generation import MixVideoModule  # noqa: E402
from richspace.writer import RunWriter  # noqa: E402


class LoopTimer(Callback):
    def on_predict_batch_start(self, trainer, *args):
        if not hasattr(self, "start"):
            self.start = time.perf_counter()

    def on_predict_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--mixes", default="[tiger-zebra, red-blue]")
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()

    settings = ["--sampler.height", str(args.height), "--sampler.width", str(args.width), "--sampler.num_frames",
                str(args.frames), "--sampler.num_inference_steps", str(args.steps), "--model.clip", "null",
                "--data.only", args.mixes, "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]
    ours, unwritten, bare, videos = [], [], [], 0

    def run_ours(run_dir: str, write: bool = True):
        cli = build_cli(MixVideoModule, MixDataModule, ["--run_dir", run_dir, *settings], ROOT / "configs" / "tiny.yaml")
        timer = LoopTimer()
        cli.trainer.callbacks += [RunWriter(run_dir, fps=8), timer] if write else [timer]
        cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=False)
        (ours if write else unwritten).append(timer.seconds)
        return cli

    def run_bare(cli) -> int:
        items, s = cli.datamodule.items, cli.model.sampler
        start = time.perf_counter()
        for item in items:
            for embeds in item.embeddings.values():
                s.pipe(prompt_embeds=embeds[None], negative_prompt_embeds=item.negative[None],
                       num_frames=s.num_frames, height=s.height, width=s.width,
                       num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                       generator=torch.Generator().manual_seed(item.seed), output_type="pt")
        bare.append(time.perf_counter() - start)
        return sum(len(item.embeddings) for item in items)

    for round_ in range(args.rounds):  # alternate which goes first
        with tempfile.TemporaryDirectory() as run_dir:
            if round_ % 2 == 0:
                videos = run_bare(run_ours(run_dir))
                run_ours(run_dir + "/unwritten", write=False)
            else:
                run_ours(run_dir + "/unwritten", write=False)
                with tempfile.TemporaryDirectory() as warm_dir:  # models loaded first, then bare, then ours
                    cli = build_cli(MixVideoModule, MixDataModule, ["--run_dir", warm_dir, *settings],
                                    ROOT / "configs" / "tiny.yaml")
                    cli.datamodule.prepare_data(), cli.datamodule.setup("predict"), cli.model.setup("predict")
                    videos = run_bare(cli)
                    run_ours(run_dir)

    ratio = statistics.median(o / b for o, b in zip(ours, bare))
    ratio_unwritten = statistics.median(o / b for o, b in zip(unwritten, bare))
    print(f"generation benchmark: {args.width}x{args.height}, {args.frames} frames, {args.steps} steps, "
          f"{videos} videos per round, {args.rounds} rounds, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"  ours (Trainer.predict + writer)  {statistics.median(ours) / videos * 1e3:8.1f} ms per video")
    print(f"  ours without writing mp4s        {statistics.median(unwritten) / videos * 1e3:8.1f} ms per video")
    print(f"  bare CogVideoXPipeline calls     {statistics.median(bare) / videos * 1e3:8.1f} ms per video")
    print("  per-round ours / bare         ", " ".join(f"{o / b:.3f}" for o, b in zip(ours, bare)))
    print(f"overhead per video without writing: {100 * (ratio_unwritten - 1):+.1f}%  (generation path)")
    print(f"overhead per video: {100 * (ratio - 1):+.1f}%  (ours / bare = {ratio:.3f}, mp4s and records written)")


if __name__ == "__main__":
    main()
