"""Fast start: `oral6 --help` and `oral6 list-plugins` answer from the discovery cache without importing torch."""

import json
import os
import subprocess
import sys

from oral6_core import discovery

PROBE = """
import sys
from oral6_core.cli import app
for args in (["--help"], ["list-plugins", "--json"], ["list-plugins"]):
    try:
        app(args)
    except SystemExit as exc:
        assert not exc.code, exc.code
heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith(("oral6_fishleg.", "oral6_dass.", "oral6_core.training")))
print("HEAVY", heavy, file=sys.stderr)
"""


def _probe(cache_dir):
    env = {**os.environ, "ORAL6_CACHE_DIR": str(cache_dir), "COLUMNS": "100"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr.split("HEAVY", 1)[1].strip()


def test_help_and_list_plugins_leave_torch_and_plugin_methods_unimported(tmp_path):
    first_out, _ = _probe(tmp_path)  # builds the cache (imports everything once)
    assert list(tmp_path.glob("discovery-*.json"))
    for _ in range(3):  # a source file edited in between (an editable install being worked on) rebuilds the cache
        out, heavy = _probe(tmp_path)
        if heavy == "[]":
            break
    assert heavy == "[]", f"imported on the fast path: {heavy}"
    assert out == first_out, "the cached listing is the same as the live one"
    assert "fit-generative" in out and "dass" in out and "lion" in out  # core, plugin commands and components


def test_the_cache_key_follows_plugins_sources_and_the_load_switch(tmp_path, monkeypatch):
    package = tmp_path / "oral6_keyprobe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    class EntryPoint:
        name, value, dist = "keyprobe", "oral6_keyprobe.plugin", None

    monkeypatch.setattr(discovery, "entry_points", lambda group: [EntryPoint()])
    monkeypatch.delenv("ORAL6_LOAD_PLUGINS", raising=False)
    before = discovery.cache_key()
    assert discovery.cache_key() == before
    later = (package / "plugin.py").stat().st_mtime_ns + 10**9
    os.utime(package / "plugin.py", ns=(later, later))  # the plugin's source changed
    edited = discovery.cache_key()
    assert edited != before
    monkeypatch.setenv("ORAL6_LOAD_PLUGINS", "")
    assert discovery.cache_key() != edited


def test_list_plugins_names_a_plugin_that_failed_to_import(cli, monkeypatch, broken_plugin):
    import io

    from rich.console import Console

    from oral6_core import cli as cli_module

    wide = io.StringIO()
    monkeypatch.setattr(cli_module, "console", Console(file=wide, width=300))
    code, _ = cli("list-plugins")
    row = next(line for line in wide.getvalue().splitlines() if "broken" in line)
    assert code == 0 and "failed to import, skipped: ImportError: No module named 'oral6_broken'" in row
    code, out = cli("list-plugins", "--json")
    report = json.loads(out)
    assert report["failed"] == {"broken": "ImportError: No module named 'oral6_broken'"}
    assert {"name": "broken", "error": "ImportError: No module named 'oral6_broken'"}.items() <= next(
        p for p in report["plugins"] if p["name"] == "broken").items()
