"""Trains the toy world's CogVideoX, T5 and CLIP from scratch and (with --ship) installs them in the package.

    python -m richspace.toy.build                      # about 25 minutes on 2 CPU cores -> runs/toy-build
    python -m richspace.toy.build --ship               # then copy the weights into richspace/toy/weights
    tensorboard --logdir runs/toy-build/logs           # the stages' losses
    python -m richspace.toy.build --out runs/toy-build-composed --generator_from toy --clip_words 1.0 --composed 1200
                                                       # another judge for the shipped generator (12 minutes);
                                                       #   --ship with it ships the judge, and manifest.json then
                                                       #   carries the generator's own manifest too

A killed build started again with the same command resumes at the stage it was in. The
same seed gives the same data and initialisation; CPU kernels may still differ in the last
bits between machines, so retrained weights match the shipped ones in quality, not bytes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import fields
from pathlib import Path

from richspace.runs import output_dir
from richspace.toy.training import BuildConfig, build, reused_generator

from richspace.toy import WEIGHTS
MAX_BYTES = 16 * 2**20  # the package's budget for shipped weights


def trained_models(out: Path) -> tuple[Path, Path]:
    """The pipeline and judge directories (cogvideox/, clip/) of the finished build in ``out``; a one-line
    FileNotFoundError where the build has not finished (either lacks the file ``from_pretrained`` reads first)."""
    parts = (out / "cogvideox", out / "clip")
    missing = [str(p / f) for p, f in zip(parts, ("model_index.json", "config.json")) if not (p / f).is_file()]
    if missing:
        raise FileNotFoundError(f"no trained model at {missing}; run the build to the end first "
                                f"(python -m richspace.toy.build --out {out})")
    return parts


def finished_build(text: str) -> Path:
    """argparse type of a ``--world BUILD`` option: a finished build's directory (an argparse error where not)."""
    try:
        trained_models(Path(text))
    except FileNotFoundError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return Path(text)


def manifest_of(root: Path) -> dict:
    """What made the models in ``root``: a shipped directory's manifest.json, or a build directory's config and
    stages (``seconds``: the build's time, stage by stage). Where the build took its VAE and denoiser from another
    (``generator_from``), that one's own manifest is under ``generator``, so shipped weights say how every part
    was trained."""
    if (root / "manifest.json").is_file():
        return json.loads((root / "manifest.json").read_text())
    config = json.loads((root / "build_config.json").read_text())
    stages = {f.stem: json.loads(f.read_text()) for f in sorted((root / "stages").glob("*.json"))}
    manifest = {"build_config": config, "stages": stages,
                "seconds": round(sum(stage["seconds"] for stage in stages.values()), 1)}
    source = reused_generator(config.get("generator_from", ""))
    if source is not None:
        manifest["generator"] = manifest_of(source)
    return manifest


def ship(out: Path, dest: Path = WEIGHTS) -> int:
    """Copies out/cogvideox and out/clip (safetensors and configs) into dest with the build's manifest; returns
    the bytes shipped."""
    parts = trained_models(out)
    size = sum(f.stat().st_size for p in parts for f in p.rglob("*") if f.is_file())
    if size > MAX_BYTES:
        raise ValueError(f"trained weights take {size / 2**20:.1f} MB, over the {MAX_BYTES / 2**20:.0f} MB budget")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for p in parts:
        shutil.copytree(p, tmp / p.name)
    (tmp / "manifest.json").write_text(json.dumps(manifest_of(out), indent=1) + "\n")  # before dest is replaced
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/toy-build", help="build directory (logs, stages, models)")
    parser.add_argument("--ship", action="store_true", help="copy the trained weights into the package")
    for f in fields(BuildConfig):
        parser.add_argument(f"--{f.name}", type=type(f.default), default=f.default)
    args = parser.parse_args(argv)
    output_dir(args.out, "--out")
    config = BuildConfig(**{f.name: getattr(args, f.name) for f in fields(BuildConfig)})
    try:
        out = build(args.out, config)
        print(f"trained models in {out}/cogvideox and {out}/clip")
        if args.ship:
            print(f"shipped {ship(out) / 2**20:.1f} MB to {WEIGHTS}")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
