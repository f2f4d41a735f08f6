"""What moves a new environment's spike vector: the gradient of each CUDOS loss term on it, batch after batch.

Trains CUDOS on environment 1 of ``dsprites-split`` with the ``cudos-stream`` benchmark's settings (seed 0; the
trained model is kept in ``CACHE`` and reused), then prints:

* the code's signal and noise on each environment's held-out images under the environment-1 model: the spread of
  the posterior means μ across images (std per dim, mean over dims) against the posterior noise σ;
* on environment 2, every ``every`` batches, the mean over dims of ∂term/∂logit(s₂) for each term of the loss
  (positive: a descent step lowers the spike), with the spike's mean and largest value.

Run: ``python plugins/oral6-cudos/scripts/spike_terms.py [steps_first] [steps_second] [every] [combined_code] [som_winner]``
(defaults 2400 1600 100 prototype-shared likelihood; ``encoder-shared`` is the reference code's combined code,
``joint`` its SOM winner).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from oral6_core import registry
from oral6_cudos.benchmark import CUDOSStreamBenchmark

CACHE = Path("bench-results/spike-terms")


def term_gradients(model, x: torch.Tensor, slot: int) -> dict[str, float]:
    """Mean over dims of the gradient of each named loss term on ``slot``'s spike logits, for one batch."""
    slots = torch.full((len(x),), slot, dtype=torch.long)
    terms = model.vae_terms(x, slots)
    parts = {**terms["parts"], **model.continual_terms(terms, slot, model.replay_batch(len(x) // 2))}
    out = {}
    for name, value in {**parts, "total": sum(parts.values())}.items():
        grad = torch.autograd.grad(value, model.spike_logits, retain_graph=True, allow_unused=True)[0]
        out[name] = 0.0 if grad is None else float(grad[slot].mean())
    return out


def main(steps_first: int = 2400, steps_second: int = 1600, every: int = 100, combined: str = "prototype-shared",
         winner: str = "likelihood") -> None:
    torch.set_num_threads(1)
    bench = CUDOSStreamBenchmark()
    bench.config = bench.config.model_copy(update={"steps_first": steps_first})
    train, held_out = bench.streams(0, quick=False)
    batches = -(-len(train[0].data.x) // 64)
    options = bench.model_options("cudos", 0, (round(steps_first / batches), 1), False)
    model = registry.create("generative-model", "cudos", {**options, "som_winner": winner})
    cached = CACHE / f"env1-{steps_first}-{winner}.pt"
    if cached.exists():
        model.load(cached)
    else:
        model.fit(train[:1])
        cached.parent.mkdir(parents=True, exist_ok=True)
        model.save(cached)
    model.config = model.config.model_copy(update={"combined_code": combined})
    print("environment 1's spike vector:", " ".join(f"{v:.2f}" for v in model.spikes()[0].tolist()))
    model.eval_mode()
    with torch.no_grad():
        for env in held_out:
            mu, logvar = model.encoder(env.data.x[:1000])
            print(f"{env.name}: spread of μ across images {float(mu.std(0).mean()):.3f}, posterior σ {float((0.5 * logvar).exp().mean()):.3f}")
    model.begin_environment(1)
    model.train_mode()
    x, order = train[1].data.x, torch.Generator().manual_seed(1)
    step = 0
    while step < steps_second:
        for batch in torch.randperm(len(x), generator=order).split(64):
            if step % every == 0:
                grads = term_gradients(model, x[batch], 1)
                spike = model.spikes()[1].detach()
                print(f"batch {step}: spike mean {float(spike.mean()):.3f}, largest {float(spike.max()):.3f}; gradients "
                      + ", ".join(f"{k} {v:+.3f}" for k, v in grads.items()), flush=True)
            model.train_step(x[batch], 1)
            model.global_step += 1
            step += 1
            if step >= steps_second:
                break
    print("environment 2's spike vector:", " ".join(f"{v:.2f}" for v in model.spikes()[1].tolist()))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]), *sys.argv[4:6])
