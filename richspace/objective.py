"""Refinement's objective as pure torch functions (no Lightning, no diffusers).

    objective = w_guide * S_G + w_balance * softmin_T(S_A, S_B) - w_anchor * mean((alpha - alpha_0)^2)

S_X is 100 x the mean cosine between CLIP image features of decoded frames and CLIP text
features of prompt X (the scale of torchmetrics' CLIPScore).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
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


def clip_pixel_values(frames: Tensor, size: int, crop: tuple[int, int], mean, std) -> Tensor:
    """CLIPImageProcessor in torch (differentiable): (N, 3, H, W) in [0, 1] -> normalised crops.

    Resize the shortest edge to ``size`` (bicubic, antialiased), centre-crop, normalise.
    """
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    resized = F.interpolate(frames, size=(max(crop[0], round(h * scale)), max(crop[1], round(w * scale))),
                            mode="bicubic", antialias=True, align_corners=False)
    top, left = (resized.shape[-2] - crop[0]) // 2, (resized.shape[-1] - crop[1]) // 2
    cropped = resized[..., top : top + crop[0], left : left + crop[1]]
    mean = torch.as_tensor(mean, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    return (cropped - mean) / std
