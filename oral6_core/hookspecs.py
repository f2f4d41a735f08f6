"""Every extension point of oral6: one pluggy hookspec per kind (project name ``"oral6"``).

Each registration hook returns a list of component classes (see ``oral6_core.components``).
The reference for each hook lives in docs/hooks.md; a test keeps the two in step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from .components import (
        Adapter,
        Benchmark,
        DatasetSource,
        GenerativeModel,
        ModelBuilder,
        OptimizerFactory,
        Predictor,
        Pruner,
        Regularizer,
        Representation,
    )
    from .loggers import Logger

PROJECT = "oral6"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def oral6_optimizers() -> list[type[OptimizerFactory]]:
    """Optimizer factories: ``build(model, task) -> torch.optim.Optimizer``."""


@hookspec
def oral6_pruners() -> list[type[Pruner]]:
    """Pruners: training callbacks that own masks over the prunable weights."""


@hookspec
def oral6_regularizers() -> list[type[Regularizer]]:
    """Regularizers: ``penalty(features, logits, batch)`` added to the training loss."""


@hookspec
def oral6_predictors() -> list[type[Predictor]]:
    """Performance predictors that score candidate architectures on a task."""


@hookspec
def oral6_adapters() -> list[type[Adapter]]:
    """Black-box domain adapters: ``adapt(black_box, target_data, student)``."""


@hookspec
def oral6_generative_models() -> list[type[GenerativeModel]]:
    """Generative models trained on a stream of environments."""


@hookspec
def oral6_representations() -> list[type[Representation]]:
    """Neural representations of a trained network's weights."""


@hookspec
def oral6_datasets() -> list[type[DatasetSource]]:
    """Dataset sources: ``load(seed) -> DataBundle``."""


@hookspec
def oral6_models() -> list[type[ModelBuilder]]:
    """Model builders: ``build(input_shape, num_outputs) -> nn.Module``."""


@hookspec
def oral6_benchmarks() -> list[type[Benchmark]]:
    """Reproducible experiments run by ``oral6 bench run NAME``."""


@hookspec
def oral6_loggers() -> list[type[Logger]]:
    """Loggers: ``start(run)``, ``log(metrics, step)``, ``log_artifact(path)``, ``finish(status)``."""


@hookspec
def oral6_register_commands(app: typer.Typer) -> None:
    """Add sub-commands (or command groups) to the ``oral6`` typer app."""
