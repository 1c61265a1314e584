"""Refinement (train.py): learn each mix's interpolation coefficient against a CLIP objective.

The closed-form finder's alpha is the starting point and the baseline. Per mix, with the
mix's own noise (its seed, as infer.py uses), the objective of a coefficient alpha is
richspace.objective's: ``w_guide * S_G + w_balance * softmin_T(S_A, S_B) - w_anchor * mean((alpha - alpha_0)^2)``.
The sampler runs the first T - K denoising steps without gradients and the last K, the
decode of a subset of latent frames, torch-only CLIP preprocessing and CLIP's image tower
with them. Only the coefficients learn; every other weight is frozen.

It runs on generation's rails: ``Trainer.predict`` (with ``inference_mode=False``) over the
same sharded items as infer.py, one item per mix, each refined to the end by the rank that
owns it. After every step the mix's state (coefficients, Adam's state, history, best,
frames) is written atomically to ``RUN_DIR/refine/<id>/state.pt``; a killed run started again
continues each mix from its last state, and reproduces the uninterrupted trajectory. After
predict, rank 0 merges the states from disk into ``refinement.json``. No collectives, no
custom strategy: the same ``--trainer`` flags work as for infer.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from richspace.data import MixDataModule, MixItem
from richspace.finder import interpolate
from richspace.objective import ObjectiveWeights, objective_terms
from richspace.runs import atomic_write, atomic_write_text
from richspace.sampler import Sampler
from richspace.video import to_uint8
from richspace.weights import DTYPES, check_weights, resolve_weights

TERMS = ("objective", "clip_guide", "clip_a", "clip_b", "balance", "anchor")


# ---------------------------------------------------------------- a mix's state on disk
@dataclass
class RefineState:
    """One mix's refinement after ``step`` steps: all that is needed to continue it exactly."""

    alpha_0: float  # the closed-form start
    coefficients: Tensor  # () or (L,) float64, after ``step`` steps
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
        if self.overwrite:  # start again from the closed form (rank 0, before any rank reads a state)
            shutil.rmtree(self.run_dir / "refine", ignore_errors=True)
        super().prepare_data()


# ---------------------------------------------------------------- module
class RefineModule(L.LightningModule):
    """Frozen CogVideoX (through the sampler) and CLIP; one coefficient (or one per token) per mix, refined in
    ``predict_step``."""

    def __init__(
        self,
        sampler: Sampler,
        clip: str = "tiny",
        steps: int = 15,
        grad_steps: int = 1,
        decode_latent_frames: int | None = None,
        clip_frames: list[int] | None = None,
        per_token: bool = False,
        alpha_range: tuple[float, float] = (0.0, 1.0),
        lr: float = 0.05,
        w_guide: float = 1.0,
        w_balance: float = 1.0,
        w_anchor: float = 0.0,
        softmin_temperature: float = 1.0,
        autocast: str | None = None,
        frames_every_n_steps: int = 10,
    ) -> None:
        """
        Args:
            sampler: the frozen CogVideoX and refinement's own sampling settings (the config's ``sampler:``).
            clip: CLIP of the objective: 'toy', 'tiny', a hub id or a local directory.
            steps: Adam steps per mix (then the last coefficients are scored once more).
            grad_steps: K, the last denoising steps run with gradients (1 <= K <= num_inference_steps).
                K < T treats the earlier latents as constants: a truncated, biased gradient (cheap);
                K = T is the exact gradient of the objective.
            decode_latent_frames: decode only the first N latent frames (None: all).
            clip_frames: indices of decoded frames CLIP scores (None: all decoded frames).
            per_token: one coefficient per text position instead of one per mix.
            alpha_range: [min, max] the coefficient is kept in; wider than [0, 1] extrapolates.
            lr: Adam's learning rate on the coefficients.
            w_guide, w_balance, w_anchor, softmin_temperature: the objective's weights (richspace.objective).
            autocast: None, or bfloat16 / float16 autocast for the gradient part.
            frames_every_n_steps: keep the frames every N steps of a mix for TensorBoard.
        """
        super().__init__()
        check_weights(clip, "CLIP")
        T = sampler.num_inference_steps
        if steps < 0:
            raise ValueError(f"model.steps must be >= 0; got {steps}")
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
        self.save_hyperparameters(ignore=["sampler"])
        self.allow_zero_length_dataloader_with_multiple_devices = True  # more ranks than unfinished mixes
        object.__setattr__(self, "sampler", sampler)  # not a submodule: Lightning must not move, wrap or save it
        self.weights = ObjectiveWeights(w_guide, w_balance, w_anchor, softmin_temperature)
        self._text_cache: dict[tuple[str, ...], Tensor] = {}
        self.judge = None

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

    def objective(self, item: MixItem, alpha: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The objective at coefficient alpha for a mix (its noise fixed), and the frames CLIP saw."""
        hp, device = self.hparams, self.sampler.device
        embeds = interpolate(item.e_a.to(device).double(), item.e_b.to(device).double(), alpha)
        autocast = (torch.autocast(device.type, dtype=DTYPES[hp.autocast]) if hp.autocast
                    else contextlib.nullcontext())
        with autocast:
            frames = self.sampler.sample(embeds, item.negative, item.seed, hp.grad_steps, hp.decode_latent_frames)
            frames = frames.float()
            if hp.clip_frames is not None:
                frames = frames[hp.clip_frames]
            video = self.judge.video_features(frames)
        texts = self.text_features((item.texts.a, item.texts.b, item.texts.guide))
        s_a, s_b, s_g = 100 * texts @ video
        return objective_terms(s_a, s_b, s_g, alpha, item.alpha, self.weights), frames

    # -------------------------------------------------------------- one mix, start to end
    def start(self, item: MixItem) -> RefineState:
        coefficients = torch.full((self.sampler.max_sequence_length,), item.alpha) if self.hparams.per_token \
            else torch.tensor(item.alpha)
        return RefineState(alpha_0=item.alpha, coefficients=coefficients.double())

    def predict_step(self, item: MixItem, batch_idx: int = 0) -> None:
        self.refine(item, state_path(self.trainer.datamodule.run_dir, item.id))

    def refine(self, item: MixItem, path: Path) -> RefineState:
        """Refines one mix to the end, writing its state to ``path`` after every step (a restart continues from it)."""
        hp = self.hparams
        state = load_state(path) or self.start(item)
        alpha = nn.Parameter(state.coefficients.clone().to(self.sampler.device))
        optimizer = torch.optim.Adam([alpha], lr=hp.lr)
        if state.optimizer:
            optimizer.load_state_dict(state.optimizer)
        with torch.inference_mode(False), torch.enable_grad():
            while state.step < hp.steps:
                terms, frames = self.objective(item, alpha)
                optimizer.zero_grad()
                (-terms["objective"]).backward()
                self.remember(state, terms, alpha, frames)
                optimizer.step()
                with torch.no_grad():
                    alpha.clamp_(*hp.alpha_range)  # projected gradient ascent
                state.step += 1
                state.coefficients, state.optimizer = alpha.detach().cpu().clone(), optimizer.state_dict()
                save_state(path, state)
        if not state.done:  # the last coefficients, scored once more
            with torch.no_grad():
                terms, frames = self.objective(item, alpha.detach())
            self.remember(state, terms, alpha, frames, final=True)
            state.done = True
            save_state(path, state)
        return state

    def remember(self, state: RefineState, terms: dict, alpha: Tensor, frames: Tensor, final: bool = False) -> None:
        """Appends a step to the history, keeps the best iterate (the closed-form start is the first) and frames."""
        step = len(state.history)
        values = {k: float(v.detach()) for k, v in terms.items()}
        entry = {"step": step, "alpha": float(alpha.detach().mean()), **values}
        state.history.append(entry | {"final": True} if final else entry)
        if not state.best or values["objective"] > state.best["objective"]:
            state.best = {"objective": values["objective"], "coefficients": alpha.detach().cpu().clone(), "step": step}
        if final or step % self.hparams.frames_every_n_steps == 0:
            state.frames[step] = to_uint8(frames.detach().float().cpu())


# ---------------------------------------------------------------- the result, merged from disk
def finish_refinement(run_dir: Path, data: MixDataModule, per_token: bool, logger=None) -> Path:
    """refinement.json (and per-token coefficients as safetensors), written atomically from every mix's saved
    state; TensorBoard gets each mix's trajectory, frames and closed-form curve. infer.py reads it (alpha_from).

    The refined coefficients are the best iterate seen (the closed-form start is one), so the
    objective after is never below the objective before.
    """
    from safetensors.torch import save_file

    run_dir, mixes, states = Path(run_dir), {}, {}
    for mix_id in data.selected:
        state = load_state(state_path(run_dir, mix_id))
        if state is None or not state.done:
            raise RuntimeError(f"mix {mix_id} has no finished refinement in {run_dir}; run again to finish it")
        states[mix_id] = state
        chosen = state.best["coefficients"]
        entry = {
            "alpha": float(chosen.mean()),
            "alpha_closed_form": state.alpha_0,
            "objective_before": state.history[0]["objective"],
            "objective_after": state.best["objective"],
            "best_step": state.best["step"],
            "alpha_last": float(state.coefficients.mean()),
            "trajectory": state.history,
        }
        if per_token:
            name = f"coefficients/{mix_id}.safetensors"
            atomic_write(run_dir / name, lambda tmp, v=chosen: save_file({"alpha": v.float().contiguous()}, tmp))
            entry["coefficients"] = name
        mixes[mix_id] = entry
    path = run_dir / "refinement.json"
    atomic_write_text(path, json.dumps({"version": 1, "mixes": mixes}, indent=1) + "\n")
    writer = getattr(logger, "experiment", None)
    if writer is not None and hasattr(writer, "add_scalar"):
        log_refinement(writer, data, states)
    print(f"refinement of {len(mixes)} mixes written to {path}")
    for mix_id, e in mixes.items():
        print(f"  {mix_id}: alpha {e['alpha_closed_form']:.3f} -> {e['alpha']:.3f}, "
              f"objective {e['objective_before']:.3f} -> {e['objective_after']:.3f}")
    return path


def log_refinement(writer, data: MixDataModule, states: dict[str, RefineState]) -> None:
    from richspace.writer import curve_figure

    curves = {item.id: item for item in data.items}
    for mix_id, state in states.items():
        for s in state.history:
            for name in ("alpha", *TERMS):
                writer.add_scalar(f"refine/{mix_id}/{name}", s[name], s["step"])
        for step, frames in sorted(state.frames.items()):
            writer.add_images(f"refine/{mix_id}/frames", frames, step)
        if mix_id in curves:  # mixes refined in this run: the closed-form curve, for reference
            item = curves[mix_id]
            writer.add_figure(f"refine/{mix_id}/closed_form_curve",
                              curve_figure(mix_id, item.scores, item.alpha, item.index), 0)
    writer.flush()
