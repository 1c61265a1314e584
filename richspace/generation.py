"""Generation: mixed videos through a frozen CogVideoX with Lightning's ``Trainer.predict``.

``MixDataModule`` validates the mix specs, caches the prompts' T5 embeddings once (rank 0,
in ``prepare_data``; T5 is freed afterwards) and yields one item per unfinished mix: the
embeddings of every method on the mix's own seed. ``MixVideoModule`` holds the frozen
CogVideoX (no T5: embeddings go in as ``prompt_embeds``, the negative one being the encoded
empty prompt, as the pipeline itself does) and a CLIP for the metrics. ``RunWriter`` writes
each mix's videos and record atomically as it finishes and, at the end, the results file,
the table and TensorBoard.

Methods per mix (DESIGN.md, "Measuring a mix"): ``guide`` (the guide prompt alone, the
paper's comparison), ``average`` (alpha = 0.5, what manual blending does), ``finder``
(the closed-form E_opt), ``refined`` (alpha from a refinement result file, ``alpha_from``)
and ``sweep_XX`` for chosen indices.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from richspace.encoding import check_weights
from richspace.finder import interpolate
from richspace.runs import mix_seed, read_record, remove_temporaries
from richspace.specs import SpecError, load_specs

REPO = Path(__file__).resolve().parents[1]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_weights(name: str, part: str) -> str:
    """'toy' -> the trained toy weights in the package; 'tiny' -> the built random tiny checkpoint;
    a local path must exist; anything else is a hub id."""
    if name == "toy":
        from richspace.toy import toy_weights

        return str(toy_weights() / part)
    if name == "tiny":
        from richspace.tiny import tiny_checkpoint

        return str(tiny_checkpoint() / part)
    return name


def check_sampling(pretrained: str, clip: str | None, dtype: str, num_frames: int, height: int, width: int) -> None:
    """One clear error for sampling settings CogVideoX cannot take (shared by generation and refinement)."""
    check_weights(pretrained, "CogVideoX")
    if clip is not None:
        check_weights(clip, "CLIP")
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype must be one of {list(DTYPES)}; got {dtype!r}")
    if num_frames < 1 or (num_frames - 1) % 4:
        raise ValueError(
            f"model.num_frames must be 4k+1 (CogVideoX's VAE compresses time 4x), e.g. 9, 13 or 49; got {num_frames}"
        )
    if height % 16 or width % 16 or height <= 0 or width <= 0:
        raise ValueError(f"model.height and model.width must be positive multiples of 16; got {height}x{width}")


def temporal_compression(pretrained: str) -> int:
    """How many frames the checkpoint's VAE folds into one latent frame: read from a local checkpoint's
    vae/config.json (the toy's VAE folds 2); 4, CogVideoX's, for a hub id."""
    config = Path(resolve_weights(pretrained, "cogvideox")) / "vae" / "config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("temporal_compression_ratio", 4))
    return 4


def load_frozen_pipeline(pretrained: str, dtype: str):
    """CogVideoXPipeline without T5 (embeddings come from the cache), transformer and VAE frozen, on the CPU."""
    from diffusers import CogVideoXPipeline

    pipe = CogVideoXPipeline.from_pretrained(
        resolve_weights(pretrained, "cogvideox"), text_encoder=None, tokenizer=None, dtype=DTYPES[dtype]
    )
    for part in (pipe.transformer, pipe.vae):
        part.requires_grad_(False).eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_refinement(path: str | Path) -> dict[str, dict]:
    """A refinement result file (written by train.py): {mix id: {"alpha": float, "coefficients": path?}}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        mixes = data["mixes"]
        assert isinstance(mixes, dict)
    except (OSError, ValueError, KeyError, AssertionError):
        raise ValueError(f"alpha_from: {path} is not a readable refinement result file (from train.py)") from None
    out = {}
    for mix_id, entry in mixes.items():
        item = {"alpha": float(entry["alpha"])}
        if entry.get("coefficients"):
            from safetensors.torch import load_file

            item["coefficients"] = load_file(path.parent / entry["coefficients"])["alpha"]
        out[mix_id] = item
    return out


class MixDataModule(L.LightningDataModule):
    """The mixes of a specs file, one predict item per unfinished mix."""

    def __init__(
        self,
        experiments: str = str(REPO / "configs" / "experiments" / "paper.yaml"),
        only: list[str] | None = None,
        run_dir: str = "runs/default",
        overwrite: bool = False,
        k: int = 30,
        scoring: str = "both",
        projection: str = "global",
        seed: int = 0,
        sweep: list[int] | None = None,
        alpha_from: str | None = None,
        pretrained: str = "tiny",
        max_sequence_length: int = 226,
        text_encoder_dtype: str = "float32",
        cache_dir: str | None = None,
    ) -> None:
        """
        Args:
            experiments: mix specs YAML.
            only: generate just these mix ids (their bases are still solved for chains).
            run_dir: where everything of the run goes (set with --run_dir).
            overwrite: redo mixes already complete in run_dir (set with --overwrite).
            k, scoring, projection: the finder's settings (paper: 30, both, global).
            seed: global seed; each mix's seed derives from it and the mix id.
            sweep: extra videos at these interpolation indices (0..k), named sweep_XX.
            alpha_from: a refinement result file from train.py: adds the ``refined`` method.
            pretrained: the CogVideoX checkpoint whose T5 encodes the prompts (linked from model.pretrained).
            max_sequence_length: text tokens (CogVideoX: 226; linked from the model).
            text_encoder_dtype: T5's dtype on a cache miss.
            cache_dir: embedding cache ($RICHSPACE_CACHE/embeddings by default).
        """
        super().__init__()
        self.save_hyperparameters()
        if not Path(experiments).exists() and (REPO / experiments).exists():
            experiments = str(REPO / experiments)  # configs name specs relative to the repository
        self.specs = load_specs(experiments)  # spec errors surface here, before any model loads
        ids = {s.id for s in self.specs}
        unknown = [i for i in (only or []) if i not in ids]
        if unknown:
            raise SpecError(f"{experiments}: data.only names unknown mix ids {unknown}; pick from {sorted(ids)}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"data.k must be an integer >= 1; got {k!r}")
        bad_sweep = [i for i in (sweep or []) if not 0 <= i <= k]
        if bad_sweep:
            raise ValueError(f"data.sweep indices must lie in 0..k={k}; got {bad_sweep}")
        if text_encoder_dtype not in DTYPES:
            raise ValueError(f"data.text_encoder_dtype must be one of {list(DTYPES)}; got {text_encoder_dtype!r}")
        for spec in self.specs:
            if "expect" in spec.meta:  # a toy mix's success criterion (richspace.toy.world.judge)
                from richspace.toy.world import check_expect

                try:
                    check_expect(spec.meta["expect"], f"{experiments}: mix '{spec.id}'")
                except ValueError as e:
                    raise SpecError(str(e)) from None
        self.refined = load_refinement(alpha_from) if alpha_from else {}
        self.only, self.run_dir, self.overwrite = only, Path(run_dir), overwrite
        self.k, self.scoring, self.projection, self.seed, self.sweep = k, scoring, projection, seed, list(sweep or [])
        self.pretrained, self.max_sequence_length = pretrained, max_sequence_length
        self.text_encoder_dtype, self.cache_dir = DTYPES[text_encoder_dtype], cache_dir
        self.items: list[dict] = []

    @property
    def selected(self) -> list[str]:
        """The ids to generate, in spec order."""
        return [s.id for s in self.specs if self.only is None or s.id in self.only]

    def _encoder(self, device: torch.device | str = "cpu"):
        from richspace.encoding import PromptEncoder

        return PromptEncoder(
            resolve_weights(self.pretrained, "cogvideox"), self.cache_dir, self.max_sequence_length, device,
            self.text_encoder_dtype,
        )

    def prepare_data(self) -> None:
        """Rank 0: clear a killed run's temporaries; encode every prompt into the cache, then free T5."""
        from richspace.mixing import prompts_of

        remove_temporaries(self.run_dir)
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        encoder = self._encoder(device)
        encoder(prompts_of(self.specs) + [""])
        encoder.release()

    def setup(self, stage: str) -> None:
        """Every rank: read the cached embeddings (T5 is not loaded), run the finder, build the items."""
        from richspace.mixing import find_mixes

        encoder = self._encoder()
        results = find_mixes(self.specs, encoder, self.k, self.scoring, self.projection)
        (negative,), _ = encoder([""])
        missing = [i for i in self.selected if self.refined and i not in self.refined]
        if missing:
            warnings.warn(f"alpha_from has no refined alpha for mixes {missing}; they get no 'refined' video")
        self.items = []
        for mix_id in self.selected:
            if not self.overwrite and read_record(self.run_dir, mix_id) is not None:
                continue  # finished in an earlier run
            self.items.append(self._item(results, mix_id, negative))

    def _item(self, results, mix_id: str, negative: Tensor) -> dict:
        r = results[mix_id]
        spec, e_a, e_b, e_guide = r.spec, r.e_a, r.e_b, r.e_guide
        methods = {"guide": e_guide, "average": interpolate(e_a, e_b, 0.5), "finder": r.embedding}
        alphas = {"guide": None, "average": 0.5, "finder": r.alpha}
        if mix_id in self.refined:
            ref = self.refined[mix_id]
            coeff = ref.get("coefficients")
            methods["refined"] = interpolate(e_a, e_b, coeff if coeff is not None else ref["alpha"])
            alphas["refined"] = ref["alpha"]
        for i in self.sweep:
            methods[f"sweep_{i:02d}"] = interpolate(e_a, e_b, i / self.k)
            alphas[f"sweep_{i:02d}"] = i / self.k
        # What CLIP compares against: a chained mix's A is its base mix, described by the base's guide.
        text_a = spec.a if spec.base is None else results[spec.base].spec.guide
        return {
            "id": mix_id,
            "seed": mix_seed(self.seed, mix_id),
            "index": r.index,
            "alpha": r.alpha,
            "n_ids": [*r.n_ids, int(r.found.n_ids)],
            "texts": {"a": text_a, "b": spec.b, "guide": spec.guide},
            "scores": {
                "full": r.found.scores_full.tolist(),
                "truncated": r.found.scores_truncated.tolist(),
                "sum": r.found.scores.tolist(),
            },
            "alphas": alphas,
            "embeddings": methods,
            "pair": {"e_a": e_a, "e_b": e_b},  # the line's ends (E_a may be a base mix's E_opt)
            "negative": negative,
            "meta": spec.meta,
        }

    def predict_dataloader(self) -> DataLoader:
        """This rank's share of the mixes: item i goes to rank i mod world size (a rank may get none).

        Sharded here rather than by Lightning's sampler, which refuses a rank with no item;
        infer.py runs the Trainer with use_distributed_sampler=False.
        """
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        return DataLoader(self.items[rank::world], batch_size=1, collate_fn=lambda batch: batch[0])


def to_uint8(frames: Tensor) -> Tensor:
    """(F, 3, H, W) floats in [0, 1] -> uint8."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8)


class MixVideoModule(L.LightningModule):
    """The frozen CogVideoX (transformer, VAE, scheduler; no T5) and a frozen CLIP for the metrics."""

    def __init__(
        self,
        pretrained: str = "tiny",
        clip: str | None = "tiny",
        dtype: str = "float32",
        num_frames: int = 49,
        height: int = 480,
        width: int = 720,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        fps: int = 8,
        max_sequence_length: int = 226,
        enable_model_cpu_offload: bool = False,
        enable_sequential_cpu_offload: bool = False,
        vae_tiling: bool = False,
        vae_slicing: bool = False,
        compile: bool = False,
        readout: bool = False,
    ) -> None:
        """
        Args:
            pretrained: CogVideoX weights: 'toy' (the trained toy world), 'tiny' (random), a hub id
                (THUDM/CogVideoX-2b, -5b) or a local directory.
            clip: CLIP for the metrics: 'toy', 'tiny', a hub id (openai/clip-vit-large-patch14), a local directory,
                or None for no metrics (videos only).
            dtype: transformer and VAE dtype: float32, bfloat16 (GPU default) or float16.
            num_frames, height, width, num_inference_steps, guidance_scale: as CogVideoXPipeline
                (defaults: 49 frames, 480x720, 50 steps, guidance 6).
            fps: frames per second of the written mp4s.
            max_sequence_length: text tokens the transformer takes (CogVideoX: 226).
            enable_model_cpu_offload, enable_sequential_cpu_offload: diffusers' offload (less GPU memory, slower).
            vae_tiling, vae_slicing: decode in tiles / one video at a time (less memory).
            compile: torch.compile the transformer.
            readout: read each video's attributes from its pixels (toy world only) and judge
                mixes whose spec has ``expect``: records get ``readouts`` and ``success``.
        """
        super().__init__()
        check_sampling(pretrained, clip, dtype, num_frames, height, width)
        if enable_model_cpu_offload and enable_sequential_cpu_offload:
            raise ValueError("choose one of model.enable_model_cpu_offload and model.enable_sequential_cpu_offload")
        self.save_hyperparameters()
        self.allow_zero_length_dataloader_with_multiple_devices = True  # more ranks than unfinished mixes
        self.pipe = None  # loaded in setup(), kept out of the module tree so offload can place it
        self.scorer = None

    def setup(self, stage: str) -> None:
        from richspace.metrics import VideoCLIPScorer

        hp = self.hparams
        pipe = load_frozen_pipeline(hp.pretrained, hp.dtype)
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        if hp.enable_sequential_cpu_offload:
            pipe.enable_sequential_cpu_offload(device=device)
        elif hp.enable_model_cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        if hp.vae_tiling:
            pipe.vae.enable_tiling()
        if hp.vae_slicing:
            pipe.vae.enable_slicing()
        if hp.compile:
            pipe.transformer = torch.compile(pipe.transformer)
        object.__setattr__(self, "pipe", pipe)  # not a submodule: Lightning must not move or wrap it
        self.scorer = VideoCLIPScorer(resolve_weights(hp.clip, "clip"), device) if hp.clip is not None else None

    def generate(self, prompt_embeds: Tensor, negative_prompt_embeds: Tensor, seed: int) -> Tensor:
        """One video, (F, 3, H, W) uint8 on the CPU, from (L, d) embeddings on a CPU generator's noise."""
        hp = self.hparams
        place = {"device": self.pipe._execution_device, "dtype": self.pipe.transformer.dtype}  # right under offload too
        out = self.pipe(
            prompt_embeds=prompt_embeds[None].to(**place),
            negative_prompt_embeds=negative_prompt_embeds[None].to(**place),
            num_frames=hp.num_frames,
            height=hp.height,
            width=hp.width,
            num_inference_steps=hp.num_inference_steps,
            guidance_scale=hp.guidance_scale,
            max_sequence_length=hp.max_sequence_length,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="pt",
        )
        return to_uint8(out.frames[0].float()).cpu()

    def predict_step(self, item: dict, batch_idx: int = 0) -> dict:
        videos, metrics, readouts, success = {}, {}, {}, {}
        texts, expect = item["texts"], item["meta"].get("expect")
        for method, embeds in item["embeddings"].items():
            videos[method] = self.generate(embeds, item["negative"], item["seed"])
            if self.scorer is not None:
                metrics[method] = self.scorer.video_metrics(videos[method], texts["a"], texts["b"], texts["guide"])
            if self.hparams.readout:
                from richspace.toy.world import judge, readout

                readouts[method] = readout(videos[method].numpy())
                if expect is not None:
                    success[method] = judge(expect, readouts[method])
        return {"videos": videos, "metrics": metrics, "readouts": readouts, "success": success}


def write_mp4(frames: Tensor, path: str, fps: int, crf: int = 18) -> None:
    """(F, 3, H, W) uint8 frames -> an H.264 mp4 (yuv420p, x264 preset veryfast) with PyAV, in process."""
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
