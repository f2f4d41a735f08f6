import csv

from oral6_core.config import RunConfig, TrainConfig
from oral6_core.training import train


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    run = RunConfig(train=TrainConfig(epochs=2, progress=False, device="cpu", checkpoint=False), out=tmp_path / "run",
                    loggers={"csv": {}})
    result = train(run)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["val_accuracy"]) == result.history[-1]["val_accuracy"]
