"""Shared fixtures: a private cache directory and the tiny offline checkpoint, built once per session."""

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
