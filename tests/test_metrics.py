"""The judge (richspace.videotext) and the metrics: a per-frame CLIP equals torchmetrics' CLIPScore, the toy
judge on stacked frames and X-CLIP equal their models' own computations and see frame order; statistics."""

import numpy as np
import pytest
import torch

from richspace.metrics import VideoScorer, mean_table, mix_metrics
from richspace.stats import bootstrap_difference, bootstrap_mean, stratified_mean
from richspace.videotext import frame_indices, load_video_text


def features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 5: an output object


class ClipScoreAdapter(torch.nn.Module):
    """What torchmetrics' CLIPScore calls, with get_*_features returning tensors under transformers 5."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, pixel_values):
        return features(self.model.get_image_features(pixel_values=pixel_values))

    def get_text_features(self, input_ids, attention_mask=None):
        return features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


def video(frames: int = 9, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(frames, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size)).mul(255).round().to(torch.uint8)


def test_per_frame_clip_scores_equal_torchmetrics_clipscore(tiny_dir):
    from torchmetrics.multimodal import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    frames = video(4)
    prompts = ["The tiger, moves gracefully through the forest", "a zebra"]
    scorer = VideoScorer(tiny_dir / "clip")
    assert scorer.judge.kind == "frame"

    def load():
        return ClipScoreAdapter(CLIPModel.from_pretrained(tiny_dir / "clip").eval()), \
            CLIPProcessor.from_pretrained(tiny_dir / "clip")

    reference = CLIPScore(model_name_or_path=load)
    for prompt, ours in zip(prompts, scorer.scores(frames, prompts)):
        reference.reset()
        reference.update(list(frames), [prompt] * len(frames))
        assert ours == pytest.approx(float(reference.compute()), rel=1e-5, abs=1e-4)


def tiny_text_config(tokenizer) -> dict:
    """A one-layer CLIP text tower over the byte-level CLIP tokenizer (shared by the CLIP and X-CLIP builders)."""
    return dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def build_stacked_clip(path, frames: int = 3):
    """A tiny random CLIP whose vision tower takes `frames` RGB frames stacked on channels (the toy judge's form)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from richspace.tiny import byte_level_clip_tokenizer

    tokenizer = byte_level_clip_tokenizer()
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=tiny_text_config(tokenizer),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8, num_channels=3 * frames), projection_dim=16)
    CLIPModel(config).save_pretrained(path)
    image = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image, tokenizer=tokenizer).save_pretrained(path)
    return path


def build_tiny_xclip(path, frames: int = 4):
    """A tiny random XCLIPModel with its processor, saved as real X-CLIP checkpoints are."""
    from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    from richspace.tiny import byte_level_clip_tokenizer

    tokenizer = byte_level_clip_tokenizer()
    torch.manual_seed(0)
    config = XCLIPConfig(
        text_config=tiny_text_config(tokenizer),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8, num_frames=frames, mit_hidden_size=32,
                           mit_intermediate_size=64, mit_num_hidden_layers=1, mit_num_attention_heads=2),
        projection_dim=32, prompt_layers=1, prompt_attention_heads=2)
    XCLIPModel(config).eval().save_pretrained(path)
    image = VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    XCLIPProcessor(image_processor=image, tokenizer=tokenizer).save_pretrained(path)
    return path


def test_frame_indices_are_evenly_spaced():
    assert frame_indices(9, 3) == [0, 4, 8]
    assert frame_indices(49, 8) == [0, 7, 14, 21, 27, 34, 41, 48]
    assert frame_indices(2, 3) == [0, 0, 1]  # fewer frames than the judge takes: repeats
    assert frame_indices(5, 1) == [2]


def test_stacked_clip_judge_is_its_model_on_stacked_frames_and_sees_order(tmp_path):
    from transformers import CLIPModel

    judge = load_video_text(build_stacked_clip(tmp_path / "stacked"))
    assert (judge.kind, judge.frames) == ("clip", 3)
    frames = video(9).float() / 255
    model = CLIPModel.from_pretrained(tmp_path / "stacked").eval()
    mean = torch.tensor(judge.mean).view(1, 3, 1, 1)
    std = torch.tensor(judge.std).view(1, 3, 1, 1)
    stacked = ((frames[[0, 4, 8]] - mean) / std).reshape(1, 9, 32, 32)  # native size: no resize
    with torch.no_grad():
        image = torch.nn.functional.normalize(features(model.get_image_features(pixel_values=stacked)), dim=-1)[0]
        ours = judge.video_features(frames)
    torch.testing.assert_close(ours, image, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # played backwards, the clip is another input: a stacked judge can tell the direction
        assert not torch.allclose(judge.video_features(frames.flip(0)), ours, atol=1e-4)


def test_per_frame_judge_cannot_see_order(tiny_dir):
    judge = load_video_text(tiny_dir / "clip")
    frames = video(9).float() / 255
    with torch.no_grad():
        torch.testing.assert_close(judge.video_features(frames.flip(0)), judge.video_features(frames))


def test_xclip_judge_equals_get_video_features_and_is_differentiable(tmp_path):
    from transformers import XCLIPModel, XCLIPProcessor

    path = build_tiny_xclip(tmp_path / "xclip")
    judge = load_video_text(path)
    assert (judge.kind, judge.frames) == ("xclip", 4)
    frames = video(9)
    model, processor = XCLIPModel.from_pretrained(path).eval(), XCLIPProcessor.from_pretrained(path)
    picked = [np.asarray(f.permute(1, 2, 0)) for f in frames[frame_indices(9, 4)]]
    with torch.no_grad():
        pixels = processor(videos=[picked], return_tensors="pt")["pixel_values"]
        expected = torch.nn.functional.normalize(features(model.get_video_features(pixel_values=pixels)), dim=-1)[0]
        torch.testing.assert_close(judge.video_features(frames.float() / 255), expected, rtol=1e-4, atol=1e-4)
    leaf = (frames.float() / 255).requires_grad_(True)
    judge.scores(leaf, ["a tiger", "a zebra"]).sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


def test_mix_metrics_and_table():
    m = mix_metrics(20.0, 14.0, 25.0)
    assert m == {"clip_a": 20.0, "clip_b": 14.0, "clip_guide": 25.0, "balance": 6.0, "reward": 28.0}
    records = [{"metrics": {"finder": m, "guide": mix_metrics(10.0, 10.0, 30.0)}},
               {"metrics": {"finder": mix_metrics(10.0, 12.0, 20.0)}}]
    table = mean_table(records, ["guide", "finder"])
    assert "| guide | 10.000 | 10.000 | 30.000 | 0.000 | 20.000 | 1 |" in table
    assert "| finder | 15.000 | 13.000 | 22.500 | 4.000 | 24.000 | 2 |" in table


def test_bootstrap_interval_matches_the_normal_approximation_on_many_mixes():
    rng = np.random.default_rng(1)
    rates = rng.integers(0, 4, size=400) / 3  # 400 mixes, rates over 3 seeds
    interval = bootstrap_mean(rates, resamples=20000, seed=0)
    half = 1.96 * rates.std(ddof=1) / np.sqrt(rates.size)  # an independent reference: the CLT interval
    assert interval.mean == pytest.approx(rates.mean())
    assert interval.low == pytest.approx(rates.mean() - half, abs=0.01)
    assert interval.high == pytest.approx(rates.mean() + half, abs=0.01)
    assert interval.mixes == 400 and bootstrap_mean(rates, seed=0) == bootstrap_mean(rates, seed=0)
    few = bootstrap_mean([0.0, 1.0, 1.0, 0.0, 1.0])
    assert few.low < few.mean < few.high and few.high - few.low > 0.5  # five verdicts: a wide interval
    assert str(bootstrap_mean([1.0, 1.0])) == "100% [100%, 100%]"


def test_paired_difference_cancels_what_mixes_share():
    rng = np.random.default_rng(2)
    base = rng.random(40)
    better = np.clip(base + 0.1, 0, None)  # every mix gains 0.1: the paired interval is tight around it
    d = bootstrap_difference(better, base)
    assert d.mean == pytest.approx(0.1) and d.low == pytest.approx(0.1) and d.high == pytest.approx(0.1)
    with pytest.raises(ValueError, match="same mixes"):
        bootstrap_difference([0.1, 0.2], [0.1])


def test_stratified_mean_weighs_kinds_by_their_share_not_their_count():
    rng = np.random.default_rng(3)
    many, few = rng.integers(0, 4, size=300) / 3, rng.integers(0, 4, size=200) / 3  # 300 mixes of one kind, 200 of another
    interval = stratified_mean({"hue": many, "chain": few}, {"hue": 1.0, "chain": 3.0, "stripes": 2.0}, resamples=20000)
    point = 0.25 * many.mean() + 0.75 * few.mean()  # shares normalised over the kinds present, counts ignored
    # an independent reference: the normal approximation of a stratified mean, sum of w^2 s^2 / n per stratum
    half = 1.96 * np.sqrt(0.25 ** 2 * many.var(ddof=1) / many.size + 0.75 ** 2 * few.var(ddof=1) / few.size)
    assert interval.mean == pytest.approx(point) and interval.mixes == 500
    assert interval.low == pytest.approx(point - half, abs=0.01) and interval.high == pytest.approx(point + half, abs=0.01)
    alone = stratified_mean({"hue": many}, {"hue": 5.0})
    assert alone.mean == pytest.approx(many.mean()) and alone.low < alone.mean < alone.high
    assert stratified_mean({"hue": [1.0, 1.0], "chain": [0.0]}, {"hue": 1, "chain": 1}).high == pytest.approx(0.5)
    with pytest.raises(ValueError, match="have no share"):
        stratified_mean({"hue": [1.0], "seen": [0.0]}, {"hue": 1.0})
    assert stratified_mean({"hue": [1.0], "seen": [0.0]}, {"hue": 1.0, "seen": 0.0}).mean == 1.0  # a kind not asked
    with pytest.raises(ValueError, match="no positive share"):
        stratified_mean({"seen": [0.0]}, {"seen": 0.0})
