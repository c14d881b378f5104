"""The build on Apache Spark (extra ``recset[spark]``): behaviour signals and the top-k rows
of the behavioural sources computed from the canonical Parquet files, equal to the
in-process result. Nothing outside this package imports pyspark."""

from recset.spark._append import SparkPairCounter
from recset.spark._build import (
    SPARK_SOURCES,
    SparkSignals,
    fit_behaviour_sources,
    fit_dataset,
    fit_on_spark,
    write_events,
)
from recset.spark._session import (
    BASE_CONF,
    SparkUnavailableError,
    owned_session,
    parse_conf,
    spark_missing,
    spark_session,
)
from recset.spark._signals import read_events

__all__ = [
    "BASE_CONF",
    "SPARK_SOURCES",
    "SparkPairCounter",
    "SparkSignals",
    "SparkUnavailableError",
    "fit_behaviour_sources",
    "fit_dataset",
    "fit_on_spark",
    "owned_session",
    "parse_conf",
    "read_events",
    "spark_missing",
    "spark_session",
    "write_events",
]
