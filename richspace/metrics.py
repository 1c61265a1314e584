"""Measuring a mix (docs/design.md, "Measuring a mix"): the judge's similarity of a video to A, B and the guide.

Per video: S_A, S_B, S_G are 100 x cosine (clamped at 0) between the judge's video feature
and each prompt's text feature (for a per-frame CLIP: CLIPScore averaged over frames);
balance = |S_A - S_B|; reward = (S_A + S_B) - |S_A - S_B|, which is high only when both
concepts show. Where a mix has ``queries``, ``queries`` is refinement's per-attribute reward Q
of the video (richspace.objective, temperature 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

METRICS = ("clip_a", "clip_b", "clip_guide", "balance", "reward")


def mix_metrics(s_a: float, s_b: float, s_guide: float) -> dict[str, float]:
    """The per-video numbers from the three CLIP scores."""
    balance = abs(s_a - s_b)
    return {"clip_a": s_a, "clip_b": s_b, "clip_guide": s_guide, "balance": balance, "reward": s_a + s_b - balance}


class VideoScorer:
    """Scores a video against prompts with the config's judge (richspace.videotext: CLIP per frame, the toy
    judge on stacked frames, or X-CLIP): 100 x cosine clamped at 0. For a per-frame CLIP this is torchmetrics'
    CLIPScore of the frames, averaged (tests/test_metrics.py checks it against CLIPScore itself)."""

    def __init__(self, clip: str | Path, device: torch.device | str = "cpu") -> None:
        from richspace.videotext import load_video_text

        self.judge = load_video_text(clip).to(device)

    @torch.no_grad()
    def scores(self, frames: Tensor, prompts: Sequence[str]) -> list[float]:
        """Each prompt's score for (F, 3, H, W) uint8 frames."""
        values = self.judge.scores(frames.float() / 255, list(prompts)).clamp(min=0)
        return [float(v) for v in values]

    def video_metrics(self, frames: Tensor, a: str, b: str, guide: str, queries=None) -> dict[str, float]:
        """The METRICS of a video and, with ``queries`` (richspace.objective.Query), Q as ``queries``."""
        out = mix_metrics(*self.scores(frames, (a, b, guide)))
        if queries:
            from richspace.objective import query_reward

            with torch.no_grad():
                video = self.judge.video_features(frames.float() / 255)
                scores = [100 * self.judge.text_features(list(q.options)) @ video for q in queries]
            out["queries"] = float(query_reward(scores, queries))
        return out


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
