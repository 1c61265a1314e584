"""The one sampler against the pipeline it drives: generation is CogVideoXPipeline.__call__ bit for bit, and the
differentiable path (the last K steps and the decode with gradients) computes the same video, on the tiny and
the toy checkpoints."""

import pytest
import torch

from richspace.sampler import Sampler

SETTINGS = {
    "tiny": dict(pretrained="tiny", num_frames=9, height=32, width=32, num_inference_steps=4, guidance_scale=6.0),
    "toy": dict(pretrained="toy", num_frames=9, height=32, width=32, num_inference_steps=6, guidance_scale=3.0,
                max_sequence_length=16),
}


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def sampler(request) -> Sampler:
    return Sampler(**SETTINGS[request.param]).load("cpu")


def embeddings(sampler: Sampler, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    width = sampler.pipe.transformer.config.text_embed_dim
    length = sampler.max_sequence_length
    return torch.randn(length, width, generator=g), torch.randn(length, width, generator=g)


def pipeline_frames(sampler: Sampler, embeds, negative, seed) -> torch.Tensor:
    """CogVideoXPipeline.__call__ itself: (F, 3, H, W) floats in [0, 1]."""
    out = sampler.pipe(
        prompt_embeds=embeds[None], negative_prompt_embeds=negative[None], num_frames=sampler.num_frames,
        height=sampler.height, width=sampler.width, num_inference_steps=sampler.num_inference_steps,
        guidance_scale=sampler.guidance_scale, max_sequence_length=sampler.max_sequence_length,
        generator=torch.Generator().manual_seed(seed), output_type="pt",
    )
    return out.frames[0]


def test_generate_is_the_pipeline_bit_for_bit(sampler):
    embeds, negative = embeddings(sampler)
    expected = (pipeline_frames(sampler, embeds, negative, 7).clamp(0, 1) * 255).round().to(torch.uint8)
    assert torch.equal(sampler.generate(embeds, negative, 7), expected)


@pytest.mark.parametrize("grad_steps", ["all", 1, 0])
def test_the_differentiable_path_computes_the_pipelines_video(sampler, grad_steps):
    """K = T (the exact gradient), K = 1 and K = 0: the forward value is the pipeline's output, bit for bit."""
    embeds, negative = embeddings(sampler)
    expected = pipeline_frames(sampler, embeds, negative, 3)
    k = sampler.num_inference_steps if grad_steps == "all" else grad_steps
    leaf = embeds.clone().requires_grad_(True)
    frames = sampler.sample(leaf, negative, 3, grad_steps=k)
    assert frames.shape == expected.shape == (9, 3, 32, 32)
    assert torch.equal(frames.detach(), expected)
    if k > 0:
        frames.mean().backward()
        assert leaf.grad is not None and leaf.grad.abs().sum() > 0  # gradients reach the embeddings
    else:
        assert not frames.requires_grad
    with torch.no_grad():
        assert torch.equal(sampler.sample(embeds, negative, 3, grad_steps=k), expected)


def test_decoding_a_subset_of_latent_frames(sampler):
    embeds, negative = embeddings(sampler)
    assert sampler.latent_frames == (9 - 1) // sampler.latent_fold + 1
    for n in range(1, sampler.latent_frames + 1):
        leaf = embeds.clone().requires_grad_(True)
        frames = sampler.sample(leaf, negative, 1, grad_steps=1, latent_frames=n)
        assert frames.shape == (sampler.decoded_frames(n), 3, 32, 32), n
        frames.mean().backward()
        assert leaf.grad.abs().sum() > 0
    assert sampler.decoded_frames(sampler.latent_frames) == 9


def test_cache_hooks_serve_generation_only():
    """A cache hook changes generation (it skips computation) but never the differentiable path, which still equals
    the plain pipeline; the hook is back on afterwards."""
    plain = Sampler(**SETTINGS["toy"]).load("cpu")
    cached = Sampler(**SETTINGS["toy"], cache="first_block_cache").load("cpu")
    embeds, negative = embeddings(plain)
    with torch.no_grad():
        assert torch.equal(cached.sample(embeds, negative, 5, grad_steps=0), plain.sample(embeds, negative, 5))
    assert cached.pipe.transformer._cache_config is not None  # re-enabled after sample()
    a, b = cached.generate(embeds, negative, 5), cached.generate(embeds, negative, 5)
    assert torch.equal(a, b)  # the hook's state is reset between videos


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ValueError, match="sampler.num_frames must be 4k"):
        Sampler(num_frames=10)
    with pytest.raises(ValueError, match="sampler.num_frames must be 2k"):
        Sampler(pretrained="toy", num_frames=10)
    with pytest.raises(ValueError, match="choose one of"):
        Sampler(enable_model_cpu_offload=True, enable_sequential_cpu_offload=True)
    with pytest.raises(ValueError, match="sampler.cache"):
        Sampler(cache="everything")
    with pytest.raises(RuntimeError, match="not on cuda"):
        Sampler(num_frames=9, height=32, width=32).load("cpu").check_placed("cuda")


def test_composition_generalises_the_pipelines_guidance(sampler):
    """weights (n,) over texts (n, L, d): one text at the guidance scale is the pipeline's own video, bit for bit
    (without gradients) and to float precision (with them); two copies of a text at half the scale each are the
    same guidance; gradients reach both the texts and the weights."""
    embeds, negative = embeddings(sampler)
    g = sampler.guidance_scale
    expected = pipeline_frames(sampler, embeds, negative, 5)
    one = sampler.sample(embeds[None], negative, 5, weights=torch.tensor([g]))
    assert torch.equal(one, expected)
    halves = sampler.sample(torch.stack([embeds, embeds]), negative, 5, weights=torch.tensor([g / 2, g / 2]))
    assert torch.allclose(halves, expected, atol=1e-4)
    texts = torch.stack([embeds, negative.clone()]).requires_grad_(True)
    weights = torch.tensor([g, 0.0], requires_grad=True)
    frames = sampler.sample(texts, negative, 5, grad_steps=sampler.num_inference_steps, weights=weights)
    assert torch.allclose(frames.detach(), expected, atol=1e-4)  # a zero weight adds nothing
    frames.mean().backward()
    assert texts.grad[0].abs().sum() > 0 and weights.grad.abs().sum() > 0
    assert torch.equal(sampler.generate(torch.stack([embeds]), negative, 5, torch.tensor([g])),
                       (expected.clamp(0, 1) * 255).round().to(torch.uint8))


def test_per_step_weights_switch_the_conditioning_as_the_pipeline_would(sampler):
    """weights (T, n): each step its own weights. Text A for the first s steps and text B after is the pipeline
    itself with its prompt swapped at step s by ``callback_on_step_end``, bit for bit; a text no step weighs
    changes nothing."""
    embeds, negative = embeddings(sampler)
    other, _ = embeddings(sampler, seed=1)
    g, T, s = sampler.guidance_scale, sampler.num_inference_steps, 2

    def swap(pipe, i, t, tensors):  # after step s - 1: B from step s on
        return {"prompt_embeds": torch.cat([negative[None], other[None]])} if i == s - 1 else {}

    expected = sampler.pipe(
        prompt_embeds=embeds[None], negative_prompt_embeds=negative[None], num_frames=sampler.num_frames,
        height=sampler.height, width=sampler.width, num_inference_steps=T, guidance_scale=g,
        max_sequence_length=sampler.max_sequence_length, generator=torch.Generator().manual_seed(5), output_type="pt",
        callback_on_step_end=swap, callback_on_step_end_tensor_inputs=["prompt_embeds"],
    ).frames[0]
    weights = torch.tensor([[g, 0.0, 0.0]] * s + [[0.0, g, 0.0]] * (T - s))
    switched = sampler.sample(torch.stack([embeds, other, negative]), negative, 5, weights=weights)
    assert torch.equal(switched, expected)
    assert not torch.equal(switched, pipeline_frames(sampler, embeds, negative, 5))  # the swap shows
    with pytest.raises(ValueError, match=rf"weights \(n,\) or \({T}, n\) per step"):
        sampler.sample(torch.stack([embeds, other]), negative, 0, weights=torch.ones(T + 1, 2))


def test_composition_checks_its_shapes(sampler):
    embeds, negative = embeddings(sampler)
    with pytest.raises(ValueError, match=r"composition needs embeds \(n, L, d\) and weights \(n,\)"):
        sampler.sample(embeds, negative, 0, weights=torch.tensor([1.0, 1.0]))
