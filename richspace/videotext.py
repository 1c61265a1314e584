"""The video-text judge: one object that scores a video against prompts, whatever model it wraps.

The refinement objective, the mix metrics and the toy world's quality floor all ask one
question, "how well does this clip match this text?", and the answer depends on what the
checkpoint can see (docs/design.md, "Judging a video"):

- ``frame``: a CLIPModel on RGB frames (openai/clip-vit-large-patch14, the tiny checkpoint).
  A video's feature is the mean of its frames' normalised features, so its score is the mean
  over frames of 100 x cosine, torchmetrics' CLIPScore; it cannot see motion.
- ``clip``: a CLIPModel whose vision tower takes ``num_channels = 3 k`` (the toy judge): k
  evenly spaced frames stacked on the channel axis form one input, so direction and diagonal
  motion are visible to it.
- ``xclip``: an XCLIPModel (microsoft/xclip-base-patch32), a video-text model from
  transformers: its ``num_frames`` evenly spaced frames go through ``get_video_features``.

The kind follows from the checkpoint's config, so a config picks a judge by naming its weights.
Everything here is differentiable in the frames (refinement climbs it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from richspace.weights import loading

KINDS = ("frame", "clip", "xclip")


def frame_indices(total: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices of ``total`` frames, first and last included (repeats if too few)."""
    if count == 1:
        return [total // 2]
    return [round(i * (total - 1) / (count - 1)) for i in range(count)]


def tensor_features(out) -> Tensor:
    """transformers 5 returns an output object from get_*_features (the features are its pooler_output)."""
    return out if isinstance(out, Tensor) else out.pooler_output


def resize_normalise(frames: Tensor, size: int, crop: tuple[int, int], mean, std) -> Tensor:
    """CLIPImageProcessor in torch (differentiable): (N, 3, H, W) in [0, 1] -> normalised crops.

    Resize the shortest edge to ``size`` (bicubic, antialiased), centre-crop, normalise.
    """
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    resized = F.interpolate(frames, size=(max(crop[0], round(h * scale)), max(crop[1], round(w * scale))),
                            mode="bicubic", antialias=True, align_corners=False)
    top, left = (resized.shape[-2] - crop[0]) // 2, (resized.shape[-1] - crop[1]) // 2
    cropped = resized[..., top : top + crop[0], left : left + crop[1]]
    mean = torch.as_tensor(mean, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    return (cropped - mean) / std


class VideoText(nn.Module):
    """A frozen video-text model: ``video_features`` (differentiable), ``text_features``, ``scores``."""

    def __init__(self, model: nn.Module, tokenizer, image_processor) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        ip = image_processor
        size = ip.size.get("shortest_edge") or ip.size.get("height")
        crop = ip.crop_size if getattr(ip, "crop_size", None) else {"height": size, "width": size}
        self.size, self.crop = int(size), (int(crop["height"]), int(crop["width"]))
        self.mean, self.std = list(ip.image_mean), list(ip.image_std)
        config = model.config
        if config.model_type == "xclip":
            self.kind, self.frames = "xclip", int(config.vision_config.num_frames)
        elif config.vision_config.num_channels == 3:
            self.kind, self.frames = "frame", 0
        elif config.vision_config.num_channels % 3 == 0:
            self.kind, self.frames = "clip", config.vision_config.num_channels // 3
        else:
            raise ValueError(f"a CLIP vision tower with {config.vision_config.num_channels} channels: "
                             "use 3 (frames) or 3 x k (k stacked frames)")
        self.text_limit = int(config.text_config.max_position_embeddings)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def pixel_values(self, frames: Tensor) -> Tensor:
        """(F, 3, H, W) in [0, 1] -> the model's input: (F, 3, h, w) frames, (1, 3k, h, w) or (1, T, 3, h, w)."""
        if self.frames:
            frames = frames[frame_indices(len(frames), self.frames)]
        pixels = resize_normalise(frames.float(), self.size, self.crop, self.mean, self.std).to(self.dtype)
        if self.kind == "clip":
            return pixels.reshape(1, -1, *pixels.shape[-2:])
        if self.kind == "xclip":
            return pixels[None]
        return pixels

    def video_features(self, frames: Tensor) -> Tensor:
        """(D,) feature of one video, (F, 3, H, W) floats in [0, 1]; cosines with it average over frames for
        ``frame`` judges (the mean of unit vectors, not renormalised)."""
        pixels = self.pixel_values(frames.to(self.device))
        if self.kind == "xclip":
            out = tensor_features(self.model.get_video_features(pixel_values=pixels))
        else:
            out = tensor_features(self.model.get_image_features(pixel_values=pixels))
        return F.normalize(out.float(), dim=-1).mean(0)

    def text_features(self, texts: Sequence[str]) -> Tensor:
        """(len(texts), D) unit text features (texts truncated to the model's length, as CLIPScore does)."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.text_limit,
                               return_tensors="pt").to(self.device)
        out = tensor_features(self.model.get_text_features(input_ids=batch["input_ids"],
                                                     attention_mask=batch["attention_mask"]))
        return F.normalize(out.float(), dim=-1)

    def scores(self, frames: Tensor, texts: Sequence[str] | Tensor) -> Tensor:
        """(len(texts),) 100 x cosine of one video against each text (text features may be passed instead)."""
        text = texts if isinstance(texts, Tensor) else self.text_features(texts)
        return 100.0 * text @ self.video_features(frames)


def load_video_text(path: str | Path) -> VideoText:
    """The judge for a hub id or local directory (CLIP or X-CLIP), frozen, in eval mode."""
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, CLIPModel, XCLIPModel

    with loading(path, "CLIP"):
        config = AutoConfig.from_pretrained(path)
        model_class = XCLIPModel if config.model_type == "xclip" else CLIPModel
        model = model_class.from_pretrained(path).eval().requires_grad_(False)
        return VideoText(model, AutoTokenizer.from_pretrained(path), AutoImageProcessor.from_pretrained(path))
