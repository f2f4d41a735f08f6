"""The small protocols each kind of component implements, and the data types they exchange.

A component is an ordinary class with a ``name``, a strict pydantic ``Config`` and a docstring
whose first line is its summary. Plugins register component *classes*; the registry builds an
instance from validated options: ``cls(cls.Config(**options))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Sequence, get_args

import torch
from torch import Tensor, nn

from .blackbox import BlackBox, BlackBoxMode  # noqa: F401  (plugins import both from here)
from .config import ComponentConfig

if TYPE_CHECKING:
    from .data import DataBundle

Likelihood = Literal["categorical", "bernoulli", "gaussian"]
AttributeType = Literal["independent", "causal", "confounded", "selected"]
ATTRIBUTE_TYPES: tuple[AttributeType, ...] = get_args(AttributeType)


@dataclass(frozen=True)
class Needs:
    """What a component needs from the data it trains on (``Component.needs``).

    ``likelihoods``: the task likelihoods it works with (empty: any); ``environments``: the least
    number of distinct training environments; ``attribute_types``: it needs the dataset to declare at
    least one attribute of one of these types (empty: no attribute needed). The composition matrix
    (``oral6_core.testing.check_compositions``) skips, with the reason, a pairing whose data lacks one.
    """

    likelihoods: tuple[Likelihood, ...] = ()
    environments: int = 0
    attribute_types: tuple[AttributeType, ...] = ()

    def unmet(self, bundle: "DataBundle") -> list[str]:
        """Why ``bundle`` cannot serve the component: one phrase per unmet need (empty when it can)."""
        reasons = []
        if self.likelihoods and bundle.task.likelihood not in self.likelihoods:
            reasons.append(f"a {' or '.join(self.likelihoods)} likelihood (it has {bundle.task.likelihood})")
        envs = getattr(bundle.train, "env", None)
        found = int(torch.unique(envs).numel()) if isinstance(envs, Tensor) else len(bundle.environments)
        if found < self.environments:
            reasons.append(f"{self.environments} training environments (it has {found})")
        if self.attribute_types and not any(a.type in self.attribute_types for a in bundle.attributes):
            reasons.append(f"an attribute of type {' or '.join(self.attribute_types)} "
                           f"(it has {', '.join(sorted({a.type for a in bundle.attributes})) or 'none'})")
        return reasons


class Component:
    """Base class of every component: a name, a strict ``Config`` and a one-line docstring summary.

    Two declarations tell the composition matrix how to pair it: ``needs`` (a ``Needs``: the
    likelihoods, environments and attributes it requires of the data) and ``deterministic`` (False
    when its steps draw on anything but the global RNGs and its ``state_dict()``, e.g. nondeterministic
    kernels, so that a resumed run cannot repeat an uninterrupted one bit for bit).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    citation: ClassVar[str | None] = None
    needs: ClassVar[Needs] = Needs()
    deterministic: ClassVar[bool] = True

    def __init__(self, config: ComponentConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Task:
    """What a model is trained to predict, so methods can compute a likelihood or sample from the model.

    ``categorical``: logits over ``num_classes``; ``bernoulli``: logits of independent bits;
    ``gaussian``: means with fixed standard deviation ``sigma``.
    """

    likelihood: Likelihood = "categorical"
    num_classes: int = 10
    input_shape: tuple[int, ...] = (64,)
    sigma: float = 1.0

    def nll(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean negative log-likelihood of ``target`` under the model output (the training loss)."""
        if self.likelihood == "categorical":
            return nn.functional.cross_entropy(output, target)
        target = target.reshape(output.shape).to(output.dtype)
        if self.likelihood == "bernoulli":
            return nn.functional.binary_cross_entropy_with_logits(output, target, reduction="sum") / output.shape[0]
        return 0.5 * ((output - target) ** 2).sum() / (self.sigma**2 * output.shape[0])

    def sample(self, output: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw targets from the model's own predictive distribution (for sampled-Fisher products)."""
        output = output.detach()
        if self.likelihood == "categorical":
            return torch.multinomial(output.softmax(-1), 1, generator=generator).squeeze(-1)
        if self.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(output), generator=generator)
        noise = torch.randn(output.shape, generator=generator, device=output.device, dtype=output.dtype)
        return output + self.sigma * noise


@dataclass(frozen=True)
class Attribute:
    """A named nuisance attribute of a dataset and its relation to the label (CACM's graph)."""

    name: str
    type: AttributeType
    num_values: int


@dataclass
class Batch:
    """One minibatch: inputs ``x``, targets ``y``, environment ids and named attributes (long tensors)."""

    x: Tensor
    y: Tensor
    env: Tensor | None = None
    attrs: dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> "Batch":
        """Move every tensor to ``device`` (non-blocking where possible)."""
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return Batch(
            move(self.x),
            move(self.y),
            None if self.env is None else move(self.env),
            {k: move(v) for k, v in self.attrs.items()},
        )

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class TrainContext:
    """What the training loop hands to callbacks (pruners, regularizers) when training starts."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_loader: Any
    task: Task
    device: torch.device
    total_steps: int
    loss_fn: Callable[[nn.Module, Batch], Tensor]
    world_size: int = 1
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # the per-step LR schedule (None: constant rate)


# --------------------------------------------------------------------------- kinds


class ModelBuilder(Component):
    """Builds an ``nn.Module`` for a dataset's input shape and number of outputs.

    Models follow timm's convention: ``forward_features(x)`` then ``forward_head(f, pre_logits)``;
    ``oral6_core.models.features_and_logits`` reaches both for any model.
    """

    def build(self, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        raise NotImplementedError


class DatasetSource(Component):
    """Builds a dataset's splits. ``load`` raises ``DataError`` with the fix when files are absent."""

    def load(self, seed: int = 0) -> "DataBundle":
        raise NotImplementedError


class OptimizerFactory(Component):
    """Builds a ``torch.optim.Optimizer`` for a model.

    ``task`` gives the likelihood so natural-gradient methods can sample labels from the model.
    If the optimizer has a method ``observe(batch)``, the loop calls it with each training batch
    before ``step()`` (curvature methods use it to draw their auxiliary batches).
    Under DDP, gradients arrive already averaged; an optimizer that estimates statistics from its
    own forward passes must average them across ranks itself (``torch.distributed.all_reduce``)
    so that every rank takes the same step.
    """

    def build(self, model: nn.Module, task: Task) -> torch.optim.Optimizer:
        raise NotImplementedError


class Regularizer(Component):
    """Adds a penalty to the training loss: ``loss = task_nll + penalty(features, logits, batch)``.

    ``features`` are the model's pre-logit features, ``logits`` its outputs; ``batch`` carries
    environment ids and named attributes. The penalty includes its own weight.
    """

    def on_train_start(self, ctx: TrainContext, bundle: "DataBundle") -> None:
        """Called once before the first step; the dataset's attributes are in ``bundle``."""

    def on_step_start(self, step: int, total_steps: int) -> None:
        """Called before each step (annealing schedules)."""

    def penalty(self, features: Tensor, logits: Tensor, batch: Batch) -> Tensor:
        raise NotImplementedError


class Pruner(Component):
    """A training callback that owns binary masks over the prunable weights.

    Contract: after ``on_step_end`` every masked weight is exactly zero; masks are part of
    ``state_dict`` so that they survive checkpoints and resume. Under DDP, masks must be
    identical on every rank: compute scores from averaged quantities or broadcast from rank 0.
    """

    def on_train_start(self, ctx: TrainContext) -> None:
        """Choose the prunable set and the initial masks (before-training methods prune here)."""

    def on_after_backward(self, step: int) -> None:
        """Called after ``backward`` and before ``optimizer.step``; mask gradients here."""

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called after ``optimizer.step``: update masks on schedule and re-apply them."""

    def on_train_end(self) -> None:
        """Called once after the last step."""

    def masks(self) -> dict[str, Tensor]:
        """Parameter name -> boolean mask (True keeps the weight)."""
        raise NotImplementedError

    def sparsity(self) -> dict[str, float]:
        """Measured sparsity per layer plus ``"overall"``, from the model's weights."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"masks": {k: v.clone() for k, v in self.masks().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


@dataclass
class SearchTask:
    """A target task for a performance predictor: data, a trained teacher and a parameter budget."""

    bundle: "DataBundle"
    teacher: nn.Module
    teacher_accuracy: float
    budget_params: int | None = None
    device: torch.device = torch.device("cpu")


class Candidate:
    """An architecture a predictor can score: a description, its size, a builder, and the model builder that makes it."""

    num_params: int

    def describe(self) -> str:
        raise NotImplementedError

    def build(self, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def model_spec(self) -> tuple[str, dict[str, Any]] | None:
        """The registered model builder and its options that build this candidate for the task's data, or None.

        With it ``oral6 search --distil --out DIR`` saves the distilled student as an ordinary checkpoint
        (``DIR/checkpoint.pt``) that every command taking one (``adapt --student``, ``represent``, ...) rebuilds.
        """
        return None


class Predictor(Component):
    """Predicts how well candidate architectures will do on a task, without training them."""

    def fit(self, meta_data: Any) -> None:
        """Train the predictor on meta-data (the plugin defines its format)."""
        raise NotImplementedError

    def candidates(self, task: SearchTask) -> list[Candidate]:
        """The search space for ``task`` (filtered by its budget by the caller)."""
        raise NotImplementedError

    def predict(self, candidates: Sequence[Candidate], task: SearchTask) -> Tensor:
        """One score per candidate; higher means better predicted accuracy."""
        raise NotImplementedError

    def save(self, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path) -> None:
        raise NotImplementedError

    def distil(self, candidate: Candidate, task: SearchTask) -> tuple[nn.Module, float]:
        """Optional: train ``candidate`` by distillation from the teacher; returns it and its accuracy."""
        raise NotImplementedError


class Adapter(Component):
    """Adapts a student to an unlabelled target domain using only a black-box source model."""

    def adapt(self, black_box: BlackBox, target_data: torch.utils.data.Dataset, student: nn.Module) -> nn.Module:
        """``target_data`` yields ``Batch``-able items with ``y`` set to -1 (no labels).

        ``black_box`` answers queries only (``oral6_core.blackbox``); under ``oral6 adapt`` the source
        model lives in another process and the count of samples sent is the server's.
        """
        raise NotImplementedError


@dataclass
class Environment:
    """One environment of a continual stream: its data and the ground-truth factors varying in it.

    ``held_out`` (optional) is more data of the same environment that training never sees; the stream
    protocol (``oral6_core.metrics.stream``) scores on it where it is given.
    """

    name: str
    data: torch.utils.data.Dataset
    factor_names: list[str]
    varying: list[str]
    held_out: torch.utils.data.Dataset | None = None


class GenerativeModel(Component):
    """A latent-variable generative model trained on a stream of environments."""

    def fit(
        self,
        environments: Sequence[Environment],
        on_environment_end: Callable[[int, Environment], None] | None = None,
    ) -> None:
        raise NotImplementedError

    def encode(self, x: Tensor) -> Tensor:
        """Deterministic latent code (the mean) for a batch of inputs."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int) -> Tensor:
        raise NotImplementedError


class Representation(Component):
    """A neural representation of a trained network's weights."""

    def set_source(self, builder: str, options: dict[str, Any], input_shape: tuple[int, ...]) -> None:
        """Called before ``fit`` with the model builder (name, options) and input shape that made the network."""

    def fit(self, model: nn.Module, data: "DataBundle | None") -> None:
        raise NotImplementedError

    def reconstruct(self) -> nn.Module:
        """A network rebuilt from the representation alone."""
        raise NotImplementedError

    def num_parameters(self) -> int:
        """Size of the representation in parameters."""
        raise NotImplementedError

    def represented_parameters(self) -> int:
        """Number of the original network's parameters that the representation stands for."""
        raise NotImplementedError

    def save(self, path: Path) -> None:
        """Write everything needed to rebuild the network (atomically)."""
        raise NotImplementedError

    def load(self, path: Path) -> None:
        raise NotImplementedError


@dataclass
class BenchResult:
    """What a benchmark produced: rows of results, a markdown table, and the files it wrote."""

    rows: list[dict[str, Any]]
    markdown: str
    files: list[Path] = field(default_factory=list)
    claims: dict[str, bool] = field(default_factory=dict)


class Benchmark(Component):
    """A reproducible experiment: a paper's headline claim at small scale.

    ``run`` writes its plots under ``out_dir`` and returns rows and a markdown table (the runner
    writes ``results.json`` and ``results.md``); ``quick`` shrinks it to seconds so the test suite
    keeps it working. ``readme`` names the README whose ``<!-- bench:NAME -->`` section
    ``oral6 bench run NAME --update-readme`` rewrites with the table.
    """

    readme: ClassVar[Path | None] = None

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        raise NotImplementedError
