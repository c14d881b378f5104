"""The build on Spark equals the in-process build: signal counts, candidate rows, lists.

Generated data (products pooling several items, view sessions, baskets with same-second
items); one local[2] session for the module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recset.config import config_from_dict
from recset.data import PURCHASE, VIEW, Dataset, load_dataset
from recset.data.synthetic import SyntheticConfig, write_synthetic
from recset.engine import Engine
from recset.recall import get_recall
from recset.signals import Signals
from recset.spark import SparkSignals, fit_behaviour_sources, read_events
from recset.spark import _signals as S
from recset.testing import assert_same_lists, assert_same_source_state

pytestmark = [
    pytest.mark.spark,
    # pyspark 4 warns about pandas 3 on every Arrow conversion (plain columns: they work)
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spark") / "data"
    return write_synthetic(SyntheticConfig(n_items=200, n_users=80, n_events=4000, seed=5), out)


@pytest.fixture(scope="module")
def ds(data: Path) -> Dataset:
    return load_dataset(data)


@pytest.fixture(scope="module")
def events(spark: Any, data: Path, ds: Dataset) -> Any:
    ev = read_events(spark, data, ds).persist()
    yield ev
    ev.unpersist()


def _csr(df: Any, n: int, col: str = "count") -> sp.csr_matrix:
    p = df.toPandas()
    m = sp.csr_matrix(
        (p[col].to_numpy(np.float32), (p["a"].to_numpy(), p["b"].to_numpy())), shape=(n, n)
    )
    m.sort_indices()
    return m


def _same(spark_m: sp.csr_matrix, local: sp.csr_matrix, *, exact: bool = True) -> None:
    local = local.tocsr().astype(np.float32)
    local.eliminate_zeros()
    local.sort_indices()
    assert spark_m.nnz == local.nnz > 0
    np.testing.assert_array_equal(spark_m.indptr, local.indptr)
    np.testing.assert_array_equal(spark_m.indices, local.indices)
    if exact:
        np.testing.assert_array_equal(spark_m.data, local.data)
    else:
        np.testing.assert_allclose(spark_m.data, local.data, rtol=1e-5)


@pytest.mark.parametrize("half_life", [None, pytest.param(7.0, marks=pytest.mark.slow)])
def test_signal_counts_equal(events: Any, spark: Any, ds: Dataset, half_life: float | None) -> None:
    """Every behaviour signal: the same pairs; without decay the same float32 counts, with
    decay equal to float32 rounding (the sums run in another order)."""
    exact = half_life is None
    n = ds.n_items
    local = Signals(ds, half_life_days=half_life, max_group_size=12)
    sig = SparkSignals(spark, events, half_life_days=half_life, max_group_size=12)
    e, w = sig.groups("basket")
    _same(_csr(S.cooccurrence(S.pooled(e, None), w), n), local.co_purchase, exact=exact)
    _same(_csr(sig.co_view, n), local.co_view, exact=exact)
    _same(_csr(sig.co_purchase_directed, n), local.co_purchase_directed, exact=exact)
    _same(_csr(sig.purchase_after_view, n), local.purchase_after_view, exact=exact)
    _same(_csr(sig.co_purchase_only, n), local.co_purchase_only, exact=exact)
    _same(
        _csr(sig.co_purchase_only_substitution, n),
        local.co_purchase_only_substitution,
        exact=exact,
    )
    occ = sig.occurrences("basket").toPandas()
    got = np.zeros(n, np.float32)
    got[occ["unit"].to_numpy()] = occ["occ"].to_numpy()
    np.testing.assert_allclose(got, local.occurrences("basket"), rtol=0 if exact else 1e-5)
    for code, want in ((PURCHASE, local.item_purchases), (VIEW, local.item_views)):
        pop = S.item_counts(events, code, ref=sig.ref, half_life_days=half_life).toPandas()
        got = np.zeros(n, np.float32)
        got[pop["item"].to_numpy()] = pop["count"].to_numpy()
        np.testing.assert_allclose(got, want, rtol=0 if exact else 1e-6)
    sig.unpersist()


def test_user_category_equal(events: Any, spark: Any, ds: Dataset) -> None:
    cats = spark.createDataFrame(
        pd.DataFrame({"item": np.arange(ds.n_items), "category": ds.catalog.category})
    )
    p = S.user_category(events, cats).toPandas()
    users = ds.users.index(p["user"])
    m = sp.csr_matrix(
        (np.ones(len(p), np.float32), (users, p["category"].to_numpy())),
        shape=(ds.n_users, ds.n_categories),
    )
    local = Signals(ds).user_category
    assert (m != local).nnz == 0 and m.nnz == local.nnz > 0


# every option the Spark path reads, away from the defaults (the CLI test runs the defaults)
VARIANTS = {
    "build": {"max_group_size": 10},
    "sources": {
        "co_purchase": {
            "similarity": "asymmetric_cosine",
            "alpha": 0.5,
            "unit": "user",
            "min_support": 2.0,
        },
        "co_view": {"similarity": "ochiai", "level": "item", "max_candidates": 5},
        "co_purchase_only": {"exclude": "any", "min_similarity": 0.2},
        # phi reads every user (buyers or not); popular scoped by the related categories
        "related_categories": {"similarity": "phi", "min_buyers": 2, "min_similarity": 0.02},
        "popular": {"scope": "related_categories", "half_life_days": 7.0, "max_candidates": 20},
    },
}


def test_candidate_rows_equal(spark: Any, data: Path, ds: Dataset) -> None:
    """The fitted state (every unit's candidates, order and float32 scores) is identical."""
    cfg = config_from_dict(VARIANTS)
    fitted = fit_behaviour_sources(spark, data, ds, cfg)
    assert set(fitted) == {
        "co_purchase",
        "co_view",
        "co_purchase_only",
        "popular",
        "related_categories",
    }
    signals = Signals(ds, max_group_size=cfg.build.max_group_size)
    specs = cfg.source_configs()
    local: dict[str, Any] = {}
    for source_name in cfg.fit_order():
        kind, source_cfg = specs[source_name]
        local[source_name] = get_recall(kind)(source_cfg).fit(ds, signals, fitted=local)
    for source_name, got in fitted.items():
        _same_state(got, local[source_name])
    assert fitted["related_categories"].scoped_.any()  # the scope filters something


def _same_state(got: Any, want: Any) -> None:
    rows = getattr(want, "neighbors_", None)
    if rows is None:  # popular's lists, related_categories' related categories
        rows = getattr(want, "lists_", None)
    if rows is None:
        rows = want.related_
    assert (np.asarray(rows) >= 0).sum() > 0, want.name
    for attr in want._state:
        np.testing.assert_array_equal(getattr(got, attr), getattr(want, attr), attr)


def test_cli_spark_build_equals_in_process(
    spark: Any, data: Path, ds: Dataset, tmp_path: Path
) -> None:
    """`recset build --engine spark` (default config) stores the same fitted sources as the
    in-process fit, and the engine serves the same lists with the same scores."""
    from recset.cli import main

    store = tmp_path / "store"
    main(
        [
            "build",
            "--data",
            str(data),
            "--store",
            str(store),
            "--engine",
            "spark",
            "--spark-master",
            "local[2]",
            "--spark-conf",
            "spark.sql.shuffle.partitions=2",
        ]
    )
    assert spark.sparkContext._jsc is not None  # the test's own session was left running
    built = Engine.load(str(store))
    cfg = config_from_dict({})
    local = Engine.build(ds, cfg)
    for name in ("co_purchase", "co_view", "co_purchase_only"):
        _same_state(built.mixer.sources[name], local.mixer.sources[name])
    for seed in ds.items.ids(np.arange(ds.n_items)):
        a = [(r.item_id, r.score) for r in local.recommend(seed, k=20)]
        b = [(r.item_id, r.score) for r in built.recommend(seed, k=20)]
        assert a == b, seed


def test_nanosecond_and_microsecond_timestamps(
    spark: Any, data: Path, ds: Dataset, tmp_path: Path
) -> None:
    """pandas' nanosecond Parquet timestamps and microsecond ones read as the same seconds."""
    base = read_events(spark, data, ds).select("ts").toPandas()["ts"].to_numpy()
    ev = pd.read_parquet(data / "events.parquet")
    cat = pd.read_parquet(data / "catalog.parquet")
    ts = ev["timestamp"]  # the canonical format: UTC microseconds (integer seconds before)
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    naive = pd.to_datetime(ts, unit="s") if ts.dtype.kind in "iu" else ts
    for unit in ("ns", "us"):
        out = tmp_path / unit
        out.mkdir()
        cat.to_parquet(out / "catalog.parquet", index=False)
        e = ev.assign(timestamp=naive.astype(f"datetime64[{unit}]"))
        e.to_parquet(out / "events.parquet", index=False)
        got = read_events(spark, out, ds).select("ts").toPandas()["ts"].to_numpy()
        np.testing.assert_array_equal(np.sort(got), np.sort(base))


@pytest.mark.slow
def test_backtest_identical(spark: Any, ds: Dataset) -> None:
    """A backtest whose engine's behavioural sources are fitted on Spark (on the training
    window) measures exactly what the in-process backtest measures (the mix and its
    ablations; the ranker reads the same fitted sources)."""
    from recset.eval.backtest import run_backtest
    from recset.spark import fit_dataset

    kw = dict(baselines=[], ranker=False, explore_share=0.0, n_boot=20, samples=0)
    local = run_backtest(ds, **kw)  # type: ignore[arg-type]
    on_spark = run_backtest(ds, prefit=lambda d, c: fit_dataset(spark, d, c), **kw)  # type: ignore[arg-type]
    assert local.queries == on_spark.queries > 0
    assert set(local.hits) == set(on_spark.hits) and "mix" in local.hits
    for name, hits in local.hits.items():
        np.testing.assert_array_equal(on_spark.hits[name], hits, name)
    assert local.systems == on_spark.systems


def _late_groups(events: pd.DataFrame, share: float) -> np.ndarray:
    """Rows of the later ``share`` of time, whole orders and sessions (an append holds
    groups that are new as a whole): a group with any row after the cut goes late."""
    late = (events["timestamp"] >= events["timestamp"].quantile(1 - share)).to_numpy().copy()
    for _ in range(4):  # an order and a session can chain groups across the cut
        for col in ("order_id", "session_id"):
            moved = events.loc[late, col].dropna().unique()
            late |= events[col].isin(moved).to_numpy(dtype=bool)
    return late


def test_append_on_spark_equals_in_process_and_full_build(
    spark: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`recset build --append EVENTS --engine spark` (new pairs counted on Spark, with decay)
    stores the counts and serves the lists of the in-process append, and both equal a full
    build on the union of the events."""
    import logging

    from recset.cli import main
    from recset.data._format import write_events_parquet
    from recset.data.synthetic import generate
    from recset.engine import append_engine
    from recset.recall import CountState
    from recset.storage import Store

    config = config_from_dict(
        {
            "build": {"incremental": True, "half_life_days": 15.0, "candidates_per_seed": 30},
            "mix": {"sources": ["co_purchase", "co_view", "popular"], "filters": []},
            "sources": {
                "co_view": {"similarity": "ochiai", "min_support": 2.0},
                "co_purchase": {"similarity": "confidence", "level": "product"},
                "popular": {"half_life_days": 10.0, "max_candidates": 10},
            },
        }
    )
    syn = generate(SyntheticConfig(n_items=200, n_users=100, n_events=5000, seed=11))
    late = _late_groups(syn.events, 0.25)
    early, new = syn.events[~late], syn.events[late].reset_index(drop=True)
    assert new["order_id"].notna().any() and new["session_id"].notna().any()
    first = Dataset.from_frames(syn.catalog, early)
    engine = Engine.build(first, config)
    for name in ("on-spark", "in-process"):
        engine.save(tmp_path / name, dataset=first)
    (tmp_path / "day").mkdir()
    write_events_parquet(new, tmp_path / "day" / "events.parquet")

    with caplog.at_level(logging.INFO, logger="recset.spark"):
        main(
            ["build", "--append", str(tmp_path / "day"), "--store", str(tmp_path / "on-spark")]
            + ["--engine", "spark", "--spark-master", "local[2]"]
        )
    counted = [r.getMessage() for r in caplog.records if "counted on Spark" in r.getMessage()]
    assert len(counted) == 2, counted  # co_purchase and co_view
    assert spark.sparkContext._jsc is not None  # the test's session was left running
    append_engine(tmp_path / "in-process", tmp_path / "day")

    on_spark = Engine.load(tmp_path / "on-spark", neural=False)
    local = Engine.load(tmp_path / "in-process", neural=False)
    full = Engine.build(Dataset.from_frames(syn.catalog, syn.events), config)
    assert_same_lists(on_spark, local)
    assert_same_lists(on_spark, full)
    assert_same_source_state(on_spark, full)
    kept = {}
    for name in ("on-spark", "in-process"):
        with Store.open(tmp_path / name, create=False) as st:
            path = st.verify_artifact(st.artifact("engine", 2))
        kept[name] = CountState.load(path / "mixer" / "counts")
    assert full.mixer.counts is not None
    assert kept["on-spark"].ref_time == full.mixer.counts.ref_time
    for key, value in full.mixer.counts.arrays.items():
        np.testing.assert_allclose(kept["on-spark"].arrays[key], value, rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(
            kept["on-spark"].arrays[key], kept["in-process"].arrays[key], rtol=1e-5, err_msg=key
        )
