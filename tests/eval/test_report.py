"""The recall-mix workbench's backtest side: configs side by side on the same queries, cart
queries, the summary verdict, and the self-contained HTML report."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from recset.config import config_from_dict
from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.engine import Engine
from recset.errors import ConfigError
from recset.eval._baskets import Carts, cart_recommendations, prefix_queries
from recset.eval._report import verdict
from recset.eval.backtest import (
    BacktestResult,
    engine_system,
    named_configs,
    recommendations,
    run_side_by_side,
    summarize_gains,
    write_report,
)
from recset.recall import check_category_keys

LIGHT = """
[mix]
sources = ["co_purchase", "co_view", "popular"]
"""
# the same mix, except Sports seeds get popular items only: known to be worse there
WORSE_SPORTS = (
    LIGHT
    + """
[categories."Sports"]
sources = ["popular"]
"""
)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    syn = generate(SyntheticConfig(n_items=600, n_events=20000, seed=4))
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="module")
def side_by_side(ds: Dataset, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    d = tmp_path_factory.mktemp("cfg")
    (d / "light.toml").write_text(LIGHT)
    (d / "worse.toml").write_text(WORSE_SPORTS)
    configs = named_configs([str(d / "light.toml"), f"sports_popular={d / 'worse.toml'}"])
    results, comparison = run_side_by_side(
        ds,
        configs,
        ranker=False,
        baselines=["popular", "item_knn"],
        ablations=True,
        n_boot=200,
        samples=2,
    )
    out = tmp_path_factory.mktemp("report")
    others = {c.name: r for c, r in zip(configs[1:], results[1:], strict=True)}
    write_report(results[0], out, configs=configs, comparison=comparison, others=others)
    return configs, results, comparison, out


def test_side_by_side_finds_the_worse_config(side_by_side) -> None:  # noqa: ANN001
    configs, results, comparison, _ = side_by_side
    assert [c.name for c in configs] == ["light", "sports_popular"]
    assert comparison["reference"] == "light"
    # the same queries for both configs
    assert np.array_equal(results[0].basket, results[1].basket)
    (sports,) = [e for e in comparison["categories"] if e["key"] == "Sports"]
    assert sports["overridden_by"] == ["sports_popular"]
    cell = sports["systems"]["mix"]["sports_popular"]
    assert cell["diff"] < 0 and cell["high"] < 0  # significantly worse where overridden
    qc = results[0].query_category
    paths = results[0].category_paths
    outside = np.array([c >= 0 and not paths[c].startswith("Sports") for c in qc])
    # outside the overridden category both configs serve the very same lists
    assert np.array_equal(results[0].hits["mix"][outside], results[1].hits["mix"][outside])
    overall = comparison["all_queries"]["systems"]["mix"]["sports_popular"]
    assert overall["diff"] < 0
    n_sports = sum(paths[c].startswith("Sports") for c in qc if c >= 0)
    assert sports["queries"] == n_sports


def test_report_records_configs_and_split(side_by_side) -> None:  # noqa: ANN001
    configs, _, _, out = side_by_side
    md = (out / "report.md").read_text()
    assert "## Side by side" in md and "sports_popular − light" in md
    for c in configs:
        assert c.sha256 is not None and c.sha256[:16] in md
        assert c.text is not None and c.text.strip().splitlines()[-1] in md  # appendix
    assert "| test share | 0.2 |" in md  # the split as a table, not JSON
    assert len(md.splitlines()) < 200
    metrics = json.loads((out / "metrics.json").read_text())
    assert [c["name"] for c in metrics["configs"]] == ["light", "sports_popular"]
    assert "sports_popular" in metrics["by_config"]
    assert metrics["comparison"]["categories"][0]["key"] == "Sports"


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append((tag, value))


def test_html_is_self_contained(side_by_side) -> None:  # noqa: ANN001
    _, results, _, out = side_by_side
    page = (out / "report.html").read_text()
    parser = _Collect()
    parser.feed(page)
    parser.close()
    imgs = [v for t, v in parser.refs if t == "img"]
    assert len(imgs) >= 3  # Hit@k, categories, ablation, comparison
    for tag, ref in parser.refs:
        assert ref.startswith("data:image/png;base64,"), (tag, ref[:40])
        assert base64.b64decode(ref.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # summary first, then sample lists with titles
    assert page.index("Summary") < page.index("Side by side") < page.index("Sample lists")
    sample = results[0].samples[0]
    assert sample["seed_title"] and sample["seed_title"] in page
    assert sample["recommendations"][0]["title"] in page


def test_unknown_category_key_names_the_nearest(ds: Dataset) -> None:
    cfg = config_from_dict({"categories": {"Sprots > Tennis": {"sources": ["popular"]}}})
    with pytest.raises(ConfigError, match=r"Sprots > Tennis.*nearest: 'Sports > Tennis'"):
        check_category_keys(cfg, ds)
    with pytest.raises(ConfigError, match="Sprots"):
        Engine.build(ds, cfg, precompute=False)
    assert check_category_keys(cfg, ds, allow_unknown=True) == ["Sprots > Tennis"]
    ok = config_from_dict({"categories": {"Sports > Tennis": {"sources": ["popular"]}}})
    assert check_category_keys(ok, ds) == []


def test_prefix_queries_split_baskets_in_time_order() -> None:
    import pandas as pd

    catalog = pd.DataFrame({"item_id": list("abcdef"), "title": list("ABCDEF")})
    events = pd.DataFrame(
        {
            "user_id": ["u"] * 4 + ["v"] * 2,
            "item_id": ["c", "a", "d", "b", "e", "f"],
            "event": ["purchase"] * 6,
            "timestamp": [3, 1, 4, 2, 5, 6],
            "order_id": ["o1"] * 4 + ["o2"] * 2,
        }
    )
    ds = Dataset.from_frames(catalog, events)
    q, carts = prefix_queries(ds)
    ids = ds.items.values
    got = [
        (
            "".join(ids[carts.item[carts.indptr[i] : carts.indptr[i + 1]]]),
            "".join(sorted(ids[q.targets.item[q.targets.indptr[i] : q.targets.indptr[i + 1]]])),
            ids[q.seed[i]],
        )
        for i in range(len(q))
    ]
    assert sorted(got) == sorted(
        [("a", "bcd", "a"), ("ab", "cd", "b"), ("abc", "d", "c"), ("e", "f", "e")]
    )


def test_cart_answers_match_recommend_basket(ds: Dataset) -> None:
    engine = Engine.build(ds, config_from_dict({"mix": {"sources": ["co_purchase", "popular"]}}))
    system = engine_system(engine)
    rng = np.random.default_rng(0)
    carts_items = [rng.choice(ds.n_items, size=n, replace=False) for n in (1, 2, 3, 5)]
    indptr = np.r_[0, np.cumsum([len(c) for c in carts_items])].astype(np.int64)
    carts = Carts(indptr, np.concatenate(carts_items).astype(np.int32))
    from recset.data import Queries, Targets

    n = len(carts_items)
    queries = Queries(
        seed=np.array([c[-1] for c in carts_items], dtype=np.int32),
        user=np.full(n, -1, dtype=np.int32),
        basket=np.arange(n, dtype=np.int64),
        targets=Targets(np.arange(n + 1, dtype=np.int64), np.zeros(n, dtype=np.int64)),
    )
    recs, _ = recommendations(system, queries, carts, engine.config.mix.rrf_k)
    ids = ds.items.values
    for i, cart in enumerate(carts_items):
        # the backtest asks for K_MAX = 20 items (Hit@k reads the first k of them)
        want = [r.item_id for r in engine.recommend_basket(list(ids[cart]), k=recs.shape[1])]
        assert list(ids[recs[i]]) == want


def test_cart_recommendations_sum_reciprocal_ranks() -> None:
    # two cart items: x is 2nd in both lists, y 1st in one; x wins (1/12 + 1/12 > 1/11)
    lists = {0: [5, 7, 1], 1: [6, 7, 0]}

    def answer(seeds, users, width, when):  # noqa: ANN001, ANN202
        out = np.full((len(seeds), width), -1, dtype=np.int32)
        for r, s in enumerate(seeds):
            out[r, :3] = lists[int(s)]
        return out

    from recset.data import Queries, Targets

    q = Queries(
        np.array([1], np.int32),
        np.array([-1], np.int32),
        np.array([0], np.int64),
        Targets(np.array([0, 1]), np.array([7])),
    )
    recs = cart_recommendations(
        answer, q, Carts(np.array([0, 2]), np.array([0, 1], np.int32)), 3, 10.0
    )
    assert recs[0].tolist() == [7, 5, 6]  # the cart's own items (1, 0) are left out


def _planted_result(repeat_only: bool) -> BacktestResult:
    """A best system whose extra hits are all on items the user bought before (or all new)."""
    n = 400
    r = BacktestResult("planted", {}, n)
    r.basket = np.arange(n, dtype=np.int64)
    base = (np.arange(n) % 4 == 0).astype(float)  # 25%
    best = (np.arange(n) % 2 == 0).astype(float)  # 50%
    r.hits = {"mix": best, "pop": base}
    r.new_hits = {"mix": base.copy() if repeat_only else best.copy(), "pop": base.copy()}
    for name, kind, h in (("mix", "recset", best), ("pop", "baseline", base)):
        r.systems[name] = {"kind": kind, "item": {"hit@10": float(h.mean())}}
    r.summary = summarize_gains(r, n_boot=200)
    return r


def test_verdict_is_computed_from_the_data() -> None:
    buy_again = _planted_result(repeat_only=True)
    s = buy_again.summary["best_vs_baseline"]
    assert s["hit@10"]["diff"] == pytest.approx(0.25) and s["hit@10"]["low"] > 0
    assert s["repeat_share"] == pytest.approx(1.0)
    text = " ".join(verdict(buy_again))
    assert "beats the best baseline, pop, by +0.250" in text and "mostly 'buy again'" in text
    fresh = _planted_result(repeat_only=False)
    assert fresh.summary["best_vs_baseline"]["repeat_share"] == pytest.approx(0.0)
    assert "mostly 'buy again'" not in " ".join(verdict(fresh))
    assert "None of that gain is repeat purchases" in " ".join(verdict(fresh))


def test_named_configs_refuse_same_names(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(LIGHT)
    with pytest.raises(ConfigError, match="same name"):
        named_configs([str(tmp_path / "a.toml"), str(tmp_path / "a.toml")])
    with pytest.raises(ConfigError, match="not a file"):
        named_configs(["x=" + str(tmp_path / "missing.toml")])
    assert [c.name for c in named_configs([])] == ["default"]


def test_progress_off_a_terminal_is_a_few_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from recset.eval._progress import progress, stage

    timings: dict[str, float] = {}
    with stage("work", True, timings, "work"):
        assert sum(progress(range(100), "items", True)) == 4950
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 6  # start, 4 quarters, end
    assert lines[1].strip().startswith("items: 25/100") and "work: done in" in lines[-1]
    assert timings["work"] >= 0
    assert list(progress(range(3), "quiet", False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
