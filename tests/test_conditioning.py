"""The mixing parameters' pure functions (richspace.conditioning) and the per-attribute reward (richspace.objective)."""

import math

import pytest
import torch

from richspace.conditioning import MixParams, active, conditioning, mixed_embedding, offset_direction, on_base
from richspace.finder import interpolate
from richspace.objective import parse_queries, query_reward
from richspace.specs import SpecError, parse_specs


def test_the_offset_leaves_the_line_towards_the_guide():
    g = torch.Generator().manual_seed(0)
    e_a, e_b, e_guide = (torch.randn(16, 8, generator=g, dtype=torch.float64) for _ in range(3))
    d = offset_direction(e_a, e_b, e_guide)
    assert float((d * (e_b - e_a)).sum()) == pytest.approx(0.0, abs=1e-9)  # orthogonal to the line
    foot = e_guide - d
    t = float(((foot - e_b) * (e_a - e_b)).sum() / (e_a - e_b).pow(2).sum())
    assert torch.allclose(foot, interpolate(e_a, e_b, t))  # the foot lies on the line
    assert torch.allclose(mixed_embedding(e_a, e_b, d, torch.tensor(t), torch.tensor(1.0)), e_guide)  # offset 1: the guide
    on = interpolate(e_a, e_b, 0.3)
    assert offset_direction(e_a, e_b, on).abs().max() < 1e-9  # a guide on the line: no offset


def test_params_say_how_a_mix_is_sampled():
    line, compose = MixParams(0.4), MixParams.compose()
    assert line.on_line and not compose.on_line and not MixParams(0.4, w_a=1.0).on_line
    assert torch.equal(compose.vector(6.0), torch.tensor([0.5, 0.0, 0.0, 1.5, 1.5, 0.0], dtype=torch.float64))
    assert MixParams.from_vector(MixParams(0.3, 1.0, 2.0, 0.5, 0.0, -1.0).vector(9.0)) == MixParams(0.3, 1.0, 2.0, 0.5,
                                                                                                   0.0, -1.0)
    assert not MixParams(0.4, w_c=-1.0).on_line
    assert MixParams.from_dict({"alpha": 0.5, "w_a": 1.0}).w_c == 0.0  # results written before w_c read as before
    assert MixParams.from_dict(line.to_dict()) == line
    with pytest.raises(ValueError, match="unknown mixing parameters"):
        MixParams.from_dict({"alpha": 0.5, "beta": 1})
    e_a, e_b = torch.zeros(4, 2), torch.ones(4, 2)
    texts, weights = conditioning(e_a, e_b, torch.zeros(4, 2), compose.vector(3.0))
    assert texts.shape == (4, 4, 2) and weights.tolist() == [0.0, 1.5, 1.5, 0.0]
    kept, w = active(texts, weights)
    assert torch.equal(kept, texts[1:3]) and w.tolist() == [1.5, 1.5]  # no pass for a zero weight


def test_the_contrast_adds_b_s_difference_from_the_contrast_to_a():
    """w_a = w_b = -w_c = 1: u + (c(A) - u) + (c(B) - u) - (c(C) - u) = c(A) + (c(B) - c(C)); a mix without a
    contrast prompt loses only the w_c term, and its gradient is zero."""
    g = torch.Generator().manual_seed(2)
    e_a, e_b, e_c, u = (torch.randn(4, 2, generator=g, dtype=torch.float64) for _ in range(4))

    def c(text):
        return torch.tanh(text * 1.3).cumsum(0)

    def predict(texts, weights):
        return c(u) + sum(w * (c(t) - c(u)) for t, w in zip(texts, weights))

    theta = MixParams.contrast(1.0).vector(3.0)
    texts, weights = conditioning(e_a, e_b, torch.zeros(4, 2, dtype=torch.float64), theta, e_contrast=e_c)
    assert weights.tolist() == [0.0, 1.0, 1.0, -1.0] and torch.equal(texts[3], e_c)
    assert torch.allclose(predict(*active(texts, weights)), c(e_a) + (c(e_b) - c(e_c)))  # B's pattern added to A
    theta = MixParams.contrast(3.0).vector(3.0).requires_grad_(True)
    texts, weights = conditioning(e_a, e_b, torch.zeros(4, 2, dtype=torch.float64), theta)  # no contrast prompt
    assert weights.tolist() == [0.0, 3.0, 3.0, 0.0] and active(texts, weights.detach())[0].shape[0] == 2
    weights.sum().backward()
    assert theta.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0]


def test_a_chain_on_a_composed_base_weighs_the_base_directions_as_its_a():
    g = torch.Generator().manual_seed(1)
    e_mix, e_a, e_b, u = (torch.randn(4, 2, generator=g, dtype=torch.float64) for _ in range(4))
    base = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)

    def c(text):  # any prediction of a text will do: composition is linear in the predictions, not the texts
        return torch.tanh(text * 1.7).cumsum(0)

    def predict(texts, weights):  # the sampler's composition: u + sum_i w_i (c_i - u)
        return c(u) + sum(w * (c(t) - c(u)) for t, w in zip(texts, weights))

    e_c = torch.randn(4, 2, generator=g, dtype=torch.float64)
    texts, weights = torch.stack([e_mix, e_a, e_b, e_c]), torch.tensor([1.5, 2.0, 1.0, -0.5], dtype=torch.float64)
    base_weights = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    got_texts, got_weights = on_base(texts, weights, base, base_weights)
    assert got_texts.shape == (6, 4, 2) and got_weights.tolist() == [1.5, 0.0, 0.5, 1.5, 1.0, -0.5]
    direction = (1.0 * (c(base[1]) - c(u)) + 3.0 * (c(base[2]) - c(u))) / 4.0  # the base's, per unit weight
    want = c(u) + 1.5 * (c(e_mix) - c(u)) + 2.0 * direction + 1.0 * (c(e_b) - c(u)) - 0.5 * (c(e_c) - c(u))
    assert torch.allclose(predict(got_texts, got_weights), want)
    one_texts, one_weights = on_base(texts, weights, e_a[None], torch.tensor([3.0], dtype=torch.float64))
    assert torch.equal(one_texts, texts) and torch.equal(one_weights, weights)  # a base of one text: A itself
    with pytest.raises(ValueError, match="positive sum"):
        on_base(texts, weights, base, torch.zeros(3, dtype=torch.float64))


def test_the_per_attribute_reward_balances_two_wanted_answers():
    queries = parse_queries([{"options": ["red", "yellow", "blue"], "want": [0, 1]}], "m")
    def q(scores):
        return float(query_reward([torch.tensor(scores)], queries))
    balanced, one_sided, wrong = q([10.0, 10.0, 0.0]), q([20.0, 0.0, 0.0]), q([0.0, 0.0, 10.0])
    assert balanced > one_sided > wrong
    assert balanced == pytest.approx(math.log(1 / (2 + math.exp(-10))), rel=1e-6)
    two = parse_queries([{"options": ["a", "b"], "want": [0]}, {"options": ["c", "d"], "want": [1]}], "m")
    assert float(query_reward([torch.tensor([5.0, 0.0]), torch.tensor([0.0, 5.0])], two)) > \
        float(query_reward([torch.tensor([5.0, 0.0]), torch.tensor([5.0, 0.0])], two))  # every attribute counts


@pytest.mark.parametrize("queries, message", [
    ([], "queries must be a non-empty list"),
    ([{"options": ["only one"], "want": [0]}], "query 0 needs options"),
    ([{"options": ["a", "b"], "want": [2]}], "query 0 needs want: indices into its 2 options"),
    ([{"options": ["a", "b"]}], "query 0 needs want"),
])
def test_bad_queries_are_one_line_spec_errors(queries, message):
    with pytest.raises(SpecError, match=message):
        parse_specs([{"id": "m", "a": "x", "b": "y", "guide": "z", "queries": queries}], "specs.yaml")
