"""Refinement's objective as pure torch functions (no Lightning, no diffusers).

    objective = w_guide * S_G + w_balance * softmin_T(S_A, S_B) - w_anchor * mean((alpha - alpha_0)^2)

S_X is 100 x the cosine between the judge's feature of the decoded frames and its text
feature of prompt X (richspace.videotext; for a per-frame CLIP, the mean over frames: the
scale of torchmetrics' CLIPScore).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ObjectiveWeights:
    w_guide: float = 1.0
    w_balance: float = 1.0
    w_anchor: float = 0.0
    softmin_temperature: float = 1.0


def soft_min(x: Tensor, y: Tensor, temperature: float) -> Tensor:
    """A smooth minimum, -T log(exp(-x/T) + exp(-y/T)): rewards raising the lower of the two."""
    return -temperature * torch.logsumexp(torch.stack((-x / temperature, -y / temperature)), dim=0)


def objective_terms(s_a: Tensor, s_b: Tensor, s_guide: Tensor, alpha: Tensor, alpha_0: float,
                    weights: ObjectiveWeights) -> dict[str, Tensor]:
    """The objective and its terms (all scalars); see the module docstring."""
    balance = soft_min(s_a, s_b, weights.softmin_temperature)
    anchor = ((alpha - alpha_0) ** 2).mean()
    total = weights.w_guide * s_guide + weights.w_balance * balance - weights.w_anchor * anchor
    return {"objective": total, "clip_guide": s_guide, "clip_a": s_a, "clip_b": s_b, "balance": balance, "anchor": anchor}
