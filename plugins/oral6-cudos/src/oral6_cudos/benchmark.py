"""Benchmark ``cudos-stream``: CUDOS vs β-VAE and β-VAE + generative replay on a stream where forgetting shows."""

from __future__ import annotations

import copy
import multiprocessing
import re
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch.nn import functional as F

from oral6_core import registry
from oral6_core.bench import markdown_table, mean_std, new_figure, save_figure
from oral6_core.components import Benchmark, BenchResult, Environment
from oral6_core.config import ComponentConfig
from oral6_core.metrics.disentanglement import encode_dataset, mig, normalized_mutual_information
from oral6_core.metrics.stream import StreamScores, evaluation_data

from .som import hit_perplexity

BASELINES = ("beta-vae", "beta-vae-replay")


class CUDOSStreamConfig(ComponentConfig):
    seeds: list[int] = Field([0, 1, 2], description="Seeds (data draws, data order, initialisation).")
    dataset: str = Field("dsprites-split", description="A stream dataset of this plugin.")
    image_size: int = Field(16, ge=16, description="Side of the rendered images.")
    samples_per_environment: int = Field(20000, ge=64, description="Training images per environment (rendered: 20,000 take about 5 s per environment).")
    steps_first: int = Field(6000, ge=1, description="Steps (batches of 64) on the first environment (β-VAE's MIG on it reaches the published range after about 6,000).")
    steps_next: int = Field(1600, ge=1, description="Steps on each later environment.")
    latent_dim: int = Field(10, ge=2, description="Latent dimensions of every model.")
    channels: tuple[int, ...] = Field((16, 32, 64), description="Conv widths of every model.")
    hidden: int = Field(128, ge=8, description="FC width of every model.")
    som_side: int = Field(8, ge=2, description="CUDOS SOM grid side (rows = cols).")
    lr: float = Field(5e-4, gt=0, description="Adam learning rate of every model (CUDOS's reference rate, spikes included).")
    beta: float = Field(4.0, ge=0, description="β of the β-VAE baselines.")
    combined_codes: list[Literal["prototype-shared", "encoder-shared"]] = Field(
        ["prototype-shared", "encoder-shared"], min_length=1,
        description="CUDOS's combined codes (see the model's option), one CUDOS row each.")
    eval_samples: int = Field(2000, ge=64, description="Held-out points per environment and evaluation.")
    dci_samples: int = Field(1000, ge=64, description="Of those, points used by DCI (see the metrics' calibration).")
    dci_trees: int = Field(20, ge=1, description="Boosting stages of DCI's classifiers.")
    curve_samples: int = Field(1000, ge=64, description="Held-out points per environment of the MIG recorded after each epoch (the training curves).")
    threads: int = Field(1, ge=1, description="torch CPU threads (of each process).")
    workers: int = Field(1, ge=1, description="(seed, model) runs in this many processes at once (1: in this process).")


class CUDOSStreamBenchmark(Benchmark):
    """CUDOS vs β-VAE (sequential) and β-VAE + replay: scores per environment on held-out data, forgetting, dims used."""

    name = "cudos-stream"
    Config = CUDOSStreamConfig
    readme = Path(__file__).parents[2] / "README.md"

    def entries(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """The compared models: row label -> (registered name, options beyond the shared ones)."""
        cudos = {("cudos" if kind == "prototype-shared" else f"cudos ({kind})"): ("cudos", {"combined_code": kind})
                 for kind in self.config.combined_codes}
        return {**cudos, **{name: (name, {}) for name in BASELINES}}

    def model_options(self, name: str, seed: int, epochs: tuple[int, int], quick: bool) -> dict[str, Any]:
        """Options of model ``name`` (a registered name) shared by every row that uses it."""
        c = self.config
        options: dict[str, Any] = {"latent_dim": c.latent_dim, "epochs_first": epochs[0], "epochs_next": epochs[1],
                                   "seed": seed, "device": "cpu", "lr": c.lr, "channels": c.channels, "hidden": c.hidden}
        if quick:
            options.update(channels=(8,) * len(c.channels), hidden=32)
        if name == "cudos":
            # σ anneals from a third of the first environment to its end (the reference: steps 750 → 2000 of a longer run).
            options.update(som_rows=c.som_side, som_cols=c.som_side, spike_lr=c.lr,
                           anneal_begin=c.steps_first // 3, anneal_end=c.steps_first)
        else:
            options["beta"] = c.beta
        return options

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config
        threads = torch.get_num_threads()
        torch.set_num_threads(c.threads)
        try:
            if quick:
                self.config = c.model_copy(update={"seeds": c.seeds[:1], "samples_per_environment": 96, "steps_first": 2,
                                                   "steps_next": 2, "latent_dim": 4, "som_side": 3, "eval_samples": 96,
                                                   "dci_samples": 96, "dci_trees": 5})
            return self._run(out_dir, quick)
        finally:
            self.config = c
            torch.set_num_threads(threads)

    def streams(self, seed: int, quick: bool) -> tuple[list[Environment], list[Environment]]:
        """Training and held-out streams (the dataset's held-out sets, drawn with another data seed)."""
        c = self.config
        options = {"samples_per_environment": c.samples_per_environment, "image_size": c.image_size, "data_seed": seed,
                   "held_out_samples": c.eval_samples}
        stream = registry.create("dataset", c.dataset, options).load(seed).stream[: 2 if quick else None]
        return stream, [Environment(e.name, e.held_out, e.factor_names, e.varying) for e in stream]

    def _run(self, out_dir: Path, quick: bool) -> BenchResult:
        c = self.config
        jobs = [(name, seed) for name in self.groups() for seed in c.seeds]  # CUDOS's (the longest) first
        if c.workers == 1:
            results = [self.run_job(name, seed, quick, out_dir) for name, seed in jobs]
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(c.workers, len(jobs)), mp_context=context) as pool:
                results = list(pool.map(_run_job, *zip(*[(c, name, seed, quick, out_dir) for name, seed in jobs])))
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in self.entries()}
        for result in results:
            for label, run in result.items():
                runs[label].append(run)
        held_out = self.streams(c.seeds[0], quick)[1]
        rows = self.summary_rows(runs)
        files = [self.plot(runs, out_dir / "cudos-stream.png"), self.plot_curves(runs, out_dir / "cudos-stream-curves.png"),
                 *sorted(out_dir.glob("*/env*.png"))]
        claims = self.claims(rows, runs)
        verdicts = "\n".join(f"- {claim}: {'held' if ok else 'did not hold'}" for claim, ok in claims.items())
        markdown = (markdown_table(rows) + "\n" + self.per_environment_table(runs, held_out) + "\n"
                    + self.dims_table(runs, held_out) + "\n" + verdicts + "\n")
        return BenchResult(rows, markdown, files, claims)

    def epochs(self) -> tuple[int, int]:
        """Epochs on the first and on each later environment that come closest to ``steps_first`` / ``steps_next``."""
        c = self.config
        batches = -(-c.samples_per_environment // 64)
        return max(1, round(c.steps_first / batches)), max(1, round(c.steps_next / batches))

    def groups(self) -> dict[str, list[str]]:
        """Registered model name -> the rows that use it; those rows differ only in options that act after
        environment 1 (CUDOS's combined code), so one job trains environment 1 once for all of them."""
        groups: dict[str, list[str]] = {}
        for label, (name, _) in self.entries().items():
            groups.setdefault(name, []).append(label)
        return groups

    def run_job(self, name: str, seed: int, quick: bool, out_dir: Path) -> dict[str, dict[str, Any]]:
        """The rows of model ``name`` on seed ``seed``'s stream: row label -> the ``StreamRun`` result; the first seed
        writes each row's pictures under ``out_dir``."""
        c = self.config
        entries, labels = self.entries(), self.groups()[name]
        train, _ = self.streams(seed, quick)
        epochs = self.epochs()

        def start(label: str) -> Any:
            return registry.create("generative-model", name, {**self.model_options(name, seed, epochs, quick), **entries[label][1]})

        def pictures(label: str) -> Path | None:
            return out_dir / re.sub(r"[^a-z0-9-]+", "-", label).strip("-") if seed == c.seeds[0] else None

        torch.manual_seed(seed)
        first = StreamRun(start(labels[0]), train, seed, c, pictures(labels[0]))
        if len(labels) > 1:
            first.fit(train[:1])
        rng = torch.get_rng_state()  # each row goes on from here as if it had trained environment 1 itself
        runs = [first, *(first.branch(start(label), pictures(label)) for label in labels[1:])]
        results = {}
        for label, run in zip(labels, runs):
            torch.set_rng_state(rng)
            run.fit(train)
            results[label] = run.result()
        return results

    def summary_rows(self, runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """One row per model: final scores, forgetting (after own environment minus at the end), dims, leakage, time."""
        baseline = statistics.mean(r["seconds"] / max(r["steps"], 1) for r in runs["beta-vae"])
        rows = []
        for name, results in runs.items():
            values = {key: [fn(r) for r in results] for key, fn in {
                "mig": lambda r: final(r, "mig"), "dci": lambda r: final(r, "dci_disentanglement"),
                "forget_mig": lambda r: forgetting(r, "mig"), "forget_dci": lambda r: forgetting(r, "dci_disentanglement"),
                "forget_recon": lambda r: -forgetting(r, "recon"), "leak": lambda r: float(np.mean(r["leakage"] or [0.0])),
                "reuse": shared_factor_reuse, "new_dims": new_dims_per_environment}.items()}
            rows.append({
                "model": name,
                "final MIG": mean_std(values["mig"], 3),
                "final DCI-D": mean_std(values["dci"], 3),
                "MIG forgetting": mean_std(values["forget_mig"], 3),
                "DCI-D forgetting": mean_std(values["forget_dci"], 3),
                "BCE forgetting": mean_std(values["forget_recon"], 1),
                "leakage": mean_std(values["leak"], 3),
                "new dims per env": " / ".join(f"{np.mean(d):.1f}" for d in zip(*values["new_dims"])),
                "shared factor on the same dim": f"{sum(values['reuse'])}/{len(values['reuse'])}",
                "own MIG at ½ → end of its env": convergence_cell(results),
                "spike dims per env": " / ".join(str(a) for a in results[0]["spike_dims"]) or "–",
                "s/step": f"{statistics.mean(r['seconds'] / max(r['steps'], 1) for r in results):.3f}",
                "time/step ×β-VAE": f"{statistics.mean(r['seconds'] / max(r['steps'], 1) for r in results) / baseline:.2f}",
                "_values": values,
            })
        return rows

    def per_environment_table(self, runs: dict[str, list[dict[str, Any]]], held_out: list[Environment]) -> str:
        """Per model: MIG and DCI-D of each environment after its own and after the last (mean over seeds);
        for CUDOS also the dims whose spike exceeds the threshold and the largest spike after each environment, and
        how the SOM is used (its largest mixture weight, the perplexity of the environment's BMU hits)."""
        rows = []
        for name, results in runs.items():
            last = max(k for k, _ in results[0]["scores"])
            row: dict[str, Any] = {"model": name}
            for j, env in enumerate(held_out[: last + 1]):
                for key, label in (("mig", "MIG"), ("dci_disentanglement", "DCI-D")):
                    own = np.mean([r["scores"][(j, j)][key] for r in results])
                    end = np.mean([r["scores"][(last, j)][key] for r in results])
                    row[f"{env.name}: {label} (own → end)"] = f"{own:.3f} → {end:.3f}"
            if results[0]["spike_dims_after_own"]:
                row["spike dims / largest spike after each env (seed %d)" % self.config.seeds[0]] = " / ".join(
                    f"{d} ({m:.2f})" for d, m in zip(results[0]["spike_dims_after_own"], results[0]["largest_spike_after_own"]))
                row["SOM: largest π, BMU-hit perplexity after each env (mean over seeds)"] = " / ".join(
                    f"{np.mean(pis):.2f}, {np.mean(ppls):.1f}" for pis, ppls in
                    (zip(*stage) for stage in zip(*(r["som_usage"] for r in results))))
            rows.append(row)
        return markdown_table(rows)

    def dims_table(self, runs: dict[str, list[dict[str, Any]]], held_out: list[Environment]) -> str:
        """Per model (first seed), after the last environment: the dim holding each factor of each environment."""
        rows = []
        for name, results in runs.items():
            scores = results[0]["scores"]
            last = max(k for k, _ in scores)
            row: dict[str, Any] = {"model (seed %d)" % self.config.seeds[0]: name}
            for j, env in enumerate(held_out):
                if (last, j) in scores:
                    dims = scores[(last, j)]["factor_dims"]
                    own = scores[(j, j)]["factor_dims"]
                    row[f"{env.name}: factor → dim (after own env → at end)"] = ", ".join(
                        f"{f} {own[f]}→{dims[f]}" for f in env.varying)
            rows.append(row)
        return markdown_table(rows)

    def claims(self, rows: list[dict[str, Any]], runs: dict[str, list[dict[str, Any]]]) -> dict[str, bool]:
        """The paper's claims for each CUDOS row against both baselines; a comparison holds only when the mean gap
        exceeds the larger sample std over seeds of the two (with one seed: never)."""
        by = {r["model"]: r.pop("_values") for r in rows}
        claims = {}
        for label in (name for name in by if name not in BASELINES):

            def beats(key: str, higher: bool) -> bool:
                mine = np.array(by[label][key])
                if len(mine) < 2:
                    return False
                for other in BASELINES:
                    theirs = np.array(by[other][key])
                    gap = (mine.mean() - theirs.mean()) * (1 if higher else -1)
                    if gap <= max(mine.std(ddof=1), theirs.std(ddof=1)):  # the sample std the table shows
                        return False
                return True

            who = label.replace("cudos", "CUDOS")
            claims.update({
                f"{who} ends with the best mean MIG (beyond seed std)": beats("mig", True),
                f"{who} ends with the best mean DCI disentanglement (beyond seed std)": beats("dci", True),
                f"{who} forgets earlier environments' MIG least (beyond seed std)": beats("forget_mig", False),
                f"{who} forgets earlier environments' reconstructions least (beyond seed std)": beats("forget_recon", False),
                f"{who} leaks new factors least into earlier dims (beyond seed std)": beats("leak", False),
                f"{who} keeps the shared factor on one dim more often than both baselines": all(
                    sum(by[label]["reuse"]) > sum(by[m]["reuse"]) for m in BASELINES),
            })
        return claims

    def plot(self, runs: dict[str, list[dict[str, Any]]], path: Path) -> Path:
        """Left: MIG of each earlier environment after every later one (mean over them); right: final MIG per environment."""
        fig, (left, right) = new_figure(1, 2, figsize=(10, 3.8))
        width = 0.8 / len(runs)
        for i, (name, results) in enumerate(runs.items()):
            num_envs = max(k for k, _ in results[0]["scores"]) + 1
            stages = np.array([[r["scores"][(k, 0)]["mig"] for k in range(num_envs)] for r in results])
            left.errorbar(np.arange(1, num_envs + 1), stages.mean(0), yerr=stages.std(0), marker="o", label=name, capsize=3)
            last = np.array([[r["scores"][(num_envs - 1, j)]["mig"] for j in range(num_envs)] for r in results])
            right.bar(np.arange(1, num_envs + 1) + (i - (len(runs) - 1) / 2) * width, last.mean(0), width, yerr=last.std(0), label=name, capsize=2)
        left.set(xlabel="after environment", ylabel="MIG on environment 1 (held out)", title="retention of environment 1")
        right.set(xlabel="environment", ylabel="MIG at the end (held out)", title="final MIG per environment")
        left.legend(fontsize=8)
        return save_figure(fig, path)


    def plot_curves(self, runs: dict[str, list[dict[str, Any]]], path: Path) -> Path:
        """One panel per environment: its held-out MIG after every epoch of the stream (mean over seeds, band = std),
        dotted lines where environments end."""
        curve = next(iter(runs.values()))[0]["curve"]
        num_envs = max(p["environment"] for p in curve) + 1
        fig, axes = new_figure(1, num_envs, figsize=(4 * num_envs, 3.6), squeeze=False)
        ends = [max(p["step"] for p in curve if p["environment"] == k) for k in range(num_envs)]
        for j, ax in enumerate(axes[0]):
            for name, results in runs.items():
                points = [i for i, p in enumerate(results[0]["curve"]) if p["environment"] >= j]
                steps = [results[0]["curve"][i]["step"] for i in points]
                values = np.array([[r["curve"][i]["mig"][j] for i in points] for r in results])
                ax.plot(steps, values.mean(0), label=name)
                ax.fill_between(steps, values.mean(0) - values.std(0), values.mean(0) + values.std(0), alpha=0.15)
            for end in ends[:-1]:
                ax.axvline(end, color="grey", linestyle=":", linewidth=1)
            ax.set(xlabel="training step", ylabel=f"MIG on environment {j + 1} (held out)", title=f"environment {j + 1}")
        axes[0][0].legend(fontsize=8)
        return save_figure(fig, path)


def convergence_cell(results: list[dict[str, Any]]) -> str:
    """"half → end" per environment: its own MIG half way through its steps and at its end (mean over seeds)."""
    per_seed = [halfway(r["curve"]) for r in results]
    return " / ".join(f"{np.mean([h[0][k] for h in per_seed]):.3f} → {np.mean([h[1][k] for h in per_seed]):.3f}"
                      for k in range(len(per_seed[0][0])))


def halfway(curve: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Per environment: its own MIG at the epoch closest to half its steps, and after its last epoch."""
    half, end, begin = [], [], 0
    for k in range(max(p["environment"] for p in curve) + 1):
        own = [p for p in curve if p["environment"] == k]
        middle = min(own, key=lambda p: abs(p["step"] - (begin + own[-1]["step"]) / 2))
        half.append(middle["mig"][k])
        end.append(own[-1]["mig"][k])
        begin = own[-1]["step"]
    return half, end


def _run_job(config: CUDOSStreamConfig, name: str, seed: int, quick: bool, out_dir: Path) -> dict[str, dict[str, Any]]:
    """``CUDOSStreamBenchmark.run_job`` in a worker process (the benchmark's settings, quick ones included)."""
    torch.set_num_threads(config.threads)
    return CUDOSStreamBenchmark(config).run_job(name, seed, quick, out_dir)


class StreamRun:
    """One model on one seed's stream, scored after each environment on every seen environment's held-out data
    (``oral6_core.metrics.stream``) and, for the training curves, by MIG alone after every epoch.

    Records per (after, environment): the metrics, the held-out reconstruction BCE, the dims the code
    uses on that environment (std > 0.1 × the largest) and the dim that holds most of each factor; for CUDOS
    also each environment's spike vector and the SOM's use after it. With ``pictures``, the model's pictures
    after each environment are written there.
    """

    def __init__(self, model: Any, train: list[Environment], seed: int, config: CUDOSStreamConfig,
                 pictures: Path | None) -> None:
        self.model, self.train, self.seed, self.config, self.pictures = model, train, seed, config, pictures
        self.stream = StreamScores(model.encode, train, seed, config.eval_samples, config.dci_trees, config.dci_samples,
                                   self.extra)
        self.spikes: list[torch.Tensor] = []
        self.som_usage: list[tuple[float, float]] = []  # largest π, perplexity of the environment's BMU hits
        self.curve: list[dict[str, Any]] = []  # after each epoch: global step, environment, MIG of each seen one
        self.seconds = 0.0  # training only (evaluation and pictures excluded)
        self._started = 0.0

    def fit(self, environments: list[Environment]) -> None:
        """Train on ``environments`` (those already learnt are skipped)."""
        self._started = time.perf_counter()
        self.model.fit(environments, self.after_environment, self.after_epoch)

    def branch(self, model: Any, pictures: Path | None) -> StreamRun:
        """A run that goes on from this one's state and records with ``model``, a model of the same kind whose
        options differ only in what acts later; the pictures of the environments done are written for it too."""
        model.load_state(copy.deepcopy(self.model.state()))
        twin = StreamRun(model, self.train, self.seed, self.config, pictures)
        twin.stream.rows, twin.stream.used, twin.stream.leakage = copy.deepcopy(
            (self.stream.rows, self.stream.used, self.stream.leakage))
        twin.spikes, twin.som_usage, twin.curve = copy.deepcopy((self.spikes, self.som_usage, self.curve))
        twin.seconds = self.seconds
        if pictures is not None:
            for index in range(model.environments_done):
                model.save_visuals(pictures, index)
        return twin

    def _pause(self) -> None:
        self.seconds += time.perf_counter() - self._started

    def _resume(self) -> None:
        self._started = time.perf_counter()

    def extra(self, env: Environment, codes: np.ndarray) -> dict[str, Any]:
        data = evaluation_data(env)
        varying = [env.factor_names.index(f) for f in env.varying]
        nmi = normalized_mutual_information(codes, data.y.numpy()[: len(codes), varying])
        return {"recon": reconstruction_bce(self.model, data.x[: len(codes)]),
                "factor_dims": {f: int(nmi[:, i].argmax()) for i, f in enumerate(env.varying)}}

    def after_epoch(self, index: int, _epoch: int) -> None:
        self._pause()
        n = self.config.curve_samples
        migs = []
        for env in self.train[: index + 1]:
            data = evaluation_data(env)
            varying = [env.factor_names.index(f) for f in env.varying]
            codes = encode_dataset(self.model.encode, data.x[:n])
            migs.append(mig(codes, data.y[:n].long().numpy()[:, varying]))
        self.curve.append({"step": self.model.global_step, "environment": index, "mig": migs})
        self._resume()

    def after_environment(self, index: int, _env: Environment) -> None:
        self._pause()
        self.stream.after_environment(index)
        if hasattr(self.model, "active_dims"):
            self.spikes.append(self.model.spikes()[index].detach())
            largest = float(self.model.som.log_mixture_weights().detach().exp().max())
            self.som_usage.append((largest, hit_perplexity(self.model.node_hits[:, index])))
        if self.pictures is not None:
            self.model.save_visuals(self.pictures, index)
        self._resume()

    def result(self) -> dict[str, Any]:
        """What the tables, claims and plots read (plain data, so it crosses process boundaries)."""
        model, train = self.model, self.train
        threshold = getattr(model.config, "active_threshold", 0.5)
        scores = {(r["after"] - 1, j): {**r, "used": self.stream.used[(r["after"] - 1, j)]}
                  for r in self.stream.rows for j, env in enumerate(train) if env.name == r["environment"]}
        return {"scores": scores, "leakage": self.stream.leakage, "seconds": self.seconds, "steps": model.global_step,
                "spike_dims": [int(model.active_dims(k).sum()) for k in range(len(train))] if hasattr(model, "active_dims") else [],
                "spike_dims_after_own": [int((s > threshold).sum()) for s in self.spikes],
                "largest_spike_after_own": [float(s.max()) for s in self.spikes], "som_usage": self.som_usage,
                "curve": self.curve}


@torch.no_grad()
def reconstruction_bce(model: Any, x: torch.Tensor, batch_size: int = 256) -> float:
    """Mean per-image BCE of ``x`` against ``decode(encode(x))`` (the model's mean code)."""
    total = 0.0
    for i in range(0, len(x), batch_size):
        chunk = x[i : i + batch_size]
        pixels = model.decode(model.encode(chunk)).clamp(1e-6, 1 - 1e-6).cpu()
        total += float(F.binary_cross_entropy(pixels, chunk, reduction="sum"))
    return total / len(x)


def final(result: dict[str, Any], key: str) -> float:
    """``key`` after the last environment, averaged over all environments."""
    last = max(k for k, _ in result["scores"])
    return float(np.mean([result["scores"][(last, j)][key] for j in range(last + 1)]))


def forgetting(result: dict[str, Any], key: str) -> float:
    """Mean over the earlier environments of ``key`` after their own environment minus after the last."""
    last = max(k for k, _ in result["scores"])
    return float(np.mean([result["scores"][(j, j)][key] - result["scores"][(last, j)][key] for j in range(last)] or [0.0]))


def new_dims_per_environment(result: dict[str, Any]) -> list[int]:
    """Dims the code uses on environment k (after it) that it used on no earlier environment (after each)."""
    last = max(k for k, _ in result["scores"])
    seen = np.zeros_like(result["scores"][(0, 0)]["used"])
    counts = []
    for k in range(last + 1):
        used = result["scores"][(k, k)]["used"]
        counts.append(int((used & ~seen).sum()))
        seen = seen | used
    return counts


def shared_factor_reuse(result: dict[str, Any]) -> bool:
    """Whether a factor that two environments vary sits on the same dim in both after the last one (False if none)."""
    last = max(k for k, _ in result["scores"])
    dims = [result["scores"][(last, j)]["factor_dims"] for j in range(last + 1)]
    shared = [(f, i, j) for i in range(len(dims)) for j in range(i + 1, len(dims)) for f in dims[i] if f in dims[j]]
    return bool(shared) and all(dims[i][f] == dims[j][f] for f, i, j in shared)
