"""Refinement (`python train.py`) on the tiny checkpoint: it climbs the objective, learns nothing but
the coefficients, resumes each mix after a kill or a crash exactly, splits over processes, and refuses
settings that cannot work."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from richspace.objective import soft_min
from richspace.videotext import resize_normalise
from richspace.refinement import RefineDataModule, RefineModule, load_state, state_path
from richspace.sampler import Sampler
from richspace.video import to_uint8

REPO = Path(__file__).resolve().parents[1]
TINY = ["--config", str(REPO / "configs" / "refine-tiny.yaml")]  # the random tiny checkpoint
TRAIN = [sys.executable, str(REPO / "train.py"), *TINY]
INFER_TINY = [sys.executable, str(REPO / "infer.py"), "--config", str(REPO / "configs" / "tiny.yaml")]
MIXES = "[red-blue, tiger-zebra, green-red]"  # three: on two processes, one rank owns two
EXACT = ["--data.only", MIXES, "--model.steps", "20", "--model.lr", "0.1", "--model.grad_steps", "8"]


def train(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*TRAIN, *args], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def untimed(history: list[dict]) -> list[dict]:
    """A history without its wall seconds (the one thing a rerun does not reproduce)."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "refinement.json").read_text())["mixes"]


@pytest.fixture(scope="module")
def module_and_data(tmp_path_factory):
    data = RefineDataModule(only=["red-blue", "tiger-zebra", "green-red"], run_dir=str(tmp_path_factory.mktemp("u")))
    data.prepare_data()
    data.setup("predict")
    module = RefineModule(Sampler(num_frames=9, height=32, width=32, num_inference_steps=8))
    module.load_models("cpu")
    return module, data


def objective_at(module, item, alpha: float) -> float:
    with torch.no_grad():
        terms, _ = module.objective(item, torch.tensor(alpha, dtype=torch.float64))
    return float(terms["objective"])


@pytest.fixture(scope="module")
def refined(tmp_path_factory) -> Path:
    """K = all 8 steps: the exact gradient of the objective (K < T truncates it, a biased estimate)."""
    run_dir = tmp_path_factory.mktemp("refine")
    train("--run_dir", str(run_dir), *EXACT)
    return run_dir


def test_refinement_climbs_to_the_best_of_its_basin(refined, module_and_data):
    """Noise and timesteps fixed: the objective is a function of alpha alone; a dense grid gives its shape."""
    module, data = module_and_data
    grid = [i / 40 for i in range(41)]
    for item in data.items:
        entry = result(refined)[item.id]
        start = item.alpha
        assert entry["alpha_closed_form"] == start
        assert entry["objective_before"] == pytest.approx(objective_at(module, item, start), abs=1e-5)
        assert entry["objective_after"] == pytest.approx(objective_at(module, item, entry["alpha"]), abs=1e-5)
        assert entry["objective_after"] >= entry["objective_before"]
        values = [objective_at(module, item, a) for a in grid]
        i = min(range(len(grid)), key=lambda j: abs(grid[j] - start))  # climb the grid from the start
        while True:
            up = [j for j in (i - 1, i + 1) if 0 <= j < len(grid) and values[j] > values[i]]
            if not up:
                break
            i = max(up, key=lambda j: values[j])
        basin_best, gain = values[i], values[i] - entry["objective_before"]
        assert entry["objective_after"] >= basin_best - max(0.1 * gain, 2e-4), (item.id, entry, grid[i], basin_best)


def frozen_digest(module) -> str:
    """sha256 over every frozen weight and buffer of the transformer, the VAE and CLIP."""
    h = hashlib.sha256()
    for part in (module.sampler.pipe.transformer, module.sampler.pipe.vae, module.judge):
        for name, value in part.state_dict().items():
            h.update(name.encode())
            h.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_only_the_coefficients_learn(module_and_data):
    module, data = module_and_data
    before = frozen_digest(module)
    alpha = torch.nn.Parameter(torch.tensor(data.items[0].alpha, dtype=torch.float64))
    optimizer = torch.optim.Adam([alpha], lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        terms, _ = module.objective(data.items[0], alpha)
        (-terms["objective"]).backward()
        assert alpha.grad is not None and torch.isfinite(alpha.grad).all() and alpha.grad.abs().sum() > 0
        for part in (module.sampler.pipe.transformer, module.sampler.pipe.vae, module.judge):
            assert all(p.grad is None and not p.requires_grad for p in part.parameters())
        optimizer.step()
    assert list(module.parameters()) == []  # the coefficients live in each mix's state, not in the module
    assert frozen_digest(module) == before  # frozen weights bitwise unchanged


def trajectories(run_dir: Path) -> dict:
    return {mix_id: (e["alpha"], e["alpha_last"], [(s["alpha"], s["objective"]) for s in e["trajectory"]])
            for mix_id, e in result(run_dir).items()}


def test_a_crashed_mix_continues_to_the_same_trajectory(module_and_data, tmp_path, monkeypatch):
    """One process: a crash after a mix's third step; the same predict_step again continues from its saved state
    (coefficients, Adam's moments, history, best) and ends exactly where an uninterrupted run ends."""
    import richspace.refinement as refinement

    module, data = module_and_data
    item = data.items[0]
    module.hparams.steps = 6

    whole, crashed = state_path(tmp_path / "whole", item.id), state_path(tmp_path / "crashed", item.id)
    module.refine(item, whole)
    save, calls = refinement.save_state, []

    def crash_after_three(path, state):
        save(path, state)
        calls.append(state.step)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(refinement, "save_state", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        module.refine(item, crashed)
    saved = load_state(crashed)
    assert saved.step == 3 and not saved.done and len(saved.optimizer["state"]) == 1
    module.refine(item, crashed)  # the restart
    a, b = load_state(whole), load_state(crashed)
    assert a.done and b.done and a.step == b.step == 6
    assert torch.equal(a.coefficients, b.coefficients) and untimed(a.history) == untimed(b.history)
    assert torch.equal(a.best["coefficients"], b.best["coefficients"]) and a.best["step"] == b.best["step"]


@pytest.mark.parametrize("devices", [1, 2])
def test_a_killed_refinement_resumes_to_the_same_result(devices, tmp_path):
    """Killed (every process) once some mix has taken steps, started again with the same command: each mix
    continues from its saved state and the table equals an uninterrupted run's, bit for bit."""
    args = ["--data.only", MIXES, "--model.steps", "30", "--trainer.devices", str(devices)]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    train("--run_dir", str(whole), *args)
    proc = subprocess.Popen([*TRAIN, "--run_dir", str(killed), *args], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:  # let some mix take a few steps
        states = [load_state(p) for p in killed.glob("refine/*/state.pt")]
        if any(s is not None and s.step >= 3 for s in states):
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # every rank
    proc.wait()
    states = [load_state(p) for p in killed.glob("refine/*/state.pt")]
    assert not (killed / "refinement.json").exists() and not all(s.done for s in states), "killed midway"
    train("--run_dir", str(killed), *args)
    assert trajectories(killed) == trajectories(whole)


def test_two_processes_share_one_table(refined, tmp_path):
    run_dir = tmp_path / "ddp"
    train("--run_dir", str(run_dir), *EXACT, "--trainer.devices", "2", "--trainer.strategy", "ddp")
    one, two = result(refined), result(run_dir)
    assert set(one) == set(two) == {"red-blue", "tiger-zebra", "green-red"}  # from two ranks, in one file
    for mix_id in one:  # each mix refined on its own rank, with another thread count: equal to rounding
        assert two[mix_id]["alpha"] == pytest.approx(one[mix_id]["alpha"], abs=1e-3)
        assert two[mix_id]["objective_after"] == pytest.approx(one[mix_id]["objective_after"], abs=1e-3)
    assert len(list(run_dir.glob("refine/*/state.pt"))) == 3


def test_overwrite_starts_again_and_a_finished_run_is_not_redone(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--run_dir", str(run_dir), "--data.only", "[red-blue]", "--model.steps", "3"]
    train(*args)
    state = state_path(run_dir, "red-blue")
    stamp = state.stat().st_mtime_ns
    train(*args)  # everything finished: nothing refined again, the table written again
    assert state.stat().st_mtime_ns == stamp and (run_dir / "refinement.json").is_file()
    train(*args, "--overwrite", "true")
    assert state.stat().st_mtime_ns != stamp and load_state(state).done


def test_infer_reads_the_refinement(refined, tmp_path):
    run_dir = tmp_path / "gen"
    proc = subprocess.run([*INFER_TINY, "--run_dir", str(run_dir), "--data.only",
                           "[red-blue]", "--data.alpha_from", str(refined / "refinement.json")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((run_dir / "results.jsonl").read_text())
    assert row["alphas"]["refined"] == result(refined)["red-blue"]["alpha"] and "refined" in row["videos"]


def test_per_token_coefficients_reach_infer(tmp_path):
    refine_dir, gen_dir = tmp_path / "refine", tmp_path / "gen"
    train("--run_dir", str(refine_dir), "--data.only", "[red-blue]", "--model.steps", "3",
          "--model.per_token", "true")
    entry = result(refine_dir)["red-blue"]
    from safetensors.torch import load_file

    coefficients = load_file(refine_dir / entry["coefficients"])["alpha"]
    assert coefficients.shape == (226,) and ((0 <= coefficients) & (coefficients <= 1)).all()
    assert entry["objective_after"] >= entry["objective_before"]
    assert entry["alpha"] == pytest.approx(float(coefficients.double().mean()), abs=1e-6)
    proc = subprocess.run([*INFER_TINY, "--run_dir", str(gen_dir), "--data.only",
                           "[red-blue]", "--data.alpha_from", str(refine_dir / "refinement.json")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refined" in json.loads((gen_dir / "results.jsonl").read_text())["videos"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model.grad_steps", "9"], "model.grad_steps (K=9) must lie in 1..sampler.num_inference_steps (8)"),
        (["--model.grad_steps", "0"], "model.grad_steps (K=0)"),
        (["--model.clip_frames", "[]"], "model.clip_frames must be a non-empty list"),
        (["--model.clip_frames", "[9]"], "frame indices in 0..8"),
        (["--model.alpha_range", "[1.0, 0.0]"], "model.alpha_range must be [min, max]"),
        (["--model.decode_latent_frames", "4"], "model.decode_latent_frames must lie in 1..3"),
        (["--sampler.pretrained", "/nonexistent"], "CogVideoX weights not found"),
        (["--model.clip", "/nonexistent"], "CLIP weights not found"),
        (["--model.steps", "-1"], "model.steps must be >= 0"),
        (["--model.mode", "newton"], "model.mode must be one of ['gradient', 'search']"),
        (["--model.params", "[beta]"], "model.params must name distinct parameters"),
        (["--model.grid", "{offset: [1.0]}"], "model.grid names ['offset']"),
        (["--model.grid", "{alpha: [0.5, 1.5]}"], "must lie in each parameter's range (alpha [0, 1], offset"),
        (["--model.grid", "{alpha: [0.5, 1.5]}"], "alpha's is model.alpha_range); got alpha 1.5"),
        (["--model.start", "{w_mix: -1}"], "w_c [-10, 10]; alpha's is model.alpha_range); got w_mix -1.0"),
        (["--model.per_token", "true", "--model.mode", "search"], "model.per_token needs model.params [alpha]"),
        (["--model.noise_samples", "0"], "model.noise_samples must be >= 1"),
        (["--model.prior_from", "/nonexistent"], "model.prior_from scores the grid's candidates: it needs model.mode"),
        (["--model.mode", "search", "--model.steps", "0", "--model.prior_from", "/nonexistent"],
         "model.prior_from: /nonexistent is not a saved mixing-parameter predictor"),
        (["--model.prior_weight", "-1"], "model.prior_weight must be >= 0"),
        (["--model.w_denoise", "1", "--model.denoise_temperature", "0"], "model.denoise_temperature must be > 0"),
    ],
)
def test_settings_that_cannot_work_are_one_line(args, expected, tmp_path, capsys):
    import train as train_script

    with pytest.raises(SystemExit) as info:
        train_script.main([*TINY, "--run_dir", str(tmp_path), *args])
    assert info.value.code == 2
    assert expected in capsys.readouterr().err.strip().splitlines()[-1]


def test_latent_frame_checks_follow_the_checkpoints_vae():
    """The toy VAE folds 2 frames into a latent frame, CogVideoX's (and the tiny one's) 4: 9 frames are 5 or 3."""
    from richspace.weights import temporal_compression

    assert temporal_compression("toy") == 2
    assert temporal_compression("tiny") == 4
    assert temporal_compression("THUDM/CogVideoX-2b") == 4  # a hub id: CogVideoX's, nothing fetched


def test_soft_min_and_torch_preprocessing():
    x, y = torch.tensor(3.0), torch.tensor(10.0)
    assert float(soft_min(x, y, 0.01)) == pytest.approx(3.0, abs=1e-3)
    assert float(soft_min(x, y, 1.0)) < 3.0  # below the minimum, smoothly
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    smooth = torch.nn.functional.interpolate(torch.rand(2, 3, 6, 8), size=(48, 64), mode="bilinear")  # image-like
    frames = smooth.clamp(0, 1)
    ours = resize_normalise(frames, 32, (32, 32), processor.image_mean, processor.image_std)
    ref = processor(images=list(frames), return_tensors="pt", do_rescale=False)["pixel_values"]
    assert ours.shape == ref.shape == (2, 3, 32, 32)
    # PIL's bicubic (a = -0.5) is not torch's (a = -0.75): close on image-like content, not equal
    assert (ours - ref).abs().mean() < 0.2 * (ref - ref.mean()).abs().mean()
    flat = torch.full((1, 3, 40, 56), 0.3)  # where kernels cannot differ: resize, crop and normalise agree
    ours_flat = resize_normalise(flat, 32, (32, 32), processor.image_mean, processor.image_std)
    ref_flat = processor(images=list(flat), return_tensors="pt", do_rescale=False)["pixel_values"]
    torch.testing.assert_close(ours_flat, ref_flat, rtol=0, atol=1e-2)


def test_search_scores_the_grid_then_climbs_and_resumes(module_and_data, tmp_path, monkeypatch):
    """Search mode: the start first, every grid candidate once, then pattern-search moves; the best is the
    highest objective seen; a crash mid-search and a restart give the uninterrupted run's history exactly."""
    import richspace.refinement as refinement

    _, data = module_and_data
    item = data.items[0]
    module = RefineModule(Sampler(num_frames=9, height=32, width=32, num_inference_steps=8), mode="search",
                          params=["alpha", "offset"], grid={"alpha": [0.0, 0.5, 1.0], "offset": [0.0, 0.5]}, steps=4)
    module.load_models("cpu")
    whole = module.refine(item, state_path(tmp_path / "whole", item.id))
    thetas = [tuple(h["theta"]) for h in whole.history]
    grid = {(a, o) for a in (0.0, 0.5, 1.0) for o in (0.0, 0.5)} - {(item.alpha, 0.0)}  # the start is scored once
    assert len(thetas) == len(set(thetas)) == 1 + len(grid) + 4  # the start, the 3 x 2 grid, 4 moves
    assert whole.history[0]["alpha"] == item.alpha and whole.history[0]["offset"] == 0.0
    assert {(a, o) for a, o, *_ in thetas[1:1 + len(grid)]} == grid
    assert whole.best["objective"] == max(h["objective"] for h in whole.history)
    assert set(whole.frames) == {0, whole.best["step"]}  # the frames before and after
    save, calls = refinement.save_state, []

    def crash_after_five(path, state):
        save(path, state)
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(refinement, "save_state", crash_after_five)
    crashed = state_path(tmp_path / "crashed", item.id)
    with pytest.raises(KeyboardInterrupt):
        module.refine(item, crashed)
    monkeypatch.setattr(refinement, "save_state", save)
    again = module.refine(item, crashed)
    assert untimed(again.history) == untimed(whole.history) and again.best["step"] == whole.best["step"]


def test_the_objective_is_the_mean_over_its_noises(module_and_data):
    """noise_samples = 2: each term is the mean of the one-noise terms at the mix's seed and the next one."""
    from dataclasses import replace

    one, data = module_and_data
    item = data.items[0]
    two = RefineModule(Sampler(num_frames=9, height=32, width=32, num_inference_steps=8), noise_samples=2)
    two.load_models("cpu")
    alpha = torch.tensor(0.4, dtype=torch.float64)
    with torch.no_grad():
        both, frames = two.objective(item, alpha)
        first, frames_first = one.objective(item, alpha)
        second, _ = one.objective(replace(item, seed=item.seed + 1), alpha)
    assert float(first["objective"]) != float(second["objective"])  # the two noises differ
    for name in both:
        torch.testing.assert_close(both[name], (first[name] + second[name]) / 2, rtol=1e-6, atol=1e-6)
    assert torch.equal(frames, frames_first)  # the frames kept are the first noise's


def test_search_moves_only_what_changes_the_sample(module_and_data, tmp_path, monkeypatch):
    """When the best candidate has no mixed text (w_mix = 0), moving alpha or the offset cannot change its video:
    search spends its moves on the weights instead."""
    from richspace.objective import ObjectiveWeights, objective_terms

    _, data = module_and_data
    item = data.items[0]
    module = RefineModule(Sampler(num_frames=9, height=32, width=32, num_inference_steps=8), mode="search",
                          params=["alpha", "offset", "w_mix", "w_a", "w_b"],
                          grid=[{"w_mix": 0.0, "w_a": 1.5, "w_b": 1.5}, {"alpha": 0.2}], steps=6)

    def objective(item, theta):  # composed beats the line; the weights' optimum: one step (2.5) up in w_b
        alpha, _, w_mix, w_a, w_b, _ = theta.tolist()
        value = 10.0 - (w_a - 1.5) ** 2 - (w_b - 4.0) ** 2 if w_mix == 0 else -alpha ** 2
        t = torch.tensor(value, dtype=torch.float64)
        return objective_terms(t, t, t, theta[0], item.alpha, ObjectiveWeights(1.0, 0.0)), torch.zeros(9, 3, 32, 32)

    monkeypatch.setattr(module, "objective", objective)
    state = module.refine(item, state_path(tmp_path, item.id))
    composed = [h for h in state.history if h["w_mix"] == 0]
    assert len(state.history) == 3 + 6 and len(composed) >= 5  # the start, the grid, 6 moves
    assert {(h["alpha"], h["offset"]) for h in composed} == {(item.alpha, 0.0)}  # never moved while composed
    assert state.best["objective"] == 10.0  # reached within 6 moves only because none went to alpha or offset


def test_search_samples_only_the_texts_a_candidate_weighs(module_and_data):
    """Search with the weights among its parameters: a candidate on the line (w_a = w_b = 0) costs what the plain
    sampler costs (the text and the negative: two transformer inputs a step) and scores what the plain sampler's
    video scores; a composed one passes its three texts. Gradient mode passes every refined weight's text."""
    plain, data = module_and_data
    item = data.items[0]
    searching = RefineModule(plain.sampler, mode="search", params=["alpha", "w_a", "w_b"])
    searching.judge = plain.judge
    batches = []
    hook = plain.sampler.pipe.transformer.register_forward_pre_hook(
        lambda _, args, kwargs: batches.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        line = torch.tensor([item.alpha, 0.0, 6.0, 0.0, 0.0, 0.0], dtype=torch.float64)
        with torch.no_grad():
            terms, _ = searching.objective(item, line)
        assert set(batches) == {2} and len(batches) == 8
        assert float(terms["objective"]) == objective_at(plain, item, item.alpha)  # the plain sampler's video
        batches.clear()
        with torch.no_grad():
            searching.objective(item, torch.tensor([item.alpha, 0.0, 3.0, 1.5, 1.5, 0.0], dtype=torch.float64))
        assert set(batches) == {4}
        batches.clear()
        searching.objective(item, torch.nn.Parameter(line.clone()))  # gradients wanted for w_a and w_b
        assert set(batches) == {4}
    finally:
        hook.remove()


def test_a_contrast_prompt_is_encoded_and_composed_where_the_spec_gives_one(module_and_data, tmp_path):
    """A spec's contrast prompt reaches the item as its embedding (here B's own prompt: the same cached row) and
    search composes it at w_c: one more text a step; a mix without one samples A and B alone, as compose."""
    plain, data = module_and_data
    item = data.items[0]
    assert item.e_contrast is None  # the paper's mixes name no contrast
    specs = tmp_path / "mixes.yaml"
    specs.write_text("- {id: m, a: a red bird, b: a blue fish, guide: a red fish, contrast: a blue fish}\n")
    contrasted = RefineDataModule(experiments=str(specs), run_dir=str(tmp_path / "u"))
    contrasted.prepare_data()
    contrasted.setup("predict")
    (with_c,) = contrasted.items
    assert with_c.e_contrast is not None and torch.equal(with_c.e_contrast, with_c.e_b)
    searching = RefineModule(plain.sampler, mode="search", params=["alpha", "w_a", "w_b", "w_c"])
    searching.judge = plain.judge
    theta = torch.tensor([item.alpha, 0.0, 0.0, 3.0, 3.0, -3.0], dtype=torch.float64)
    batches = []
    hook = plain.sampler.pipe.transformer.register_forward_pre_hook(
        lambda _, args, kwargs: batches.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        with torch.no_grad():
            _, without = searching.objective(item, theta)
            assert set(batches) == {3}  # the negative, A and B
            batches.clear()
            _, contrast = searching.objective(replace(item, e_contrast=item.e_guide), theta)
            assert set(batches) == {4}  # and C
            _, compose = searching.objective(item, torch.tensor([item.alpha, 0.0, 0.0, 3.0, 3.0, 0.0],
                                                                dtype=torch.float64))
        batches.clear()
        searching.objective(item, torch.nn.Parameter(theta.clone()))  # w_c's gradient wanted, no contrast: no pass
        assert set(batches) == {3}
        batches.clear()
        searching.objective(replace(item, e_contrast=item.e_guide), torch.nn.Parameter(theta.clone()))
        assert set(batches) == {4}
    finally:
        hook.remove()
    assert torch.equal(without, compose) and not torch.equal(without, contrast)


def test_composed_refinement_reaches_infer(tmp_path):
    """Refined weights off the plain guidance make infer.py sample the mix composed; compose is there untuned."""
    refine_dir, gen_dir = tmp_path / "refine", tmp_path / "gen"
    train("--run_dir", str(refine_dir), "--data.only", "[red-blue]", "--model.mode", "search",
          "--model.params", "[alpha, w_a, w_b]", "--model.grid", "[{w_a: 2.0, w_b: 2.0}, {alpha: 0.2}]",
          "--model.steps", "1")
    entry = result(refine_dir)["red-blue"]
    assert set(entry["params"]) == {"alpha", "offset", "w_mix", "w_a", "w_b", "w_c"}
    assert entry["objective_after"] == max(s["objective"] for s in entry["trajectory"])
    assert all(s["seconds"] > 0 for s in entry["trajectory"])  # each evaluation's wall time, and the mix's cost
    assert entry["seconds"] == pytest.approx(sum(s["seconds"] for s in entry["trajectory"]))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(refine_dir.glob("**/events.out.tfevents.*")).parent)).Reload()
    logged = [e.value for e in events.Scalars("refine/red-blue/seconds")]
    assert logged == pytest.approx([s["seconds"] for s in entry["trajectory"]])  # in TensorBoard, per evaluation
    proc = subprocess.run([*INFER_TINY, "--run_dir", str(gen_dir), "--data.only", "[red-blue]",
                           "--data.alpha_from", str(refine_dir / "refinement.json")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((gen_dir / "results.jsonl").read_text())
    assert {"guide", "average", "finder", "compose", "refined"} <= set(row["videos"])
    assert row["alphas"]["compose"] is None and row["alphas"]["refined"] == entry["alpha"]


def test_search_with_a_prior_keeps_the_candidate_rewards_and_prior_choose_together(module_and_data, tmp_path):
    """model.prior_from: a predictor fitted on other mixes weighs in on which candidate search keeps; at a large
    weight its own favourite, at weight 0 the best reward; its frames are there for TensorBoard either way."""
    from richspace.conditioning import PARAMS
    from richspace.learned import candidate_thetas, fit_predictor, mix_features, save_predictor

    _, data = module_and_data
    item = data.items[0]
    grid = [{"alpha": 0.0}, {"alpha": 1.0}, {"w_mix": 0.0, "w_a": 1.5, "w_b": 1.5}]
    params = ["alpha", "offset", "w_mix", "w_a", "w_b"]
    sampler = Sampler(num_frames=9, height=32, width=32, num_inference_steps=8)
    start = dict(zip(PARAMS[1:], [0.0, sampler.guidance_scale, 0.0, 0.0, 0.0], strict=True))
    g = torch.Generator().manual_seed(0)
    predictor = fit_predictor(torch.randn(6, 8, generator=g), torch.randn(6, 4, generator=g), grid, start, steps=20)
    save_predictor(predictor, tmp_path / "prior")
    with torch.no_grad():
        favourite = int(predictor(mix_features(item.e_a, item.e_b, item.e_guide, item.alpha)[None])[0].argmax())

    seeds = []  # the noise of every sampling
    sample = sampler.sample

    def counted(*args, **kwargs):
        seeds.append(args[2])
        return sample(*args, **kwargs)

    def refine(weight: float, name: str):
        module = RefineModule(sampler, mode="search", params=params, grid=grid, steps=0, noise_samples=2,
                              prior_from=str(tmp_path / "prior"), prior_weight=weight)
        module.load_models("cpu")
        seeds.clear()
        object.__setattr__(sampler, "sample", counted)
        try:
            return module, module.refine(item, state_path(tmp_path / name, item.id))
        finally:
            object.__delattr__(sampler, "sample")

    (module, heavy), heavy_seeds = refine(1e6, "heavy"), list(seeds)
    _, none = refine(0.0, "none")
    assert none.best["objective"] == max(h["objective"] for h in none.history)
    thetas = candidate_thetas(item.alpha, start, grid, (0.0, 1.0))  # the predictor's order: the start, then the grid
    assert tuple(heavy.best["coefficients"].tolist()) == thetas[favourite]
    assert heavy.best["step"] in heavy.frames and none.best["step"] in none.frames
    # Search samples each candidate on 2 noises; the kept one's frames again, on the first noise only, if dropped.
    sampled = len(set(thetas))
    assert heavy_seeds[:2 * sampled] == [item.seed, item.seed + 1] * sampled
    assert heavy_seeds[2 * sampled:] in ([], [item.seed])
    with torch.no_grad():
        frames = module.objective(item, heavy.best["coefficients"], noises=1)[1]
    assert torch.equal(heavy.frames[heavy.best["step"]], to_uint8(frames.float().cpu()))
    assert heavy.best["objective"] < none.best["objective"]  # here the prior's favourite is not the best reward
    with pytest.raises(ValueError, match="model.prior_from scores the grid's candidates"):
        RefineModule(sampler, mode="search", params=params, grid=grid, steps=2, prior_from=str(tmp_path / "prior"))
    with pytest.raises(ValueError, match="fitted for other candidates than model.grid"):
        RefineModule(sampler, mode="search", params=params, grid=grid[:2], steps=0, prior_from=str(tmp_path / "prior"))
    with pytest.raises(ValueError, match="is not a saved mixing-parameter predictor"):
        RefineModule(sampler, mode="search", params=params, grid=grid, steps=0, prior_from=str(tmp_path))


def test_infer_samples_a_refined_contrast_with_its_prompt(tmp_path):
    """A refinement that kept w_c reaches generation as A, B and the spec's contrast at their weights; the same
    parameters for a mix without a contrast sample A and B alone."""
    from richspace.data import MixDataModule

    specs = tmp_path / "mixes.yaml"
    specs.write_text("- {id: c, a: a red bird, b: a blue fish, guide: a red fish, contrast: a blue bird}\n"
                     "- {id: n, a: a red bird, b: a blue fish, guide: a red fish}\n")
    params = {"alpha": 0.5, "offset": 0.0, "w_mix": 0.0, "w_a": 3.0, "w_b": 3.0, "w_c": -3.0}
    refinement = tmp_path / "refinement.json"
    refinement.write_text(json.dumps({"mixes": {"c": {"params": params}, "n": {"params": params}}}))
    data = MixDataModule(experiments=str(specs), run_dir=str(tmp_path / "gen"), alpha_from=str(refinement),
                         compose=None)
    data.prepare_data()
    data.setup("predict")
    by_id = {item.id: item for item in data.items}
    with_c, without = by_id["c"], by_id["n"]
    assert torch.equal(with_c.embeddings["refined"], torch.stack([with_c.e_a, with_c.e_b, with_c.e_contrast]))
    assert with_c.weights["refined"].tolist() == [3.0, 3.0, -3.0]
    assert torch.equal(without.embeddings["refined"], torch.stack([without.e_a, without.e_b]))
    assert without.weights["refined"].tolist() == [3.0, 3.0] and without.e_contrast is None
