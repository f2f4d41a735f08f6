"""How CUDOS's SOM is used after environment 1, and what makes one node win: ``som_winner`` compared.

Trains CUDOS on environment 1 of ``dsprites-split`` with the ``cudos-stream`` benchmark's settings (σ annealed over
the last two thirds of ``steps`` batches), then, on 2,000 held-out images and the spike-and-slab samples z of their
codes, prints: the largest mixture weight π and the perplexity of π; the nodes that are some code's BMU and the
perplexity of the BMU histogram; the spread of the node means against that of the codes (std per dim, mean over
dims); the MIG of the mean codes on the environment's factors; and, for the node with the largest π, the share of
codes whose BMU it is with and without log π, with the mean gaps in log π and in log p(z|c) between it and each
code's best node by likelihood.

Run: ``python plugins/oral6-cudos/scripts/som_usage.py [som_winner] [steps] [seed]`` (defaults likelihood 2400 0;
``joint`` is the reference's winner). About 3 CPU-minutes at 2,400 steps.
"""

from __future__ import annotations

import sys

import torch

from oral6_core import registry
from oral6_core.metrics.disentanglement import encode_dataset, mig
from oral6_cudos.benchmark import CUDOSStreamBenchmark
from oral6_cudos.som import hit_perplexity, spike_slab_log_density
from oral6_cudos.spike_slab import spike_and_slab_sample


def main(winner: str = "likelihood", steps: int = 2400, seed: int = 0) -> None:
    torch.set_num_threads(1)
    bench = CUDOSStreamBenchmark()
    bench.config = bench.config.model_copy(update={"steps_first": steps})
    train, held_out = bench.streams(seed, quick=False)
    batches = -(-len(train[0].data.x) // 64)
    options = bench.model_options("cudos", seed, (round(steps / batches), 1), False)
    model = registry.create("generative-model", "cudos", {**options, "som_winner": winner})
    model.fit(train[:1])
    model.eval_mode()
    som, env = model.som, held_out[0]
    x = env.data.x[:2000]
    with torch.no_grad():
        mu, logvar = model.encoder(x)
        z = spike_and_slab_sample(mu, logvar, model.spikes()[0].expand(len(x), -1), model.config.sharpness)
        log_pi = som.log_mixture_weights()
        log_p = spike_slab_log_density(z, som.means, som.logvars, som.slab_probability())
        top, by_likelihood = int(log_pi.argmax()), log_p.argmax(1)
        bmu = (log_pi[None] + log_p).argmax(1)
        rows = torch.arange(len(z))
    codes = encode_dataset(model.encode, x)
    factors = env.data.y[:2000].numpy()[:, [env.factor_names.index(f) for f in env.varying]]
    hits = torch.bincount(bmu, minlength=som.num_components)
    print(f"som_winner={winner}, {steps} batches, seed {seed}")
    print(f"  largest π {float(log_pi.exp().max()):.3f}, perplexity of π {hit_perplexity(log_pi.exp()):.1f} of {som.num_components}")
    print(f"  BMUs of the held-out codes: {int((hits > 0).sum())} nodes, perplexity {hit_perplexity(hits):.1f}")
    print(f"  node means spread {float(som.means.detach().std(0).mean()):.3f} per dim, codes {float(z.std(0).mean()):.3f}")
    print(f"  MIG {mig(codes, factors):.3f}")
    print(f"  node with the largest π: BMU of {float((bmu == top).float().mean()):.0%} of the codes, best by likelihood for "
          f"{float((by_likelihood == top).float().mean()):.0%}; against each code's best node by likelihood its log π is "
          f"{float((log_pi[top] - log_pi[by_likelihood]).mean()):+.2f} and its log p(z|c) "
          f"{float((log_p[:, top] - log_p[rows, by_likelihood]).mean()):+.2f} nats on average")


if __name__ == "__main__":
    main(*sys.argv[1:2], *(int(a) for a in sys.argv[2:4]))
