"""Writes a generation run: per mix as it finishes, then the results file, table and TensorBoard.

Each mix's videos and record are written atomically by the rank that made them (no
communication inside predict). After predict returns, every rank meets at one barrier (a
rank with no mix skips Lightning's predict hooks, so it cannot be inside them) and rank 0
gathers the records from the run dir: a resumed run reports finished mixes too.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from richspace.data import MixItem, MixVideos
from richspace.metrics import mean_table
from richspace.runs import atomic_write, atomic_write_text, mix_dir, read_record
from richspace.video import read_mp4, write_mp4

RESULT_KEYS = ("id", "index", "alpha", "n_ids", "seed", "videos", "metrics", "alphas", "readouts", "success")
METHOD_ORDER = ("guide", "average", "finder", "refined")


def method_order(methods) -> list[str]:
    return [m for m in METHOD_ORDER if m in methods] + sorted(m for m in methods if m not in METHOD_ORDER)


class RunWriter(BasePredictionWriter):
    """Per batch (one mix): mp4 per method, then record.json (its presence marks the mix done)."""

    def __init__(self, run_dir: str | Path, fps: int = 8) -> None:
        super().__init__(write_interval="batch")
        self.run_dir, self.fps = Path(run_dir), fps

    def write_on_batch_end(self, trainer, pl_module, prediction: MixVideos, batch_indices, batch: MixItem, batch_idx,
                           dataloader_idx=0):
        item, folder = batch, mix_dir(self.run_dir, batch.id)
        videos = {}
        for method, frames in prediction.videos.items():
            path = folder / f"{method}.mp4"
            atomic_write(path, lambda tmp, frames=frames: write_mp4(frames, tmp, self.fps))
            videos[method] = path.relative_to(self.run_dir).as_posix()
        record = {"id": item.id, "index": item.index, "alpha": item.alpha, "n_ids": item.n_ids, "seed": item.seed,
                  "videos": videos, "metrics": prediction.metrics, "alphas": item.alphas,
                  "readouts": prediction.readouts, "success": prediction.success, "scores": item.scores,
                  "texts": asdict(item.texts), "meta": item.meta}
        atomic_write_text(folder / "record.json", json.dumps(record, indent=1) + "\n")


def finish_run(run_dir: Path, ids: list[str], logger=None) -> str:
    """results.jsonl (spec order), results.md (methods by mean metric), TensorBoard; returns the table."""
    records = [read_record(run_dir, mix_id) for mix_id in ids]
    missing = [mix_id for mix_id, r in zip(ids, records) if r is None]
    if missing:
        raise RuntimeError(f"mixes {missing} have no complete record in {run_dir}; run again to finish them")
    lines = "".join(json.dumps({k: r[k] for k in RESULT_KEYS if k in r}) + "\n" for r in records)
    atomic_write_text(run_dir / "results.jsonl", lines)
    methods = method_order({m for r in records for m in r["videos"]})
    table = mean_table(records, methods)
    atomic_write_text(run_dir / "results.md", f"# Mean metrics over {len(records)} mixes\n\n{table}\n")
    if logger is not None and hasattr(logger, "experiment") and hasattr(logger.experiment, "add_figure"):
        log_tensorboard(logger.experiment, run_dir, records, methods, table)
    print(f"\n{table}\n\n{len(records)} mixes in {run_dir} (results.jsonl, results.md, mixes/)")
    return table


def curve_figure(mix_id: str, scores: dict[str, list[float]], alpha: float, index: int):
    """The finder's score curves over alpha with its choice marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    k = len(scores["sum"]) - 1
    alphas = [i / k for i in range(k + 1)]
    for name, curve in scores.items():
        ax.plot(alphas, curve, label=name)
    ax.axvline(alpha, color="k", linestyle="--", label=f"chosen i={index}")
    ax.set_xlabel("alpha (weight on A)")
    ax.set_ylabel("phi_cos to the foot")
    ax.set_title(mix_id)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def frames_grid(run_dir: Path, record: dict, methods: list[str], columns: int = 8) -> torch.Tensor:
    """(3, rows*H, columns*W) uint8: one row per method, evenly spaced frames, same seed."""
    rows = []
    for method in methods:
        if method not in record["videos"]:
            continue
        frames = read_mp4(run_dir / record["videos"][method])
        pick = torch.linspace(0, len(frames) - 1, min(columns, len(frames))).round().long()
        rows.append(torch.cat(list(frames[pick]), dim=-1))  # (3, H, columns*W)
    return torch.cat(rows, dim=-2)


def log_tensorboard(writer, run_dir: Path, records: list[dict], methods: list[str], table: str) -> None:
    for step, record in enumerate(records):
        mix_id = record["id"]
        writer.add_figure(f"curves/{mix_id}", curve_figure(mix_id, record["scores"], record["alpha"], record["index"]), step)
        writer.add_image(f"frames/{mix_id} ({', '.join(m for m in methods if m in record['videos'])})",
                         frames_grid(run_dir, record, methods), step)
        for method, values in record["metrics"].items():
            for name, value in values.items():
                writer.add_scalar(f"eval/{method}/{name}", value, step)
        for method, verdicts in record.get("success", {}).items():
            writer.add_scalar(f"eval/{method}/success", float(verdicts["success"]), step)
    writer.add_text("results", table)
    writer.flush()
