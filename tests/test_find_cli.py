"""`python -m richspace.find`: the finder over a specs file on the tiny checkpoint, and its errors."""

import subprocess
import sys
from pathlib import Path

import torch
import yaml

from richspace.encoding import PromptEncoder
from richspace.find import main
from richspace.finder import find_interpolation
from richspace.mixing import find_mixes
from richspace.specs import load_specs

REPO = Path(__file__).resolve().parents[1]


def test_prints_every_paper_mix(capsys, tiny_dir):
    assert main([]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in out[2:]}
    assert len(rows) == 17 and "tiger-zebra-giraffe" in rows
    for fields in rows.values():
        index, alpha = int(fields[1]), float(fields[2])
        assert 0 <= index <= 30 and abs(alpha - index / 30) < 1e-3
    assert main([]) == 0 and "T5 loaded: False" in capsys.readouterr().out  # second run: all cached


def test_chained_mix_uses_the_base_optimum(tiny_dir, tmp_path):
    specs = load_specs(REPO / "configs" / "experiments" / "paper.yaml")
    encoder = PromptEncoder(tiny_dir / "cogvideox", cache_dir=tmp_path)
    results = find_mixes(specs, encoder, k=30)
    base, chain = results["tiger-zebra"], results["tiger-zebra-giraffe"]
    (e_b, e_c), ids = encoder([chain.spec.b, chain.spec.guide])
    manual = find_interpolation(base.embedding, e_b, e_c, (int(base.found.n_ids), int(ids[0]), int(ids[1])))
    assert chain.index == int(manual.index) and chain.n_ids[0] == max(base.n_ids)
    assert torch.equal(chain.embedding, manual.embedding)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "richspace.find", *args], capture_output=True, text=True, cwd=REPO)


def test_bad_specs_fail_before_any_model_loads(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump([{"id": "x", "a": "1", "b": "2", "guide": "3"}, {"id": "x", "a": "1", "b": "2", "guide": "3"}]))
    proc = run_cli("--experiments", str(bad), "--model", str(tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {bad}: mix 'x': duplicate id; each mix needs its own id"


def test_identical_prompts_name_the_mix(tmp_path, tiny_dir, capsys):
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump([{"id": "twins", "a": "a cat", "b": "a cat", "guide": "a dog"}]))
    assert main(["--experiments", str(same)]) == 2
    assert "error: mix 'twins': prompts A and B encode to the same embedding" in capsys.readouterr().err


def test_missing_weights_is_one_clear_line(tmp_path):
    proc = run_cli("--model", str(tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert "weights not found" in proc.stderr and "THUDM/CogVideoX-2b" in proc.stderr
