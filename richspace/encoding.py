"""Text encoding exactly as diffusers' CogVideoXPipeline does it, with an on-disk embedding cache.

``t5_prompt_embeds`` reproduces ``CogVideoXPipeline._get_t5_prompt_embeds`` bit for bit (pad to
max_sequence_length, truncate with a warning, no attention mask into T5, so pad rows are not
zero) and also returns each prompt's real token count (non-pad tokens, EOS included), which
the finder's truncated scoring needs.

``PromptEncoder`` wraps it with a safetensors cache keyed by the encoder's identity (a
content hash of its ``text_encoder/`` and ``tokenizer/`` files), the prompt, the max length
and the dtype: prompts seen before never load T5; T5 loads only when one is missing. An
entry that is corrupt or belongs to another key is detected, recomputed and replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from richspace.tiny import cache_root
from richspace.weights import check_weights, loading

ENCODER_PARTS = ("text_encoder", "tokenizer")


def t5_prompt_embeds(
    tokenizer, text_encoder, prompt: str, max_sequence_length: int = 226
) -> tuple[Tensor, int, bool]:
    """One prompt's (L, d) T5 embedding, real token count and whether it was truncated, as CogVideoXPipeline."""
    # Copied from diffusers.pipelines.cogvideo.pipeline_cogvideox.CogVideoXPipeline._get_t5_prompt_embeds
    # (diffusers 0.42.1), for one prompt, also returning the token count; warns with `warnings`.
    text_inputs = tokenizer(
        [prompt],
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    text_input_ids = text_inputs.input_ids
    untruncated_ids = tokenizer([prompt], padding="longest", return_tensors="pt").input_ids
    truncated = untruncated_ids.shape[-1] >= text_input_ids.shape[-1] and not torch.equal(
        text_input_ids, untruncated_ids
    )
    if truncated:
        removed_text = tokenizer.batch_decode(untruncated_ids[:, max_sequence_length - 1 : -1])
        warnings.warn(
            f"prompt truncated to max_sequence_length={max_sequence_length} tokens, as CogVideoX does; "
            f"removed: {removed_text[0]!r}",
            stacklevel=2,
        )
    device = next(text_encoder.parameters()).device
    with torch.no_grad():
        prompt_embeds = text_encoder(text_input_ids.to(device))[0]
    n_ids = int((text_input_ids != tokenizer.pad_token_id).sum())
    return prompt_embeds[0].to(dtype=text_encoder.dtype), n_ids, truncated


def resolve_checkpoint(model: str | Path, parts: Sequence[str] = ENCODER_PARTS) -> Path:
    """A local directory for a diffusers checkpoint: the path itself, or a hub id's cached snapshot."""
    check_weights(model, "CogVideoX text encoder")
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    patterns = ["model_index.json", *(f"{p}/*" for p in parts)]
    with loading(model, "CogVideoX text encoder"):
        return Path(snapshot_download(str(model), allow_patterns=patterns))


def _file_digest(path: Path, memo: dict) -> str:
    """sha256 of a file's content, memoised by (path, size, mtime) so large weights hash once."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if key not in memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
        memo[key] = h.hexdigest()
    return memo[key]


def encoder_identity(checkpoint: Path, cache_dir: Path) -> str:
    """Content hash of the checkpoint's text_encoder/ and tokenizer/ files (names and bytes)."""
    memo_path = cache_dir / "file-digests.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    before = dict(memo)
    h = hashlib.sha256()
    for part in ENCODER_PARTS:
        files = sorted(p for p in (checkpoint / part).rglob("*") if p.is_file())
        if not files:
            raise FileNotFoundError(f"{checkpoint} has no {part}/ folder; is it a diffusers-format CogVideoX directory?")
        for p in files:
            h.update(f"{p.relative_to(checkpoint).as_posix()}\0{_file_digest(p, memo)}\0".encode())
    if memo != before:
        _atomic_write_bytes(memo_path, json.dumps(memo, indent=0).encode())
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _entry_digest(embeds: Tensor, n_ids: int) -> str:
    """sha256 over an entry's tensor bytes and token count: a changed byte anywhere shows."""
    h = hashlib.sha256(embeds.contiguous().view(torch.uint8).numpy().tobytes())
    h.update(str(int(n_ids)).encode())
    return h.hexdigest()


class PromptEncoder:
    """Encodes prompts as CogVideoXPipeline does, caching each prompt's embedding on disk.

    checkpoint: a diffusers CogVideoX directory or hub id (only text_encoder/ and tokenizer/ are used).
    cache_dir: where embeddings go ($RICHSPACE_CACHE/embeddings by default); None-like "" disables.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        cache_dir: str | Path | None = None,
        max_sequence_length: int = 226,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.checkpoint = resolve_checkpoint(checkpoint)
        self.cache_dir = None if cache_dir == "" else Path(cache_dir or cache_root() / "embeddings")
        self.max_sequence_length = max_sequence_length
        self.device = torch.device(device)
        self.dtype = dtype
        self.tokenizer = None
        self.text_encoder = None
        self._identity: str | None = None

    @property
    def loaded(self) -> bool:
        """Whether T5 is in memory."""
        return self.text_encoder is not None

    @property
    def identity(self) -> str:
        if self._identity is None:
            self._identity = encoder_identity(self.checkpoint, self.cache_dir or cache_root())
        return self._identity

    def load(self) -> None:
        """Loads the tokenizer and T5 (frozen, eval mode)."""
        from transformers import AutoTokenizer, T5EncoderModel

        if self.loaded:
            return
        self.tokenizer = AutoTokenizer.from_pretrained(self.checkpoint, subfolder="tokenizer")
        self.text_encoder = T5EncoderModel.from_pretrained(self.checkpoint, subfolder="text_encoder", dtype=self.dtype)
        self.text_encoder.requires_grad_(False).eval().to(self.device)

    def release(self) -> None:
        """Frees T5 (9.5 GB for T5-XXL) once the embeddings are cached."""
        self.tokenizer = self.text_encoder = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _key(self, prompt: str) -> dict[str, str]:
        return {
            "encoder": self.identity,
            "prompt": prompt,
            "max_length": str(self.max_sequence_length),
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def _path(self, key: dict[str, str]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.safetensors"

    def _read(self, key: dict[str, str]) -> tuple[Tensor, int] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
                embeds, n_ids = f.get_tensor("prompt_embeds"), f.get_tensor("n_ids")
            ok = (
                all(meta.get(name) == value for name, value in key.items())
                and n_ids.numel() == 1
                and meta.get("digest") == _entry_digest(embeds, int(n_ids))
                and embeds.dim() == 2
                and embeds.shape[0] == self.max_sequence_length
                and str(embeds.dtype).removeprefix("torch.") == key["dtype"]
                and 1 <= int(n_ids) <= self.max_sequence_length
            )
        except Exception:  # truncated, garbled or foreign file: recompute below
            ok = False
        if not ok:
            warnings.warn(f"embedding cache entry {path} is corrupt or belongs to another key; recomputing", stacklevel=3)
            return None
        if meta.get("truncated") == "1":
            warnings.warn(f"prompt truncated to max_sequence_length={self.max_sequence_length} tokens: {key['prompt']!r}")
        return embeds, int(n_ids)

    def _write(self, key: dict[str, str], embeds: Tensor, n_ids: int, truncated: bool) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**key, "digest": _entry_digest(embeds, n_ids), "truncated": "1" if truncated else "0"}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            save_file({"prompt_embeds": embeds.contiguous(), "n_ids": torch.tensor([n_ids])}, tmp, metadata=meta)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __call__(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """(N, L, d) embeddings on CPU and (N,) int64 real token counts for the prompts, in order."""
        found: dict[str, tuple[Tensor, int]] = {}
        for prompt in dict.fromkeys(prompts):
            hit = self._read(self._key(prompt)) if self.cache_dir is not None else None
            if hit is None:
                self.load()
                embeds, n_ids, truncated = t5_prompt_embeds(
                    self.tokenizer, self.text_encoder, prompt, self.max_sequence_length
                )
                embeds = embeds.cpu()
                if self.cache_dir is not None:
                    self._write(self._key(prompt), embeds, n_ids, truncated)
                hit = (embeds, n_ids)
            found[prompt] = hit
        embeds = torch.stack([found[p][0] for p in prompts])
        return embeds, torch.tensor([found[p][1] for p in prompts], dtype=torch.long)
