"""The tiny offline checkpoint: a complete diffusers-format CogVideoX and a CLIP, built in code.

No weights can be downloaded on the project's machines, so tests and the embedded default
use checkpoints written here from a fixed seed (random init) with the libraries' own
``save_pretrained`` and loaded back through the same ``from_pretrained`` as real weights
(docs/design.md). Same seed, identical files. Videos from it are noise; it
proves the plumbing. Tokenizers are byte level and built with the ``tokenizers`` library,
since no vocabulary file can be fetched.

    python -m richspace.tiny [DIR]      # build (or find) it and print its path
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

TINY_VERSION = 2  # bump when the architecture or the build below changes
TEXT_LEN = 226  # as CogVideoX: the transformer's max_text_seq_length and the pipeline's default
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


def cache_root() -> Path:
    """Where richspace keeps built checkpoints and embeddings: $RICHSPACE_CACHE or ~/.cache/richspace."""
    return Path(os.environ.get("RICHSPACE_CACHE", Path.home() / ".cache" / "richspace"))


def byte_level_t5_tokenizer(max_length: int = TEXT_LEN):
    """A T5-style tokenizer over bytes: <pad>=0, </s>=1, <unk>=2, then the 256 bytes; appends </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {PAD: 0, EOS: 1, UNK: 2, **{ch: 3 + i for i, ch in enumerate(sorted(alphabet))}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=max_length
    )


def word_level_t5_tokenizer(words: list[str], max_length: int):
    """A T5-style tokenizer with one token per word: <pad>=0, </s>=1, <unk>=2, then ``words``; appends </s>.

    Prompts that differ in one word keep every other word at the same position, as real T5
    prompts about a tiger and a zebra do (a byte-level tokenizer shifts every later byte).
    Words outside the vocabulary become <unk>; text is lower-cased and split on whitespace.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if len(set(words)) != len(words):
        raise ValueError("word_level_t5_tokenizer: the words must be distinct")
    vocab = {PAD: 0, EOS: 1, UNK: 2, **{w: 3 + i for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=max_length
    )


def byte_level_clip_tokenizer():
    """A CLIP tokenizer over bytes (no merges): each byte a token, '</w>' closing each word."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    words = chars + [ch + "</w>" for ch in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={w: i for i, w in enumerate(words)}, merges=[])


def _build_cogvideox(out: Path, seed: int) -> None:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=259, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )
    ).eval()
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=8,
        text_embed_dim=32, num_layers=1, sample_width=4, sample_height=4, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=TEXT_LEN,
    )
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4, sample_height=32, sample_width=32,
    )
    # CogVideoX-2b's scheduler settings (scaled_linear, v-prediction, zero-SNR, trailing spacing)
    scheduler = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
        snr_shift_scale=3.0, timestep_spacing="trailing",
    )
    pipe = CogVideoXPipeline(
        tokenizer=byte_level_t5_tokenizer(), text_encoder=text_encoder, vae=vae,
        transformer=transformer, scheduler=scheduler,
    )
    pipe.save_pretrained(out)


def _build_clip(out: Path, seed: int) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(seed)
    tokenizer = byte_level_clip_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=256,  # byte tokens: the paper's prompts fit
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8,
        ),
        projection_dim=32,
    )
    CLIPModel(config).eval().save_pretrained(out)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


def build_tiny_checkpoint(root: str | Path, seed: int = 0) -> Path:
    """Writes ``root/cogvideox`` (diffusers CogVideoXPipeline) and ``root/clip`` (CLIPModel + CLIPProcessor).

    Built in a temporary sibling directory and renamed into place, so a crash leaves no
    half-written checkpoint. An existing ``root`` is left as it is.
    """
    root = Path(root)
    if (root / "richspace_tiny.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        _build_cogvideox(tmp / "cogvideox", seed)
        _build_clip(tmp / "clip", seed)
        (tmp / "richspace_tiny.json").write_text(json.dumps({"version": TINY_VERSION, "seed": seed}) + "\n")
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished first
            if not (root / "richspace_tiny.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def tiny_checkpoint(seed: int = 0) -> Path:
    """The tiny checkpoint's directory in the cache, built on first use (seconds on a CPU)."""
    return build_tiny_checkpoint(cache_root() / f"tiny-v{TINY_VERSION}-seed{seed}", seed)


if __name__ == "__main__":
    print(build_tiny_checkpoint(sys.argv[1]) if len(sys.argv) > 1 else tiny_checkpoint())
