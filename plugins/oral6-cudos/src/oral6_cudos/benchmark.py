"""Benchmark ``cudos-stream``: CUDOS vs β-VAE and β-VAE + generative replay on the shapes3d stream."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from oral6_core import registry
from oral6_core.bench import markdown_table, mean_std, new_figure, save_figure
from oral6_core.components import Benchmark, BenchResult, Environment
from oral6_core.config import ComponentConfig
from oral6_core.metrics.disentanglement import encode_dataset, evaluate_representation, leakage

MODELS = ("cudos", "beta-vae", "beta-vae-replay")


class CUDOSStreamConfig(ComponentConfig):
    seeds: list[int] = Field([0, 1], description="Seeds (data order, initialisation).")
    dataset: str = Field("shapes3d-stream", description="A stream dataset of this plugin.")
    samples_per_environment: int = Field(600, ge=64, description="Images per environment.")
    latent_dim: int = Field(10, ge=2, description="Latent dimensions of every model.")
    som_side: int = Field(8, ge=2, description="CUDOS SOM grid side (rows = cols).")
    epochs_first: int = Field(10, ge=1, description="Epochs on the first environment.")
    epochs_next: int = Field(5, ge=1, description="Epochs on each later environment.")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of every model's encoder and decoder.")
    time_scale: float = Field(40.0, gt=0, description="CUDOS: the spike-vector learning rate (reference: 5e-4) × this, "
                              "so that a run of a few hundred steps moves it; the SOM keeps the reference's rates.")
    beta: float = Field(4.0, ge=0, description="β of the β-VAE baselines.")
    eval_samples: int = Field(600, ge=64, description="Points per metric evaluation.")
    threads: int = Field(1, ge=1, description="torch CPU threads.")


class CUDOSStreamBenchmark(Benchmark):
    """CUDOS vs β-VAE (sequential) and β-VAE + replay: MIG/DCI per environment, forgetting and leakage."""

    name = "cudos-stream"
    Config = CUDOSStreamConfig
    readme = Path(__file__).parents[2] / "README.md"

    def model_options(self, name: str, steps: int, seed: int, quick: bool) -> dict[str, Any]:
        c = self.config
        options: dict[str, Any] = {"latent_dim": c.latent_dim, "epochs_first": c.epochs_first, "epochs_next": c.epochs_next,
                                   "seed": seed, "device": "cpu", "lr": c.lr, "channels": (16, 32, 32, 64), "hidden": 128}
        if quick:
            options.update(channels=(8, 8, 16, 16), hidden=32)
        if name == "cudos":
            # σ anneals from a third of the first environment to its end (the reference: steps 750 → 2000).
            # The SOM steps once per code (64 per batch) as in the reference, so its reference rates move it.
            options.update(som_rows=c.som_side, som_cols=c.som_side, anneal_begin=steps // 3, anneal_end=steps,
                           spike_lr=5e-4 * c.time_scale)
        else:
            options["beta"] = c.beta
        return options

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config
        threads = torch.get_num_threads()
        torch.set_num_threads(c.threads)
        try:
            return self._run(out_dir, quick)
        finally:
            torch.set_num_threads(threads)

    def _run(self, out_dir: Path, quick: bool) -> BenchResult:
        c = self.config
        seeds = c.seeds[:1] if quick else c.seeds
        samples = 96 if quick else c.samples_per_environment
        eval_samples = 96 if quick else c.eval_samples
        if quick:
            self.config = c.model_copy(update={"epochs_first": 1, "epochs_next": 1, "latent_dim": 4, "som_side": 3})
        stream = registry.create("dataset", c.dataset, {"samples_per_environment": samples}).load(0).stream
        stream = stream[:2] if quick else stream
        steps_first = self.config.epochs_first * -(-samples // 64)
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODELS}
        for seed in seeds:
            for name in MODELS:
                torch.manual_seed(seed)
                pictures = out_dir / name if seed == seeds[0] else None
                runs[name].append(self.run_one(name, stream, seed, steps_first, eval_samples, quick, pictures))
        self.config = c
        rows = self.summary_rows(runs)
        files = [self.plot(runs, len(stream), out_dir / "cudos-stream.png"), *sorted(out_dir.glob("*/env*.png"))]
        claims = self.claims(rows, runs)
        markdown = markdown_table(rows) + "\n" + "\n".join(f"- {claim}: {'held' if ok else 'did not hold'}" for claim, ok in claims.items()) + "\n"
        return BenchResult(rows, markdown, files, claims)

    def run_one(self, name: str, stream: list[Environment], seed: int, steps: int, eval_samples: int, quick: bool,
                pictures: Path | None) -> dict[str, Any]:
        """Train one model on the stream; metrics of every seen environment after each, leakage, active dims, time.

        With ``pictures``, the model's pictures after each environment are written there.
        """
        model = registry.create("generative-model", name, self.model_options(name, steps, seed, quick))
        scores: dict[tuple[int, int], dict[str, float]] = {}
        leaks: list[float] = []
        old_dims: list[np.ndarray] = []
        train_seconds = [0.0]
        started = [time.perf_counter()]

        def after(index: int, env: Environment) -> None:
            train_seconds[0] += time.perf_counter() - started[0]
            for seen in range(index + 1):
                e = stream[seen]
                scores[(index, seen)] = evaluate_representation(model.encode, e.data, e.factor_names, eval_samples, seed,
                                                               dci_trees=10 if quick else 100)
            codes = encode_dataset(model.encode, env.data.x[:eval_samples])
            if index > 0:
                previous = set(stream[index - 1].varying)
                new = [env.factor_names.index(f) for f in env.varying if f not in previous]
                factors = env.data.y[:eval_samples].numpy()
                leaks.append(leakage(codes, factors, old_dims[-1], new))
            spread = codes.std(axis=0)
            old_dims.append(spread > 0.1 * max(spread.max(), 1e-12))
            if pictures is not None:
                model.save_visuals(pictures, index)
            started[0] = time.perf_counter()

        model.fit(stream, after)
        active = [int(model.active_dims(k).sum()) for k in range(len(stream))] if hasattr(model, "active_dims") else []
        return {"scores": scores, "leakage": leaks, "active": active, "seconds": train_seconds[0]}

    def summary_rows(self, runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """One row per model: scores after the first and the last environment, forgetting, leakage, time ratio."""
        baseline_seconds = statistics.mean(r["seconds"] for r in runs["beta-vae"])
        rows = []
        for name, results in runs.items():
            last = max(k for k, _ in results[0]["scores"])

            def per_seed(fn: Any) -> list[float]:
                return [float(fn(r)) for r in results]

            final = lambda r, key: np.mean([r["scores"][(last, j)][key] for j in range(last + 1)])  # noqa: E731
            rows.append({
                "model": name,
                "final MIG (all envs)": mean_std(per_seed(lambda r: final(r, "mig")), 3),
                "final DCI-D (all envs)": mean_std(per_seed(lambda r: final(r, "dci_disentanglement")), 3),
                "final FactorVAE": mean_std(per_seed(lambda r: final(r, "factorvae")), 3),
                "env1 MIG after env1": mean_std(per_seed(lambda r: r["scores"][(0, 0)]["mig"]), 3),
                "env1 MIG at end": mean_std(per_seed(lambda r: r["scores"][(last, 0)]["mig"]), 3),
                "MIG forgetting": mean_std(per_seed(lambda r: r["scores"][(0, 0)]["mig"] - r["scores"][(last, 0)]["mig"]), 3),
                "DCI-D forgetting": mean_std(per_seed(lambda r: r["scores"][(0, 0)]["dci_disentanglement"]
                                                   - r["scores"][(last, 0)]["dci_disentanglement"]), 3),
                "leakage": mean_std(per_seed(lambda r: np.mean(r["leakage"]) if r["leakage"] else 0.0), 3),
                "active dims per env": " / ".join(str(a) for a in results[0]["active"]) or "–",
                "train time ×β-VAE": f"{statistics.mean(r['seconds'] for r in results) / baseline_seconds:.2f}",
                "_final_mig": float(np.mean(per_seed(lambda r: final(r, "mig")))),
                "_final_dci": float(np.mean(per_seed(lambda r: final(r, "dci_disentanglement")))),
                "_forgetting": float(np.mean(per_seed(lambda r: r["scores"][(0, 0)]["mig"] - r["scores"][(last, 0)]["mig"]))),
                "_leakage": float(np.mean(per_seed(lambda r: np.mean(r["leakage"]) if r["leakage"] else 0.0))),
            })
        return rows

    def claims(self, rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> dict[str, bool]:
        """The paper's claims, checked on the summary rows (private ``_`` keys are removed afterwards)."""
        by = {r["model"]: r for r in rows}
        others = [m for m in MODELS if m != "cudos"]
        active = [r["active"] for r in runs["cudos"]]
        claims = {
            "CUDOS ends with the best mean MIG": all(by["cudos"]["_final_mig"] > by[m]["_final_mig"] for m in others),
            "CUDOS ends with the best mean DCI disentanglement": all(by["cudos"]["_final_dci"] > by[m]["_final_dci"] for m in others),
            "CUDOS forgets env1's disentanglement least (MIG)": all(by["cudos"]["_forgetting"] < by[m]["_forgetting"] for m in others),
            "CUDOS leaks new factors least into earlier dims": all(by["cudos"]["_leakage"] < by[m]["_leakage"] for m in others),
            "CUDOS spikes switch on more dims as environments add factors": all(
                all(b >= a for a, b in zip(act, act[1:])) and act[-1] > act[0] for act in active),
        }
        for r in rows:
            for key in [k for k in r if k.startswith("_")]:
                del r[key]
        return claims

    def plot(self, runs: dict[str, list[dict[str, Any]]], num_envs: int, path: Path) -> Path:
        """Left: env1 MIG after each environment (forgetting); right: final MIG per environment."""
        fig, (left, right) = new_figure(1, 2, figsize=(10, 3.8))
        width = 0.8 / len(runs)
        for i, (name, results) in enumerate(runs.items()):
            stages = np.array([[r["scores"][(k, 0)]["mig"] for k in range(num_envs)] for r in results])
            left.errorbar(np.arange(1, num_envs + 1), stages.mean(0), yerr=stages.std(0), marker="o", label=name, capsize=3)
            final = np.array([[r["scores"][(num_envs - 1, j)]["mig"] for j in range(num_envs)] for r in results])
            right.bar(np.arange(1, num_envs + 1) + (i - 1) * width, final.mean(0), width, yerr=final.std(0), label=name, capsize=2)
        left.set(xlabel="after environment", ylabel="MIG on environment 1", title="retention of environment 1")
        right.set(xlabel="environment", ylabel="MIG at the end", title="final MIG per environment")
        left.set_xticks(range(1, num_envs + 1))
        right.set_xticks(range(1, num_envs + 1))
        left.legend(fontsize=8)
        return save_figure(fig, path)
