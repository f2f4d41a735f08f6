"""The harness's offline tasks: easy (bundled digits, small CNN); hard and one-step (a pre-trained transformer on arithmetic traces)."""

from __future__ import annotations

import itertools
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from oral6_core import registry
from oral6_core.components import OptimizerFactory, Task
from oral6_core.data import ArrayDataset, DataBundle, split_indices
from oral6_core.errors import ConfigError
from oral6_core.io import load_torch, save_torch
from oral6_core.models.nets import SmallCNN

from .transformer import TinyTransformer

PLUS, MINUS, EQUALS, CLS, MASK = range(10, 15)
VOCAB = 15


def arithmetic_traces(steps: int) -> Tensor:
    """Every trace ``[CLS] d0 ∘ d1 = r1 ∘ d2 = r2 ...`` of ``steps`` operations ∘ ∈ {+, −} mod 10, results written out."""
    rows = []
    for digits in itertools.product(range(10), repeat=steps + 1):
        for ops in itertools.product((PLUS, MINUS), repeat=steps):
            value, row = digits[0], [CLS, digits[0]]
            for op, digit in zip(ops, digits[1:]):
                value = (value + digit) % 10 if op == PLUS else (value - digit) % 10
                row += [op, digit, EQUALS, value]
            rows.append(row)
    return torch.tensor(rows)


def result_slots(steps: int) -> list[int]:
    """Positions of the results r1, r2, ... in a trace."""
    return [5 + 4 * i for i in range(steps)]


def hide_results(traces: Tensor, steps: int) -> Tensor:
    """The traces with every result replaced by ``[MASK]`` (the question: the model must compute them)."""
    hidden = traces.clone()
    hidden[:, result_slots(steps)] = MASK
    return hidden


@dataclass
class Pretraining:
    """A pre-trained transformer: its weights, the masked-LM head, and the loss curve (mean loss per interval)."""

    model: dict[str, Tensor]
    lm_head: dict[str, Tensor]
    curve: list[dict[str, float]]
    settings: dict[str, Any]
    seconds: float


def pretrain_masked_lm(model: TinyTransformer, corpus: Tensor, steps: int, seed: int, batch_size: int = 128,
                       lr: float = 3e-3, token_rate: float = 0.15, result_rate: float = 0.5,
                       result_positions: Sequence[int] = ()) -> tuple[nn.Linear, list[dict[str, float]]]:
    """Masked-token pre-training on ``corpus`` (AdamW, 100 warm-up steps, cosine decay to 0).

    Every token but ``[CLS]`` is masked with probability ``token_rate``, the ``result_positions`` with
    ``result_rate``. Returns the masked-LM head and the loss curve (mean loss over each 2% of the steps).
    """
    generator = torch.Generator().manual_seed(seed)
    lm_head = nn.Linear(model.num_features, VOCAB)
    optimizer = torch.optim.AdamW([*model.parameters(), *lm_head.parameters()], lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    rates = torch.full((corpus.shape[1],), token_rate)
    rates[list(result_positions)] = result_rate
    rates[0] = 0.0
    interval, losses, curve = max(1, steps // 50), [], []
    model.train()
    for step in range(1, steps + 1):
        rows = corpus[torch.randint(0, len(corpus), (batch_size,), generator=generator)]
        masked = torch.rand(rows.shape, generator=generator) < rates
        hidden = model.forward_features(rows.masked_fill(masked, MASK))
        loss = nn.functional.cross_entropy(lm_head(hidden[masked]), rows[masked])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % interval == 0:
            curve.append({"step": step, "loss": statistics.mean(losses)})
            losses = []
    return lm_head, curve


@dataclass
class SmcTask:
    """A harness task: data, how to build (and pre-train) its model, and how to fine-tune it."""

    name: str
    bundle: DataBundle
    chance: float
    build: Callable[[int], nn.Module]
    optimizer: OptimizerFactory
    batch_size: int


def easy_task(channels: tuple[int, ...] = (32, 64), lr: float = 0.05) -> SmcTask:
    """Bundled 8×8 digits and a small CNN trained from scratch with SGD-momentum (the 'easy benchmark')."""
    bundle = registry.create("dataset", "digits").load(seed=0)

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return SmallCNN(1, 10, channels)

    return SmcTask("easy", bundle, 0.1, build, registry.create("optimizer", "sgd", {"lr": lr, "momentum": 0.9}), 64)


@dataclass(frozen=True)
class ChainSettings:
    """The transformer tasks: chain length, model size and pre-training budget."""

    steps: int = 2
    corpus_steps: int = 2
    dim: int = 32
    depth: int = 3
    heads: int = 4
    pretrain_steps: int = 6000
    lr: float = 3e-3
    batch_size: int = 64
    train_fraction: float = 0.6


def chain_split(settings: ChainSettings) -> tuple[Tensor, list[Tensor]]:
    """All traces and their train/val/test indices (fixed seed: every task and seed shares the split)."""
    traces = arithmetic_traces(settings.steps)
    return traces, split_indices(len(traces), (settings.train_fraction, 0.1, 0.9 - settings.train_fraction), seed=0)


def pretrained_transformer(settings: ChainSettings, cache: Path | None = None, seed: int = 0) -> Pretraining:
    """Pre-train (masked LM on ``pretraining_corpus``, results written out) once; reuse ``cache`` when it holds these settings."""
    key = {**asdict(settings), "seed": seed}
    if cache is not None and cache.is_file():
        saved = load_torch(cache)
        if saved.get("settings") == key:
            return Pretraining(**saved)
    corpus = pretraining_corpus(settings)
    torch.manual_seed(seed)
    model = _transformer(settings, -1)
    start = time.perf_counter()
    lm_head, curve = pretrain_masked_lm(model, corpus, settings.pretrain_steps, seed,
                                        result_positions=result_slots(settings.corpus_steps))
    done = Pretraining(model.state_dict(), lm_head.state_dict(), curve, key, time.perf_counter() - start)
    if cache is not None:
        save_torch(asdict(done), cache)
    return done


def pretraining_corpus(settings: ChainSettings) -> Tensor:
    """Traces of ``corpus_steps`` operations whose first ``steps`` operations form a training chain.

    No validation or test chain of the fine-tuning tasks appears in pre-training, not even as a prefix.
    """
    if settings.corpus_steps < settings.steps:
        raise ConfigError(f"Pre-training traces ({settings.corpus_steps} steps) must be at least as long as the "
                          f"task's chains ({settings.steps} steps).")
    chains, (train, _, _) = chain_split(settings)
    corpus = arithmetic_traces(settings.corpus_steps)
    weights = VOCAB ** torch.arange(chains.shape[1])
    keep = torch.isin((corpus[:, : chains.shape[1]] * weights).sum(1), (chains[train] * weights).sum(1))
    return corpus[keep]


def _transformer(settings: ChainSettings, readout: int) -> TinyTransformer:
    return TinyTransformer(VOCAB, 2 + 4 * settings.corpus_steps, 10, dim=settings.dim, depth=settings.depth,
                           heads=settings.heads, readout=readout)


def chain_task(name: str, answer: int, settings: ChainSettings, pretraining: Pretraining) -> SmcTask:
    """Fine-tune the pre-trained transformer to give result r_answer (1-based) of a trace whose results are hidden.

    The head reads the answer's own slot and starts as the masked-LM head's digit rows, so fine-tuning
    continues from what pre-training learnt (the answer is the masked token).
    """
    if not 1 <= answer <= settings.steps:
        raise ConfigError(f"The answer must be one of the chain's {settings.steps} results (1..{settings.steps}), not {answer}.")
    traces, (train, val, test) = chain_split(settings)
    slot = result_slots(settings.steps)[answer - 1]
    full = ArrayDataset(hide_results(traces, settings.steps), traces[:, slot])
    bundle = DataBundle(f"smc-chain-r{answer}", full.subset(train), full.subset(val), full.subset(test),
                        Task("categorical", 10, (traces.shape[1],)))

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = _transformer(settings, slot)
        model.load_state_dict({k: v for k, v in pretraining.model.items() if not k.startswith("head.")}, strict=False)
        with torch.no_grad():
            model.head.weight.copy_(pretraining.lm_head["weight"][:10])
            model.head.bias.copy_(pretraining.lm_head["bias"][:10])
        return model

    optimizer = registry.create("optimizer", "adamw", {"lr": settings.lr, "weight_decay": 0.0})
    return SmcTask(name, bundle, 0.1, build, optimizer, settings.batch_size)


def make_task(name: str, cache: Path | None = None, settings: ChainSettings | None = None) -> SmcTask:
    """The task called ``name``: easy (digits CNN), hard (the last result of a chain) or one-step (its first result)."""
    if name == "easy":
        return easy_task()
    if name in ("hard", "one-step"):
        settings = settings or ChainSettings()
        pretraining = pretrained_transformer(settings, cache)
        return chain_task(name, settings.steps if name == "hard" else 1, settings, pretraining)
    raise ConfigError(f"Unknown SMC task {name!r}; the tasks are: easy, hard, one-step.")
