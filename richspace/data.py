"""The mixes as Lightning data: validated specs, cached embeddings, the finder, one typed item per mix.

``MixDataModule`` validates the mix specs, caches the prompts' T5 embeddings once (rank 0,
in ``prepare_data``; T5 is freed afterwards), runs the closed-form finder on every rank
(``setup``) and yields one ``MixItem`` per unfinished mix: the embeddings of every method on
the mix's own seed. Ranks take every world-size-th item, with no sampler and no
communication, so a rank may get none. ``MixVideos`` is what a module makes of an item.

Methods per mix (docs/design.md, "Measuring a mix"): ``guide`` (the guide prompt alone, the
paper's comparison), ``average`` (alpha = 0.5, what manual blending does), ``finder`` (the
closed-form E_opt), ``compose`` (A and B composed while sampling, untuned weights:
richspace.conditioning), ``refined`` (the mixing parameters of a refinement result file,
``alpha_from``), ``learned`` (the parameters a trained predictor gives, ``learned_from``) and
``sweep_XX`` for chosen indices.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from richspace.conditioning import COMPOSE_WEIGHT, MixParams, active, conditioning, offset_direction
from richspace.finder import interpolate
from richspace.runs import mix_seed, read_record, remove_temporaries
from richspace.specs import SpecError, load_specs
from richspace.weights import check_dtype, resolve_weights

REPO = Path(__file__).resolve().parents[1]


@dataclass
class MixTexts:
    """What CLIP compares a video against: A (a chained mix's base, described by its guide), B and the guide."""

    a: str
    b: str
    guide: str


@dataclass
class MixItem:
    """One mix, ready to sample: the line's ends, every method's embedding and the finder's curves."""

    id: str
    seed: int  # the mix's own noise: from the global seed and its id
    index: int  # the finder's index i in 0..k
    alpha: float  # the finder's alpha = i / k (weight on A)
    n_ids: list[int]  # token counts: A (or the base's), B, guide, rows kept
    texts: MixTexts
    scores: dict[str, list[float]]  # the finder's curves: full, truncated, sum (k + 1 values each)
    embeddings: dict[str, Tensor]  # method -> (L, d), or (n, L, d) texts for a method in ``weights``
    alphas: dict[str, float | None]  # method -> its alpha on the line (None: the guide prompt)
    e_a: Tensor  # (L, d) the line's ends (E_a may be a base mix's E_opt) and the guide
    e_b: Tensor
    e_guide: Tensor
    negative: Tensor  # (L, d) the encoded empty prompt
    meta: dict = field(default_factory=dict)  # the spec's extra keys (a toy mix's ``expect``, ...)
    weights: dict[str, Tensor] = field(default_factory=dict)  # method -> (n,) composition weights (sampled composed)
    option_embeds: Tensor | None = None  # (n, L, d) every query option's text, in ``meta["queries"]`` order (refinement)
    e_contrast: Tensor | None = None  # (L, d) the spec's contrast prompt (richspace.conditioning), where it has one


@dataclass
class MixVideos:
    """What generation makes of a mix: per method a video and its measures."""

    videos: dict[str, Tensor]  # method -> (F, 3, H, W) uint8
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> CLIP numbers
    readouts: dict[str, dict] = field(default_factory=dict)  # method -> attributes read from pixels (plug-ins)
    success: dict[str, dict] = field(default_factory=dict)  # method -> verdicts on the mix's expected facts


def load_refinement(path: str | Path) -> dict[str, dict]:
    """A refinement result file (written by train.py): {mix id: {"params": MixParams, "coefficients": tensor?}}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        mixes = data["mixes"]
        assert isinstance(mixes, dict)
        out = {}
        for mix_id, entry in mixes.items():
            params = MixParams.from_dict(entry["params"]) if "params" in entry else MixParams(float(entry["alpha"]))
            item = {"params": params}
            if entry.get("coefficients"):
                from safetensors.torch import load_file

                item["coefficients"] = load_file(path.parent / entry["coefficients"])["alpha"]
            out[mix_id] = item
    except (OSError, ValueError, KeyError, AssertionError, TypeError):
        raise ValueError(f"alpha_from: {path} is not a readable refinement result file (from train.py)") from None
    return out


class MixDataModule(L.LightningDataModule):
    """The mixes of a specs file, one item per unfinished mix."""

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
        learned_from: str | None = None,
        compose: float | None = COMPOSE_WEIGHT,
        pretrained: str = "tiny",
        max_sequence_length: int = 226,
        guidance_scale: float = 6.0,
        text_encoder_dtype: str = "float32",
        cache_dir: str | None = None,
    ) -> None:
        """
        Args:
            experiments: mix specs YAML.
            only: these mix ids only (their bases are still solved for chains).
            run_dir: where everything of the run goes (set with --run_dir).
            overwrite: redo mixes already complete in run_dir (set with --overwrite).
            k, scoring, projection: the finder's settings (paper: 30, both, global).
            seed: global seed; each mix's seed derives from it and the mix id.
            sweep: extra videos at these interpolation indices (0..k), named sweep_XX.
            alpha_from: a refinement result file from train.py: adds the ``refined`` method.
            learned_from: a trained mixing-parameter predictor (richspace.learned): adds the ``learned`` method.
            compose: the weight of A and of B in the untuned ``compose`` method; null: no ``compose`` video.
            pretrained: the CogVideoX checkpoint whose T5 encodes the prompts (linked from sampler.pretrained).
            max_sequence_length: text tokens (CogVideoX: 226; linked from the sampler).
            guidance_scale: the sampler's guidance (linked): the weight of the mixed text in a composed method.
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
        self.refined = load_refinement(alpha_from) if alpha_from else {}
        if self.refined and not any(i in self.refined for i in (only or ids)):
            raise SpecError(f"{alpha_from} refined none of these mixes (it holds {sorted(self.refined)[:3]}...): give "
                            f"the refinement of {experiments} (train.py --experiments), or drop data.alpha_from")
        if compose is not None and compose < 0:
            raise ValueError(f"data.compose must be null or a weight >= 0; got {compose}")
        self.compose = compose
        self.predictor = None
        if learned_from:
            from richspace.learned import load_predictor

            self.predictor = load_predictor(learned_from)
        self.only, self.run_dir, self.overwrite = only, Path(run_dir), overwrite
        self.k, self.scoring, self.projection, self.seed, self.sweep = k, scoring, projection, seed, list(sweep or [])
        self.pretrained, self.max_sequence_length, self.guidance_scale = pretrained, max_sequence_length, guidance_scale
        self.text_encoder_dtype, self.cache_dir = check_dtype(text_encoder_dtype, "data.text_encoder_dtype"), cache_dir
        self.items: list[MixItem] = []

    @property
    def selected(self) -> list[str]:
        """The ids to process, in spec order."""
        return [s.id for s in self.specs if self.only is None or s.id in self.only]

    def finished(self, mix_id: str) -> bool:
        """Whether an earlier run in run_dir completed the mix (its record is whole)."""
        return read_record(self.run_dir, mix_id) is not None

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
        """Every rank: read the cached embeddings (T5 is not loaded), run the finder, build the items.

        A mix the finder cannot solve (A and B encode alike, say) is a SpecError naming the mix.
        """
        from richspace.mixing import find_mixes

        encoder = self._encoder()
        try:
            results = find_mixes(self.specs, encoder, self.k, self.scoring, self.projection)
        except ValueError as e:
            raise SpecError(f"{self.hparams.experiments}: {e}") from None
        (negative,), _ = encoder([""])
        missing = [i for i in self.selected if self.refined and i not in self.refined]
        if missing:
            warnings.warn(f"alpha_from has no refined alpha for mixes {missing}; they get no 'refined' video")
        self.items = [
            self._item(results, mix_id, negative)
            for mix_id in self.selected
            if self.overwrite or not self.finished(mix_id)
        ]

    def _item(self, results, mix_id: str, negative: Tensor) -> MixItem:
        r = results[mix_id]
        spec, e_a, e_b = r.spec, r.e_a, r.e_b
        embeddings = {"guide": r.e_guide, "average": interpolate(e_a, e_b, 0.5), "finder": r.embedding}
        alphas = {"guide": None, "average": 0.5, "finder": r.alpha}
        weights, chosen = {}, {}
        if self.compose is not None:
            chosen["compose"] = MixParams.compose(self.compose)
        if mix_id in self.refined:
            chosen["refined"] = self.refined[mix_id]["params"]
        if self.predictor is not None:
            chosen["learned"] = self.predictor.predict(r)
        direction = offset_direction(e_a, e_b, r.e_guide)
        for method, p in chosen.items():
            alphas[method] = None if method == "compose" else p.alpha
            coeff = self.refined[mix_id].get("coefficients") if method == "refined" else None
            theta = p.vector(guidance=self.guidance_scale)
            texts, w = conditioning(e_a, e_b, direction, theta, None if coeff is None else coeff.to(e_a.dtype),
                                    r.e_contrast)
            if p.on_line:
                embeddings[method] = texts[0]
            else:  # composed while sampling: the texts with a non-zero weight
                embeddings[method], weights[method] = active(texts, w)
        for i in self.sweep:
            embeddings[f"sweep_{i:02d}"] = interpolate(e_a, e_b, i / self.k)
            alphas[f"sweep_{i:02d}"] = i / self.k
        text_a = spec.a if spec.base is None else results[spec.base].spec.guide
        found = r.found
        return MixItem(
            id=mix_id, seed=mix_seed(self.seed, mix_id), index=r.index, alpha=r.alpha,
            n_ids=[*r.n_ids, int(found.n_ids)], texts=MixTexts(text_a, spec.b, spec.guide),
            scores={"full": found.scores_full.tolist(), "truncated": found.scores_truncated.tolist(),
                    "sum": found.scores.tolist()},
            embeddings=embeddings, alphas=alphas, e_a=e_a, e_b=e_b, e_guide=r.e_guide, negative=negative,
            meta=dict(spec.meta), weights=weights, e_contrast=r.e_contrast,
        )

    def predict_dataloader(self) -> DataLoader:
        """This rank's share of the mixes: item i goes to rank i mod world size (a rank may get none).

        Sharded here rather than by Lightning's sampler, which refuses a rank with no item; the
        entry scripts run the Trainer with use_distributed_sampler=False.
        """
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        return DataLoader(self.items[rank::world], batch_size=1, collate_fn=lambda batch: batch[0])
