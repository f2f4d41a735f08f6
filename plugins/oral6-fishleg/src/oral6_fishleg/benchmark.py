"""Benchmarks ``fishleg-autoencoder`` and ``fishleg-sparse-autoencoder``: deep ReLU auto-encoders (Bernoulli)
trained with FishLeg and its peers, dense and GMP-pruned.

Every optimizer gets a grid sweep of the same size through ``oral6_core.sweep.optimize`` (FishLeg
over η and the initial scale of Q, the others over their learning rate) on seed 0, selected by the
final validation loss; the selected configuration is then trained on fresh seeds, and only those
runs enter the reported losses and the claims. Larger batches train for proportionally more epochs,
so every batch size takes the same number of steps. The step-time ratio is measured in this
process, alternating FishLeg and Adam steps on the same batches, and ``diagnostics`` tracks the
learned Q(λ) against the exact inverse damped Fisher on a smaller auto-encoder. The sparse benchmark
runs the same sweep rule for FishLeg and Adam under gradual magnitude pruning, with FishLeg's
sparse natural gradient against the dense one projected onto the kept weights.
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
from oral6_core.components import Benchmark, BenchResult, OptimizerFactory, Pruner, Task
from oral6_core.config import ComponentConfig, TrainConfig
from oral6_core.data import DataBundle
from oral6_core.errors import ConfigError, NonFiniteLossError
from oral6_core.sweep import Trial, optimize, parse_space
from oral6_core.training import fit, resolve_device, seed_everything
from pydantic import Field
from torch import nn

from .autoencoders import autoencoder, autoencoder_bundle
from .diagnostics import track_inverse_fisher
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


class AutoencoderSweepConfig(ComponentConfig):
    datasets: list[Literal["digits", "curves"]] = Field(["digits", "curves"], description="Auto-encoder datasets.")
    batch_sizes: list[int] = Field([32, 256], description="Minibatch sizes to compare (the first is the small one).")
    epochs: int = Field(30, ge=1, description=(
        "Epochs at the first batch size; larger batches train proportionally more epochs, so all take the same number "
        "of steps (to within one epoch)."))
    seeds: int = Field(3, ge=1, description="Fresh seeds (1, 2, ...) run with each optimizer's selected configuration.")
    fishleg_lrs: list[float] = Field([0.02, 0.05], description="FishLeg η grid.")
    fishleg_init_scales: list[float] = Field([5.0, 10.0], description="FishLeg grid of the initial scale s, Q₀ = s·I.")
    adam_lrs: list[float] = Field([1e-3, 3e-3, 1e-2, 3e-2], description="Adam learning-rate grid.")
    curves_images: int = Field(600, ge=20, description="Number of procedural CURVES images.")
    diagnostic_steps: int = Field(400, ge=2, description="FishLeg steps tracked against the exact inverse Fisher.")
    diagnostic_seeds: int = Field(3, ge=1, description="Seeds of the inverse-Fisher diagnostics.")
    diagnostic_encoder: list[int] = Field([64, 8, 2], description=(
        "Widths (input to code) of the digits auto-encoder small enough for the exact Fisher in the diagnostics."))
    diagnostic_probe: int = Field(64, ge=1, description="Training images on which the diagnostics' exact Fisher is built.")
    device: Literal["cpu", "auto"] = Field("cpu", description="Where to train (auto: cuda when present).")
    threads: int = Field(1, ge=1, description="torch CPU threads (1 keeps timings stable on a shared machine).")


class FishLegAutoencoderConfig(AutoencoderSweepConfig):
    sgd_lrs: list[float] = Field([3e-3, 1e-2, 3e-2, 1e-1], description="SGD (momentum 0.9) learning-rate grid.")
    soap_lrs: list[float] = Field([3e-4, 1e-3, 3e-3, 1e-2], description="SOAP learning-rate grid.")
    timing_steps: int = Field(400, ge=2, description="Steps of each optimizer timed for the step-time ratio.")


class FishLegSparseAutoencoderConfig(AutoencoderSweepConfig):
    datasets: list[Literal["digits", "curves"]] = Field(["digits"], description="Auto-encoder datasets.")
    batch_sizes: list[int] = Field([32], description="Minibatch sizes to compare (the first is the small one).")
    seeds: int = Field(8, ge=1, description="Fresh seeds (1, 2, ...) run with each optimizer's selected configuration.")
    sparsity: float = Field(0.8, gt=0, lt=1, description=(
        "Final sparsity of gradual magnitude pruning (the `gmp` pruner with its default cubic schedule) over the "
        "prunable weights."))


QUICK = {"datasets": ["digits", "curves"], "batch_sizes": [32, 64], "epochs": 1, "seeds": 1, "fishleg_lrs": [0.02], "fishleg_init_scales": [10.0],
         "adam_lrs": [3e-3], "sgd_lrs": [1e-2], "soap_lrs": [3e-3], "curves_images": 200, "timing_steps": 40,
         "diagnostic_steps": 8, "diagnostic_seeds": 1, "diagnostic_probe": 8, "diagnostic_encoder": [64, 2]}
SPARSE_QUICK = {"epochs": 1, "seeds": 1, "fishleg_lrs": [0.02], "fishleg_init_scales": [10.0], "adam_lrs": [3e-3],
                "diagnostic_steps": 8, "diagnostic_seeds": 1, "diagnostic_probe": 8, "diagnostic_encoder": [64, 2]}
COST_LIMITS = {32: 1.3, 256: 1.15}
FROZEN = "fishleg, Q frozen at Q₀"
PROJECTED = "fishleg, dense Q projected"
Space = tuple[Callable[[dict[str, Any]], OptimizerFactory], dict[str, list[float]]]  # factory of options, grid


class FishLegAutoencoderBenchmark(Benchmark):
    """FishLeg vs Adam, SGD-momentum and SOAP on deep auto-encoders (digits, CURVES), two batch sizes."""

    name = "fishleg-autoencoder"
    Config = FishLegAutoencoderConfig
    readme: ClassVar[Path | None] = Path(__file__).parents[2] / "README.md"

    quick_options: ClassVar[dict[str, Any]] = QUICK

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config.model_copy(update=self.quick_options) if quick else self.config
        threads = torch.get_num_threads()
        torch.set_num_threads(c.threads)
        try:
            return self._run(c, out_dir)
        finally:
            torch.set_num_threads(threads)

    def _ablation(self, selected: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """FishLeg's selected row → the label and options of its ablation, run on the same fresh seeds.

        Here the selected configuration with λ never updated: Q stays s·I.
        """
        return FROZEN, {**selected["params"], "aux_every": selected["steps"] + 1}

    def _pruner(self, c: AutoencoderSweepConfig) -> Pruner | None:
        """A fresh pruner for one training run (none: dense)."""
        return None

    def _sweep_rows(self, c: AutoencoderSweepConfig) -> list[dict[str, Any]]:
        """Every optimizer swept and repeated on each dataset and batch size, FishLeg followed by its ablation."""
        rows: list[dict[str, Any]] = []
        for dataset in c.datasets:
            bundle = autoencoder_bundle(dataset, c.curves_images)
            for batch in c.batch_sizes:
                epochs = _equal_step_epochs(c.epochs, len(bundle.train), c.batch_sizes[0], batch)
                for label, space in track(list(_spaces(c).items()), f"{self.name} {dataset} batch {batch}", "method"):
                    rows.append(self._tune_and_repeat(c, bundle, dataset, batch, epochs, label, space))
                    if label == "fishleg":
                        ablation, options = self._ablation(rows[-1])
                        rows.append(self._repeat(c, bundle, dataset, batch, epochs, ablation, space[0], options))
        return rows

    def _run(self, c: FishLegAutoencoderConfig, out_dir: Path) -> BenchResult:
        grid = math.prod(len(v) for v in _spaces(c)["fishleg"][1].values())
        rows = self._sweep_rows(c)
        timing = _timing_rows(c)
        selected = {r["batch"]: r["params"] for r in rows if r["dataset"] == "digits" and r["optimizer"] == "fishleg"}
        diagnostics = _diagnostic_rows(c, selected)
        claims, notes = _claims(rows, timing, c)
        files = [self._plot(rows, c, out_dir / "fishleg_autoencoder.png")]
        steps = {(r["dataset"], r["batch"]): r["steps"] for r in rows}
        columns = ["dataset", "batch", "epochs", "optimizer", "selected", "val loss", "test loss", "sec/epoch"]
        markdown = (
            f"Deep ReLU auto-encoders, Bernoulli NLL per image (nats). Each optimizer: a grid sweep of "
            f"{grid} configurations on seed 0, selected by final validation loss, then "
            f"{c.seeds} fresh seed(s); the table shows the fresh seeds only (mean ± std). `{FROZEN}`: FishLeg's selected "
            f"configuration with λ never updated (momentum SGD on ḡ with lr η·s), not swept. Equal numbers of steps at "
            f"every batch size ({', '.join(f'{d} batch {b}: {s}' for (d, b), s in steps.items())} steps).\n\n"
            + markdown_table(rows, columns, digits=3)
            + "\nStep time on the digits auto-encoder, FishLeg and Adam steps alternating on the same batches "
              "(forward, backward and update; FishLeg's λ update every k steps included):\n\n"
            + markdown_table(timing, ["batch", "adam ms/step", "fishleg plain step ×adam", "fishleg λ-update step ×adam",
                                      "fishleg amortised ×adam"], digits=2)
            + f"\nLearned Q(λ) against the exact F_γ⁻¹ on a {'-'.join(map(str, c.diagnostic_encoder))}-… digits "
              f"auto-encoder (FishLeg with the configuration selected on digits at each batch size, mean over "
              f"{c.diagnostic_seeds} seed(s); ḡ: the update direction; random: 8 fixed random directions; Q₀ = s·I for comparison; A − A*: the exact auxiliary loss above its minimum "
              "along ḡ):\n\n"
            + markdown_table(diagnostics, ["batch", "step", "ḡ rel. error", "ḡ cosine", "ḡ ‖Qu‖/‖F⁻¹u‖",
                                           "ḡ rel. error Q₀", "random rel. error", "random cosine",
                                           "random ‖Qu‖/‖F⁻¹u‖", "A − A* along ḡ"], digits=3)
            + "\nClaims (fresh seeds only):\n\n"
            + "\n".join(f"- {k}: **{'held' if v else 'did not hold'}** ({notes[k]})" for k, v in claims.items()) + "\n"
        )
        return BenchResult(rows=rows + timing + diagnostics, markdown=markdown, files=files, claims=claims)

    def _train(self, c: AutoencoderSweepConfig, bundle: DataBundle, dataset: str, batch: int, epochs: int,
               factory: OptimizerFactory, seed: int, trial: Trial | None = None) -> list[dict[str, Any]]:
        seed_everything(seed)
        model = autoencoder(ENCODERS[dataset])
        train = TrainConfig(epochs=epochs, batch_size=batch, seed=seed, device=c.device, progress=False, checkpoint=False)
        history = fit(model, bundle, factory, train, pruner=self._pruner(c)).history
        if trial is not None:
            for row in history:
                trial.report(row["val_loss"], row["epoch"])
            trial.set_attr("test_loss", history[-1]["test_loss"])
        return history

    def _tune_and_repeat(self, c: AutoencoderSweepConfig, bundle: DataBundle, dataset: str, batch: int, epochs: int,
                         label: str, space: Space) -> dict[str, Any]:
        make, grid = space

        def objective(trial: Trial) -> float:
            options = {k.removeprefix("optimizer."): v for k, v in trial.params.items()}
            return self._train(c, bundle, dataset, batch, epochs, make(options), 0, trial)[-1]["val_loss"]

        sweep = optimize(objective, parse_space({f"optimizer.{k}": {"choices": v} for k, v in grid.items()}),
                         trials=None, sampler="grid", seed=0, study_name=f"{dataset}-{batch}-{label}")
        best = {k.removeprefix("optimizer."): v for k, v in sweep.best_params.items()}
        return {**self._repeat(c, bundle, dataset, batch, epochs, label, make, best), "sweep": sweep.to_json()}

    def _repeat(self, c: AutoencoderSweepConfig, bundle: DataBundle, dataset: str, batch: int, epochs: int, label: str,
                make: Callable[[dict[str, Any]], OptimizerFactory], options: dict[str, Any]) -> dict[str, Any]:
        """``options`` trained on the fresh seeds 1..seeds: the reported row."""
        histories = []
        for seed in range(1, c.seeds + 1):
            try:
                histories.append(self._train(c, bundle, dataset, batch, epochs, make(options), seed))
            except NonFiniteLossError:
                histories.append([{"epoch": e + 1, "val_loss": math.inf, "test_loss": math.inf, "time": math.nan}
                                  for e in range(epochs)])
        finals = [h[-1]["test_loss"] for h in histories]
        return {
            "dataset": dataset, "batch": batch, "epochs": epochs, "steps": epochs * math.ceil(len(bundle.train) / batch),
            "optimizer": label, "selected": _described(options), "params": options,
            "val loss": mean_std([h[-1]["val_loss"] for h in histories], 2), "test loss": mean_std(finals, 2),
            "test_losses": finals, "sec/epoch": statistics.mean(h[-1]["time"] / len(h) for h in histories),
            "test_loss_per_epoch": [statistics.mean(h[e]["test_loss"] for h in histories) for e in range(epochs)],
            "seconds_per_epoch": [statistics.mean(h[e]["time"] for h in histories) for e in range(epochs)],
            **({"sparsity": statistics.mean(sparsity)} if (sparsity := [h[-1]["sparsity"] for h in histories
                                                                         if "sparsity" in h[-1]]) else {}),
        }

    def _plot(self, rows: list[dict[str, Any]], c: AutoencoderSweepConfig, path: Path) -> Path:
        panels = [(d, b) for d in c.datasets for b in c.batch_sizes]
        fig, axes = new_figure(2, len(panels), figsize=(4 * len(panels), 6.5), squeeze=False)
        for col, (dataset, batch) in enumerate(panels):
            for row in rows:
                if (row["dataset"], row["batch"]) != (dataset, batch):
                    continue
                loss = row["test_loss_per_epoch"]
                axes[0][col].plot(range(1, len(loss) + 1), loss, label=row["optimizer"])
                axes[1][col].plot(row["seconds_per_epoch"], loss, label=row["optimizer"])
            axes[0][col].set_title(f"{dataset}, batch {batch}")
            axes[0][col].set_xlabel("epoch")
            axes[1][col].set_xlabel("training seconds")
            for r in (0, 1):
                axes[r][col].set_ylabel(f"test NLL per image (mean of {c.seeds} seeds)")
                axes[r][col].legend(fontsize=8)
        return save_figure(fig, path)


def _described(options: dict[str, Any]) -> str:
    """``lr=0.05, sparse=false``: options as the README tables show them."""
    return ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else f'{v:g}'}" for k, v in options.items())


def _equal_step_epochs(epochs: int, examples: int, first_batch: int, batch: int) -> int:
    """Epochs at ``batch`` that take (to within one epoch) as many steps as ``epochs`` at ``first_batch``."""
    return max(1, round(epochs * math.ceil(examples / first_batch) / math.ceil(examples / batch)))


def _spaces(c: AutoencoderSweepConfig) -> dict[str, Space]:
    """Each optimizer's factory and grid (SGD-m and SOAP in the dense benchmark); every grid has the same number of points."""
    spaces: dict[str, Space] = {
        "fishleg": (lambda o: registry.create("optimizer", "fishleg", o),
                    {"lr": c.fishleg_lrs, "init_scale": c.fishleg_init_scales}),
        "adam": (lambda o: registry.create("optimizer", "adam", o), {"lr": c.adam_lrs}),
    }
    if isinstance(c, FishLegAutoencoderConfig):
        spaces["sgd-m"] = (lambda o: registry.create("optimizer", "sgd", {**o, "momentum": 0.9}), {"lr": c.sgd_lrs})
        spaces["soap"] = (lambda o: SOAPFactory(SOAPConfig(**o)), {"lr": c.soap_lrs})
    sizes = {label: math.prod(len(v) for v in grid.values()) for label, (_, grid) in spaces.items()}
    if len(set(sizes.values())) != 1:
        raise ConfigError(f"Every optimizer must get the same number of configurations; the grids have {sizes}. "
                          "Change fishleg_lrs × fishleg_init_scales or the learning-rate lists so that they match.")
    return spaces


def _timing_rows(c: FishLegAutoencoderConfig) -> list[dict[str, Any]]:
    """Step times of FishLeg (defaults) and Adam, alternating on the same batches of the digits training set."""
    device = resolve_device(c.device)
    x = autoencoder_bundle("digits").train.x.to(device)
    likelihood = BernoulliLikelihood()
    k = FishLegConfig().aux_every
    out = []
    for batch in c.batch_sizes:
        torch.manual_seed(0)
        models = [autoencoder(ENCODERS["digits"]).to(device) for _ in range(2)]
        adam = torch.optim.Adam(models[0].parameters(), 1e-3)
        fishleg = FishLeg(models[1], likelihood)
        generator = torch.Generator(device=device).manual_seed(0)
        times: dict[str, list[float]] = {"adam": [], "plain": [], "aux": []}
        warmup = 2 * k
        for step in range(1, warmup + c.timing_steps + 1):
            data = x[torch.randint(len(x), (batch,), generator=generator, device=device)]
            for name, opt, model in (("adam", adam, models[0]), ("fishleg", fishleg, models[1])):
                seconds = _timed_step(opt, model, data, likelihood)
                if step > warmup:
                    times[name if name == "adam" else ("aux" if step % k == 0 else "plain")].append(seconds)
        adam_ms = statistics.median(times["adam"]) * 1e3
        plain = statistics.median(times["plain"]) * 1e3
        aux = statistics.median(times["aux"]) * 1e3 if times["aux"] else plain
        out.append({"batch": batch, "adam ms/step": adam_ms, "fishleg plain step ×adam": plain / adam_ms,
                    "fishleg λ-update step ×adam": aux / adam_ms,
                    "fishleg amortised ×adam": ((k - 1) * plain + aux) / (k * adam_ms),
                    "mean ratio": sum(times["plain"] + times["aux"]) / sum(times["adam"])})
    return out


def _timed_step(opt: torch.optim.Optimizer, model: nn.Module, x: torch.Tensor, likelihood: BernoulliLikelihood) -> float:
    """Seconds of one training step: observe (FishLeg), zero_grad, forward, backward, update.

    On the CPU this is the thread's CPU time, so that other processes of a shared machine do not
    count; on a GPU it is wall-clock time after synchronising.
    """
    clock = time.perf_counter if x.is_cuda else time.thread_time
    _sync(x)
    start = clock()
    observe = getattr(opt, "observe", None)
    if observe is not None:
        observe(x)
    opt.zero_grad(set_to_none=True)
    likelihood.nll(model(x), x).backward()
    opt.step()
    _sync(x)
    return clock() - start


def _diagnostic_rows(c: FishLegAutoencoderConfig, selected: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Q(λ) against the exact F_γ⁻¹ over training on a small digits auto-encoder, averaged over seeds.

    FishLeg runs with the configuration its sweep selected on digits at the same batch size (defaults otherwise).
    """
    device = resolve_device(c.device)
    x = autoencoder_bundle("digits").train.x.to(device)
    out = []
    for batch in c.batch_sizes:
        runs = []
        for seed in range(c.diagnostic_seeds):
            torch.manual_seed(seed)
            model = autoencoder(c.diagnostic_encoder).to(device)
            config = FishLegConfig(**selected.get(batch, {}))
            runs.append(track_inverse_fisher(model, BernoulliLikelihood(), x, x, config, steps=c.diagnostic_steps,
                                             batch_size=min(batch, len(x)), probe_size=c.diagnostic_probe,
                                             seed=seed))
        out.extend({"batch": batch, **row} for row in _seed_means(runs))
    return out


def _seed_means(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """``track_inverse_fisher`` rows of several seeds → one row per step: their means, plus the table's columns."""
    out = []
    for rows in zip(*runs):
        mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0] if k != "step" and all(k in r for r in rows)}
        out.append({"step": rows[0]["step"], **mean,
                    "ḡ rel. error": mean.get("gbar_rel_error", math.nan),
                    "ḡ cosine": mean.get("gbar_cosine", math.nan),
                    "ḡ ‖Qu‖/‖F⁻¹u‖": mean.get("gbar_norm_ratio", math.nan),
                    "ḡ rel. error Q₀": mean.get("gbar_init_rel_error", math.nan),
                    "random rel. error": mean["random_rel_error"], "random cosine": mean["random_cosine"],
                    "random ‖Qu‖/‖F⁻¹u‖": mean["random_norm_ratio"],
                    "A − A* along ḡ": mean.get("gbar_aux_loss", math.nan) - mean.get("gbar_aux_optimum", math.nan)})
    return out


def _sparse_diagnostic_rows(c: FishLegSparseAutoencoderConfig, selected: dict[str, Any]) -> list[dict[str, Any]]:
    """Sparse and projected FishLeg against the exact (F_SS + γI)⁻¹ on a small digits auto-encoder, averaged over seeds.

    The first layer loses ``sparsity`` of its weights to a fixed random mask (pruning the narrow layers behind it
    as well cuts the 2-unit code off from the input); FishLeg runs with the configuration selected above.
    """
    device = resolve_device(c.device)
    x = autoencoder_bundle("digits").train.x.to(device)
    batch = min(c.batch_sizes[0], len(x))
    out = []
    for label, sparse in (("fishleg", True), (PROJECTED, False)):
        runs = []
        for seed in range(c.diagnostic_seeds):
            torch.manual_seed(seed)
            model = autoencoder(c.diagnostic_encoder).to(device)
            first = model[0].weight
            mask = torch.rand(first.shape, generator=torch.Generator().manual_seed(seed)).to(device) >= c.sparsity
            runs.append(track_inverse_fisher(model, BernoulliLikelihood(), x, x, FishLegConfig(**selected, sparse=sparse),
                                             steps=c.diagnostic_steps, batch_size=batch, probe_size=c.diagnostic_probe,
                                             seed=seed, masks={first: mask}))
        out.extend({"optimizer": label, **row} for row in _seed_means(runs))
    return out


def _gap(a: list[float], b: list[float]) -> tuple[float, float]:
    """mean(a) − mean(b) and its standard error."""
    se = math.sqrt(sum(statistics.variance(v) / len(v) if len(v) > 1 else 0.0 for v in (a, b)))
    return statistics.mean(a) - statistics.mean(b), se


def _claims(rows: list[dict[str, Any]], timing: list[dict[str, Any]], c: FishLegAutoencoderConfig
            ) -> tuple[dict[str, bool], dict[str, str]]:
    """Each claim of the paper at this scale, decided on the fresh seeds: a gap counts when it exceeds 2 standard errors."""
    claims: dict[str, bool] = {}
    notes: dict[str, str] = {}
    losses = {(r["dataset"], r["batch"], r["optimizer"]): r["test_losses"] for r in rows}
    small, large = c.batch_sizes[0], c.batch_sizes[-1]
    for dataset in c.datasets:
        margins = {}
        for batch in c.batch_sizes:
            fishleg = losses[(dataset, batch, "fishleg")]
            rival = min(("adam", "sgd-m"), key=lambda o: statistics.mean(losses[(dataset, batch, o)]))
            margin, se = _gap(losses[(dataset, batch, rival)], fishleg)
            margins[batch] = (margin, se, rival)
            key = f"{dataset}, batch {batch}: FishLeg below tuned Adam and SGD-m"
            claims[key] = margin > 2 * se
            notes[key] = f"best first-order {rival} − FishLeg = {margin:.2f} ± {se:.2f} nats"
            learned, learned_se = _gap(losses[(dataset, batch, FROZEN)], fishleg)
            key = f"{dataset}, batch {batch}: learning Q helps (FishLeg below the same with Q frozen at Q₀ = s·I)"
            claims[key] = learned > 2 * learned_se
            notes[key] = f"frozen − learned = {learned:.2f} ± {learned_se:.2f} nats"
            soap, soap_se = _gap(fishleg, losses[(dataset, batch, "soap")])
            key = f"{dataset}, batch {batch}: FishLeg within 2% of SOAP or below"
            claims[key] = soap <= 0.02 * statistics.mean(losses[(dataset, batch, "soap")])
            notes[key] = f"FishLeg − SOAP = {soap:.2f} ± {soap_se:.2f} nats"
        if small != large:
            (m_small, se_small, _), (m_large, se_large, _) = margins[small], margins[large]
            key = f"{dataset}: FishLeg's margin over first-order methods larger at batch {small} than at {large}"
            claims[key] = m_small - m_large > 2 * math.hypot(se_small, se_large)
            notes[key] = f"margins {m_small:.2f} ± {se_small:.2f} vs {m_large:.2f} ± {se_large:.2f} nats"
    for t in timing:
        limit = COST_LIMITS.get(t["batch"], 1.3)
        key = f"batch {t['batch']}: amortised FishLeg step ≤ {limit}× an Adam step"
        claims[key] = t["fishleg amortised ×adam"] <= limit
        notes[key] = f"{t['fishleg amortised ×adam']:.2f}× from medians, {t['mean ratio']:.2f}× from mean times"
    return claims, notes


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


class FishLegSparseAutoencoderBenchmark(FishLegAutoencoderBenchmark):
    """FishLeg vs Adam on a deep auto-encoder pruned by GMP: the sparse natural gradient against the projected one."""

    name = "fishleg-sparse-autoencoder"
    Config = FishLegSparseAutoencoderConfig
    quick_options: ClassVar[dict[str, Any]] = SPARSE_QUICK

    def _ablation(self, selected: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The selected configuration with ``sparse`` off: the dense Q(λ)ḡ, projected onto the kept weights by the pruner."""
        return PROJECTED, {**selected["params"], "sparse": False}

    def _pruner(self, c: AutoencoderSweepConfig) -> Pruner | None:
        return registry.create("pruner", "gmp", {"sparsity": c.sparsity})  # type: ignore[attr-defined, return-value]

    def _run(self, c: FishLegSparseAutoencoderConfig, out_dir: Path) -> BenchResult:  # type: ignore[override]
        grid = math.prod(len(v) for v in _spaces(c)["fishleg"][1].values())
        rows = self._sweep_rows(c)
        claims, notes = _sparse_claims(rows, c)
        selected = next(r["params"] for r in rows if r["optimizer"] == "fishleg")
        diagnostics = _sparse_diagnostic_rows(c, selected)
        files = [self._plot(rows, c, out_dir / "fishleg_sparse_autoencoder.png")]
        steps = {(r["dataset"], r["batch"]): r["steps"] for r in rows}
        gmp = self._pruner(c).config  # type: ignore[union-attr]
        columns = ["dataset", "batch", "epochs", "optimizer", "selected", "sparsity", "val loss", "test loss", "sec/epoch"]
        markdown = (
            f"Deep ReLU auto-encoders pruned by GMP to {c.sparsity:.0%} sparsity of the prunable weights (cubic schedule "
            f"from {gmp.start:.0%} to {gmp.end:.0%} of the steps, every {gmp.update_every} steps, {gmp.allocation} "
            f"allocation; the output layer stays dense), Bernoulli NLL per image (nats). Each "
            f"optimizer: a grid sweep of {grid} configurations on seed 0, selected by final validation loss, then "
            f"{c.seeds} fresh seed(s); the table shows the fresh seeds only (mean ± std; sparsity: measured share of "
            f"zero weights at the end). `fishleg` learns and applies the inverse Fisher of the sparse network; "
            f"`{PROJECTED}`: the same configuration with `sparse=false` (the dense Q(λ)ḡ, which the pruner projects "
            f"onto the kept weights), not swept. Steps: {', '.join(f'{d} batch {b}: {s}' for (d, b), s in steps.items())}."
            "\n\n" + markdown_table(rows, columns, digits=3)
            + f"\nLearned Q(λ) against the exact (F_SS + γI)⁻¹ of the sparse network on a "
              f"{'-'.join(map(str, c.diagnostic_encoder))}-… digits auto-encoder whose first layer keeps a fixed random "
              f"{1 - c.sparsity:.0%} of its weights (both variants with the configuration selected above "
              f"({_described(selected)}), batch {c.batch_sizes[0]}, mean "
              f"over {c.diagnostic_seeds} seed(s); everything on the kept coordinates; columns as in the dense "
              "benchmark):\n\n"
            + markdown_table(diagnostics, ["optimizer", "step", "ḡ rel. error", "ḡ cosine", "ḡ ‖Qu‖/‖F⁻¹u‖",
                                           "ḡ rel. error Q₀", "random rel. error", "A − A* along ḡ"], digits=3)
            + "\nClaims (fresh seeds only):\n\n"
            + "\n".join(f"- {k}: **{'held' if v else 'did not hold'}** ({notes[k]})" for k, v in claims.items()) + "\n"
        )
        return BenchResult(rows=rows + diagnostics, markdown=markdown, files=files, claims=claims)


def _sparse_claims(rows: list[dict[str, Any]], c: FishLegSparseAutoencoderConfig) -> tuple[dict[str, bool], dict[str, str]]:
    """The sparse benchmark's claims on the fresh seeds: a gap counts when it exceeds 2 standard errors."""
    claims: dict[str, bool] = {}
    notes: dict[str, str] = {}
    losses = {(r["dataset"], r["batch"], r["optimizer"]): r["test_losses"] for r in rows}
    for dataset in c.datasets:
        for batch in c.batch_sizes:
            fishleg = losses[(dataset, batch, "fishleg")]
            where = f"{dataset}, batch {batch}, {c.sparsity:.0%} sparse"
            for key, rival, label in (
                (f"{where}: FishLeg below tuned Adam", "adam", "adam − FishLeg"),
                (f"{where}: the sparse natural gradient below the projected dense one", PROJECTED, "projected − sparse"),
            ):
                margin, se = _gap(losses[(dataset, batch, rival)], fishleg)
                claims[key] = margin > 2 * se
                notes[key] = f"{label} = {margin:.2f} ± {se:.2f} nats"
    return claims, notes
