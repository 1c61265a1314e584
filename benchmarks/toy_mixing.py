"""The toy mixing benchmark: does each method's video show the mix, as a pixel fact, over fixed seeds?

    python benchmarks/toy_mixing.py                          # ~8 minutes on 2 CPU cores -> runs/toy-mixing
    python benchmarks/toy_mixing.py --out DIR --spec benchmarks/toy_mixing.yaml
    tensorboard --logdir runs/toy-mixing                     # the table and per-mix success rates

Inputs are fixed in benchmarks/toy_mixing.yaml (mixes, seeds, methods, configs). The run is
the project's own commands: ``train.py`` refines every mix's coefficient once (seed 0's
noise), then ``infer.py`` generates every method for each seed with ``--data.alpha_from``.
Each run dir resumes, so an interrupted benchmark continues where it stopped. The script
then reads every results.jsonl, counts successes (richspace.toy.world.judge on the readouts)
per mix and method, and prints, writes (toy_mixing.md, toy_mixing.json) and logs the tables.
"""

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import infer  # noqa: E402
import train  # noqa: E402
from richspace.runs import atomic_write_text  # noqa: E402
from richspace.specs import load_specs  # noqa: E402


def load_benchmark(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text())
    seeds = spec.get("seeds")
    if not isinstance(seeds, list) or len(seeds) < 8 or len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: {path}: 'seeds' must list at least 8 distinct seeds")
    return spec


def run(spec: dict, out: Path) -> list[dict]:
    """Refines once, generates per seed (each resumable); returns every seed's records."""
    refine_dir = out / "refine"
    methods = spec["methods"]
    if "refined" in methods:
        train.main(["--config", str(ROOT / spec["refine"]), "--experiments", str(ROOT / spec["experiments"]),
                    "--run_dir", str(refine_dir)])
    records = []
    for seed in spec["seeds"]:
        run_dir = out / f"seed-{seed}"
        args = ["--config", str(ROOT / spec["generate"]), "--experiments", str(ROOT / spec["experiments"]),
                "--run_dir", str(run_dir), "--data.seed", str(seed)]
        if "refined" in methods:
            args += ["--data.alpha_from", str(refine_dir / "refinement.json")]
        infer.main(args)
        for line in (run_dir / "results.jsonl").read_text().splitlines():
            records.append(json.loads(line) | {"global_seed": seed})
    return records


def summarise(records: list[dict], specs, methods: list[str]) -> dict:
    """Per mix and method: successes, per-expectation passes and the readouts that matter."""
    table = {}
    for spec in specs:
        rows = [r for r in records if r["id"] == spec.id]
        entry = {"guide_fails": spec.meta.get("guide_fails"), "expect": spec.meta["expect"], "methods": {}}
        for method in methods:
            verdicts = [r["success"][method] for r in rows if method in r.get("success", {})]
            reads = [r["readouts"][method] for r in rows if method in r.get("readouts", {})]
            if not verdicts:
                continue
            present = [x for x in reads if x.get("present")]
            others = [k for k in spec.meta["expect"] if k != "shape"]
            entry["methods"][method] = {
                "success": sum(v["success"] for v in verdicts),
                # The shipped model draws every shape as a blob (the quality floor's shape part is not met):
                # success on everything else shows what the methods do with hue, stripes and motion.
                "success_but_shape": sum(all(v[k] for k in others) for v in verdicts),
                "n": len(verdicts),
                "passes": {k: sum(v[k] for v in verdicts) for k in spec.meta["expect"]},
                "hue_median": round(statistics.median(x["hue"] for x in present), 1) if present else None,
                "angle_median": round(statistics.median(x["angle"] for x in present), 1) if present else None,
                "shapes": dict(Counter(x.get("shape", "none") for x in reads)),
                "striped": sum(x.get("pattern") == "striped" for x in reads),
                "alpha": rows[0]["alphas"].get(method),
            }
        table[spec.id] = entry
    return table


def markdown(table: dict, methods: list[str]) -> str:
    return "\n\n".join([
        "Success (every expected pixel fact holds):", success_table(table, methods, "success"),
        "Success on every fact but shape:", success_table(table, methods, "success_but_shape"), details(table)])


def success_table(table: dict, methods: list[str], key: str) -> str:
    lines = ["| mix | guide fails? | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    totals = {m: [0, 0] for m in methods}
    groups = {True: {m: [0, 0] for m in methods}, False: {m: [0, 0] for m in methods}}
    for mix_id, entry in table.items():
        cells = []
        for m in methods:
            r = entry["methods"].get(m)
            cells.append(f"{r[key]}/{r['n']}" if r else "-")
            if r:
                for acc in (totals[m], groups[bool(entry["guide_fails"])][m]):
                    acc[0] += r[key]
                    acc[1] += r["n"]
        lines.append(f"| {mix_id} | {'yes' if entry['guide_fails'] else 'no'} | " + " | ".join(cells) + " |")
    for label, acc in (("**guide fails (main cases)**", groups[True]), ("**guide works (appendix)**", groups[False]),
                       ("**all**", totals)):
        cells = [f"{a[0]}/{a[1]} ({a[0] / a[1]:.0%})" if a[1] else "-" for a in (acc[m] for m in methods)]
        lines.append(f"| {label} | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details(table: dict) -> str:
    lines = ["Per expectation (passes out of seeds), with the readouts that matter:", "",
             "| mix | method | alpha | passes | hue median | angle median | shapes | striped |", "|---" * 8 + "|"]
    for mix_id, entry in table.items():
        for m, r in entry["methods"].items():
            passes = ", ".join(f"{k} {v}" for k, v in r["passes"].items())
            alpha = "-" if r["alpha"] is None else f"{r['alpha']:.3f}"
            shapes = ", ".join(f"{k} {v}" for k, v in sorted(r["shapes"].items()))
            lines.append(f"| {mix_id} | {m} | {alpha} | {passes} | {r['hue_median']} | {r['angle_median']} | "
                         f"{shapes} | {r['striped']}/{r['n']} |")
    return "\n".join(lines)


def log_tensorboard(out: Path, table: dict, text: str, methods: list[str]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tensorboard"))
    writer.add_text("toy_mixing/table", text)
    for step, (mix_id, entry) in enumerate(table.items()):
        rates = {m: r["success"] / r["n"] for m, r in entry["methods"].items()}
        writer.add_scalars(f"toy_mixing/{mix_id}", rates, step)
    for m in methods:
        rs = [e["methods"][m] for e in table.values() if m in e["methods"]]
        if rs:
            writer.add_scalar(f"toy_mixing/all/{m}", sum(r["success"] for r in rs) / sum(r["n"] for r in rs), 0)
    writer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "benchmarks" / "toy_mixing.yaml"))
    parser.add_argument("--out", default="runs/toy-mixing")
    args = parser.parse_args(argv)
    spec, out = load_benchmark(Path(args.spec)), Path(args.out)
    specs = load_specs(ROOT / spec["experiments"])
    records = run(spec, out)
    table = summarise(records, specs, spec["methods"])
    text = markdown(table, spec["methods"])
    atomic_write_text(out / "toy_mixing.json", json.dumps(table, indent=1) + "\n")
    atomic_write_text(out / "toy_mixing.md", f"# Toy mixing: successes over {len(spec['seeds'])} seeds\n\n{text}\n")
    log_tensorboard(out, table, text, spec["methods"])
    print(f"\n{text}\n\nwritten to {out}/toy_mixing.md, toy_mixing.json and {out}/tensorboard")


if __name__ == "__main__":
    main()
