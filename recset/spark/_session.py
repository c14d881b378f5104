"""The SparkSession of a build: pyspark and Java checked with a message naming what to install."""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from recset.errors import ConfigError, RecsetError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Settings every recset session gets (a caller's ``conf`` overrides them).
BASE_CONF: dict[str, str] = {
    # pandas writes nanosecond Parquet timestamps, which Spark reads only as longs
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    # epoch seconds of naive (UTC) timestamps, as the in-process reader takes them
    "spark.sql.session.timeZone": "UTC",
    # the driver collects the top-k rows through Arrow
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}


def local_conf(master: str) -> dict[str, str]:
    """Defaults for a ``local`` master (a caller's ``conf`` overrides them): two shuffle
    partitions per core instead of Spark's 200, which are sized for clusters (on one
    machine each of them is a task of every shuffle stage, with its own scheduling and
    shuffle-file overhead)."""
    m = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\s*\d+)?\])?", master.strip())
    if m is None:
        return {}
    cores = m.group(1)
    n = 1 if cores is None else (os.cpu_count() or 1) if cores == "*" else int(cores)
    return {"spark.sql.shuffle.partitions": str(max(2, 2 * n))}


class SparkUnavailableError(RecsetError, ImportError):
    """pyspark or a Java runtime is missing."""


def spark_missing() -> str | None:
    """Why a Spark session cannot start here (what to install), or None when it can."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "the Spark build needs pyspark 4: pip install 'recset[spark]'"
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and os.path.exists(os.path.join(java_home, "bin", "java"))) and not (
        shutil.which("java")
    ):
        return (
            "the Spark build needs a Java 17 (or 21) runtime: install one (e.g. "
            "apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    return None


def spark_session(
    master: str = "local[*]",
    conf: Mapping[str, str] | None = None,
    *,
    app_name: str = "recset build",
) -> SparkSession:
    """A SparkSession on ``master`` with :data:`BASE_CONF` plus ``conf`` (a new session on
    a ``local`` master also gets :func:`local_conf`).

    Raises
    ------
    SparkUnavailableError
        When pyspark or Java is missing (the message says what to install).
    """
    why = spark_missing()
    if why is not None:
        raise SparkUnavailableError(why)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    # a running session (a host's, a test's) keeps its own partitioning
    defaults = local_conf(master) if SparkSession.getActiveSession() is None else {}
    for key, value in {**BASE_CONF, **defaults, **dict(conf or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    for key, value in BASE_CONF.items():  # a session that already ran keeps its own conf
        if not key.startswith("spark.ui."):
            session.conf.set(key, value)
    return session


@contextmanager
def owned_session(
    master: str = "local[*]", conf: Mapping[str, str] | None = None
) -> Iterator[SparkSession]:
    """:func:`spark_session`, stopped on exit unless it was already running (a host's or a
    test's session is left as it was found)."""
    why = spark_missing()
    if why is not None:
        raise SparkUnavailableError(why)
    from pyspark.sql import SparkSession

    existed = SparkSession.getActiveSession() is not None
    session = spark_session(master, conf)
    try:
        yield session
    finally:
        if not existed:
            session.stop()


def parse_conf(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``["k=v", ...]`` (``--spark-conf`` values) as a dict; a pair without ``=`` is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"The '--spark-conf' option must be KEY=VALUE (e.g. spark.driver.memory=4g). "
                f"Got {pair!r} instead."
            )
        out[key.strip()] = value
    return out


@contextmanager
def quiet_pandas() -> Iterator[None]:
    """Silence pyspark's warning that it does not fully support pandas 3 around the Arrow
    conversions of plain int/float/str columns that the build does (which work)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PySpark does not yet fully support", FutureWarning)
        yield
