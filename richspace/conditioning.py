"""A mix's few mixing parameters and the conditioning they give the sampler (pure torch functions).

Six numbers, ``MixParams``, cover every method richspace samples a mix with:

    E_mix = alpha E_a + (1 - alpha) E_b + offset (E_guide - E_foot)
    noise = u + w_mix (c(E_mix) - u) + w_a (c(E_a) - u) + w_b (c(E_b) - u) + w_c (c(E_contrast) - u)

E_foot is the guide's perpendicular foot on the A-B line (the finder's, global projection),
so ``offset`` leaves the line towards the guide within the span of E_a, E_b and E_guide; u
and c(.) are the transformer's predictions without and with a text, and the weights are
composable classifier-free guidance (Liu et al. 2022), built into the one sampler
(``Sampler.sample(..., weights=)``). The line's methods are w_mix = the guidance scale and
w_a = w_b = 0 (guide, average, finder: one prediction per text as the pipeline); ``compose``
is w_mix = 0, w_a = w_b = 1.5: A and B composed while sampling, no embedding mixed.

E_contrast is the mix's contrast prompt, where its spec gives one (``MixSpec.contrast``): the values the mix does not
want, A's where the guide takes B's and B's where it takes A's ("a plain circle" for a striped triangle from "a
plain triangle" and "a striped circle"). With w_a = w_b = -w_c = s the noise is u + s (c(A) + c(B) - c(C) - u):
B's pattern, c(B) - c(C), added to A (concept arithmetic while sampling), where ``compose`` subtracts u instead of
the context A and B share. A mix without a contrast has no E_contrast: its w_c term is zero. (E_c, in
richspace.finder and the paper, is the guide.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor

from richspace.finder import interpolate, perpendicular_foot

PARAMS = ("alpha", "offset", "w_mix", "w_a", "w_b", "w_c")
COMPOSE_WEIGHT = 1.5  # untuned: each of A and B at the usual strength of a guidance term
CONTRAST_WEIGHT = 3.0  # A + B - C at the guidance scale: chosen on development stripes mixes (BENCHMARKS.md)


@dataclass  # not frozen: Lightning moves the items that carry it to the device, field by field
class MixParams:
    """One mix's mixing parameters (see the module docstring); ``w_mix`` None: the sampler's guidance scale."""

    alpha: float
    offset: float = 0.0
    w_mix: float | None = None
    w_a: float = 0.0
    w_b: float = 0.0
    w_c: float = 0.0

    @classmethod
    def compose(cls, weight: float = COMPOSE_WEIGHT) -> MixParams:
        return cls(alpha=0.5, w_mix=0.0, w_a=weight, w_b=weight)

    @classmethod
    def contrast(cls, weight: float = CONTRAST_WEIGHT) -> MixParams:
        """A + B - C at ``weight`` (A and B composed at ``weight`` where the mix has no contrast prompt)."""
        return cls(alpha=0.5, w_mix=0.0, w_a=weight, w_b=weight, w_c=-weight)

    @classmethod
    def from_dict(cls, values: dict) -> MixParams:
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown mixing parameters {sorted(unknown)}; known: {list(PARAMS)}")
        return cls(**{k: None if v is None else float(v) for k, v in values.items()})

    def to_dict(self) -> dict:
        return asdict(self)

    def vector(self, guidance: float) -> Tensor:
        """(6,) float64 in PARAMS order, w_mix filled in."""
        w_mix = guidance if self.w_mix is None else self.w_mix
        return torch.tensor([self.alpha, self.offset, w_mix, self.w_a, self.w_b, self.w_c], dtype=torch.float64)

    @classmethod
    def from_vector(cls, theta: Tensor) -> MixParams:
        return cls(*(float(x) for x in theta.detach().cpu()))

    @property
    def on_line(self) -> bool:
        """Only the mixed embedding, at plain guidance: the pipeline's own sampling applies."""
        return self.w_mix is None and self.w_a == 0 and self.w_b == 0 and self.w_c == 0


def offset_direction(e_a: Tensor, e_b: Tensor, e_guide: Tensor) -> Tensor:
    """E_guide - E_foot, the guide's offset from the A-B line (zero when the guide lies on it)."""
    t = perpendicular_foot(e_a, e_b, e_guide, "global")
    return e_guide - interpolate(e_a, e_b, (1 - t).to(e_a.dtype))


def mixed_embedding(e_a: Tensor, e_b: Tensor, direction: Tensor, alpha: Tensor, offset: Tensor) -> Tensor:
    """alpha E_a + (1 - alpha) E_b + offset (E_guide - E_foot); differentiable in alpha and offset."""
    return interpolate(e_a, e_b, alpha) + offset.to(e_a.dtype) * direction


def conditioning(e_a: Tensor, e_b: Tensor, direction: Tensor, theta: Tensor, alpha: Tensor | None = None,
                 e_contrast: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(4, L, d) texts (E_mix, E_a, E_b, E_contrast) and (4,) weights for ``Sampler.sample``, from theta in PARAMS order
    (``alpha``: one per token, in place of theta's). Without ``e_contrast`` the fourth text is zeros at
    weight zero (``active`` drops it; its weight's gradient is zero)."""
    mixed = mixed_embedding(e_a, e_b, direction, theta[0] if alpha is None else alpha, theta[1])
    weights = theta[2:6]
    if e_contrast is None:
        e_contrast = torch.zeros_like(e_a)
        weights = weights * torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=weights.dtype, device=weights.device)
    texts = torch.stack([mixed, e_a.to(mixed.dtype), e_b.to(mixed.dtype), e_contrast.to(device=mixed.device,
                                                                                  dtype=mixed.dtype)])
    return texts, weights


def on_base(texts: Tensor, weights: Tensor, base_texts: Tensor, base_weights: Tensor) -> tuple[Tensor, Tensor]:
    """A chain's conditioning when its A stands for its base's composed conditioning, not one embedding.

    ``texts`` (4, L, d) and ``weights`` (4,) are ``conditioning``'s (E_mix, E_a, E_b, E_contrast); the base's are
    (n, L, d) and (n,) with a positive sum. A's term w_a (c(E_a) - u) becomes w_a times the base's
    guidance direction per unit weight, sum_i (b_i / sum b) (c(base_i) - u): A's text is replaced by
    the base's texts. For a base of one text this is that text at weight w_a, exactly.
    """
    total = base_weights.sum()
    if not total > 0:
        raise ValueError(f"a base's composition weights must have a positive sum; got {base_weights.tolist()}")
    shares = (base_weights / total).to(weights.dtype)
    texts = torch.cat([texts[:1], base_texts.to(texts.dtype), texts[2:]])
    return texts, torch.cat([weights[:1], weights[1] * shares, weights[2:]])


def active(embeds: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """The conditions whose weight is not exactly zero (one transformer pass less per dropped text)."""
    keep = weights != 0
    if not keep.any():
        keep = torch.zeros_like(keep)
        keep[0] = True
    return embeds[keep], weights[keep]
