"""Generate the mixed videos through a frozen CogVideoX and compare methods on the same seed.

    python infer.py                                           # embedded default: configs/toy.yaml (toy world), CPU
    python infer.py --config configs/tiny.yaml                # random tiny checkpoint: plumbing only
    python infer.py --config configs/cogvideox-2b.yaml        # real run: one GPU, diffusers' defaults
    python infer.py --config configs/cogvideox-2b.yaml --trainer.devices 8      # 8 GPUs, one machine
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        infer.py --config configs/cogvideox-5b.yaml --trainer.devices 8 --trainer.num_nodes 2
    srun python infer.py --config configs/cogvideox-5b.yaml --trainer.devices 8 --trainer.num_nodes 2   # SLURM

Also: --experiments FILE (mix specs), --run_dir DIR, --overwrite, and any config key as a
dotted override (--sampler.num_inference_steps 20, --data.sweep [0,15,30], --data.alpha_from F).
A run killed midway and started again with the same command finishes the rest.
"""

import sys
from pathlib import Path

from richspace.cli import build_cli, one_line_errors, prepare_run_dir
from richspace.data import MixDataModule
from richspace.generation import MixVideoModule
from richspace.writer import RunWriter, finish_run

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "toy.yaml"


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    # The data module shards the mixes over ranks itself (a rank may get none).
    cli = build_cli(MixVideoModule, MixDataModule, args, DEFAULT_CONFIG, {"use_distributed_sampler": False})
    run_dir = prepare_run_dir(cli)
    cli.trainer.callbacks.append(RunWriter(run_dir, fps=cli.model.hparams.fps))  # last: after plug-ins' callbacks
    with one_line_errors():
        cli.trainer.predict(cli.model, datamodule=cli.datamodule, return_predictions=False)
    cli.trainer.strategy.barrier()  # every rank, even one that got no mix
    if cli.trainer.is_global_zero:
        finish_run(run_dir, cli.datamodule.selected, cli.trainer.logger)


if __name__ == "__main__":
    main()
