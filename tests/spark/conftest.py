"""One small local[2] SparkSession per test module; Spark tests skip where pyspark or Java
is missing, saying what to install."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from recset.spark import spark_missing

WHY = spark_missing()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if WHY is None:
        return
    skip = pytest.mark.skip(reason=f"Spark tests skipped: {WHY}")
    for item in items:
        if "spark" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from recset.spark import spark_session

    session = spark_session(
        "local[2]",
        {
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.sql.adaptive.enabled": "false",
            "spark.driver.memory": "1g",
        },
        app_name="recset tests",
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
