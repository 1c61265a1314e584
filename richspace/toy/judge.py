"""The toy world as a plug-in: a callback that reads each generated video's attributes from its pixels
and judges the mix's expected facts (``expect`` in a toy mix spec).

Listed in ``configs/toy.yaml`` under ``trainer.callbacks``; the core (data, sampler, modules,
writer) imports nothing of the toy world. It runs before the run writer (which ``infer.py``
appends last), so each mix's record carries ``readouts`` and ``success``.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from richspace.data import MixItem, MixVideos
from richspace.specs import SpecError
from richspace.toy.world import check_expect, judge, readout


class ToyJudge(Callback):
    """Pixel readouts of every video and, for mixes with ``expect``, the verdicts of ``world.judge``."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Checks every mix's ``expect`` before any video is made (the datamodule has set up; models have not)."""
        data = trainer.datamodule
        for spec in data.specs:
            if "expect" in spec.meta:
                try:
                    check_expect(spec.meta["expect"], f"{data.hparams.experiments}: mix '{spec.id}'")
                except ValueError as e:
                    raise SpecError(str(e)) from None

    def on_predict_batch_end(self, trainer, pl_module, outputs: MixVideos, batch: MixItem, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        expect = batch.meta.get("expect")
        for method, video in outputs.videos.items():
            outputs.readouts[method] = readout(video.numpy())
            if expect is not None:
                outputs.success[method] = judge(expect, outputs.readouts[method])
