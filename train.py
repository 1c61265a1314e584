"""Refine each mix's interpolation coefficient against a CLIP objective, from the closed-form alpha.

    python train.py                                              # embedded default: configs/refine-toy.yaml, CPU
    python train.py --config configs/refine-cogvideox-2b.yaml    # real run: one GPU
    python train.py --config configs/refine-cogvideox-2b.yaml --trainer.devices 8    # mixes split over 8 GPUs
    torchrun --nnodes 2 --nproc_per_node 8 ... train.py --config ... --trainer.devices 8 --trainer.num_nodes 2

Then: python infer.py --data.alpha_from RUN_DIR/refinement.json  (adds the `refined` video;
the default run writes runs/refine-toy/refinement.json).
A killed run started again with the same command resumes from RUN_DIR/checkpoints/last.ckpt;
--overwrite true starts again from the closed-form alphas.
"""

import sys
from pathlib import Path

from jsonargparse import lazy_instance
from lightning.pytorch.callbacks import ModelCheckpoint

from richspace.cli import build_cli, prepare_run_dir
from richspace.refinement import IndependentDDPStrategy, RefineDataModule, RefineModule

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "refine-toy.yaml"


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    cli = build_cli(RefineModule, RefineDataModule, args, DEFAULT_CONFIG,
                    {"use_distributed_sampler": False, "strategy": lazy_instance(IndependentDDPStrategy)})
    run_dir = prepare_run_dir(cli)
    # At each epoch's end (one step per mix): Lightning restarts a plain dataloader from its start on resume,
    # so a mid-epoch checkpoint would step some mixes twice. A resume redoes at most one step per mix.
    checkpoints = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, every_n_epochs=1,
                                  save_on_train_epoch_end=True, enable_version_counter=False)
    cli.trainer.callbacks.append(checkpoints)
    last = run_dir / "checkpoints" / "last.ckpt"
    resume = last.is_file() and not cli.config["overwrite"]  # --overwrite true starts from the closed form again
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=last if resume else None)


if __name__ == "__main__":
    main()
