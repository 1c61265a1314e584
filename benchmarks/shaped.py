"""Random-weight checkpoints shaped like the real ones, saved as diffusers / transformers directories.

cogvideox/: the CogVideoX-2B transformer and VAE (diffusers' class defaults are the 2B config),
the 2B's DDIM scheduler, a one-layer T5 at the real width (4096) with the byte-level tokenizer.
clip/: a CLIPModel shaped like ViT-L/14 (vision 1024 x 24 layers, patch 14, 224 px; text 768 x 12)
with the byte-level CLIP tokenizer. ``small=True`` builds a few-layer version for CPU smoke runs.
Nothing is downloaded; the same seed gives the same weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from richspace.tiny import byte_level_clip_tokenizer, byte_level_t5_tokenizer  # noqa: E402


def build_shaped(out: Path, small: bool = False, device: str | None = None) -> Path:
    """Writes out/cogvideox and out/clip; returns out."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, T5Config, T5EncoderModel

    out = Path(out)
    device = device or ("cuda" if torch.cuda.is_available() and not small else "cpu")
    torch.manual_seed(0)
    width = 64 if small else 4096
    with torch.device(device):
        if small:
            transformer = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=16, num_layers=2,
                                                      text_embed_dim=width, sample_width=8, sample_height=8)
            vae = AutoencoderKLCogVideoX(block_out_channels=(16, 16, 16, 16), layers_per_block=1, norm_num_groups=4)
        else:  # CogVideoX-2B: 30 layers x 30 heads x 64, 16 latent channels, text 226 x 4096
            transformer, vae = CogVideoXTransformer3DModel(), AutoencoderKLCogVideoX()
        t5 = T5EncoderModel(T5Config(vocab_size=259, d_model=width, d_kv=64, d_ff=1024, num_layers=1, num_heads=8,
                                     feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                                     decoder_start_token_id=0))
    scheduler = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True, snr_shift_scale=3.0,
        timestep_spacing="trailing",
    )
    pipe = CogVideoXPipeline(tokenizer=byte_level_t5_tokenizer(), text_encoder=t5.to(torch.bfloat16),
                             vae=vae.to(torch.bfloat16), transformer=transformer.to(torch.bfloat16), scheduler=scheduler)
    pipe.save_pretrained(out / "cogvideox")
    del pipe, transformer, vae, t5
    tok = byte_level_clip_tokenizer()
    text = dict(vocab_size=len(tok), max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if small:
        text |= dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                      patch_size=14)
    else:
        text |= dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=224, patch_size=14)
    with torch.device(device):
        clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32 if small else 768))
    clip.to(torch.float32).eval().save_pretrained(out / "clip")
    size = vision["image_size"]
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
                  tokenizer=tok).save_pretrained(out / "clip")
    return out
