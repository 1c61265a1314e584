"""Mix specs: the paper's file loads; every malformed file gives one line naming file, mix and fix."""

from pathlib import Path

import pytest
import yaml

from richspace.specs import MixSpec, SpecError, load_specs, repeated, repeats

PAPER = Path(__file__).resolve().parents[1] / "configs" / "experiments" / "paper.yaml"


def test_paper_specs_load_with_bases_first_and_metadata_kept():
    specs = load_specs(PAPER)
    assert len(specs) == 17
    order = [s.id for s in specs]
    for s in specs:
        if s.base is not None:
            assert order.index(s.base) < order.index(s.id)
            assert s.a is None
    tiger = next(s for s in specs if s.id == "tiger-zebra")
    assert tiger.meta["paper_index"] == 14 and tiger.meta["figure"] == 3
    assert {s.id for s in specs if s.base} == {
        "strawberry-blueberry-orange", "tiger-zebra-giraffe", "rose-cactus-lily", "red-blue-yellow", "rose-lily-tulip",
    }


def write(tmp_path, entries) -> Path:
    path = tmp_path / "mixes.yaml"
    path.write_text(entries if isinstance(entries, str) else yaml.safe_dump(entries))
    return path


def ok(i, **kw):
    return {"id": f"m{i}", "a": f"prompt a {i}", "b": f"prompt b {i}", "guide": f"guide {i}", **kw}


@pytest.mark.parametrize(
    "entries, expected",
    [
        ([ok(1), ok(1)], r"mix 'm1': duplicate id"),
        ([ok(1), {"id": "c", "base": "nope", "b": "x", "guide": "y"}], r"mix 'c': unknown base 'nope'"),
        (
            [{"id": "x", "base": "y", "b": "1", "guide": "2"}, {"id": "y", "base": "x", "b": "3", "guide": "4"}],
            r"mix '.': base chain forms a cycle \((x -> y -> x|y -> x -> y)\)",
        ),
        ([{"id": "x", "base": "x", "b": "1", "guide": "2"}], r"mix 'x': base chain forms a cycle \(x -> x\)"),
        ([ok(1, guide="  ")], r"mix 'm1': prompt 'guide' is empty"),
        ([ok(1, b=3)], r"mix 'm1': prompt 'b' is empty or not a string"),
        ([ok(1, contrast=" ")], r"mix 'm1': prompt 'contrast' is empty or not a string"),
        ([{"id": "m1", "b": "x", "guide": "y"}], r"mix 'm1': missing prompt 'a'; give it or a 'base' mix"),
        ([{"id": "m1", "a": "x", "guide": "y"}], r"mix 'm1': missing prompt 'b'"),
        ([ok(1), ok(2, base="m1")], r"mix 'm2': has both 'a' and 'base'"),
        ([{"a": "x", "b": "y", "guide": "z"}], r"mix #1: missing or empty 'id'"),
        ([ok(1), "just a string"], r"mix #2: expected a mapping"),
        ({"id": "m1"}, r"expected a non-empty YAML list of mixes"),
        ([], r"expected a non-empty YAML list"),
        ("- id: [unclosed\n", r"not valid YAML at line"),
    ],
)
def test_every_spec_error_is_one_line_naming_file_and_mix(tmp_path, entries, expected):
    path = write(tmp_path, entries)
    with pytest.raises(SpecError, match=expected) as info:
        load_specs(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_a_contrast_prompt_is_kept_apart_from_the_metadata(tmp_path):
    (spec,) = load_specs(write(tmp_path, [ok(1, contrast="a plain circle", figure=2)]))
    assert spec.contrast == "a plain circle" and spec.meta == {"figure": 2}
    (spec,) = load_specs(write(tmp_path, [ok(1)]))
    assert spec.contrast is None


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read the mix specs file"):
        load_specs(tmp_path / "absent.yaml")


def test_a_chain_of_three_resolves_in_dependency_order(tmp_path):
    entries = [
        {"id": "top", "base": "mid", "b": "c", "guide": "g3"},
        {"id": "mid", "base": "root", "b": "b", "guide": "g2"},
        ok("root") | {"id": "root"},
    ]
    assert [s.id for s in load_specs(write(tmp_path, entries))] == ["root", "mid", "top"]


def test_repeats_name_the_first_mix_with_the_same_prompts_across_sets():
    """A mix repeats an earlier one when it asks the same (A, B, guide), a chained mix's A being its base's; the first
    set's mixes come first (a test mix that repeats a dev mix), then each set in file order."""
    dev = [MixSpec(id="d1", a="x", b="y", guide="g"), MixSpec(id="d2", a="x", b="y", guide="other guide")]
    test = [MixSpec(id="t1", a="p", b="q", guide="h"), MixSpec(id="t2", a="x", b="y", guide="g"),
            MixSpec(id="t3", a="p", b="q", guide="h"),
            MixSpec(id="t4", base="t1", b="z", guide="k"), MixSpec(id="t5", base="t3", b="z", guide="k"),
            MixSpec(id="t6", base="t2", b="z", guide="k"), MixSpec(id="t7", a="p", b="z", guide="k")]
    assert repeats(dev, test) == {"t2": "d1", "t3": "t1", "t5": "t4"}  # t6: its base asks other prompts than t4's
    assert repeats(test) == {"t3": "t1", "t5": "t4"}
    assert repeats(dev) == {}


def test_the_shipped_toy_sets_repeat_four_test_mixes():
    """The seeded draw of configs/experiments/toy-*.yaml (richspace.toy.mixes, seed 0) repeats three test mixes
    within test and one dev mix in test; dev has none. The benchmark scores each distinct mix once."""
    root = Path(__file__).resolve().parents[1] / "configs" / "experiments"
    dev, test = load_specs(root / "toy-dev.yaml"), load_specs(root / "toy-test.yaml")
    assert repeats(dev) == {}
    assert repeats(dev, test) == {"hue-cyan-blue-15": "hue-cyan-blue-9", "diagonal-up-left-1": "diagonal-up-left-5",
                                  "diagonal-up-right-4": "diagonal-up-right-8", "stripes-triangle-4": "stripes-triangle-3"}
    assert repeated(root / "toy-test.yaml", [root / "toy-dev.yaml"]) == repeats(dev, test)  # what the benchmarks read
    assert repeated(root / "toy-dev.yaml") == {} == repeated(root / "toy-dev.yaml", [root / "toy-dev.yaml"])
