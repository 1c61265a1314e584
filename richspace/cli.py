"""The command line shared by infer.py and train.py: LightningCLI with the project's contract names.

A config file plus dotted overrides, no subcommand (LightningCLI with run=False). The
``__init__`` signatures of the Sampler, the LightningModule and the LightningDataModule are
the schema (sections ``sampler:``, ``model:``, ``data:``, ``trainer:``); an unknown key is an
error. The CLI builds one Sampler and hands it to the module (``model.sampler``). Contract
names scripts rely on: ``--config FILE``, ``--experiments FILE``, ``--run_dir DIR``,
``--trainer.devices N``, ``--overwrite``.
Every bad input ends in one line on stderr and exit code 2, before any model loads.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

import torch
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from richspace.runs import atomic_write_text, check_writable
from richspace.sampler import Sampler
from richspace.specs import SpecError
from richspace.weights import WeightsUnavailable

# Keys that may differ between a run and its resumption in the same run dir.
RESUMABLE_KEYS = ("trainer", "overwrite", "config")


class RichspaceCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiments", type=str, help="mix specs YAML file")
        parser.add_argument("--run_dir", type=str, default="runs/default", help="everything of the run goes here")
        parser.add_argument("--overwrite", type=bool, default=False, help="redo mixes already complete in run_dir")
        parser.link_arguments("experiments", "data.experiments")
        parser.link_arguments("run_dir", "data.run_dir")
        parser.link_arguments("overwrite", "data.overwrite")
        parser.link_arguments("run_dir", "trainer.default_root_dir")
        parser.add_class_arguments(Sampler, "sampler")
        parser.link_arguments("sampler", "model.sampler", apply_on="instantiate")
        parser.link_arguments("sampler.pretrained", "data.pretrained")
        parser.link_arguments("sampler.max_sequence_length", "data.max_sequence_length")
        parser.link_arguments("sampler.guidance_scale", "data.guidance_scale")


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def build_cli(
    model_class, datamodule_class, args: list[str], default_config: Path, trainer_defaults: dict | None = None
) -> RichspaceCLI:
    """Parses and instantiates; raises SystemExit(2) with one line on bad input."""
    if not any(a == "--config" or a.startswith("--config=") for a in args):
        args = ["--config", str(default_config), *args]
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")  # we add --config
    try:
        cli = RichspaceCLI(
            model_class,
            datamodule_class,
            args=args,
            run=False,
            save_config_callback=None,
            seed_everything_default=False,
            trainer_defaults={"enable_model_summary": False, **(trainer_defaults or {})},
            parser_kwargs={"exit_on_error": False},
        )
    except SystemExit:
        raise
    except Exception as e:  # parse errors, spec errors, bad weights, GPUs that are not there
        message = one_line(e)
        if "gpu" in message.lower() and not torch.cuda.is_available():
            message = f"a GPU was asked for but none is visible ({message}); use --trainer.accelerator cpu"
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    return cli


def prepare_run_dir(cli: RichspaceCLI) -> Path:
    """Checks the run dir is writable and holds no run with other settings; writes config.yaml."""
    run_dir = Path(cli.config["run_dir"])
    try:
        check_writable(run_dir)
    except OSError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None
    dumped = cli.parser.dump(cli.config)
    settings = {k: v for k, v in yaml.safe_load(dumped).items() if k not in RESUMABLE_KEYS}
    saved = run_dir / "config.yaml"
    if saved.is_file() and not cli.config["overwrite"]:
        before = {k: v for k, v in (yaml.safe_load(saved.read_text()) or {}).items() if k not in RESUMABLE_KEYS}
        if before != settings:
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            print(
                f"error: {run_dir} holds a run with other settings ({', '.join(changed)} differ); "
                "give a new --run_dir, or --overwrite to redo it",
                file=sys.stderr,
            )
            raise SystemExit(2)
    if cli.trainer.is_global_zero:
        atomic_write_text(saved, dumped)
    return run_dir


@contextlib.contextmanager
def one_line_errors():
    """Errors found while the Trainer prepares the mixes (the finder's included) and loads the weights (a hub id
    not in the cache, with no network): one line, exit code 2."""
    try:
        yield
    except (SpecError, WeightsUnavailable) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None
