"""Runs the closed-form finder over validated mix specs, chains included (docs/design.md, "Data flow").

Text encoding is passed in as a callable, so this module works the same with the cached
T5 of a real checkpoint, the tiny checkpoint, or embeddings a test makes up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from richspace.finder import Interpolation, find_interpolation
from richspace.specs import MixSpec

Encode = Callable[[Sequence[str]], tuple[Tensor, Tensor]]  # prompts -> (N, L, d) embeds, (N,) token counts


@dataclass(frozen=True)
class MixResult:
    """A mix's finder result with the inputs it used: E_a (a base mix's E_opt for a chain), E_b, the
    guide's embedding, and the token counts (A or the base's carried count, B, guide)."""

    spec: MixSpec
    found: Interpolation
    n_ids: tuple[int, int, int]
    e_a: Tensor
    e_b: Tensor
    e_guide: Tensor
    e_contrast: Tensor | None = None  # the spec's contrast prompt, where it has one

    @property
    def index(self) -> int:
        return int(self.found.index)

    @property
    def alpha(self) -> float:
        return float(self.found.alpha)

    @property
    def embedding(self) -> Tensor:
        return self.found.embedding


def prompts_of(specs: Sequence[MixSpec]) -> list[str]:
    """Every distinct prompt the specs need, in first-use order."""
    return list(dict.fromkeys(p for s in specs for p in (s.a, s.b, s.guide, s.contrast) if p is not None))


def find_mixes(
    specs: Sequence[MixSpec], encode: Encode, k: int = 30, scoring: str = "both", projection: str = "global"
) -> dict[str, MixResult]:
    """The finder's result for every mix, by id; specs must list bases first (as load_specs does)."""
    prompts = prompts_of(specs)
    embeds, counts = encode(prompts)
    table = {p: (embeds[i], int(counts[i])) for i, p in enumerate(prompts)}
    results: dict[str, MixResult] = {}
    for spec in specs:
        if spec.base is None:
            e_a, n_a = table[spec.a]
        else:
            base = results[spec.base]
            e_a, n_a = base.embedding, int(base.found.n_ids)
        (e_b, n_b), (e_c, n_c) = table[spec.b], table[spec.guide]
        try:
            found = find_interpolation(e_a, e_b, e_c, (n_a, n_b, n_c), k, scoring, projection)
        except ValueError as e:
            raise ValueError(f"mix '{spec.id}': {e}") from None
        e_contrast = None if spec.contrast is None else table[spec.contrast][0]
        results[spec.id] = MixResult(spec, found, (n_a, n_b, n_c), e_a, e_b, e_c, e_contrast)
    return results
