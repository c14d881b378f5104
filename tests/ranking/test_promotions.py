"""The promotion calendar: its file, its step functions, the cand_promo* features, the
request time through the pipeline, and a planted test where only the calendar tells."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recset.config import config_from_dict
from recset.data import (
    Dataset,
    Promotions,
    load_dataset,
    promotion_at,
    promotion_steps,
    write_dataset,
    write_promotions,
)
from recset.engine import Engine
from recset.errors import ConfigError, DataError, ParameterTypeError
from recset.ranking import FeatureSpace, train_ranker

from .test_discover import _query as discover_query  # the same one-query helper

DAY = 86_400


def _calendar(rows: list[tuple[int, int, int, int, float]], n_channels: int = 2) -> Promotions:
    """(item, start, end, channel, reach) rows."""
    a = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return Promotions(
        item=a[:, 0].astype(np.int32),
        start=a[:, 1].astype(np.int64),
        end=a[:, 2].astype(np.int64),
        channel=a[:, 3].astype(np.int16),
        channels=tuple(f"ch{i}" for i in range(n_channels)),
        reach=a[:, 4].astype(np.float32),
    )


def test_promotion_steps_hand_computed() -> None:
    # item 0: display 0.5 on [100, 200), mailer 0.25 on [150, 250), display 1 on [300, 400)
    # item 1: display 1 on [100, 110); item 2: none
    cal = _calendar(
        [(0, 100, 200, 0, 0.5), (0, 150, 250, 1, 0.25), (1, 100, 110, 0, 1.0), (0, 300, 400, 0, 1)]
    )
    keys, reach, channels, origin = promotion_steps(cal, 3)
    item = np.array([0] * 9 + [1] * 3 + [2])
    t = np.array([99, 100, 149, 150, 199, 200, 249, 250, 300, 100, 109, 110, 150])
    got = promotion_at(keys, reach, origin, item, t)
    assert got.tolist() == pytest.approx([0, 0.5, 0.5, 0.75, 0.75, 0.25, 0.25, 0, 1, 1, 1, 0, 0])
    got_ch = promotion_at(keys, channels, origin, item, t)
    assert got_ch.tolist() == [0, 1, 1, 2, 2, 1, 1, 0, 1, 1, 1, 0, 0]
    # times far outside the calendar read nothing
    assert promotion_at(
        keys, reach, origin, np.array([0, 0]), np.array([-(10**9), 10**12])
    ).tolist() == [0, 0]


def _periods(n_items: int, last_start: int, longest: int, reach: list[float], most: int):  # noqa: ANN202
    """Calendar rows (item, start, length, channel 0/1, reach), at least one."""
    row = st.tuples(
        st.integers(0, n_items - 1),
        st.integers(0, last_start),
        st.integers(1, longest),
        st.integers(0, 1),
        st.sampled_from(reach),
    )
    return st.lists(row, min_size=1, max_size=most)


@settings(max_examples=60, deadline=None)
@given(
    _periods(4, 50, 30, [0.0, 0.25, 0.5, 1.0], 12),
    st.lists(st.tuples(st.integers(0, 4), st.integers(-5, 90)), min_size=1, max_size=30),
)
def test_promotion_at_matches_brute_force(rows, probes) -> None:  # noqa: ANN001
    cal = _calendar([(i, s, s + d, c, r) for i, s, d, c, r in rows])
    keys, reach, channels, origin = promotion_steps(cal, 5)
    item = np.array([p[0] for p in probes])
    t = np.array([p[1] for p in probes])
    got_r = promotion_at(keys, reach, origin, item, t)
    got_c = promotion_at(keys, channels, origin, item, t)
    for j, (i, tt) in enumerate(probes):
        active = [(c, r) for it, s, d, c, r in rows if it == i and s <= tt < s + d]
        assert got_r[j] == pytest.approx(sum(r for _, r in active), abs=1e-5)
        assert got_c[j] == len({c for c, _ in active})


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    cat = pd.DataFrame({"item_id": ["a", "b", "c"], "category_id": ["x", "x", "y"]})
    ev = pd.DataFrame(
        {
            "user_id": ["u", "u", "v"],
            "item_id": ["a", "b", "c"],
            "event": "purchase",
            "timestamp": [10 * DAY, 10 * DAY + 1, 11 * DAY],
            "order_id": ["o1", "o1", "o2"],
        }
    )
    return cat, ev


def test_calendar_round_trips_through_a_dataset_directory(tmp_path: Path) -> None:
    cat, ev = _frames()
    write_dataset(cat, ev, tmp_path)
    assert load_dataset(tmp_path).promotions is None  # no file: no calendar
    cal = pd.DataFrame(
        {
            "item_id": ["a", "c"],
            "start": ["1970-01-11T00:00:00Z", str(12 * DAY)],
            "end": [11 * DAY, 13 * DAY],
            "channel": ["display", None],
            "reach": [0.5, None],
        }
    )
    write_promotions(cal, tmp_path)
    ds = load_dataset(tmp_path)
    p = ds.promotions
    assert p is not None and len(p) == 2
    assert ds.items.ids(p.item).tolist() == ["a", "c"]
    assert p.start.tolist() == [10 * DAY, 12 * DAY] and p.end.tolist() == [11 * DAY, 13 * DAY]
    assert [p.channels[c] for c in p.channel] == ["display", "promotion"]  # default channel
    assert p.reach.tolist() == [0.5, 1.0]  # default reach
    assert "promotions.parquet: 2 of 2 rows kept" in ds.load_report.summary()
    # the splits keep it
    assert ds.split_time(11 * DAY)[0].promotions is p


def test_bad_calendar_rows_name_the_file_and_row(tmp_path: Path) -> None:
    cat, ev = _frames()
    write_dataset(cat, ev, tmp_path)
    bad = pd.DataFrame(
        {
            "item_id": ["a", "zz", "b", "c", "a"],
            "start": [0, 0, "soon", 10, 0],
            "end": [5, 5, 5, 10, 5],
            "reach": [0.5, 1, 1, 1, 1.5],
        }
    )
    bad.astype(str).to_csv(tmp_path / "promotions.csv", index=False)
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path)
    msg = str(err.value)
    assert "promotions.csv" in msg and "4 bad rows" in msg
    assert "row 2" in msg and "'zz' is not in the catalog" in msg
    assert "unparseable start 'soon'" in msg
    assert "end is not after start" in msg and "outside [0, 1]" in msg
    # skip: the good row is kept, the bad ones quarantined with their reasons
    q = tmp_path / "q"
    ds = load_dataset(tmp_path, on_bad_rows="skip", quarantine_dir=q)
    assert ds.promotions is not None and len(ds.promotions) == 1
    quarantined = pd.read_csv(q / "promotions.bad-rows.csv")
    assert quarantined["row"].tolist() == [2, 3, 4, 5]
    (tmp_path / "promotions.csv").write_text("item_id,begin\na,1\n")
    with pytest.raises(
        DataError, match=r"promotions.csv: missing required columns \['start', 'end'\]"
    ):
        load_dataset(tmp_path)


def _query(feats: FeatureSpace, ds: Dataset, cands: list[str], when: int | None) -> np.ndarray:
    """The feature rows of seed "a", an anonymous user, over ``cands`` asked at ``when``."""
    return discover_query(ds, feats, "a", None, cands, when)


PROMO = ("cand_promo", "cand_promo_channels", "cand_promo_lift")


def _b_promoted() -> Dataset:
    """Item b: 3 buys on days 0..9 while on display (reach 0.5) and mailer (1.0); 1 buy on
    days 10..19 with no promotion; c on display days 30..31. Data span: day 0 .. day 19 + 1 s."""
    rows = []
    for o, (item, day) in enumerate([("b", 1), ("b", 2), ("b", 3), ("b", 15), ("a", 0)]):
        rows.append((f"u{o}", item, "purchase", day * DAY, f"o{o}"))
    rows.append(("u9", "a", "purchase", 19 * DAY + 1, "o9"))
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp", "order_id"])
    cat = pd.DataFrame({"item_id": ["a", "b", "c"], "category_id": ["x", "x", "x"]})
    cal = pd.DataFrame(
        {
            "item_id": ["b", "b", "c"],
            "start": [0, 0, 30 * DAY],
            "end": [10 * DAY, 10 * DAY, 31 * DAY],
            "channel": ["display", "mailer", "display"],
            "reach": [0.5, 1.0, 1.0],
        }
    )
    return Dataset.from_frames(cat, ev, promotions=cal)


def test_promotion_features_hand_computed(tmp_path: Path) -> None:
    ds = _b_promoted()
    feats = FeatureSpace.fit(ds, ("x",), extra_features=PROMO)
    cols = [feats.names.index(n) for n in PROMO]
    at_5 = _query(feats, ds, ["a", "b", "c"], 5 * DAY)[:, cols]
    assert at_5[:, 0].tolist() == [0, 1.5, 0]  # reach summed over channels
    assert at_5[:, 1].tolist() == [0, 2, 0]
    # lift of b: ((3 + .5) / 10 days) / ((1 + .5) / (span - 10 days)); a never promoted: NaN
    span_days = (19 * DAY + 2) / DAY
    assert at_5[1, 2] == pytest.approx((3.5 / 10) / (1.5 / (span_days - 10)), rel=1e-5)
    assert np.isnan(at_5[0, 2])
    at_30 = _query(feats, ds, ["a", "b", "c"], 30 * DAY)[:, cols]
    assert at_30[:, 0].tolist() == [0, 0, 1]
    # saved and loaded: the same columns
    feats.save(tmp_path)
    again = FeatureSpace.load(tmp_path)
    np.testing.assert_array_equal(
        _query(again, ds, ["a", "b", "c"], 5 * DAY), _query(feats, ds, ["a", "b", "c"], 5 * DAY)
    )
    # no time given: now (1970 is long past, so nothing is promoted)
    assert _query(feats, ds, ["b", "c"], None)[:, cols[0]].tolist() == [0, 0]


def test_promotion_feature_without_a_calendar_says_what_to_add() -> None:
    cat, ev = _frames()
    ds = Dataset.from_frames(cat, ev)
    with pytest.raises(ConfigError, match="has none: add promotions.parquet"):
        FeatureSpace.fit(ds, ("x",), extra_features=("cand_promo",))


def _planted(n_weeks: int = 30, users: int = 60, n_items: int = 20) -> Dataset:
    """Every basket holds the seed ``s``, the one of ``p0..p{n_items-1}`` promoted that week
    (displayed at full reach) and, half the time, another ``p`` at random. The promoted one
    rotates at random, so nothing but the calendar says which complement a basket holds."""
    rng = np.random.default_rng(3)
    promoted = rng.integers(0, n_items, size=n_weeks)
    rows, cal = [], []
    o = 0
    for w in range(n_weeks):
        cal.append((f"p{promoted[w]}", w * 7 * DAY, (w + 1) * 7 * DAY, "display", 1.0))
        for u in range(users):
            if rng.random() < 0.5:
                continue
            t = w * 7 * DAY + int(rng.integers(0, 7 * DAY - 10))
            rows += [(f"u{u}", "s", "purchase", t, f"o{o}")]
            rows += [(f"u{u}", f"p{promoted[w]}", "purchase", t + 1, f"o{o}")]
            other = int(rng.integers(0, n_items))
            if rng.random() < 0.5 and other != promoted[w]:
                rows += [(f"u{u}", f"p{other}", "purchase", t + 2, f"o{o}")]
            o += 1
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp", "order_id"])
    items = ["s", *(f"p{i}" for i in range(n_items))]
    cat = pd.DataFrame({"item_id": items, "category_id": ["c"] * len(items)})
    promotions = pd.DataFrame(cal, columns=["item_id", "start", "end", "channel", "reach"])
    return Dataset.from_frames(cat, ev, promotions=promotions)


def test_planted_promotions_are_found_only_with_the_calendar() -> None:
    ds = _planted()
    t_cut = 24 * 7 * DAY
    train, _ = ds.split_time(t_cut)
    config = config_from_dict({"ranker": {"label_split": "time", "min_child_samples": 5}})
    engine = Engine.build(train, config)
    hits = {}
    # the calendar features are on by default for data with a calendar
    for name, on in (("base", False), ("promo", True)):
        rc = config.ranker.model_copy(update={"promotion_features": on, "user_candidates": 0})
        ranked = engine.with_ranker(train_ranker(train, config, rc, mixer=engine.mixer))
        hit = []
        for w in range(24, 30):
            at = w * 7 * DAY + DAY
            want = ds.promotions.item[ds.promotions.start == w * 7 * DAY]
            top = ranked.recommend("s", None, k=1, at=at)[0].item_id
            hit.append(top == ds.items.id_of(int(want[0])))
        hits[name] = np.mean(hit)
    assert hits["promo"] == 1.0  # the promoted item is first in every test week
    assert hits["base"] <= 0.5  # without the calendar the week's item is a guess


def test_recommend_checks_at() -> None:
    ds = _planted(n_weeks=6, users=10)
    engine = Engine.build(ds, config_from_dict({}))
    with pytest.raises(ParameterTypeError, match="'at' parameter must be a time"):
        engine.recommend("s", at="tomorrow")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'at' parameter"):
        engine.recommend_batch(["s"], at=float("nan"))
    assert engine.recommend("s", at=3 * 7 * DAY)  # a valid time: served as before


def _trained_store(tmp_path: Path) -> tuple[Dataset, Path]:
    """The planted weekly displays (20 weeks) written as a dataset directory with its
    calendar, built into a store and a ranker trained and activated there by the CLI."""
    from recset.cli import main

    ds = _planted(n_weeks=20, users=50)
    data = tmp_path / "data"
    ev = ds.events
    events = pd.DataFrame(
        {
            "user_id": ds.users.ids(ev.user),
            "item_id": ds.items.ids(ev.item),
            "event": "purchase",
            "timestamp": ev.timestamp,
            "order_id": ds.orders_map.ids(ev.order),
        }
    )
    write_dataset(pd.DataFrame({"item_id": ds.items.values, "category_id": "c"}), events, data)
    p = ds.promotions
    write_promotions(
        pd.DataFrame(
            {"item_id": ds.items.ids(p.item), "start": p.start, "end": p.end, "reach": p.reach}
        ),
        data,
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text('[ranker]\nlabel_split = "time"\nmin_child_samples = 5\nuser_candidates = 0\n')
    store = tmp_path / "store"
    args = ["--data", str(data), "--store", str(store), "--config", str(cfg)]
    main(["build", *args])
    main(["train-ranker", *args, "--activate-anyway"])
    return ds, store


def test_cli_serves_the_calendar_of_the_requested_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from recset.cli import main

    ds, store = _trained_store(tmp_path)
    p = ds.promotions
    capsys.readouterr()
    tops = {}
    for week in (3, 11):
        want = ds.items.id_of(int(p.item[p.start == week * 7 * DAY][0]))
        iso = pd.Timestamp(week * 7 * DAY + DAY, unit="s").isoformat()
        main(["recommend", "--store", str(store), "s", "--k", "3", "--json", "--at", iso])
        recs = json.loads(capsys.readouterr().out.strip())["recommendations"]
        tops[week] = (recs[0]["item_id"], want)
    assert all(got == want for got, want in tops.values()), tops
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--store", str(store), "s", "--at", "next tuesday"])
    assert exc.value.code == 2
    assert "neither epoch seconds nor an ISO 8601 date" in capsys.readouterr().err


def _days_dataset(
    rows: list[tuple[str, str, int]], calendar: list[tuple[str, int, int, str, float]]
) -> Dataset:
    """Purchases (user, item, day), one basket each, of items a, b, c; the calendar's
    (item, first day, end day, channel, reach) periods."""
    ev = pd.DataFrame(
        [(u, i, "purchase", d * DAY, f"o{n}") for n, (u, i, d) in enumerate(rows)],
        columns=["user_id", "item_id", "event", "timestamp", "order_id"],
    )
    cat = pd.DataFrame({"item_id": ["a", "b", "c"], "category_id": ["x", "x", "x"]})
    cal = pd.DataFrame(calendar, columns=["item_id", "start", "end", "channel", "reach"])
    cal[["start", "end"]] *= DAY
    return Dataset.from_frames(cat, ev, promotions=cal)


def test_cand_promo_weighted_learns_each_channels_lift() -> None:
    # b: on display (reach 1) on days 0..10, bought on days 1-4 and never after: its 4 buys
    # over 20 days predict 2 in the display's 10 days, 4 were made: display lift 2.
    # a: in the mailer (reach 0.5) on days 10..20, bought on days 0 and 5 only: lift 0.
    rows = [("u1", "b", d) for d in (1, 2, 3, 4)] + [("u2", "a", 0), ("u3", "a", 5)]
    rows.append(("u4", "c", 20))  # the data ends on day 20
    cal = [("b", 0, 10, "display", 1.0), ("a", 10, 20, "mailer", 0.5)]
    ds = _days_dataset(rows, cal)
    feats = FeatureSpace.fit(ds, ("x",), extra_features=("cand_promo_weighted",))
    feat = next(f for f in feats.features if f.name == "cand_promo_weighted")
    span_days = (20 * DAY + 1) / DAY
    display = 4 / (4 / span_days * 10)
    assert feat.channel_lift_.tolist() == pytest.approx([display, 0.0], rel=1e-5)
    col = feats.names.index("cand_promo_weighted")
    at_5 = _query(feats, ds, ["a", "b", "c"], 5 * DAY)[:, col]
    assert at_5.tolist() == pytest.approx([0, display - 1, 0], rel=1e-5)
    at_15 = _query(feats, ds, ["a", "b", "c"], 15 * DAY)[:, col]
    assert at_15.tolist() == [0, 0, 0]  # the mailer did not move a: weight 0


def test_cand_promo_trial_lift_counts_only_first_purchases_after_the_burn_in() -> None:
    # data: day 0 .. day 40 (+1 s); the first quarter (to day 10) is burn-in.
    # b on display days 10..20. b's buys: u1 day 2 (first, in the burn-in: not counted),
    # u1 day 12 (a repeat), u2 day 12 and u3 day 15 (firsts, promoted), u4 day 30 (first,
    # not promoted), u2 day 31 (a repeat). c is on display the whole time: NaN; a never: NaN.
    rows = [("u1", "b", 2), ("u1", "b", 12), ("u2", "b", 12), ("u3", "b", 15)]
    rows += [("u4", "b", 30), ("u2", "b", 31), ("u5", "c", 0), ("u9", "a", 40)]
    ds = _days_dataset(rows, [("b", 10, 20, "display", 1.0), ("c", 0, 50, "display", 1.0)])
    feats = FeatureSpace.fit(ds, ("x",), extra_features=("cand_promo_trial_lift",))
    col = feats.names.index("cand_promo_trial_lift")
    got = _query(feats, ds, ["a", "b", "c"], 5 * DAY)[:, col]
    other_days = 20 + 1 / DAY  # (day 40 + 1 s) - day 10 - the 10 promoted days
    assert got[1] == pytest.approx((2.5 / 10) / (1.5 / other_days), rel=1e-5)
    assert np.isnan(got[0]) and np.isnan(got[2])
    # the same at any request time: it is a property of the item
    np.testing.assert_array_equal(_query(feats, ds, ["a", "b", "c"], 15 * DAY)[:, col], got)


def test_with_calendar_reads_the_new_schedule_and_keeps_what_was_learned(
    tmp_path: Path,
) -> None:
    ds = _b_promoted()  # b on display and mailer on days 0..10
    names = (*PROMO, "cand_promo_weighted")
    feats = FeatureSpace.fit(ds, ("x",), extra_features=names)
    weighted = feats.feature("cand_promo_weighted")
    display_lift = float(weighted.channel_lift_[list(weighted.channels_).index("display")])
    assert display_lift > 1  # b sold more on display: the display's weight is > 0
    # next month's calendar: a on display days 40..50 (reach 0.7), c in a flyer (a channel
    # the fit never saw), nothing for b
    new = _calendar([(0, 40 * DAY, 50 * DAY, 0, 0.7), (2, 40 * DAY, 50 * DAY, 1, 1.0)])
    new = Promotions(new.item, new.start, new.end, new.channel, ("display", "flyer"), new.reach)
    # read at day 45 before the update: the served-interval values of the old schedule are
    # kept inside the features; the new space must not read them
    assert _query(feats, ds, ["a"], 45 * DAY)[0, feats.names.index("cand_promo")] == 0
    space, changed = feats.with_calendar(new)
    assert changed == ("cand_promo", "cand_promo_channels", "cand_promo_weighted")
    cols = [space.names.index(n) for n in names]
    at_45 = _query(space, ds, ["a", "b", "c"], 45 * DAY)[:, cols]
    np.testing.assert_allclose(at_45[:, 0], [0.7, 0, 1.0], rtol=1e-6)  # cand_promo
    assert at_45[:, 1].tolist() == [1, 0, 1]  # cand_promo_channels
    # the lift learned in training is kept: b's, and NaN for a, never promoted then
    before = _query(feats, ds, ["a", "b", "c"], 5 * DAY)[:, cols]
    np.testing.assert_array_equal(at_45[:, 2], before[:, 2])
    # weighted: a's display by the display lift learned in training; the flyer weighs 0
    np.testing.assert_allclose(at_45[:, 3], [0.7 * (display_lift - 1), 0, 0], rtol=1e-5)
    # the old schedule is gone from the new space, and untouched in the old one
    assert _query(space, ds, ["b"], 5 * DAY)[0, cols[0]] == 0
    assert _query(feats, ds, ["b"], 5 * DAY)[0, cols[0]] == 1.5
    # saved and loaded: the same columns
    space.save(tmp_path)
    np.testing.assert_array_equal(
        _query(FeatureSpace.load(tmp_path), ds, ["a", "b", "c"], 45 * DAY),
        _query(space, ds, ["a", "b", "c"], 45 * DAY),
    )
    # an item index the features do not know
    with pytest.raises(ValueError, match="item index 3 is outside the 3 items"):
        feats.with_calendar(_calendar([(3, 0, DAY, 0, 1.0)]))
    # a space without a calendar feature says so
    plain = FeatureSpace.fit(ds, ("x",))
    with pytest.raises(ConfigError, match="reads no promotion calendar"):
        plain.with_calendar(new)


def test_cli_update_calendar_serves_the_new_calendar_without_retraining(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from recset.cli import main
    from recset.storage import Store

    _, store = _trained_store(tmp_path)
    # the weeks after the data: next month's displays, unknown when the ranker was trained
    plan = {20: "p3", 21: "p8", 22: "p14", 23: "p17"}
    future = pd.DataFrame(
        {
            "item_id": list(plan.values()),
            "start": [w * 7 * DAY for w in plan],
            "end": [(w + 1) * 7 * DAY for w in plan],
            "channel": "display",
        }
    )

    def tops() -> dict[int, str]:
        capsys.readouterr()
        out = {}
        for week in plan:
            iso = pd.Timestamp(week * 7 * DAY + DAY, unit="s").isoformat()
            main(["recommend", "--store", str(store), "s", "--k", "3", "--json", "--at", iso])
            out[week] = json.loads(capsys.readouterr().out.strip())["recommendations"][0]["item_id"]
        return out

    assert tops() != plan  # the trained calendar ends at week 20: no display is known
    with Store.open(str(store)) as st:
        trained = st.active_artifact("ranker")
    # a bad calendar: named file and row, nothing stored, the release unchanged
    bad = tmp_path / "bad.csv"
    future.assign(item_id=["p3", "nope", "p14", "p17"]).to_csv(bad, index=False)
    with pytest.raises(SystemExit) as exc:
        main(["update-calendar", "--store", str(store), "--calendar", str(bad)])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "bad.csv" in err and "'nope' is not in the catalog" in err
    with Store.open(str(store)) as st:
        assert st.active_artifact("ranker").version == trained.version
        assert len(st.list_artifacts("ranker")) == 1
    good = tmp_path / "next" / "promotions.csv"
    good.parent.mkdir()
    future.to_csv(good, index=False)
    main(["update-calendar", "--store", str(store), "--calendar", str(good.parent)])
    out = capsys.readouterr().out
    assert "calendar of 4 periods over 4 items" in out and "is active" in out
    assert tops() == plan  # each week's displayed item first, with the same models
    with Store.open(str(store)) as st:
        updated = st.active_artifact("ranker")
        assert updated.version == trained.version + 1
        assert updated.metrics["calendar"]["periods"] == 4
        assert updated.metrics["best_iteration"] == trained.metrics["best_iteration"]


_SPACE = {}


def _promo_space() -> FeatureSpace:
    """The calendar features fitted once on _b_promoted (their schedules are replaced)."""
    if not _SPACE:
        ds = _b_promoted()
        _SPACE["ds"] = ds
        _SPACE["space"] = FeatureSpace.fit(
            ds, ("x",), extra_features=(*PROMO, "cand_promo_weighted")
        )
    return _SPACE["space"]


@settings(max_examples=40, deadline=None)
@given(
    _periods(3, 40, 20, [0.25, 0.5, 1.0], 8),
    st.lists(st.integers(-5, 70), min_size=1, max_size=6),
)
def test_served_calendar_reads_equal_the_per_slot_reads(rows, times) -> None:  # noqa: ANN001
    """The per-interval values kept for served requests (one time) and the per-slot path
    (several times in one call) give what promotion_at gives, in any order of calls."""
    from recset.pipeline import Candidates

    cal = _calendar([(i, s * DAY, (s + d) * DAY, c, r) for i, s, d, c, r in rows])
    cal = Promotions(cal.item, cal.start, cal.end, cal.channel, ("display", "mailer"), cal.reach)
    space, _ = _promo_space().with_calendar(cal)
    keys, reach, channels, origin = promotion_steps(cal, 3)
    cols = [space.names.index(n) for n in ("cand_promo", "cand_promo_channels")]
    items = np.array([[0, 1, 2]], np.int32)

    def rows_at(when: np.ndarray) -> np.ndarray:
        n = len(when)
        mixed = Candidates(
            np.repeat(items, n, axis=0),
            np.zeros((n, 3), np.float32),
            np.full((n, 3, 1), np.nan, np.float32),
            np.full((n, 3, 1), -1, np.int32),
            ("x",),
        )
        seeds, users = np.full(n, 0, np.int32), np.full(n, -1, np.int32)
        return space.transform(seeds, users, mixed, when)[:, cols]

    def expected(when: np.ndarray) -> np.ndarray:
        item, t = np.tile([0, 1, 2], len(when)), np.repeat(when, 3)
        return np.c_[
            promotion_at(keys, reach, origin, item, t),
            promotion_at(keys, channels, origin, item, t),
        ]

    secs = np.array(times, np.int64) * DAY + 7
    for t in secs:  # served requests, one time each (a kept interval, often reused)
        one = np.array([t])
        np.testing.assert_allclose(rows_at(one), expected(one), rtol=1e-6)
    np.testing.assert_allclose(rows_at(secs), expected(secs), rtol=1e-6)  # a batch
