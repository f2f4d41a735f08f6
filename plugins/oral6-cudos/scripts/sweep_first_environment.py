"""Each model's key knob swept on environment 1 of the ``cudos-stream`` benchmark, on validation seeds.

Every value trains the model on environment 1 alone with the benchmark's settings (images, steps, networks,
rates) on seeds that the benchmark does not use (data, initialisation and order; held-out images drawn with data
seed + 10,000), and is scored by MIG and DCI-D on those held-out images, as the benchmark scores environment 1.
The knobs, three values each, ×½ / ×1 / ×2 around the default: β of the β-VAEs (β-VAE + replay is β-VAE on
environment 1) and γ, CUDOS's weight of the slab KL to the SOM, its counterpart. Prints a markdown table and
the value with the best mean MIG per model.

Run: ``python plugins/oral6-cudos/scripts/sweep_first_environment.py [WORKERS] [SEED ...]`` (defaults 2 and
seeds 100 101). About 50 CPU-minutes with the defaults (a CUDOS fit about 6, a β-VAE fit about 2.5).
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from oral6_core import registry
from oral6_cudos.benchmark import CUDOSStreamBenchmark, StreamRun

GRID = {"cudos": ("gamma", (0.5, 1.0, 2.0)), "beta-vae": ("beta", (2.0, 4.0, 8.0))}


def fit_first_environment(name: str, knob: str, value: float, seed: int) -> tuple[float, float]:
    """Held-out MIG and DCI-D of model ``name`` with ``knob = value`` after environment 1 of seed ``seed``."""
    torch.set_num_threads(1)
    bench = CUDOSStreamBenchmark()
    train, _ = bench.streams(seed, quick=False)
    options = {**bench.model_options(name, seed, bench.epochs(), False), knob: value}
    torch.manual_seed(seed)
    run = StreamRun(registry.create("generative-model", name, options), train[:1], seed, bench.config, None)
    run.fit(train[:1])
    scores = run.result()["scores"][(0, 0)]
    return scores["mig"], scores["dci_disentanglement"]


def main(workers: int = 2, seeds: tuple[int, ...] = (100, 101)) -> None:
    jobs = [(name, knob, value, seed) for name, (knob, values) in GRID.items() for value in values for seed in seeds]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        scores = dict(zip(jobs, pool.map(fit_first_environment, *zip(*jobs))))
    print("| model | knob | value | MIG per seed | mean MIG | mean DCI-D |\n|---|---|---|---|---|---|")
    for name, (knob, values) in GRID.items():
        means = {}
        for value in values:
            migs = [scores[(name, knob, value, s)][0] for s in seeds]
            dcis = [scores[(name, knob, value, s)][1] for s in seeds]
            means[value] = float(np.mean(migs))
            print(f"| {name} | {knob} | {value:g} | {' / '.join(f'{m:.3f}' for m in migs)} | {means[value]:.3f} | {np.mean(dcis):.3f} |")
        print(f"\n{name}: best mean MIG at {knob} = {max(means, key=means.get):g}\n", file=sys.stderr)


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:]]
    main(arguments[0] if arguments else 2, tuple(arguments[1:]) or (100, 101))
