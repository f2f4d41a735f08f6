"""Discovery through real entry points (the template plugin in examples/ is installed)."""

import json
import subprocess
import sys
from pathlib import Path

import oral6_core.hookspecs as hookspecs

DOCS = Path(__file__).parents[1] / "docs" / "hooks.md"


def _hook_names():
    return [n for n in dir(hookspecs) if n.startswith("oral6_")]


def test_every_hook_is_documented():
    text = DOCS.read_text()
    missing = [n for n in _hook_names() if f"## {n}(" not in text]
    assert not missing, f"hooks missing from docs/hooks.md: {missing}"
    assert len(_hook_names()) == 12


def _list_plugins(env_extra: dict[str, str]) -> dict:
    import os

    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-m", "oral6_core", "list-plugins", "--json"], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def test_entry_point_plugin_is_discovered_with_its_distribution():
    report = _list_plugins({"ORAL6_LOAD_PLUGINS": "hello"})
    plugins = {p["name"]: p for p in report["plugins"]}
    assert set(plugins) == {"builtin", "hello"}
    assert plugins["hello"]["distribution"] == "oral6-hello"
    assert plugins["hello"]["registers"] == {"optimizer": ["lion"], "logger": ["csv"]}
    assert plugins["hello"]["hooks"] == ["oral6_loggers", "oral6_optimizers"]


def test_load_plugins_switch_restricts_loading():
    report = _list_plugins({"ORAL6_LOAD_PLUGINS": ""})
    assert [p["name"] for p in report["plugins"]] == ["builtin"]
    names = [c["name"] for c in report["components"]["optimizer"]]
    assert "lion" not in names and "sgd" in names


def test_trace_switch_prints_hook_calls():
    import os

    env = {**os.environ, "ORAL6_LOAD_PLUGINS": "", "ORAL6_TRACE_PLUGINS": "1"}
    out = subprocess.run([sys.executable, "-m", "oral6_core", "show", "optimizer", "sgd"], capture_output=True, text=True, env=env)
    assert out.returncode == 0
    assert "oral6_optimizers" in out.stderr


def test_ci_runs_the_readme_commands():
    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(setup) == 2, "the README's set-up is exactly two commands"
    ci = [line.strip() for line in (root / ".ci" / "run").read_text().splitlines()]
    for command in setup:
        assert f"python -m {command}" in ci or command in ci, f"{command!r} is not what .ci/run runs"


def test_a_plugin_that_fails_to_import_is_skipped_and_reported(broken_plugin):
    import warnings

    from oral6_core import plugins, registry

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert "sgd" in registry.names("optimizer")
    assert plugins.failed_plugins() == {"broken": "ImportError: No module named 'oral6_broken'"}
    assert any("failed to import and is skipped" in str(w.message) for w in caught)


def test_update_readme_rewrites_only_its_section_and_copies_figures(tmp_path):
    from oral6_core.bench import update_readme

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:demo -->\nold\n<!-- /bench:demo -->\noutro\n")
    figure = tmp_path / "out" / "curve.png"
    figure.parent.mkdir()
    figure.write_bytes(b"\x89PNG")
    update_readme(readme, "demo", "| a |\n|---|\n| 1 |\n", [figure])
    assert readme.read_text() == "intro\n<!-- bench:demo -->\n| a |\n|---|\n| 1 |\n\n![curve](docs/demo-curve.png)\n<!-- /bench:demo -->\noutro\n"
    assert (tmp_path / "docs" / "demo-curve.png").read_bytes() == b"\x89PNG"
