"""Refinement's objective as pure torch functions (no Lightning, no diffusers).

    objective = w_guide * S_G + w_balance * softmin_T(S_A, S_B) + w_queries * Q + w_denoise * D
                - w_anchor * mean((alpha - alpha_0)^2)

S_X is 100 x the cosine between the judge's feature of the decoded frames and its text
feature of prompt X (richspace.videotext; for a per-frame CLIP, the mean over frames: the
scale of torchmetrics' CLIPScore).

Q is the per-attribute reward of a mix's ``queries``: each query is a set of captions that
differ in one attribute (``options``) and the ones the mix wants (``want``); the judge's
scores over the options are a softmax, and the query's term is the mean log-probability of
the wanted captions. Two wanted captions (red and yellow, for orange) are balanced: the term
is highest when the video is judged half one and half the other, and low when it is either
alone. Q is the mean over queries, so every attribute counts, not just the one that differs.

D asks the same queries of the frozen generator instead of the judge (a diffusion classifier: Li et
al., "Your Diffusion Model is Secretly a Zero-Shot Classifier", 2023). The video is encoded by the
generator's VAE, noised at fixed (timestep, noise) pairs, and denoised under each option's text; an
option's score is minus its mean prediction error (``prediction_errors``), and D is ``query_reward``
of those scores at ``denoise_temperature``: the text that explains the video best wins. The generator
reads motion between two directions where the toy judge does not (BENCHMARKS.md, issue 13).
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
    w_queries: float = 0.0
    w_denoise: float = 0.0


@dataclass(frozen=True)
class Query:
    """One attribute's question: captions differing in it alone, and the indices of the wanted ones."""

    options: tuple[str, ...]
    want: tuple[int, ...]


def parse_queries(raw, where: str) -> tuple[Query, ...]:
    """A mix spec's ``queries`` (a list of {options: [captions], want: [indices]}), checked; one-line errors."""
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where}: queries must be a non-empty list of {{options: [...], want: [...]}}")
    out = []
    for i, q in enumerate(raw):
        options, want = (q.get("options"), q.get("want")) if isinstance(q, dict) else (None, None)
        if not (isinstance(options, list) and len(options) >= 2 and all(isinstance(o, str) and o for o in options)):
            raise ValueError(f"{where}: query {i} needs options: a list of at least two captions")
        if not (isinstance(want, list) and want and all(isinstance(w, int) and 0 <= w < len(options) for w in want)):
            raise ValueError(f"{where}: query {i} needs want: indices into its {len(options)} options")
        out.append(Query(tuple(options), tuple(want)))
    return tuple(out)


def query_reward(scores: list[Tensor], queries: tuple[Query, ...], temperature: float = 1.0) -> Tensor:
    """Q: the mean over queries of the mean log-softmax (scores / temperature) of the wanted options.

    scores: per query, (len(options),) judge scores (100 x cosine) of one video against its options.
    """
    terms = [torch.log_softmax(s / temperature, dim=-1)[list(q.want)].mean() for s, q in zip(scores, queries)]
    return torch.stack(terms).mean()


def noised(latents: Tensor, noise: Tensor, alphas_cumprod: Tensor, prediction_type: str) -> tuple[Tensor, Tensor]:
    """(x_t, target): ``latents`` (1, ...) noised by ``noise`` (P, ...) at P timesteps whose cumulative alphas are
    ``alphas_cumprod`` (P,), and what a model of ``prediction_type`` (epsilon, v_prediction, sample) should predict
    from x_t: diffusers' ``add_noise`` and ``get_velocity`` for a variance-preserving schedule."""
    a = alphas_cumprod.to(latents.dtype).view(-1, *[1] * (latents.dim() - 1))
    x_t = a.sqrt() * latents + (1 - a).sqrt() * noise
    if prediction_type == "epsilon":
        return x_t, noise
    if prediction_type == "v_prediction":
        return x_t, a.sqrt() * noise - (1 - a).sqrt() * latents
    if prediction_type == "sample":
        return x_t, latents.expand_as(x_t)
    raise ValueError(f"prediction_type must be epsilon, v_prediction or sample; got {prediction_type!r}")


def prediction_errors(predictions: Tensor, target: Tensor) -> Tensor:
    """(n,) the mean squared error of ``predictions`` (n, P, ...), n texts' on P (timestep, noise) pairs, against
    ``target`` (P, ...): lower where a text explains the video better."""
    return ((predictions - target[None]) ** 2).flatten(1).mean(1)


def soft_min(x: Tensor, y: Tensor, temperature: float) -> Tensor:
    """A smooth minimum, -T log(exp(-x/T) + exp(-y/T)): rewards raising the lower of the two."""
    return -temperature * torch.logsumexp(torch.stack((-x / temperature, -y / temperature)), dim=0)


def objective_terms(s_a: Tensor, s_b: Tensor, s_guide: Tensor, alpha: Tensor, alpha_0: float,
                    weights: ObjectiveWeights, queries: Tensor | None = None,
                    denoise: Tensor | None = None) -> dict[str, Tensor]:
    """The objective and its terms (all scalars); see the module docstring. ``queries``: Q, ``denoise``: D (0 when
    None)."""
    balance = soft_min(s_a, s_b, weights.softmin_temperature)
    anchor = ((alpha - alpha_0) ** 2).mean()
    q = torch.zeros_like(s_a) if queries is None else queries
    d = torch.zeros_like(s_a) if denoise is None else denoise.to(s_a)
    total = (weights.w_guide * s_guide + weights.w_balance * balance + weights.w_queries * q
             + weights.w_denoise * d - weights.w_anchor * anchor)
    return {"objective": total, "clip_guide": s_guide, "clip_a": s_a, "clip_b": s_b, "balance": balance,
            "queries": q, "denoise": d, "anchor": anchor}
