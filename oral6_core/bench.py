"""Running benchmarks and writing their results: JSON, a markdown table, README sections, plots."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import registry
from .components import BenchResult
from .errors import ConfigError, Oral6Error
from .io import atomic_open, write_json, write_text
from .rundir import versions


def mean_std(values: Iterable[float], digits: int = 1, scale: float = 1.0) -> str:
    """``"mean ± std"`` of ``values`` times ``scale`` (std omitted for a single value)."""
    vals = [v * scale for v in values]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """A GitHub markdown table of ``rows`` (floats rounded to ``digits``)."""
    if not rows:
        return "(no rows)\n"
    columns = list(columns or rows[0].keys())

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, name: str, markdown: str, figures: Sequence[Path] = ()) -> None:
    """Replace the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in ``readme``.

    PNG ``figures`` are copied to the README's ``docs/`` folder and shown below the table.
    """
    text = readme.read_text()
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise Oral6Error(f"{readme} has no section {start} ... {end} to write the {name} results into.")
    for figure in (f for f in figures if f.suffix == ".png"):
        target = Path("docs") / (figure.name if figure.name.startswith(name) else f"{name}-{figure.name}")
        with atomic_open(readme.parent / target, "wb") as handle:
            handle.write(figure.read_bytes())
        markdown = f"{markdown.strip()}\n\n![{figure.stem}]({target.as_posix()})"
    write_text(pattern.sub(lambda _: f"{start}\n{markdown.strip()}\n{end}", text), readme)


def save_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def new_figure(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


QUICK_VERDICT = "not evaluated (quick)"


def unevaluated(markdown: str, claims: dict[str, bool]) -> str:
    """``markdown`` with each claim's ``held`` / ``did not hold`` replaced by ``not evaluated (quick)``.

    A quick run is far too small to test a claim, so it states no verdict.
    """
    for claim in claims:
        for verdict in ("held", "did not hold"):
            markdown = markdown.replace(f"{claim}: {verdict}", f"{claim}: {QUICK_VERDICT}")
    return markdown


def run_benchmark(name: str, out_dir: Path, quick: bool = False, options: dict[str, Any] | None = None,
                  update_readme_file: bool = False, loggers: dict[str, dict[str, Any]] | None = None) -> BenchResult:
    """Run benchmark ``name``; write ``results.json`` and ``results.md`` under ``out_dir``.

    ``loggers`` (``{name: options}``) get the options, each row's numbers (at the row's index), how
    many claims held, and the written files.
    """
    from .loggers import start_loggers

    if quick and update_readme_file:
        raise ConfigError("--update-readme needs a full run: a --quick run only checks that the benchmark works, "
                          "its numbers are not results. Drop --quick (or --update-readme).")
    bench = registry.create("benchmark", name, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = start_loggers(loggers or {}, out_dir, "bench", {"benchmark": name, "quick": quick, "bench": bench.config.model_dump(mode="json")})
    with logs:
        result = bench.run(out_dir, quick=quick)
    if quick:
        result.markdown = unevaluated(result.markdown, result.claims)
    write_json({"benchmark": name, "quick": quick, "options": bench.config.model_dump(mode="json"), "versions": versions(),
                "rows": result.rows, "claims": result.claims, "outputs": [f.name for f in result.files]}, out_dir / "results.json")
    write_text(f"# {name}{' (quick)' if quick else ''}\n\n{result.markdown}", out_dir / "results.md")
    result.files[:0] = [out_dir / "results.json", out_dir / "results.md"]
    if logs:
        for index, row in enumerate(result.rows):
            logs.log(row, index)
        logs.log({"claims_held": sum(result.claims.values()), "claims": len(result.claims)}, len(result.rows))
        logs.log_artifacts(result.files)
        logs.finish("completed")
    if update_readme_file:
        if type(bench).readme is None:
            raise Oral6Error(f"Benchmark {name!r} does not name a README to update.")
        update_readme(type(bench).readme, name, result.markdown, [f for f in result.files if f.parent == out_dir])  # type: ignore[arg-type]
    return result
