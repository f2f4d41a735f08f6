"""The sequential protocol of a stream of environments: after each environment, every environment seen so far is
scored on its held-out data; at the end, final scores, forgetting, debiased leakage and the dims each one uses."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from torch import Tensor

from ..components import Environment
from . import disentanglement


def evaluation_data(env: Environment) -> Any:
    """The data an environment is scored on: its held-out set, or its training data when it has none."""
    return env.held_out if env.held_out is not None else env.data


def used_dims(codes: np.ndarray, relative: float = 0.1) -> np.ndarray:
    """Code dims whose standard deviation exceeds ``relative`` × the largest (boolean [D])."""
    spread = codes.std(axis=0)
    return spread > relative * max(float(spread.max()), 1e-12)


class StreamScores:
    """Scores of a model on a stream, environment after environment (call ``after_environment(k)`` after each).

    Per (after k, environment j ≤ k): the metrics of ``evaluate_representation`` on environment j's
    held-out data (its training data when the stream has no held-out sets) and the dims the code uses
    on it. After each k > 0: the debiased ``leakage`` of environment k's new factors (those no earlier
    environment varies) into the dims used on the earlier environments after k − 1. ``dci_trees`` and
    ``dci_samples`` go to ``evaluate_representation``; ``extra(env, codes)`` (optional) adds fields to each
    row from the environment and its codes on the evaluation data.
    """

    def __init__(self, encode: Callable[[Tensor], Tensor], stream: Sequence[Environment], seed: int = 0,
                 num_samples: int = 2000, dci_trees: int = 20, dci_samples: int | None = 1000,
                 extra: Callable[[Environment, np.ndarray], dict[str, Any]] | None = None) -> None:
        self.encode, self.stream, self.seed, self.num_samples = encode, list(stream), seed, num_samples
        self.dci = {"dci_trees": dci_trees, "dci_samples": dci_samples}
        self.extra = extra
        self.held_out = all(env.held_out is not None for env in self.stream)
        self.rows: list[dict[str, Any]] = []
        self.used: dict[tuple[int, int], np.ndarray] = {}
        self.leakage: list[float] = []

    def _codes(self, env: Environment) -> tuple[np.ndarray, np.ndarray]:
        data = evaluation_data(env)
        n = min(len(data.x), self.num_samples)
        return disentanglement.encode_dataset(self.encode, data.x[:n]), data.y[:n].long().cpu().numpy()

    def after_environment(self, index: int) -> list[dict[str, Any]]:
        """Score environments 0..index after training on ``index``; returns their rows (``after`` counts from 1)."""
        rows = []
        for seen, env in enumerate(self.stream[: index + 1]):
            scores = disentanglement.evaluate_representation(self.encode, evaluation_data(env), env.factor_names,
                                                             self.num_samples, seed=self.seed, **self.dci)
            codes = self._codes(env)[0]
            self.used[(index, seen)] = used_dims(codes)
            rows.append({"after": index + 1, "environment": env.name, **scores,
                         "active_dims": int(self.used[(index, seen)].sum()),
                         **(self.extra(env, codes) if self.extra is not None else {})})
        if index > 0:
            env = self.stream[index]
            earlier = {f for e in self.stream[:index] for f in e.varying}
            new = [env.factor_names.index(f) for f in env.varying if f not in earlier]
            old_dims = np.any([self.used[(index - 1, j)] for j in range(index)], axis=0)
            codes, factors = self._codes(env)
            self.leakage.append(disentanglement.leakage(codes, factors, old_dims, new, seed=self.seed))
        self.rows.extend(rows)
        return rows

    def summary(self) -> dict[str, Any]:
        """Final scores (mean over environments after the last), forgetting (mean over the earlier environments of
        the score after their own environment minus after the last; positive = forgotten), mean leakage and the
        active dims of each environment after it."""
        last = max(r["after"] for r in self.rows)
        by = {(r["after"], i): r for i in range(last) for r in self.rows if r["environment"] == self.stream[i].name}
        keys = [k for k, v in self.rows[0].items() if isinstance(v, float)]
        summary: dict[str, Any] = {"scored_on": "held-out" if self.held_out else "training data"}
        for key in keys:
            summary[f"final_{key}"] = float(np.mean([by[(last, i)][key] for i in range(last)]))
        if last > 1:
            for key in keys:
                summary[f"forgetting_{key}"] = float(np.mean([by[(i + 1, i)][key] - by[(last, i)][key] for i in range(last - 1)]))
            summary["leakage"] = float(np.mean(self.leakage))
            summary["leakage_per_environment"] = [round(v, 4) for v in self.leakage]
        summary["active_dims"] = [by[(i + 1, i)]["active_dims"] for i in range(last)]
        return summary
