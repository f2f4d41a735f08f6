"""A ``csv`` logger: the run's epoch rows as a spreadsheet-ready ``metrics.csv``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

from oral6_core.loggers import Logger, RunInfo


class CsvLogger(Logger):
    """Write every epoch row to metrics.csv in the run folder (columns from the first row)."""

    name = "csv"

    def start(self, run: RunInfo) -> None:
        self.path: Path = run.local("metrics.csv")
        if not run.resume:
            self.path.unlink(missing_ok=True)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(metrics), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(dict(metrics))
