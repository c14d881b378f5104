"""Bad input to the Spark build is refused before any Spark work, naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recset.cli import main
from recset.data import load_dataset
from recset.errors import ConfigError, DataError
from recset.spark import parse_conf, read_events

CATALOG = pd.DataFrame({"item_id": ["a", "b", "c"]})
EVENTS = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u2"],
        "item_id": ["a", "b", "zzz"],  # zzz is not in the catalog: a bad row
        "event": ["purchase"] * 3,
        "timestamp": [1_700_000_000, 1_700_000_001, 1_700_000_002],
        "order_id": ["o1", "o1", "o2"],
    }
)


def test_conf_pairs() -> None:
    assert parse_conf(["spark.driver.memory=8g", "a.b= x=y"]) == {
        "spark.driver.memory": "8g",
        "a.b": " x=y",
    }
    with pytest.raises(ConfigError, match="KEY=VALUE.*'spark.driver.memory'"):
        parse_conf(["spark.driver.memory"])


def test_cli_refuses_bad_conf_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(
            [
                "build",
                "--data",
                str(tmp_path / "none"),
                "--store",
                str(tmp_path / "s"),
                "--engine",
                "spark",
                "--spark-conf",
                "nonsense",
            ]
        )
    assert "--spark-conf" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_skipped_bad_rows_are_refused(tmp_path: Path) -> None:
    CATALOG.to_parquet(tmp_path / "catalog.parquet", index=False)
    EVENTS.to_parquet(tmp_path / "events.parquet", index=False)
    ds = load_dataset(tmp_path, on_bad_rows="skip", quarantine_dir=tmp_path / "q")
    with pytest.raises(DataError, match="1 bad rows were skipped.*build in process"):
        read_events(None, tmp_path, ds)  # type: ignore[arg-type]


def test_csv_only_is_refused(tmp_path: Path) -> None:
    CATALOG.to_csv(tmp_path / "catalog.csv", index=False)
    EVENTS.iloc[:2].to_csv(tmp_path / "events.csv", index=False)
    ds = load_dataset(tmp_path)
    with pytest.raises(DataError, match="events.parquet.*recset ingest"):
        read_events(None, tmp_path, ds)  # type: ignore[arg-type]


def test_string_timestamps_are_refused(tmp_path: Path) -> None:
    CATALOG.to_parquet(tmp_path / "catalog.parquet", index=False)
    ev = EVENTS.iloc[:2].assign(timestamp=["2023-11-14T22:13:20", "2023-11-14T22:13:21"])
    ev.to_parquet(tmp_path / "events.parquet", index=False)
    ds = load_dataset(tmp_path)
    with pytest.raises(DataError, match="events.parquet: column 'timestamp' is .*string"):
        read_events(None, tmp_path, ds)  # type: ignore[arg-type]


def test_append_on_spark_refuses_a_time_range_and_csv_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--append --engine spark` counts every row of the file: a time range is a usage
    error, given before the store is opened."""
    with pytest.raises(SystemExit) as exc:
        main(
            ["build", "--append", str(tmp_path / "day.parquet"), "--store", str(tmp_path / "s")]
            + ["--engine", "spark", "--time-range", "..1700000001"]
        )
    assert exc.value.code == 2 and "takes no time range" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    EVENTS.head(2).to_csv(tmp_path / "events.csv", index=False)
    CATALOG.to_parquet(tmp_path / "catalog.parquet", index=False)
    ds = load_dataset(tmp_path)
    with pytest.raises(DataError, match="events.parquet.*recset ingest"):
        read_events(None, tmp_path / "events.csv", ds)  # type: ignore[arg-type]
