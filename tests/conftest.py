"""Shared fixtures: a private cache directory, the tiny offline checkpoint (built once per session) and the toy
world's striped-triangle mix as refinement sees it."""

import os
import tempfile
from pathlib import Path

import pytest

# Every test run gets its own cache, so nothing leaks in from a user's ~/.cache/richspace.
os.environ.setdefault("RICHSPACE_CACHE", tempfile.mkdtemp(prefix="richspace-test-cache-"))


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    from richspace.tiny import tiny_checkpoint

    return tiny_checkpoint()


@pytest.fixture(scope="session")
def tiny_pipe(tiny_dir):
    from diffusers import CogVideoXPipeline

    return CogVideoXPipeline.from_pretrained(tiny_dir / "cogvideox")


@pytest.fixture
def striped_triangle(tmp_path):
    """The embedded default's striped-triangle mix as refinement sees it (toy weights, its query options encoded),
    and a toy sampler of refinement's size with 4 denoising steps."""
    from richspace.refinement import RefineDataModule
    from richspace.sampler import Sampler

    data = RefineDataModule(experiments="configs/experiments/toy.yaml", run_dir=str(tmp_path), pretrained="toy",
                            max_sequence_length=16, only=["striped-triangle"])
    data.prepare_data()
    data.setup("predict")
    (item,) = data.items
    sampler = Sampler("toy", num_frames=9, height=32, width=32, num_inference_steps=4, max_sequence_length=16,
                      guidance_scale=3.0)
    return item, sampler
