"""Statistics for benchmark tables, as pure functions: rates over mixes with bootstrap intervals.

A mix is the unit of independent evidence: seeds of one mix share its prompts and mostly
agree, so intervals resample mixes (each mix's success rate over its seeds), not videos.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean over mixes with its 95% bootstrap percentile interval and the number of mixes behind it."""

    mean: float
    low: float
    high: float
    mixes: int

    def __str__(self) -> str:
        return f"{self.mean:.0%} [{self.low:.0%}, {self.high:.0%}]" if self.mixes else "-"


def bootstrap_mean(rates: Sequence[float], resamples: int = 10000, seed: int = 0, level: float = 0.95) -> Interval:
    """Mean of per-mix rates and its percentile bootstrap interval over mixes (resampled with replacement)."""
    x = np.asarray(rates, dtype=float)
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(x.mean()), float(low), float(high), int(x.size))


def bootstrap_difference(first: Sequence[float], second: Sequence[float], resamples: int = 10000, seed: int = 0,
                         level: float = 0.95) -> Interval:
    """Mean of paired per-mix differences (first - second) with its bootstrap interval: the same mixes resampled
    for both, so what the mixes share cancels."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired rates need the same mixes; got {a.size} and {b.size}")
    return bootstrap_mean(a - b, resamples, seed, level)


def stratified_mean(strata: Mapping[str, Sequence[float]], shares: Mapping[str, float], resamples: int = 10000,
                    seed: int = 0, level: float = 0.95) -> Interval:
    """A weighted mean of per-stratum means, each stratum weighing its ``shares`` entry (normalised over the strata
    present), with a percentile bootstrap interval that resamples mixes within each stratum. More mixes of a kind
    sharpen that kind's mean without changing how much the kind counts. A stratum without a share is an error."""
    present = {k: np.asarray(v, dtype=float) for k, v in strata.items() if len(v)}
    missing = sorted(set(present) - set(shares))
    if missing:
        raise ValueError(f"strata {missing} have no share; give one for each of {sorted(present)}")
    if not present:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    total = sum(shares[k] for k in present)
    if not total > 0:
        raise ValueError(f"the strata present ({sorted(present)}) have no positive share")
    rng = np.random.default_rng(seed)
    point, draws = 0.0, np.zeros(resamples)
    for k, x in present.items():
        w = shares[k] / total
        point += w * x.mean()
        draws += w * x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(float(point), float(low), float(high), int(sum(x.size for x in present.values())))
