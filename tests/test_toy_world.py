"""The toy world: readouts exact on rendered videos, the held-out split, mix verdicts, the fixed benchmark inputs."""

import dataclasses
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from richspace.specs import load_specs, parse_specs, repeated
from richspace.tiny import word_level_t5_tokenizer
from richspace.toy import TEXT_LEN, mixes, world

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
    assert world.caption("red", "square", "plain", "left") == "a red plain square moving left"


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
    assert bench["methods"] == ["guide", "average", "finder", "compose", "refined", "learned"]
    scored, unscored = set(bench["seeds"]), {bench["fit_seed"], *bench["label_seeds"]}
    assert len(scored) == len(bench["seeds"]) and not scored & unscored  # nothing fitted or labelled is scored
    tokenizer = word_level_t5_tokenizer(world.vocabulary(), TEXT_LEN)
    ids = {}
    for split in ("dev", "test", "replication"):
        specs = load_specs(REPO / bench[split])
        ids[split] = {s.id for s in specs}
        for spec in specs:
            world.check_expect(spec.meta["expect"], spec.id)
            for prompt in (spec.a, spec.b, spec.guide):
                if prompt is not None:
                    tokens = tokenizer(prompt).input_ids
                    assert len(tokens) <= TEXT_LEN and tokenizer.unk_token_id not in tokens, prompt
    assert len(ids["dev"]) + len(ids["test"]) >= 60 and not ids["dev"] & ids["test"]
    assert len(ids["replication"]) >= 40 and not ids["replication"] & (ids["dev"] | ids["test"])


def test_generated_mixes_are_fixed_split_and_token_aligned():
    """The shipped dev/test files are what the generator writes (seed 0); every kind is in both halves; A and B
    differ in one word at the same position, as real T5 prompts about a tiger and a zebra do."""
    split = mixes.generate()
    for name in ("dev", "test"):
        assert (REPO / "configs" / "experiments" / f"toy-{name}.yaml").read_text() == mixes.render(name, split[name])
        assert {m["kind"] for m in split[name]} == {*mixes.KINDS, "chain-base"}
        bases = {m["id"] for m in split[name]}
        assert all(m["base"] in bases for m in split[name] if "base" in m)  # a chain travels with its base
    assert mixes.generate(1) != split  # the seed matters
    for m in split["dev"] + split["test"]:
        if "a" in m:  # hue and diagonal mixes differ in one word; stripes in pattern and shape, at the same places
            a, b = m["a"].split(), m["b"].split()
            assert len(a) == len(b) == 6 and 1 <= sum(x != y for x, y in zip(a, b)) <= 2, m
        expect = m["expect"]
        held_out = (expect.get("shape"), expect.get("pattern")) in world.HELD_OUT_PAIRS
        assert held_out == (m["kind"] == "stripes"), m  # only the stripes mixes ask for the never-seen pair


def test_a_contrast_prompt_holds_the_values_the_mix_does_not_want():
    """Read from the words: where the guide takes A's word the contrast has B's, where it takes B's it has A's (a
    chain's A words: its base's guide); a mix gets one exactly when its guide takes from both."""
    split = mixes.generate()
    by_id = {m["id"]: m for m in split["dev"] + split["test"]}
    with_contrast = set()
    for m in by_id.values():
        a = (m["a"] if "a" in m else by_id[m["base"]]["guide"]).split()[1:]  # the article follows the colour
        b, guide = m["b"].split()[1:], m["guide"].split()[1:]
        takes_a = [i for i, (g, x, y) in enumerate(zip(guide, a, b)) if g == x != y]
        takes_b = [i for i, (g, x, y) in enumerate(zip(guide, a, b)) if g == y != x]
        if len(guide) == len(a) and takes_a and takes_b:
            want = [b[i] if i in takes_a else a[i] if i in takes_b else g for i, g in enumerate(guide)]
            assert m["contrast"].split()[1:] == want, m
            with_contrast.add(m["kind"])
        else:
            assert "contrast" not in m, m
    assert with_contrast == {"stripes", "chain", "seen"}
    assert all("contrast" not in m for m in by_id.values() if m["kind"] in ("hue", "diagonal", "chain-base"))


def test_writing_the_mix_files_replaces_another_seed_s_only_when_asked(tmp_path, capsys):
    """python -m richspace.toy.mixes writes both halves; files of another seed (results may name their mixes) are
    kept unless --overwrite; --check says whether the files are what the seed makes."""
    assert mixes.main(["--out", str(tmp_path), "--seed", "1"]) == 0
    written = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    assert sorted(written) == ["toy-dev.yaml", "toy-test.yaml"]
    assert mixes.main(["--out", str(tmp_path), "--seed", "1", "--check"]) == 0
    assert mixes.main(["--out", str(tmp_path), "--check"]) == 1
    assert mixes.main(["--out", str(tmp_path)]) == 2
    assert "holds other mixes than --seed 0 makes; give another --out, or --overwrite" in capsys.readouterr().err
    assert {p.name: p.read_text() for p in tmp_path.glob("*.yaml")} == written
    assert mixes.main(["--out", str(tmp_path), "--overwrite"]) == 0
    assert (tmp_path / "toy-dev.yaml").read_text() == (REPO / "configs" / "experiments" / "toy-dev.yaml").read_text()


def test_diagonal_motion_renders_and_reads_between_its_two_directions():
    for diagonal, angle in (("up-left", 135.0), ("down-right", 315.0), ("up-right", 45.0)):
        read = world.readout(world.render_uint8(world.Attributes(200.0, "circle", "striped", diagonal)))
        assert abs(read["angle"] - angle) < 1 and read["motion"] > 7 and read["pattern"] == "striped"
        d1, d2 = diagonal.split("-")
        assert world.judge({"direction_between": [d1, d2]}, read)["success"]
    with pytest.raises(ValueError, match="unknown direction"):
        world.velocity("sideways")


def test_word_level_tokenizer_aligns_words_and_round_trips(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = word_level_t5_tokenizer(world.vocabulary(), TEXT_LEN)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)  # the pipeline's and PromptEncoder's loading path
    a, g = (loaded(t, padding="max_length", max_length=TEXT_LEN).input_ids
            for t in ("a red plain circle moving up", "an orange plain circle moving up and left"))
    assert len(a) == len(g) == TEXT_LEN and a[6] == g[8] == loaded.eos_token_id and a[7:] == [0] * (TEXT_LEN - 7)
    assert a[2:6] == g[2:6]  # plain circle moving up: same tokens, same positions
    assert loaded("A Purple circle").input_ids == [3, loaded.unk_token_id, loaded.convert_tokens_to_ids("circle"), 1]
    assert loaded.decode(loaded("a red plain circle").input_ids, skip_special_tokens=True) == "a red plain circle"
    with pytest.raises(ValueError, match="distinct"):
        word_level_t5_tokenizer(["a", "a"], 8)

def test_queries_ask_what_the_prompts_say():
    """Each generated mix's queries: one per attribute over the judge's values, wanting the guide's word where
    the judge knows it, else A's and B's words both (never read from ``expect``)."""
    from richspace.objective import parse_queries

    split = mixes.generate()
    checked = 0
    for mix in split["dev"] + split["test"]:
        queries = parse_queries(mix["queries"], mix["id"])
        assert [len(q.options) for q in queries] == [len(world.COLOURS), len(world.PATTERNS), len(world.SHAPES),
                                                     len(world.DIRECTIONS)]
        colour = [queries[0].options[i].split()[1] for i in queries[0].want]
        guide_colour = mix["guide"].split()[1]
        if mix["kind"] == "hue":  # orange, lime, ...: unknown to the judge, so A's and B's colours, balanced
            assert guide_colour not in world.COLOURS and colour == [mix["a"].split()[1], mix["b"].split()[1]]
            checked += 1
        if mix["kind"] == "diagonal":
            directions = [queries[3].options[i].split()[-1] for i in queries[3].want]
            assert directions == [mix["a"].split()[5], mix["b"].split()[5]]
            checked += 1
        if mix["kind"] == "stripes":  # the guide's own words: striped, triangle
            assert [queries[1].options[i].split()[2] for i in queries[1].want] == ["striped"]
            assert [queries[2].options[i].split()[3] for i in queries[2].want] == ["triangle"]
            checked += 1
    assert checked >= 30


@pytest.mark.parametrize("direction,turn", [("right", 30.0), ("up", -40.0), ("left", 45.0), ("down", 10.0)])
def test_turned_motion_reads_at_its_angle(direction, turn):
    """A turn rotates the motion counter-clockwise off its direction word; the pixels read the angle back."""
    read = world.readout(world.render_uint8(world.Attributes(200.0, "circle", "plain", direction, turn=turn)))
    assert abs(world.hue_distance(read["angle"], world.ANGLES[direction] + turn)) < 3.0
    assert read["shape"] == "circle" and read["colour"] == "cyan"


def test_the_replication_set_is_seed_1_less_every_question_seed_0_asks(tmp_path, capsys):
    """configs/experiments/toy-replication.yaml is what `--replication 1` writes: seed 1's dev and test mixes under
    r1- ids, each question (A, B and guide prompts) that seed 0's dev and test do not ask exactly once; of the
    rest it keeps only the bases its chains take A from, which the benchmark then leaves out as repeats."""
    earlier = list(mixes.generate().values())
    drawn = mixes.replication(1, earlier)
    shipped = REPO / "configs" / "experiments" / "toy-replication.yaml"
    assert shipped.read_text() == mixes.render("replication", drawn, 1)
    specs = load_specs(shipped)
    ids = {s.id for s in specs}
    assert all(i.startswith("r1-") for i in ids) and all(s.base in ids for s in specs if s.base)

    def questions(entries):  # independent of richspace.specs: a chain's A is its base's (bases come first)
        a = {}
        for m in entries:
            a[m["id"]] = a[m["base"]] if "base" in m else m["a"]
        return {m["id"]: (a[m["id"]], m["b"], m["guide"]) for m in entries}

    old = {q for entries in earlier for q in questions(entries).values()}
    new = questions(mixes.generate(1)["dev"] + mixes.generate(1)["test"])
    mine = questions(drawn)
    asked, scored = set(old), []
    for i, question in mine.items():
        if question not in asked:
            asked.add(question)
            scored.append(i)
    assert sorted(mine[i] for i in scored) == sorted(set(new.values()) - old)  # every new question, once
    assert set(mine) - set(scored) <= {s.base for s in specs if s.base}  # the rest: bases a chain needs
    experiments = REPO / "configs" / "experiments"
    assert set(repeated(shipped, [experiments / "toy-dev.yaml", experiments / "toy-test.yaml"])) == set(mine) - set(scored)
    assert {m["kind"] for m in drawn} == {*mixes.KINDS, "chain-base"}
    assert mixes.main(["--out", str(tmp_path), "--replication", "1"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["toy-replication.yaml"]
    assert (tmp_path / "toy-replication.yaml").read_text() == shipped.read_text()
    assert mixes.main(["--out", str(tmp_path), "--replication", "1", "--check"]) == 0
    with pytest.raises(SystemExit) as info:
        mixes.main(["--out", str(tmp_path), "--replication", "0"])
    assert info.value.code == 2 and "--replication needs a seed other than 0" in capsys.readouterr().err


def test_unasked_mixes_are_every_mix_of_a_kind_that_no_shipped_set_asks(tmp_path, capsys):
    """`--unasked KIND` writes every hue, stripes or diagonal mix that none of the shipped dev, test and replication
    files asks, once each, ids from 100: counted here from the world's vocabulary, not through richspace.specs."""
    experiments = REPO / "configs" / "experiments"
    earlier = [yaml.safe_load((experiments / f"toy-{s}.yaml").read_text()) for s in ("dev", "test", "replication")]
    asked = {(m.get("a"), m["b"], m["guide"]) for entries in earlier for m in entries}
    question = lambda m: (m["a"], m["b"], m["guide"])  # noqa: E731

    every_stripes = mixes.unasked("stripes", [])
    assert len(every_stripes) == len(world.COLOURS) * len(world.DIRECTIONS) * 2 == 48  # B a striped square or circle
    assert len({question(m) for m in every_stripes}) == 48
    assert [m["id"] for m in every_stripes] == [f"stripes-triangle-{100 + n}" for n in range(48)]
    stripes = mixes.unasked("stripes", earlier)
    assert {question(m) for m in stripes} == {question(m) for m in every_stripes} - asked
    assert len(stripes) == len({question(m) for m in stripes}) < 48

    up_right = mixes.unasked("diagonal", earlier, ("up", "right"))
    every = mixes.unasked("diagonal", [], ("up", "right"))
    trained = len(world.SHAPES) * len(world.PATTERNS) - len(world.HELD_OUT_PAIRS)  # shape and pattern pairs: 5
    assert len(every) == len(world.COLOURS) * trained
    assert {question(m) for m in up_right} == {question(m) for m in every} - asked
    assert all(m["expect"]["direction_between"] == ["up", "right"] for m in up_right)
    assert all(q not in asked for q in map(question, mixes.unasked("diagonal", earlier)))
    every_hue = mixes.unasked("hue", [])  # neighbouring colours x shape and pattern trained on x direction
    assert len(every_hue) == len(world.MIX_COLOURS) * trained * len(world.DIRECTIONS) == 120
    hues = mixes.unasked("hue", earlier)
    assert {question(m) for m in hues} == {question(m) for m in every_hue} - asked
    assert len(hues) == len({question(m) for m in hues}) < 120
    for m in hues:  # A and B differ in the colour word alone, the guide names the colour between them
        a, b, guide = (m[k].split() for k in ("a", "b", "guide"))
        assert [w for w, v in zip(a, b) if w != v] == [a[1]] and a[2:] == guide[2:] and "striped triangle" not in m["a"]
        assert guide[1] == world.MIX_COLOURS[(a[1], b[1])]
    with pytest.raises(ValueError, match="unasked: kind 'seen'"):
        mixes.unasked("seen", earlier)

    assert mixes.main(["--out", str(tmp_path), "--unasked", "diagonal", "--pair", "up-right"]) == 0
    written = tmp_path / "toy-unasked-diagonal-up-right.yaml"
    assert [p.name for p in tmp_path.iterdir()] == [written.name]
    assert [s.id for s in load_specs(written)] == [m["id"] for m in up_right]
    assert mixes.main(["--out", str(tmp_path), "--unasked", "diagonal", "--pair", "up-right", "--check"]) == 0
    with pytest.raises(SystemExit) as info:
        mixes.main(["--out", str(tmp_path), "--unasked", "stripes", "--pair", "up-right"])
    assert info.value.code == 2 and "--pair goes with --unasked diagonal" in capsys.readouterr().err
    assert mixes.main(["--out", str(tmp_path), "--unasked", "diagonal", "--pair", "up-left", "--every", "2"]) == 0
    up_left = mixes.unasked("diagonal", earlier, ("up", "left"))
    sampled = [s.id for s in load_specs(tmp_path / "toy-unasked-diagonal-up-left-every2.yaml")]
    assert sampled == [m["id"] for m in up_left][::2] and len(sampled) == (len(up_left) + 1) // 2
    for bad in (["--unasked", "chain", "--every", "2"], ["--every", "2"], ["--unasked", "hue", "--every", "0"]):
        with pytest.raises(SystemExit) as info:
            mixes.main(["--out", str(tmp_path), *bad])
        assert info.value.code == 2 and "--every N (N >= 1) goes with --unasked" in capsys.readouterr().err


def test_unasked_chains_come_after_their_bases_and_ask_what_no_shipped_chain_asks():
    """A chain asks its base's three prompts and its own B and guide; resolved here from the files themselves."""
    experiments = REPO / "configs" / "experiments"
    earlier = [yaml.safe_load((experiments / f"toy-{s}.yaml").read_text()) for s in ("dev", "test", "replication")]

    def questions(entries):
        by_id = {m["id"]: m for m in entries}
        return [(by_id[m["base"]]["a"], by_id[m["base"]]["b"], by_id[m["base"]]["guide"], m["b"], m["guide"])
                for m in entries if "base" in m]

    asked = {q for entries in earlier for q in questions(entries)}
    every, unasked = mixes.unasked("chain", []), mixes.unasked("chain", earlier)
    assert len(questions(every)) == len(set(questions(every))) == len(mixes.NEIGHBOURS) * 2 * len(world.DIRECTIONS)
    assert set(questions(unasked)) == set(questions(every)) - asked and asked & set(questions(every))
    assert len(unasked) == 2 * len(questions(unasked))
    for base, chain in zip(unasked[::2], unasked[1::2]):  # each chain right after its base, ids from 100
        assert base["kind"] == "chain-base" and chain["kind"] == "chain" and chain["base"] == base["id"]
        assert base["id"].endswith(chain["id"].rsplit("-", 1)[1]) and int(base["id"].rsplit("-", 1)[1]) >= 100
    assert [s.id for s in parse_specs(unasked)] == [m["id"] for m in unasked]  # each base before its chain
