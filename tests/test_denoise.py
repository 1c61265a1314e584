"""The reward D: a mix's queries asked of the frozen generator (a diffusion classifier). Its noising follows
diffusers' scheduler, the toy generator reads a rendered video's own caption, and refinement adds D to its
objective from the mix's encoded query options."""

import pytest
import torch

from richspace.encoding import PromptEncoder
from richspace.objective import noised, prediction_errors, query_reward, parse_queries
from richspace.sampler import Sampler
from richspace.toy import world
from richspace.weights import resolve_weights


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon", "sample"])
def test_noising_and_targets_are_diffusers_own(prediction_type):
    from diffusers import CogVideoXDDIMScheduler

    scheduler = CogVideoXDDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       prediction_type=prediction_type, rescale_betas_zero_snr=True)
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(1, 3, 4, 8, 8, generator=g), torch.randn(5, 3, 4, 8, 8, generator=g)
    t = torch.tensor([0, 120, 499, 800, 999])
    x_t, target = noised(latents, noise, scheduler.alphas_cumprod[t], prediction_type)
    assert torch.allclose(x_t, scheduler.add_noise(latents.expand(5, -1, -1, -1, -1), noise, t), atol=1e-6)
    want = {"v_prediction": scheduler.get_velocity(latents.expand(5, -1, -1, -1, -1), noise, t),
            "epsilon": noise, "sample": latents.expand(5, -1, -1, -1, -1)}[prediction_type]
    assert torch.allclose(target, want, atol=1e-6)
    with pytest.raises(ValueError, match="prediction_type must be"):
        noised(latents, noise, scheduler.alphas_cumprod[t], "flow")


def test_prediction_errors_are_each_text_s_mean_squared_error():
    target = torch.zeros(2, 3)
    predictions = torch.stack([torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([[2.0, 0, 0], [0, 0, 0]])])
    assert prediction_errors(predictions, target).tolist() == pytest.approx([0.0, 1.0, 4 / 6])


@pytest.fixture(scope="module")
def toy():
    sampler = Sampler("toy", num_frames=9, height=32, width=32, max_sequence_length=16).load("cpu")
    encoder = PromptEncoder(resolve_weights("toy", "cogvideox"), max_sequence_length=16)
    return sampler, encoder


def rendered(colour: str, shape: str, pattern: str, direction: str) -> torch.Tensor:
    attrs = world.Attributes(world.COLOURS[colour], shape, pattern, direction)
    return torch.from_numpy(world.render_uint8(attrs)).float() / 255


@pytest.mark.parametrize("colour, shape, direction", [("red", "square", "right"), ("green", "circle", "left")])
def test_the_toy_generator_reads_a_rendered_video_s_own_caption(toy, colour, shape, direction):
    sampler, encoder = toy
    frames = rendered(colour, shape, "plain", direction)
    questions = {colour: [world.caption(c, shape, "plain", direction) for c in world.COLOURS],
                 shape: [world.caption(colour, s, "plain", direction) for s in ("square", "circle", "triangle")],
                 direction: [world.caption(colour, shape, "plain", d) for d in ("right", "up", "left", "down")]}
    with torch.no_grad():
        for truth, options in questions.items():
            errors = sampler.denoising_errors(frames, encoder(options)[0], 12, 0)
            assert truth in options[int(errors.argmin())].split(), (truth, errors)


@pytest.mark.parametrize("colour, shape, diagonal", [("yellow", "circle", "up-right"), ("cyan", "square", "down-left")])
def test_the_toy_generator_reads_a_diagonal_as_its_two_directions(toy, colour, shape, diagonal):
    """The toy judge does not (BENCHMARKS.md): this is what D adds where the guide fails on diagonals."""
    sampler, encoder = toy
    words = ("right", "up", "left", "down")
    options = [world.caption(colour, shape, "plain", d) for d in words]
    with torch.no_grad():
        errors = sampler.denoising_errors(rendered(colour, shape, "plain", diagonal), encoder(options)[0], 12, 0)
    assert {words[i] for i in errors.argsort()[:2].tolist()} == set(diagonal.split("-"))


def test_errors_are_paired_and_do_not_depend_on_batching(toy):
    sampler, encoder = toy
    frames = rendered("blue", "triangle", "striped", "up")
    embeds = encoder([world.caption("blue", "triangle", "striped", "up"), world.caption("red", "circle", "plain",
                                                                                      "down")])[0]
    with torch.no_grad():
        together = sampler.denoising_errors(frames, embeds[[0, 1, 0]], 6, 3)
        one_by_one = sampler.denoising_errors(frames, embeds[[0, 1, 0]], 6, 3, rows=6)
        other_noise = sampler.denoising_errors(frames, embeds[[0, 1, 0]], 6, 4)
    assert torch.allclose(together, one_by_one, rtol=1e-4)
    assert together[0] == together[2]  # the same text on the same pairs
    assert not torch.allclose(together, other_noise)


def test_refinement_adds_d_from_the_mix_s_encoded_options(striped_triangle):
    from richspace.refinement import RefineModule, options_of

    item, sampler = striped_triangle
    queries = parse_queries(item.meta["queries"], item.id)
    options = options_of(queries)
    encoder = PromptEncoder(resolve_weights("toy", "cogvideox"), max_sequence_length=16)
    assert torch.equal(item.option_embeds, encoder(options)[0])
    module = RefineModule(sampler, clip="toy", mode="search", steps=0, w_guide=0.0, w_balance=0.0, w_queries=1.0,
                          w_denoise=2.0, denoise_pairs=4)
    module.load_models("cpu")
    with torch.no_grad():
        terms, frames = module.objective(item, torch.tensor(item.alpha, dtype=torch.float64))
        errors = sampler.denoising_errors(frames, item.option_embeds, 4, item.seed)
    d = query_reward(list((-errors).split([len(q.options) for q in queries])), queries, 0.01)
    assert float(terms["denoise"]) == pytest.approx(float(d), rel=1e-5)
    assert float(terms["objective"]) == pytest.approx(float(terms["queries"] + 2.0 * d), rel=1e-5)
    assert float(d) < 0  # a log-probability
