"""CLIP metrics: torchmetrics' CLIPScore through our transformers-5 adapter equals a direct CLIPModel computation."""

import pytest
import torch
import torch.nn.functional as F

from richspace.metrics import CLIPFeatures, VideoCLIPScorer, mean_table, mix_metrics


def test_clipscore_through_the_adapter_matches_clipmodel(tiny_dir):
    from transformers import CLIPModel, CLIPProcessor

    frames = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4), size=(32, 32)).mul(255).round().to(torch.uint8)
    prompt = "The tiger, moves gracefully through the forest"
    scorer = VideoCLIPScorer(tiny_dir / "clip")
    model = CLIPModel.from_pretrained(tiny_dir / "clip").eval()
    processor = CLIPProcessor.from_pretrained(tiny_dir / "clip")
    with torch.no_grad():
        pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
        tokens = processor(text=[prompt], return_tensors="pt", padding=True)
        image = model.get_image_features(pixel_values=pixels)
        text = model.get_text_features(**tokens)
    image = image if isinstance(image, torch.Tensor) else image.pooler_output  # transformers 5: an output object
    text = text if isinstance(text, torch.Tensor) else text.pooler_output
    expected = (100 * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T).mean().clamp_min(0)
    assert scorer.score(frames, prompt) == pytest.approx(float(expected), rel=1e-5, abs=1e-5)
    assert isinstance(CLIPFeatures(model).get_image_features(pixels), torch.Tensor)


def test_mix_metrics_and_table():
    m = mix_metrics(20.0, 14.0, 25.0)
    assert m == {"clip_a": 20.0, "clip_b": 14.0, "clip_guide": 25.0, "balance": 6.0, "reward": 28.0}
    records = [{"metrics": {"finder": m, "guide": mix_metrics(10.0, 10.0, 30.0)}},
               {"metrics": {"finder": mix_metrics(10.0, 12.0, 20.0)}}]
    table = mean_table(records, ["guide", "finder"])
    assert "| guide | 10.000 | 10.000 | 30.000 | 0.000 | 20.000 | 1 |" in table
    assert "| finder | 15.000 | 13.000 | 22.500 | 4.000 | 24.000 | 2 |" in table
