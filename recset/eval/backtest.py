"""Offline backtest: time split, basket queries, Hit@k of recset and baselines, report files."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from recset.config import Config
from recset.data import PURCHASE, Dataset
from recset.engine import Engine
from recset.eval.metrics import KS, Targets, hit_matrix, summarize
from recset.eval.splits import Queries, Split, basket_queries, time_split
from recset.recall import PopularConfig, PopularRecall

_log = logging.getLogger(__name__)

K_MAX = max(KS)
CHUNK = 20_000

# recs(seeds, users, k) -> (n, k) dense item ids padded with -1, and a bool (n,) telling per
# query whether the system had >= k candidates of its own (before any fallback)
Recommender = Callable[
    [NDArray[np.int32], NDArray[np.int32], int], tuple[NDArray[np.int32], NDArray[np.bool_]]
]


@dataclass
class System:
    """A named recommender under test: ``kind`` is "recset" or "baseline"."""

    name: str
    kind: str
    recommend: Recommender


@dataclass
class BacktestResult:
    dataset: str
    split: dict[str, object]
    queries: int
    systems: dict[str, dict[str, object]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "queries": self.queries,
            "systems": self.systems,
        }


BEHAVIOUR_TYPES = frozenset({"co_purchase", "co_view", "co_purchase_only", "gnn_neighbors"})
"""Source types that count towards coverage (behaviour-based, before any fallback)."""


def engine_system(engine: Engine, name: str = "mix") -> System:
    behaviour = np.array(
        [type(engine.sources[s]).name in BEHAVIOUR_TYPES for s in engine.source_names], dtype=bool
    )

    def rec(seeds: NDArray[np.int32], users: NDArray[np.int32], k: int):  # noqa: ANN202
        batch = engine.recommend_many(seeds, k)
        from_behaviour = ((batch.source_rank >= 0) & behaviour).any(axis=2).sum(axis=1)
        return batch.item, from_behaviour >= k

    return System(name, "recset", rec)


def popular_system(train: Dataset, name: str, scope: str) -> System:
    model = PopularRecall(PopularConfig(scope=scope)).fit(train)  # type: ignore[arg-type]

    def rec(seeds: NDArray[np.int32], users: NDArray[np.int32], k: int):  # noqa: ANN202
        c = model.recall_many(seeds, k)
        return c.item, c.counts() >= k

    return System(name, "baseline", rec)


def _levels(ds: Dataset) -> dict[str, NDArray[np.int32] | None]:
    """Item -> group id for each reporting level; a level the dataset lacks is left out."""
    levels: dict[str, NDArray[np.int32] | None] = {"item": None}
    if ds.n_product_types > 0 and (ds.catalog.product_type >= 0).any():
        levels["type"] = ds.catalog.product_type
    if ds.n_categories > 0 and (ds.catalog.category >= 0).any():
        levels["category"] = ds.catalog.category
    return levels


def _explore_mask(train: Dataset, queries: Queries) -> NDArray[np.bool_]:
    """Per target entry: True when the query's user never bought the target in training."""
    ev = train.events
    bought = ev.event == PURCHASE
    n_items = train.n_items
    keys = np.unique(ev.user[bought].astype(np.int64) * n_items + ev.item[bought])
    users = queries.user[queries.targets.query_of_entry()].astype(np.int64)
    return ~np.isin(users * n_items + queries.targets.item, keys)


def evaluate_system(system: System, split: Split, queries: Queries) -> dict[str, object]:
    """All metrics of one system on one set of queries."""
    recs = np.full((len(queries), K_MAX), -1, dtype=np.int32)
    own = np.zeros(len(queries), dtype=bool)
    for start in range(0, len(queries), CHUNK):
        sl = slice(start, start + CHUNK)
        r, o = system.recommend(queries.seed[sl], queries.user[sl], K_MAX)
        recs[sl, : r.shape[1]] = r[:, :K_MAX]
        own[sl] = o
    explore = _explore_mask(split.train, queries)
    out: dict[str, object] = {"kind": system.kind}
    for level, mapping in _levels(split.train).items():
        targets = queries.targets
        level_recs = recs
        if mapping is not None:
            level_recs = np.where(recs >= 0, mapping[np.maximum(recs, 0)], -1)
        parts: dict[str, float] = {}
        for label, sel in (("", None), ("explore_", explore), ("repeat_", ~explore)):
            t: Targets = targets if sel is None else targets.select(sel)
            if mapping is not None:
                t = t.map(mapping)
            metrics = summarize(hit_matrix(level_recs, t), t)
            if not label:
                parts.update(metrics)
            elif "hit@10" in metrics:
                parts[f"{label}hit@10"] = metrics["hit@10"]
        out[level] = parts
    out["coverage@10"] = float(own.mean()) if len(own) else 0.0
    types = split.train.catalog.product_type
    top = recs[:, :10]
    if (types >= 0).any():
        t10 = np.where(top >= 0, types[np.maximum(top, 0)], -1)
        s = np.sort(t10, axis=1)
        distinct = ((s[:, 1:] != s[:, :-1]) & (s[:, 1:] >= 0)).sum(axis=1) + (s[:, 0] >= 0)
        out["type_diversity@10"] = float(distinct.mean())
    out["catalog_coverage@10"] = float(len(np.unique(top[top >= 0])) / max(split.train.n_items, 1))
    return out


def run_backtest(
    dataset: Dataset,
    config: Config | None = None,
    *,
    t: int | None = None,
    test_share: float = 0.2,
    max_queries: int | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> BacktestResult:
    """Time-split backtest of the engine built with ``config`` against popularity baselines.

    ``max_queries`` samples that many queries (reproducibly, with ``seed``) to bound run time.
    """
    from tqdm.auto import tqdm

    split = time_split(dataset, t, test_share=test_share)
    queries = basket_queries(split.test)
    if len(queries) == 0:
        from recset.errors import DataError

        raise DataError(f"{dataset.name}: the test window holds no basket with >= 2 items")
    if max_queries is not None and len(queries) > max_queries:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(queries), size=max_queries, replace=False))
        tg = queries.targets
        sizes = tg.sizes()[keep]
        starts = tg.indptr[keep]
        idx = np.repeat(starts - np.r_[0, np.cumsum(sizes)[:-1]], sizes) + np.arange(sizes.sum())
        indptr = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        queries = Queries(
            queries.seed[keep],
            queries.user[keep],
            queries.basket[keep],
            Targets(indptr, tg.item[idx]),
        )
    engine = Engine.build(split.train, config, show_progress=show_progress)
    systems = [
        engine_system(engine, "mix"),
        popular_system(split.train, "popular", "global"),
        popular_system(split.train, "popular_in_category", "category"),
    ]
    result = BacktestResult(dataset.name, split.info, len(queries))
    for system in tqdm(systems, desc="backtest systems", disable=not show_progress):
        result.systems[system.name] = evaluate_system(system, split, queries)
        _log.info("%s: %s", system.name, result.systems[system.name].get("item"))
    return result


def format_table(result: BacktestResult, level: str = "item") -> str:
    """A Markdown table of one level's metrics for every system."""
    cols = [f"hit@{k}" for k in KS] + ["ndcg@10", "mrr", "explore_hit@10", "repeat_hit@10"]
    lines = ["| system | kind | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for name, m in result.systems.items():
        vals = m.get(level)
        if not isinstance(vals, dict):
            continue
        cells = [f"{vals[c]:.4f}" if c in vals else "–" for c in cols]
        lines.append(f"| {name} | {m['kind']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(result: BacktestResult, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``metrics.json`` and ``report.md`` into ``out_dir`` (each atomically)."""
    from recset.data._format import _atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result.to_json(), indent=2, sort_keys=False)
    _atomic_write(out / "metrics.json", lambda p: Path(p).write_text(text, encoding="utf-8"))
    levels = [
        lv for lv in ("item", "type", "category") if any(lv in m for m in result.systems.values())
    ]
    parts = [
        f"# Backtest: {result.dataset}",
        "",
        f"Split: `{json.dumps(result.split)}`; queries: {result.queries:,}",
        "",
    ]
    for lv in levels:
        parts += [f"## {lv} level", "", format_table(result, lv), ""]
    parts += [
        "## Coverage and diversity",
        "",
        "| system | coverage@10 | type_diversity@10 | catalog_coverage@10 |",
        "|---|---:|---:|---:|",
    ]
    for name, m in result.systems.items():
        parts.append(
            f"| {name} | {m.get('coverage@10', 0):.4f} | "
            f"{m.get('type_diversity@10', float('nan')):.2f} | "
            f"{m.get('catalog_coverage@10', 0):.4f} |"
        )
    report = "\n".join(parts) + "\n"
    _atomic_write(out / "report.md", lambda p: Path(p).write_text(report, encoding="utf-8"))
    return out
