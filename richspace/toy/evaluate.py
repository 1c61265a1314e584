"""The toy world's quality floor: do the trained models draw, and does the CLIP see, what captions say?

For each combination and seed, a video is generated from the caption at the given settings
(the pipeline's own text handling: T5 embeddings padded to the max length, the empty prompt
as the negative) and its attributes are read from pixels. CLIP ranks the values of each
attribute: captions that differ from the prompt in that attribute alone, scored as the
metrics score (mean over frames of the cosine of CLIP features); a hit when the true value
ranks first. ``benchmarks/toy_quality.py`` prints the table; the floor the issue sets is
colour, direction and pattern >= 90%, shape >= 80%, CLIP >= 90% for every attribute.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from richspace.toy import world

ATTRIBUTES = ("colour", "shape", "pattern", "direction")
FLOOR = {"colour": 0.9, "direction": 0.9, "pattern": 0.9, "shape": 0.8}
CLIP_FLOOR = 0.9
VALUES = {"colour": list(world.COLOURS), "shape": list(world.SHAPES), "pattern": list(world.PATTERNS),
          "direction": list(world.DIRECTIONS)}


def generate_captions(pipe, encode, captions: Sequence[str], seeds: Sequence[int], steps: int, guidance: float,
                      max_sequence_length: int, batch: int = 16) -> list[torch.Tensor]:
    """One (F, 3, H, W) uint8 video per (caption, seed) pair, batched through the pipeline."""
    embeds, _ = encode(list(captions) + [""])
    negative = embeds[-1]
    videos = []
    for start in range(0, len(captions), batch):
        chunk = slice(start, start + batch)
        prompt = embeds[: len(captions)][chunk]
        out = pipe(
            prompt_embeds=prompt, negative_prompt_embeds=negative[None].expand_as(prompt),
            num_frames=world.FRAMES, height=world.SIZE, width=world.SIZE, num_inference_steps=steps,
            guidance_scale=guidance, max_sequence_length=max_sequence_length,
            generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds[chunk]], output_type="pt",
        )
        videos.extend((out.frames.float().clamp(0, 1) * 255).round().to(torch.uint8))
    return videos


@torch.no_grad()
def clip_scores(judge, videos: Sequence[torch.Tensor], texts: Sequence[str]) -> torch.Tensor:
    """(len(videos), len(texts)) the judge's scores (richspace.videotext) of uint8 videos against texts."""
    text = judge.text_features(list(texts))
    return torch.stack([judge.scores(video.float() / 255, text) for video in videos])


def clip_ranks(judge, videos, combos) -> dict[str, list[bool]]:
    """Per attribute, whether the judge ranks the true value first among captions differing in it alone."""
    hits: dict[str, list[bool]] = {a: [] for a in ATTRIBUTES}
    for video, combo in zip(videos, combos):
        options = [world.caption(*combo[:i], value, *combo[i + 1:])
                   for i, attribute in enumerate(ATTRIBUTES) for value in VALUES[attribute]]
        scores = clip_scores(judge, [video], options)[0]  # the video's feature once, every caption
        start = 0
        for i, attribute in enumerate(ATTRIBUTES):
            values = VALUES[attribute]
            best = values[int(scores[start:start + len(values)].argmax())]
            hits[attribute].append(best == combo[i])
            start += len(values)
    return hits


@torch.no_grad()
def diagonal_ranks(judge, seeds: Sequence[int]) -> dict:
    """The judge on diagonal motion, which no caption names: for rendered diagonal videos (each of the four
    diagonals, over colours, shapes, patterns and seeds), how often the two directions it lies between are the
    judge's top two of the four direction captions (``top_two``), and ``even``: the mean share the weaker of the
    two holds of their probability (softmax over the four; 0.5 is an even split, what a mix "between" wants)."""
    hits, shares = 0, []
    diagonals = [("up", "right"), ("up", "left"), ("down", "left"), ("down", "right")]
    rng = np.random.default_rng(list(seeds))
    names = list(world.DIRECTIONS)
    for seed in seeds:
        for d1, d2 in diagonals:
            colour, shape, pattern = (list(world.COLOURS)[rng.integers(6)], world.SHAPES[rng.integers(3)],
                                      world.PATTERNS[rng.integers(2)])
            hue = (world.COLOURS[colour] + rng.uniform(-30.0, 30.0)) % 360.0
            video = world.render_uint8(world.Attributes(hue, shape, pattern, f"{d1}-{d2}"))
            options = [world.caption(colour, shape, pattern, d) for d in names]
            scores = clip_scores(judge, [torch.from_numpy(video)], options)[0]
            hits += {names[i] for i in scores.topk(2).indices.tolist()} == {d1, d2}
            p = torch.softmax(scores, 0)[[names.index(d1), names.index(d2)]]
            shares.append(float(p.min() / p.sum()))
    return {"videos": len(shares), "top_two": hits / len(shares), "even": float(np.mean(shares))}


def quality(pipe, encode, judge, combos, seeds, steps: int, guidance: float, max_sequence_length: int,
            rendered: bool = False) -> dict:
    """Readout and CLIP-ranking accuracy per attribute over combos x seeds; also each video's readout.

    ``rendered``: score the world's own renders (random hue and start from the seed) instead of
    generated videos: CLIP's accuracy on ground truth, where the readout is exact by construction.
    """
    pairs = [(c, s) for c in combos for s in seeds]
    captions = [world.caption(*c) for c, _ in pairs]
    if rendered:
        videos = [torch.from_numpy(world.render_uint8(world.sample_attributes(np.random.default_rng(s), c)))
                  for c, s in pairs]
    else:
        videos = generate_captions(pipe, encode, captions, [s for _, s in pairs], steps, guidance, max_sequence_length)
    reads = [world.readout(v.numpy()) for v in videos]
    truths = [dict(zip(ATTRIBUTES, c)) for c, _ in pairs]
    readout_acc = {a: float(np.mean([r.get(a) == t[a] for r, t in zip(reads, truths)])) for a in ATTRIBUTES}
    hits = clip_ranks(judge, videos, [c for c, _ in pairs])
    clip_acc = {a: float(np.mean(h)) for a, h in hits.items()}
    return {"videos": len(videos), "readout": readout_acc, "clip": clip_acc,
            "items": [{"caption": c, "seed": s, "readout": r} for c, (_, s), r in zip(captions, pairs, reads)]}


def meets_floor(result: dict) -> list[str]:
    """The attributes below the floor (empty when the floor holds)."""
    low = [f"readout {a} {result['readout'][a]:.0%} < {f:.0%}" for a, f in FLOOR.items() if result["readout"][a] < f]
    low += [f"CLIP {a} {v:.0%} < {CLIP_FLOOR:.0%}" for a, v in result["clip"].items() if v < CLIP_FLOOR]
    return low


def load_toy(dtype: str = "float32", clip: str = "toy", pretrained: str = "toy"):
    """(pipeline without T5, encode, judge) for the shipped toy weights, or a build's pipeline directory
    (``pretrained``) and judge directory (``clip``), frozen."""
    from richspace.encoding import PromptEncoder
    from richspace.sampler import Sampler
    from richspace.weights import check_weights, resolve_weights
    from richspace.videotext import load_video_text
    from richspace.toy import TEXT_LEN

    check_weights(clip, "CLIP")  # a missing judge says so before the pipeline loads (Sampler checks its own)
    pipe = Sampler(pretrained, dtype, num_frames=world.FRAMES, height=world.SIZE, width=world.SIZE).load("cpu").pipe
    encoder = PromptEncoder(resolve_weights(pretrained, "cogvideox"), None, TEXT_LEN)
    return pipe, encoder, load_video_text(resolve_weights(clip, "clip"))
