"""Benchmark ``fishleg-autoencoder``: deep ReLU auto-encoders (Bernoulli) trained with FishLeg and its peers.

Each optimizer gets a small learning-rate sweep (seed 0, selected by final validation loss); the
selected learning rate is then rerun with the remaining seeds and the final test loss is reported
as mean ± std. Step times are measured in this process, relative to Adam on the same model.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import torch
from oral6_core import registry
from oral6_core.bench import markdown_table, mean_std, new_figure, save_figure
from oral6_core.progress import track
from oral6_core.components import Benchmark, BenchResult, OptimizerFactory, Task
from oral6_core.config import ComponentConfig, TrainConfig
from oral6_core.data import DataBundle
from oral6_core.errors import NonFiniteLossError
from oral6_core.training import fit, resolve_device, seed_everything
from pydantic import Field
from torch import nn

from .autoencoders import autoencoder, autoencoder_bundle
from .likelihoods import BernoulliLikelihood
from .optimizer import FishLeg, FishLegConfig

ENCODERS = {"digits": [64, 128, 64, 16], "curves": [256, 96, 48, 24, 6]}


class SOAPConfig(ComponentConfig):
    lr: float = Field(3e-3, gt=0, description="Learning rate.")


class SOAPFactory(OptimizerFactory):
    """SOAP (Shampoo with Adam in the preconditioner's eigenbasis), from the pytorch-optimizer package."""

    name = "soap"
    Config = SOAPConfig

    def build(self, model: nn.Module, task: Task) -> torch.optim.Optimizer:
        from pytorch_optimizer import SOAP

        return SOAP(model.parameters(), lr=self.config.lr, weight_decay=0.0)


class FishLegAutoencoderConfig(ComponentConfig):
    datasets: list[Literal["digits", "curves"]] = Field(["digits", "curves"], description="Auto-encoder datasets.")
    batch_sizes: list[int] = Field([32, 256], description="Minibatch sizes to compare.")
    epochs: int = Field(20, ge=1, description="Training epochs per run.")
    seeds: int = Field(3, ge=1, description="Seeds run at each optimizer's selected learning rate.")
    fishleg_lrs: list[float] = Field([0.1, 0.2, 0.4], description=(
        "FishLeg η sweep (η_sgd = 0.05 and the other options at their defaults)."))
    adam_lrs: list[float] = Field([1e-3, 3e-3, 1e-2], description="Adam learning-rate sweep.")
    sgd_lrs: list[float] = Field([3e-3, 1e-2, 3e-2], description="SGD (momentum 0.9) learning-rate sweep.")
    soap_lrs: list[float] = Field([1e-3, 3e-3, 1e-2], description=(
        "SOAP learning-rate sweep."))
    curves_images: int = Field(2400, ge=20, description="Number of procedural CURVES images.")
    timing_steps: int = Field(200, ge=5, description="Steps timed per optimizer for the step-time ratios.")
    device: Literal["cpu", "auto"] = Field("cpu", description="Where to train (auto: cuda when present).")
    threads: int = Field(1, ge=1, description="torch CPU threads (1 keeps timings stable on a shared machine).")


QUICK = {"datasets": ["digits", "curves"], "epochs": 1, "seeds": 1, "fishleg_lrs": [0.1], "adam_lrs": [3e-3],
         "sgd_lrs": [3e-3], "soap_lrs": [3e-3], "curves_images": 200, "timing_steps": 10}


class FishLegAutoencoderBenchmark(Benchmark):
    """FishLeg vs Adam, SGD-momentum and SOAP on deep auto-encoders (digits, CURVES), two batch sizes."""

    name = "fishleg-autoencoder"
    Config = FishLegAutoencoderConfig
    readme: ClassVar[Path | None] = Path(__file__).parents[2] / "README.md"

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config.model_copy(update=QUICK) if quick else self.config
        threads = torch.get_num_threads()
        torch.set_num_threads(c.threads)
        try:
            return self._run(c, out_dir)
        finally:
            torch.set_num_threads(threads)

    def _run(self, c: FishLegAutoencoderConfig, out_dir: Path) -> BenchResult:
        methods = self._methods(c)
        rows: list[dict[str, Any]] = []
        curves: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
        for dataset in c.datasets:
            bundle = autoencoder_bundle(dataset, c.curves_images)
            for batch in c.batch_sizes:
                for label, (make, lrs) in track(list(methods.items()), f"fishleg-autoencoder {dataset} batch {batch}", "method"):
                    row, history = self._tune_and_repeat(c, bundle, dataset, batch, label, make, lrs)
                    rows.append(row)
                    curves[(dataset, batch, label)] = history
        timing = self._timing_rows(c)
        claims = self._claims(rows, timing, c)
        files = [self._plot(curves, c, out_dir / "fishleg_autoencoder.png")]
        columns = ["dataset", "batch", "optimizer", "lr", "test loss", "sec/epoch", "runs"]
        markdown = (
            f"Deep ReLU auto-encoders, Bernoulli NLL per image (nats), {c.epochs} epochs, {c.seeds} seed(s) at the lr "
            f"selected by validation loss from the sweep.\n\n" + markdown_table(rows, columns, digits=3)
            + "\nStep time relative to Adam on the digits auto-encoder (same process):\n\n"
            + markdown_table(timing, ["batch", "adam ms/step", "fishleg step (no aux) ×adam", "aux update ×adam step",
                                      "fishleg amortised ×adam"], digits=2)
            + "\nClaims:\n\n" + "\n".join(f"- {k}: {'held' if v else 'did not hold'}" for k, v in claims.items()) + "\n"
        )
        return BenchResult(rows=rows + timing, markdown=markdown, files=files, claims=claims)

    def _methods(self, c: FishLegAutoencoderConfig) -> dict[str, tuple[Callable[[float], OptimizerFactory], list[float]]]:
        return {
            "fishleg": (lambda lr: registry.create("optimizer", "fishleg", {"lr": lr}), c.fishleg_lrs),
            "adam": (lambda lr: registry.create("optimizer", "adam", {"lr": lr}), c.adam_lrs),
            "sgd-m": (lambda lr: registry.create("optimizer", "sgd", {"lr": lr, "momentum": 0.9}), c.sgd_lrs),
            "soap": (lambda lr: SOAPFactory(SOAPConfig(lr=lr)), c.soap_lrs),
        }

    def _train(self, c: FishLegAutoencoderConfig, bundle: DataBundle, dataset: str, batch: int,
               factory: OptimizerFactory, seed: int) -> list[dict[str, Any]]:
        seed_everything(seed)
        model = autoencoder(ENCODERS[dataset])
        train = TrainConfig(epochs=c.epochs, batch_size=batch, seed=seed, device=c.device, progress=False, checkpoint=False)
        try:
            return fit(model, bundle, factory, train).history
        except NonFiniteLossError:
            return [{"epoch": 1, "val_loss": math.inf, "test_loss": math.inf, "time": math.nan}]

    def _tune_and_repeat(
        self, c: FishLegAutoencoderConfig, bundle: DataBundle, dataset: str, batch: int, label: str,
        make: Callable[[float], OptimizerFactory], lrs: list[float],
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        sweep = {lr: self._train(c, bundle, dataset, batch, make(lr), 0) for lr in lrs}
        best = min(lrs, key=lambda lr: _finite(sweep[lr][-1]["val_loss"]))
        histories = [sweep[best]] + [self._train(c, bundle, dataset, batch, make(best), s) for s in range(1, c.seeds)]
        finals = [h[-1]["test_loss"] for h in histories]
        seconds = [h[-1]["time"] / len(h) for h in histories]
        row = {"dataset": dataset, "batch": batch, "optimizer": label, "lr": best, "test loss": mean_std(finals, 2),
               "test_loss_mean": statistics.mean(finals), "sec/epoch": statistics.mean(seconds), "runs": len(lrs) + c.seeds - 1}
        return row, histories[0]

    def _timing_rows(self, c: FishLegAutoencoderConfig) -> list[dict[str, Any]]:
        device = resolve_device(c.device)
        x = autoencoder_bundle("digits").train.x.to(device)
        likelihood = BernoulliLikelihood()
        out = []
        for batch in c.batch_sizes:
            data = x[:batch]
            adam = _ms_per_step(lambda m: torch.optim.Adam(m.parameters(), 1e-3), data, likelihood, c.timing_steps)
            plain = _ms_per_step(lambda m: FishLeg(m, likelihood, FishLegConfig(aux_every=10**9, aux_warmup=0)),
                                 data, likelihood, c.timing_steps)
            aux = _ms_per_aux_update(data, likelihood, max(c.timing_steps // 5, 2))
            every = FishLegConfig().aux_every
            out.append({"batch": batch, "adam ms/step": adam, "fishleg step (no aux) ×adam": plain / adam,
                        "aux update ×adam step": aux / adam, "fishleg amortised ×adam": (plain + aux / every) / adam})
        return out

    def _claims(self, rows: list[dict[str, Any]], timing: list[dict[str, Any]], c: FishLegAutoencoderConfig) -> dict[str, bool]:
        claims: dict[str, bool] = {}
        loss = {(r["dataset"], r["batch"], r["optimizer"]): r["test_loss_mean"] for r in rows}
        for dataset in c.datasets:
            margins = {}
            for batch in c.batch_sizes:
                fishleg = loss[(dataset, batch, "fishleg")]
                first_order = min(loss[(dataset, batch, "adam")], loss[(dataset, batch, "sgd-m")])
                margins[batch] = first_order - fishleg
                claims[f"{dataset}, batch {batch}: FishLeg below tuned Adam and SGD-m"] = margins[batch] > 0
                soap = loss.get((dataset, batch, "soap"))
                if soap is not None:
                    claims[f"{dataset}, batch {batch}: FishLeg within 2% of SOAP or below"] = fishleg <= 1.02 * soap
            small, large = min(c.batch_sizes), max(c.batch_sizes)
            if small != large:
                claims[f"{dataset}: FishLeg's advantage larger at batch {small} than at {large}"] = (
                    margins[small] > max(margins[large], 0.0))
        for t in timing:
            claims[f"batch {t['batch']}: FishLeg amortised step time ≤ 1.3× Adam"] = t["fishleg amortised ×adam"] <= 1.3
        return claims

    def _plot(self, curves: dict[tuple[str, int, str], list[dict[str, Any]]], c: FishLegAutoencoderConfig, path: Path) -> Path:
        panels = [(d, b) for d in c.datasets for b in c.batch_sizes]
        fig, axes = new_figure(2, len(panels), figsize=(4 * len(panels), 6.5), squeeze=False)
        for col, (dataset, batch) in enumerate(panels):
            for (d, b, label), history in curves.items():
                if (d, b) != (dataset, batch):
                    continue
                loss = [h["test_loss"] for h in history]
                axes[0][col].plot([h["epoch"] for h in history], loss, label=label)
                axes[1][col].plot([h["time"] for h in history], loss, label=label)
            axes[0][col].set_title(f"{dataset}, batch {batch}")
            axes[0][col].set_xlabel("epoch")
            axes[1][col].set_xlabel("training seconds")
            for row in (0, 1):
                axes[row][col].set_ylabel("test NLL per image")
                axes[row][col].legend(fontsize=8)
        return save_figure(fig, path)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def _ms_per_step(make: Callable[[nn.Module], torch.optim.Optimizer], x: torch.Tensor, likelihood: BernoulliLikelihood,
                 steps: int) -> float:
    """Milliseconds per forward + backward + optimizer step on the digits auto-encoder (after 5 warm-up steps)."""
    torch.manual_seed(0)
    model = autoencoder(ENCODERS["digits"]).to(x.device)
    opt = make(model)
    observe = getattr(opt, "observe", None)
    for i in range(steps + 5):
        if i == 5:
            _sync(x)
            start = time.perf_counter()
        if observe is not None:
            observe(x)
        opt.zero_grad(set_to_none=True)
        likelihood.nll(model(x), x).backward()
        opt.step()
    _sync(x)
    return (time.perf_counter() - start) * 1e3 / steps


def _ms_per_aux_update(x: torch.Tensor, likelihood: BernoulliLikelihood, updates: int) -> float:
    """Milliseconds per auxiliary update of λ (Fisher-vector product + Adam step on λ)."""
    torch.manual_seed(0)
    model = autoencoder(ENCODERS["digits"]).to(x.device)
    opt = FishLeg(model, likelihood, FishLegConfig(aux_every=10**9, aux_warmup=0))
    opt.observe(x)
    likelihood.nll(model(x), x).backward()
    opt.step()
    for i in range(updates + 2):
        if i == 2:
            _sync(x)
            start = time.perf_counter()
        opt.aux_update()
    _sync(x)
    return (time.perf_counter() - start) * 1e3 / updates


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
