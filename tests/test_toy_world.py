"""The toy world: readouts exact on rendered videos, the held-out split, mix verdicts, the fixed benchmark inputs."""

import dataclasses
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from richspace.specs import load_specs
from richspace.toy import world

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("combo", world.all_combinations(), ids=lambda c: "-".join(c))
def test_readout_is_exact_on_rendered_videos(combo):
    rng = np.random.default_rng(zlib.crc32("-".join(combo).encode()))
    for _ in range(2):  # random hue within the colour's band; a start off centre, as an off-centre video has
        sampled = world.sample_attributes(rng, combo)
        attrs = dataclasses.replace(sampled, offset=tuple(int(v) for v in rng.integers(-3, 4, size=2)))
        read = world.readout(world.render_uint8(attrs))
        assert read["present"]
        assert (read["colour"], read["shape"], read["pattern"], read["direction"]) == combo
        assert world.hue_distance(read["hue"], attrs.hue) < 1.0  # hue survives white stripes and uint8
        assert read["motion"] == pytest.approx(world.FRAMES - 1, abs=0.6)


def test_readout_of_floats_matches_uint8_and_an_empty_video_has_no_object():
    attrs = world.Attributes(200.0, "triangle", "striped", "up", (2, -1))
    assert world.readout(world.render(attrs))["shape"] == world.readout(world.render_uint8(attrs))["shape"] == "triangle"
    empty = world.readout(np.zeros((world.FRAMES, 3, world.SIZE, world.SIZE), np.uint8))
    assert empty == {"present": False, "mask_pixels": 0}


@pytest.mark.parametrize("direction", list(world.DIRECTIONS))
def test_a_single_frame_shows_the_direction(direction):
    """A per-frame CLIP needs the motion in each frame: the object is brighter towards its leading edge."""
    frame = world.render(world.Attributes(100.0, "circle", "plain", direction))[world.FRAMES // 2]
    brightness = frame.max(axis=0)
    mask = brightness > world.THRESHOLD
    ys, xs = np.nonzero(mask)
    ahead = (xs - xs.mean()) * world.DIRECTIONS[direction][0] + (ys - ys.mean()) * world.DIRECTIONS[direction][1]
    lead, trail = brightness[ys[ahead > 2], xs[ahead > 2]].mean(), brightness[ys[ahead < -2], xs[ahead < -2]].mean()
    assert lead > trail + 0.2, (lead, trail)


def test_colour_words_and_captions():
    assert world.colour_word(29.0) == "red" and world.colour_word(31.0) == "yellow" and world.colour_word(350) == "red"
    assert world.caption("blue", "circle", "striped", "up") == "a blue striped circle moving up"
    assert world.caption("red", "square", "plain", "left") == "a red square moving left"


def test_held_out_split():
    held = world.held_out_combinations()
    train = world.training_combinations()
    assert len(held) == 12 and held == world.held_out_combinations()  # a fixed draw
    assert not set(held) & set(train)
    assert not any((c[1], c[2]) in world.HELD_OUT_PAIRS for c in train + held)  # striped triangles: never trained
    seen_pairs = {(i, j, c[i], c[j]) for c in train for i in range(4) for j in range(i + 1, 4)}
    for c in held:  # every pair of a held-out combination was seen in training
        assert all((i, j, c[i], c[j]) in seen_pairs for i in range(4) for j in range(i + 1, 4))


def test_judge():
    read = {"present": True, "hue": 30.0, "colour": "red", "shape": "square", "pattern": "plain",
            "angle": 135.0, "motion": 8.0, "direction": "up"}
    assert world.judge({"hue_between": ["red", "yellow"], "shape": "square"}, read)["success"]
    assert world.judge({"hue_between": ["yellow", "red"]}, read)["success"]  # order does not matter
    assert not world.judge({"hue_between": ["red", "yellow"]}, read | {"hue": 10.0})["success"]  # too close to red
    assert not world.judge({"hue_between": ["red", "yellow"]}, read | {"hue": 200.0})["success"]  # off the arc
    assert world.judge({"hue_between": ["magenta", "red"]}, read | {"hue": 330.0})["success"]  # across 0 degrees
    assert world.judge({"direction_between": ["up", "left"]}, read)["success"]
    assert not world.judge({"direction_between": ["up", "left"]}, read | {"angle": 100.0})["success"]
    verdict = world.judge({"shape": "circle", "pattern": "plain"}, read)
    assert verdict == {"shape": False, "pattern": True, "success": False}
    assert not world.judge({"pattern": "plain"}, {"present": False})["success"]


@pytest.mark.parametrize(
    "expect, message",
    [
        ({"shape": "hexagon"}, "expect.shape must be one of"),
        ({"hue_between": ["red"]}, "expect.hue_between must name two different values"),
        ({"hue_between": ["red", "red"]}, "two different values"),
        ({"size": 3}, "unknown expectation 'size'"),
        ({}, "'expect' must map attributes"),
    ],
)
def test_bad_expectations_are_refused(expect, message):
    with pytest.raises(ValueError, match=message):
        world.check_expect(expect, "mix 'm'")


def test_benchmark_inputs_are_fixed_in_files():
    bench = yaml.safe_load((REPO / "benchmarks" / "toy_mixing.yaml").read_text())
    assert len(bench["seeds"]) >= 8 and len(set(bench["seeds"])) == len(bench["seeds"])
    assert bench["methods"] == ["guide", "average", "finder", "refined"]
    specs = load_specs(REPO / bench["experiments"])
    assert {s.meta["guide_fails"] for s in specs} == {True, False}  # main cases and appendix cases
    assert sum(s.base is not None for s in specs) >= 2  # chains of three
    for spec in specs:
        world.check_expect(spec.meta["expect"], spec.id)
        for prompt in (spec.a, spec.b, spec.guide):
            assert prompt is None or len(prompt.encode()) < 48  # fits the toy T5's text length with </s>
    kinds = {k for s in specs for k in s.meta["expect"]}
    assert {"hue_between", "direction_between", "pattern", "shape"} <= kinds
