"""Incremental builds (``recset build --append``): the appended engine equals a full build
on the union of the events, and bad appends are refused with nothing released."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recset.cli import main
from recset.config import config_from_dict
from recset.data import Dataset
from recset.data._format import write_events_parquet
from recset.data.synthetic import SyntheticConfig, SyntheticData, generate
from recset.engine import Engine, append_engine
from recset.errors import ConfigError, DataError, StorageError
from recset.recall import CountState
from recset.storage import Store
from recset.testing import assert_same_lists, assert_same_source_state

MIX = {"sources": ["co_purchase", "co_view", "popular"], "filters": []}

CONFIGS: dict[str, dict[str, Any]] = {
    # decay everywhere; Ochiai (the candidate's occurrence divides) and a min_support that
    # decay moves counts across
    "decay": {
        "build": {"incremental": True, "half_life_days": 15.0, "candidates_per_seed": 30},
        "mix": MIX,
        "sources": {
            "co_view": {"similarity": "ochiai", "min_support": 2.0},
            "co_purchase": {"similarity": "confidence", "level": "product"},
            "popular": {"half_life_days": 10.0, "max_candidates": 10},
        },
    },
    # no decay; asymmetric cosine at item level; a small append leaves most lists as they were
    "plain": {
        "build": {"incremental": True, "candidates_per_seed": 20},
        "mix": MIX,
        "sources": {
            "co_purchase": {"similarity": "asymmetric_cosine", "alpha": 0.7, "level": "item"},
            "popular": {"half_life_days": 0.0, "max_candidates": 10},
        },
    },
    # popular only as the fallback (lists are filled from it when served): its daily changes
    # re-mix nothing
    "fallback": {
        "build": {"incremental": True, "half_life_days": 30.0, "candidates_per_seed": 20},
        "mix": {"sources": ["co_purchase", "co_view"], "filters": []},
    },
}
SHARE = {"decay": 0.25, "plain": 0.01, "fallback": 0.03}


@pytest.fixture(scope="module")
def syn() -> SyntheticData:
    return generate(SyntheticConfig(n_items=300, n_users=150, n_events=9000, seed=7))


def split_whole_groups(events: pd.DataFrame, share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(earlier, later) events, cut at a time quantile; a session or order that starts
    after the cut goes wholly to the later part (an append holds whole new groups)."""
    cut = events["timestamp"].quantile(1 - share)
    late = (events["timestamp"] >= cut).to_numpy().copy()
    for col in ("session_id", "order_id"):
        ids = events[col]
        has = ids.notna().to_numpy()
        first = events.groupby(ids)["timestamp"].transform("min").to_numpy()
        late[has] = first[has] >= cut
    # a group on both sides through its other id: the whole of it goes late
    for _ in range(3):
        for col in ("session_id", "order_id"):
            ids = events[col]
            moved = ids[late].dropna().unique()
            late |= ids.isin(moved).to_numpy(dtype=bool)
    return events[~late].reset_index(drop=True), events[late].reset_index(drop=True)


@pytest.mark.parametrize("which", sorted(CONFIGS))
def test_append_equals_full_build_on_the_union(
    syn: SyntheticData, tmp_path: Path, which: str
) -> None:
    config = config_from_dict(CONFIGS[which])
    early, late = split_whole_groups(syn.events, SHARE[which])
    assert len(late) > 50 and late["order_id"].notna().any()
    # a user the engine never saw: users need no id map here (no source reads them)
    late.loc[late["user_id"] == late["user_id"].iloc[0], "user_id"] = "new-user"
    first = Dataset.from_frames(syn.catalog, early)
    Engine.build(first, config).save(tmp_path / "store", dataset=first)
    write_events_parquet(late, tmp_path / "new.parquet")
    report = append_engine(tmp_path / "store", tmp_path / "new.parquet")
    assert report.version == 2 and report.n_events == len(late)

    inc = Engine.load(tmp_path / "store", neural=False)
    union = Dataset.from_frames(syn.catalog, pd.concat([early, late]))
    full = Engine.build(union, config)
    assert_same_lists(inc, full)
    assert_same_source_state(inc, full)
    # the stored counts are those of the union, decayed to its last event
    with Store.open(tmp_path / "store", create=False) as st:
        path = st.verify_artifact(st.artifact("engine", 2))
    kept = CountState.load(path / "mixer" / "counts")
    assert full.mixer.counts is not None
    assert kept.ref_time == full.mixer.counts.ref_time == int(union.time_range[1])
    for key, value in full.mixer.counts.arrays.items():
        np.testing.assert_allclose(kept.arrays[key], value, rtol=1e-5, err_msg=key)
    if which == "decay":  # not every row was recomputed for co_purchase (confidence)
        assert report.rows_recomputed["co_purchase"] < len(full.mixer.sources["co_purchase"].rep_)
    elif which == "fallback":
        assert 0 < report.n_remixed < report.n_seeds and "popular" not in report.rescored
    else:  # only some lists were mixed anew, the others copied
        assert 0 < report.n_remixed < report.n_seeds
        # and of those, some only had a source's scores change, not its order: rescored
        assert report.rescored["co_purchase"] > 0 and report.rescored["popular"] > 0


@pytest.fixture(scope="module")
def built(syn: SyntheticData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store with an incremental engine on the earlier events, and the later events."""
    root = tmp_path_factory.mktemp("incr")
    early, late = split_whole_groups(syn.events, 0.2)
    first = Dataset.from_frames(syn.catalog, early)
    Engine.build(first, config_from_dict(CONFIGS["plain"])).save(root / "store", dataset=first)
    write_events_parquet(late, root / "new.parquet")
    return root / "store", root / "new.parquet"


def active_version(store: Path) -> int:
    with Store.open(store, create=False) as st:
        active, _ = st.active_release(("engine",))
    return active["engine"].version


def test_append_refuses_groups_already_counted(built: tuple[Path, Path]) -> None:
    store, new = built
    append_engine(store, new)
    before = active_version(store)
    # the same events again: their orders were counted, their baskets would grow
    with pytest.raises(DataError, match=r"order_id values were already counted"):
        append_engine(store, new)
    assert active_version(store) == before


def test_append_names_the_row_of_an_unknown_item(built: tuple[Path, Path], tmp_path: Path) -> None:
    store, new = built
    ev = pd.read_parquet(new).head(5)
    ev.loc[3, "item_id"] = "no-such-item"
    ev.to_csv(tmp_path / "events.csv", index=False)
    before = active_version(store)
    with pytest.raises(DataError, match=r"events.csv: row 4: item_id 'no-such-item' is not in "):
        append_engine(store, tmp_path / "events.csv")
    assert active_version(store) == before


def test_engine_without_counts_and_unsupported_sources_are_refused(
    syn: SyntheticData, tmp_path: Path
) -> None:
    ds = Dataset.from_frames(syn.catalog, syn.events)
    cfg = {k: v for k, v in CONFIGS["plain"].items() if k != "build"}
    Engine.build(ds, config_from_dict(cfg)).save(tmp_path / "store", dataset=ds)
    with pytest.raises(StorageError, match=r"kept no counts.*incremental = true"):
        append_engine(tmp_path / "store", tmp_path / "missing.parquet")
    with pytest.raises(ConfigError, match=r"co_purchase_only"):
        Engine.build(ds, config_from_dict({"build": {"incremental": True}}))


def test_cli_build_append(
    built: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = built
    ev = pd.read_parquet(built[1])
    # a new day of events: new orders and sessions, one day after the last
    day = ev.head(400).copy()
    for col in ("order_id", "session_id"):
        day[col] = day[col].map(lambda v: None if pd.isna(v) else f"day2-{v}")
    day["timestamp"] = day["timestamp"] + pd.Timedelta(days=1)
    (tmp_path / "day").mkdir()
    write_events_parquet(day, tmp_path / "day" / "events.parquet")
    before = active_version(store)
    try:
        main(["build", "--append", str(tmp_path / "day"), "--store", str(store)])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"engine v{before + 1} is active" in out and "400 events added" in err
