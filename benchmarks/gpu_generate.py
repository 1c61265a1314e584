"""Full-size CogVideoX-2B on a GPU: seconds per video and peak memory, ours against bare diffusers.

    python benchmarks/gpu_generate.py                          # bf16, 720x480, 49 frames, 50 steps
    python benchmarks/gpu_generate.py --steps 10 --variants plain,vae_tiling,model_offload,compile
    python benchmarks/gpu_generate.py --small                  # a 2-layer model at 64x64: a CPU smoke run

The transformer and VAE are built from CogVideoX-2B's published config (diffusers' class
defaults are that config) with random weights from a fixed seed: nothing is downloaded. They
are saved once to a temporary diffusers directory, so "ours" loads them exactly as a real
checkpoint (MixVideoModule.setup -> from_pretrained) and generates with MixVideoModule.generate;
"bare" is CogVideoXPipeline.__call__ on the same embeddings and seed. Each variant turns on
one of the module's memory options (or torch.compile); a warm-up call precedes each timing.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from richspace.generation import MixVideoModule  # noqa: E402

VARIANTS = {
    "plain": {},
    "vae_tiling": {"vae_tiling": True, "vae_slicing": True},
    "model_offload": {"enable_model_cpu_offload": True},
    "sequential_offload": {"enable_sequential_cpu_offload": True},
    "compile": {"compile": True},
}


def build(directory: str, small: bool) -> None:
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        if small:
            transformer = CogVideoXTransformer3DModel(num_attention_heads=4, attention_head_dim=16, num_layers=2,
                                                      sample_width=8, sample_height=8, sample_frames=9)
            vae = AutoencoderKLCogVideoX(block_out_channels=(16, 16, 16, 16), layers_per_block=1, norm_num_groups=4)
        else:  # CogVideoX-2B: 30 layers x 30 heads x 64, 16 latent channels, text 226 x 4096
            transformer, vae = CogVideoXTransformer3DModel(), AutoencoderKLCogVideoX()
    scheduler = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
        snr_shift_scale=3.0, timestep_spacing="trailing",
    )
    pipe = CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=vae.to(torch.bfloat16),
                             transformer=transformer.to(torch.bfloat16), scheduler=scheduler)
    pipe.save_pretrained(directory)


def measure(fn) -> tuple[float, float]:
    """Seconds and peak GPU memory (GiB; 0 on CPU) of one call."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    return time.perf_counter() - start, peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--frames", type=int, default=49)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=720)
    p.add_argument("--variants", default="plain,vae_tiling,model_offload,compile")
    p.add_argument("--small", action="store_true", help="tiny model at 64x64, 9 frames: checks the script on a CPU")
    args = p.parse_args()
    if args.small:
        args.frames, args.height, args.width = 9, 64, 64
    cuda = torch.cuda.is_available()
    settings = dict(num_frames=args.frames, height=args.height, width=args.width, num_inference_steps=args.steps,
                    guidance_scale=6.0)
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"gpu_generate: {'small' if args.small else 'CogVideoX-2B'} random weights, bf16, {args.width}x{args.height}, "
          f"{args.frames} frames, {args.steps} steps, guidance 6 | {device_name} | torch {torch.__version__}")
    print(f"{'variant':<20} {'path':<5} {'s/video':>9} {'peak GiB':>9}")
    with tempfile.TemporaryDirectory() as directory:
        build(directory, args.small)
        g = torch.Generator().manual_seed(0)
        embeds = torch.randn(1, 226, 4096, generator=g).to(torch.bfloat16)
        negative = torch.randn(1, 226, 4096, generator=g).to(torch.bfloat16)
        for name in args.variants.split(","):
            options = VARIANTS[name]
            if not cuda and ("offload" in name or name == "compile"):
                print(f"{name:<20} skipped: needs a GPU")
                continue
            module = MixVideoModule(pretrained=directory, clip=None, dtype="bfloat16", **settings, **options)
            module.setup("predict")
            warm = dict(settings, num_inference_steps=2)
            ours = lambda: module.generate(embeds[0], negative[0], seed=0)  # noqa: E731
            device = module.pipe._execution_device

            def bare(s=settings):
                return module.pipe(prompt_embeds=embeds.to(device), negative_prompt_embeds=negative.to(device),
                                   generator=torch.Generator().manual_seed(0), output_type="pt", **s)

            bare(warm)  # warm-up (compiles where compile is on)
            for path, fn in (("ours", ours), ("bare", bare)):
                seconds, peak = measure(fn)
                print(f"{name:<20} {path:<5} {seconds:9.2f} {peak:9.2f}")
            del module
            if cuda:
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
