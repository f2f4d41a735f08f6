"""The library-API example runs as documented."""

import runpy
from pathlib import Path


def test_library_api_example_trains(capsys):
    runpy.run_path(str(Path(__file__).with_name("library_api.py")), run_name="__main__")
    accuracy = float(capsys.readouterr().out.rsplit(":", 1)[1])
    assert accuracy > 0.5
