"""Video I/O: float frames to uint8, uint8 frames to and from H.264 mp4 (PyAV, in process)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor


def to_uint8(frames: Tensor) -> Tensor:
    """(F, 3, H, W) floats in [0, 1] -> uint8."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8)


def write_mp4(frames: Tensor, path: str, fps: int, crf: int = 18) -> None:
    """(F, 3, H, W) uint8 frames -> an H.264 mp4 (yuv420p, x264 preset veryfast)."""
    import av

    _, _, height, width = frames.shape
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames.permute(0, 2, 3, 1).contiguous().numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def read_mp4(path: str | Path) -> Tensor:
    """An mp4 back as (F, 3, H, W) uint8."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
