"""The tiny offline checkpoint: deterministic, complete, and loadable by the libraries' own loaders."""

import json

import torch
from safetensors.torch import load_file

from richspace.tiny import build_tiny_checkpoint


def weights(root):
    return {p.relative_to(root).as_posix(): load_file(p) for p in sorted(root.rglob("*.safetensors"))}


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, tiny_dir):
    again = build_tiny_checkpoint(tmp_path / "again", seed=0)
    other = build_tiny_checkpoint(tmp_path / "other", seed=1)
    ref, same, diff = weights(tiny_dir), weights(again), weights(other)
    assert set(ref) == set(same) == set(diff) and len(ref) == 4  # T5, transformer, VAE, CLIP
    for name in ref:
        assert ref[name].keys() == same[name].keys()
        assert all(torch.equal(ref[name][k], same[name][k]) for k in ref[name])
    assert any(not torch.equal(ref[n][k], diff[n][k]) for n in ref for k in ref[n])
    for sub in ("cogvideox/tokenizer/tokenizer.json", "cogvideox/model_index.json", "clip/tokenizer.json"):
        assert (tiny_dir / sub).read_text() == (again / sub).read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_existing_checkpoint_is_reused_untouched(tiny_dir):
    stamp = (tiny_dir / "richspace_tiny.json").stat().st_mtime_ns
    assert build_tiny_checkpoint(tiny_dir) == tiny_dir
    assert (tiny_dir / "richspace_tiny.json").stat().st_mtime_ns == stamp
    assert json.loads((tiny_dir / "richspace_tiny.json").read_text())["seed"] == 0


def test_pipeline_round_trip_generates_frames(tiny_pipe):
    from diffusers import CogVideoXPipeline

    assert isinstance(tiny_pipe, CogVideoXPipeline)
    assert tiny_pipe.transformer.config.max_text_seq_length == 226
    ids = tiny_pipe.tokenizer("a red cat", padding="max_length", max_length=226).input_ids
    assert ids[9] == tiny_pipe.tokenizer.eos_token_id and ids[10:] == [tiny_pipe.tokenizer.pad_token_id] * 216
    out = tiny_pipe(
        prompt="a red cat", num_frames=9, height=32, width=32, num_inference_steps=2, output_type="pt",
        generator=torch.Generator().manual_seed(0),
    )
    assert out.frames.shape == (1, 9, 3, 32, 32) and torch.isfinite(out.frames).all()


def test_clip_round_trip(tiny_dir):
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(tiny_dir / "clip").eval()
    processor = CLIPProcessor.from_pretrained(tiny_dir / "clip")
    images = [torch.rand(3, 48, 64) for _ in range(2)]
    batch = processor(text=["a tiger", "a zebra"], images=images, return_tensors="pt", padding=True, do_rescale=False)
    with torch.no_grad():
        out = model(**batch)
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert out.logits_per_image.shape == (2, 2) and torch.isfinite(out.logits_per_image).all()
