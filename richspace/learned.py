"""A predictor of a mix's mixing parameters from its embeddings: one forward pass per new mix, no optimisation.

    python -m richspace.learned --refinement RUN/refinement.json --experiments configs/experiments/toy-dev.yaml \
        --out runs/learned-toy                    # fit on the development mixes' refined parameters
    python infer.py --data.learned_from runs/learned-toy        # adds the `learned` video to each mix

``MixPredictor`` is a small LightningModule: an MLP from a few geometric features of
(E_a, E_b, E_guide) (``mix_features``: the finder's alpha, where the guide's foot lies on
the line, how far the guide is off the line, and the three pairwise cosines) to the
parameters refinement moved. It learns from refinement's per-mix optima on the development
mixes (the search against the reward: richspace.refinement), so the reward is the same, and
it is then applied to mixes it never saw. The features are invariant to the embedding's
width, so the same code serves the toy T5 and CogVideoX's T5-XXL. Saved as safetensors and
a JSON of its settings; loaded with ``load_predictor``.
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

FEATURES = ("finder_alpha", "foot", "off_line", "cos_ab", "cos_guide_a", "cos_guide_b")


def mix_features(e_a: Tensor, e_b: Tensor, e_guide: Tensor, finder_alpha: float) -> Tensor:
    """(6,) float32 features of a mix (FEATURES order), from its (L, d) embeddings and the finder's alpha."""
    e_a, e_b, e_guide = e_a.double(), e_b.double(), e_guide.double()
    t = perpendicular_foot(e_a, e_b, e_guide, "global")
    foot = interpolate(e_a, e_b, 1 - t)
    off = (e_guide - foot).norm() / (e_a - e_b).norm().clamp_min(1e-12)
    values = [finder_alpha, float(1 - t), float(off), float(phi_cos(e_a, e_b)), float(phi_cos(e_guide, e_a)),
              float(phi_cos(e_guide, e_b))]
    return torch.tensor(values, dtype=torch.float32)


class MixPredictor(L.LightningModule):
    """features -> the refined parameters (standardised in and out); the others keep ``base``'s values."""

    def __init__(self, params: list[str], base: dict[str, float | None], hidden: int = 32, lr: float = 1e-2,
                 weight_decay: float = 1e-3) -> None:
        super().__init__()
        unknown = [p for p in params if p not in PARAMS]
        if unknown or not params:
            raise ValueError(f"the predictor's params must be parameters of {list(PARAMS)}; got {params}")
        # Kept by hand, not save_hyperparameters: built inside another class's __init__ (the datamodule's), Lightning's
        # frame inspection would collect that one's arguments instead.
        self.config = {"params": list(params), "base": dict(base), "hidden": hidden, "lr": lr,
                       "weight_decay": weight_decay}
        self.net = nn.Sequential(nn.Linear(len(FEATURES), hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, len(params)))
        for name, size in (("x_mean", len(FEATURES)), ("x_std", len(FEATURES)), ("y_mean", len(params)),
                           ("y_std", len(params))):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))

    def standardise(self, x: Tensor, y: Tensor) -> None:
        """Sets the input and output statistics from the training set."""
        self.x_mean.copy_(x.mean(0))
        self.x_std.copy_(x.std(0).clamp_min(1e-6))
        self.y_mean.copy_(y.mean(0))
        self.y_std.copy_(y.std(0).clamp_min(1e-6) if len(y) > 1 else torch.ones_like(self.y_std))

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.x_mean) / self.x_std) * self.y_std + self.y_mean

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = nn.functional.mse_loss((self(x) - self.y_mean) / self.y_std, (y - self.y_mean) / self.y_std)
        self.log("learned/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.config["lr"], weight_decay=self.config["weight_decay"])

    @torch.no_grad()
    def predict_params(self, features: Tensor) -> MixParams:
        """One mix's parameters: the prediction for the refined ones, ``base`` for the rest."""
        out = self(features[None])[0]
        values = dict(self.config["base"]) | {p: float(v) for p, v in zip(self.config["params"], out)}
        values["alpha"] = min(max(values["alpha"], -1.0), 2.0)
        for w in ("w_a", "w_b"):
            values[w] = max(values.get(w) or 0.0, 0.0)
        if values.get("w_mix") is not None:
            values["w_mix"] = max(values["w_mix"], 0.0)
        return MixParams.from_dict(values)

    def predict(self, result) -> MixParams:
        """Parameters for a finder result (richspace.mixing.MixResult)."""
        return self.predict_params(mix_features(result.e_a, result.e_b, result.e_guide, result.alpha))


def fit_predictor(features: Tensor, targets: Tensor, params: list[str], base: dict, steps: int = 1500,
                  seed: int = 0) -> MixPredictor:
    """Fits a MixPredictor on (N, 6) features and (N, len(params)) targets, full batch, on the CPU."""
    from torch.utils.data import DataLoader, TensorDataset

    L.seed_everything(seed, verbose=False)
    model = MixPredictor(params, base)
    model.standardise(features, targets)
    loader = DataLoader(TensorDataset(features, targets), batch_size=len(features), shuffle=False)
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


def training_set(refinement: Path, experiments: str, pretrained: str, max_sequence_length: int, cache_dir=None):
    """(features, targets, params, base) from a refinement result file and the specs it refined."""
    from richspace.data import MixDataModule, load_refinement
    from richspace.mixing import find_mixes

    refined = load_refinement(refinement)
    info = json.loads(Path(refinement).read_text())
    params = info.get("params") or ["alpha"]
    data = MixDataModule(experiments=experiments, pretrained=pretrained, max_sequence_length=max_sequence_length,
                         cache_dir=cache_dir, compose=None)
    data.prepare_data()
    results = find_mixes(data.specs, data._encoder(), data.k, data.scoring, data.projection)
    missing = [i for i in refined if i not in results]
    if missing:
        raise ValueError(f"{refinement} refined mixes {missing} that {experiments} does not hold")
    xs, ys = [], []
    for mix_id, entry in refined.items():
        r = results[mix_id]
        xs.append(mix_features(r.e_a, r.e_b, r.e_guide, r.alpha))
        ys.append(torch.tensor([getattr(entry["params"], p) for p in params], dtype=torch.float32))
    first = next(iter(refined.values()))["params"].to_dict()
    base = {p: v for p, v in first.items() if p not in params}
    return torch.stack(xs), torch.stack(ys), params, base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refinement", required=True, help="refinement.json of train.py on the development mixes")
    parser.add_argument("--experiments", required=True, help="the specs file it refined")
    parser.add_argument("--out", required=True, help="directory for the predictor")
    parser.add_argument("--pretrained", default="toy", help="CogVideoX whose T5 encodes the prompts")
    parser.add_argument("--max_sequence_length", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    try:
        x, y, params, base = training_set(Path(args.refinement), args.experiments, args.pretrained,
                                          args.max_sequence_length)
        model = fit_predictor(x, y, params, base, args.steps)
        save_predictor(model, Path(args.out))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with torch.no_grad():
        fit = (model(x) - y).abs().mean(0)
    print(f"predictor of {params} fitted on {len(x)} mixes (mean abs error on them: "
          + ", ".join(f"{p} {float(e):.3f}" for p, e in zip(params, fit)) + f"); saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
