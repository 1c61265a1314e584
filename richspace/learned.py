"""A predictor of a mix's mixing parameters from its embeddings: one forward pass per new mix, no sampling.

    python train.py --experiments configs/experiments/toy-dev.yaml --run_dir runs/refine-dev   # search on dev
    python -m richspace.learned --refinement runs/refine-dev/refinement.json \
        --experiments configs/experiments/toy-dev.yaml --out runs/learned-toy
    python infer.py --data.learned_from runs/learned-toy        # adds the `learned` video to each mix

``MixPredictor`` is a small LightningModule trained with refinement's own reward. Refinement's
search scores, for every development mix, the same candidates: the finder's alpha and each
point of the grid (richspace.refinement). The predictor learns to map a few geometric
features of (E_a, E_b, E_guide) (``mix_features``) to scores over those candidates, trained
by cross-entropy towards softmax(the mix's standardised rewards); for a new mix it returns
the candidate it scores highest. So it learns
*which kind* of mixing a mix needs (a point on the line, a step off it towards the guide,
A and B composed) from its geometry, and applies it without sampling. The features are free
of the embedding's width, so the same code serves the toy T5 and CogVideoX's T5-XXL.
Saved as safetensors and a JSON of its settings; loaded with ``load_predictor``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from richspace.conditioning import PARAMS, MixParams
from richspace.finder import interpolate, perpendicular_foot, phi_cos
from richspace.runs import atomic_write, atomic_write_text

FEATURES = ("finder_alpha", "foot", "off_line", "cos_ab", "cos_guide_a", "cos_guide_b", "diff_position",
            "diff_cos")


def mix_features(e_a: Tensor, e_b: Tensor, e_guide: Tensor, finder_alpha: float) -> Tensor:
    """(8,) float32 features of a mix (FEATURES order), from its (L, d) embeddings and the finder's alpha:
    where the guide's foot lies on the line and how far the guide is off it (relative to |E_a - E_b|), the
    pairwise mean row cosines, and where along the text A and B differ most (the row of least cosine, as a
    fraction of the length) with that cosine."""
    e_a, e_b, e_guide = e_a.double(), e_b.double(), e_guide.double()
    t = perpendicular_foot(e_a, e_b, e_guide, "global")
    foot = interpolate(e_a, e_b, 1 - t)
    off = (e_guide - foot).norm() / (e_a - e_b).norm().clamp_min(1e-12)
    rows = nn.functional.cosine_similarity(e_a, e_b, dim=-1)
    where = int(rows.argmin())
    values = [finder_alpha, float(1 - t), float(off), float(phi_cos(e_a, e_b)), float(phi_cos(e_guide, e_a)),
              float(phi_cos(e_guide, e_b)), where / max(1, len(rows) - 1), float(rows[where])]
    return torch.tensor(values, dtype=torch.float32)


class MixPredictor(L.LightningModule):
    """features -> a score per candidate (the finder's alpha, then each grid point), trained towards the
    candidates with the highest reward; the best-scored one's parameters, the others at ``start``."""

    def __init__(self, candidates: list[dict[str, float]], start: dict[str, float], hidden: int = 0,
                 lr: float = 1e-2, weight_decay: float = 1e-2, sharpness: float = 2.0) -> None:
        """
        Args:
            candidates, start: refinement's grid points and the other parameters' start values.
            hidden: width of a hidden layer (0: linear scores, what a few dozen development mixes support: an
                MLP fitted them all and generalised worse, tests/test_learned.py's rule included).
            lr, weight_decay: AdamW's.
            sharpness: the target over candidates is softmax(sharpness x the mix's standardised rewards).
        """
        super().__init__()
        unknown = sorted({p for c in candidates for p in c} - set(PARAMS)) + sorted(set(start) - set(PARAMS[1:]))
        if unknown or not candidates:
            raise ValueError(f"the predictor's candidates and start must name parameters of {list(PARAMS)}; "
                             f"got {unknown or 'no candidates'}")
        # Kept by hand, not save_hyperparameters: built inside another class's __init__ (the datamodule's), Lightning's
        # frame inspection would collect that one's arguments instead.
        self.config = {"candidates": [dict(c) for c in candidates], "start": dict(start), "hidden": hidden, "lr": lr,
                       "weight_decay": weight_decay, "sharpness": sharpness}
        outputs = 1 + len(candidates)
        self.net = nn.Linear(len(FEATURES), outputs) if hidden == 0 else nn.Sequential(
            nn.Linear(len(FEATURES), hidden), nn.GELU(), nn.Linear(hidden, outputs))
        self.register_buffer("x_mean", torch.zeros(len(FEATURES)))
        self.register_buffer("x_std", torch.ones(len(FEATURES)))

    def standardise(self, x: Tensor) -> None:
        """Sets the input statistics from the training set."""
        self.x_mean.copy_(x.mean(0))
        self.x_std.copy_(x.std(0).clamp_min(1e-6) if len(x) > 1 else torch.ones_like(self.x_std))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 8) features -> (N, 1 + candidates) scores (logits over the candidates)."""
        return self.net((x - self.x_mean) / self.x_std)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y, w = batch  # y: standardised rewards (the target puts more weight where the reward is higher); w: per mix
        per_mix = nn.functional.cross_entropy(self(x), torch.softmax(self.config["sharpness"] * y, dim=-1),
                                              reduction="none")
        loss = (per_mix * w).sum() / w.sum()
        self.log("learned/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.config["lr"], weight_decay=self.config["weight_decay"])

    def params_of(self, index: int, finder_alpha: float) -> MixParams:
        """Candidate ``index``'s parameters: 0 is the finder's alpha at the start values."""
        values = {"alpha": finder_alpha, **self.config["start"]}
        if index > 0:
            values |= self.config["candidates"][index - 1]
        return MixParams.from_dict(values)

    @torch.no_grad()
    def predict_params(self, features: Tensor) -> MixParams:
        """One mix's parameters: the candidate with the highest predicted reward."""
        index = int(self(features[None])[0].argmax())
        return self.params_of(index, float(features[0]))

    def predict(self, result) -> MixParams:
        """Parameters for a finder result (richspace.mixing.MixResult)."""
        return self.predict_params(mix_features(result.e_a, result.e_b, result.e_guide, result.alpha))


def standardised(rewards: Tensor) -> Tensor:
    """Each row (a mix's candidates) to zero mean and unit spread: what matters is the order within a mix."""
    return (rewards - rewards.mean(-1, keepdim=True)) / rewards.std(-1, keepdim=True).clamp_min(1e-6)


def with_prior(rewards: Tensor, prior: Tensor, weight: float) -> int:
    """The candidate to keep from a mix's own rewards and a predictor's scores for it (the prior, learned across
    mixes), each standardised over the candidates and added with ``weight`` on the prior: 0 trusts the mix's
    rewards alone, a large weight the predictor alone. Rewards from a noise or two are noisy; the predictor
    has seen many mixes. Ties go to the first candidate."""
    return int((standardised(rewards.double()) + weight * standardised(prior.double())).argmax())


def fit_predictor(features: Tensor, rewards: Tensor, candidates: list[dict], start: dict, steps: int = 1000,
                  seed: int = 0, weights: Tensor | None = None, **kwargs) -> MixPredictor:
    """Fits a MixPredictor on (N, 8) features and (N, 1 + candidates) rewards, full batch, on the CPU; ``weights``
    (N,), non-negative with a positive sum: each mix's weight in the loss (None: equal)."""
    from torch.utils.data import DataLoader, TensorDataset

    weights = torch.ones(len(features)) if weights is None else weights.float()
    if weights.shape != (len(features),) or bool((weights < 0).any()) or not float(weights.sum()) > 0:
        raise ValueError(f"weights must be {len(features)} non-negative numbers with a positive sum, one per mix")
    L.seed_everything(seed, verbose=False)
    model = MixPredictor(candidates, start, **kwargs)
    model.standardise(features)
    loader = DataLoader(TensorDataset(features, standardised(rewards), weights), batch_size=len(features),
                        shuffle=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False)
    trainer.fit(model, loader)
    return model.eval()


def save_predictor(model: MixPredictor, out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "model.safetensors", lambda tmp: save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, tmp))
    atomic_write_text(out / "config.json", json.dumps(model.config, indent=1) + "\n")


def load_predictor(path: str | Path) -> MixPredictor:
    """A saved predictor directory (config.json, model.safetensors); one-line error when it is not one."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text())
        model = MixPredictor(**config)
        model.load_state_dict(load_file(path / "model.safetensors"))
    except (OSError, ValueError, TypeError, KeyError, RuntimeError):
        raise ValueError(f"learned_from: {path} is not a saved mixing-parameter predictor "
                         "(python -m richspace.learned writes one)") from None
    return model.eval()


def candidate_thetas(finder_alpha: float, start: dict, candidates: list[dict], alpha_range) -> list[tuple[float, ...]]:
    """The theta refinement's search evaluated for each candidate (clamped as it clamps), in PARAMS order."""
    from richspace.refinement import bounds, grid_theta

    low, high = bounds(alpha_range)
    base = torch.tensor([finder_alpha, *(start[p] for p in PARAMS[1:])], dtype=torch.float64)
    return [tuple(grid_theta(base, point, low, high).tolist()) for point in [{}, *candidates]]


def training_set(refinement: Path, experiments: str, pretrained: str, max_sequence_length: int, cache_dir=None):
    """(features, rewards, candidates, start) from a search-mode refinement result file and the specs it refined:
    per mix, the reward search measured for each candidate."""
    from richspace.data import MixDataModule
    from richspace.mixing import find_mixes

    try:
        info = json.loads(Path(refinement).read_text())
    except (OSError, ValueError):
        raise ValueError(f"{refinement} is not a readable refinement result file (train.py writes one)") from None
    if not isinstance(info, dict) or info.get("mode") != "search" or not info.get("grid"):
        raise ValueError(f"{refinement} is not a search-mode refinement (model.mode search): the predictor learns "
                         "from the rewards search measured for each candidate")
    candidates, start = info["grid"], info["start"]
    data = MixDataModule(experiments=experiments, pretrained=pretrained, max_sequence_length=max_sequence_length,
                         cache_dir=cache_dir, compose=None)
    data.prepare_data()
    results = find_mixes(data.specs, data._encoder(), data.k, data.scoring, data.projection)
    missing = [i for i in info["mixes"] if i not in results]
    if missing:
        raise ValueError(f"{refinement} refined {len(missing)} mixes that {experiments} does not hold (e.g. "
                         f"{missing[:3]}): give the specs file it refined")
    xs, ys = [], []
    for mix_id, entry in info["mixes"].items():
        r = results[mix_id]
        seen = {tuple(h["theta"]): h["objective"] for h in entry["trajectory"] if "theta" in h}
        thetas = candidate_thetas(r.alpha, start, candidates, info["alpha_range"])
        if not all(t in seen for t in thetas):
            raise ValueError(f"{refinement}: mix {mix_id} lacks some candidates' rewards; refine it with this grid")
        xs.append(mix_features(r.e_a, r.e_b, r.e_guide, r.alpha))
        ys.append(torch.tensor([seen[t] for t in thetas], dtype=torch.float32))
    return torch.stack(xs), torch.stack(ys), candidates, start


def leave_one_out(x: Tensor, y: Tensor, candidates: list[dict], start: dict, steps: int) -> dict[str, float]:
    """Mean regret (best reward minus the chosen one's) over mixes, each predicted by a model fitted without it;
    against the finder (candidate 0) and the single candidate best on average (a fixed rule)."""
    regrets, fixed = [], []
    for i in range(len(x)):
        keep = torch.arange(len(x)) != i
        model = fit_predictor(x[keep], y[keep], candidates, start, steps)
        with torch.no_grad():
            choice = int(model(x[i:i + 1])[0].argmax())
        regrets.append(float(y[i].max() - y[i, choice]))
        fixed.append(float(y[i].max() - y[i, int(standardised(y[keep]).mean(0).argmax())]))
    best = y.max(1).values
    return {"learned": sum(regrets) / len(x), "best fixed candidate": sum(fixed) / len(x),
            "finder": float((best - y[:, 0]).mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refinement", required=True, help="refinement.json of train.py (search) on the dev mixes")
    parser.add_argument("--experiments", required=True, help="the specs file it refined")
    parser.add_argument("--out", required=True, help="directory for the predictor")
    parser.add_argument("--pretrained", default="toy", help="CogVideoX whose T5 encodes the prompts")
    parser.add_argument("--max_sequence_length", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--leave_one_out", action="store_true", help="also print the cross-validated regret")
    parser.add_argument("--overwrite", action="store_true", help="replace a predictor already saved in --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file; give a directory for the predictor")
    if (out / "config.json").exists() and not args.overwrite:
        parser.error(f"--out {out} already holds a predictor; give a new --out, or --overwrite to replace it")
    try:
        x, y, candidates, start = training_set(Path(args.refinement), args.experiments, args.pretrained,
                                               args.max_sequence_length)
        model = fit_predictor(x, y, candidates, start, args.steps)
        save_predictor(model, out)
    except (ValueError, OSError) as e:  # bad files; weights that are not there (WeightsUnavailable)
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"predictor over {1 + len(candidates)} candidates fitted on {len(x)} mixes; saved to {args.out}")
    if args.leave_one_out:
        regret = leave_one_out(x, y, candidates, start, args.steps)
        print("leave-one-out mean regret in reward (lower is better): "
              + ", ".join(f"{k} {v:.3f}" for k, v in regret.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
