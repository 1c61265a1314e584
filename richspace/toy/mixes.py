"""Toy mix specs generated from the world's vocabulary, split into a development and a test set.

    python -m richspace.toy.mixes                  # writes configs/experiments/toy-dev.yaml and toy-test.yaml
    python -m richspace.toy.mixes --check          # exits 1 if the shipped files differ from a fresh generation
    python -m richspace.toy.mixes --replication 1  # writes toy-replication.yaml: a second draw, for a second verdict
    python -m richspace.toy.mixes --unasked diagonal --pair up-right --out runs/extra   # more dev mixes of one kind
    python -m richspace.toy.mixes --unasked diagonal --pair up-left --every 2 --out runs/extra   # every second one

Five kinds of mix, each prompt in the world's six-word template so that A, B and the guide
line up word by word (the guide of a diagonal adds "and <direction>"):

- ``hue``: A and B name neighbouring colour words (red, yellow); the guide names the word
  for the hue between them (orange), which no training caption has. Expect the in-between hue.
- ``diagonal``: A and B move in neighbouring directions; the guide says "moving up and
  left". Expect the motion between them (no training video moves diagonally).
- ``stripes``: A is a plain triangle, B a striped square or circle; the guide asks for a
  striped triangle, the one pair of values training never shows (the tiger with zebra stripes).
- ``seen``: the guide is a combination training shows (a colour word between two others, or
  stripes on a square or circle): the paper's appendix cases, where the guide alone may work.
- ``chain``: three concepts: a ``hue`` base mix and a striped B; the base's found embedding
  takes the place of A (the paper's Section 5). It travels with its base into the same split.

A mix whose guide takes one attribute from A and another from B (stripes, a chain, seen stripes) carries a
``contrast`` prompt: the values it does not want together, B's where the guide takes A's and A's where it takes B's
(a plain circle for a striped triangle from a plain triangle and a striped circle; for a chain, B's colour without
its stripes), which refinement composes with a negative weight (richspace.conditioning). Hue and diagonal mixes,
whose guide names a value neither A nor B has, carry none.

Each mix also carries ``queries``, the per-attribute reward's questions (richspace.objective):
per attribute, the captions that differ in it alone (over the judge's vocabulary), and the
wanted ones: the guide's word where the judge knows it (striped, triangle, a seen colour),
else A's and B's words both (orange is unknown to it: red and yellow, balanced). They are
written from the prompts' words, never from ``expect``.

Which mixes the guide fails on is not written here: the benchmark measures it.
The other attributes (shape, pattern, direction, colour) are drawn at random from a fixed
seed, avoiding the held-out pair. Mixes are split into dev and test by a seeded shuffle within
each kind, so both sets hold every kind; methods are tuned on dev and reported on test.
Attributes are drawn with replacement, so a mix can repeat an earlier one's prompts under another id (seed 0:
3 test mixes repeat test mixes, 1 repeats a dev mix). The files keep them, as drawn; the benchmarks score each
distinct mix once (``richspace.specs.repeats``), and this command names them.

``--unasked KIND`` writes, instead of a draw, every hue (or diagonal, striped-triangle, or chain with its base) mix that
none of the shipped dev, test and replication files asks: more development mixes of the kind, to measure a chooser
on where the few a draw holds are too few (benchmarks/toy_reward.py with ``--prior_table``). Nothing from them is
reported as test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

from richspace.runs import atomic_write_text, output_dir, read_input
from richspace.specs import parse_specs, repeats
from richspace.toy import world

KINDS = ("hue", "diagonal", "stripes", "seen", "chain")
COUNTS = {"hue": 18, "diagonal": 16, "stripes": 12, "seen": 16, "chain": 10}  # 72 mixes (chains: 20 specs)
NEIGHBOURS = list(world.MIX_COLOURS)  # ((red, yellow), ...): neighbouring colour words round the hue circle
ADJACENT = [("up", "right"), ("up", "left"), ("down", "left"), ("down", "right")]
SEED = 0
OUT = Path(__file__).resolve().parents[2] / "configs" / "experiments"


def text(colour: str, pattern: str, shape: str, direction: str) -> str:
    """A prompt in the caption template (an 'an' before a vowel, for the mix colour words)."""
    article = "an" if colour[0] in "aeiou" else "a"
    return " ".join([article, colour, pattern, shape, "moving", direction])


def _pick(rng: np.random.Generator, values):
    values = list(values)
    return values[int(rng.integers(len(values)))]


def _shape_pattern(rng: np.random.Generator) -> tuple[str, str]:
    """A shape and pattern pair training shows (never the held-out striped triangle)."""
    while True:
        shape, pattern = _pick(rng, world.SHAPES), _pick(rng, world.PATTERNS)
        if (shape, pattern) not in world.HELD_OUT_PAIRS:
            return shape, pattern


def queries(colours, patterns, shapes, directions) -> list[dict]:
    """Per attribute, the captions differing in it alone and the indices of the wanted values (each argument: the
    wanted values of one attribute); the other attributes of each caption are their first wanted values."""
    wanted = {"colour": list(colours), "pattern": list(patterns), "shape": list(shapes), "direction": list(directions)}
    values = {"colour": list(world.COLOURS), "pattern": list(world.PATTERNS), "shape": list(world.SHAPES),
              "direction": list(world.DIRECTIONS)}
    context = {k: v[0] for k, v in wanted.items()}
    out = []
    for attribute, options in values.items():
        captions = [text(**(context | {attribute: value})) for value in options]
        out.append({"options": captions, "want": [options.index(v) for v in wanted[attribute]]})
    return out


def hue_mix(rng, n: int, pair: tuple[str, str]) -> dict:
    shape, pattern = _shape_pattern(rng)
    return hue(n, pair, shape, pattern, _pick(rng, world.DIRECTIONS))


def hue(n: int, pair: tuple[str, str], shape: str, pattern: str, direction: str) -> dict:
    c1, c2 = pair
    return {"id": f"hue-{c1}-{c2}-{n}", "kind": "hue", "a": text(c1, pattern, shape, direction),
            "b": text(c2, pattern, shape, direction), "guide": text(world.MIX_COLOURS[pair], pattern, shape, direction),
            "expect": {"hue_between": [c1, c2], "shape": shape, "pattern": pattern, "direction": direction},
            "queries": queries([c1, c2], [pattern], [shape], [direction])}


def diagonal_mix(rng, n: int, pair: tuple[str, str]) -> dict:
    colour, (shape, pattern) = _pick(rng, world.COLOURS), _shape_pattern(rng)
    return diagonal(n, pair, colour, shape, pattern)


def diagonal(n: int, pair: tuple[str, str], colour: str, shape: str, pattern: str) -> dict:
    d1, d2 = pair
    return {"id": f"diagonal-{d1}-{d2}-{n}", "kind": "diagonal", "a": text(colour, pattern, shape, d1),
            "b": text(colour, pattern, shape, d2), "guide": text(colour, pattern, shape, d1) + f" and {d2}",
            "expect": {"colour": colour, "shape": shape, "pattern": pattern, "direction_between": [d1, d2]},
            "queries": queries([colour], [pattern], [shape], [d1, d2])}


def stripes_mix(rng, n: int) -> dict:
    colour, direction = _pick(rng, world.COLOURS), _pick(rng, world.DIRECTIONS)
    return stripes(n, colour, direction, _pick(rng, ("square", "circle")))


def stripes(n: int, colour: str, direction: str, other: str) -> dict:
    return {"id": f"stripes-triangle-{n}", "kind": "stripes", "a": text(colour, "plain", "triangle", direction),
            "b": text(colour, "striped", other, direction), "guide": text(colour, "striped", "triangle", direction),
            "contrast": text(colour, "plain", other, direction),
            "expect": {"colour": colour, "shape": "triangle", "pattern": "striped", "direction": direction},
            "queries": queries([colour], ["striped"], ["triangle"], [direction])}


def seen_mix(rng, n: int) -> dict:
    direction = _pick(rng, world.DIRECTIONS)
    if n % 2 == 0:  # a colour word between two others: red and green, guide yellow
        colours = list(world.COLOURS)
        i = int(rng.integers(len(colours)))
        c1, mid, c2 = colours[i], colours[(i + 1) % 6], colours[(i + 2) % 6]
        shape, pattern = _shape_pattern(rng)
        return {"id": f"seen-hue-{c1}-{c2}-{n}", "kind": "seen", "a": text(c1, pattern, shape, direction),
                "b": text(c2, pattern, shape, direction), "guide": text(mid, pattern, shape, direction),
                "expect": {"hue_between": [c1, c2], "shape": shape, "pattern": pattern, "direction": direction},
                "queries": queries([mid], [pattern], [shape], [direction])}
    colour, shape = _pick(rng, world.COLOURS), _pick(rng, ("square", "circle"))  # stripes on a seen shape
    other = "circle" if shape == "square" else "square"
    return {"id": f"seen-stripes-{shape}-{n}", "kind": "seen", "a": text(colour, "plain", shape, direction),
            "b": text(colour, "striped", other, direction), "guide": text(colour, "striped", shape, direction),
            "contrast": text(colour, "plain", other, direction),
            "expect": {"colour": colour, "shape": shape, "pattern": "striped", "direction": direction},
            "queries": queries([colour], ["striped"], [shape], [direction])}


def chain_mixes(rng, n: int, pair: tuple[str, str]) -> list[dict]:
    shape, direction = _pick(rng, ("square", "circle")), _pick(rng, world.DIRECTIONS)
    return chains(n, pair, shape, direction)


def chains(n: int, pair: tuple[str, str], shape: str, direction: str) -> list[dict]:
    """A plain hue base mix and the chain that adds stripes to its found embedding."""
    c1, c2 = pair
    base = {"id": f"chain-base-{c1}-{c2}-{n}", "kind": "chain-base", "a": text(c1, "plain", shape, direction),
            "b": text(c2, "plain", shape, direction), "guide": text(world.MIX_COLOURS[pair], "plain", shape, direction),
            "expect": {"hue_between": [c1, c2], "shape": shape, "pattern": "plain", "direction": direction},
            "queries": queries([c1, c2], ["plain"], [shape], [direction])}
    chain = {"id": f"chain-{c1}-{c2}-striped-{n}", "kind": "chain", "base": base["id"],
             "b": text(c1, "striped", shape, direction),
             "guide": text(world.MIX_COLOURS[pair], "striped", shape, direction),
             "contrast": text(c1, "plain", shape, direction),
             "expect": {"hue_between": [c1, c2], "shape": shape, "pattern": "striped", "direction": direction},
             "queries": queries([c1, c2], ["striped"], [shape], [direction])}
    return [base, chain]


def generate(seed: int = SEED) -> dict[str, list[dict]]:
    """{'dev': [...], 'test': [...]}: the mixes, split half and half within each kind (chains with their base)."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[list[dict]]] = {kind: [] for kind in KINDS}
    for n in range(COUNTS["hue"]):
        groups["hue"].append([hue_mix(rng, n, NEIGHBOURS[n % len(NEIGHBOURS)])])
    for n in range(COUNTS["diagonal"]):
        groups["diagonal"].append([diagonal_mix(rng, n, ADJACENT[n % len(ADJACENT)])])
    for n in range(COUNTS["stripes"]):
        groups["stripes"].append([stripes_mix(rng, n)])
    for n in range(COUNTS["seen"]):
        groups["seen"].append([seen_mix(rng, n)])
    for n in range(COUNTS["chain"]):
        groups["chain"].append(chain_mixes(rng, n, NEIGHBOURS[n % len(NEIGHBOURS)]))
    split: dict[str, list[dict]] = {"dev": [], "test": []}
    for kind in KINDS:
        order = rng.permutation(len(groups[kind]))
        for rank, i in enumerate(order):
            split["dev" if rank % 2 == 0 else "test"].extend(groups[kind][i])
    return split


def replication(seed: int, earlier: list[list[dict]]) -> list[dict]:
    """A second draw of the benchmark: seed ``seed``'s dev and test mixes together, ids prefixed ``r<seed>-``,
    without the mixes that ask what a mix of ``earlier`` (e.g. seed 0's dev and test) or an earlier one of its own
    already asks. A base that repeats stays where a kept chain takes its A from it (``repeats`` then marks it, and
    the benchmark scores it once). Nothing is fitted to these mixes: a fresh sample of the test population."""
    def renamed(mix: dict) -> dict:
        out = dict(mix, id=f"r{seed}-{mix['id']}")
        if "base" in mix:
            out["base"] = f"r{seed}-{mix['base']}"
        return out

    split = generate(seed)
    mixes = [renamed(m) for m in split["dev"] + split["test"]]
    same = repeats(*(parse_specs(e) for e in earlier), parse_specs(mixes))
    bases = {m["base"] for m in mixes if "base" in m and m["id"] not in same}
    return [m for m in mixes if m["id"] not in same or m["id"] in bases]


UNASKED_FROM = 100  # the first id number of unasked()'s mixes, clear of the generator's
UNASKED = ("hue", "diagonal", "stripes", "chain")
TRAINED_PAIRS = [(s, pattern) for s in world.SHAPES for pattern in world.PATTERNS  # shape and pattern training shows
                 if (s, pattern) not in world.HELD_OUT_PAIRS]


def unasked(kind: str, earlier: list[list[dict]], pair: tuple[str, str] | None = None) -> list[dict]:
    """Every mix of ``kind`` that asks what no mix of ``earlier`` (the dev, test and replication files) asks, ids
    numbered from 100: more development mixes of one kind, where the few of a draw cannot tell a chooser's losses
    from noise. hue: neighbouring colour pair x shape and pattern training shows x direction (120 in all); stripes:
    colour x direction x B's shape (48 in all); diagonal: ``pair``'s (or every adjacent pair's)
    colour x shape and pattern training shows (30 a pair); chain: neighbouring colour pair x shape x direction (48
    in all), each chain after its base (kept, as the chain's A, where the base alone repeats an earlier mix)."""
    if kind == "hue":
        values = [(colours, s, pattern, d) for colours in NEIGHBOURS for s, pattern in TRAINED_PAIRS
                  for d in world.DIRECTIONS]
        make = lambda *v: [hue(*v)]  # noqa: E731
    elif kind == "stripes":
        values = [(c, d, other) for c in world.COLOURS for d in world.DIRECTIONS for other in ("square", "circle")]
        make = lambda *v: [stripes(*v)]  # noqa: E731  (a group of one mix; a chain's group is its base and itself)
    elif kind == "diagonal":
        values = [(p, c, s, pattern) for p in ([pair] if pair else ADJACENT) for c in world.COLOURS
                  for s, pattern in TRAINED_PAIRS]
        make = lambda *v: [diagonal(*v)]  # noqa: E731
    elif kind == "chain":
        values = [(colours, shape, d) for colours in NEIGHBOURS for shape in ("square", "circle")
                  for d in world.DIRECTIONS]
        make = chains
    else:
        raise ValueError(f"unasked: kind {kind!r}; give one of {', '.join(UNASKED)}")
    every = [make(n, *v) for n, v in enumerate(values)]  # each a mix, or a base and its chain: the question last
    for m in (m for group in every for m in group):  # ids that no earlier mix has, for the comparison only
        m["id"] = f"unasked-{m['id']}"
        if "base" in m:
            m["base"] = f"unasked-{m['base']}"
    same = repeats(*(parse_specs(e) for e in earlier), parse_specs([m for group in every for m in group]))
    kept = [v for group, v in zip(every, values) if group[-1]["id"] not in same]
    return [m for n, v in enumerate(kept) for m in make(UNASKED_FROM + n, *v)]


HEADER = """# Generated by `python -m richspace.toy.mixes` (seed {seed}): do not edit by hand.
# The {split} set of the toy mixing benchmark ({count} mixes{note}). Each mix's `expect` holds the
# pixel facts a successful video shows (richspace.toy.world.judge); `kind` says how it was built.
# Whether the guide fails is measured by benchmarks/toy_mixing.py, not written here.
"""


def render(split: str, mixes: list[dict], seed: int = SEED) -> str:
    note = {"dev": ": tune methods here", "test": ": report here; nothing is fitted to it",
            "replication": f": seed {seed}'s that repeat none of seed {SEED}'s, a second test draw; nothing is "
                           "fitted to it",
            "unasked": ": asked by no dev, test or replication mix; development only"}[split.split("-")[0]]
    body = yaml.safe_dump(mixes, sort_keys=False, width=200, default_flow_style=None)
    return HEADER.format(seed=seed, split=split, count=len(mixes), note=note) + "\n" + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT), help="folder for toy-dev.yaml and toy-test.yaml")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    parser.add_argument("--overwrite", action="store_true", help="replace files in --out that hold other mixes")
    parser.add_argument("--replication", type=int, default=None, metavar="SEED",
                        help=f"write toy-replication.yaml instead: SEED's mixes that repeat none of seed {SEED}'s")
    parser.add_argument("--unasked", choices=UNASKED, default=None,
                        help="write toy-unasked-KIND.yaml instead: every mix of the kind that none of the shipped "
                             "dev, test and replication files asks (more development mixes)")
    parser.add_argument("--pair", choices=[f"{a}-{b}" for a, b in ADJACENT], default=None,
                        help="with --unasked diagonal: that pair of directions only")
    parser.add_argument("--every", type=int, default=1, metavar="N",
                        help="with --unasked (not chain): every N-th of those mixes, ids kept (a sample across the "
                             "kind's colours and shapes, at 1/N of the sampling)")
    args = parser.parse_args(argv)
    out = output_dir(args.out, "--out")
    if args.pair is not None and args.unasked != "diagonal":
        parser.error("--pair goes with --unasked diagonal")
    if args.every != 1 and (args.unasked in (None, "chain") or args.every < 1):
        parser.error("--every N (N >= 1) goes with --unasked hue, diagonal or stripes (a chain needs its base)")
    if args.unasked is not None:
        shipped = [OUT / f"toy-{name}.yaml" for name in ("dev", "test", "replication")]
        earlier = [read_input(path, "the shipped set", yaml.safe_load) for path in shipped]
        pair = tuple(args.pair.split("-")) if args.pair else None
        name = "-".join(["unasked", args.unasked] + ([args.pair] if args.pair else [])
                        + ([f"every{args.every}"] if args.every > 1 else []))
        split, seed = {name: unasked(args.unasked, earlier, pair)[::args.every]}, SEED
    elif args.replication is not None:
        if args.replication == SEED:
            parser.error(f"--replication needs a seed other than {SEED} (seed {SEED} draws dev and test)")
        split, seed = {"replication": replication(args.replication, list(generate(SEED).values()))}, args.replication
    else:
        split, seed = generate(args.seed), args.seed
    files = {name: (out / f"toy-{name}.yaml", render(name, mixes, seed), len(mixes))
             for name, mixes in split.items()}
    differ = [path for path, content, _ in files.values() if not path.is_file() or path.read_text() != content]
    if args.check:
        if differ:
            print(f"error: {differ[0]} differs from a fresh generation; run python -m richspace.toy.mixes", file=sys.stderr)
        return 1 if differ else 0
    other = [path for path in differ if path.exists()]
    if other and not args.overwrite:  # another seed's mixes (or hand edits): results may name them
        made = f"--unasked {args.unasked}" if args.unasked else f"--seed {args.seed}"
        print(f"error: {other[0]} holds other mixes than {made} makes; give another --out, or "
              "--overwrite to replace it", file=sys.stderr)
        return 2
    for path, content, n in files.values():
        atomic_write_text(path, content)
        print(f"wrote {n} mixes to {path}")
    same = repeats(*(parse_specs(mixes) for mixes in split.values()))
    if same:
        print(f"{len(same)} mixes repeat an earlier one's prompts and are scored once: "
              + ", ".join(f"{i} = {first}" for i, first in same.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
