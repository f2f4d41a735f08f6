"""Benchmark ``cacm-synthetic``: the correct vs an incorrect constraint over a λ sweep on synthetic shifts."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from oral6_core import registry
from oral6_core.bench import markdown_table, mean_std, new_figure, save_figure
from oral6_core.components import Benchmark, BenchResult
from oral6_core.config import ComponentConfig

from .selection import escape_pipes, train_and_select

# shift -> {constraint label: attribute type CACM is told}
CONSTRAINTS = {
    "causal": {"correct: g ⊥ A | Y, E": "causal", "incorrect: g ⊥ A | E": "independent"},
    "confounded": {"correct: g ⊥ A | E": "confounded", "incorrect: g ⊥ A | Y, E": "causal"},
}
RULES = {"val": "training-domain val", "oracle": "oracle"}


class SyntheticBenchConfig(ComponentConfig):
    seeds: list[int] = Field([0, 1, 2], description="Seeds (each generates its own data and initialisation).")
    lambdas: list[float] = Field([0.0, 1.0, 10.0, 100.0, 1000.0], description="Penalty weights λ swept.")
    shifts: list[str] = Field(["causal", "confounded"], description="Synthetic shifts.")
    epochs: int = Field(25, ge=1, description="Training epochs per run.")
    batch_size: int = Field(128, ge=8, description="Minibatch size.")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate.")
    hidden: list[int] = Field([32, 32], description="MLP hidden widths.")
    samples_per_env: int = Field(1000, ge=50, description="Rows per environment.")
    threads: int = Field(1, ge=1, description="torch CPU threads.")


class SyntheticBenchmark(Benchmark):
    """CACM with the right vs a wrong constraint on synthetic causal / confounded shifts, across λ."""

    name = "cacm-synthetic"
    Config = SyntheticBenchConfig
    readme = Path(__file__).parents[2] / "README.md"

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config
        seeds, lambdas, shifts, epochs, samples = c.seeds, c.lambdas, c.shifts, c.epochs, c.samples_per_env
        if quick:
            seeds, lambdas, shifts, epochs, samples = seeds[:1], [0.0, lambdas[-1]], shifts[:1], 2, 200
        threads = torch.get_num_threads()
        torch.set_num_threads(c.threads)
        rows: list[dict[str, Any]] = []
        try:
            for shift in shifts:
                source = registry.create("dataset", "shift-synthetic", {"shift": shift, "samples_per_env": samples})
                data = {seed: source.load_splits(seed) for seed in seeds}
                for label, attr_type in CONSTRAINTS[shift].items():
                    results = {lam: [self._train(data[s], attr_type, lam, s, epochs) for s in seeds] for lam in lambdas}
                    for rule, rule_label in RULES.items():
                        row: dict[str, Any] = {"shift": shift, "constraint": label, "selection": rule_label}
                        for lam in lambdas:
                            accs = [getattr(a, "train_domain_selection" if rule == "val" else "oracle_selection") for a in results[lam]]
                            row[f"λ={lam:g}"] = mean_std(accs, scale=100)
                            row[f"_{lam:g}"] = accs
                        rows.append(row)
        finally:
            torch.set_num_threads(threads)
        claims = self.claims(rows, lambdas)
        plot = self.plot(rows, lambdas, shifts, out_dir / "cacm_synthetic.png")
        columns = ["shift", "constraint", "selection", *(f"λ={lam:g}" for lam in lambdas)]
        note = f"Test-domain accuracy (%), mean ± std over {len(seeds)} seed(s), {epochs} epochs.\n\n"
        claim_lines = "".join(f"- {k}: {'held' if v else 'did not hold'}\n" for k, v in claims.items())
        return BenchResult(rows, note + markdown_table(escape_pipes(rows), columns) + "\n" + claim_lines, [plot], claims)

    def _train(self, splits: Any, attr_type: str, lam: float, seed: int, epochs: int) -> Any:
        c = self.config
        options = {"attribute_types": {"a": attr_type}, "lambda_causal": lam, "lambda_confounded": lam,
                   "lambda_independent": lam, "lambda_selected": lam}
        return train_and_select(splits, "cacm", options, seed, epochs, c.batch_size, c.lr, c.hidden)

    @staticmethod
    def claims(rows: list[dict[str, Any]], lambdas: list[float]) -> dict[str, bool]:
        """Per shift (training-domain selection): the wrong constraint loses ≥ 5 points from the smallest to the
        largest λ, and the correct one beats it at the largest λ."""
        claims: dict[str, bool] = {}
        if len(lambdas) < 2:
            return claims
        lo, hi = f"_{lambdas[0]:g}", f"_{lambdas[-1]:g}"
        for shift in dict.fromkeys(r["shift"] for r in rows):
            mine = [r for r in rows if r["shift"] == shift and r["selection"] == RULES["val"]]
            right = next(r for r in mine if r["constraint"].startswith("correct"))
            wrong = next(r for r in mine if r["constraint"].startswith("incorrect"))
            drop = statistics.mean(wrong[lo]) - statistics.mean(wrong[hi])
            claims[f"{shift}: the wrong constraint degrades as λ grows (≥5 points)"] = drop >= 0.05
            claims[f"{shift}: the correct constraint beats the wrong one at λ={lambdas[-1]:g}"] = (
                statistics.mean(right[hi]) > statistics.mean(wrong[hi])
            )
        return claims

    @staticmethod
    def plot(rows: list[dict[str, Any]], lambdas: list[float], shifts: list[str], path: Path) -> Path:
        """Accuracy vs λ (symlog axis), one panel per shift; solid: training-domain selection, dashed: oracle."""
        fig, axes = new_figure(1, len(shifts), figsize=(5 * len(shifts), 3.6), squeeze=False)
        for ax, shift in zip(axes[0], shifts):
            for row in (r for r in rows if r["shift"] == shift):
                means = [100 * statistics.mean(row[f"_{lam:g}"]) for lam in lambdas]
                style = "-" if row["selection"] == RULES["val"] else "--"
                colour = "tab:green" if row["constraint"].startswith("correct") else "tab:red"
                ax.plot(lambdas, means, style, color=colour, marker="o", label=f"{row['constraint']} ({row['selection']})")
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlabel("λ")
            ax.set_title(f"{shift} shift")
            ax.axhline(50, color="grey", lw=0.8, ls=":")
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("test-domain accuracy (%)")
        return save_figure(fig, path)
