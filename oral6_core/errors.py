"""Error classes: every failure a user can cause is an ``Oral6Error`` the CLI prints as one paragraph."""

from __future__ import annotations


class Oral6Error(Exception):
    """Base class of every error oral6 raises on purpose; the CLI prints it and exits with code 2."""


class UnknownComponentError(Oral6Error, LookupError):
    """A component name that no loaded plugin registers."""


class DuplicateComponentError(Oral6Error):
    """Two plugins register the same name for the same kind."""


class ConfigError(Oral6Error, ValueError):
    """An option value or key that does not validate."""


class DataError(Oral6Error):
    """A dataset that cannot be built, e.g. because its files are absent."""


class ShapeError(Oral6Error, ValueError):
    """A model and a dataset (or tensors) whose shapes do not fit together."""


class NonFiniteLossError(Oral6Error, FloatingPointError):
    """Training produced a NaN or infinite loss."""


class CheckpointError(Oral6Error):
    """A checkpoint or saved file that is missing, corrupt or of the wrong kind."""


class BlackBoxAccessError(Oral6Error, AttributeError):
    """An attempt to reach the parameters or gradients hidden behind a ``BlackBox``."""


class RunFolderError(Oral6Error):
    """A run folder that another process is writing, that already holds a run, or that cannot be written."""


class WriteError(Oral6Error):
    """An output file that cannot be written where it was asked for."""


class RunInterrupted(Oral6Error):
    """Training stopped at a safe point on SIGINT or SIGTERM; ``exit_code`` is 130 or 143."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BlackBoxQueryError(Oral6Error, ValueError):
    """A query a black box refuses: not a plain dense floating tensor, or the wrong shape."""


class BlackBoxBudgetError(Oral6Error):
    """A query beyond the black box's query budget."""


class BlackBoxServerError(Oral6Error, RuntimeError):
    """The black-box server crashed, stopped or did not answer in time."""
