"""The toy world: procedural videos whose attributes are read from pixels, and a CogVideoX, T5 and CLIP
trained on them (stock classes, shipped in ``weights/``), so concept mixing is measurable offline.

- ``world``: rendering, captions, the held-out combinations, readouts and mix verdicts;
- ``training``: the Lightning stages that train the models (``python -m richspace.toy.build``);
- ``evaluate``: the quality floor (``benchmarks/toy_quality.py``).
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "weights"
TEXT_LEN = 16  # the toy T5's and transformer's text length (words + </s>): every toy caption and mix prompt fits


def toy_weights() -> Path:
    """The shipped toy weights' directory (cogvideox/ and clip/), loadable by ``from_pretrained``."""
    if not (WEIGHTS / "cogvideox" / "model_index.json").is_file() or not (WEIGHTS / "clip").is_dir():
        raise FileNotFoundError(
            f"no toy weights in {WEIGHTS}; reinstall richspace, or train them: python -m richspace.toy.build --ship"
        )
    return WEIGHTS
