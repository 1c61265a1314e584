"""The one sampler: a frozen CogVideoX (no T5) driven by text embeddings, for generation and refinement alike.

``Sampler`` owns everything about the frozen pipeline: which weights (``toy``, ``tiny``, a
hub id or a local directory), dtype, device, offload, VAE tiling and slicing,
``torch.compile`` and diffusers' cache hooks, and the sampling settings. It offers:

- ``generate(embeds, negative, seed)``: one video through ``CogVideoXPipeline.__call__``
  itself (bit for bit the pipeline's output), with compile and cache hooks where configured;
- ``sample(embeds, negative, seed, grad_steps=K, latent_frames=N)``: the same sample with
  the last K denoising steps and the decode of the first N latent frames carrying gradients
  (the first T - K steps run without). Its loop body follows the pipeline's step 8 and is
  tested against the pipeline (K = T equals ``__call__``'s output); compile and cache hooks
  are never active here.

Both LightningModules (generation, refinement) receive a Sampler from the config
(``sampler:`` in ``configs/*.yaml``) and call ``load(device)`` in their ``setup``.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from richspace.conditioning import active
from richspace.objective import noised, prediction_errors
from richspace.video import to_uint8
from richspace.weights import check_dtype, check_weights, loading, resolve_weights, temporal_compression

CACHES = ("pyramid_attention_broadcast", "faster_cache", "first_block_cache")


def cache_config(name: str, pipe):
    """diffusers' cache-hook config for ``name``, with the settings diffusers documents for CogVideoX."""
    from diffusers import FasterCacheConfig, FirstBlockCacheConfig, PyramidAttentionBroadcastConfig

    now = lambda: pipe.current_timestep  # noqa: E731  (read by the hooks at every block call)
    if name == "pyramid_attention_broadcast":
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(100, 800),
            current_timestep_callback=now,
        )
    if name == "faster_cache":
        return FasterCacheConfig(
            spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(-1, 681),
            current_timestep_callback=now, attention_weight_callback=lambda _: 0.3, tensor_format="BFCHW",
            is_guidance_distilled=False,
        )
    return FirstBlockCacheConfig(threshold=0.05)


class Sampler:
    """A frozen CogVideoX pipeline without T5, its placement and its sampling settings."""

    def __init__(
        self,
        pretrained: str = "tiny",
        dtype: str = "float32",
        num_frames: int = 49,
        height: int = 480,
        width: int = 720,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        max_sequence_length: int = 226,
        enable_model_cpu_offload: bool = False,
        enable_sequential_cpu_offload: bool = False,
        vae_tiling: bool = False,
        vae_slicing: bool = False,
        gradient_checkpointing: bool = False,
        compile: bool = False,
        cache: str | None = None,
    ) -> None:
        """
        Args:
            pretrained: CogVideoX weights: 'toy' (the trained toy world), 'tiny' (random), a hub id
                (THUDM/CogVideoX-2b, -5b) or a local diffusers directory.
            dtype: transformer and VAE dtype: float32, bfloat16 or float16.
            num_frames, height, width, num_inference_steps, guidance_scale: as CogVideoXPipeline.
            max_sequence_length: text tokens the transformer takes (CogVideoX: 226).
            enable_model_cpu_offload, enable_sequential_cpu_offload: diffusers' offload (less GPU memory, slower).
            vae_tiling, vae_slicing: decode in tiles / one video at a time (less memory).
            gradient_checkpointing: on the transformer and the VAE, where gradients flow (refinement).
            compile: torch.compile the transformer for generation (never in steps with gradients).
            cache: one of diffusers' cache hooks for generation (never in steps with gradients):
                pyramid_attention_broadcast, faster_cache, first_block_cache, or None.
        """
        check_weights(pretrained, "CogVideoX")
        check_dtype(dtype, "sampler.dtype")
        fold = temporal_compression(pretrained)  # frames per latent frame of this VAE (CogVideoX: 4; the toy's: 2)
        if num_frames < 1 or (num_frames - 1) % fold:
            raise ValueError(
                f"sampler.num_frames must be {fold}k+1 (this VAE folds {fold} frames into one latent frame), "
                f"e.g. {1 + fold * 2} or {1 + fold * 3}; got {num_frames}"
            )
        if height % 16 or width % 16 or height <= 0 or width <= 0:
            raise ValueError(f"sampler.height and sampler.width must be positive multiples of 16; got {height}x{width}")
        if num_inference_steps < 1:
            raise ValueError(f"sampler.num_inference_steps must be >= 1; got {num_inference_steps}")
        if enable_model_cpu_offload and enable_sequential_cpu_offload:
            raise ValueError("choose one of sampler.enable_model_cpu_offload and sampler.enable_sequential_cpu_offload")
        if cache is not None and cache not in CACHES:
            raise ValueError(f"sampler.cache must be null or one of {list(CACHES)}; got {cache!r}")
        self.pretrained, self.dtype, self.latent_fold = pretrained, dtype, fold
        self.num_frames, self.height, self.width = num_frames, height, width
        self.num_inference_steps, self.guidance_scale = num_inference_steps, guidance_scale
        self.max_sequence_length = max_sequence_length
        self.enable_model_cpu_offload, self.enable_sequential_cpu_offload = enable_model_cpu_offload, enable_sequential_cpu_offload
        self.vae_tiling, self.vae_slicing = vae_tiling, vae_slicing
        self.gradient_checkpointing, self.compile, self.cache = gradient_checkpointing, compile, cache
        self.pipe = None
        self._compiled = None  # the compiled transformer, used by generate() only

    # ------------------------------------------------------------------ loading and placement
    @property
    def latent_frames(self) -> int:
        return (self.num_frames - 1) // self.latent_fold + 1

    def decoded_frames(self, latent_frames: int) -> int:
        """Frames the VAE decodes from the first ``latent_frames`` latent frames. CogVideoX's VAE decodes latent
        frames in pairs, the first pair's first frame alone: an odd count gives 1 + fold (n - 1) frames, an even
        count fold n (tested against the decode on the tiny and toy VAEs)."""
        return 1 + self.latent_fold * (latent_frames - 1) if latent_frames % 2 else self.latent_fold * latent_frames

    @property
    def device(self) -> torch.device:
        """Where sampling runs (right under offload too)."""
        return self.pipe._execution_device

    def load(self, device: torch.device | str = "cpu") -> Sampler:
        """Loads the pipeline once (no T5: embeddings go in as prompt_embeds), frozen, placed on ``device``."""
        if self.pipe is not None:
            return self
        from diffusers import CogVideoXPipeline

        device = torch.device(device)
        with loading(self.pretrained, "CogVideoX"):
            pipe = CogVideoXPipeline.from_pretrained(
                resolve_weights(self.pretrained, "cogvideox"), text_encoder=None, tokenizer=None,
                dtype=check_dtype(self.dtype, "sampler.dtype"),
            )
        for part in (pipe.transformer, pipe.vae):
            part.requires_grad_(False).eval()
        pipe.set_progress_bar_config(disable=True)
        if self.enable_sequential_cpu_offload:
            pipe.enable_sequential_cpu_offload(device=device)
        elif self.enable_model_cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        if self.vae_tiling:
            pipe.vae.enable_tiling()
        if self.vae_slicing:
            pipe.vae.enable_slicing()
        if self.gradient_checkpointing:  # active only where gradients flow
            pipe.transformer.enable_gradient_checkpointing()
            pipe.vae.enable_gradient_checkpointing()
        if self.cache is not None:
            pipe.transformer.enable_cache(cache_config(self.cache, pipe))
        if self.compile:
            self._compiled = torch.compile(pipe.transformer)
        self.pipe = pipe
        return self

    def check_placed(self, device: torch.device | str) -> None:
        """Raises where the models are not where they should be (a GPU run silently on the CPU, say)."""
        want = torch.device(device)
        have = self.device
        if have.type != want.type:
            raise RuntimeError(f"the sampler runs on {have}, not on {want}: the pipeline was not placed")

    @contextlib.contextmanager
    def _generation_transformer(self):
        """The compiled transformer in the pipeline for the length of one generate() call."""
        if self._compiled is None:
            yield
            return
        eager, self.pipe.transformer = self.pipe.transformer, self._compiled
        try:
            yield
        finally:
            self.pipe.transformer = eager

    @contextlib.contextmanager
    def _without_cache(self):
        """Cache hooks off for steps with gradients (and for the loop that must equal the plain pipeline)."""
        config = self.pipe.transformer._cache_config if self.cache is not None else None
        if config is None:
            yield
            return
        self.pipe.transformer.disable_cache()
        try:
            yield
        finally:
            self.pipe.transformer.enable_cache(config)

    # ------------------------------------------------------------------ generation
    def _place(self, embeds: Tensor) -> Tensor:
        return embeds[None].to(device=self.device, dtype=self.pipe.transformer.dtype)

    @torch.no_grad()
    def generate(self, embeds: Tensor, negative: Tensor, seed: int, weights: Tensor | None = None) -> Tensor:
        """One video, (F, 3, H, W) uint8 on the CPU, from (L, d) embeddings; the noise from a CPU generator.

        With ``weights``, ``embeds`` is (n, L, d) and the conditions are composed (``sample``'s
        composition, through its loop: compile and cache hooks do not apply).
        """
        if weights is not None:
            return to_uint8(self.sample(embeds, negative, seed, 0, None, weights)).cpu()
        with self._generation_transformer():
            out = self.pipe(
                prompt_embeds=self._place(embeds),
                negative_prompt_embeds=self._place(negative),
                num_frames=self.num_frames,
                height=self.height,
                width=self.width,
                num_inference_steps=self.num_inference_steps,
                guidance_scale=self.guidance_scale,
                max_sequence_length=self.max_sequence_length,
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="pt",
            )
        return to_uint8(out.frames[0].float()).cpu()

    # ------------------------------------------------------------------ the differentiable path
    def sample(
        self, embeds: Tensor, negative: Tensor, seed: int, grad_steps: int = 0, latent_frames: int | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        """(F, 3, H, W) float frames in [0, 1] of the video ``generate`` makes, before uint8.

        The last ``grad_steps`` denoising steps and the decode carry gradients to ``embeds``
        (and ``weights``); the earlier steps run under no_grad (their latents are constants: a
        truncated gradient when ``grad_steps`` < T). ``latent_frames`` decodes only the first N
        latent frames.

        Composition: with ``embeds`` (n, L, d) and ``weights`` (n,), each step's noise prediction
        is u + sum_i w_i (c_i - u), u the prediction for ``negative`` and c_i for ``embeds[i]``
        (composable classifier-free guidance; n = 1, w = guidance_scale is the pipeline's own).
        ``weights`` (T, n) gives each step its own weights (a switch of conditioning during
        sampling); a step passes only the texts it weighs (non-zero), so a switch costs nothing.
        """
        pipe, device = self.pipe, self.device
        T = self.num_inference_steps
        if not 0 <= grad_steps <= T:
            raise ValueError(f"grad_steps must lie in 0..{T}; got {grad_steps}")
        dtype = pipe.transformer.dtype
        if weights is not None:
            if embeds.dim() != 3 or weights.shape not in ((embeds.shape[0],), (T, embeds.shape[0])):
                raise ValueError(f"composition needs embeds (n, L, d) and weights (n,) or ({T}, n) per step; got "
                                 f"{tuple(embeds.shape)} and {tuple(weights.shape)}")
        cfg = weights is not None or self.guidance_scale > 1.0
        if weights is None:
            weights = torch.tensor([self.guidance_scale], dtype=torch.float64) if cfg else None
            embeds = embeds[None]
        generator = torch.Generator("cpu").manual_seed(seed)
        with self._without_cache():
            # 1. Timesteps and initial noise, as CogVideoXPipeline.__call__ steps 4-5
            pipe.scheduler.set_timesteps(T, device=device)
            timesteps = pipe.scheduler.timesteps
            latents = pipe.prepare_latents(1, pipe.transformer.config.in_channels, self.num_frames, self.height,
                                           self.width, dtype, device, generator)
            step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)
            rotary = (
                pipe._prepare_rotary_positional_embeddings(self.height, self.width, latents.size(1), device)
                if pipe.transformer.config.use_rotary_positional_embeddings else None
            )
            cond = embeds.to(device=device, dtype=dtype)
            context = torch.cat([negative[None].to(device=device, dtype=dtype), cond]) if cfg else cond
            weights = weights.to(device) if cfg else None
            # 2. The denoising loop: the first T - K steps without gradients, the last K with
            state = None  # the DPM solver's previous x0 estimate (unused by DDIM)
            for i, t in enumerate(timesteps):
                with torch.set_grad_enabled(torch.is_grad_enabled() and i >= T - grad_steps):
                    latents, state = self._step(latents, context, weights, t, i, timesteps, rotary, step_kwargs,
                                                 state)
            # 3. Decode (a subset of latent frames), as the pipeline's decode_latents and video_processor
            if latent_frames is not None:
                latents = latents[:, :latent_frames]
            with torch.set_grad_enabled(torch.is_grad_enabled() and grad_steps > 0):
                video = pipe.video_processor.postprocess_video(pipe.decode_latents(latents), output_type="pt")
        return video[0]

    def denoising_errors(self, frames: Tensor, embeds: Tensor, pairs: int, seed: int, rows: int = 192) -> Tensor:
        """(n,) the transformer's mean prediction error on ``frames`` (F, 3, H, W) in [0, 1], encoded by the VAE,
        under each text of ``embeds`` (n, L, d), on ``pairs`` (timestep, noise) pairs every text shares: timesteps
        evenly spaced over 5%..95% of training's, noise from ``seed``. A diffusion classifier's reading (lower: the
        text explains the video better); ``richspace.objective`` turns it into the reward D. Gradients flow to
        ``frames`` where enabled. ``rows``: at most this many (text, pair) rows per transformer call."""
        pipe, device = self.pipe, self.device
        vae, transformer, scheduler = pipe.vae, pipe.transformer, pipe.scheduler
        dtype = transformer.dtype
        video = (frames.to(device=device, dtype=vae.dtype) * 2 - 1).permute(1, 0, 2, 3)[None]  # (1, 3, F, H, W)
        latents = (vae.encode(video).latent_dist.mean * vae.config.scaling_factor).permute(0, 2, 1, 3, 4)
        train = scheduler.config.num_train_timesteps
        timesteps = torch.linspace(0.05 * train, 0.95 * train, pairs).round().long()
        noise = torch.randn((pairs, *latents.shape[1:]), generator=torch.Generator("cpu").manual_seed(seed))
        x_t, target = noised(latents.float(), noise.to(device), scheduler.alphas_cumprod[timesteps].to(device),
                             scheduler.config.prediction_type)
        rotary = (pipe._prepare_rotary_positional_embeddings(self.height, self.width, latents.size(1), device)
                  if transformer.config.use_rotary_positional_embeddings else None)
        timesteps, embeds = timesteps.to(device), embeds.to(device=device, dtype=dtype)
        per_call = max(1, rows // pairs)
        errors = []
        for chunk in embeds.split(per_call):
            n = chunk.shape[0]
            prediction = transformer(
                hidden_states=x_t.to(dtype).repeat(n, *[1] * (x_t.dim() - 1)),
                encoder_hidden_states=chunk.repeat_interleave(pairs, 0), timestep=timesteps.repeat(n),
                image_rotary_emb=rotary, return_dict=False,
            )[0].float()
            errors.append(prediction_errors(prediction.view(n, pairs, *prediction.shape[1:]), target))
        return torch.cat(errors)

    def _step(self, latents, context, weights, t, i, timesteps, rotary, step_kwargs, state):
        """One denoising step; follows the body of CogVideoXPipeline.__call__'s step 8 (diffusers 0.42), with
        the guidance generalised to a weighted sum over conditions (``weights`` None: no guidance)."""
        from diffusers import CogVideoXDPMScheduler

        pipe = self.pipe
        if weights is not None and weights.dim() == 2:  # this step's weights, and only the texts they weigh
            texts, weights = active(context[1:], weights[i])
            context = torch.cat([context[:1], texts])
        model_input = pipe.scheduler.scale_model_input(torch.cat([latents] * context.shape[0]), t)
        noise_pred = pipe.transformer(
            hidden_states=model_input, encoder_hidden_states=context, timestep=t.expand(model_input.shape[0]),
            image_rotary_emb=rotary, return_dict=False,
        )[0].float()
        if weights is not None:
            uncond, text = noise_pred[:1], noise_pred[1:]
            if len(text) == 1 and not weights.requires_grad:  # the pipeline's own expression, bit for bit
                noise_pred = uncond + float(weights[0]) * (text - uncond)
            else:
                noise_pred = uncond + (weights.view(-1, *[1] * (text.dim() - 1)) * (text - uncond)).sum(0, keepdim=True)
        if isinstance(pipe.scheduler, CogVideoXDPMScheduler):
            previous = timesteps[i - 1] if i > 0 else None
            latents, state = pipe.scheduler.step(noise_pred, state, t, previous, latents, **step_kwargs,
                                                 return_dict=False)
        else:
            latents = pipe.scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
        return latents.to(context.dtype), state
