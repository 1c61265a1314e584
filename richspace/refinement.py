"""Refinement (train.py): each mix's mixing parameters chosen against the judge's reward.

The closed-form finder's alpha is the starting point and the baseline. A mix's parameters (``model.params``,
richspace.conditioning) are alpha on the A-B line, an offset towards the guide off the line, and the weights of
composable guidance over the mixed text, A and B. With the mix's own noise (its seed, as infer.py uses, then
+ 1 up to ``noise_samples``), their objective is richspace.objective's: ``w_guide * S_G + w_balance *
softmin_T(S_A, S_B) + w_queries * Q + w_denoise * D - w_anchor * (alpha - alpha_0)^2``, Q the per-attribute
reward of the judge and D the same queries asked of the frozen generator (``Sampler.denoising_errors``).

Two modes. ``search`` (gradient-free): the start, each point of ``model.grid``, then ``model.steps`` pattern
moves; one sampling per evaluation; with ``model.prior_from`` a predictor learned across mixes
(richspace.learned) weighs in on the candidate kept. ``gradient``: Adam on the parameters, the sampler running
the first T - K denoising steps without gradients and the last K (K = T by default: the exact gradient), the
decode of a subset of latent frames and the judge with them. Only the parameters move; every weight is frozen.

It runs on generation's rails: ``Trainer.predict`` (with ``inference_mode=False``) over the
same sharded items as infer.py, one item per mix, each refined to the end by the rank that
owns it. After every step or evaluation the mix's state (parameters, Adam's state, history, best,
frames) is written atomically to ``RUN_DIR/refine/<id>/state.pt``; a killed run started again
continues each mix from its last state, and reproduces the uninterrupted trajectory. After
predict, rank 0 merges the states from disk into ``refinement.json``. No collectives, no
custom strategy: the same ``--trainer`` flags work as for infer.py.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from richspace.data import MixDataModule, MixItem
from richspace.conditioning import PARAMS, MixParams, active, conditioning, offset_direction, on_base
from richspace.objective import ObjectiveWeights, objective_terms, parse_queries, query_reward
from richspace.runs import atomic_write, atomic_write_text
from richspace.sampler import Sampler
from richspace.video import to_uint8
from richspace.weights import DTYPES, check_weights, resolve_weights

TERMS = ("objective", "clip_guide", "clip_a", "clip_b", "balance", "queries", "denoise", "anchor")


# ---------------------------------------------------------------- a mix's state on disk
@dataclass
class RefineState:
    """One mix's refinement after ``step`` steps: all that is needed to continue it exactly."""

    alpha_0: float  # the closed-form start
    coefficients: Tensor  # (6,) theta (richspace.conditioning.PARAMS) or per-token alpha (L,), float64
    step: int = 0
    optimizer: dict = field(default_factory=dict)  # Adam's state_dict ({} before the first step)
    history: list[dict] = field(default_factory=list)  # per step: alpha, objective and its terms
    best: dict = field(default_factory=dict)  # {"objective", "coefficients", "step"} of the best iterate
    frames: dict[int, Tensor] = field(default_factory=dict)  # step -> (F, 3, H, W) uint8 snapshots
    done: bool = False  # the last coefficients were scored too: nothing left to do


def state_path(run_dir: Path, mix_id: str) -> Path:
    return Path(run_dir) / "refine" / mix_id / "state.pt"


def save_state(path: Path, state: RefineState) -> None:
    atomic_write(path, lambda tmp: torch.save(asdict(state), tmp))


def load_state(path: Path) -> RefineState | None:
    """A mix's saved state, or None where there is none (tensors and plain types only: weights_only)."""
    if not path.is_file():
        return None
    return RefineState(**torch.load(path, weights_only=True))


# ---------------------------------------------------------------- data
class RefineDataModule(MixDataModule):
    """The mixes to refine: a mix is finished when its saved state says so; --overwrite starts every mix again."""

    def finished(self, mix_id: str) -> bool:
        state = load_state(state_path(self.run_dir, mix_id))
        return state is not None and state.done

    def prepare_data(self) -> None:
        """Also encodes the captions of every mix's ``queries`` into the cache (the reward D reads them)."""
        if self.overwrite:  # start again from the closed form (rank 0, before any rank reads a state)
            shutil.rmtree(self.run_dir / "refine", ignore_errors=True)
        super().prepare_data()
        options = query_options(self.specs)
        if options:
            device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
            encoder = self._encoder(device)
            encoder(options)
            encoder.release()

    def setup(self, stage: str) -> None:
        """Every rank: the items, each with its queries' option texts encoded (from the cache)."""
        super().setup(stage)
        asking = [item for item in self.items if "queries" in item.meta]
        if not asking:
            return
        encoder = self._encoder()
        for item in asking:
            item.option_embeds = encoder(options_of(parse_queries(item.meta["queries"], item.id)))[0]


def options_of(queries) -> list[str]:
    """Every query's option captions, in order (one row each of ``MixItem.option_embeds``)."""
    return [o for q in queries for o in q.options]


def query_options(specs) -> list[str]:
    """Every distinct caption of the specs' ``queries`` (checked when the specs loaded), in first-use order."""
    return list(dict.fromkeys(o for s in specs if "queries" in s.meta
                              for o in options_of(parse_queries(s.meta["queries"], s.id))))


# ---------------------------------------------------------------- module
MODES = ("gradient", "search")
RANGES = {"offset": (-3.0, 3.0), "w_mix": (0.0, 10.0), "w_a": (0.0, 10.0), "w_b": (0.0, 10.0), "w_c": (-10.0, 10.0)}


def bounds(alpha_range) -> tuple[Tensor, Tensor]:
    """(low, high), (6,) float64 in PARAMS order: alpha's range, then RANGES."""
    low = [alpha_range[0], *(RANGES[p][0] for p in PARAMS[1:])]
    high = [alpha_range[1], *(RANGES[p][1] for p in PARAMS[1:])]
    return torch.tensor(low, dtype=torch.float64), torch.tensor(high, dtype=torch.float64)


def grid_theta(start: Tensor, point: dict[str, float], low: Tensor, high: Tensor) -> Tensor:
    """A grid point's theta: the start with the point's values, clamped into the bounds."""
    values = [point.get(p, float(start[i])) for i, p in enumerate(PARAMS)]
    return torch.clamp(torch.tensor(values, dtype=torch.float64), low, high)


def out_of_bounds(points: list[dict[str, float]], low: Tensor, high: Tensor) -> list[str]:
    """Each value of the points outside its parameter's [low, high] (PARAMS order), as 'name value'."""
    return [f"{p} {v}" for point in points for p, v in point.items()
            if not low[PARAMS.index(p)] <= v <= high[PARAMS.index(p)]]


class RefineModule(L.LightningModule):
    """Frozen CogVideoX (through the sampler) and judge; a mix's mixing parameters (richspace.conditioning), or one
    coefficient per token, refined in ``predict_step`` by gradient ascent or by a gradient-free search."""

    def __init__(
        self,
        sampler: Sampler,
        clip: str = "tiny",
        mode: str = "gradient",
        params: list[str] | None = None,
        start: dict[str, float] | None = None,
        grid: dict[str, list[float]] | list[dict[str, float]] | None = None,
        noise_samples: int = 1,
        steps: int = 15,
        grad_steps: int | None = None,
        decode_latent_frames: int | None = None,
        clip_frames: list[int] | None = None,
        per_token: bool = False,
        alpha_range: tuple[float, float] = (0.0, 1.0),
        lr: float = 0.05,
        w_guide: float = 1.0,
        w_balance: float = 1.0,
        w_anchor: float = 0.0,
        softmin_temperature: float = 1.0,
        w_queries: float = 0.0,
        query_temperature: float = 1.0,
        w_denoise: float = 0.0,
        denoise_temperature: float = 0.01,
        denoise_pairs: int = 12,
        autocast: str | None = None,
        frames_every_n_steps: int = 10,
        prior_from: str | None = None,
        prior_weight: float = 0.25,
    ) -> None:
        """
        Args:
            sampler: the frozen CogVideoX and refinement's own sampling settings (the config's ``sampler:``).
            clip: the judge of the objective: 'toy', 'tiny', a hub id or a local directory (CLIP or X-CLIP).
            mode: 'gradient' (Adam on the parameters, through the sampler) or 'search' (gradient-free: the
                ``grid``, then a pattern search around the best; one sampling per evaluation, no backward).
            params: the mixing parameters refined, from alpha, offset, w_mix, w_a, w_b (default: [alpha]).
            start: starting values of the parameters other than alpha (alpha starts at the finder's); the
                ones not refined keep them. Default: offset 0, w_mix = the sampler's guidance, w_a = w_b = 0.
            grid: search mode's candidates, scored after the start: values per refined parameter (their
                product; default: alpha 0, 0.1, ..., 1), or a list of points ({parameter: value}, the
                others at their start values).
            noise_samples: the objective is the mean over this many noises (the mix's seed, seed + 1, ...):
                more than one fits the parameters to the mix rather than to one noise.
            steps: gradient mode: Adam steps per mix (then the last parameters are scored once more);
                search mode: evaluations after the grid.
            grad_steps: K, the last denoising steps run with gradients (1 <= K <= num_inference_steps; None:
                all, the exact gradient). K < T treats the earlier latents as constants: a truncated gradient
                whose bias ``benchmarks/gradient_check.py`` measures.
            decode_latent_frames: decode only the first N latent frames (None: all).
            clip_frames: indices of decoded frames the judge scores (None: all decoded frames).
            per_token: one alpha per text position instead of one per mix (gradient mode, params [alpha]).
            alpha_range: [min, max] alpha is kept in; wider than [0, 1] extrapolates.
            lr: Adam's learning rate.
            w_guide, w_balance, w_anchor, softmin_temperature, w_queries, query_temperature: the objective's
                weights (richspace.objective); w_queries scores each mix's ``queries`` (where it has them).
            w_denoise, denoise_temperature, denoise_pairs: the weight of D, the same ``queries`` asked of the frozen
                generator (its prediction error under each option's text, on ``denoise_pairs`` shared (timestep,
                noise) pairs; ``Sampler.denoising_errors``), and the temperature of its softmax over the errors.
            autocast: None, or bfloat16 / float16 autocast for the gradient part.
            frames_every_n_steps: keep the frames every N steps of a mix for TensorBoard.
            prior_from: a mixing-parameter predictor (``python -m richspace.learned``, fitted on other mixes with
                this grid): search keeps the candidate best by the mix's rewards and the predictor's scores together
                (``learned.with_prior``) instead of by its rewards alone. Search mode, ``steps`` 0.
            prior_weight: the predictor's weight against the mix's rewards, both standardised over the candidates
                (0.25: chosen on the toy's development mixes, ``benchmarks/toy_reward.py``).
        """
        super().__init__()
        check_weights(clip, "CLIP")
        T = sampler.num_inference_steps
        params = list(params or ["alpha"])
        if mode not in MODES:
            raise ValueError(f"model.mode must be one of {list(MODES)}; got {mode!r}")
        unknown = [p for p in params if p not in PARAMS] + [p for p in (start or {}) if p not in PARAMS[1:]]
        if unknown or not params or len(set(params)) != len(params):
            raise ValueError(f"model.params must name distinct parameters of {list(PARAMS)} (model.start: of "
                             f"{list(PARAMS[1:])}); got params {params}, start {sorted(start or {})}")
        named = [p for point in grid for p in point] if isinstance(grid, list) else list(grid or {})
        bad_grid = [p for p in named if p not in params] + [p for p in (grid or {}) if not isinstance(grid, list)
                                                            and not grid[p]]
        if bad_grid or (isinstance(grid, list) and not grid):
            raise ValueError(f"model.grid names {sorted(set(bad_grid))}: give values of refined parameters "
                             "(model.params) only, a non-empty list each (or a non-empty list of points)")
        if per_token and (params != ["alpha"] or mode != "gradient"):
            raise ValueError("model.per_token needs model.params [alpha] and model.mode gradient")
        if noise_samples < 1:
            raise ValueError(f"model.noise_samples must be >= 1; got {noise_samples}")
        if steps < 0:
            raise ValueError(f"model.steps must be >= 0; got {steps}")
        grad_steps = T if grad_steps is None else grad_steps
        if not 1 <= grad_steps <= T:
            raise ValueError(f"model.grad_steps (K={grad_steps}) must lie in 1..sampler.num_inference_steps ({T})")
        latent_frames = sampler.latent_frames
        if decode_latent_frames is not None and not 1 <= decode_latent_frames <= latent_frames:
            raise ValueError(
                f"model.decode_latent_frames must lie in 1..{latent_frames} for {sampler.num_frames} frames"
            )
        decoded = sampler.decoded_frames(decode_latent_frames or latent_frames)
        if clip_frames is not None and (not clip_frames or not all(0 <= i < decoded for i in clip_frames)):
            raise ValueError(f"model.clip_frames must be a non-empty list of frame indices in 0..{decoded - 1}")
        if not alpha_range[0] < alpha_range[1]:
            raise ValueError(f"model.alpha_range must be [min, max] with min < max; got {list(alpha_range)}")
        if autocast not in (None, "bfloat16", "float16"):
            raise ValueError(f"model.autocast must be null, bfloat16 or float16; got {autocast!r}")
        if frames_every_n_steps < 1:
            raise ValueError(f"model.frames_every_n_steps must be >= 1; got {frames_every_n_steps}")
        if prior_from is not None and (mode != "search" or steps != 0):
            raise ValueError("model.prior_from scores the grid's candidates: it needs model.mode search and "
                             f"model.steps 0; got mode {mode}, steps {steps}")
        if w_denoise and (denoise_temperature <= 0 or denoise_pairs < 1):
            raise ValueError("model.denoise_temperature must be > 0 and model.denoise_pairs >= 1; got "
                             f"{denoise_temperature} and {denoise_pairs}")
        if prior_weight < 0:
            raise ValueError(f"model.prior_weight must be >= 0; got {prior_weight}")
        self.save_hyperparameters(ignore=["sampler"])
        self.hparams.grad_steps = grad_steps
        self.hparams.params = params
        self.allow_zero_length_dataloader_with_multiple_devices = True  # more ranks than unfinished mixes
        object.__setattr__(self, "sampler", sampler)  # not a submodule: Lightning must not move, wrap or save it
        self.weights = ObjectiveWeights(w_guide, w_balance, w_anchor, softmin_temperature, w_queries, w_denoise)
        rest = {"offset": 0.0, "w_mix": sampler.guidance_scale, "w_a": 0.0, "w_b": 0.0, "w_c": 0.0} | dict(start or {})
        self.rest = torch.tensor([rest[p] for p in PARAMS[1:]], dtype=torch.float64)  # offset, w_mix, w_a, w_b, w_c
        self.learned = torch.tensor([p in params for p in PARAMS])  # (6,) which entries of theta move
        # Sampled as the pipeline samples (one text at the guidance scale) unless a weight moves or differs.
        self.composed = bool(self.learned[2:].any()) or bool((self.rest[1:] != torch.tensor(
            [sampler.guidance_scale, 0.0, 0.0, 0.0], dtype=torch.float64)).any())
        self.low, self.high = bounds(alpha_range)
        outside = out_of_bounds([dict(start or {}), *self.grid_points()], self.low, self.high)
        if outside:
            ranges = ", ".join(f"{p} [{lo:g}, {hi:g}]" for p, lo, hi in zip(PARAMS, self.low, self.high))
            raise ValueError(f"model.grid and model.start must lie in each parameter's range ({ranges}; alpha's is "
                             f"model.alpha_range); got {', '.join(outside)}")
        self._text_cache: dict[tuple[str, ...], Tensor] = {}
        self.judge = None
        object.__setattr__(self, "prior", None if prior_from is None else self._load_prior(prior_from))

    def _load_prior(self, path: str):
        """The predictor of ``prior_from``, checked to score this search's candidates (a one-line error if not)."""
        from richspace.learned import load_predictor

        try:
            predictor = load_predictor(path)
        except ValueError:
            raise ValueError(f"model.prior_from: {path} is not a saved mixing-parameter predictor "
                             "(python -m richspace.learned writes one)") from None
        if predictor.config["candidates"] != self.grid_points() or predictor.config["start"] != self.start_values:
            raise ValueError(f"model.prior_from: {path} was fitted for other candidates than model.grid and "
                             "model.start; fit it on a refinement with this grid")
        return predictor

    # -------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self._trainer is not None else self.device
        self.load_models(device)

    def load_models(self, device: torch.device | str) -> None:
        """The sampler's pipeline and the frozen judge (CLIP or X-CLIP), kept out of the module tree."""
        from richspace.videotext import load_video_text

        self.sampler.load(device)
        object.__setattr__(self, "judge", load_video_text(resolve_weights(self.hparams.clip, "clip")).to(device))

    # -------------------------------------------------------------- objective
    def text_features(self, texts: tuple[str, ...]) -> Tensor:
        """(len(texts), D) normalised text features of the judge, computed once per tuple of prompts."""
        if texts not in self._text_cache:
            with torch.no_grad():
                self._text_cache[texts] = self.judge.text_features(texts)
        return self._text_cache[texts]

    def theta(self, coefficients: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha, theta): alpha () or (L,), theta (6,) in PARAMS order (its alpha the mean), from a mix's
        coefficients: (6,) theta itself, or alpha alone (() or per token (L,)) with the start's other values."""
        if coefficients.dim() == 1 and coefficients.shape[0] == len(PARAMS) and not self.hparams.per_token:
            return coefficients[0], coefficients
        rest = self.rest.to(coefficients.device, coefficients.dtype)
        return coefficients, torch.cat([coefficients.mean()[None], rest])

    def objective(self, item: MixItem, coefficients: Tensor, base: tuple[Tensor, Tensor] | None = None,
                  noises: int | None = None) -> tuple[dict[str, Tensor], Tensor]:
        """The objective of a mix's coefficients (see ``theta``), its noise fixed: the mean over
        ``noises`` (default ``noise_samples``) noises of its terms; and the frames the judge saw for the first noise.
        ``base``: (texts, weights) of a chained mix's base, composed where A's text would be
        (``conditioning.on_base``); item.e_a is then the base's mixed text, the line's end."""
        hp, device = self.hparams, self.sampler.device
        alpha, theta = self.theta(coefficients.to(device))
        e_a, e_b = item.e_a.to(device).double(), item.e_b.to(device).double()
        e_contrast = None if item.e_contrast is None else item.e_contrast.to(device).double()
        texts, weights = conditioning(e_a, e_b, offset_direction(e_a, e_b, item.e_guide.to(device).double()),
                                      theta, alpha, e_contrast)
        if base is not None:
            texts, weights = on_base(texts, weights, base[0].to(device), base[1].to(device))
            if not weights.requires_grad:  # searching: no pass for a zero weight
                texts, weights = active(texts, weights)
        elif self.composed:
            # a zero weight: no pass for it, unless its gradient is wanted (gradient mode refines it)
            exists = torch.tensor([True, True, True, e_contrast is not None], device=device)  # a contrast: if given
            keep = (weights.detach() != 0) | (self.learned[2:].to(device) & exists & weights.requires_grad)
            texts, weights = texts[keep], weights[keep]
        else:
            texts, weights = texts[0], None
        autocast = (torch.autocast(device.type, dtype=DTYPES[hp.autocast]) if hp.autocast
                    else contextlib.nullcontext())
        runs, first = [], None
        for j in range(hp.noise_samples if noises is None else noises):
            with autocast:
                frames = self.sampler.sample(texts, item.negative, item.seed + j, hp.grad_steps,
                                             hp.decode_latent_frames, weights).float()
                # the generator reads every decoded frame
                denoise = self.denoise_reward(item, frames) if self.weights.w_denoise else None
                if hp.clip_frames is not None:
                    frames = frames[hp.clip_frames]
                video = self.judge.video_features(frames)
            runs.append(self.terms(item, video, theta[0], denoise))
            first = frames if first is None else first
        return {k: torch.stack([r[k] for r in runs]).mean() for k in runs[0]}, first

    def denoise_reward(self, item: MixItem, frames: Tensor) -> Tensor | None:
        """D of one video's (F, 3, H, W) frames in [0, 1]: its mix's queries asked of the frozen generator (None
        where the mix has no queries; richspace.objective)."""
        if item.option_embeds is None:
            return None
        queries = parse_queries(item.meta["queries"], item.id)
        errors = self.sampler.denoising_errors(frames, item.option_embeds, self.hparams.denoise_pairs, item.seed)
        scores = list((-errors).split([len(q.options) for q in queries]))
        return query_reward(scores, queries, self.hparams.denoise_temperature)

    def terms(self, item: MixItem, video: Tensor, alpha: Tensor, denoise: Tensor | None = None) -> dict[str, Tensor]:
        """The objective's terms for one video's judge feature (and its D, ``denoise_reward``)."""
        texts = self.text_features((item.texts.a, item.texts.b, item.texts.guide))
        s_a, s_b, s_g = 100 * texts @ video
        q = None
        if self.weights.w_queries and "queries" in item.meta:
            queries = parse_queries(item.meta["queries"], item.id)
            scores = [100 * self.text_features(query.options) @ video for query in queries]
            q = query_reward(scores, queries, self.hparams.query_temperature)
        return objective_terms(s_a, s_b, s_g, alpha, item.alpha, self.weights, q, denoise)

    # -------------------------------------------------------------- one mix, start to end
    def start(self, item: MixItem) -> RefineState:
        if self.hparams.per_token:
            coefficients = torch.full((self.sampler.max_sequence_length,), item.alpha, dtype=torch.float64)
        else:
            coefficients = torch.cat([torch.tensor([item.alpha], dtype=torch.float64), self.rest])
        return RefineState(alpha_0=item.alpha, coefficients=coefficients)

    def predict_step(self, item: MixItem, batch_idx: int = 0) -> None:
        self.refine(item, state_path(self.trainer.datamodule.run_dir, item.id))

    def refine(self, item: MixItem, path: Path) -> RefineState:
        """Refines one mix to the end, writing its state to ``path`` after every step (a restart continues from it)."""
        if self.hparams.mode == "search":
            return self.search(item, path)
        hp = self.hparams
        state = load_state(path) or self.start(item)
        theta = nn.Parameter(state.coefficients.clone().to(self.sampler.device))
        mask = torch.ones_like(theta) if hp.per_token else self.learned.to(theta.device, theta.dtype)
        low, high = ((self.low[0], self.high[0]) if hp.per_token
                     else (self.low.to(theta.device), self.high.to(theta.device)))
        optimizer = torch.optim.Adam([theta], lr=hp.lr)
        if state.optimizer:
            optimizer.load_state_dict(state.optimizer)
        with torch.inference_mode(False), torch.enable_grad():
            while state.step < hp.steps:
                began = time.perf_counter()
                terms, frames = self.objective(item, theta)
                optimizer.zero_grad()
                (-terms["objective"]).backward()
                theta.grad.mul_(mask)  # fixed parameters get no gradient: Adam leaves them exactly as they are
                self.remember(state, terms, theta, frames, seconds=elapsed(began))
                optimizer.step()
                with torch.no_grad():
                    theta.copy_(torch.clamp(theta, low, high))  # projected gradient ascent
                state.step += 1
                state.coefficients, state.optimizer = theta.detach().cpu().clone(), optimizer.state_dict()
                save_state(path, state)
        if not state.done:  # the last coefficients, scored once more
            began = time.perf_counter()
            with torch.no_grad():
                terms, frames = self.objective(item, theta.detach())
            self.remember(state, terms, theta, frames, final=True, seconds=elapsed(began))
            state.done = True
            save_state(path, state)
        return state

    def _grid_values(self) -> dict[str, list[float]]:
        """Per parameter, the values the grid gives it."""
        points = self.grid_points()
        return {p: [point[p] for point in points if p in point] for p in PARAMS}

    @property
    def start_values(self) -> dict[str, float]:
        """The parameters other than alpha at their start values (alpha starts at the finder's)."""
        return dict(zip(PARAMS[1:], self.rest.tolist()))

    def listed_candidates(self, finder_alpha: float) -> list[tuple[float, ...]]:
        """Each candidate's theta in the predictor's order (learned.candidate_thetas): the start, then every grid
        point, clamped as search clamps them, duplicates kept."""
        from richspace.learned import candidate_thetas

        return candidate_thetas(finder_alpha, self.start_values, self.grid_points(), self.hparams.alpha_range)

    def grid_points(self) -> list[dict[str, float]]:
        """Search mode's grid as points, {parameter: value} (the parameters a point leaves out keep the start's)."""
        grid = self.hparams.grid or {"alpha": [i / 10 for i in range(11)]}
        if isinstance(grid, list):
            return [dict(point) for point in grid]
        names = list(grid)
        return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]

    def candidates(self, start: Tensor) -> list[Tensor]:
        """Search mode's candidates: the start first, then the grid's points, clamped, each once."""
        out = [start]
        for point in self.grid_points():
            theta = grid_theta(start, point, self.low, self.high)
            if not any(torch.equal(theta, c) for c in out):
                out.append(theta)
        return out

    def search(self, item: MixItem, path: Path) -> RefineState:
        """Gradient-free: every grid candidate, then ``steps`` evaluations of a pattern search (each refined
        parameter that changes the sample moved up or down by its step from the best; steps halve when no move
        improves). Each evaluation is saved; a restart replays the same sequence from the saved evaluations.
        With a prior (``prior_from``), the candidate kept weighs the prior's scores with the rewards."""
        hp = self.hparams
        state = load_state(path) or self.start(item)
        seen = {tuple(h["theta"]): h for h in state.history}

        def evaluate(theta: Tensor) -> float:
            key = tuple(theta.tolist())
            if key not in seen:
                began = time.perf_counter()
                with torch.no_grad():
                    terms, frames = self.objective(item, theta)
                self.remember(state, terms, theta, frames, seconds=elapsed(began))
                state.step, state.coefficients = len(state.history), theta.clone()
                seen[key] = state.history[-1]
                save_state(path, state)
            return seen[key]["objective"]

        start = self.start(item).coefficients
        for theta in self.candidates(start):
            evaluate(theta)
        grid = self._grid_values()
        step = torch.tensor([_spacing(grid.get(p, []), self.high[i] - self.low[i]) for i, p in enumerate(PARAMS)],
                            dtype=torch.float64) * self.learned
        moves = 0
        while moves < hp.steps and step.abs().max() > 1e-4:
            best = state.best["coefficients"].double()
            improved = False
            for i in torch.nonzero(self.learned).flatten().tolist():
                if i < 2 and best[2] == 0:  # no mixed text in the sample: alpha and offset change nothing
                    continue
                for sign in (1.0, -1.0):
                    if moves >= hp.steps:
                        break
                    theta = best.clone()
                    theta[i] = theta[i] + sign * step[i]
                    theta = torch.clamp(theta, self.low, self.high)
                    if torch.equal(theta, best) or tuple(theta.tolist()) in seen:
                        continue
                    moves += 1
                    if evaluate(theta) > seen[tuple(best.tolist())]["objective"]:
                        improved = True
                        break
                if improved:
                    break
            if not improved:
                step = step / 2
        if self.prior is not None:
            self.choose_with_prior(item, state, seen)
        state.done = True
        save_state(path, state)
        return state

    def choose_with_prior(self, item: MixItem, state: RefineState, seen: dict[tuple, dict]) -> None:
        """Makes the best the candidate ``learned.with_prior`` keeps from the mix's rewards and the prior's scores,
        its frames (the first noise's) sampled again where they were not kept."""
        from richspace.learned import mix_features, with_prior

        thetas = self.listed_candidates(item.alpha)
        thetas[0] = tuple(self.start(item).coefficients.tolist())  # the start as search scored it (unclamped)
        rewards = torch.tensor([seen[t]["objective"] for t in thetas])
        features = mix_features(item.e_a.cpu(), item.e_b.cpu(), item.e_guide.cpu(), item.alpha)
        with torch.no_grad():
            scores = self.prior(features[None])[0]
        chosen = seen[thetas[with_prior(rewards, scores, self.hparams.prior_weight)]]
        state.best = {"objective": chosen["objective"], "coefficients": torch.tensor(chosen["theta"],
                      dtype=torch.float64), "step": chosen["step"], "prior": scores.tolist()}
        if chosen["step"] not in state.frames:
            with torch.no_grad():
                _, frames = self.objective(item, state.best["coefficients"], noises=1)
            state.frames[chosen["step"]] = to_uint8(frames.float().cpu())

    def remember(self, state: RefineState, terms: dict, theta: Tensor, frames: Tensor, final: bool = False,
                 seconds: float = 0.0) -> None:
        """Appends a step to the history (parameters, terms and the step's wall seconds), keeps the best iterate
        (the start is the first) and frames: the start's, the best's, the last's and, in gradient mode, every N
        steps'."""
        step = len(state.history)
        values = {k: float(v.detach()) for k, v in terms.items()}
        _, full = self.theta(theta.detach().cpu())
        entry = {"step": step, **{p: float(full[i]) for i, p in enumerate(PARAMS)}, **values, "seconds": seconds}
        if self.hparams.mode == "search":
            entry["theta"] = theta.detach().cpu().tolist()
        state.history.append(entry | {"final": True} if final else entry)
        better = not state.best or values["objective"] > state.best["objective"]
        if better:
            old = state.best.get("step")
            if old is not None and not self._snapshot(old, state.history[old].get("final", False)):
                state.frames.pop(old, None)  # the previous best's frames, kept only while it was the best
            state.best = {"objective": values["objective"], "coefficients": theta.detach().cpu().clone(), "step": step}
        if better or self._snapshot(step, final):
            state.frames[step] = to_uint8(frames.detach().float().cpu())

    def _snapshot(self, step: int, final: bool) -> bool:
        """Frames kept whatever the objective: the start's, the last's, and every N steps' in gradient mode."""
        return step == 0 or final or (self.hparams.mode == "gradient" and step % self.hparams.frames_every_n_steps == 0)

    def params_of(self, coefficients: Tensor) -> MixParams:
        """A result's mixing parameters (w_mix None where it is the sampler's guidance and not refined)."""
        _, theta = self.theta(coefficients.double())
        params = MixParams.from_vector(theta)
        if not self.composed:
            params = MixParams(params.alpha, params.offset)
        return params


def elapsed(began: float) -> float:
    """Wall seconds since ``began`` (time.perf_counter()), after queued GPU work has finished."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter() - began


def _spacing(values: list[float], span: Tensor) -> float:
    """Half the smallest gap of a parameter's grid (a quarter of its range without one): the search's first step."""
    gaps = [b - a for a, b in zip(sorted(values), sorted(values)[1:]) if b > a]
    return min(gaps) / 2 if gaps else float(span) / 4


# ---------------------------------------------------------------- the result, merged from disk
def finish_refinement(run_dir: Path, data: MixDataModule, module: RefineModule, logger=None) -> Path:
    """refinement.json (and per-token coefficients as safetensors), written atomically from every mix's saved
    state; TensorBoard gets each mix's parameter trajectories, reward terms, frames before and after, and the
    closed-form curve. infer.py reads it (alpha_from).

    The refined coefficients are the best iterate seen (the closed-form start is one), so the
    objective after is never below the objective before; with a prior (``model.prior_from``) they are
    the candidate best by the rewards and the prior together, and ``objective_after`` is that one's.
    """
    from safetensors.torch import save_file

    run_dir, mixes, states = Path(run_dir), {}, {}
    for mix_id in data.selected:
        state = load_state(state_path(run_dir, mix_id))
        if state is None or not state.done:
            raise RuntimeError(f"mix {mix_id} has no finished refinement in {run_dir}; run again to finish it")
        states[mix_id] = state
        chosen = state.best["coefficients"]
        params = module.params_of(chosen)
        entry = {
            "alpha": params.alpha,
            "params": params.to_dict(),
            "alpha_closed_form": state.alpha_0,
            "objective_before": state.history[0]["objective"],
            "objective_after": state.best["objective"],
            "best_step": state.best["step"],
            # the mix's cost: its evaluations' (or steps') wall time (not a prior's sampling of the kept frames)
            "seconds": sum(h.get("seconds", 0.0) for h in state.history),
            "alpha_last": float(module.theta(state.coefficients)[1][0]),
            "trajectory": state.history,
        }
        if "prior" in state.best:  # the prior's scores of the candidates (the start, then the grid)
            entry["prior_scores"] = state.best["prior"]
        if module.hparams.per_token:
            name = f"coefficients/{mix_id}.safetensors"
            atomic_write(run_dir / name, lambda tmp, v=chosen: save_file({"alpha": v.float().contiguous()}, tmp))
            entry["coefficients"] = name
        mixes[mix_id] = entry
    path = run_dir / "refinement.json"
    atomic_write_text(path, json.dumps({"version": 1, "params": module.hparams.params, "mode": module.hparams.mode,
                "start": module.start_values, "alpha_range": list(module.hparams.alpha_range),
                "grid": module.grid_points() if module.hparams.mode == "search" else None,
                "prior_from": module.hparams.prior_from,
                "prior_weight": module.hparams.prior_weight if module.hparams.prior_from else None,
                "mixes": mixes}, indent=1) + "\n")
    writer = getattr(logger, "experiment", None)
    if writer is not None and hasattr(writer, "add_scalar"):
        log_refinement(writer, data, states, module.hparams.params)
    print(f"refinement of {len(mixes)} mixes written to {path}")
    for mix_id, e in mixes.items():
        moved = ", ".join(f"{p} {e['params'][p]:.3f}" for p in module.hparams.params if p != "alpha")
        print(f"  {mix_id}: alpha {e['alpha_closed_form']:.3f} -> {e['alpha']:.3f}{', ' + moved if moved else ''}, "
              f"objective {e['objective_before']:.3f} -> {e['objective_after']:.3f}")
    return path


def log_refinement(writer, data: MixDataModule, states: dict[str, RefineState], params: list[str]) -> None:
    from richspace.writer import curve_figure

    curves = {item.id: item for item in data.items}
    for mix_id, state in states.items():
        for s in state.history:
            for name in (*dict.fromkeys(["alpha", *params]), *TERMS, "seconds"):
                if name in s:  # states saved before evaluations were timed have no seconds
                    writer.add_scalar(f"refine/{mix_id}/{name}", s[name], s["step"])
        for step, frames in sorted(state.frames.items()):
            writer.add_images(f"refine/{mix_id}/frames", frames, step)
        before, after = state.frames.get(0), state.frames.get(state.best["step"])
        if before is not None and after is not None:  # the start's frames above the chosen parameters'
            writer.add_images(f"refine/{mix_id}/before_after", torch.cat([before, after]), 0)
        if mix_id in curves:  # mixes refined in this run: the closed-form curve, for reference
            item = curves[mix_id]
            writer.add_figure(f"refine/{mix_id}/closed_form_curve",
                              curve_figure(mix_id, item.scores, item.alpha, item.index), 0)
    writer.flush()
