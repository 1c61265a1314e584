"""Measuring a mix (docs/design.md, "Measuring a mix"): CLIP similarity of a video's frames to A, B and the guide.

Per video: S_A, S_B, S_G are torchmetrics' CLIPScore (100 x cosine, clamped at 0) of the
frames against each prompt, averaged over frames; balance = |S_A - S_B|; reward =
(S_A + S_B) - |S_A - S_B|, which is high only when both concepts show.

transformers 5 returns an output object from ``CLIPModel.get_image_features`` (the projected
features are its ``pooler_output``), which torchmetrics 1.9's CLIPScore cannot use. We hand
CLIPScore a thin adapter through its callable instead of pinning transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

METRICS = ("clip_a", "clip_b", "clip_guide", "balance", "reward")


def mix_metrics(s_a: float, s_b: float, s_guide: float) -> dict[str, float]:
    """The per-video numbers from the three CLIP scores."""
    balance = abs(s_a - s_b)
    return {"clip_a": s_a, "clip_b": s_b, "clip_guide": s_guide, "balance": balance, "reward": s_a + s_b - balance}


def _features(out) -> Tensor:
    return out if isinstance(out, Tensor) else out.pooler_output


class CLIPFeatures(nn.Module):
    """A CLIPModel whose get_*_features return tensors under transformers 4 and 5 alike."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def get_image_features(self, pixel_values: Tensor) -> Tensor:
        return _features(self.model.get_image_features(pixel_values=pixel_values))

    def get_text_features(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return _features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


def load_clip(path: str | Path):
    """(CLIPFeatures, CLIPProcessor) from a hub id or local directory, frozen, in eval mode."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(path).eval().requires_grad_(False)
    return CLIPFeatures(model), CLIPProcessor.from_pretrained(path)


class VideoCLIPScorer:
    """Scores videos' frames against prompts with torchmetrics' CLIPScore on a local or hub CLIP."""

    def __init__(self, clip: str | Path, device: torch.device | str = "cpu") -> None:
        from torchmetrics.multimodal import CLIPScore

        # Each video is scored where it was made: no syncing across ranks (they hold uneven counts).
        self.metric = CLIPScore(model_name_or_path=lambda: load_clip(clip), sync_on_compute=False).to(device)

    @torch.no_grad()
    def score(self, frames: Tensor, prompt: str) -> float:
        """Mean CLIPScore of (F, 3, H, W) uint8 frames against one prompt."""
        self.metric.reset()
        self.metric.update(list(frames.to(self.metric.device)), [prompt] * len(frames))
        return float(self.metric.compute())

    def video_metrics(self, frames: Tensor, a: str, b: str, guide: str) -> dict[str, float]:
        return mix_metrics(self.score(frames, a), self.score(frames, b), self.score(frames, guide))


def mean_table(records: Sequence[dict], methods: Sequence[str]) -> str:
    """A Markdown table of methods by mean metric over the records' ``metrics`` and, where records
    carry toy-world verdicts (``success``), each method's success rate."""
    has_metrics = any(r.get("metrics") for r in records)
    has_success = any(r.get("success") for r in records)
    columns = (list(METRICS) if has_metrics else []) + (["success"] if has_success else [])
    lines = ["| method | " + " | ".join(columns) + " | mixes |", "|---" * (len(columns) + 2) + "|"]
    for method in methods:
        rows = [r["metrics"][method] for r in records if method in r.get("metrics", {})]
        wins = [r["success"][method]["success"] for r in records if method in r.get("success", {})]
        if not rows and not wins:
            continue
        cells = [f"{sum(row[m] for row in rows) / len(rows):.3f}" if rows else "-" for m in METRICS] if has_metrics else []
        if has_success:
            cells.append(f"{sum(wins)}/{len(wins)}" if wins else "-")
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {max(len(rows), len(wins))} |")
    return "\n".join(lines)
