"""Mix specs: the YAML schema of the paper's mixes (configs/experiments/paper.yaml), validated up front.

A specs file is a list of mixes. Each mix has an ``id``, prompts ``a`` and ``b`` and a
``guide`` prompt describing the mix. A chained mix (the paper's three-concept case,
Section 5) names a ``base`` mix instead of ``a``: the base's optimal embedding takes the
place of E_a. An optional ``contrast`` prompt names the values the mix does not want (A's where the
guide takes B's, B's where it takes A's: "a plain circle" for a striped triangle from a plain triangle and a
striped circle); refinement composes it with a negative weight (richspace.conditioning). Any other key
(``paper_index``, ``figure``, ...) is kept as metadata;
``queries`` (the per-attribute reward's questions, richspace.objective) is checked here.

Every problem is reported before any model loads, as one line naming the file, the mix and
the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from richspace.objective import parse_queries

PROMPT_KEYS = ("a", "b", "guide")


class SpecError(ValueError):
    """A mix specs file that cannot be used; the message names the file, the mix and the fix."""


@dataclass(frozen=True)
class MixSpec:
    """One mix: prompts A and B (or a base mix in place of A) and a guide prompt."""

    id: str
    b: str
    guide: str
    a: str | None = None
    base: str | None = None
    contrast: str | None = None  # the unwanted values together (richspace.conditioning's E_contrast); optional
    meta: dict[str, Any] = field(default_factory=dict)


def parse_specs(entries: Any, source: str = "<specs>") -> list[MixSpec]:
    """Validates loaded YAML (a list of mappings) into specs, bases before the mixes that use them."""
    if not isinstance(entries, list) or not entries:
        raise SpecError(f"{source}: expected a non-empty YAML list of mixes (- id: ..., a: ..., b: ..., guide: ...)")
    specs: dict[str, MixSpec] = {}
    for position, entry in enumerate(entries, 1):
        where = f"{source}: mix #{position}"
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: expected a mapping with id, a, b and guide; got {type(entry).__name__}")
        mix_id = entry.get("id")
        if not isinstance(mix_id, str) or not mix_id.strip():
            raise SpecError(f"{where}: missing or empty 'id'; give each mix a unique name")
        where = f"{source}: mix '{mix_id}'"
        if mix_id in specs:
            raise SpecError(f"{where}: duplicate id; each mix needs its own id")
        base = entry.get("base")
        if base is not None and (not isinstance(base, str) or not base.strip()):
            raise SpecError(f"{where}: 'base' must name another mix's id")
        if base is not None and "a" in entry:
            raise SpecError(f"{where}: has both 'a' and 'base'; a chained mix takes its A from the base, drop 'a'")
        for key in PROMPT_KEYS:
            if key == "a" and base is not None:
                continue
            value = entry.get(key)
            if value is None:
                fix = "or a 'base' mix " if key == "a" else ""
                raise SpecError(f"{where}: missing prompt '{key}'; give it {fix}as a non-empty string")
            if not isinstance(value, str) or not value.strip():
                raise SpecError(f"{where}: prompt '{key}' is empty or not a string; write the prompt as text")
        contrast = entry.get("contrast")
        if contrast is not None and (not isinstance(contrast, str) or not contrast.strip()):
            raise SpecError(f"{where}: prompt 'contrast' is empty or not a string; write the prompt as text or drop it")
        meta = {k: v for k, v in entry.items() if k not in ("id", "base", "contrast", *PROMPT_KEYS)}
        if "queries" in meta:  # the per-attribute reward's questions (richspace.objective)
            try:
                parse_queries(meta["queries"], where)
            except ValueError as e:
                raise SpecError(str(e)) from None
        specs[mix_id] = MixSpec(id=mix_id, a=entry.get("a"), b=entry["b"], guide=entry["guide"], base=base,
                                contrast=contrast, meta=meta)

    for spec in specs.values():
        if spec.base is not None and spec.base not in specs:
            raise SpecError(f"{source}: mix '{spec.id}': unknown base '{spec.base}'; name a mix defined in this file")
    ordered: list[MixSpec] = []
    state: dict[str, str] = {}  # id -> "visiting" | "done"

    def visit(spec: MixSpec, path: list[str]) -> None:
        if state.get(spec.id) == "done":
            return
        if state.get(spec.id) == "visiting":
            cycle = " -> ".join(path[path.index(spec.id) :] + [spec.id])
            raise SpecError(f"{source}: mix '{spec.id}': base chain forms a cycle ({cycle}); one mix must start from prompt 'a'")
        state[spec.id] = "visiting"
        if spec.base is not None:
            visit(specs[spec.base], path + [spec.id])
        state[spec.id] = "done"
        ordered.append(spec)

    for spec in specs.values():
        visit(spec, [])
    return ordered


def load_specs(path: str | Path) -> list[MixSpec]:
    """Reads and validates a mix specs YAML file; raises SpecError with one clear line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"{path}: cannot read the mix specs file ({e.strerror}); check the path") from None
    try:
        entries = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{path}: not valid YAML{line}; fix the syntax") from None
    return parse_specs(entries, str(path))


def prompts_of(spec: MixSpec, by_id: dict[str, MixSpec]) -> tuple:
    """What a mix asks, its id aside: its prompts, a chained mix's A being its base's (recursively)."""
    a = prompts_of(by_id[spec.base], by_id) if spec.base is not None else spec.a
    return a, spec.b, spec.guide


def repeats(*sets: list[MixSpec]) -> dict[str, str]:
    """Mix id -> the id of the first mix with the same prompts, for every mix of ``sets`` (in order: e.g. dev,
    then test) that asks what an earlier mix, in its own set or an earlier one, already asks. A benchmark scores
    each distinct mix once: a repeat is not an independent verdict, and a test mix that repeats a dev mix was
    fitted on."""
    first: dict[tuple, str] = {}
    out: dict[str, str] = {}
    for specs in sets:
        by_id = {s.id: s for s in specs}
        for spec in specs:
            key = prompts_of(spec, by_id)
            if key in first:
                out[spec.id] = first[key]
            else:
                first[key] = spec.id
    return out


def repeated(path: str | Path, after: list[str | Path] = ()) -> dict[str, str]:
    """``repeats`` for the specs file ``path``, read after the files ``after`` (e.g. the development set, for a
    test set; ``path`` itself among them is not read twice): its mixes that ask what an earlier mix of its own, or
    of ``after``, asks -> that earlier mix."""
    specs = load_specs(path)
    ids = {s.id for s in specs}
    earlier = [load_specs(p) for p in after if Path(p).resolve() != Path(path).resolve()]
    return {i: first for i, first in repeats(*earlier, specs).items() if i in ids}
