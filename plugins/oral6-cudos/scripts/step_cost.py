"""Seconds per training step of CUDOS, β-VAE and β-VAE + replay at the benchmark's settings, alternated in one process.

Each model is built for 16×16 ``dsprites-split`` images (latent 10, conv 16-32-64 / FC 128, an 8×8 SOM for
CUDOS, one thread), takes a few steps on environment 1, and is timed on environment 1 ("first") and, in a
second copy that has opened environment 2 (frozen model, replay), on environment 2 ("continual").
The models take turns for ``rounds`` rounds of ``steps`` steps; the best round of each is reported with
its ratio to β-VAE's first-environment step.
Run: ``python plugins/oral6-cudos/scripts/step_cost.py [steps] [rounds]``.
"""

from __future__ import annotations

import os
import sys
import time

import torch

from oral6_core import registry

MODELS = ("cudos", "beta-vae", "beta-vae-replay")


def build(name: str, x: torch.Tensor, continual: bool) -> object:
    options = {"latent_dim": 10, "seed": 0, "device": "cpu", "channels": (16, 32, 64), "hidden": 128}
    options.update({"som_rows": 8, "som_cols": 8, "anneal_begin": 266, "anneal_end": 800} if name == "cudos" else {"beta": 4.0})
    model = registry.create("generative-model", name, options)
    model.build(tuple(x.shape[1:]))
    model.train_mode()
    for i in range(5):
        model.train_step(x[i * 64:(i + 1) * 64], 0)
        model.global_step += 1
    if continual:
        model.begin_environment(1)
        model.train_mode()
    return model


def seconds_per_step(model: object, x: torch.Tensor, index: int, steps: int) -> float:
    started = time.perf_counter()
    for i in range(steps):
        j = i % (len(x) // 64)
        model.train_step(x[j * 64:(j + 1) * 64], index)
        model.global_step += 1
    return (time.perf_counter() - started) / steps


def main(steps: int = 10, rounds: int = 3) -> None:
    torch.set_num_threads(1)
    stream = registry.create("dataset", "dsprites-split", {"samples_per_environment": 640, "image_size": 16}).load(0).stream
    first, second = stream[0].data.x, stream[1].data.x
    models = {(name, phase): build(name, first, phase == "continual") for name in MODELS for phase in ("first", "continual")}
    best = {key: float("inf") for key in models}
    for _ in range(rounds):
        for (name, phase), model in models.items():
            x, index = (second, 1) if phase == "continual" else (first, 0)
            best[(name, phase)] = min(best[(name, phase)], seconds_per_step(model, x, index, steps))
    base = best[("beta-vae", "first")]
    print(f"load average {os.getloadavg()[0]:.2f}; best of {rounds} rounds of {steps} steps")
    for (name, phase), seconds in best.items():
        print(f"{name:16s} {phase:10s} {seconds:.4f} s/step  {seconds / base:5.2f} x beta-vae (first)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
