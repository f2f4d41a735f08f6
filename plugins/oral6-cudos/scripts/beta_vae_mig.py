"""β-VAE alone on one environment: MIG, DCI and FactorVAE on 2,000 held-out images as training goes on.

The networks are the ``cudos-stream`` benchmark's at 16×16 (conv 16-32-64 / FC 128; at 32×32 conv 32-32-64-64 / FC
256), latent 10, Adam 5e-4, batches of 64, one thread; ``images`` training images are rendered with the seed as data
seed (the held-out ones with data seed + 10,000) and the seed also fixes initialisation and order.
After the last step it also prints how much of the gap to a disentangled code is a rotation: the two dims that
carry most information about the factors are rotated in their plane (0°–90° in steps of 1°) and the MIG of the
rotated code is reported at the best angle, with the normalised MI of each of the two dims with each factor.
Run: ``python plugins/oral6-cudos/scripts/beta_vae_mig.py DATASET ENV SIZE BETA STEPS EVERY [SEED] [IMAGES]``,
e.g. ``dsprites-split 0 16 4 6000 1500 0 20000`` (environment 1 of the split stream, x and y).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from oral6_core import registry
from oral6_core.metrics.disentanglement import encode_dataset, evaluate_representation, mig, normalized_mutual_information


def rotation(codes: np.ndarray, factors: np.ndarray) -> str:
    """MIG after the best rotation of the two most informative dims, the angle, and those dims' normalised MI."""
    nmi = normalized_mutual_information(codes, factors)
    a, b = np.argsort(nmi.sum(1))[-2:]
    best = (mig(codes, factors), 0)
    for degrees in range(1, 91):
        t = np.deg2rad(degrees)
        turned = codes.copy()
        turned[:, a], turned[:, b] = np.cos(t) * codes[:, a] - np.sin(t) * codes[:, b], np.sin(t) * codes[:, a] + np.cos(t) * codes[:, b]
        best = max(best, (mig(turned, factors), degrees))
    return (f"best rotation of dims {a},{b}: MIG {best[0]:.3f} at {best[1]}°; normalised MI of dim {a} "
            f"{np.round(nmi[a], 2).tolist()}, dim {b} {np.round(nmi[b], 2).tolist()}")


def main(dataset: str, env: int, size: int, beta: float, steps: int, every: int, seed: int = 0, images: int = 20000) -> None:
    torch.set_num_threads(1)
    options = {"samples_per_environment": images, "image_size": size, "data_seed": seed, "held_out_samples": 2000}
    environment = registry.create("dataset", dataset, options).environments(seed)[env]
    small = size == 16
    model = registry.create("generative-model", "beta-vae", {
        "latent_dim": 10, "channels": (16, 32, 64) if small else (32, 32, 64, 64), "hidden": 128 if small else 256,
        "beta": beta, "seed": seed, "device": "cpu", "lr": 5e-4})
    x = environment.data.x
    model.build(tuple(x.shape[1:]))
    model.train_mode()
    order, step, started = torch.Generator().manual_seed(seed), 0, time.perf_counter()
    while step < steps:
        for batch in torch.randperm(len(x), generator=order).split(64):
            model.train_step(x[batch], 0)
            step += 1
            if step % every == 0:
                model.eval_mode()
                r = evaluate_representation(model.encode, environment.held_out, environment.factor_names)
                spread = encode_dataset(model.encode, environment.held_out.x).std(0)
                print(f"{dataset}[{env}] {size}px β={beta:g} seed {seed} step {step}: MIG {r['mig']:.3f} "
                      f"DCI-D {r['dci_disentanglement']:.3f} DCI-I {r['dci_informativeness']:.3f} "
                      f"FactorVAE {r['factorvae']:.3f} dims used {int((spread > 0.1 * spread.max()).sum())} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
                if step + every > steps:
                    varying = [environment.factor_names.index(f) for f in environment.varying]
                    codes = encode_dataset(model.encode, environment.held_out.x)
                    print("  " + rotation(codes, environment.held_out.y.long().numpy()[:, varying]), flush=True)
                model.train_mode()
            if step >= steps:
                break


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], int(a[1]), int(a[2]), float(a[3]), int(a[4]), int(a[5]), *(int(v) for v in a[6:8]))
