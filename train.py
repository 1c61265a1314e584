"""Refine each mix's mixing parameters (alpha, an offset towards the guide, composition weights) against the judge's reward, from the closed-form alpha.

    python train.py                                              # embedded default: configs/refine-toy.yaml, CPU
    python train.py --config configs/refine-cogvideox-2b.yaml    # real run: one GPU
    python train.py --config configs/refine-cogvideox-2b.yaml --trainer.devices 8    # mixes split over 8 GPUs
    torchrun --nnodes 2 --nproc_per_node 8 ... train.py --config ... --trainer.devices 8 --trainer.num_nodes 2

Then: python infer.py --data.alpha_from RUN_DIR/refinement.json  (adds the `refined` video;
the default run writes runs/refine-toy/refinement.json).
Each rank refines the mixes it owns (the same sharding and --trainer flags as infer.py) and
saves every mix's state after each step under RUN_DIR/refine/; a killed run started again
with the same command continues each mix where it stopped; --overwrite true starts every mix
again from the closed form. Rank 0 then merges the states into RUN_DIR/refinement.json.
"""

import sys
import warnings
from pathlib import Path

from richspace.cli import build_cli, one_line_errors, prepare_run_dir
from richspace.refinement import RefineDataModule, RefineModule, finish_refinement

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "refine-toy.yaml"


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    warnings.filterwarnings("ignore", message="predict returned None")  # each step writes its mix's state instead
    # Refinement needs gradients inside predict_step: no inference_mode (predict then runs under no_grad).
    cli = build_cli(RefineModule, RefineDataModule, args, DEFAULT_CONFIG,
                    {"use_distributed_sampler": False, "inference_mode": False})
    run_dir = prepare_run_dir(cli)
    with one_line_errors():
        cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=False)
    cli.trainer.strategy.barrier()  # every rank, even one that got no mix
    if cli.trainer.is_global_zero:
        finish_refinement(run_dir, cli.datamodule, cli.model, cli.trainer.logger)


if __name__ == "__main__":
    main()
