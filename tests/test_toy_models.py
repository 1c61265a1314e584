"""The toy world's trained models: shipped weights load as stock classes, meet a quick quality floor, and
the embedded defaults of infer.py and train.py run on them; the build itself is reproducible and resumes."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from richspace.toy import WEIGHTS, evaluate, toy_weights, world
from richspace.toy.training import BuildConfig

REPO = Path(__file__).resolve().parents[1]


def test_shipped_weights_are_stock_safetensors_within_budget():
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import CLIPModel, T5EncoderModel

    root = toy_weights()
    files = [f for f in root.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 16 * 2**20
    weights = [f for f in files if f.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt")]
    assert weights and all(f.suffix == ".safetensors" for f in weights)
    pipe = CogVideoXPipeline.from_pretrained(root / "cogvideox")
    assert isinstance(pipe.vae, AutoencoderKLCogVideoX) and isinstance(pipe.transformer, CogVideoXTransformer3DModel)
    assert isinstance(pipe.text_encoder, T5EncoderModel) and isinstance(CLIPModel.from_pretrained(root / "clip"), CLIPModel)
    config = yaml.safe_load((REPO / "configs" / "toy.yaml").read_text())["sampler"]
    assert pipe.transformer.config.max_text_seq_length == config["max_sequence_length"]  # pipeline pads to this
    a, b = (pipe.tokenizer(t).input_ids for t in ("a red plain circle moving up", "an orange plain circle moving up"))
    assert len(a) == len(b) == 7 and a[-1] == pipe.tokenizer.eos_token_id  # one token a word, then </s>
    assert [x != y for x, y in zip(a, b)] == [True, True] + [False] * 5  # word-aligned: only a/an, red/orange differ
    assert pipe.tokenizer.unk_token_id not in a + b
    assert CLIPModel.from_pretrained(root / "clip").config.vision_config.num_channels == 9  # three frames at once
    manifest = json.loads((root / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"pool", "vae", "latents", "denoiser", "generated", "clip"}  # times: BENCHMARKS.md
    assert manifest["seconds"] == pytest.approx(sum(stage["seconds"] for stage in manifest["stages"].values()), abs=1)


@pytest.fixture(scope="module")
def quick_quality() -> dict:
    """benchmarks/toy_quality.py's floor row: the 12 held-out combinations x 5 seeds at the default settings (about
    15 s here; a smaller sample moves a rate by 8% a video)."""
    config = yaml.safe_load((REPO / "configs" / "toy.yaml").read_text())["sampler"]
    pipe, encode, judge = evaluate.load_toy()
    return evaluate.quality(pipe, encode, judge, world.held_out_combinations(), list(range(5)),
                            config["num_inference_steps"], config["guidance_scale"], config["max_sequence_length"])


def test_quick_quality_floor(quick_quality):
    """Every readout of the floor, and the judge's ranking of every attribute, on held-out combinations."""
    assert quick_quality["videos"] == 60
    assert evaluate.meets_floor(quick_quality) == [], (quick_quality["readout"], quick_quality["clip"])


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True, cwd=REPO,
                          env=os.environ | {"PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_default_train_then_infer_carry_readouts_and_success(tmp_path):
    """train.py and infer.py with no --config run the toy world; results hold readouts beside CLIP numbers."""
    refine = tmp_path / "refine"
    run("train.py", "--run_dir", str(refine), "--data.only", "[orange]", "--model.steps", "2")
    refinement = json.loads((refine / "refinement.json").read_text())
    assert set(refinement["mixes"]) == {"orange"}
    gen = tmp_path / "gen"
    proc = run("infer.py", "--run_dir", str(gen), "--data.only", "[orange, orange-striped]",
               "--data.alpha_from", str(refine / "refinement.json"))
    records = {r["id"]: r for r in map(json.loads, (gen / "results.jsonl").read_text().splitlines())}
    assert set(records) == {"orange", "orange-striped"}
    orange = records["orange"]
    assert set(orange["videos"]) == set(orange["metrics"]) == set(orange["readouts"]) == set(orange["success"]) \
        == {"guide", "average", "finder", "compose", "refined"}
    for method, verdict in orange["success"].items():  # the verdict is the world's judgement of the readout
        assert verdict == world.judge({"hue_between": ["red", "yellow"], "shape": "square", "pattern": "plain",
                                       "direction": "right"},
                                      orange["readouts"][method])
    assert set(records["orange-striped"]["success"]) == {"guide", "average", "finder", "compose"}  # no refined one
    table = (gen / "results.md").read_text()
    assert "success" in table.splitlines()[2] and "| refined |" in table
    assert "success" in proc.stdout


def test_build_is_reproducible_and_resumes(tmp_path):
    """The build at toy scale (a few steps per stage): same seed, same weights; a finished stage is skipped."""
    from diffusers import CogVideoXPipeline
    from safetensors.torch import load_file
    from transformers import CLIPModel

    from richspace.toy.build import ship
    from richspace.toy.training import build

    config = BuildConfig(pool=40, vae_steps=2, vae_batch=4, denoiser_steps=2, denoiser_batch=8, clip_steps=2,
                         clip_batch=8, clip_turn=45.0, clip_words=1.0, composed=2,
                         clip_held_out=3, pair_seen=2)  # every judge option, and the held-out pair seen
    first, second = build(tmp_path / "a", config), build(tmp_path / "b", config)
    for part in ("cogvideox/transformer", "cogvideox/vae", "cogvideox/text_encoder", "clip"):
        (fa,), (fb,) = (list((root / part).glob("*.safetensors")) for root in (first, second))
        a, b = load_file(fa), load_file(fb)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    pipe = CogVideoXPipeline.from_pretrained(first / "cogvideox")
    assert pipe.transformer.config.in_channels == pipe.vae.config.latent_channels
    assert pipe.vae.config.scaling_factor != 1.0  # set from the encoded latents' spread
    CLIPModel.from_pretrained(first / "clip")
    loaded, _, _ = evaluate.load_toy(clip=str(first / "clip"), pretrained=str(first / "cogvideox"))  # --world's path
    built = pipe.transformer.state_dict()
    assert all(torch.equal(v, built[k]) for k, v in loaded.transformer.state_dict().items())
    assert list((first / "logs").glob("*/version_0/events.out.tfevents.*"))  # TensorBoard per stage
    stamp = (first / "stages" / "denoiser.json").stat().st_mtime_ns
    build(first, config)  # everything finished: nothing retrained
    assert (first / "stages" / "denoiser.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="holds a build with other settings"):
        build(first, replace(config, seed=1))
    dest = tmp_path / "weights"
    assert ship(first, dest) <= 16 * 2**20
    assert (dest / "cogvideox" / "model_index.json").is_file() and (dest / "manifest.json").is_file()
    assert WEIGHTS != dest


def test_generator_from_takes_another_builds_generator_and_trains_its_own_judge(tmp_path):
    """generator_from: the VAE and denoiser are the source build's, byte for byte, marked reused; the judge is trained
    here with this build's settings. A source with no trained pipeline is refused before anything is written."""
    from safetensors.torch import load_file
    from transformers import CLIPModel

    from richspace.toy.build import manifest_of, ship
    from richspace.toy.training import build, reused_generator

    config = BuildConfig(pool=40, vae_steps=2, vae_batch=4, denoiser_steps=2, denoiser_batch=8, generated=4,
                         generated_steps=2, clip_steps=2, clip_batch=8)
    source = build(tmp_path / "source", config)
    judged = build(tmp_path / "judged", replace(config, clip_words=1.0, clip_steps=3, generator_from=str(source)))
    for part in ("cogvideox/transformer", "cogvideox/vae", "cogvideox/text_encoder"):
        (fa,), (fb,) = (list((root / part).glob("*.safetensors")) for root in (source, judged))
        a, b = load_file(fa), load_file(fb)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    for stage in ("vae", "denoiser"):
        assert json.loads((judged / "stages" / f"{stage}.json").read_text())["reused"] == str(source)
    assert not (judged / "logs" / "denoiser").exists()  # nothing trained there
    (ca,), (cb,) = (list((root / "clip").glob("*.safetensors")) for root in (source, judged))
    a, b = load_file(ca), load_file(cb)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # its own judge
    CLIPModel.from_pretrained(judged / "clip")
    assert reused_generator("toy") == WEIGHTS and reused_generator("") is None
    ship(judged, tmp_path / "weights")  # the shipped manifest carries the source's, which trained the generator
    manifest = json.loads((tmp_path / "weights" / "manifest.json").read_text())
    assert manifest["generator"] == manifest_of(source) and "generator" not in manifest_of(source)
    assert manifest["build_config"]["generator_from"] == str(source) and manifest["stages"]["denoiser"]["seconds"] == 0
    with pytest.raises(ValueError, match="--generator_from .*no trained pipeline"):
        build(tmp_path / "refused", replace(config, generator_from=str(tmp_path / "nothing")))
    assert not (tmp_path / "refused").exists()


def test_pair_seen_puts_striped_triangles_at_the_end_of_the_shipped_pool(tmp_path):
    """pair_seen: the pool's last N videos show the held-out pair, with their captions, read so by their pixels; the
    others are the shipped pool's first videos. A count the pool cannot hold is refused before anything is written."""
    from richspace.toy.training import build, render_pool, training_pool

    shipped, shipped_captions, _ = render_pool(40, 0)
    videos, captions, truth = training_pool(BuildConfig(pool=40, pair_seen=5))
    assert len(videos) == 40 and torch.equal(videos[:35], shipped[:35]) and captions[:35] == shipped_captions[:35]
    assert all("striped triangle" in c for c in captions[35:]) and not any("striped triangle" in c for c in captions[:35])
    assert all((t.shape, t.pattern) == ("triangle", "striped") for t in truth[35:])
    assert all(world.readout(v.numpy())["shape"] == "triangle" for v in videos[35:])
    unchanged, unchanged_captions, _ = training_pool(BuildConfig(pool=40))
    assert torch.equal(unchanged, shipped) and unchanged_captions == shipped_captions  # 0: the shipped pool
    for bad in (-1, 40):
        with pytest.raises(ValueError, match="--pair_seen"):
            build(tmp_path / "bad", BuildConfig(pool=40, pair_seen=bad))
    assert not (tmp_path / "bad").exists()


def test_missing_weights_say_how_to_get_them(monkeypatch, tmp_path):
    import richspace.toy as toy

    monkeypatch.setattr(toy, "WEIGHTS", tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="python -m richspace.toy.build --ship"):
        toy.toy_weights()


def test_judge_target_splits_turned_motion_between_the_two_nearest_directions():
    """One-hot unturned; cos^2 / sin^2 of the turn between the caption and its neighbour (even at 45 degrees)."""
    from richspace.toy import world
    from richspace.toy.training import caption_target

    combos = [("red", "circle", "plain", d) for d in world.DIRECTIONS] + [("red", "square", "plain", "up")]
    index = {c: i for i, c in enumerate(combos)}
    target = lambda direction, turn: caption_target(world.Attributes(0.0, "circle", "plain", direction, turn=turn),
                                                   index)
    assert target("right", 0.0).tolist() == [1.0, 0, 0, 0, 0]
    assert torch.allclose(target("right", 30.0), torch.tensor([0.75, 0.25, 0, 0, 0]))  # towards up
    assert torch.allclose(target("right", -30.0), torch.tensor([0.75, 0, 0, 0.25, 0]))  # towards down
    assert torch.allclose(target("down", 45.0), torch.tensor([0.5, 0, 0, 0.5, 0]))  # down turned CCW: right
    square = caption_target(world.Attributes(0.0, "square", "plain", "up", turn=30.0), index)
    assert square.tolist() == [0, 0, 0, 0, 1.0]  # its neighbour (a red plain square moving left) is no caption


def test_judge_word_targets_are_each_attributes_share_of_the_caption_target():
    """clip_words: per attribute, the words alone ('plain', 'moving up') with the caption target's mass on each:
    one-hot for colour, shape and pattern; split as the caption target splits for turned motion."""
    from richspace.toy.training import CLIPModule

    truth = [[world.Attributes(5.0, "circle", "plain", "right", turn=30.0)]]
    module = CLIPModule(torch.zeros(1, 1, world.FRAMES, 3, world.SIZE, world.SIZE, dtype=torch.uint8), truth,
                        steps=1, lr=1e-3, words=1.0)
    shares = module.targets[0, 0] @ module.word_of
    words = [world.attribute_text(a, v) for a in evaluate.ATTRIBUTES for v in evaluate.VALUES[a]]
    got = {words[i]: round(float(shares[i]), 6) for i in range(len(words)) if shares[i] > 0}
    assert got == {"red": 1.0, "circle": 1.0, "plain": 1.0, "moving right": 0.75, "moving up": 0.25}
    assert [[words[i] for i in g] for g in module.word_groups][2] == ["plain", "striped"]


def test_composed_videos_are_labelled_by_their_pixels(tmp_path):
    """composed: the shipped toy pipeline draws from two training captions composed or interpolated; each kept
    video's word target is what its own pixels show, its direction split by its angle."""
    import lightning as L

    from richspace.toy.training import (CLIPModule, _loader, build, composed_pool, judge_words,
                                        render_pool)

    videos, targets = composed_pool(WEIGHTS / "cogvideox", replace(BuildConfig(), composed=3))
    assert len(videos) == len(targets) >= 1 and videos.dtype == torch.uint8
    words = judge_words()
    for video, target in zip(videos, targets):
        read = world.readout(video.numpy())
        for attribute in ("colour", "shape", "pattern"):
            assert target[words.index((attribute, read[attribute]))] == 1.0
        directions = [i for i, (a, _) in enumerate(words) if a == "direction"]
        assert abs(float(target[directions].sum()) - 1.0) < 1e-6
        assert float(target[words.index(("direction", read["direction"]))]) >= 0.5  # the nearest word leads
    assert set(evaluate.ATTRIBUTES) == {a for a, _ in words}
    pool, _, truth = render_pool(8, seed=0)
    with pytest.raises(ValueError, match="give clip_words > 0"):
        CLIPModule(pool[None], [truth], steps=1, lr=1e-3, composed=videos, composed_targets=targets)
    with pytest.raises(ValueError, match="give --clip_words > 0 too"):  # the build refuses before any stage
        build(tmp_path / "refused", replace(BuildConfig(), composed=2))
    assert not (tmp_path / "refused").exists()
    module = CLIPModule(pool[None], [truth], steps=1, lr=1e-3, words=1.0, composed=videos, composed_targets=targets)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, _loader(len(pool), 4, 0))
    logged = trainer.callback_metrics
    assert {"clip/words", "clip/composed"} <= set(logged) and torch.isfinite(logged["clip/composed"])


def test_judge_held_out_pair_videos_are_striped_triangles_with_their_own_captions():
    """clip_held_out: rendered videos of the held-out pair only, read as striped triangles by their pixels; the judge
    then reads their captions too, a striped triangle's shape against the striped square and circle."""
    from richspace.toy.training import CLIPModule, render_pool

    combos = world.held_out_pair_combinations()
    assert len(combos) == 24 and not set(combos) & set(world.training_combinations())
    videos, captions, truth = render_pool(30, seed=2, combos=combos)
    assert len(set(captions)) == 24 and all("striped triangle" in c for c in captions)
    reads = [world.readout(v.numpy()) for v in videos[:6]]
    assert all(r["shape"] == "triangle" and r["pattern"] == "striped" for r in reads)
    module = CLIPModule(videos[None], [truth], steps=1, lr=1e-3, combos=world.training_combinations() + combos)
    names = [world.caption(*c) for c in world.training_combinations() + combos]
    shapes = module.groups[module.labels[0, 0], evaluate.ATTRIBUTES.index("shape")]
    assert sorted(names[i] for i in shapes.tolist() if i >= 0) == sorted(
        captions[0].replace("triangle", s) for s in world.SHAPES)
    with pytest.raises(KeyError):  # without the held-out captions, a striped triangle has no caption to learn
        CLIPModule(videos[None], [truth], steps=1, lr=1e-3)
