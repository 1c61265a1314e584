"""Where weights come from: 'toy', 'tiny', a hub id or a local directory, and the checks that say what to fix.

Nothing here downloads: a hub id is handed to ``from_pretrained`` as it is (the Hugging Face
cache serves it once it was fetched with network access), 'toy' is the trained toy world
shipped in the package, 'tiny' the random checkpoint this project builds itself.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# What a local checkpoint directory must hold, per kind of weights (``check_weights``' ``what``): a CogVideoX
# pipeline as diffusers saves it (the sampler loads all of it; the prompt encoder its T5 and tokenizer alone), and
# a CLIP or X-CLIP model as transformers saves it.
CHECKPOINTS = {  # what -> (the checkpoint's format, the entries its directory holds)
    "CogVideoX": ("diffusers-format CogVideoX",
                  ("model_index.json", "transformer", "vae", "scheduler", "text_encoder", "tokenizer")),
    "CogVideoX text encoder": ("diffusers-format CogVideoX", ("text_encoder", "tokenizer")),
    "CLIP": ("transformers-format CLIP or X-CLIP", ("config.json",)),
}


def resolve_weights(name: str, part: str) -> str:
    """'toy' -> the trained toy weights in the package; 'tiny' -> the built random tiny checkpoint;
    a local path or hub id is returned as it is. ``part`` is 'cogvideox' or 'clip'."""
    if name == "toy":
        from richspace.toy import toy_weights

        return str(toy_weights() / part)
    if name == "tiny":
        from richspace.tiny import tiny_checkpoint

        return str(tiny_checkpoint() / part)
    return name


def check_weights(name: str | Path, what: str = "CogVideoX") -> None:
    """One clear error for a local weights path that is not a directory, or a directory that does not hold a
    checkpoint of its kind (``what``, a key of ``CHECKPOINTS``); 'toy', 'tiny' and hub ids
    pass (a hub id is anything of the form owner/name that is not an existing path)."""
    name = str(name)
    if name == "toy":
        from richspace.toy import toy_weights

        toy_weights()  # says how to get them where they are missing
        return
    if name == "tiny":
        return
    looks_local = name.startswith((".", "/", "~")) or name.count("/") != 1 or Path(name).exists()
    if not looks_local:
        return
    path = Path(name).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{what} weights not found at {name!r}: give a local diffusers-format directory, a hub id such as "
            "THUDM/CogVideoX-2b (downloaded once with network access into the Hugging Face cache), 'toy' or 'tiny'"
        )
    form, entries = CHECKPOINTS[what]
    missing = [entry for entry in entries if not (path / entry).exists()]
    if missing:
        raise FileNotFoundError(
            f"{what} weights at {name!r} lack {', '.join(missing)}: give the directory that holds a {form} "
            "checkpoint (as `save_pretrained` writes it), a hub id, 'toy' or 'tiny'"
        )


class WeightsUnavailable(OSError):
    """Weights that could not be loaded: a hub id neither in the Hugging Face cache nor downloadable here, or a
    local directory that is not a readable checkpoint."""


@contextlib.contextmanager
def loading(name: str | Path, what: str):
    """Turns the OSError ``from_pretrained`` or ``snapshot_download`` raises for weights that are not there (no
    network, not in the cache, a broken directory) into one WeightsUnavailable line that says what to do; so too
    the ValueError they raise for a directory whose config they cannot read (no ``model_type``, a config of
    another model)."""
    try:
        yield
    except WeightsUnavailable:
        raise
    except (OSError, ValueError) as e:
        # cli.one_line's joining, cut short: hub errors run long (cli imports this module, so not imported here)
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        where = ("save the checkpoint there again with `save_pretrained`" if Path(str(name)).expanduser().is_dir()
                 else f"give a local directory, or fetch the hub id once with network access (hf download {name})")
        raise WeightsUnavailable(f"{what} weights {str(name)!r} could not be loaded ({reason}): {where}") from None


def check_dtype(dtype: str, key: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"{key} must be one of {list(DTYPES)}; got {dtype!r}")
    return DTYPES[dtype]


def temporal_compression(pretrained: str) -> int:
    """How many frames the checkpoint's VAE folds into one latent frame: read from a local checkpoint's
    vae/config.json (the toy's VAE folds 2); 4, CogVideoX's, for a hub id."""
    config = Path(resolve_weights(pretrained, "cogvideox")) / "vae" / "config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("temporal_compression_ratio", 4))
    return 4
