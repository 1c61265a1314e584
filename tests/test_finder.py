"""The closed-form finder against an independent literal reading of the paper, and its properties."""

import pytest
import torch
import torch.nn.functional as F

from paper_reference import literal_find
from richspace import find_interpolation
from richspace.finder import find_chain, interpolate, perpendicular_foot


def t5_like(n=60, d=24, n_real=(14, 17, 22), seed=0, dtype=torch.float64):
    """Three embeddings whose rows past the real tokens are the same shared padding row (plus a
    little prompt-dependent drift, as T5 without an attention mask gives)."""
    g = torch.Generator().manual_seed(seed)
    a, b, noise = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(3))
    c = 0.4 * a + 0.6 * b + 0.8 * noise  # a guide near the line, off it
    pad = torch.randn(d, generator=g, dtype=torch.float64)
    m = max(n_real)
    for e in (a, b, c):
        e[m:] = pad
    b[m + 3 :] += 0.01 * torch.randn(n - m - 3, d, generator=g, dtype=torch.float64)
    return a.to(dtype), b.to(dtype), c.to(dtype), n_real


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 7, 30])
def test_float64_matches_literal_reading(seed, k):
    a, b, c, ids = t5_like(seed=seed, n_real=(5 + seed, 11, 9 + 2 * seed))
    ours = find_interpolation(a, b, c, ids, k=k)
    index, total, full, trunc, e_opt = literal_find(a, b, c, *ids, k=k)
    assert int(ours.index) == index
    torch.testing.assert_close(ours.scores, total, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.scores_full, full, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.scores_truncated, trunc, rtol=0, atol=1e-12)
    assert float(ours.alpha) == index / k
    assert int(ours.n_ids) == max(ids)
    torch.testing.assert_close(ours.embedding, e_opt, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scoring", ["full", "truncated"])
def test_single_curve_scoring_maximises_that_curve(scoring):
    a, b, c, ids = t5_like(seed=3)
    ours = find_interpolation(a, b, c, ids, k=30, scoring=scoring)
    _, _, full, trunc, _ = literal_find(a, b, c, *ids, k=30)
    curve = full if scoring == "full" else trunc
    assert int(ours.index) == int(torch.argmax(curve))
    torch.testing.assert_close(ours.scores, curve, rtol=0, atol=1e-12)


def test_float32_same_index_except_near_ties():
    compared = 0
    for seed in range(40):
        a, b, c, ids = t5_like(n=226, d=64, seed=seed, n_real=(20, 25, 31))
        index, total, _, _, _ = literal_find(a, b, c, *ids, k=30)
        top2 = torch.topk(total, 2).values
        if float(top2[0] - top2[1]) < 1e-5:  # a near-tie: float32 may pick either
            continue
        ours = find_interpolation(a.float(), b.float(), c.float(), ids, k=30)
        assert int(ours.index) == index, seed
        assert ours.embedding.dtype == torch.float32
        compared += 1
    assert compared >= 30


def test_foot_residual_is_orthogonal_to_the_line():
    a, b, c, _ = t5_like(seed=1)
    t = perpendicular_foot(a, b, c)
    foot = a + t * (b - a)
    residual = c - foot
    assert abs(float((residual * (b - a)).sum())) < 1e-10 * float((b - a).norm() * residual.norm())
    t_rows = perpendicular_foot(a, b, c, projection="per_token")  # (n,)
    foot_rows = a + t_rows[:, None] * (b - a)
    per_row = ((c - foot_rows) * (b - a)).sum(-1)
    assert per_row.abs().max() < 1e-10
    found = find_interpolation(a, b, c, (14, 17, 22))
    torch.testing.assert_close(found.foot_alpha_full, 1 - t, rtol=0, atol=1e-12)


def test_guide_equal_to_a_or_b_picks_the_ends():
    a, b, _, ids = t5_like(seed=2)
    assert int(find_interpolation(a, b, a.clone(), ids, k=30).index) == 30
    assert int(find_interpolation(a, b, b.clone(), ids, k=30).index) == 0
    assert int(find_interpolation(a.float(), b.float(), a.float(), ids, k=30).index) == 30


@pytest.mark.parametrize("scale", [1e-3, 0.5, 7.0, 1e3])
def test_common_positive_scaling_changes_nothing(scale):
    a, b, c, ids = t5_like(seed=4)
    base = find_interpolation(a, b, c, ids, k=30)
    scaled = find_interpolation(scale * a, scale * b, scale * c, ids, k=30)
    assert int(scaled.index) == int(base.index)
    torch.testing.assert_close(scaled.scores, base.scores, rtol=0, atol=1e-12)
    torch.testing.assert_close(scaled.foot_alpha_full, base.foot_alpha_full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("projection", ["global", "per_token"])
def test_batch_equals_single_calls(projection):
    items = [t5_like(seed=s, n_real=(3 + s, 10, 12 + s)) for s in range(4)]
    batch = find_interpolation(
        torch.stack([i[0] for i in items]),
        torch.stack([i[1] for i in items]),
        torch.stack([i[2] for i in items]),
        torch.tensor([i[3] for i in items]),
        k=30,
        projection=projection,
    )
    assert batch.index.shape == (4,) and batch.scores.shape == (4, 31)
    for j, (a, b, c, ids) in enumerate(items):
        single = find_interpolation(a, b, c, ids, k=30, projection=projection)
        assert int(batch.index[j]) == int(single.index)
        torch.testing.assert_close(batch.scores[j], single.scores, rtol=0, atol=1e-12)
        torch.testing.assert_close(batch.embedding[j], single.embedding, rtol=0, atol=0)


def test_per_token_projection_matches_a_literal_per_row_foot():
    a, b, c, ids = t5_like(seed=5)
    k, m = 30, max(ids)
    u = b - a
    t = ((c - a) * u).sum(-1) / (u * u).sum(-1)  # no zero rows in this input? guard below
    t = torch.where((u * u).sum(-1) > 0, t, torch.zeros_like(t))
    foot = a + t[:, None] * u

    def curve(rows):
        return torch.stack(
            [F.cosine_similarity((i / k) * a[:rows] + ((k - i) / k) * b[:rows], foot[:rows], dim=-1).mean()
             for i in range(k + 1)]
        )

    expected = curve(a.shape[0]) + curve(m)
    ours = find_interpolation(a, b, c, ids, k=k, projection="per_token")
    torch.testing.assert_close(ours.scores, expected, rtol=0, atol=1e-12)
    assert int(ours.index) == int(torch.argmax(expected))
    assert ours.foot_alpha_full.shape == (a.shape[0],)


def test_zero_rows_and_low_precision_never_give_nan():
    a, b, c, ids = t5_like(seed=6)
    for e in (a, b, c):
        e[40:] = 0.0  # all-zero padding rows: cosine is 0 there, as torch's eps rule gives
    ours = find_interpolation(a, b, c, ids, k=30)
    index, total, _, _, _ = literal_find(a, b, c, *ids, k=30)
    assert int(ours.index) == index and torch.isfinite(ours.scores).all()
    torch.testing.assert_close(ours.scores, total, rtol=0, atol=1e-12)
    half = find_interpolation(a.bfloat16(), b.bfloat16(), c.bfloat16(), ids, k=30)
    assert half.embedding.dtype == torch.bfloat16 and torch.isfinite(half.scores).all()


def test_ties_take_the_first_maximum():
    a = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    c = torch.tensor([[1.0, 1.0]], dtype=torch.float64)  # foot at the midpoint; k odd: two best
    found = find_interpolation(a, b, c, (1, 1, 1), k=3)
    assert torch.isclose(found.scores[1], found.scores[2])
    assert int(found.index) == 1


def test_identical_prompts_are_a_clear_error():
    a, b, c, ids = t5_like(seed=7)
    with pytest.raises(ValueError, match="A and B encode to the same embedding"):
        find_interpolation(a, a.clone(), c, ids)
    with pytest.raises(ValueError, match="same embedding"):  # within what float64 dots resolve
        find_interpolation(a, a * (1 + 1e-9), c, ids)
    with pytest.raises(ValueError, match="same embedding"):  # within what float32 dots resolve
        find_interpolation(a.float(), a.float() * (1 + 1e-4), c.float(), ids)
    near = find_interpolation(a.float(), a.float() + 0.02 * (b - a).float(), c.float(), ids)  # close, not equal
    assert torch.isfinite(near.scores).all()
    with pytest.raises(ValueError, match=r"same embedding \(batch items \[1\]\)"):
        find_interpolation(torch.stack([a, a]), torch.stack([b, a]), torch.stack([c, c]), torch.tensor([ids, ids]))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a, b, c, ids: (a.clone().index_fill_(0, torch.tensor([3]), float("nan")), b, c, ids, 30), "e_a contains NaN"),
        (lambda a, b, c, ids: (a, b, c.clone().index_fill_(0, torch.tensor([0]), float("inf")), ids, 30), "e_c contains NaN or inf"),
        (lambda a, b, c, ids: (a, b[:-1], c, ids, 30), "share one shape"),
        (lambda a, b, c, ids: (a[0], b[0], c[0], ids, 30), "e_a has shape"),
        (lambda a, b, c, ids: (a.long(), b, c, ids, 30), "e_a must be a floating-point"),
        (lambda a, b, c, ids: (a, b, c, (0, 5, 5), 30), "n_ids must lie in 1..60"),
        (lambda a, b, c, ids: (a, b, c, (5, 61, 5), 30), "n_ids must lie in 1..60"),
        (lambda a, b, c, ids: (a, b, c, (5, 5), 30), r"n_ids must have shape \(3,\)"),
        (lambda a, b, c, ids: (a, b, c, (5.5, 5, 5), 30), "whole token counts"),
        (lambda a, b, c, ids: (a, b, c, ids, 0), "k must be an integer >= 1"),
        (lambda a, b, c, ids: (a, b, c, ids, 2.0), "k must be an integer >= 1"),
        (lambda a, b, c, ids: (a, b, c, ids, True), "k must be an integer >= 1"),
    ],
)
def test_bad_input_names_the_argument(change, match):
    args = change(*t5_like(seed=8))
    with pytest.raises(ValueError, match=match):
        find_interpolation(*args)


def test_bad_options():
    a, b, c, ids = t5_like()
    with pytest.raises(ValueError, match="scoring must be one of"):
        find_interpolation(a, b, c, ids, scoring="mean")
    with pytest.raises(ValueError, match="projection must be one of"):
        find_interpolation(a, b, c, ids, projection="rows")


def test_chain_feeds_each_optimum_into_the_next_step():
    a, b, c, ids = t5_like(seed=9)
    d_concept, guide2, _, _ = t5_like(seed=10)
    steps = find_chain([a, b, d_concept], [c, guide2], [14, 17, 20], [22, 25], k=30)
    first = find_interpolation(a, b, c, (14, 17, 22), k=30)
    second = find_interpolation(first.embedding, d_concept, guide2, (22, 20, 25), k=30)
    assert int(steps[0].index) == int(first.index) and int(steps[1].index) == int(second.index)
    torch.testing.assert_close(steps[1].embedding, second.embedding, rtol=0, atol=0)
    with pytest.raises(ValueError, match="m - 1 guides"):
        find_chain([a, b], [c, c], [1, 1], [1, 1])


def test_interpolate_per_item_and_per_token():
    a, b, _, _ = t5_like()
    assert torch.equal(interpolate(a, b, 1.0), a) and torch.equal(interpolate(a, b, 0.0), b)
    per_token = torch.linspace(0, 1, a.shape[0], dtype=torch.float64)
    mixed = interpolate(a, b, per_token)
    torch.testing.assert_close(mixed, per_token[:, None] * a + (1 - per_token[:, None]) * b)
    batch = interpolate(torch.stack([a, a]), torch.stack([b, b]), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.equal(batch[0], b) and torch.equal(batch[1], a)
    with pytest.raises(ValueError, match="fits neither"):
        interpolate(a, b, torch.ones(3, 3, 3))
