"""`python infer.py` end to end on the tiny checkpoint: outputs, parity with bare diffusers, DDP, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from richspace.runs import mix_seed
from richspace.video import read_mp4
from richspace.weights import resolve_weights

REPO = Path(__file__).resolve().parents[1]
TINY = ["--config", str(REPO / "configs" / "tiny.yaml")]  # these tests run the random tiny checkpoint
INFER = [sys.executable, str(REPO / "infer.py"), *TINY]
TWO = "[tiger-zebra, red-blue]"


def infer(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*INFER, *args], capture_output=True, text=True, cwd=REPO, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def assert_same_video(video: Path, same: Path, other: Path) -> None:
    """``same`` shows the video ``video`` does (same embedding, same seed) and ``other`` (another embedding) does not.

    Not byte for byte: on some CPUs (an AMD EPYC here) the tiny model's frames vary in the last bits from run to run,
    and H.264 turns that into frames a mean 0.7/255 apart, where another embedding's video lies 2.4-3.3/255 away.
    (Three runs with MALLOC_PERTURB_ set gave identical files: likely a library kernel reading memory it did not
    write. The first video of a run never varied; alone in a process, the pipeline repeated itself bit for bit.)
    """
    a, b, c = (read_mp4(path).float() for path in (video, same, other))
    assert (a - b).abs().mean() < 0.5 * (a - c).abs().mean(), ((a - b).abs().mean(), (a - c).abs().mean())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("tiny-run")
    infer("--run_dir", str(run_dir), "--data.only", TWO, "--data.sweep", "[0, 30]")
    return run_dir


def test_outputs_of_a_run(tiny_run):
    rows = records(tiny_run)
    assert [r["id"] for r in rows] == ["tiger-zebra", "red-blue"]
    for r in rows:
        assert set(r) == {"id", "index", "alpha", "n_ids", "seed", "videos", "metrics", "alphas", "readouts", "success"}
        assert r["readouts"] == r["success"] == {}  # pixel readouts are the toy world's (model.readout)
        assert r["seed"] == mix_seed(0, r["id"]) and abs(r["alpha"] - r["index"] / 30) < 1e-12
        assert set(r["videos"]) == set(r["metrics"]) == {"guide", "average", "finder", "compose", "sweep_00",
                                                         "sweep_30"}
        assert r["alphas"]["compose"] is None
        for method, rel in r["videos"].items():
            frames = read_mp4(tiny_run / rel)
            assert frames.shape == (9, 3, 32, 32) and frames.dtype == torch.uint8
            m = r["metrics"][method]
            assert m["balance"] == pytest.approx(abs(m["clip_a"] - m["clip_b"]))
            assert m["reward"] == pytest.approx(m["clip_a"] + m["clip_b"] - m["balance"])
        full = json.loads((tiny_run / "mixes" / r["id"] / "record.json").read_text())
        assert len(full["scores"]["sum"]) == 31 and full["texts"]["guide"]
    table = (tiny_run / "results.md").read_text()
    assert "| finder |" in table and "| guide |" in table and "| average |" in table
    assert list(tiny_run.glob("lightning_logs/*/events.out.tfevents.*"))
    assert yaml.safe_load((tiny_run / "config.yaml").read_text())["sampler"]["pretrained"] == "tiny"
    assert not list(tiny_run.rglob(".*.tmp-*"))


def test_videos_equal_a_bare_diffusers_call(tiny_run, tiny_pipe):
    """Same embeddings, negative (the encoded empty prompt) and seed through CogVideoXPipeline directly."""
    from richspace.encoding import PromptEncoder
    from richspace.mixing import find_mixes
    from richspace.sampler import Sampler
    from richspace.specs import load_specs

    specs = load_specs(REPO / "configs" / "experiments" / "paper.yaml")
    encoder = PromptEncoder(resolve_weights("tiny", "cogvideox"))
    found = find_mixes(specs, encoder)["red-blue"]
    (negative,), _ = encoder([""])
    seed = mix_seed(0, "red-blue")
    with torch.no_grad():
        out = tiny_pipe(
            prompt_embeds=found.embedding[None], negative_prompt_embeds=negative[None], num_frames=9, height=32,
            width=32, num_inference_steps=4, guidance_scale=6.0, generator=torch.Generator().manual_seed(seed),
            output_type="pt",
        )
    expected = (out.frames[0].clamp(0, 1) * 255).round().to(torch.uint8)
    sampler = Sampler(num_frames=9, height=32, width=32, num_inference_steps=4).load("cpu")
    assert torch.equal(sampler.generate(found.embedding, negative, seed), expected)  # bit for bit
    # The mp4 is lossy (H.264 on noise-like tiny frames): it must carry these frames, far closer to them than
    # a flat video of their mean colour is.
    ours = read_mp4(tiny_run / "mixes" / "red-blue" / "finder.mp4").float()
    flat = expected.float().mean(dim=(0, 2, 3), keepdim=True)
    assert (ours - expected.float()).abs().mean() < 0.5 * (flat - expected.float()).abs().mean()


def test_sweep_ends_are_the_plain_prompts(tiny_run):
    """alpha = 1 is E_a exactly and alpha = 0 is E_b: their videos must differ from each other."""
    a = (tiny_run / "mixes/tiger-zebra/sweep_30.mp4").read_bytes()
    b = (tiny_run / "mixes/tiger-zebra/sweep_00.mp4").read_bytes()
    finder = json.loads((tiny_run / "mixes/tiger-zebra/record.json").read_text())
    assert a != b
    if finder["index"] == 30:  # the finder chose E_a: same embedding, same seed, same video
        mix = tiny_run / "mixes/tiger-zebra"
        assert_same_video(mix / "finder.mp4", mix / "sweep_30.mp4", mix / "sweep_00.mp4")


def test_rerun_skips_finished_mixes_and_overwrite_redoes_them(tiny_run):
    record = tiny_run / "mixes" / "tiger-zebra" / "record.json"
    before = record.stat().st_mtime_ns
    proc = infer("--run_dir", str(tiny_run), "--data.only", TWO, "--data.sweep", "[0, 30]")
    assert record.stat().st_mtime_ns == before
    assert "2 mixes in" in proc.stdout
    infer("--run_dir", str(tiny_run), "--data.only", TWO, "--data.sweep", "[0, 30]", "--overwrite", "true")
    assert record.stat().st_mtime_ns != before
    assert [r["id"] for r in records(tiny_run)] == ["tiger-zebra", "red-blue"]


def test_other_settings_in_the_same_run_dir_are_refused(tiny_run):
    proc = infer("--run_dir", str(tiny_run), "--data.only", TWO, "--data.sweep", "[0, 30]",
                 "--sampler.num_inference_steps", "3", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tiny_run} holds a run with other settings (sampler differ)")


def test_refined_alpha_from_a_refinement_file(tmp_path):
    refinement = tmp_path / "refinement.json"
    refinement.write_text(json.dumps({"version": 1, "mixes": {"red-blue": {"alpha": 0.5, "alpha_closed_form": 0.5}}}))
    run_dir = tmp_path / "run"
    infer("--run_dir", str(run_dir), "--data.only", "[red-blue]", "--data.alpha_from", str(refinement))
    (row,) = records(run_dir)
    assert row["alphas"]["refined"] == 0.5 and "refined" in row["metrics"]
    # alpha 0.5 is the plain average: same embedding, same seed, same video
    assert_same_video(run_dir / row["videos"]["refined"], run_dir / row["videos"]["average"], run_dir / row["videos"]["guide"])


def test_two_ddp_processes_equal_one(tiny_run, tmp_path):
    run_dir = tmp_path / "ddp"
    infer("--run_dir", str(run_dir), "--data.only", TWO, "--data.sweep", "[0, 30]",
          "--trainer.devices", "2", "--trainer.strategy", "ddp")
    one, two = records(tiny_run), records(run_dir)
    assert [r["id"] for r in two] == [r["id"] for r in one]
    assert len(list(run_dir.glob("mixes/*/record.json"))) == 2
    for r1, r2 in zip(one, two):
        assert {k: v for k, v in r1.items() if k != "metrics"} == {k: v for k, v in r2.items() if k != "metrics"}
        for method in r1["videos"]:
            other = "sweep_00" if method != "sweep_00" else "sweep_30"
            assert_same_video(tiny_run / r1["videos"][method], run_dir / r2["videos"][method], tiny_run / r1["videos"][other])
            # CLIP runs with another thread count per process: equal to float32 rounding
            assert r2["metrics"][method] == pytest.approx(r1["metrics"][method], rel=1e-5, abs=1e-5)


def test_a_killed_run_resumes_without_redoing_or_leaving_partial_files(tmp_path):
    run_dir = tmp_path / "killed"
    mixes = "[tiger-zebra, red-blue, green-red, green-blue, rose-lily]"
    proc = subprocess.Popen([*INFER, "--run_dir", str(run_dir), "--data.only", mixes], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(run_dir.glob("mixes/*/record.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("mixes/*/record.json")}
    assert 1 <= len(done) < 5, "the run should be killed midway"
    for mp4 in run_dir.glob("mixes/*/*.mp4"):  # whatever carries a final name is whole
        assert read_mp4(mp4).shape == (9, 3, 32, 32)
    assert not (run_dir / "results.jsonl").exists()
    infer("--run_dir", str(run_dir), "--data.only", mixes)
    assert [r["id"] for r in records(run_dir)] == ["tiger-zebra", "red-blue", "green-red", "green-blue", "rose-lily"]
    for mix_id, mtime in done.items():
        assert (run_dir / "mixes" / mix_id / "record.json").stat().st_mtime_ns == mtime
    assert not list(run_dir.rglob(".*.tmp-*"))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--sampler.pretrained", "/nonexistent/cogvideox"], "CogVideoX weights not found at '/nonexistent/cogvideox'"),
        (["--model.clip", "./no-clip"], "CLIP weights not found at './no-clip'"),
        (["--model.bogus", "3"], "unrecognized arguments: --model.bogus"),
        (["--trainer.accelerator", "gpu"], "a GPU was asked for but none is visible"),
        (["--run_dir", "/proc/richspace-forbidden"], "cannot be written"),
        (["--experiments", "/nonexistent.yaml"], "/nonexistent.yaml: cannot read the mix specs file"),
        (["--sampler.num_frames", "10"], "sampler.num_frames must be 4k+1"),
        (["--sampler.height", "40"], "multiples of 16"),
        (["--data.only", "[nope]"], "data.only names unknown mix ids ['nope']"),
        (["--data.sweep", "[31]"], "data.sweep indices must lie in 0..k=30"),
        (["--data.alpha_from", "/nonexistent.json"], "alpha_from: /nonexistent.json is not a readable refinement"),
        (["--sampler.cache", "magic"], "sampler.cache must be null or one of"),
        (["--sampler.dtype", "float8"], "sampler.dtype must be one of"),
    ],
)
def test_bad_input_is_one_line_before_models_load(args, expected, tmp_path, monkeypatch, capsys):
    if expected.startswith("a GPU") and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    import infer as infer_script
    from diffusers import CogVideoXPipeline

    monkeypatch.setattr(CogVideoXPipeline, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    run_args = ["--run_dir", str(tmp_path / "run")] if "--run_dir" not in args else []
    with pytest.raises(SystemExit) as info:
        infer_script.main([*TINY, *run_args, *args])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and expected in err[-1]


def test_a_refinement_of_other_mixes_is_one_line_and_writes_nothing(tmp_path, capsys):
    """alpha_from that refined none of the mixes asked for is the wrong file, not a run without `refined`."""
    import infer as infer_script

    refinement = tmp_path / "refinement.json"
    refinement.write_text(json.dumps({"version": 1, "mixes": {"elsewhere": {"alpha": 0.5, "alpha_closed_form": 0.5}}}))
    with pytest.raises(SystemExit) as info:
        infer_script.main([*TINY, "--run_dir", str(tmp_path / "run"), "--data.only", "[red-blue]",
                           "--data.alpha_from", str(refinement)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {refinement} refined none of these mixes (it holds ['elsewhere']...)"), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key", ["--sampler.pretrained", "--model.clip"])
def test_a_directory_without_a_checkpoint_is_one_line_before_models_load(key, tmp_path, monkeypatch, capsys):
    """An existing directory that holds no checkpoint (a wrong folder, a download that never ran) names what it
    lacks before anything loads or is written, not a traceback from transformers or the encoder."""
    import infer as infer_script
    from diffusers import CogVideoXPipeline

    monkeypatch.setattr(CogVideoXPipeline, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    empty = tmp_path / "weights"
    empty.mkdir()
    with pytest.raises(SystemExit) as info:
        infer_script.main([*TINY, "--run_dir", str(tmp_path / "run"), key, str(empty)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    kind, lacks = ("CogVideoX", "model_index.json, transformer, vae") if key == "--sampler.pretrained" \
        else ("CLIP", "config.json")
    assert err.startswith(f"error: {kind} weights at {str(empty)!r} lack {lacks}"), err
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_whose_config_cannot_be_read_is_one_line(tmp_path):
    """A directory with a config transformers cannot read (no model_type) is a WeightsUnavailable line that says to
    save it again, where transformers raised a ValueError."""
    from richspace.videotext import load_video_text
    from richspace.weights import WeightsUnavailable

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsUnavailable) as info:
        load_video_text(tmp_path)
    message = str(info.value)
    assert message.startswith(f"CLIP weights {str(tmp_path)!r} could not be loaded (Unrecognized model"), message
    assert message.endswith("save the checkpoint there again with `save_pretrained`") and "\n" not in message


def test_hub_weights_that_are_not_there_are_one_line(tmp_path):
    """A hub id that is neither in the Hugging Face cache nor downloadable (offline here) stops infer.py with one
    line naming the weights and how to get them, not a traceback; the sampler and the judge say the same."""
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty cache, no network
    proc = subprocess.run([*INFER, "--run_dir", str(tmp_path / "run"), "--sampler.pretrained", "nobody/no-model"],
                          capture_output=True, text=True, cwd=REPO, env=os.environ | offline)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: CogVideoX text encoder weights 'nobody/no-model' could not be loaded ("), last
    assert last.endswith("(hf download nobody/no-model)") and "Traceback" not in proc.stderr
    code = ("from richspace.sampler import Sampler\n"
            "from richspace.videotext import load_video_text\n"
            "from richspace.weights import WeightsUnavailable\n"
            "for load in (lambda: Sampler('nobody/no-model').load(), lambda: load_video_text('nobody/no-clip')):\n"
            "    try:\n"
            "        load()\n"
            "    except WeightsUnavailable as e:\n"
            "        print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env=os.environ | offline)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sampler, judge = proc.stdout.strip().splitlines()
    assert sampler.startswith("CogVideoX weights 'nobody/no-model' could not be loaded (")
    assert judge.startswith("CLIP weights 'nobody/no-clip' could not be loaded (")


def test_a_mix_the_finder_cannot_solve_is_one_line(tmp_path, capsys):
    """A and B encode to the same embedding: no line to project on. The finder's error reaches the user as one
    line naming the file and the mix, exit code 2, before the video model loads."""
    import infer as infer_script

    specs = tmp_path / "specs.yaml"
    specs.write_text(yaml.safe_dump([{"id": "same", "a": "a red fox", "b": "a red fox", "guide": "a fox"}]))
    with pytest.raises(SystemExit) as info:
        infer_script.main([*TINY, "--experiments", str(specs), "--data.only", "null", "--run_dir", str(tmp_path / "r")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {specs}: mix 'same'"), err[-1]
    assert not (tmp_path / "r" / "mixes").exists()


def test_bad_specs_file(tmp_path, capsys):
    import infer as infer_script

    specs = tmp_path / "specs.yaml"
    specs.write_text(yaml.safe_dump([{"id": "m", "base": "m", "b": "x", "guide": "y"}]))
    with pytest.raises(SystemExit):
        infer_script.main([*TINY, "--experiments", str(specs), "--data.only", "null", "--run_dir", str(tmp_path / "r")])
    assert "base chain forms a cycle" in capsys.readouterr().err


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_config_instantiates(config, tmp_path):
    from lightning import LightningDataModule, LightningModule

    from richspace.cli import build_cli
    from richspace.data import MixDataModule
    from richspace.generation import MixVideoModule
    from richspace.refinement import RefineDataModule, RefineModule

    args = ["--config", str(REPO / "configs" / config), "--run_dir", str(tmp_path)]
    if not torch.cuda.is_available():
        args += ["--trainer.accelerator", "cpu"]  # the GPU configs, checked on this CPU
    classes = (RefineModule, RefineDataModule) if config.startswith("refine") else (MixVideoModule, MixDataModule)
    cli = build_cli(*classes, args, REPO / "configs" / "tiny.yaml")
    assert isinstance(cli.model, LightningModule) and isinstance(cli.datamodule, LightningDataModule)
    assert cli.datamodule.selected
