"""Would the predictor of mixing parameters pick better fitted on more development mixes? Read on dev-side mixes only.

    python benchmarks/predictor_pool.py --pool runs/extra/hues.json runs/extra/chains.json \
        runs/extra/stripes.json runs/extra/up-right.json runs/extra/diagonals-others.json \
        --labels runs/toy-mixing/dev/toy_mixing.json runs/extra/hue-labels/toy_mixing.json \
        runs/extra/diag-labels/toy_mixing.json [--weighted]        # about 7 minutes on 2 cores

The predictor (richspace/learned.py) is both the `learned` method and refinement's prior. The benchmark fits it on
dev's 41 mixes (``--dev``, a benchmarks/toy_reward.py table of them). ``--pool`` adds other toy_reward tables
of development mixes, sampled with the same config, fit seed and noises (e.g. the ``--unasked`` mixes of
``python -m richspace.toy.mixes``, which no shipped set asks). This script compares, mix by mix, the predictor
fitted on dev alone (shipped) with the one fitted on the whole pool:

- each is left one out within its own pool: a dev mix is scored by the dev predictor fitted on the other 40, and a
  pool mix by the one fitted on all 41; the pooled predictor scores every mix fitted on all the others;
- ``learned``: the predictor's pick, scored on every noise of the table (it sees none of the mix's);
- ``refined``'s chooser: the reward on 2 noises and the prior (``learned.with_prior``, ``--prior_weight``), every
  split (toy_reward's ``rotated``).

Where the guide fails, the paired difference is weighed as dev's mixes where it fails ask each kind
(``stats.stratified_mean``); chain bases count with hues, the same construction (neighbouring hues). Where the guide
works, it is the plain mean. Labels come from ``--labels`` (toy_mixing.json files: the guide on label seeds 200 to
202); an unlabelled chain or stripes mix counts as failing (its guide asks what training never shows), any other
unlabelled mix is an error. ``--weighted`` weighs each pool mix in the fit so that every (kind, label) cell weighs
in total what it has mixes in dev: the added mixes sharpen a cell without changing its share. ``--held_out``
tables are read on both sides but fitted on by neither: the pooled predictor scores their mixes fitted on dev and
``--pool`` (e.g. a kind whose reward is known to mislead, left out of the fit and still read). Last, the bounds of
one pick per mix where the guide fails: the shipped chooser, a perfect judge (the pixels' verdicts) of 1 to 3
noises, and the best candidate in hindsight, weighed as dev asks the kinds, with and without the stripes mixes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from richspace.runs import read_input  # noqa: E402
from richspace.stats import Interval, bootstrap_mean, stratified_mean  # noqa: E402
from toy_reward import best_candidate, left_out_priors, prior_rows, rotated, values  # noqa: E402

ASSUMED_FAILING = ("chain", "stripes")  # kinds whose guide asks what training never shows


def stratum(kind: str) -> str:
    return "hue" if kind == "chain-base" else kind


def load_pool(dev: Path, pool: list[Path], held_out: list[Path] = ()) -> tuple[dict, dict, dict, dict]:
    """(settings, dev's rows, the pool's other rows, the ``held_out`` tables' rows) of toy_reward tables; a
    one-line error where a table was sampled otherwise than dev's or repeats a mix of any of them."""
    table = read_input(dev, "--dev")
    settings = {k: table.get("settings", {}).get(k) for k in ("config", "seed", "noises", "world")}
    dev_rows, others, held = table["mixes"], {}, {}
    for flag, paths, into in (("--pool", pool, others), ("--held_out", held_out, held)):
        for path in paths:
            rows = prior_rows(str(path), settings, flag)
            twice = sorted(rows.keys() & (dev_rows.keys() | others.keys() | held.keys()))
            if twice:
                raise SystemExit(f"error: {flag} {path} repeats mix {twice[0]}; give each mix once")
            into.update(rows)
    return settings, dev_rows, others, held


def guide_fails(rows: dict, labels: list[Path]) -> dict[str, bool]:
    """Per mix, whether the guide fails: measured (``labels``), or by construction for chain and stripes mixes."""
    measured = {m["id"]: m["guide_label_rate"] < 0.5 for path in labels for m in read_input(path, "--labels")}
    unknown = sorted(i for i, row in rows.items() if i not in measured and row["kind"] not in ASSUMED_FAILING)
    if unknown:
        raise SystemExit(f"error: no --labels entry for {len(unknown)} mixes (e.g. {unknown[0]}); label them with "
                         "infer.py on seeds 200-202 (toy_mixing.py's step 2)")
    return {i: measured.get(i, True) for i in rows}


def cell_weights(ids: list[str], rows: dict, dev: set[str], fails: dict[str, bool]) -> torch.Tensor:
    """(mixes,) fit weights: each (kind, label) cell weighs in total what it has mixes in ``dev``; a cell dev
    lacks weighs nothing."""
    cell = {i: (rows[i]["kind"], fails[i]) for i in ids}
    in_dev, in_pool = Counter(cell[i] for i in ids if i in dev), Counter(cell.values())
    return torch.tensor([in_dev[cell[i]] / in_pool[cell[i]] for i in ids])


def shipped_priors(dev_rows: dict, others: dict, grid: list[dict], start: dict, steps: int) -> torch.Tensor:
    """(mixes, candidates) in dev's then the others' order: a dev mix scored by the predictor fitted on the rest of
    dev, any other mix by the one fitted on all of dev (the prior as test refinement has it)."""
    return torch.cat([left_out_priors(dev_rows, grid, start, 2, steps),
                      left_out_priors(others, grid, start, 2, steps, fitted_on=dev_rows)])


def pooled_priors(fit_rows: dict, held: dict, grid: list[dict], start: dict, steps: int,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """(mixes, candidates) in ``fit_rows``' then ``held``'s order: a mix of the fit scored by the predictor fitted on
    the fit's other mixes (``weights``, one per fit mix, their weights), a held mix by the one fitted on the whole
    fit; no held mix's rewards reach any fit."""
    pooled = left_out_priors(fit_rows, grid, start, 2, steps, weights=weights)
    if not held:
        return pooled
    return torch.cat([pooled, left_out_priors(held, grid, start, 2, steps, fitted_on=fit_rows)])


def rates(rows: dict, priors: torch.Tensor, candidates: int, noises: int, prior_weight: float) -> dict[str, list]:
    """Per method, per mix (``rows`` order): ``learned``'s pick scored on every noise, and ``refined``'s chooser's
    (the reward on 2 noises and the prior) on every split."""
    learned = [float(values(row, "success", range(noises), candidates)[int(p.argmax())])
               for row, p in zip(rows.values(), priors)]
    return {"learned": learned, "refined": rotated(rows, candidates, 2, noises, priors, prior_weight)}


def summary(values: list[float], strata: list[str] | None, shares: dict[str, int]) -> Interval:
    """The mean of per-mix ``values`` with its interval: weighed by ``shares`` over each mix's stratum, or plain
    (``strata`` None)."""
    if strata is None:
        return bootstrap_mean(values)
    groups: dict[str, list[float]] = {}
    for k, v in zip(strata, values):
        groups.setdefault(k, []).append(v)
    return stratified_mean(groups, shares)


def dev_shares(rows: dict, fails: dict[str, bool], dev: set[str]) -> dict[str, int]:
    """Per stratum of ``rows``' kinds, how many of dev's mixes where the guide fails it holds (a kind dev lacks: 0):
    the shares that weigh the kinds where the guide fails."""
    asked = Counter(stratum(rows[i]["kind"]) for i in rows if i in dev and fails[i])
    return {stratum(row["kind"]): asked[stratum(row["kind"])] for row in rows.values()}


def report(rows: dict, fails: dict[str, bool], shipped: dict, pooled: dict, dev: set[str]) -> list[str]:
    """Markdown: per method and group, the paired difference (pooled - shipped), then each kind's rates."""
    ids = list(rows)
    shares = dev_shares(rows, fails, dev)
    lines = ["| method | where the guide | mixes | shipped | pooled | pooled - shipped, paired |", "|---|---|---|---|---|---|"]
    kinds = ["| method | where the guide | kind | mixes | shipped | pooled |", "|---|---|---|---|---|---|"]
    for method in ("learned", "refined"):
        for failing in (True, False):
            members = [m for m, i in enumerate(ids) if fails[i] == failing]
            if not members:
                continue
            before, after = [shipped[method][m] for m in members], [pooled[method][m] for m in members]
            strata = [stratum(rows[ids[m]]["kind"]) for m in members] if failing else None
            a, b, d = (summary(v, strata, shares) for v in (before, after, [y - x for x, y in zip(before, after)]))
            label = "fails (weighed as dev asks the kinds)" if failing else "works"
            lines.append(f"| {method} | {label} | {len(members)} | {a.mean:.1%} | {b.mean:.1%} | {d.mean:+.1%} "
                         f"[{d.low:+.1%}, {d.high:+.1%}] |")
            for kind in sorted({rows[ids[m]]["kind"] for m in members}):
                these = [m for m in members if rows[ids[m]]["kind"] == kind]
                mean = (lambda v: sum(v[m] for m in these) / len(these))
                kinds.append(f"| {method} | {'fails' if failing else 'works'} | {kind} | {len(these)} | "
                             f"{mean(shipped[method]):.1%} | {mean(pooled[method]):.1%} |")
    return lines + [""] + kinds


def bounds(rows: dict, fails: dict[str, bool], dev: set[str], candidates: int, noises: int,
           chooser: list[float]) -> list[str]:
    """Markdown: where the guide fails, weighed as dev asks the kinds, what a pick of one candidate per mix reaches:
    the shipped ``chooser`` (per mix, ``rows`` order), a perfect judge (the pixels' verdicts) on 1 to noises - 1
    noises, and the best candidate in hindsight; with and without the stripes mixes (the never-seen pair)."""
    ids, shares = [i for i in rows if fails[i]], dev_shares(rows, fails, dev)
    at = {i: m for m, i in enumerate(rows)}
    rates = {"the shipped chooser (reward on 2 noises, dev's prior)": chooser}
    for k in range(1, noises):
        rates[f"a perfect judge of {k} noise{'s' if k > 1 else ''}"] = rotated(rows, candidates, k, noises,
                                                                               perfect=True)
    rates["the best candidate per mix, in hindsight"] = best_candidate(rows, candidates, noises)
    lines = ["| where the guide fails, one candidate per mix | all kinds | without stripes |", "|---|---|---|"]
    for name, per_mix in rates.items():
        cells = []
        for keep in (ids, [i for i in ids if rows[i]["kind"] != "stripes"]):
            x = summary([per_mix[at[i]] for i in keep], [stratum(rows[i]["kind"]) for i in keep], shares)
            cells.append(f"{x.mean:.1%} [{x.low:.1%}, {x.high:.1%}]")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, default=ROOT / "runs" / "toy-reward" / "candidates.json",
                        help="toy_reward.py's table of dev's mixes (the shipped predictor's examples)")
    parser.add_argument("--pool", type=Path, nargs="+", required=True, help="tables of more development mixes")
    parser.add_argument("--held_out", type=Path, nargs="+", default=[],
                        help="tables of more development mixes read on both sides but fitted on by neither: the "
                             "pooled predictor scores them fitted on dev and --pool")
    parser.add_argument("--labels", type=Path, nargs="+", required=True, help="toy_mixing.json files: the guide's labels")
    parser.add_argument("--weighted", action="store_true", help="weigh the pool's mixes to dev's (kind, label) cells")
    parser.add_argument("--prior_weight", type=float, default=0.25, help="as model.prior_weight")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--shipped_points", type=int, default=None, metavar="N",
                        help="the shipped side chooses among the grid's first N points only (the tables' grid "
                             "extends the shipped one: more candidates and the pooled fit, against the shipped)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    settings, dev_rows, others, held = load_pool(args.dev, args.pool, args.held_out)  # held: read, never fitted on
    fit_rows = {**dev_rows, **others}
    rows = {**fit_rows, **held}
    fails = guide_fails(rows, args.labels)
    config = settings["config"]
    grid, start, noises = config["grid"], config.get("start") or {}, settings["noises"]
    candidates = 1 + len(grid)
    points = len(grid) if args.shipped_points is None else args.shipped_points
    if not 0 <= points <= len(grid):
        raise SystemExit(f"error: --shipped_points {points}: the tables' grid has {len(grid)} points")
    weights = cell_weights(list(fit_rows), fit_rows, set(dev_rows), fails) if args.weighted else None
    pooled = pooled_priors(fit_rows, held, grid, start, args.steps, weights)
    shipped = rates(rows, shipped_priors(dev_rows, {**others, **held}, grid[:points], start, args.steps),
                    1 + points, noises, args.prior_weight)
    mine = rates(rows, pooled, candidates, noises, args.prior_weight)
    print(f"{len(dev_rows)} dev mixes and {len(others)} more fitted on, {len(held)} read only; "
          f"{sum(fails.values())} where the guide fails; "
          f"pooled fit {'weighed to dev cells' if args.weighted else 'unweighted'}\n")
    print("\n".join(report(rows, fails, shipped, mine, set(dev_rows))))
    print("\nBounds, weighed as dev asks the kinds (noises held out in turn, as the choosers above):\n")
    print("\n".join(bounds(rows, fails, set(dev_rows), 1 + points, noises, shipped["refined"])))


if __name__ == "__main__":
    main()
