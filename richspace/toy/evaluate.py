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
import torch.nn.functional as F

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
def clip_scores(clip, processor, videos: Sequence[torch.Tensor], texts: Sequence[str]) -> torch.Tensor:
    """(len(videos), len(texts)) mean over frames of the cosine between CLIP image and text features."""
    text = processor.tokenizer(list(texts), padding=True, return_tensors="pt")
    t = F.normalize(clip.get_text_features(text.input_ids, text.attention_mask).float(), dim=-1)
    rows = []
    for video in videos:
        pixels = processor.image_processor(list(video.permute(0, 2, 3, 1).numpy()), return_tensors="pt").pixel_values
        image = F.normalize(clip.get_image_features(pixels).float(), dim=-1)
        rows.append((image @ t.T).mean(0))
    return torch.stack(rows)


def clip_ranks(clip, processor, videos, combos) -> dict[str, list[bool]]:
    """Per attribute, whether CLIP ranks the true value first among captions differing in it alone."""
    hits: dict[str, list[bool]] = {a: [] for a in ATTRIBUTES}
    for video, combo in zip(videos, combos):
        options = [world.caption(*combo[:i], value, *combo[i + 1:])
                   for i, attribute in enumerate(ATTRIBUTES) for value in VALUES[attribute]]
        scores = clip_scores(clip, processor, [video], options)[0]  # the frames' features once, every caption
        start = 0
        for i, attribute in enumerate(ATTRIBUTES):
            values = VALUES[attribute]
            best = values[int(scores[start:start + len(values)].argmax())]
            hits[attribute].append(best == combo[i])
            start += len(values)
    return hits


def quality(pipe, encode, clip, processor, combos, seeds, steps: int, guidance: float, max_sequence_length: int,
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
    hits = clip_ranks(clip, processor, videos, [c for c, _ in pairs])
    clip_acc = {a: float(np.mean(h)) for a, h in hits.items()}
    return {"videos": len(videos), "readout": readout_acc, "clip": clip_acc,
            "items": [{"caption": c, "seed": s, "readout": r} for c, (_, s), r in zip(captions, pairs, reads)]}


def meets_floor(result: dict) -> list[str]:
    """The attributes below the floor (empty when the floor holds)."""
    low = [f"readout {a} {result['readout'][a]:.0%} < {f:.0%}" for a, f in FLOOR.items() if result["readout"][a] < f]
    low += [f"CLIP {a} {v:.0%} < {CLIP_FLOOR:.0%}" for a, v in result["clip"].items() if v < CLIP_FLOOR]
    return low


def load_toy(dtype: str = "float32"):
    """(pipeline without T5, encode, CLIP, processor) for the shipped toy weights, frozen."""
    from richspace.encoding import PromptEncoder
    from richspace.sampler import Sampler
    from richspace.weights import resolve_weights
    from richspace.metrics import load_clip
    from richspace.toy import TEXT_LEN

    pipe = Sampler("toy", dtype, num_frames=world.FRAMES, height=world.SIZE, width=world.SIZE).load("cpu").pipe
    encoder = PromptEncoder(resolve_weights("toy", "cogvideox"), None, TEXT_LEN)
    clip, processor = load_clip(resolve_weights("toy", "clip"))
    return pipe, encoder, clip, processor
