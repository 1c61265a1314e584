"""The toy world: procedural videos of one object whose attributes a program reads back from pixels.

A video is 9 frames of 32x32 pixels on black: one object of a hue (continuous), a shape
(square, circle, triangle) and a pattern (plain, or white vertical stripes: the toy's "zebra
stripes"), moving one pixel a frame in one of four directions with a dim motion streak
behind it and its brightness ramping up from 60% at the trailing edge to full at the leading
one (a cue to the direction within one frame; the VAE keeps the ramp but loses the thin
streak; the toy judge also sees motion across frames). Captions name the nearest of six colour words and always
the pattern, so that every caption is the same six words in the same order and two captions
line up word by word, as real T5 prompts about a tiger and a zebra do: "a red striped circle
moving left", "a red plain circle moving left".

Readouts use pixels alone and are exact on rendered videos (tests/test_toy_world.py):

- mask: the largest connected region of pixels whose brightest channel exceeds 0.35 (the
  streak stays below it; stray speckles a generated video may hold are not the object);
- hue: hue of the mask's mean RGB (white stripes add grey, which leaves hue unchanged);
- pattern: striped when both white pixels (min/max channel > 0.5) and coloured ones
  (< 0.25) make up at least 15% of the mask each;
- direction: the mask centroid's motion from the first to the last frame;
- shape: the template (scaled to the mask's area, on its centroid) with the best mean IoU over frames,
  so a blurred, shrunken square still reads as a square.

Mix expectations (the ``expect`` of a toy mix spec) are pixel facts checked by ``judge``.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass
from itertools import product

import numpy as np

FRAMES, SIZE = 9, 32
COLOURS = {"red": 0.0, "yellow": 60.0, "green": 120.0, "cyan": 180.0, "blue": 240.0, "magenta": 300.0}
SHAPES = ("square", "circle", "triangle")
PATTERNS = ("plain", "striped")
DIRECTIONS = {"right": (1, 0), "up": (0, -1), "left": (-1, 0), "down": (0, 1)}  # (dx, dy), y grows downwards
# Words for the hue halfway between two neighbouring colour words: guides name them, training never shows them.
MIX_COLOURS = {("red", "yellow"): "orange", ("yellow", "green"): "lime", ("green", "cyan"): "teal",
               ("cyan", "blue"): "azure", ("blue", "magenta"): "violet", ("magenta", "red"): "pink"}
ANGLES = {"right": 0.0, "up": 90.0, "left": 180.0, "down": 270.0}
THRESHOLD = 0.35  # mask: brightest channel above this
STREAK, STREAK_GAP = 0.25, 3  # the motion streak's brightness and its offset behind the object (pixels)
RAMP = 0.6  # the object's brightness at its trailing edge (1 at the leading edge)
STRIPE = 3  # stripe width in pixels (white and coloured bands alternate)
JITTER = 0  # start position jitter in pixels, each axis: none (with one, the toy denoiser draws the average blob; BENCHMARKS.md)
SUPERSAMPLE = 4

# Compositions never seen in training: the toy's "tiger with zebra stripes". Every other pair of
# attribute values is seen, so held-out full combinations test generalisation, not a new pair.
HELD_OUT_PAIRS = {("triangle", "striped")}


@dataclass(frozen=True)
class Attributes:
    """One video's ground truth: hue in degrees, a shape, a pattern, a direction and its start offset.

    ``turn`` (degrees, counter-clockwise) rotates the motion off the direction word: the judge's
    training shows motion at any angle, labelled by its nearest words, as it shows hues between
    colour words (``training.CLIPModule``); the generator never sees it.
    """

    hue: float
    shape: str
    pattern: str
    direction: str
    offset: tuple[int, int] = (0, 0)
    turn: float = 0.0

    @property
    def colour(self) -> str:
        return colour_word(self.hue)


def colour_word(hue: float) -> str:
    """The nearest colour word to a hue (degrees, circular)."""
    return min(COLOURS, key=lambda c: hue_distance(hue, COLOURS[c]))


def hue_distance(h1: float, h2: float) -> float:
    """Circular distance between hues in degrees, in [0, 180]."""
    d = abs(h1 - h2) % 360.0
    return min(d, 360.0 - d)


def caption(colour: str, shape: str, pattern: str, direction: str) -> str:
    """The template caption, six words: 'a red plain circle moving left', 'a blue striped square moving up'."""
    return " ".join(["a", colour, pattern, shape, "moving", direction])


def attribute_text(attribute: str, value: str) -> str:
    """One attribute's words in a caption, alone: 'red', 'striped', 'triangle', 'moving left'."""
    return f"moving {value}" if attribute == "direction" else value


def vocabulary() -> list[str]:
    """Every word a toy caption or mix prompt may use: the toy T5's word-level vocabulary."""
    return ["a", "an", "and", "moving", *COLOURS, *MIX_COLOURS.values(), *SHAPES, *PATTERNS, *DIRECTIONS]


def all_combinations() -> list[tuple[str, str, str, str]]:
    """Every (colour, shape, pattern, direction): 6 x 3 x 2 x 4 = 144."""
    return list(product(COLOURS, SHAPES, PATTERNS, DIRECTIONS))


def held_out_combinations(count: int = 12, seed: int = 0) -> list[tuple[str, str, str, str]]:
    """Full combinations kept out of training for the quality floor: a fixed draw, every pair still seen.

    Combinations with a held-out pair (striped triangles) are excluded from training too, but
    they are the mixing benchmark's subject, not part of this set.
    """
    rng = np.random.default_rng(seed)
    pool = [c for c in all_combinations() if (c[1], c[2]) not in HELD_OUT_PAIRS]
    chosen: list[tuple[str, str, str, str]] = []
    for i in rng.permutation(len(pool)):
        candidate = chosen + [pool[i]]
        if _pairs_covered([c for c in pool if c not in candidate]):
            chosen = candidate
        if len(chosen) == count:
            break
    return sorted(chosen)


def _pairs_covered(train: list[tuple[str, ...]]) -> bool:
    seen = {(i, j, c[i], c[j]) for c in train for i in range(4) for j in range(i + 1, 4)}
    values = (list(COLOURS), SHAPES, PATTERNS, list(DIRECTIONS))
    needed = {
        (i, j, a, b)
        for i in range(4)
        for j in range(i + 1, 4)
        for a in values[i]
        for b in values[j]
        if not (i, j) == (1, 2) or (a, b) not in HELD_OUT_PAIRS
    }
    return needed <= seen


def training_combinations() -> list[tuple[str, str, str, str]]:
    """The combinations training videos are drawn from."""
    held = set(held_out_combinations())
    return [c for c in all_combinations() if c not in held and (c[1], c[2]) not in HELD_OUT_PAIRS]


def held_out_pair_combinations() -> list[tuple[str, str, str, str]]:
    """Every combination with a held-out pair (the 24 striped triangles): no generator training video shows one."""
    return [c for c in all_combinations() if (c[1], c[2]) in HELD_OUT_PAIRS]


def sample_attributes(rng: np.random.Generator, combination: tuple[str, str, str, str]) -> Attributes:
    """A random video of a combination: a hue anywhere in the colour word's 60-degree band, a start within JITTER."""
    colour, shape, pattern, direction = combination
    hue = (COLOURS[colour] + rng.uniform(-30.0, 30.0)) % 360.0
    offset = tuple(int(v) for v in rng.integers(-JITTER, JITTER + 1, size=2))
    return Attributes(hue, shape, pattern, direction, offset)


def hue_rgb(hue: float) -> np.ndarray:
    """Fully saturated, full-value RGB of a hue in degrees."""
    return np.array(colorsys.hsv_to_rgb((hue % 360.0) / 360.0, 1.0, 1.0))


def shape_mask(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether points (x, y), relative to the object's centre in pixels, lie inside the shape."""
    if shape == "square":  # side 12
        return (np.abs(x) <= 6) & (np.abs(y) <= 6)
    if shape == "circle":  # diameter 14
        return x * x + y * y <= 49
    if shape == "triangle":  # pointing up: base 14, height 13
        return (y >= -6.5) & (y <= 6.5) & (np.abs(x) <= 7 * (y + 6.5) / 13)
    raise ValueError(f"unknown shape {shape!r}; use one of {SHAPES}")


def velocity(direction: str) -> tuple[float, float]:
    """(dx, dy) pixels a frame of a direction word, or of a diagonal named by two ("up-left") at the same speed.

    Diagonals are never rendered for training: they exist to test what a judge makes of motion no caption names.
    """
    parts = direction.split("-")
    if not 1 <= len(parts) <= 2 or any(p not in DIRECTIONS for p in parts):
        raise ValueError(f"unknown direction {direction!r}; use one of {list(DIRECTIONS)} or two joined by '-'")
    dx, dy = sum(DIRECTIONS[p][0] for p in parts), sum(DIRECTIONS[p][1] for p in parts)
    norm = math.hypot(dx, dy)
    if norm == 0:
        raise ValueError(f"direction {direction!r} cancels out")
    return dx / norm, dy / norm


def motion(attrs: Attributes) -> tuple[float, float]:
    """(dx, dy) pixels a frame of a video: its direction's velocity, rotated by its turn."""
    dx, dy = velocity(attrs.direction)
    if not attrs.turn:
        return dx, dy
    angle = math.atan2(-dy, dx) + math.radians(attrs.turn)
    return math.cos(angle), -math.sin(angle)


def centres(attrs: Attributes) -> np.ndarray:
    """(F, 2) object centres: one pixel a frame, the path centred on the frame plus the start offset."""
    dx, dy = motion(attrs)
    t = np.arange(FRAMES) - (FRAMES - 1) / 2
    return np.stack([SIZE / 2 + attrs.offset[0] + t * dx, SIZE / 2 + attrs.offset[1] + t * dy], axis=1)


def _subpixels() -> tuple[np.ndarray, np.ndarray]:
    s = (np.arange(SIZE * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    return np.meshgrid(s, s)  # x, y: (S*H, S*W)


def render(attrs: Attributes) -> np.ndarray:
    """(F, 3, H, W) float32 frames in [0, 1] of one video, antialiased by 4x4 supersampling."""
    xs, ys = _subpixels()
    colour = hue_rgb(attrs.hue)
    dx, dy = motion(attrs)
    frames = []
    for cx, cy in centres(attrs):
        x, y = xs - cx, ys - cy
        body = shape_mask(attrs.shape, x, y)
        streak = shape_mask(attrs.shape, x + STREAK_GAP * dx, y + STREAK_GAP * dy) & ~body
        image = np.zeros(body.shape + (3,))
        image[streak] = STREAK * colour
        image[body] = colour
        if attrs.pattern == "striped":
            white = body & (np.floor((x + 7) / STRIPE) % 2 == 1)
            image[white] = 1.0
        # Brightness ramps up towards the leading edge: a cue to the direction that survives the VAE (the streak
        # alone is too thin and dim: reconstructions lose it) and that leaves hue, mask and pattern as they were.
        ahead = np.clip((x * dx + y * dy + 7.0) / 14.0, 0.0, 1.0)
        image[body] *= (RAMP + (1.0 - RAMP) * ahead[body])[:, None]
        n = SUPERSAMPLE
        image = image.reshape(SIZE, n, SIZE, n, 3).mean(axis=(1, 3))
        frames.append(image.transpose(2, 0, 1))
    return np.stack(frames).astype(np.float32)


def render_uint8(attrs: Attributes) -> np.ndarray:
    """(F, 3, H, W) uint8, as a generated video comes out."""
    return np.round(render(attrs) * 255).astype(np.uint8)


# ---- readouts -----------------------------------------------------------------------------------


def _template_iou(shape: str, mask: np.ndarray, cx: float, cy: float) -> float:
    """IoU of a binary mask with the shape's binary template scaled to the mask's area, centroids aligned."""
    scale = math.sqrt(mask.sum() / _template_stats(shape)[1])
    inside = _placed_template(shape, round(cx * 8) / 8, round(cy * 8) / 8, round(scale * 20) / 20)
    union = (inside | mask).sum()
    return float((inside & mask).sum() / union) if union else 0.0


@functools.lru_cache(maxsize=8192)
def _placed_template(shape: str, cx: float, cy: float, scale: float) -> np.ndarray:
    """(H, W) binary template of a shape scaled by ``scale``, its centroid at (cx, cy)."""
    (ox, oy), _ = _template_stats(shape)
    xs = np.arange(SIZE) + 0.5
    x, y = np.meshgrid(xs - cx, xs - cy)
    return _coverage(shape, x / scale + ox, y / scale + oy, 1 / scale) > THRESHOLD


def _coverage(shape: str, x: np.ndarray, y: np.ndarray, pixel: float = 1.0) -> np.ndarray:
    """Fraction of each pixel (of side ``pixel``, centred at x, y relative to the shape's centre) the shape covers."""
    n = SUPERSAMPLE
    offsets = ((np.arange(n) + 0.5) / n - 0.5) * pixel
    total = np.zeros_like(x, dtype=float)
    for ox in offsets:
        for oy in offsets:
            total += shape_mask(shape, x + ox, y + oy)
    return total / (n * n)


@functools.lru_cache(maxsize=None)
def _template_stats(shape: str) -> tuple[tuple[float, float], int]:
    """The shape's thresholded pixel mask at its rendered size: its centroid relative to the shape's centre, and
    its area in pixels."""
    xs = np.arange(SIZE) + 0.5 - SIZE / 2
    x, y = np.meshgrid(xs, xs)
    inside = _coverage(shape, x, y) > THRESHOLD
    return (float(x[inside].mean()), float(y[inside].mean())), int(inside.sum())


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a (H, W) boolean mask (the object; stray speckles dropped)."""
    if not mask.any():
        return mask
    labels = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    while True:  # each region takes its largest pixel label, spreading one pixel a round
        padded = np.pad(labels, 1)
        spread = np.maximum.reduce([labels, padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        spread = np.where(mask, spread, 0)
        if np.array_equal(spread, labels):
            break
        labels = spread
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == counts.argmax()


def readout(frames: np.ndarray) -> dict:
    """Attributes read from a video's pixels: (F, 3, H, W) uint8 (or floats in [0, 1]).

    Returns present (an object shows in every frame), hue (degrees), colour (nearest word),
    pattern, striped_fraction, direction, angle (degrees, up = 90), motion (pixels), shape
    and shape_iou. Where no object shows, only present=False and the mask size.
    """
    array = np.asarray(frames)
    video = array.astype(np.float64) / (255.0 if array.dtype == np.uint8 else 1.0)
    bright = video.max(axis=1)  # (F, H, W)
    mask = np.stack([largest_component(m) for m in bright > THRESHOLD])
    sizes = mask.sum(axis=(1, 2))
    out: dict = {"present": bool((sizes >= 20).all()), "mask_pixels": int(sizes.sum())}
    if not out["present"]:
        return out
    pixels = video.transpose(0, 2, 3, 1)[mask]  # (N, 3)
    r, g, b = pixels.mean(axis=0)
    hue = colorsys.rgb_to_hsv(r, g, b)[0] * 360.0
    out["hue"] = round(float(hue), 2)
    out["colour"] = colour_word(hue)

    high, low = pixels.max(axis=1), pixels.min(axis=1)
    whiteness = low / np.maximum(high, 1e-6)
    white, coloured = float((whiteness > 0.5).mean()), float((whiteness < 0.25).mean())
    out["striped_fraction"] = round(white, 3)
    out["pattern"] = "striped" if white >= 0.15 and coloured >= 0.15 else "plain"

    ys, xs = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    cx = np.array([xs[m].mean() for m in mask])
    cy = np.array([ys[m].mean() for m in mask])
    dx, dy = cx[-1] - cx[0], cy[-1] - cy[0]
    angle = math.degrees(math.atan2(-dy, dx)) % 360.0
    out["angle"] = round(float(angle), 1)
    out["motion"] = round(float(math.hypot(dx, dy)), 2)
    out["direction"] = min(ANGLES, key=lambda d: hue_distance(angle, ANGLES[d])) if out["motion"] >= 2 else "still"

    ious = {s: float(np.mean([_template_iou(s, m, x, y) for m, x, y in zip(mask, cx, cy)])) for s in SHAPES}
    out["shape"] = max(ious, key=ious.get)
    out["shape_iou"] = round(ious[out["shape"]], 3)
    return out


# ---- mix expectations ---------------------------------------------------------------------------

EXPECT_KEYS = ("colour", "shape", "pattern", "direction", "hue_between", "direction_between")


def check_expect(expect: object, where: str) -> dict:
    """Validates a toy mix's ``expect`` mapping; raises ValueError naming the fix."""
    if not isinstance(expect, dict) or not expect:
        raise ValueError(f"{where}: 'expect' must map attributes to values, e.g. {{shape: triangle, pattern: striped}}")
    choices = {"colour": list(COLOURS), "shape": list(SHAPES), "pattern": list(PATTERNS), "direction": list(DIRECTIONS)}
    for key, value in expect.items():
        if key in choices and value not in choices[key]:
            raise ValueError(f"{where}: expect.{key} must be one of {choices[key]}; got {value!r}")
        elif key in ("hue_between", "direction_between"):
            pool = COLOURS if key == "hue_between" else DIRECTIONS
            if not (isinstance(value, list) and len(value) == 2 and all(v in pool for v in value) and value[0] != value[1]):
                raise ValueError(f"{where}: expect.{key} must name two different values of {list(pool)}; got {value!r}")
        elif key not in EXPECT_KEYS:
            raise ValueError(f"{where}: unknown expectation {key!r}; use {list(EXPECT_KEYS)}")
    return expect


def _between(value: float, ends: tuple[float, float]) -> bool:
    """Whether an angle lies in the middle half of the shorter arc between two angles (degrees)."""
    a, b = ends
    span = hue_distance(a, b)
    return hue_distance(value, a) >= span / 4 and hue_distance(value, b) >= span / 4 and (
        hue_distance(value, a) + hue_distance(value, b) <= span + 1e-6
    )


def judge(expect: dict, read: dict) -> dict[str, bool]:
    """Each expectation's verdict on a readout, and ``success``: the object shows and all hold.

    hue_between [c1, c2]: the hue lies in the middle half of the shorter arc between the two
    colour words' hues (red and yellow: 15 to 45 degrees, orange). direction_between
    [d1, d2]: the motion's angle lies in the middle half between the two directions.
    """
    verdicts: dict[str, bool] = {}
    present = read.get("present", False)
    for key, value in expect.items():
        if not present:
            verdicts[key] = False
        elif key == "hue_between":
            verdicts[key] = bool(_between(read["hue"], (COLOURS[value[0]], COLOURS[value[1]])))
        elif key == "direction_between":
            verdicts[key] = bool(read["motion"] >= 2 and _between(read["angle"], (ANGLES[value[0]], ANGLES[value[1]])))
        else:
            verdicts[key] = bool(read[key] == value)
    verdicts["success"] = bool(present and all(verdicts.values()))
    return verdicts
