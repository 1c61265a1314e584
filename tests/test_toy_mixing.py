"""benchmarks/toy_mixing.py's bookkeeping on hand-made records: measured labels, rates, the line's bound, sweeps."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import toy_mixing  # noqa: E402
from richspace.objective import ObjectiveWeights  # noqa: E402
from richspace.specs import MixSpec  # noqa: E402

METHODS = ["guide", "average", "finder"]
SWEEP = {"sweep_00": 0.0, "sweep_15": 0.5, "sweep_30": 1.0}


def record(mix: str, seed: int, wins: dict[str, bool], clip_guide: dict[str, float] | None = None) -> dict:
    alphas = {"guide": None, "average": 0.5, "finder": 0.4, **SWEEP}
    names = [m for m in alphas if m in wins]
    return {"id": mix, "global_seed": seed, "alphas": {m: alphas[m] for m in names},
            "success": {m: {"success": wins[m]} for m in names},
            "readouts": {m: {"present": True, "hue": 30.0, "angle": 0.0} for m in names},
            "metrics": {m: {"clip_a": 20.0, "clip_b": 20.0, "clip_guide": (clip_guide or {}).get(m, 10.0)}
                        for m in names}}


def test_labels_rates_bound_and_sweep():
    specs = [MixSpec(id="m1", a="a", b="b", guide="g", meta={"kind": "hue"}),
             MixSpec(id="m2", a="a", b="b", guide="g", meta={"kind": "seen"})]
    labels = [record("m1", s, {"guide": s == 200, "average": False, "finder": False}) for s in (200, 201, 202)]
    labels += [record("m2", s, {"guide": True, "average": False, "finder": False}) for s in (200, 201, 202)]
    off = {m: False for m in [*METHODS, *SWEEP]}
    scored = [record("m1", 0, off | {"finder": True, "sweep_15": True}, {"sweep_30": 30.0}),
              record("m1", 1, off | {"sweep_30": True}, {"sweep_30": 30.0}),
              record("m2", 0, off | {"guide": True}), record("m2", 1, off | {"guide": True})]
    results = toy_mixing.summarise(labels, scored, specs, METHODS, ObjectiveWeights())
    m1, m2 = results
    assert m1.guide_label_rate == pytest.approx(1 / 3) and m1.guide_fails  # measured on label seeds, not written
    assert m2.guide_label_rate == 1.0 and not m2.guide_fails
    assert m1.rates == {"guide": 0.0, "average": 0.0, "finder": 0.5}
    assert m1.line_rate == 1.0  # seed 0 by the finder, seed 1 by alpha = 1 alone: the line's bound
    assert m2.line_rate == 0.0 and m2.any_rate == 1.0 and m2.rates["guide"] == 1.0  # the guide is off the line
    assert [s["alpha"] for s in m1.sweep] == [0.0, 0.5, 1.0] and [s["successes"] for s in m1.sweep] == [0, 1, 1]
    assert m1.peak_alpha == 1.0  # S_G peaks at alpha = 1
    view = toy_mixing.sweep_view(m1)
    assert "| 0.50 | 1/2 |" in view and "objective peak" in view.splitlines()[-1]
    text = toy_mixing.report(results, METHODS, "test", [0, 1])
    assert "| finder | 25% [" in text  # mean over mixes of per-mix rates: (0.5 + 0) / 2
    assert "guide fails (measured) (n = 1)" in text and "2 of 2" in text


def test_scored_seeds_may_not_be_fitted_or_labelled(tmp_path):
    spec = (REPO / "benchmarks" / "toy_mixing.yaml").read_text()
    bad = tmp_path / "bench.yaml"
    bad.write_text(spec.replace("seeds: [0, 1, 2]", "seeds: [0, 1, 100]"))
    with pytest.raises(SystemExit, match="nothing fitted or labelled may be scored"):
        toy_mixing.load_benchmark(bad)
    toy_mixing.load_benchmark(REPO / "benchmarks" / "toy_mixing.yaml")
