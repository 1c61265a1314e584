"""Trains the toy world's models from scratch: stock diffusers and transformers classes, Lightning loops.

Stages, each a LightningModule logged to TensorBoard (``OUT/logs/<stage>``) and saved in its
library's own format before the next starts (a rerun skips finished stages, so a killed
build resumes at the stage it was in):

1. ``vae``: AutoencoderKLCogVideoX (2 blocks: 32x32x9 -> 16x16x5 latents, 4 channels) on
   rendered videos; the loss weights object pixels up, since shape lives in few pixels. At
   CogVideoX's own 8x spatial / 4x temporal ratio (3 blocks here: 8x8x3 latents) a square
   and a circle differed less in latent space than a one-pixel shift, and no denoiser this
   size drew shapes; at 16x16 they differ 3x more (BENCHMARKS.md).
2. ``latents``: the VAE encodes the video pool once (posterior mean and log-variance) and
   sets ``scaling_factor`` to one over the latents' std; its decodes feed CLIP.
3. ``denoiser``: a T5EncoderModel (word-level tokenizer: captions line up word by word) and a CogVideoXTransformer3DModel
   trained together on v-prediction, as diffusers' CogVideoX fine-tuning example, with the
   pipeline's text handling (padded to the max length, no attention mask), 10% empty
   captions for classifier-free guidance, and an EMA of the weights.
4. ``generated``: the trained pipeline draws videos from the first ``generated`` pool
   captions (training combinations only) at the toy config's settings; each is kept where
   its pixel readout agrees with its caption in every attribute. The judge thus sees what
   the generator really draws, labelled by pixel facts, never by the generator's intent.
5. ``clip``: the toy judge, a CLIPModel whose vision tower takes CLIP_FRAMES evenly spaced
   frames stacked on the channel axis (so it sees motion: richspace.videotext), trained
   contrastively on clips and captions. Clips come rendered, reconstructed, decoded from
   latents off by up to one latent std (mottled), and generated (stage 4); and, rendered and
   mottled, with the motion turned up to ``clip_turn`` degrees off its direction word, the
   target split between the two nearest direction captions (cos^2 and sin^2 of the turn):
   the captions never name a diagonal, but mixes ask for one ("between up and right"). Off by
   default: the shipped judge was built without it (BENCHMARKS.md, "A judge that sees turned
   motion"). ``clip_words`` adds a softmax per attribute over its words alone ("plain",
   "striped"), so the judge reads one attribute whatever the others are; also off by default
   (BENCHMARKS.md, issue 13's sixth pass: on dev it picked no better with the shipped prior).
   ``composed`` adds a stage before it: videos drawn from two training captions composed or
   interpolated (as refinement's candidates are), labelled by their own pixels and read through
   the words alone; off by default too (same section: on dev it picked worse). ``clip_held_out``
   adds rendered and mottled videos of the held-out pair (striped triangles) with their captions,
   which the generator never sees: the judge's world is then wider than the generator's, as a
   real CLIP's is than CogVideoX's.

The pool renders the training combinations, so no stage sees a striped triangle. ``pair_seen``
puts that many striped triangles, with their captions, at the pool's end instead: the pair rare
(1% at 30), not absent, for the generator and the judge alike. That is the paper's premise, a
model that can draw the mix and is not reached by its prompt; off by default (BENCHMARKS.md,
"A world where the pair is rare").

``generator_from`` takes a finished build's VAE and denoiser (or the shipped ones: 'toy') instead of training
them, so a judge setting is compared against the shipped judge on the same generator's videos. The latents,
generated, composed and clip stages run as usual; the manifest marks the two stages reused.

The result is a CogVideoXPipeline directory and a CLIP directory, loaded by the same
``from_pretrained`` as real weights. ``python -m richspace.toy.build`` runs it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from richspace.video import to_uint8
from richspace.toy import TEXT_LEN, evaluate, toy_weights, world
from richspace.videotext import frame_indices, tensor_features

LATENT_CHANNELS = 4
CLIP_FRAMES = 3  # frames the toy judge sees at once (first, middle, last of 9)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@dataclass
class BuildConfig:
    """The toy build's knobs; the defaults are what shipped weights were trained with."""

    seed: int = 0
    pool: int = 3000  # rendered training videos
    vae_steps: int = 1100
    vae_batch: int = 8
    vae_lr: float = 2e-3
    vae_kl: float = 5e-3  # enough posterior noise that the decoder tolerates the denoiser's small errors
    denoiser_steps: int = 4000
    denoiser_batch: int = 64
    denoiser_lr: float = 1e-3
    ema_decay: float = 0.995
    caption_dropout: float = 0.1
    generated: int = 1500  # generated training videos for the judge (pool captions, readout-checked)
    generated_steps: int = 50  # the toy config's sampling settings (configs/toy.yaml)
    generated_guidance: float = 3.0
    clip_steps: int = 1500
    clip_batch: int = 128
    clip_lr: float = 2e-3
    clip_turn: float = 0.0  # degrees: the judge also sees the pool with its motion turned up to this far off its
    #   direction word (0: not). 45 reads rendered diagonals right but chose no better on dev (BENCHMARKS.md)
    clip_words: float = 0.0  # weight of the judge's per-word loss: each attribute's words alone ('striped',
    #   'triangle') against the video, so it reads an attribute apart from the others (0: not)
    composed: int = 0  # videos drawn from two training captions composed or interpolated, labelled by their pixels,
    #   that the judge reads through its words (needs clip_words > 0; 0: none)
    clip_held_out: int = 0  # rendered videos of the held-out pair (striped triangles) that only the judge trains on,
    #   with their captions: a judge whose world is wider than the generator's, as CLIP's is than CogVideoX's (0: none)
    pair_seen: int = 0  # pool videos of the held-out pair (striped triangles), with their captions, in place of as
    #   many training ones: the pair rare, not absent, for the generator and the judge alike (0: absent, as shipped)
    generator_from: str = ""  # a finished build's directory, or 'toy' (the shipped weights), whose VAE and denoiser
    #   this build takes instead of training its own: another judge for the same generator ('': train them)
    threads: int = 2


# ---- the stock models at toy size ---------------------------------------------------------------


def build_vae():
    from diffusers import AutoencoderKLCogVideoX

    return AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 2, up_block_types=("CogVideoXUpBlock3D",) * 2,
        block_out_channels=(8, 32), latent_channels=LATENT_CHANNELS, layers_per_block=1, norm_num_groups=4,
        temporal_compression_ratio=2, sample_height=world.SIZE, sample_width=world.SIZE, scaling_factor=1.0,
    )


def build_text_encoder():
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer()), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
            relative_attention_num_buckets=16, relative_attention_max_distance=64, feed_forward_proj="gated-gelu",
            dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )
    )


def build_transformer():
    from diffusers import CogVideoXTransformer3DModel

    return CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=16, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        time_embed_dim=64, text_embed_dim=64, num_layers=4, sample_width=world.SIZE // 2, sample_height=world.SIZE // 2,
        sample_frames=world.FRAMES, patch_size=4, temporal_compression_ratio=2, max_text_seq_length=TEXT_LEN,
        use_rotary_positional_embeddings=False,
    )


def build_scheduler():
    """CogVideoX-2b's scheduler settings (scaled_linear, v-prediction, zero-SNR, trailing spacing) but no SNR
    shift: CogVideoX shifts SNR down 3x for 480x720 frames; at 32x32 that leaves too few training steps at the
    noise levels where shapes form."""
    from diffusers import CogVideoXDDIMScheduler

    return CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
        snr_shift_scale=1.0, timestep_spacing="trailing",
    )


def build_clip():
    from transformers import CLIPConfig, CLIPModel

    from richspace.tiny import byte_level_clip_tokenizer

    tokenizer = byte_level_clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            image_size=world.SIZE, patch_size=4, num_channels=3 * CLIP_FRAMES,
        ),
        projection_dim=64,
    )
    return CLIPModel(config), tokenizer


def t5_tokenizer():
    from richspace.tiny import word_level_t5_tokenizer

    return word_level_t5_tokenizer(world.vocabulary(), TEXT_LEN)


# ---- data ---------------------------------------------------------------------------------------


def render_pool(count: int, seed: int, combos: list[tuple[str, ...]] | None = None
                ) -> tuple[Tensor, list[str], list[world.Attributes]]:
    """(N, F, 3, H, W) uint8 training videos, their captions and attributes, from ``combos`` (default: the
    training combinations), each once before any repeats."""
    rng = np.random.default_rng(seed)
    combos = combos or world.training_combinations()
    videos, captions, truth = [], [], []
    for i in range(count):
        combo = combos[i % len(combos)] if i < len(combos) else combos[rng.integers(len(combos))]
        attrs = world.sample_attributes(rng, combo)
        videos.append(world.render_uint8(attrs))
        captions.append(world.caption(attrs.colour, attrs.shape, attrs.pattern, attrs.direction))
        truth.append(attrs)
    return torch.from_numpy(np.stack(videos)), captions, truth


def training_pool(cfg: BuildConfig) -> tuple[Tensor, list[str], list[world.Attributes]]:
    """The pool every stage trains on: ``cfg.pool`` rendered videos, the last ``cfg.pair_seen`` of them of the
    held-out pair (drawn from their own seed, so the others are the shipped pool's first ones)."""
    videos, captions, truth = render_pool(cfg.pool - cfg.pair_seen, cfg.seed)
    if not cfg.pair_seen:
        return videos, captions, truth
    rare, rare_captions, rare_truth = render_pool(cfg.pair_seen, cfg.seed + 7, world.held_out_pair_combinations())
    return torch.cat([videos, rare]), captions + rare_captions, truth + rare_truth


class Indexed(Dataset):
    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> int:
        return i


def _loader(count: int, batch: int, seed: int) -> DataLoader:
    return DataLoader(Indexed(count), batch_size=batch, shuffle=True, drop_last=True,
                      generator=torch.Generator().manual_seed(seed))


def to_vae_input(videos: Tensor) -> Tensor:
    """(B, F, 3, H, W) uint8 -> (B, 3, F, H, W) in [-1, 1], the VAE's layout."""
    return videos.permute(0, 2, 1, 3, 4).float() / 127.5 - 1.0


def to_uint8_video(frames: Tensor) -> Tensor:
    """The VAE's (B, 3, F, H, W) output in [-1, 1] -> (B, F, 3, H, W) uint8."""
    return to_uint8((frames + 1) / 2).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def mottled(vae, mean: Tensor, scale: float, noise: torch.Generator) -> Tensor:
    """(B, F, 3, H, W) uint8 decodes of latents ``mean`` (the VAE's layout) each off by up to one latent std
    (``1 / scale``): mottled frames, as generated videos are."""
    sigma = torch.rand(len(mean), 1, 1, 1, 1, generator=noise) / scale
    return to_uint8_video(vae.decode(mean + sigma * torch.randn(mean.shape, generator=noise)).sample)


@torch.no_grad()
def posteriors(vae, clips: Tensor) -> list:
    """The VAE's posterior (``latent_dist``) of (N, F, 3, H, W) uint8 ``clips``, chunk by chunk of 64."""
    return [vae.encode(to_vae_input(c)).latent_dist for c in clips.split(64)]


@torch.no_grad()
def decodes(vae, means: list[Tensor]) -> Tensor:
    """(N, F, 3, H, W) uint8 reconstructions: the decodes of ``posteriors``' means, chunk by chunk."""
    return torch.cat([to_uint8_video(vae.decode(m).sample) for m in means])


def mottled_decodes(vae, means: list[Tensor], scale: float, seed: int) -> Tensor:
    """(N, F, 3, H, W) uint8 ``mottled`` decodes of ``posteriors``' means, chunk by chunk, one noise from ``seed``."""
    noise = torch.Generator().manual_seed(seed)
    return torch.cat([mottled(vae, m, scale, noise) for m in means])


def turned_pool(truth: list[world.Attributes], turn: float, seed: int) -> tuple[Tensor, list[world.Attributes]]:
    """The pool's videos again with their motion turned off its direction word by up to ``turn`` degrees either
    way (uniform): (N, F, 3, H, W) uint8 and their attributes. Only the judge trains on these."""
    rng = np.random.default_rng([seed, 1])
    turned = [replace(a, turn=float(rng.uniform(-turn, turn))) for a in truth]
    return torch.from_numpy(np.stack([world.render_uint8(a) for a in turned])), turned


def _cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def _adamw(params, lr: float, total: int, warmup: int = 100):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(s, total, warmup))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def readout_accuracy(videos, truth: list[world.Attributes]) -> dict[str, float]:
    """Fraction of videos whose readout matches the truth, per attribute."""
    hits = {"colour": 0, "shape": 0, "pattern": 0, "direction": 0}
    for video, attrs in zip(videos, truth):
        read = world.readout(np.asarray(video))
        for key in hits:
            hits[key] += read.get(key) == getattr(attrs, key)
    return {key: round(value / len(truth), 3) for key, value in hits.items()}


# ---- stages -------------------------------------------------------------------------------------


class VAEModule(L.LightningModule):
    """AutoencoderKLCogVideoX: object-weighted MSE + L1 on posterior samples, plus a KL term.

    The KL keeps the latents near zero mean and the posterior's noise large enough (a few
    percent of the latents' spread) that the decoder maps slightly-off latents, as a denoiser
    makes them, to clean frames rather than speckles.
    """

    def __init__(self, videos: Tensor, steps: int, lr: float, kl_weight: float, object_weight: float = 4.0):
        super().__init__()
        self.videos, self.steps, self.lr = videos, steps, lr
        self.kl_weight, self.object_weight = kl_weight, object_weight
        self.vae = build_vae()

    def training_step(self, index: Tensor, batch_idx: int) -> Tensor:
        x = to_vae_input(self.videos[index])
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample()).sample
        weight = 1.0 + self.object_weight * (x.amax(dim=1, keepdim=True) > -0.8).float()  # object and streak pixels
        err = recon - x
        mse, l1 = (weight * err**2).mean(), (weight * err.abs()).mean()
        kl = 0.5 * (posterior.mean**2 + posterior.var - 1 - posterior.logvar).mean()
        loss = mse + l1 + self.kl_weight * kl
        self.log_dict({"vae/loss": loss, "vae/mse": (err**2).mean(), "vae/kl": kl}, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return _adamw(self.vae.parameters(), self.lr, self.steps)


class DenoiserModule(L.LightningModule):
    """T5 encoder and CogVideoX transformer on v-prediction, with caption dropout for guidance."""

    def __init__(self, mean: Tensor, logvar: Tensor, captions: list[str], steps: int, lr: float, dropout: float):
        super().__init__()
        self.mean, self.std = mean, (0.5 * logvar).exp()  # (N, F', C, h, w), already scaled
        tokenizer = t5_tokenizer()
        ids = tokenizer(captions + [""], padding="max_length", max_length=TEXT_LEN, truncation=True,
                        return_tensors="pt").input_ids
        self.ids, self.empty = ids[:-1], ids[-1]
        self.steps, self.lr, self.dropout = steps, lr, dropout
        self.text_encoder = build_text_encoder()
        self.transformer = build_transformer()
        self.scheduler = build_scheduler()

    def training_step(self, index: Tensor, batch_idx: int) -> Tensor:
        latents = self.mean[index] + self.std[index] * torch.randn_like(self.mean[index])
        ids = self.ids[index].clone()
        ids[torch.rand(len(ids)) < self.dropout] = self.empty
        text = self.text_encoder(ids)[0]  # as the pipeline: padded, no attention mask
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(ids),))
        noise = torch.randn_like(latents)
        noisy = self.scheduler.add_noise(latents, noise, t)
        target = self.scheduler.get_velocity(latents, noise, t)
        pred = self.transformer(hidden_states=noisy, encoder_hidden_states=text, timestep=t, return_dict=False)[0]
        loss = F.mse_loss(pred, target)
        self.log("denoiser/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        params = list(self.text_encoder.parameters()) + list(self.transformer.parameters())
        return _adamw(params, self.lr, self.steps, warmup=200)


def neighbour_share(direction: str, turn: float) -> tuple[str, float]:
    """The direction word a motion turned ``turn`` degrees off ``direction`` leans to, and the share of the target
    ``direction`` keeps: cos^2 of the turn (the neighbour takes the rest; even at 45 degrees)."""
    angle = (world.ANGLES[direction] + math.copysign(90.0, turn)) % 360.0
    neighbour = min(world.ANGLES, key=lambda d: world.hue_distance(angle, world.ANGLES[d]))
    return neighbour, math.cos(math.radians(turn)) ** 2


def caption_target(attrs: world.Attributes, index: dict[tuple[str, ...], int]) -> Tensor:
    """(captions,) the judge's target for a video: one-hot at its caption; for motion turned off its direction
    word, split between that caption and the neighbouring direction's as cos^2 and sin^2 of the turn (even at 45
    degrees), as a hue between colour words sits between them. A neighbour that is no training caption gets none."""
    target = torch.zeros(len(index))
    own = (attrs.colour, attrs.shape, attrs.pattern, attrs.direction)
    direction, share = neighbour_share(attrs.direction, attrs.turn)
    neighbour = own[:3] + (direction,)
    if not attrs.turn or neighbour not in index:
        share = 1.0
    target[index[own]] = share
    if share < 1.0:
        target[index[neighbour]] = 1.0 - share
    return target


def judge_words() -> list[tuple[str, str]]:
    """(attribute, value) of every word the judge reads alone, attribute by attribute (evaluate.ATTRIBUTES)."""
    return [(a, v) for a in evaluate.ATTRIBUTES for v in evaluate.VALUES[a]]


def word_target(attrs: world.Attributes) -> Tensor:
    """(words,) a video's target over ``judge_words``: one-hot per attribute, its direction split as
    ``caption_target`` splits it. Any pair, a striped triangle too: words are no captions."""
    words = judge_words()
    target = torch.zeros(len(words))
    for attribute in ("colour", "shape", "pattern"):
        target[words.index((attribute, getattr(attrs, attribute)))] = 1.0
    direction, share = neighbour_share(attrs.direction, attrs.turn) if attrs.turn else (attrs.direction, 1.0)
    target[words.index(("direction", attrs.direction))] = share
    target[words.index(("direction", direction))] += 1.0 - share
    return target


class CLIPModule(L.LightningModule):
    """The toy judge (CLIPModel on CLIP_FRAMES stacked frames) against every training caption at once.

    There are only ~100 training captions, so each step encodes all of them and each frame's
    loss is a softmax over all (the captions that differ from its own in one attribute are the
    hard negatives that in-batch InfoNCE rarely draws), plus one softmax per attribute over the
    captions that differ in that attribute alone: the choice the quality floor's ranking makes.
    """

    def __init__(self, views: Tensor, truth: list[list[world.Attributes]], steps: int, lr: float, words: float = 0.0,
                 composed: Tensor | None = None, composed_targets: Tensor | None = None,
                 combos: list[tuple[str, ...]] | None = None):
        """views: (V, N, F, 3, H, W) uint8, V looks of the N pool videos (rendered, reconstructed, turned, ...);
        ``truth[v][n]`` is what view v of video n shows (a turned view moves off its direction word). ``words``:
        the weight of a softmax per attribute over its words alone ('plain', 'striped'), the target each word's
        share of the video's caption target: the judge learns to read an attribute whatever the others are.
        ``composed`` (M, F, 3, H, W) uint8 and ``composed_targets`` (M, words): more videos, read through the
        words alone (``word_target``), half a batch of them a step. ``combos``: the captions the judge reads (default:
        the training combinations; every view's videos must show one of them)."""
        super().__init__()
        if composed is not None and not words:
            raise ValueError("composed videos are read through the judge's words: give clip_words > 0")
        self.views = views
        self.steps, self.lr, self.words = steps, lr, words
        self.composed, self.composed_targets = composed, composed_targets
        self.clip, self.tokenizer = build_clip()
        combos = combos or world.training_combinations()
        index = {c: i for i, c in enumerate(combos)}
        self.text = self.tokenizer([world.caption(*c) for c in combos], padding=True, return_tensors="pt")  # once
        # word_of[c, w]: 1 where caption c has word w; words ordered attribute by attribute (evaluate.ATTRIBUTES).
        listed = judge_words()
        self.word_text = self.tokenizer([world.attribute_text(a, v) for a, v in listed], padding=True,
                                        return_tensors="pt")
        self.word_of = torch.tensor([[float(c[evaluate.ATTRIBUTES.index(a)] == v) for a, v in listed] for c in combos])
        self.word_groups = [[i for i, (a, _) in enumerate(listed) if a == attribute]
                            for attribute in evaluate.ATTRIBUTES]
        self.targets = torch.stack([torch.stack([caption_target(a, index) for a in view]) for view in truth])
        self.labels = self.targets.argmax(-1)  # (V, N): each look's nearest caption
        # groups[c, a]: the training combinations equal to c but for attribute a (c itself included), padded with -1.
        values = [evaluate.VALUES[a] for a in evaluate.ATTRIBUTES]  # the order of a combination's fields
        width = max(len(v) for v in values)
        groups = torch.full((len(combos), len(values), width), -1)
        for c, i in index.items():
            for a, options in enumerate(values):
                members = [index[v] for v in (c[:a] + (o,) + c[a + 1:] for o in options) if v in index]
                groups[i, a, : len(members)] = torch.tensor(members)
        self.groups = groups
        self.register_buffer("pixel_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def image_features(self, videos: Tensor) -> Tensor:
        """(B, D) unit features of (B, F, 3, H, W) uint8 videos: CLIP_FRAMES of their frames stacked."""
        clips = videos[:, frame_indices(world.FRAMES, CLIP_FRAMES)]  # (B, k, 3, H, W)
        pixels = ((clips.float() / 255 - self.pixel_mean) / self.pixel_std).flatten(1, 2)  # (B, 3k, H, W)
        return F.normalize(tensor_features(self.clip.get_image_features(pixel_values=pixels)), dim=-1)

    def word_loss(self, image: Tensor, targets: Tensor, words: Tensor) -> Tensor:
        """The mean over attributes of each attribute's softmax over its words, against ``targets`` (B, words)."""
        logits = self.clip.logit_scale.exp() * image @ words.T  # (B, every attribute's words)
        return torch.stack([F.cross_entropy(logits[:, g], targets[:, g]) for g in self.word_groups]).mean()

    def training_step(self, index: Tensor, batch_idx: int) -> Tensor:
        view = torch.randint(0, len(self.views), (len(index),))
        text = self.text
        image = self.image_features(self.views[view, index])
        captions = F.normalize(tensor_features(self.clip.get_text_features(
            input_ids=text.input_ids, attention_mask=text.attention_mask)), dim=-1)
        logits = self.clip.logit_scale.exp() * image @ captions.T  # (B, all training captions)
        targets = self.targets[view, index]  # (B, captions): one-hot, or split between two directions
        full = F.cross_entropy(logits, targets)
        groups = self.groups[self.labels[view, index]]  # (B, attributes, width)
        grouped = logits.gather(1, groups.clamp(min=0).flatten(1)).view(groups.shape).masked_fill(groups < 0, -1e4)
        wanted = targets.gather(1, groups.clamp(min=0).flatten(1)).view(groups.shape).masked_fill(groups < 0, 0.0)
        wanted = wanted / wanted.sum(-1, keepdim=True)  # each attribute's share among its own options
        per_attribute = F.cross_entropy(grouped.flatten(0, 1), wanted.flatten(0, 1))
        loss = full + per_attribute
        logged = {"clip/full": full, "clip/per_attribute": per_attribute}
        if self.words:
            words = F.normalize(tensor_features(self.clip.get_text_features(
                input_ids=self.word_text.input_ids, attention_mask=self.word_text.attention_mask)), dim=-1)
            logged["clip/words"] = self.word_loss(image, targets @ self.word_of, words)  # each word's share
            loss = loss + self.words * logged["clip/words"]
            if self.composed is not None and len(self.composed):
                pick = torch.randint(0, len(self.composed), (max(1, len(index) // 2),))
                logged["clip/composed"] = self.word_loss(self.image_features(self.composed[pick]),
                                                         self.composed_targets[pick], words)
                loss = loss + self.words * logged["clip/composed"]
        self.log_dict({"clip/loss": loss, **logged}, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return _adamw(self.clip.parameters(), self.lr, self.steps)


def generate_pool(pipeline: Path, captions: list[str], truth: list[world.Attributes], cfg: BuildConfig,
                  batch: int = 32) -> tuple[Tensor, Tensor]:
    """(N, F, 3, H, W) uint8 videos the trained pipeline draws from ``captions`` (seed ``cfg.seed`` * 10**6 + i:
    no evaluation seed), and (N,) bool: whether each one's readout agrees with its caption's attributes."""
    from richspace.encoding import PromptEncoder
    from richspace.sampler import Sampler

    pipe = Sampler(str(pipeline), "float32", num_frames=world.FRAMES, height=world.SIZE, width=world.SIZE).load("cpu").pipe
    encoder = PromptEncoder(pipeline, "", TEXT_LEN)
    seeds = [cfg.seed * 10**6 + 10**5 + i for i in range(len(captions))]
    made = evaluate.generate_captions(pipe, encoder, captions, seeds, cfg.generated_steps, cfg.generated_guidance,
                                      TEXT_LEN, batch=batch)
    kept = []
    for video, attrs in zip(made, truth):
        read = world.readout(video.numpy())
        kept.append(all(read.get(a) == getattr(attrs, a) for a in evaluate.ATTRIBUTES))
    return torch.stack(made), torch.tensor(kept)


COMPOSED_WEIGHTS = ((1.5, 1.5), (2.0, 1.0), (1.0, 2.0), (1.0, 1.0), (2.0, 2.0))  # as refinement's grid composes


def composed_pool(pipeline: Path, cfg: BuildConfig) -> tuple[Tensor, Tensor]:
    """(M, F, 3, H, W) uint8 videos the trained pipeline draws from two training captions that differ in one or two
    attributes, composed while sampling (weights from COMPOSED_WEIGHTS) or interpolated (alpha 0.3, 0.5, 0.7, at
    the guidance scale), on seeds no evaluation uses; and (M, words) what each one's pixels show (``word_target``).
    Videos with no object or no motion are left out. Mixes ask the judge about such videos, which single
    captions never draw (a striped triangle, a hue between words), so it learns them from their pixels."""
    from richspace.encoding import PromptEncoder
    from richspace.sampler import Sampler

    sampler = Sampler(str(pipeline), "float32", num_frames=world.FRAMES, height=world.SIZE, width=world.SIZE,
                      num_inference_steps=cfg.generated_steps, guidance_scale=cfg.generated_guidance,
                      max_sequence_length=TEXT_LEN).load("cpu")
    encoder = PromptEncoder(pipeline, "", TEXT_LEN)
    (negative,), _ = encoder([""])
    combos = world.training_combinations()
    rng = np.random.default_rng(cfg.seed + 2)
    videos, targets = [], []
    for i in range(cfg.composed):
        a = combos[int(rng.integers(len(combos)))]
        while True:  # B: A with one or two attributes changed, itself a training combination
            b = list(a)
            for j in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
                values = evaluate.VALUES[evaluate.ATTRIBUTES[j]]
                b[j] = values[int(rng.integers(len(values)))]
            if tuple(b) in combos and tuple(b) != a:
                break
        texts, _ = encoder([world.caption(*a), world.caption(*b)])
        if rng.random() < 0.5:
            weights = torch.tensor(COMPOSED_WEIGHTS[int(rng.integers(len(COMPOSED_WEIGHTS)))], dtype=texts.dtype)
        else:
            alpha = float(rng.choice([0.3, 0.5, 0.7]))
            texts, weights = alpha * texts[0] + (1 - alpha) * texts[1], None
        with torch.no_grad():
            frames = sampler.sample(texts, negative, cfg.seed * 10**6 + 2 * 10**5 + i, 0, None, weights)
        video = to_uint8(frames.float())
        read = world.readout(video.numpy())
        if not read["present"] or read["direction"] == "still":
            continue
        turn = (read["angle"] - world.ANGLES[read["direction"]] + 180.0) % 360.0 - 180.0  # counter-clockwise
        videos.append(video)
        targets.append(word_target(world.Attributes(read["hue"], read["shape"], read["pattern"], read["direction"],
                                                    turn=turn)))
    if not videos:
        empty = torch.zeros(0, world.FRAMES, 3, world.SIZE, world.SIZE, dtype=torch.uint8)
        return empty, torch.zeros(0, len(judge_words()))
    return torch.stack(videos), torch.stack(targets)


# ---- the build ----------------------------------------------------------------------------------


def _trainer(out: Path, stage: str, steps: int, callbacks=()) -> L.Trainer:
    from lightning.pytorch.loggers import TensorBoardLogger

    return L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, logger=TensorBoardLogger(out / "logs", name=stage),
        enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=20, callbacks=list(callbacks),
        enable_progress_bar=False, deterministic=False,
    )


def _done(out: Path, stage: str) -> bool:
    return (out / "stages" / f"{stage}.json").is_file()


def _mark(out: Path, stage: str, seconds: float, **extra) -> None:
    (out / "stages").mkdir(parents=True, exist_ok=True)
    (out / "stages" / f"{stage}.json").write_text(json.dumps({"seconds": round(seconds, 1), **extra}) + "\n")


def reused_generator(generator_from: str) -> Path | None:
    """The build directory whose cogvideox/ a ``generator_from`` build takes ('toy': the shipped weights; '': none);
    a one-line ValueError where it holds no finished pipeline."""
    if not generator_from:
        return None
    source = toy_weights() if generator_from == "toy" else Path(generator_from)
    if not (source / "cogvideox" / "model_index.json").is_file():
        raise ValueError(f"--generator_from {generator_from}: no trained pipeline in {source / 'cogvideox'}; "
                         "give a finished build's directory or 'toy'")
    return source


def build(out: str | Path, config: BuildConfig | None = None) -> Path:
    """Trains every stage into ``out`` (skipping finished ones); returns ``out`` holding cogvideox/ and clip/."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline
    from lightning.pytorch.callbacks import EMAWeightAveraging
    from safetensors.torch import load_file, save_file
    from transformers import CLIPImageProcessor, CLIPProcessor

    cfg = config or BuildConfig()
    if cfg.composed and not cfg.clip_words:  # before any stage: the judge would refuse them only at the end
        raise ValueError("--composed videos are read through the judge's words: give --clip_words > 0 too")
    if not 0 <= cfg.pair_seen < cfg.pool:
        raise ValueError(f"--pair_seen {cfg.pair_seen}: give a number of pool videos from 0 to {cfg.pool - 1}")
    source = reused_generator(cfg.generator_from)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "build_config.json"
    if saved.is_file() and json.loads(saved.read_text()) != asdict(cfg):
        raise ValueError(f"{out} holds a build with other settings; give a new --out (or delete it to start over)")
    if not saved.is_file():
        saved.write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    torch.set_num_threads(cfg.threads)
    start = time.time()
    videos, captions, truth = training_pool(cfg)  # rendered again on a resume: cheaper than storing
    _mark(out, "pool", time.time() - start)

    if source is not None and not _done(out, "denoiser"):  # the generator as trained there, stages marked reused
        shutil.rmtree(out / "cogvideox", ignore_errors=True)
        shutil.copytree(source / "cogvideox", out / "cogvideox")
        shutil.rmtree(out / "stage-vae", ignore_errors=True)
        shutil.copytree(source / "cogvideox" / "vae", out / "stage-vae")
        for stage in ("vae", "denoiser"):
            _mark(out, stage, 0.0, reused=str(source))

    if not _done(out, "vae"):
        start = time.time()
        L.seed_everything(cfg.seed, verbose=False)
        module = VAEModule(videos, cfg.vae_steps, cfg.vae_lr, cfg.vae_kl)
        _trainer(out, "vae", cfg.vae_steps).fit(module, _loader(len(videos), cfg.vae_batch, cfg.seed))
        module.vae.save_pretrained(out / "stage-vae")
        _mark(out, "vae", time.time() - start)

    if not _done(out, "latents"):
        start = time.time()
        vae = AutoencoderKLCogVideoX.from_pretrained(out / "stage-vae").eval()
        dists = posteriors(vae, videos)
        means = [d.mean for d in dists]
        mean, logvar = torch.cat(means), torch.cat([d.logvar for d in dists])
        recons = decodes(vae, means)
        scale = float(1.0 / mean.std())
        rough = mottled_decodes(vae, means, scale, cfg.seed)
        vae.register_to_config(scaling_factor=scale)
        vae.save_pretrained(out / "stage-vae")
        # The transformer's layout: (N, F', C, h, w), scaled as the pipeline scales.
        save_file({"mean": (mean * scale).permute(0, 2, 1, 3, 4).contiguous(),
                   "logvar": (logvar + 2 * math.log(scale)).permute(0, 2, 1, 3, 4).contiguous(),
                   "recons": recons.contiguous(), "rough": rough.contiguous()},
                  out / "latents.safetensors")
        psnr = float(10 * torch.log10(1.0 / ((recons.float() - videos.float()) / 255).pow(2).mean()))
        _mark(out, "latents", time.time() - start, scaling_factor=scale, psnr=round(psnr, 2),
              reconstruction_readout=readout_accuracy(recons[:500], truth[:500]))

    cached = load_file(out / "latents.safetensors")

    if not _done(out, "denoiser"):
        start = time.time()
        L.seed_everything(cfg.seed, verbose=False)
        module = DenoiserModule(cached["mean"], cached["logvar"], captions, cfg.denoiser_steps, cfg.denoiser_lr,
                                cfg.caption_dropout)
        ema = EMAWeightAveraging(decay=cfg.ema_decay, use_buffers=True)
        _trainer(out, "denoiser", cfg.denoiser_steps, [ema]).fit(
            module, _loader(len(videos), cfg.denoiser_batch, cfg.seed))
        # After fit, the callback has swapped the EMA weights into the module.
        pipe = CogVideoXPipeline(
            tokenizer=t5_tokenizer(), text_encoder=module.text_encoder.eval(),
            vae=AutoencoderKLCogVideoX.from_pretrained(out / "stage-vae"),
            transformer=module.transformer.eval(), scheduler=build_scheduler(),
        )
        pipe.save_pretrained(out / "cogvideox")
        _mark(out, "denoiser", time.time() - start)

    if not _done(out, "generated"):
        start = time.time()
        generated, kept = generate_pool(out / "cogvideox", captions[: cfg.generated], truth[: cfg.generated], cfg)
        save_file({"videos": generated.contiguous(), "kept": kept}, out / "generated.safetensors")
        _mark(out, "generated", time.time() - start, videos=len(kept), kept=round(float(kept.float().mean()), 3))

    if cfg.composed and not _done(out, "composed"):
        start = time.time()
        drawn, targets = composed_pool(out / "cogvideox", cfg)
        save_file({"videos": drawn.contiguous(), "targets": targets.contiguous()}, out / "composed.safetensors")
        _mark(out, "composed", time.time() - start, videos=cfg.composed, kept=len(drawn))

    if not _done(out, "clip"):
        start = time.time()
        L.seed_everything(cfg.seed, verbose=False)
        made = load_file(out / "generated.safetensors")
        composed = load_file(out / "composed.safetensors") if cfg.composed else {}
        drawn = videos.clone()  # where no generated video agrees with its caption, the rendered one stands in
        drawn[: len(made["kept"])][made["kept"]] = made["videos"][made["kept"]]
        if cfg.clip_held_out or cfg.clip_turn:  # only these encode and decode more videos
            vae = AutoencoderKLCogVideoX.from_pretrained(out / "stage-vae").eval()
            scale = vae.config.scaling_factor
        looks, seen = [videos, cached["recons"], cached["rough"], drawn], truth
        wider = cfg.pair_seen or cfg.clip_held_out  # the judge reads the held-out pair's captions too
        combos = world.training_combinations() + world.held_out_pair_combinations() if wider else None
        if cfg.clip_held_out:  # rendered and mottled only: the generator draws none to stand in for generated ones
            extra, _, extra_truth = render_pool(cfg.clip_held_out, cfg.seed + 2, world.held_out_pair_combinations())
            means = [d.mean for d in posteriors(vae, extra)]  # encoded once: reconstructed and mottled decode these
            rough = mottled_decodes(vae, means, scale, cfg.seed + 2)
            looks = [torch.cat(pair) for pair in zip(looks, [extra, decodes(vae, means), rough, rough])]
            seen = truth + extra_truth
        seen = [seen] * 4
        if cfg.clip_turn:  # motion between direction words, rendered and mottled (generated diagonals look so)
            turned, turned_truth = turned_pool(seen[0], cfg.clip_turn, cfg.seed)
            rough = mottled_decodes(vae, [d.mean for d in posteriors(vae, turned)], scale, cfg.seed + 1)
            looks, seen = looks + [turned, rough], seen + [turned_truth] * 2
        module = CLIPModule(torch.stack(looks), seen, cfg.clip_steps, cfg.clip_lr, cfg.clip_words,
                            composed.get("videos"), composed.get("targets"), combos)
        _trainer(out, "clip", cfg.clip_steps).fit(module, _loader(len(looks[0]), cfg.clip_batch, cfg.seed))
        module.clip.eval().save_pretrained(out / "clip")
        processor = CLIPImageProcessor(size={"shortest_edge": world.SIZE},
                                       crop_size={"height": world.SIZE, "width": world.SIZE},
                                       image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
        CLIPProcessor(image_processor=processor, tokenizer=module.tokenizer).save_pretrained(out / "clip")
        _mark(out, "clip", time.time() - start)
    return out
