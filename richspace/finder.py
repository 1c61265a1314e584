"""Closed-form optimal interpolation finder: RichSpace Algorithms 2 and 3 (Section 4.2).

Candidates are ``z_i = (i/k) E_a + ((k-i)/k) E_b`` for ``i = 0..k``; each is scored by the
mean row cosine similarity (Definition 3.2) to the perpendicular foot of ``E_c`` on the line
through ``E_a`` and ``E_b``, once on the full (padded) embeddings and once on the embeddings
truncated to the largest real token count; the argmax of the sum wins (first on ties).
See docs/design.md, "The paper, as implemented", for the reading implemented here.

The scoring never builds a candidate. With ``u = E_b - E_a`` and ``v = E_c - E_a``, every
quantity the cosine needs is a per-row inner product of ``a, u, v`` (one (n, 3, 3) Gram
computed in one pass over the embeddings); the k+1 scores then cost O(n k).
Pure torch: no model, Lightning or diffusers imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SCORINGS = ("both", "full", "truncated")
PROJECTIONS = ("global", "per_token")
COS_EPS = 1e-8  # as torch.nn.functional.cosine_similarity: x.y / (max(|x|, eps) max(|y|, eps))


@dataclass(frozen=True)
class Interpolation:
    """What the finder returns; 0-dim fields gain a leading batch dim for batched input."""

    index: Tensor  # () or (B,) int64 in 0..k: the chosen candidate
    alpha: Tensor  # () or (B,) float64: index / k, the weight on prompt A
    embedding: Tensor  # like e_a: E_opt = alpha E_a + (1 - alpha) E_b, full padded rows
    scores: Tensor  # (..., k+1) float64: the curve that was maximised (sum for "both")
    scores_full: Tensor  # (..., k+1) float64: phi_cos against the full foot
    scores_truncated: Tensor  # (..., k+1) float64: phi_cos against the truncated foot
    foot_alpha_full: Tensor  # () / (B,) (per_token: (..., n)): the foot's weight on A
    foot_alpha_truncated: Tensor  # likewise, projection over the first n_ids rows only
    n_ids: Tensor  # () or (B,) int64: max of the three token counts, rows kept when truncating
    k: int

    @property
    def alphas(self) -> Tensor:
        """(k+1,) float64: the candidates' weights on prompt A, i/k."""
        return torch.arange(self.k + 1, dtype=torch.float64) / self.k


def phi_cos(x: Tensor, y: Tensor, eps: float = COS_EPS) -> Tensor:
    """Definition 3.2: mean over rows of the rows' cosine similarity. (..., n, d) -> (...)."""
    return torch.nn.functional.cosine_similarity(x, y, dim=-1, eps=eps).mean(-1)


def interpolate(e_a: Tensor, e_b: Tensor, alpha: Tensor | float) -> Tensor:
    """The interpolation ``alpha E_a + (1 - alpha) E_b`` of (..., n, d) embeddings (exact at 0 and 1).

    alpha: a float or a tensor shaped like the embeddings' leading dims (one weight per item,
    e.g. () or (B,)) or like their rows (one weight per token, e.g. (n,) or (B, n)).
    """
    alpha = torch.as_tensor(alpha, dtype=e_a.dtype, device=e_a.device)
    if alpha.dim() == e_a.dim() - 2:  # per item
        alpha = alpha[..., None, None]
    elif alpha.dim() == e_a.dim() - 1 and alpha.shape[-1] == e_a.shape[-2]:  # per token
        alpha = alpha[..., None]
    elif alpha.dim() != 0:
        raise ValueError(
            f"alpha of shape {tuple(alpha.shape)} fits neither one weight per item {tuple(e_a.shape[:-2])} "
            f"nor one per token {tuple(e_a.shape[:-1])}"
        )
    return torch.lerp(e_b, e_a, alpha)


def perpendicular_foot(e_a: Tensor, e_b: Tensor, e_c: Tensor, projection: str = "global") -> Tensor:
    """Algorithm 3, PerpendicularFoot: t with E_foot = E_a + t (E_b - E_a).

    global: one Frobenius projection, () per item; per_token: one t per row, (..., n).
    Returns t (float64); a row (or item) with E_a == E_b gets t = 0.
    """
    u = (e_b - e_a).double()
    v = (e_c - e_a).double()
    dims = (-2, -1) if projection == "global" else (-1,)
    uv, uu = (u * v).sum(dims), (u * u).sum(dims)
    return torch.where(uu > 0, uv / uu.clamp_min(torch.finfo(torch.float64).tiny), 0.0)


def _pair_dots(x: Tensor, y: Tensor) -> Tensor:
    """Row-wise inner products of (R, d) matrices, (R,), without an (R, d) temporary.

    On the CPU, numpy's batched (1 x d) @ (d x 1) matmul runs one BLAS dot per row, about
    four times faster than torch's vecdot (which multiplies into a temporary, then sums).
    """
    if x.device.type == "cpu":
        xn, yn = x.detach().numpy(), y.detach().numpy()  # zero-copy views
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite results are reported by the caller
            return torch.from_numpy(np.matmul(xn[:, None, :], yn[:, :, None]).reshape(-1))
    return torch.linalg.vecdot(x, y)


def _row_dots(e_a: Tensor, e_b: Tensor, e_c: Tensor) -> Tensor:
    """Per-row inner products (aa, au, av, uu, uv) of a, u = b - a, v = c - a: (..., n, d) -> (..., n, 5).

    Five row dot products of the inputs (one read of each pair), combined in float64. Rows
    where a == b bit for bit (T5's shared padding) give u-terms of exactly 0.
    """
    d = e_a.shape[-1]
    a, b, c = (e.reshape(-1, d) for e in (e_a, e_b, e_c))  # (R, d) each
    aa, ab, ac, bb, bc = (_pair_dots(x, y).double() for x, y in ((a, a), (a, b), (a, c), (b, b), (b, c)))
    uu = (aa - ab) + (bb - ab)
    dots = torch.stack((aa, ab - aa, ac - aa, uu, (bc - ab) - (ac - aa)), dim=-1)  # (R, 5)
    return dots.view(*e_a.shape[:-1], 5)


def _curve(dots: Tensor, rows: Tensor, k: int, projection: str, flat: Tensor | None) -> tuple[Tensor, Tensor]:
    """Algorithm 3, CosineSim, on the rows selected by the 0/1 mask ``rows`` (..., n) (may add leading dims).

    From the per-row dots of (a, u = b - a, v = c - a): candidate z = a + w u with
    w = (k - i)/k, foot f = a + t u. ``flat`` marks rows where a == b to within rounding
    (their t is 0 per token). Returns the (..., k+1) curve and t.
    """
    aa, au, _, uu, uv = dots.unbind(-1)  # each (..., n); <a, v> is not needed
    if projection == "global":
        t = (rows * uv).sum(-1) / (rows * uu).sum(-1)  # (...,); callers rule out a zero line
        t_rows = t.unsqueeze(-1)  # (..., 1)
    else:
        t_rows = torch.where(flat, 0.0, uv / torch.where(flat, 1.0, uu))  # (..., n)
        t = t_rows.expand(rows.shape)  # one t per row, whichever rows are scored
    ff = (aa + 2 * t_rows * au + t_rows * t_rows * uu).clamp_min(0)  # (..., n): |f|^2
    af = aa + t_rows * au  # (..., n): <a, f>
    uf = au + t_rows * uu  # (..., n): <u, f>
    w = torch.arange(k, -1, -1, dtype=torch.float64, device=dots.device) / k  # (k+1,): index i -> (k-i)/k
    w = w.view(*([1] * aa.dim()), k + 1)  # (..., 1, k+1)
    zf = af.unsqueeze(-1) + w * uf.unsqueeze(-1)  # (..., n, k+1): <z_i, f>
    zz = (aa.unsqueeze(-1) + 2 * w * au.unsqueeze(-1) + w * w * uu.unsqueeze(-1)).clamp_min(0)
    cos = zf / (zz.sqrt().clamp_min(COS_EPS) * ff.sqrt().clamp_min(COS_EPS).unsqueeze(-1))
    curve = (cos * rows.unsqueeze(-1)).sum(-2) / rows.sum(-1, keepdim=True)  # (..., k+1)
    return curve, t


def _check(e_a: Tensor, e_b: Tensor, e_c: Tensor, n_ids, k: int, scoring: str, projection: str) -> Tensor:
    """Validates the finder's arguments; returns n_ids as an int64 tensor (3,) or (B, 3)."""
    for name, e in (("e_a", e_a), ("e_b", e_b), ("e_c", e_c)):
        if not isinstance(e, Tensor) or not e.is_floating_point():
            raise ValueError(f"{name} must be a floating-point torch.Tensor of shape (n, d) or (B, n, d)")
        if e.dim() not in (2, 3) or e.shape[-1] == 0 or e.shape[-2] == 0:
            raise ValueError(f"{name} has shape {tuple(e.shape)}; expected (n, d) or (B, n, d) with n, d > 0")
    if not (e_a.shape == e_b.shape == e_c.shape):
        raise ValueError(
            f"e_a, e_b and e_c must share one shape; got {tuple(e_a.shape)}, {tuple(e_b.shape)}, {tuple(e_c.shape)}"
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1 (the number of interpolation steps); got {k!r}")
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}; got {scoring!r}")
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}; got {projection!r}")
    ids = torch.as_tensor(n_ids)
    want = (3,) if e_a.dim() == 2 else (e_a.shape[0], 3)
    if tuple(ids.shape) != want:
        raise ValueError(f"n_ids must have shape {want} (token counts of A, B and the guide); got {tuple(ids.shape)}")
    if ids.is_floating_point() and not torch.equal(ids, ids.round()):
        raise ValueError(f"n_ids must hold whole token counts; got {ids.tolist()}")
    ids = ids.long()
    n = e_a.shape[-2]
    if (ids < 1).any() or (ids > n).any():
        raise ValueError(f"n_ids must lie in 1..{n} (the embeddings' rows); got {ids.tolist()}")
    return ids


def _flat(dots: Tensor, compute_dtype: torch.dtype, rows: Tensor | None = None) -> Tensor:
    """True where E_a and E_b cannot be told apart: |E_b - E_a|^2 within the dots' rounding
    (64 eps max(|E_a|^2, |E_b|^2), i.e. a relative difference under ~1e-7 in float64 or ~3e-3
    in float32). Per row, or summed over the selected ``rows`` (a 0/1 mask, (..., n)) when given.
    """
    aa, au, uu = dots[..., 0], dots[..., 1], dots[..., 3]
    bb = aa + 2 * au + uu
    if rows is not None:
        aa, bb, uu = ((rows * x).sum(-1) for x in (aa, bb, uu))
    return uu <= 64 * torch.finfo(compute_dtype).eps * torch.maximum(aa, bb)


def find_interpolation(
    e_a: Tensor,
    e_b: Tensor,
    e_c: Tensor,
    n_ids,
    k: int = 30,
    scoring: str = "both",
    projection: str = "global",
) -> Interpolation:
    """Algorithm 2, OptimalFinder: the best of k+1 interpolations of E_a and E_b under guide E_c.

    e_a, e_b, e_c: (n, d) or (B, n, d) text embeddings (padded, as the text encoder returns them).
    n_ids: (3,) or (B, 3) real token counts of A, B and the guide; their max sets the truncation.
    scoring: "both" (full + truncated, the paper), "full" or "truncated".
    projection: "global" (one Frobenius projection, the paper) or "per_token" (one per row).
    """
    ids = _check(e_a, e_b, e_c, n_ids, k, scoring, projection)
    compute = e_a.dtype if e_a.dtype in (torch.float32, torch.float64) else torch.float32
    x_a, x_b, x_c = (e.to(compute) for e in (e_a, e_b, e_c))
    dots = _row_dots(x_a, x_b, x_c)  # (..., n, 5) float64
    if not torch.isfinite(dots).all():  # a non-finite input always makes some dot non-finite
        for name, e in (("e_a", e_a), ("e_b", e_b), ("e_c", e_c)):
            if not torch.isfinite(e).all():
                raise ValueError(f"{name} contains NaN or infinite values; check the text encoder's output")
        raise ValueError(f"the embeddings are too large to score in {compute}; pass float64 tensors")
    n = e_a.shape[-2]
    m = ids.max(-1).values.to(dots.device)  # () or (B,): rows kept when truncating
    full_rows = torch.ones(dots.shape[:-1], dtype=torch.float64, device=dots.device)  # (..., n)
    trunc_rows = (torch.arange(n, device=dots.device) < m.unsqueeze(-1)).double()  # (..., n)
    rows = torch.stack((full_rows, trunc_rows))  # (2, ..., n): both scorings in one pass
    bad = _flat(dots, compute, rows)  # (2, ...)
    if bad.any():
        what = "full" if bad[0].any() else "truncated"
        items = bad.reshape(2, -1).any(0).nonzero().flatten().tolist()
        where = "" if bad.dim() == 1 else f" (batch items {items})"
        raise ValueError(
            f"prompts A and B encode to the same embedding{where} ({what} rows): there is no line to "
            "interpolate on; give two prompts that differ"
        )

    flat = _flat(dots, compute) if projection == "per_token" else None  # (..., n): rows with a == b
    curves, t = _curve(dots, rows, k, projection, flat)  # (2, ..., k+1), (2, ...[, n])
    (scores_full, scores_trunc), (t_full, t_trunc) = curves, t
    scores = {"both": scores_full + scores_trunc, "full": scores_full, "truncated": scores_trunc}[scoring]
    index = scores.argmax(-1)  # first maximum on ties
    alpha = index.double() / k
    embedding = interpolate(x_a, x_b, alpha.to(device=x_a.device, dtype=compute)).to(e_a.dtype)
    return Interpolation(
        index=index.cpu(),
        alpha=alpha.cpu(),
        embedding=embedding,
        scores=scores.cpu(),
        scores_full=scores_full.cpu(),
        scores_truncated=scores_trunc.cpu(),
        foot_alpha_full=(1 - t_full).cpu(),
        foot_alpha_truncated=(1 - t_trunc).cpu(),
        n_ids=m.cpu(),
        k=k,
    )


def find_chain(
    concepts: list[Tensor],
    guides: list[Tensor],
    n_ids: list[int],
    guide_n_ids: list[int],
    k: int = 30,
    scoring: str = "both",
    projection: str = "global",
) -> list[Interpolation]:
    """Section 5, three or more concepts: E_opt of concepts 1..j-1 takes E_a's place for concept j.

    concepts: m >= 2 (n, d) embeddings E_1..E_m with real token counts n_ids (m,);
    guides: m - 1 guide embeddings (guide j describes the mix of concepts 1..j+1) with guide_n_ids.
    The token count carried with an E_opt is the max over the prompts mixed into it so far,
    guides included. Returns one Interpolation per step; the last one's embedding is the result.
    """
    if len(concepts) < 2 or len(guides) != len(concepts) - 1:
        raise ValueError("find_chain needs m >= 2 concepts and m - 1 guides (one per added concept)")
    if len(n_ids) != len(concepts) or len(guide_n_ids) != len(guides):
        raise ValueError("n_ids needs one count per concept and guide_n_ids one per guide")
    steps: list[Interpolation] = []
    e_opt, n_opt = concepts[0], n_ids[0]
    for e_next, n_next, e_guide, n_guide in zip(concepts[1:], n_ids[1:], guides, guide_n_ids):
        step = find_interpolation(e_opt, e_next, e_guide, (n_opt, n_next, n_guide), k, scoring, projection)
        steps.append(step)
        e_opt, n_opt = step.embedding, int(step.n_ids)
    return steps
