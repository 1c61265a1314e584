"""benchmarks/gpu_check.py, the repository's GPU check: it refuses to report a CPU run as a GPU figure, and its
--small smoke run (every phase, tiny shapes, on the CPU) passes and records every phase's figures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CHECK = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py")]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the check would run, not refuse")
def test_the_check_refuses_to_run_without_a_gpu(tmp_path):
    proc = subprocess.run([*CHECK, "--json", str(tmp_path / "f.json")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "no CUDA GPU is visible" in proc.stderr
    assert not (tmp_path / "f.json").exists()  # no figures at all, rather than CPU figures


def test_the_small_run_passes_every_phase_labelled_as_a_cpu_run(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run([*CHECK, "--small", "--json", str(out)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["device"] == "CPU smoke run (not a GPU figure)"
    assert figures["parity"]["generate_bitwise"] and figures["parity"]["tail_max_abs_diff"] == 0.0
    assert {"compose_s", "ours_s", "bare_s"} <= set(figures["generation"]["plain"])
    refinement = figures["refinement"]
    assert refinement["s_per_line_evaluation"] > 0 and refinement["s_per_composed_evaluation"] > 0
    assert refinement["s_per_composed_evaluation_with_denoise"] > 0 and refinement["denoise_rows"] == 15 * 12
    train = figures["end_to_end"]["train.py"]
    assert train["evaluations"] == len(train["evaluation_s"]) >= 3 and train["mix_s"] > 0
    assert figures["toy"]["agree"] == figures["toy"]["verdicts"] > 0  # one device: the same verdicts
    options = figures["speed_options"]
    assert set(options) == {"plain", "pyramid_attention_broadcast", "faster_cache", "first_block_cache", "compile"}
    assert all("error" not in r for r in options.values()), options
    assert options["plain"]["max_abs_diff_vs_plain"] == 0
    assert "gpu_check passed" in proc.stdout and "CPU smoke run" in proc.stdout


def test_phases_rerun_only_what_they_name(tmp_path):
    """--phases 7 --speed_options compile: what a cut-off left is rerun alone (plain always, as the reference)."""
    out = tmp_path / "figures.json"
    proc = subprocess.run([*CHECK, "--small", "--phases", "7", "--speed_options", "compile", "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert set(figures) == {"device", "torch", "speed_options", "total_s"}
    assert set(figures["speed_options"]) == {"plain", "compile"}


@pytest.mark.parametrize("args, says", [(["--phases", "8"], "--phases takes numbers 2-7"),
                                        (["--phases", "two"], "--phases takes comma-separated numbers"),
                                        (["--speed_options", "teacache"], "--speed_options takes some of")])
def test_bad_phase_choices_are_refused_before_anything_runs(tmp_path, args, says):
    out = tmp_path / "figures.json"
    proc = subprocess.run([*CHECK, "--small", *args, "--json", str(out)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and says in proc.stderr and not out.exists()
