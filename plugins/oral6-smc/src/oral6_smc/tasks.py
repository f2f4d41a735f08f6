"""The harness's two offline tasks: easy (bundled digits, small CNN) and hard (pre-trained transformer, arithmetic chains)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from oral6_core import registry
from oral6_core.components import OptimizerFactory, Task
from oral6_core.data import ArrayDataset, DataBundle, split_indices
from oral6_core.errors import ConfigError
from oral6_core.models.nets import SmallCNN

from .transformer import TinyTransformer

PLUS, MINUS, TIMES, EQUALS, CLS, MASK = range(10, 16)
VOCAB = 16
OPERATIONS: dict[int, Callable[[int, int], int]] = {
    PLUS: lambda a, b: (a + b) % 10,
    MINUS: lambda a, b: (a - b) % 10,
    TIMES: lambda a, b: (a * b) % 10,
}
TaskName = Literal["easy", "hard"]


def arithmetic_chains(steps: int) -> tuple[Tensor, Tensor]:
    """Every chain ``[CLS] a ∘ b ∘ c ... = [MASK]`` of ``steps`` operations; label: the left-to-right result mod 10."""
    rows, labels = [], []
    for digits in itertools.product(range(10), repeat=steps + 1):
        for ops in itertools.product(OPERATIONS, repeat=steps):
            value, row = digits[0], [CLS, digits[0]]
            for op, digit in zip(ops, digits[1:]):
                value = OPERATIONS[op](value, digit)
                row += [op, digit]
            rows.append(row + [EQUALS, MASK])
            labels.append(value)
    return torch.tensor(rows), torch.tensor(labels)


def equation_corpus() -> Tensor:
    """The pre-training corpus: every single-step equation ``[CLS] a ∘ b = c`` (mod 10)."""
    return torch.tensor([[CLS, a, op, b, EQUALS, fn(a, b)] for op, fn in OPERATIONS.items() for a in range(10) for b in range(10)])


def pretrain_masked_lm(model: TinyTransformer, steps: int, seed: int, batch_size: int = 64, lr: float = 3e-3) -> float:
    """Masked-token pre-training on the equation corpus (one token masked per sequence); returns the final MLM accuracy."""
    corpus = equation_corpus()
    generator = torch.Generator().manual_seed(seed)
    lm_head = nn.Linear(model.num_features, VOCAB)
    optimizer = torch.optim.AdamW([*model.parameters(), *lm_head.parameters()], lr=lr, weight_decay=0.01)
    model.train()

    def masked_batch(rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        where = torch.randint(1, rows.shape[1], (rows.shape[0],), generator=generator)
        target = rows[torch.arange(rows.shape[0]), where]
        masked = rows.clone()
        masked[torch.arange(rows.shape[0]), where] = MASK
        return masked, where, target

    for _ in range(steps):
        rows = corpus[torch.randint(0, len(corpus), (batch_size,), generator=generator)]
        masked, where, target = masked_batch(rows)
        hidden = model.forward_features(masked)[torch.arange(batch_size), where]
        loss = nn.functional.cross_entropy(lm_head(hidden), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        masked, where, target = masked_batch(corpus)
        hidden = model.forward_features(masked)[torch.arange(len(corpus)), where]
        return (lm_head(hidden).argmax(-1) == target).float().mean().item()


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


def hard_task(steps: int = 2, dim: int = 64, depth: int = 2, pretrain_steps: int = 1000, lr: float = 2e-3,
              train_fraction: float = 0.6) -> SmcTask:
    """Arithmetic chains mod 10 for a transformer first pre-trained (masked LM) on single-step equations."""
    if steps < 1:
        raise ConfigError(f"The hard task needs at least one arithmetic step, not {steps}.")
    x, y = arithmetic_chains(steps)
    train, val, test = split_indices(len(y), (train_fraction, 0.1, 0.9 - train_fraction), seed=0)
    full = ArrayDataset(x, y)
    bundle = DataBundle("smc-arithmetic", full.subset(train), full.subset(val), full.subset(test),
                        Task("categorical", 10, (x.shape[1],)))

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = TinyTransformer(VOCAB, x.shape[1], 10, dim=dim, depth=depth, heads=4)
        pretrain_masked_lm(model, pretrain_steps, seed)
        return model

    return SmcTask("hard", bundle, 0.1, build, registry.create("optimizer", "adamw", {"lr": lr, "weight_decay": 0.0}), 128)


def make_task(name: str, **options: object) -> SmcTask:
    """The task called ``name`` (easy or hard)."""
    if name == "easy":
        return easy_task(**options)  # type: ignore[arg-type]
    if name == "hard":
        return hard_task(**options)  # type: ignore[arg-type]
    raise ConfigError(f"Unknown SMC task {name!r}; the tasks are: easy, hard.")
