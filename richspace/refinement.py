"""Refinement: learn each mix's interpolation coefficient against a CLIP objective (train.py).

The closed-form finder's alpha is the starting point and the baseline. Per mix, with the
mix's own noise (its seed, as infer.py uses), the objective of a coefficient alpha is

    w_guide * S_G + w_balance * softmin_T(S_A, S_B) - w_anchor * mean((alpha - alpha_0)^2)

where S_X is 100 x the mean cosine between CLIP image features of decoded frames and CLIP
text features of prompt X (the scale of torchmetrics' CLIPScore). Sampling runs without
gradients through diffusers' own CogVideoXPipeline down to the last K steps (interrupted,
latents out); the last K steps (a differentiable copy of the pipeline's loop body), the VAE
decode of a subset of frames, torch-only CLIP preprocessing and CLIP's image tower run with
gradients. Only the coefficients learn; every other weight is frozen.

Distributed: ranks own disjoint mixes (one parameter and one Adam per mix), every rank
takes the same number of steps (padded with no-op steps), the model is not wrapped in DDP
(there is nothing to all-reduce), and the coefficient tables are merged at checkpoints and
at the end, so every rank ends with the same table and rank 0 writes it once.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor, nn

from richspace.finder import interpolate
from richspace.generation import (
    DTYPES, MixDataModule, check_sampling, load_frozen_pipeline, resolve_weights, temporal_compression, to_uint8,
)
from richspace.runs import atomic_write, atomic_write_text


# ---------------------------------------------------------------- pure functions
def soft_min(x: Tensor, y: Tensor, temperature: float) -> Tensor:
    """A smooth minimum, -T log(exp(-x/T) + exp(-y/T)): rewards raising the lower of the two."""
    return -temperature * torch.logsumexp(torch.stack((-x / temperature, -y / temperature)), dim=0)


def objective_terms(s_a: Tensor, s_b: Tensor, s_guide: Tensor, alpha: Tensor, alpha_0: float, weights: dict) -> dict:
    """The objective and its terms (all scalars); see the module docstring."""
    balance = soft_min(s_a, s_b, weights["softmin_temperature"])
    anchor = ((alpha - alpha_0) ** 2).mean()
    total = weights["w_guide"] * s_guide + weights["w_balance"] * balance - weights["w_anchor"] * anchor
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


def denoise_steps(pipe, latents: Tensor, timesteps: Tensor, embeds: Tensor, guidance_scale: float, rotary) -> Tensor:
    """The last denoising steps with gradients; embeds is (2, L, d) = (negative, positive).

    Follows the loop body of diffusers' CogVideoXPipeline.__call__ (0.42.1) for its DDIM
    scheduler with static classifier-free guidance; eta = 0, so the step is deterministic.
    """
    for t in timesteps:
        model_input = pipe.scheduler.scale_model_input(torch.cat([latents] * 2), t)
        noise_pred = pipe.transformer(
            hidden_states=model_input, encoder_hidden_states=embeds, timestep=t.expand(2),
            image_rotary_emb=rotary, return_dict=False,
        )[0].float()
        uncond, text = noise_pred.chunk(2)
        noise_pred = uncond + guidance_scale * (text - uncond)
        latents = pipe.scheduler.step(noise_pred, t, latents, return_dict=False)[0].to(embeds.dtype)
    return latents


# ---------------------------------------------------------------- strategy
class IndependentDDPStrategy(DDPStrategy):
    """DDP processes without the DDP wrapper: ranks refine disjoint mixes, nothing to all-reduce."""

    def configure_ddp(self) -> None:
        pass


def _gather(obj) -> list:
    """The object from every rank (just [obj] without a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def _merge_table(values: list[Tensor], owned: list[bool]) -> list[Tensor]:
    """Every rank gets each mix's coefficients from the rank that owns the mix."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    flat = torch.cat([v.detach().flatten() * float(o) for v, o in zip(values, owned)]).cpu().double()
    torch.distributed.all_reduce(flat)  # exactly one owner per mix: the sum is the owner's value
    out, start = [], 0
    for v in values:
        out.append(flat[start : start + v.numel()].view_as(v).to(v.dtype))
        start += v.numel()
    return out


# ---------------------------------------------------------------- data
class RefineDataModule(MixDataModule):
    """The mixes to refine: each rank gets its own, padded so every rank takes the same number of steps."""

    def train_dataloader(self):
        from torch.utils.data import DataLoader

        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        per_rank = -(-len(self.items) // world)
        mine = self.items[rank::world]
        mine = mine + [{"id": None}] * (per_rank - len(mine))  # no-op steps keep ranks in lockstep
        return DataLoader(mine, batch_size=1, collate_fn=lambda batch: batch[0])


# ---------------------------------------------------------------- module
class RefineModule(L.LightningModule):
    """Frozen CogVideoX and CLIP; one learnable coefficient (or one per token) per mix."""

    def __init__(
        self,
        pretrained: str = "tiny",
        clip: str = "tiny",
        dtype: str = "float32",
        num_frames: int = 9,
        height: int = 32,
        width: int = 32,
        num_inference_steps: int = 8,
        guidance_scale: float = 6.0,
        grad_steps: int = 1,
        decode_latent_frames: int | None = None,
        clip_frames: list[int] | None = None,
        per_token: bool = False,
        alpha_range: tuple[float, float] = (0.0, 1.0),
        lr: float = 0.05,
        w_guide: float = 1.0,
        w_balance: float = 1.0,
        w_anchor: float = 0.0,
        softmin_temperature: float = 1.0,
        gradient_checkpointing: bool = True,
        autocast: str | None = None,
        frames_every_n_steps: int = 10,
        max_sequence_length: int = 226,
    ) -> None:
        """
        Args:
            pretrained, clip, dtype: as in infer.py (CogVideoX weights, CLIP weights, their dtype).
            num_frames, height, width, num_inference_steps, guidance_scale: refinement's own sampling
                settings, smaller than generation's (4k+1 frames, multiples of 16).
            grad_steps: K, the last denoising steps run with gradients (1 <= K <= num_inference_steps).
                K < T treats the earlier latents as constants: a truncated, biased gradient (cheap);
                K = T is the exact gradient of the objective.
            decode_latent_frames: decode only the first N latent frames (None: all).
            clip_frames: indices of decoded frames CLIP scores (None: all decoded frames).
            per_token: one coefficient per text position instead of one per mix.
            alpha_range: [min, max] the coefficient is kept in; wider than [0, 1] extrapolates.
            lr: Adam's learning rate on the coefficients.
            w_guide, w_balance, w_anchor, softmin_temperature: the objective's weights (module docstring).
            gradient_checkpointing: on the transformer (less memory, more compute).
            autocast: None, or bfloat16 / float16 autocast for the gradient part.
            frames_every_n_steps: log frames to TensorBoard every N steps of a mix.
            max_sequence_length: text tokens (CogVideoX: 226).
        """
        super().__init__()
        check_sampling(pretrained, clip, dtype, num_frames, height, width)
        if not 1 <= grad_steps <= num_inference_steps:
            raise ValueError(
                f"model.grad_steps (K={grad_steps}) must lie in 1..num_inference_steps ({num_inference_steps})"
            )
        fold = temporal_compression(pretrained)
        latent_frames = (num_frames - 1) // fold + 1
        if decode_latent_frames is not None and not 1 <= decode_latent_frames <= latent_frames:
            raise ValueError(f"model.decode_latent_frames must lie in 1..{latent_frames} for {num_frames} frames")
        decoded = 1 + fold * ((decode_latent_frames or latent_frames) - 1)
        if clip_frames is not None and (not clip_frames or not all(0 <= i < decoded for i in clip_frames)):
            raise ValueError(f"model.clip_frames must be a non-empty list of frame indices in 0..{decoded - 1}")
        if not alpha_range[0] < alpha_range[1]:
            raise ValueError(f"model.alpha_range must be [min, max] with min < max; got {list(alpha_range)}")
        if autocast not in (None, "bfloat16", "float16"):
            raise ValueError(f"model.autocast must be null, bfloat16 or float16; got {autocast!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.alphas = nn.ParameterList()  # one per mix, made in setup() once the mixes are known
        self.mix_ids: list[str] = []
        self.alpha_0: list[float] = []
        self.history: dict[str, list[dict]] = {}
        self.best: dict[str, dict] = {}  # mix id -> {"objective", "alpha" (coefficients), "step"}
        self._text_cache: dict[tuple[str, ...], Tensor] = {}

    # -------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule
        if not self.mix_ids:  # a checkpoint, if resuming, overwrites these starting values
            alpha_0 = {item["id"]: item["alpha"] for item in data.items}
            self.init_coefficients(data.selected, [alpha_0[i] for i in data.selected])
        self.load_models(self.trainer.strategy.root_device)

    def init_coefficients(self, mix_ids: list[str], alpha_0: list[float]) -> None:
        """One learnable coefficient (or one per token) per mix, starting at the closed-form alpha."""
        self.mix_ids, self.alpha_0 = list(mix_ids), list(alpha_0)
        for a0 in self.alpha_0:
            init = torch.full((self.hparams.max_sequence_length,), a0) if self.hparams.per_token else torch.tensor(a0)
            self.alphas.append(nn.Parameter(init.double()))

    def load_models(self, device: torch.device | str) -> None:
        """The frozen CogVideoX (no T5) and CLIP, kept out of the module tree and its checkpoints."""
        from richspace.metrics import load_clip

        hp = self.hparams
        pipe = load_frozen_pipeline(hp.pretrained, hp.dtype)
        if hp.gradient_checkpointing:
            pipe.transformer.enable_gradient_checkpointing()
        pipe.to(device)
        clip_model, processor = load_clip(resolve_weights(hp.clip, "clip"))
        object.__setattr__(self, "pipe", pipe)
        object.__setattr__(self, "clip", clip_model.to(device))
        self.processor = processor

    def on_train_start(self) -> None:
        """TensorBoard, for reference: each mix's closed-form score curve with the finder's choice."""
        from richspace.writer import curve_figure

        logger = self.logger.experiment if self.logger is not None else None
        if self.trainer.is_global_zero and logger is not None and hasattr(logger, "add_figure"):
            for item in self.trainer.datamodule.items:
                logger.add_figure(f"refine/{item['id']}/closed_form_curve", curve_figure(item), 0)

    def configure_optimizers(self):
        return [torch.optim.Adam([p], lr=self.hparams.lr) for p in self.alphas]

    # -------------------------------------------------------------- objective
    def text_features(self, texts: list[str]) -> Tensor:
        """(len(texts), D) normalised CLIP text features, computed once per list of prompts."""
        key = tuple(texts)
        if key not in self._text_cache:
            self._text_cache[key] = self._encode_texts(texts)
        return self._text_cache[key]

    def _encode_texts(self, texts: list[str]) -> Tensor:
        limit = self.clip.config.text_config.max_position_embeddings  # truncated as torchmetrics' CLIPScore does
        batch = self.processor.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        batch = batch.to(self.device)
        with torch.no_grad():
            feats = self.clip.get_text_features(batch["input_ids"], batch["attention_mask"])
        return F.normalize(feats.float(), dim=-1)

    def objective(self, item: dict, alpha: Tensor) -> tuple[dict, Tensor]:
        """The objective at coefficient alpha for a mix (its noise and timesteps fixed); also the frames."""
        hp = self.hparams
        pipe, device = self.pipe, self.device
        ref, dtype = item["pair"], pipe.transformer.dtype
        embeds = interpolate(ref["e_a"].to(device).double(), ref["e_b"].to(device).double(), alpha).to(dtype)
        negative = item["negative"].to(device=device, dtype=dtype)
        settings = dict(num_frames=hp.num_frames, height=hp.height, width=hp.width, guidance_scale=hp.guidance_scale,
                        max_sequence_length=hp.max_sequence_length)
        split = hp.num_inference_steps - hp.grad_steps

        def stop_after_split(p, i, t, kwargs):
            if i + 1 >= split:
                p._interrupt = True
            return {}

        generator = torch.Generator().manual_seed(item["seed"])
        with torch.no_grad():
            if split > 0:  # the first T - K steps through diffusers' own pipeline, latents out
                latents = pipe(
                    prompt_embeds=embeds.detach()[None], negative_prompt_embeds=negative[None],
                    num_inference_steps=hp.num_inference_steps, generator=generator, output_type="latent",
                    callback_on_step_end=stop_after_split, **settings,
                ).frames
                pipe._interrupt = False
            else:  # K = T: the pipeline's initial noise and timesteps, no step taken yet
                pipe.scheduler.set_timesteps(hp.num_inference_steps, device=device)
                latents = pipe.prepare_latents(1, pipe.transformer.config.in_channels, hp.num_frames, hp.height,
                                               hp.width, dtype, device, generator)
        timesteps = pipe.scheduler.timesteps[split:]
        rotary = (
            pipe._prepare_rotary_positional_embeddings(hp.height, hp.width, latents.size(1), device)
            if pipe.transformer.config.use_rotary_positional_embeddings else None
        )
        ctx = torch.autocast(device.type, dtype=DTYPES[hp.autocast]) if hp.autocast else torch.autocast(device.type, enabled=False)
        with ctx:
            latents = denoise_steps(pipe, latents, timesteps, torch.stack([negative, embeds]), hp.guidance_scale, rotary)
            if hp.decode_latent_frames:
                latents = latents[:, : hp.decode_latent_frames]
            video = pipe.vae.decode(latents.permute(0, 2, 1, 3, 4) / pipe.vae.config.scaling_factor).sample
            frames = (video[0].permute(1, 0, 2, 3).float() / 2 + 0.5).clamp(0, 1)  # (F, 3, H, W)
            if hp.clip_frames is not None:
                frames = frames[hp.clip_frames]
            ip = self.processor.image_processor
            crop = (ip.crop_size["height"], ip.crop_size["width"])
            pixels = clip_pixel_values(frames, ip.size["shortest_edge"], crop, ip.image_mean, ip.image_std)
            image = F.normalize(self.clip.get_image_features(pixels.to(self.clip.model.dtype)).float(), dim=-1)
        texts = self.text_features([item["texts"]["a"], item["texts"]["b"], item["texts"]["guide"]])
        s_a, s_b, s_g = (100 * image @ texts.T).mean(0)
        weights = {k: hp[k] for k in ("w_guide", "w_balance", "w_anchor", "softmin_temperature")}
        return objective_terms(s_a, s_b, s_g, alpha, item["alpha"], weights), frames

    # -------------------------------------------------------------- loop
    def training_step(self, item: dict, batch_idx: int) -> None:
        if item["id"] is None:  # padding: this rank has no mix for this step
            # Still one optimizer step (no gradients: Adam leaves parameters and state as they are), so that
            # global_step, and the checkpoints it triggers on every rank together, stay in lockstep.
            optimizers = self.optimizers()
            (optimizers[0] if isinstance(optimizers, list) else optimizers).step()
            return None
        j = self.mix_ids.index(item["id"])
        optimizer = self.optimizers()[j] if len(self.alphas) > 1 else self.optimizers()
        alpha = self.alphas[j]
        terms, frames = self.objective(item, alpha)
        optimizer.zero_grad()
        self.manual_backward(-terms["objective"])
        before = alpha.detach().clone()
        self.remember(item["id"], terms, before)
        optimizer.step()
        with torch.no_grad():
            alpha.clamp_(*self.hparams.alpha_range)  # projected gradient ascent
        step = len(self.history.setdefault(item["id"], []))
        self.history[item["id"]].append(
            {"step": step, "alpha": float(before.mean()), **{k: float(v.detach()) for k, v in terms.items()}}
        )
        for name, value in terms.items():
            self.log(f"refine/{item['id']}/{name}", value, on_step=True, rank_zero_only=True)
        self.log(f"refine/{item['id']}/alpha", before.mean(), on_step=True, rank_zero_only=True)
        logger = self.logger.experiment if self.logger is not None else None
        if logger is not None and hasattr(logger, "add_images") and step % self.hparams.frames_every_n_steps == 0:
            logger.add_images(f"refine/{item['id']}/frames", to_uint8(frames.detach().cpu()), step)
        return None

    def remember(self, mix_id: str, terms: dict, coefficients: Tensor) -> None:
        """Keeps each mix's best coefficients seen so far (the closed-form start is the first)."""
        step = len(self.history.get(mix_id, []))
        value = float(terms["objective"].detach())
        if mix_id not in self.best or value > self.best[mix_id]["objective"]:
            self.best[mix_id] = {"objective": value, "alpha": coefficients.detach().cpu().clone(), "step": step}

    def owned(self) -> list[bool]:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        items = [i["id"] for i in self.trainer.datamodule.items]
        return [items.index(m) % world == rank if m in items else rank == 0 for m in self.mix_ids]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Every rank calls this; the saved coefficients and Adam states of each mix come from its owner."""
        owned = self.owned()
        merged = _merge_table([p.data for p in self.alphas], owned)
        state = checkpoint["state_dict"]
        for j, value in enumerate(merged):
            state[f"alphas.{j}"] = value
        gathered = _gather((owned, checkpoint.get("optimizer_states"), self.history, self.best))
        if "optimizer_states" in checkpoint:
            checkpoint["optimizer_states"] = [
                next(states[j] for mine, states, _, _ in gathered if mine[j]) for j in range(len(self.alphas))
            ]
        history, best = self._from_owners([(mine, h, b) for mine, _, h, b in gathered])
        checkpoint["richspace"] = {"mix_ids": self.mix_ids, "alpha_0": self.alpha_0, "history": history, "best": best}

    def _from_owners(self, gathered: list[tuple[list[bool], dict, dict]]) -> tuple[dict, dict]:
        """Each mix's history and best from the rank that owns it (others may hold stale copies)."""
        history, best = {}, {}
        for j, mix_id in enumerate(self.mix_ids):
            for mine, h, b in gathered:
                if mine[j]:
                    if mix_id in h:
                        history[mix_id] = h[mix_id]
                    if mix_id in b:
                        best[mix_id] = b[mix_id]
        return history, best

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("richspace", {})
        self.history, self.best = saved.get("history", {}), saved.get("best", {})

    def on_train_end(self) -> None:
        """Every rank: score its mixes' last coefficients, merge tables; rank 0 writes the result once."""
        items = {item["id"]: item for item in self.trainer.datamodule.items}
        owned = self.owned()
        for j, mix_id in enumerate(self.mix_ids):
            done = bool(self.history.get(mix_id)) and self.history[mix_id][-1].get("final", False)  # a finished run
            if owned[j] and mix_id in items and not done:
                with torch.no_grad():
                    terms, _ = self.objective(items[mix_id], self.alphas[j].detach())
                self.remember(mix_id, terms, self.alphas[j].detach())
                self.history.setdefault(mix_id, []).append(
                    {"step": len(self.history[mix_id]), "alpha": float(self.alphas[j].mean()),
                     "final": True, **{k: float(v) for k, v in terms.items()}}
                )
        merged = _merge_table([p.data for p in self.alphas], owned)
        history, best = self._from_owners(_gather((owned, self.history, self.best)))
        for p, value in zip(self.alphas, merged):
            p.data.copy_(value)
        if self.trainer.is_global_zero:
            write_refinement(Path(self.trainer.datamodule.run_dir), self, merged, history, best)


def write_refinement(run_dir: Path, module: RefineModule, table: list[Tensor], history: dict, best: dict) -> Path:
    """refinement.json (and per-token coefficients as safetensors), atomically; infer.py reads it via alpha_from.

    The refined coefficients are the best iterate seen (the closed-form start is one), so the
    objective after is never below the objective before.
    """
    from safetensors.torch import save_file

    mixes = {}
    for j, mix_id in enumerate(module.mix_ids):
        steps = history.get(mix_id, [])
        if not steps or mix_id not in best:
            continue
        chosen = best[mix_id]["alpha"]
        entry = {
            "alpha": float(chosen.mean()),
            "alpha_closed_form": module.alpha_0[j],
            "objective_before": steps[0]["objective"],
            "objective_after": best[mix_id]["objective"],
            "best_step": best[mix_id]["step"],
            "alpha_last": float(table[j].mean()),
            "trajectory": steps,
        }
        if module.hparams.per_token:
            name = f"coefficients/{mix_id}.safetensors"
            atomic_write(run_dir / name, lambda tmp, v=chosen: save_file({"alpha": v.float().contiguous()}, tmp))
            entry["coefficients"] = name
        mixes[mix_id] = entry
    path = run_dir / "refinement.json"
    atomic_write_text(path, json.dumps({"version": 1, "mixes": mixes}, indent=1) + "\n")
    logger = module.logger.experiment if module.logger is not None else None
    if logger is not None and hasattr(logger, "add_scalar"):
        for mix_id, steps in history.items():
            for s in steps:
                for name in ("alpha", "objective", "clip_guide", "clip_a", "clip_b", "balance", "anchor"):
                    logger.add_scalar(f"trajectory/{mix_id}/{name}", s[name], s["step"])
        logger.flush()
    print(f"refinement of {len(mixes)} mixes written to {path}")
    for mix_id, e in mixes.items():
        print(f"  {mix_id}: alpha {e['alpha_closed_form']:.3f} -> {e['alpha']:.3f}, "
              f"objective {e['objective_before']:.3f} -> {e['objective_after']:.3f}")
    return path
