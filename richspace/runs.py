"""A run directory: atomic writes, per-mix records, and what counts as a finished mix.

Layout (everything of a run under one folder):

    run_dir/config.yaml                    the resolved config of the run
    run_dir/mixes/<id>/<method>.mp4        one video per method, same seed
    run_dir/mixes/<id>/record.json         written last: its presence marks the mix complete
    run_dir/results.jsonl, results.md      one line per mix; the table of methods by mean metric
    run_dir/lightning_logs/                TensorBoard

Every file is written to a temporary name in its folder and renamed into place, so a killed
run leaves no half-written output; leftover temporaries are removed when a run starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

TMP_MARK = ".tmp-"


def mix_seed(seed: int, mix_id: str) -> int:
    """A mix's generation seed from the global seed and its id: the same whatever the rank, order or GPU count."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{mix_id}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Calls ``write(tmp_path)`` for a temporary file beside ``path`` (same suffix), then renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}{TMP_MARK}", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def remove_temporaries(run_dir: Path) -> list[Path]:
    """Deletes temporaries a killed run left behind; returns them."""
    found = [p for p in run_dir.rglob(f".*{TMP_MARK}*") if p.is_file()] if run_dir.is_dir() else []
    for p in found:
        p.unlink(missing_ok=True)
    return found


def read_input(path: str | Path, flag: str, parse: Callable[[str], object] = json.loads):
    """A command's input file named by ``flag``, parsed (JSON by default; ``yaml.safe_load`` for YAML): one
    ``error:`` line (SystemExit) where it cannot be read or parsed."""
    import yaml

    try:
        return parse(Path(path).read_text())
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise SystemExit(f"error: {flag} {path}: cannot read it ({type(e).__name__})") from None


def output_dir(path: str | Path, flag: str) -> Path:
    """A command's output directory named by ``flag``: one ``error:`` line (SystemExit) where a file is in the way."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SystemExit(f"error: {flag} {path} is a file; give a directory")
    return path


def mix_dir(run_dir: Path, mix_id: str) -> Path:
    return run_dir / "mixes" / mix_id


def read_results(run_dir: Path) -> list[dict]:
    """A finished run's results.jsonl: one record per mix, in spec order."""
    return [json.loads(line) for line in (Path(run_dir) / "results.jsonl").read_text().splitlines()]


def read_record(run_dir: Path, mix_id: str) -> dict | None:
    """A finished mix's record, or None where the mix is missing or incomplete."""
    path = mix_dir(run_dir, mix_id) / "record.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    videos = record.get("videos", {})
    if record.get("id") != mix_id or not videos or not all((run_dir / v).is_file() for v in videos.values()):
        return None
    return record


def check_writable(run_dir: Path) -> None:
    """Raises OSError with a clear message where the run dir cannot be created or written."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as e:
        raise OSError(f"run dir {run_dir} cannot be written ({e.strerror}); give a writable --run_dir") from None
