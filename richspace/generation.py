"""Generation: one video per method of each mix through the frozen CogVideoX, with Lightning's ``Trainer.predict``.

``MixVideoModule`` receives the ``Sampler`` (built from the config's ``sampler:`` section) and a
CLIP for the metrics; its ``predict_step`` turns a ``MixItem`` into ``MixVideos``. The
``RunWriter`` callback (richspace.writer) writes each mix as it finishes; plug-ins such as the
toy world's judge (richspace.toy.judge) add readouts and verdicts through their own callbacks.
"""

from __future__ import annotations

import lightning as L

from richspace.data import MixItem, MixVideos
from richspace.objective import parse_queries
from richspace.sampler import Sampler
from richspace.weights import check_weights, resolve_weights


class MixVideoModule(L.LightningModule):
    """The frozen CogVideoX (through the sampler) and a frozen CLIP for the metrics."""

    def __init__(self, sampler: Sampler, clip: str | None = "tiny", fps: int = 8) -> None:
        """
        Args:
            sampler: the frozen CogVideoX and its settings (the config's ``sampler:`` section).
            clip: the judge for the metrics (richspace.videotext): 'toy', 'tiny', a hub id of a CLIP
                (openai/clip-vit-large-patch14) or an X-CLIP (microsoft/xclip-base-patch32), a local directory,
                or None for no metrics (videos only).
            fps: frames per second of the written mp4s.
        """
        super().__init__()
        if clip is not None:
            check_weights(clip, "CLIP")
        self.save_hyperparameters(ignore=["sampler"])
        self.allow_zero_length_dataloader_with_multiple_devices = True  # more ranks than unfinished mixes
        object.__setattr__(self, "sampler", sampler)  # not a submodule: Lightning must not move, wrap or save it
        self.scorer = None

    def setup(self, stage: str) -> None:
        from richspace.metrics import VideoScorer

        device = self.trainer.strategy.root_device if self._trainer is not None else self.device
        self.sampler.load(device)
        clip = self.hparams.clip
        self.scorer = VideoScorer(resolve_weights(clip, "clip"), device) if clip is not None else None

    def predict_step(self, item: MixItem, batch_idx: int = 0) -> MixVideos:
        out = MixVideos(videos={})
        queries = parse_queries(item.meta["queries"], item.id) if "queries" in item.meta else None
        for method, embeds in item.embeddings.items():
            video = self.sampler.generate(embeds, item.negative, item.seed, item.weights.get(method))
            out.videos[method] = video
            if self.scorer is not None:
                out.metrics[method] = self.scorer.video_metrics(video, item.texts.a, item.texts.b, item.texts.guide,
                                                                queries)
        return out
