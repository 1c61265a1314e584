"""The GPU check: full-size CogVideoX-2B paths on one GPU, with random weights shaped like the real ones.

    python benchmarks/gpu_check.py                  # one H100 or H200: about 11 minutes
    python benchmarks/gpu_check.py --skip_speed_options; python benchmarks/gpu_check.py --phases 7
                                                    # the same in two commands (about 8.5 and 2.5 minutes)
    python benchmarks/gpu_check.py --small          # the script itself on a CPU, tiny shapes (no GPU figure)

Phases (each prints its figures; any failure ends the check with exit code 1):
  1. build random weights shaped like CogVideoX-2B (transformer, VAE, T5 at width 4096) and CLIP ViT-L/14
     (benchmarks/shaped.py), on the GPU, into a temporary directory;
  2. sampler parity on the GPU: Sampler.generate against CogVideoXPipeline.__call__, and the differentiable
     path with K = T against the pipeline's output;
  3. generation: seconds per video and peak memory, ours (Sampler.generate) against bare diffusers, at
     720x480, 49 frames, --steps steps, plain and with VAE tiling; and infer.py's compose (three texts);
  4. refinement at the 2B config (480x720, 13 frames, 50 steps, 2 latent frames decoded, CLIP on frames
     0, 2, 4): a gradient step with K = 1 (goal: <= 10 s on an H100, <= 40 GB) and one evaluation of the
     shipped search mode for a candidate on the line and for a composed one, seconds and peak memory, and the
     composed one again with the reward D (the generator as a second judge, 15 options x 12 pairs);
  5. infer.py and train.py end to end through configs/cogvideox-2b.yaml and configs/refine-cogvideox-2b.yaml
     (one mix; infer.py at 10 steps, train.py the shipped search whole: the cost of a mix), timed, their
     outputs checked;
  6. the toy world (the embedded default, infer.py) on the GPU and on the CPU: do the pixel verdicts agree;
  7. generation speed options at 720x480x49: each diffusers cache hook and torch.compile against plain
     sampling (seconds, peak memory, pixel difference; --skip_speed_options leaves this out).
The figures go to --json after every phase (a check cut short keeps what it measured).
It fails loudly when a model that should be on the GPU is not, and refuses to run without a GPU unless
--small says this is a CPU smoke run (whose numbers are labelled as such).

On the lent GPU machine (torch, transformers, lightning, torchmetrics and tensorboard installed; not
diffusers, PyAV or jsonargparse; no network): carry those as wheels in .whl/ (Python 3.12, x86-64; the
set used here: diffusers 0.42.1, av 18.1.0, jsonargparse 4.53.0, docstring_parser 0.18.0, typeshed_client
2.15.0, importlib_metadata 10.2.0, lazy_importer 0.1.0; about 43 MB) and start with
    pip install --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site python benchmarks/gpu_check.py
On an H200 (2026-11-27) phases 1-6 took about 8.5 minutes and phase 7 about 2.5 (compile's first video 57 s),
so where a command may run 10 minutes, split it as above; with --json, what it measured before a cut-off is
kept, and --phases (with --speed_options for phase 7's variants) reruns what was left.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from shaped import build_shaped  # noqa: E402

from richspace.data import MixItem, MixTexts  # noqa: E402
from richspace.refinement import RefineModule  # noqa: E402
from richspace.runs import read_results  # noqa: E402
from richspace.sampler import CACHES, Sampler  # noqa: E402

SPEED_OPTIONS = (*CACHES, "compile")


def timed(fn, cuda: bool):
    """(result, seconds, peak GiB allocated; 0 on the CPU) of one call."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    return out, time.perf_counter() - start, (torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0)


def embeddings(width: int, n: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(226, width, generator=g) for _ in range(n)]


def parity(weights: Path, device: str, small: bool) -> dict:
    sampler = Sampler(str(weights / "cogvideox"), "bfloat16", num_frames=9, height=32 if small else 64,
                      width=32 if small else 64, num_inference_steps=4).load(device)
    sampler.check_placed(device)
    embeds, negative = embeddings(sampler.pipe.transformer.config.text_embed_dim, 2)
    with torch.no_grad():
        out = sampler.pipe(prompt_embeds=embeds[None].to(device, torch.bfloat16),
                           negative_prompt_embeds=negative[None].to(device, torch.bfloat16),
                           num_frames=9, height=sampler.height, width=sampler.width, num_inference_steps=4,
                           guidance_scale=6.0, generator=torch.Generator().manual_seed(1), output_type="pt").frames[0]
        ours = sampler.generate(embeds, negative, 1)
    leaf = embeds.clone().requires_grad_(True)
    tail = sampler.sample(leaf, negative, 1, grad_steps=4)
    tail.float().mean().backward()
    expected = (out.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    return {"generate_bitwise": bool(torch.equal(ours, expected)),
            "tail_max_abs_diff": float((tail.detach().float() - out.float()).abs().max()),
            "tail_grad_finite": bool(torch.isfinite(leaf.grad).all())}


def video_size(small: bool) -> dict:
    """The generation benchmarks' video: diffusers' default for CogVideoX (720x480, 49 frames), tiny with --small."""
    return dict(num_frames=9, height=32, width=32) if small else dict(num_frames=49, height=480, width=720)


def generation(weights: Path, device: str, small: bool, steps: int) -> dict:
    cuda = device == "cuda"
    size = video_size(small)
    results = {}
    for name, options in (("plain", {}), ("vae_tiling", {"vae_tiling": True, "vae_slicing": True})):
        sampler = Sampler(str(weights / "cogvideox"), "bfloat16", num_inference_steps=steps, **size, **options)
        sampler.load(device).check_placed(device)
        embeds, negative = embeddings(sampler.pipe.transformer.config.text_embed_dim, 2)
        settings = dict(num_frames=sampler.num_frames, height=sampler.height, width=sampler.width, guidance_scale=6.0)

        def bare(n=steps):
            return sampler.pipe(prompt_embeds=embeds[None].to(device, torch.bfloat16),
                                negative_prompt_embeds=negative[None].to(device, torch.bfloat16),
                                num_inference_steps=n, generator=torch.Generator().manual_seed(0), output_type="pt",
                                **settings)

        bare(2)  # warm-up
        _, ours_s, ours_gb = timed(lambda: sampler.generate(embeds, negative, 0), cuda)
        _, bare_s, bare_gb = timed(bare, cuda)
        results[name] = {"ours_s": ours_s, "bare_s": bare_s, "ratio": ours_s / bare_s, "peak_gib": max(ours_gb, bare_gb)}
        if name == "plain":  # infer.py's compose: the mixed text, A and B in one batch of four a step
            texts = torch.stack(embeddings(sampler.pipe.transformer.config.text_embed_dim, 3, seed=1))
            _, compose_s, compose_gb = timed(
                lambda: sampler.generate(texts, negative, 0, weights=torch.tensor([3.0, 1.5, 1.5])), cuda)
            results[name] |= {"compose_s": compose_s, "compose_peak_gib": compose_gb}
        sampler = bare = None  # frees the pipeline before the next variant loads
        if cuda:
            torch.cuda.empty_cache()
    return results


def refinement(weights: Path, device: str, small: bool, steps: int = 2) -> dict:
    cuda = device == "cuda"
    size = dict(num_frames=9, height=32, width=32, num_inference_steps=4) if small else \
        dict(num_frames=13, height=480, width=720, num_inference_steps=50)
    sampler = Sampler(str(weights / "cogvideox"), "bfloat16", gradient_checkpointing=True, **size)
    module = RefineModule(sampler, clip=str(weights / "clip"), grad_steps=1, decode_latent_frames=2,
                          clip_frames=[0, 2, 4], autocast="bfloat16")
    module.load_models(device)
    sampler.check_placed(device)
    if next(module.judge.parameters()).device.type != torch.device(device).type:
        raise RuntimeError(f"the judge (CLIP) is not on {device}")
    e_a, e_b, negative = embeddings(sampler.pipe.transformer.config.text_embed_dim)
    item = MixItem(id="check", seed=0, index=15, alpha=0.5, n_ids=[10, 10, 10, 10],
                   texts=MixTexts("a tiger", "a zebra", "a tiger with zebra stripes"), scores={},
                   embeddings={}, alphas={}, e_a=e_a, e_b=e_b, e_guide=e_a, negative=negative)
    alpha = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64, device=device))
    optimizer = torch.optim.Adam([alpha], lr=0.05)

    def step():
        optimizer.zero_grad()
        terms, _ = module.objective(item, alpha)
        (-terms["objective"]).backward()
        optimizer.step()
        return float(terms["objective"].detach())

    timed(step, cuda)  # warm-up
    seconds, peak = [], 0.0
    for _ in range(steps):
        _, s, gb = timed(step, cuda)
        seconds.append(s)
        peak = max(peak, gb)
    # The shipped config's mode: gradient-free search, one sampling per evaluation: a candidate on the line or off
    # it (the text and the negative: two transformer passes a step) and a composed one (the mixed text, A and B:
    # four passes a step).
    module.hparams.mode, module.composed = "search", True
    out = {"s_per_step": statistics.median_high(seconds), "peak_gib": peak,
           "grad_finite": bool(torch.isfinite(alpha).all())}
    thetas = {name: torch.tensor(values, dtype=torch.float64, device=device)
              for name, values in (("line", [0.5, 0.0, 6.0, 0.0, 0.0, 0.0]),
                                   ("composed", [0.5, 0.0, 3.0, 1.5, 1.5, 0.0]))}
    for name, theta in thetas.items():

        def evaluate():
            with torch.no_grad():
                return float(module.objective(item, theta)[0]["objective"])

        timed(evaluate, cuda)
        evaluations = [timed(evaluate, cuda) for _ in range(steps)]
        out |= {f"s_per_{name}_evaluation": statistics.median_high(e[1] for e in evaluations),
                f"{name}_evaluation_peak_gib": max(e[2] for e in evaluations)}
    out |= denoise_cost(module, item, thetas["composed"], device, steps)
    return out


def denoise_cost(module: RefineModule, item: MixItem, theta: torch.Tensor, device: str, steps: int) -> dict:
    """The reward D's cost at this size: a composed evaluation with D on (the toy's shipped setting, w_denoise 1 and
    ``model.denoise_pairs``), over 15 query options as in a toy stripes mix (6 colours, 2 patterns, 3 shapes, 4
    directions): the sample, then one VAE encode and 15 x pairs transformer rows on the decoded frames."""
    cuda = device == "cuda"
    sizes = (6, 2, 3, 4)
    queries = [{"options": [f"option {q}.{o}" for o in range(n)], "want": [0]} for q, n in enumerate(sizes)]
    width = module.sampler.pipe.transformer.config.text_embed_dim
    options = torch.stack(embeddings(width, sum(sizes), seed=1))
    item = replace(item, meta={"queries": queries}, option_embeds=options)
    module.weights = replace(module.weights, w_denoise=1.0)

    def evaluate():
        with torch.no_grad():
            terms = module.objective(item, theta)[0]
            return float(terms["objective"]), float(terms["denoise"])

    timed(evaluate, cuda)
    evaluations = [timed(evaluate, cuda) for _ in range(steps)]
    if not all(math.isfinite(e[0][0]) and math.isfinite(e[0][1]) and e[0][1] != 0 for e in evaluations):
        raise RuntimeError(f"the reward D is not finite or not computed: {[e[0] for e in evaluations]}")
    return {"s_per_composed_evaluation_with_denoise": statistics.median_high(e[1] for e in evaluations),
            "composed_evaluation_with_denoise_peak_gib": max(e[2] for e in evaluations),
            "denoise_rows": sum(sizes) * module.hparams.denoise_pairs}


def run_script(name: str, command: list[str], work: Path) -> float:
    """Runs an entry script offline (its embedding cache under ``work``); its wall seconds, or raises with its
    error output."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "RICHSPACE_CACHE": str(work / "cache"), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return time.perf_counter() - start


def end_to_end(weights: Path, work: Path, small: bool) -> dict:
    common = ["--sampler.pretrained", str(weights / "cogvideox"), "--model.clip", str(weights / "clip"),
              "--sampler.dtype", "bfloat16", "--data.only", "[tiger-zebra]", "--data.text_encoder_dtype", "bfloat16"]
    if small:
        common += ["--trainer.accelerator", "cpu", "--sampler.num_frames", "9", "--sampler.height", "32",
                   "--sampler.width", "32"]
    runs = {
        "infer.py": [sys.executable, str(ROOT / "infer.py"), "--config", str(ROOT / "configs" / "cogvideox-2b.yaml"),
                     "--run_dir", str(work / "infer"), "--sampler.num_inference_steps", "2" if small else "10", *common],
        "train.py": [sys.executable, str(ROOT / "train.py"), "--config",
                     str(ROOT / "configs" / "refine-cogvideox-2b.yaml"), "--run_dir", str(work / "train"),
                     *(["--model.steps", "2", "--sampler.num_inference_steps", "4"] if small else []), *common],
    }
    out = {name: {"wall_s": run_script(name, command, work)} for name, command in runs.items()}
    rows = read_results(work / "infer")
    assert len(rows) == 1 and set(rows[0]["videos"]) == {"guide", "average", "finder", "compose"}, rows
    refined = json.loads((work / "train" / "refinement.json").read_text())["mixes"]
    assert set(refined) == {"tiger-zebra"} and len(refined["tiger-zebra"]["trajectory"]) >= 3, refined
    mix = refined["tiger-zebra"]  # the shipped search, whole: the cost of one mix
    out["train.py"] |= {"evaluations": len(mix["trajectory"]), "mix_s": mix["seconds"],
                        "evaluation_s": [round(h["seconds"], 2) for h in mix["trajectory"]]}
    return out


def speed_options(weights: Path, device: str, small: bool, steps: int, results: dict, variants: tuple[str, ...],
                  record=lambda: None) -> dict:
    """Generation with each of diffusers' cache hooks and with torch.compile, against plain sampling, on the same
    embeddings and noise: seconds a video (after a warm-up video; compile's first includes compiling), peak memory,
    and the largest pixel difference from plain's video (random weights: how far a hook strays, not its quality)."""
    cuda = device == "cuda"
    size = video_size(small)
    reference = None
    for name in ("plain", *variants):  # plain first: the reference
        options = {"plain": {}, "compile": {"compile": True}}.get(name, {"cache": name})
        try:
            sampler = Sampler(str(weights / "cogvideox"), "bfloat16", num_inference_steps=steps, **size, **options)
            sampler.load(device).check_placed(device)
            embeds, negative = embeddings(sampler.pipe.transformer.config.text_embed_dim, 2)
            _, first_s, _ = timed(lambda: sampler.generate(embeds, negative, 0), cuda)
            video, seconds, peak = timed(lambda: sampler.generate(embeds, negative, 0), cuda)
        except Exception as e:  # a variant that fails is a finding: reported, and the check fails at its end
            results[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
            continue
        finally:
            sampler = None
            free(device)
        reference = video if reference is None else reference
        plain = results.get("plain", {}).get("s", seconds)
        results[name] = {"s": seconds, "first_s": first_s, "peak_gib": peak, "speedup_vs_plain": plain / seconds,
                         "max_abs_diff_vs_plain": int((video.int() - reference.int()).abs().max())}
        record()
    return results


def toy_on_gpu(work: Path, device: str) -> dict:
    """The embedded default (configs/toy.yaml, the toy world's weights) through infer.py on this device and on
    the CPU: wall seconds, and how many of the pixel verdicts (per mix and method) agree."""
    verdicts, out = {}, {}
    for accelerator in (("gpu", "cpu") if device == "cuda" else ("cpu",)):
        run_dir = work / f"toy-{accelerator}"
        out[f"{accelerator}_s"] = run_script(f"infer.py (toy, {accelerator})", [
            sys.executable, str(ROOT / "infer.py"), "--run_dir", str(run_dir), "--trainer.accelerator", accelerator],
            work)
        rows = read_results(run_dir)
        verdicts[accelerator] = {(r["id"], m): v["success"] for r in rows for m, v in r["success"].items()}
    cpu = verdicts["cpu"]
    other = verdicts.get("gpu", cpu)
    out |= {"verdicts": len(cpu), "agree": sum(other.get(k) == v for k, v in cpu.items()),
            "successes_gpu": sum(other.values()), "successes_cpu": sum(cpu.values())}
    return out


def free(device: str) -> None:
    """Return the memory cached by this process's allocator to the GPU."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="tiny shapes on the CPU: checks the script, no GPU figure")
    p.add_argument("--steps", type=int, default=10, help="denoising steps of the generation benchmark")
    p.add_argument("--json", default=None, help="also write the figures here (after every phase)")
    p.add_argument("--skip_speed_options", action="store_true", help="leave out phase 7 (cache hooks, compile)")
    p.add_argument("--phases", default="2,3,4,5,6,7",
                   help="comma-separated phases to run after building the weights (phase 1), e.g. 7 to rerun a "
                        "phase that a cut-off left unfinished")
    p.add_argument("--speed_options", default=None,
                   help="comma-separated phase-7 variants besides plain (default: every cache hook and compile)")
    args = p.parse_args(argv)
    try:
        phases = {int(n) for n in args.phases.split(",")}
    except ValueError:
        p.error(f"--phases takes comma-separated numbers 2-7, got {args.phases!r}")
    if not phases <= set(range(2, 8)):
        p.error(f"--phases takes numbers 2-7 (phase 1 always runs), got {args.phases!r}")
    if args.skip_speed_options:
        phases.discard(7)
    variants = SPEED_OPTIONS if args.speed_options is None else tuple(args.speed_options.split(","))
    if not set(variants) <= set(SPEED_OPTIONS):
        p.error(f"--speed_options takes some of {','.join(SPEED_OPTIONS)}, got {args.speed_options!r}")
    cuda = torch.cuda.is_available()
    if not cuda and not args.small:
        print("error: no CUDA GPU is visible; this check reports GPU figures only (--small runs it on the CPU "
              "at tiny sizes, labelled as such)", file=sys.stderr)
        raise SystemExit(2)
    device = "cpu" if args.small else "cuda"
    card = torch.cuda.get_device_name() if device == "cuda" else "CPU smoke run (not a GPU figure)"
    print(f"gpu_check | {card} | torch {torch.__version__}", flush=True)
    figures = {"device": card, "torch": torch.__version__}
    start = time.perf_counter()

    def record():  # after every phase: a check cut short still leaves its figures
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _, seconds, _ = timed(lambda: build_shaped(work / "weights", small=args.small, device=device), device == "cuda")
        print(f"1. shaped weights built in {seconds:.1f} s", flush=True)
        if 2 in phases:
            figures["parity"] = parity(work / "weights", device, args.small)
            print(f"2. parity: {figures['parity']}", flush=True)
            record()
            if not figures["parity"]["generate_bitwise"]:
                raise SystemExit("FAIL: Sampler.generate differs from CogVideoXPipeline.__call__")
            if figures["parity"]["tail_max_abs_diff"] > 2 / 255:
                raise SystemExit("FAIL: the differentiable path (K = T) differs from the pipeline's output")
        if 3 in phases:
            figures["generation"] = generation(work / "weights", device, args.small, 2 if args.small else args.steps)
            for name, r in figures["generation"].items():
                print(f"3. generation {name:<10} ours {r['ours_s']:7.2f} s/video  bare {r['bare_s']:7.2f} s/video  "
                      f"ours/bare {r['ratio']:.3f}  peak {r['peak_gib']:6.2f} GiB", flush=True)
            r = figures["generation"]["plain"]
            print(f"3. generation compose    ours {r['compose_s']:7.2f} s/video (mixed text, A and B)  "
                  f"peak {r['compose_peak_gib']:6.2f} GiB", flush=True)
            record()
        if 4 in phases:
            figures["refinement"] = refinement(work / "weights", device, args.small)
            r = figures["refinement"]
            print(f"4. refinement step {r['s_per_step']:7.2f} s/step  peak {r['peak_gib']:6.2f} GiB (gradient, K = 1); "
                  f"search evaluation on the line {r['s_per_line_evaluation']:7.2f} s  peak "
                  f"{r['line_evaluation_peak_gib']:6.2f} GiB, composed {r['s_per_composed_evaluation']:7.2f} s  peak "
                  f"{r['composed_evaluation_peak_gib']:6.2f} GiB", flush=True)
            print(f"4. with the reward D ({r['denoise_rows']} transformer rows) composed "
                  f"{r['s_per_composed_evaluation_with_denoise']:7.2f} s  peak "
                  f"{r['composed_evaluation_with_denoise_peak_gib']:6.2f} GiB", flush=True)
            record()
        free(device)  # the subprocesses below need the GPU memory this process's allocator still holds
        if 5 in phases:
            figures["end_to_end"] = end_to_end(work / "weights", work, args.small)
            e = figures["end_to_end"]
            print(f"5. end to end: infer.py {e['infer.py']['wall_s']:.1f} s, train.py {e['train.py']['wall_s']:.1f} s; "
                  f"the shipped search on one mix: {e['train.py']['evaluations']} evaluations, "
                  f"{e['train.py']['mix_s']:.1f} s ({e['train.py']['evaluation_s']})", flush=True)
            record()
        if 6 in phases:
            figures["toy"] = toy_on_gpu(work, device)
            t = figures["toy"]
            print(f"6. toy world (infer.py default): {t['agree']} of {t['verdicts']} verdicts agree with the CPU's; "
                  f"successes {t['successes_gpu']} here, {t['successes_cpu']} on the CPU; "
                  + ", ".join(f"{k} {v:.1f}" for k, v in t.items() if k.endswith("_s")), flush=True)
            record()
        if 7 in phases:
            figures["speed_options"] = {}
            speed_options(work / "weights", device, args.small, 2 if args.small else args.steps,
                          figures["speed_options"], variants, record)
            for name, r in figures["speed_options"].items():
                print(f"7. speed option {name:<28} " + (r["error"] if "error" in r else
                      f"{r['s']:7.2f} s/video (first {r['first_s']:6.1f} s)  x{r['speedup_vs_plain']:.2f} of plain  "
                      f"peak {r['peak_gib']:6.2f} GiB  max |diff| {r['max_abs_diff_vs_plain']}"), flush=True)
    figures["total_s"] = time.perf_counter() - start
    record()
    failed = [name for name, r in figures.get("speed_options", {}).items() if "error" in r]
    if failed:
        raise SystemExit(f"FAIL: speed options {failed} failed (figures above)")
    print(f"gpu_check passed in {figures['total_s']:.0f} s on {card}")


if __name__ == "__main__":
    main()
