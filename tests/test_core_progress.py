"""Progress: a live bar with metrics on a terminal, one plain line per epoch or stage in a log file."""

import io
import re

from rich.console import Console

from oral6_core.progress import Progress, format_seconds, shown

LINE = re.compile(r"^\d\d:\d\d:\d\d train epoch (\d)/2 \[(\d+)/(\d+), \d+s(, about \S+ left)?\] val_accuracy 0\.\d+ +val_loss")


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=80), buffer


def test_train_prints_one_plain_line_per_epoch_with_validation_metrics(cli, tmp_path):
    code, out = cli("train", "--epochs", "2", "--out", tmp_path / "run")  # the test runner's stderr is not a terminal
    assert code == 0, out
    lines = [m for m in (LINE.match(line) for line in cli.last_stderr.splitlines()) if m]
    assert [m.group(1) for m in lines] == ["1", "2"]
    assert lines[0].group(4) is not None and lines[1].group(2) == lines[1].group(3)  # time left while unfinished


def test_no_progress_prints_nothing_and_shown_reaches_nested_loops(cli, tmp_path):
    code, _ = cli("train", "--epochs", "1", "--no-progress", "--out", tmp_path / "run")
    assert code == 0 and "train epoch" not in cli.last_stderr
    console, buffer = _console(terminal=False)
    with shown(False):
        with Progress("plugin loop", total=3, console=console) as progress:
            progress.stage("stage 1/3", completed=1, loss=0.5)
    with Progress("plugin loop", total=3, console=console) as progress:
        progress.stage("stage 1/3", completed=1, loss=0.5)
    assert buffer.getvalue().count("plugin loop stage 1/3") == 1


def test_terminal_bar_shows_live_and_epoch_metrics_within_80_columns(monkeypatch):
    console, buffer = _console(terminal=True)
    with Progress("train", total=100, console=console) as outer:
        for step in range(1, 101):
            outer.update(step, description="train epoch 1/1", loss=1.0 / step)
            if step == 50:
                with Progress("inner", total=2, console=console) as inner:  # shares the one live display
                    inner.update(1, loss=0.25)
                    outer._bar.refresh()
        outer.stage("epoch 1/1", val_accuracy=0.875)
        outer._bar.refresh()
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue()).replace("\r", "\n").splitlines()
    assert any("train epoch 1/1" in f and "val_acc 0.875" in f for f in frames)
    assert any(f.startswith("inner") and "loss 0.25" in f for f in frames)
    assert all(len(f) <= 80 for f in frames)
    assert not any(re.match(r"\d\d:\d\d:\d\d ", f) for f in frames), "no plain lines on a terminal"


def test_format_seconds():
    assert [format_seconds(s) for s in (4.4, 185, 7260)] == ["4s", "3m05s", "2h01m"]


def test_track_prints_every_nth_stage_with_the_reported_metrics(monkeypatch):
    import oral6_core.progress as progress

    console, buffer = _console(terminal=False)
    monkeypatch.setattr(progress, "Console", lambda stderr: console)
    for step in progress.track(range(1, 8), "nern fit", "step", every=3):
        progress.report(loss=1.0 / step)
    lines = buffer.getvalue().splitlines()
    assert [line.split(" [")[0][9:] for line in lines] == ["nern fit step 3/7", "nern fit step 6/7", "nern fit step 7/7"]
    assert lines[-1].endswith("loss 0.1429")
    progress.report(loss=0.0)  # no active display: nothing happens
    assert len(buffer.getvalue().splitlines()) == 3
