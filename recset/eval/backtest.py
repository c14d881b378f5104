"""Offline backtest: splits, basket queries, Hit@k of recset, its ablations and baselines.

``run_backtest`` builds the engine on the training part only, evaluates it, every recall source
alone and the mix minus each source (same fitted sources, no refit), and the baselines of
:mod:`recset.eval.baselines`, all on the same queries; ``write_report`` writes ``report.md``,
``metrics.json`` (stable keys, see docs/benchmarks.md) and PNG plots.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from recset.config import Config, config_from_dict
from recset.data import (
    PURCHASE,
    Dataset,
    Queries,
    Split,
    Targets,
    basket_queries,
    leave_last_split,
    time_split,
)
from recset.engine import Engine
from recset.errors import DataError
from recset.eval._systems import System
from recset.eval._tuning import tune_baselines
from recset.eval.baselines import baseline_systems, hide_bought
from recset.eval.metrics import KS, hit_matrix, per_query, summarize
from recset.pipeline import Request
from recset.ranking import RankerConfig, train_ranker
from recset.recall import embed_items
from recset.signals import Signals

_log = logging.getLogger(__name__)

K_MAX = max(KS)
CHUNK = 20_000
LEVELS = ("item", "type", "category")


@dataclass
class BacktestResult:
    """Everything a backtest measured; ``to_json`` gives the stable metrics.json layout."""

    dataset: str
    split: dict[str, Any]
    queries: int
    systems: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_category: list[dict[str, Any]] = field(default_factory=list)
    confidence: dict[str, dict[str, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    importance: list[tuple[str, float]] = field(default_factory=list)
    rerank_curve: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "queries": self.queries,
            "systems": self.systems,
            "per_category": self.per_category,
            "confidence_95": self.confidence,
            "seconds": self.timings,
            "ranker_importance_gain": dict(self.importance),
            "rerank_curve": self.rerank_curve,
        }

    def best(self, kind: str, level: str = "item", metric: str = "hit@10") -> str | None:
        """Name of the best system of one kind by a metric."""
        scored = [
            (m.get(level, {}).get(metric, -1.0), name)
            for name, m in self.systems.items()
            if m["kind"] == kind
        ]
        return max(scored)[1] if scored else None


# -- systems -------------------------------------------------------------------------------
def engine_system(engine: Engine, name: str = "mix") -> System:
    """The engine's top-k (precomputed lists when it has them, else live).

    Its coverage counts the queries with ``k`` candidates from behavioural sources (those
    whose ``basis`` is ``"behaviour"``), before any fallback.
    """
    sources = engine.mixer.sources
    behaviour = np.array(
        [type(sources[s]).basis == "behaviour" for s in engine.source_names], dtype=bool
    )

    def rec(seeds: NDArray[np.int32], users: NDArray[np.int32], k: int):  # noqa: ANN202
        batch = engine.run_pipeline(Request.of(seeds, None, k))
        from_behaviour = ((batch.source_rank >= 0) & behaviour).any(axis=2).sum(axis=1)
        return batch.item, from_behaviour >= k

    return System(name, "recset", rec)


def ranked_system(engine: Engine, name: str = "mix+ranker") -> System:
    """The engine with its ranker: personal (the ranker reads the query's user)."""

    def rec(seeds: NDArray[np.int32], users: NDArray[np.int32], k: int):  # noqa: ANN202
        batch = engine.run_pipeline(Request.of(seeds, users, k))
        return batch.item, (batch.item >= 0).sum(axis=1) >= k

    return System(name, "recset", rec, personal=True)


def ablation_systems(engine: Engine) -> list[System]:
    """``only-X`` and ``mix-minus-X`` for every source X of the default mix."""
    mixed = list(engine.mixer.mixes[0].sources)
    out = []
    for s in mixed:
        out.append(engine_system(engine.variant([s]), f"only-{s}"))
    for s in mixed:
        rest = [x for x in mixed if x != s]
        if rest:
            out.append(engine_system(engine.variant(rest), f"mix-minus-{s}"))
    return out


NEURAL_SYSTEMS = (
    "mix+ranker+gnn",
    "mix+ranker+gnn+personalization",
    "mix+ranker+gnn+personalization+contrastive",
    "mix+ranker+gnn+personalization+contrastive+type_transition",
)
RERANK_SIZES = (20, 50, 100, 200)


def _reconfigured(model: Any, **update: Any) -> Any:
    """A shallow copy of a trained model (ranker, neural model) with config keys changed."""
    new = copy.copy(model)
    new.config = model.config.model_copy(update=update)
    return new


def _with_gnn(config: Config | None, embeddings: str | os.PathLike[str]) -> Config:
    """``config`` with a ``gnn_neighbors`` source reading ``embeddings`` in the default mix
    (before the fallback), unless a mix already has one."""
    base = config or config_from_dict({})
    data = base.to_dict()
    if _has_gnn(base):
        return base
    sources = list(base.mix.sources)
    fb = base.build.fallback
    sources.insert(sources.index(fb) if fb in sources else len(sources), "gnn_neighbors")
    data["mix"]["sources"] = sources
    gnn = data["sources"].get("gnn_neighbors", {})
    gnn["embeddings"] = os.fspath(embeddings)
    data["sources"]["gnn_neighbors"] = gnn
    return config_from_dict(data, where="<backtest: mix + gnn_neighbors>")


def _has_gnn(config: Config) -> bool:
    """Whether a mix of ``config`` already has a ``gnn_neighbors`` source."""
    return any("gnn_neighbors" in m.sources for m in config.mixes().values())


def _gnn_embeddings(
    data: Dataset, config: Config, path: Path, *, show_progress: bool = False
) -> Path:
    """Train the GNN (``config.neural``, stage ``"gnn"``) on ``data``; write its embeddings.

    The embeddings are the neural stage's artifact, which ``gnn_neighbors`` only reads; the
    signals are the ones the engine's build computes for ``data`` and ``config``.
    """
    from recset.personalization import save_item_embeddings, train_neural

    signals = Signals(
        data,
        half_life_days=config.build.half_life_days or None,
        max_group_size=config.build.max_group_size,
    )
    model = train_neural(
        data,
        config.neural.model_copy(update={"stages": "gnn"}),
        signals=signals,
        show_progress=show_progress,
    )
    return save_item_embeddings(model, path)


def _ranker_fit_part(train: Dataset, rc: Any) -> Dataset:
    """The part of ``train`` that :func:`train_ranker` fits its recall sources on."""
    if rc.label_split == "leave_last":
        return leave_last_split(train).train
    return time_split(train, test_share=rc.label_share).train


def _neural_systems(
    train: Dataset,
    config: Config | None,
    rc: Any,
    emb: NDArray[np.float32],
    *,
    show_progress: bool = False,
) -> tuple[list[System], list[tuple[int, System]]]:
    """The neural systems, each on top of the one before, and the re-rank size curve."""
    from recset.personalization import train_personalizer, train_type_transition

    base_cfg = config or config_from_dict({})
    with tempfile.TemporaryDirectory(prefix="recset-gnn-") as tmp:
        # the GNN is trained on the data of each fit: all of ``train`` for the engine, the
        # ranker's fit part for the sources the ranker trains on (no label-window leak)
        if _has_gnn(base_cfg):
            cfg = ranker_cfg = base_cfg
        else:
            cfg = _with_gnn(
                config,
                _gnn_embeddings(
                    train, base_cfg, Path(tmp) / "train.npz", show_progress=show_progress
                ),
            )
            fit_part = _ranker_fit_part(train, rc)
            ranker_cfg = _with_gnn(
                config,
                _gnn_embeddings(
                    fit_part, base_cfg, Path(tmp) / "fit.npz", show_progress=show_progress
                ),
            )
        # the files are read when the sources are fitted, and not needed after
        engine = Engine.build(train, cfg, show_progress=show_progress)
        model = train_ranker(
            train, ranker_cfg, rc, mixer=engine.mixer, embeddings=emb, show_progress=show_progress
        )
    ranked = engine.with_ranker(model)
    personal = train_personalizer(
        train, base_cfg.neural.model_copy(update={"stages": "gnn+pr"}), show_progress=show_progress
    )
    contrastive = train_personalizer(
        train,
        base_cfg.neural.model_copy(update={"stages": "gnn+pr+cl"}),
        show_progress=show_progress,
    )
    transition = train_type_transition(train, base_cfg.type_transition)
    names = NEURAL_SYSTEMS
    systems = [
        ranked_system(ranked, names[0]),
        ranked_system(ranked.with_stages(personalizer=personal), names[1]),
        ranked_system(ranked.with_stages(personalizer=contrastive), names[2]),
        ranked_system(
            ranked.with_stages(personalizer=contrastive, diversifier=transition), names[3]
        ),
    ]
    curve = []
    for n_head in RERANK_SIZES:
        # the head re-ranked is the ranker's top N: the ranker scores at least N candidates
        wide = _reconfigured(model, candidates=max(n_head, rc.candidates))
        stage = replace(contrastive, model=_reconfigured(contrastive.model, rerank_n=n_head))
        curve.append(
            (n_head, ranked_system(engine.with_ranker(wide).with_stages(personalizer=stage)))
        )
    return systems, curve


def _rc_discover(config: Config | None, discover: bool) -> bool:
    """Whether the backtest's ranker trains its discovery model."""
    return discover or (config is not None and config.ranker.discover)


def _fair_baselines(
    train: Dataset,
    engine: Engine,
    config: Config | None,
    split: Literal["time", "leave_last"],
    names: Sequence[str] | None,
    info: dict[str, Any],
    *,
    seed: int = 0,
) -> list[System]:
    """The baselines, tuned on a validation window cut from ``train`` like the ranker's
    label window, filled by the engine's fallback source; the grid scores go to ``info``."""
    rc = config.ranker if config is not None else RankerConfig()
    fill = engine.mixer.sources[engine.mixer.fallback]
    tuned = tune_baselines(train, names, split=split, share=rc.label_share, fill=fill, seed=seed)
    info["baseline_tuning"] = {name: t.to_json() for name, t in tuned.items()}
    params = {name: t.params for name, t in tuned.items()}
    return baseline_systems(train, names, params=params, fill=fill)


# -- evaluation ----------------------------------------------------------------------------
def _levels(ds: Dataset) -> dict[str, NDArray[np.int32] | None]:
    """Item -> group id for each reporting level; a level the dataset lacks is left out."""
    levels: dict[str, NDArray[np.int32] | None] = {"item": None}
    if (ds.catalog.product_type >= 0).any():
        levels["type"] = ds.catalog.product_type
    if (ds.catalog.category >= 0).any():
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


def recommendations(
    system: System, queries: Queries
) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
    """(n_queries, K_MAX) recommendations and the per-query coverage flag, in batches.

    Non-personal systems are asked once per distinct seed.
    """
    if system.personal:
        seeds, users, back = queries.seed, queries.user, None
    else:
        seeds, back = np.unique(queries.seed, return_inverse=True)
        users = np.full(len(seeds), -1, dtype=np.int32)
    recs = np.full((len(seeds), K_MAX), -1, dtype=np.int32)
    own = np.zeros(len(seeds), dtype=bool)
    for start in range(0, len(seeds), CHUNK):
        sl = slice(start, start + CHUNK)
        r, o = system.recommend(seeds[sl].astype(np.int32), users[sl].astype(np.int32), K_MAX)
        recs[sl, : min(r.shape[1], K_MAX)] = r[:, :K_MAX]
        own[sl] = o
    if back is not None:
        recs, own = recs[back], own[back]
    return recs, own


def evaluate(
    system: System, split: Split, queries: Queries, recs: NDArray[np.int32], own: NDArray[np.bool_]
) -> tuple[dict[str, Any], NDArray[np.float64]]:
    """All metrics of one system, and its per-query item-level hit@10."""
    explore = _explore_mask(split.train, queries)
    out: dict[str, Any] = {"kind": system.kind}
    hit10 = np.zeros(len(queries))
    for level, mapping in _levels(split.train).items():
        level_recs = recs
        if mapping is not None:
            level_recs = np.where(recs >= 0, mapping[np.maximum(recs, 0)], -1)
        parts: dict[str, float] = {}
        for label, sel in (("", None), ("explore_", explore), ("repeat_", ~explore)):
            t: Targets = queries.targets if sel is None else queries.targets.select(sel)
            if mapping is not None:
                t = t.map(mapping)
            hits = hit_matrix(level_recs, t)
            metrics = summarize(hits, t)
            if not label:
                parts.update(metrics)
                if level == "item":
                    hit10 = per_query(hits, t.sizes(), 10)["hit"]
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
    return out, hit10


def evaluate_system(system: System, split: Split, queries: Queries) -> dict[str, Any]:
    """All metrics of one system on one set of queries."""
    recs, own = recommendations(system, queries)
    return evaluate(system, split, queries, recs, own)[0]


def bootstrap_ci(
    hits: NDArray[np.float64], clusters: NDArray[np.int64], *, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean, resampling whole clusters (baskets).

    Queries of one basket share targets, so they are resampled together.
    """
    uniq, inv = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inv, weights=hits, minlength=len(uniq))
    counts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for b0 in range(0, n_boot, 100):
        nb = min(100, n_boot - b0)
        idx = rng.integers(0, len(uniq), size=(nb, len(uniq)))
        means[b0 : b0 + nb] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def run_backtest(
    dataset: Dataset,
    config: Config | None = None,
    *,
    split: Literal["time", "leave_last"] = "time",
    t: int | None = None,
    test_share: float = 0.2,
    max_queries: int | None = None,
    first_item_only: bool = False,
    baselines: Sequence[str] | None = None,
    ablations: bool = True,
    ranker: bool = True,
    explore_share: float = 0.3,
    discover: bool = True,
    neural: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    show_progress: bool = False,
) -> BacktestResult:
    """Backtest the engine built with ``config`` against its ablations and the baselines.

    Parameters
    ----------
    split : {"time", "leave_last"}
        Train before a time ``t`` (default: the last ``test_share`` of orders are the test),
        or hold out each user's last basket.
    max_queries : int, optional
        Sample that many queries (reproducibly, with ``seed``) to bound run time.
    first_item_only : bool
        Only the first-added item of each test basket is a seed.
    baselines : sequence of str, optional
        Baseline names (default: all of :data:`recset.eval.baselines.BASELINES`).
    ranker : bool
        Also train the LightGBM ranker on the training part (its own fit and label windows
        inside it) and evaluate ``mix+ranker``.
    discover : bool
        Also train the ranker's discovery model and evaluate ``mix+ranker+discover``
        (``mode="discover"``: only items new to the user), with every baseline but the
        repeat ones also hiding the user's purchases (``NAME/new``); needs ``ranker``.
    neural : bool
        Also train the neural stages on the training part and evaluate, each on top of the
        one before, ``mix+ranker+gnn`` (the ``gnn_neighbors`` source, trained, in the mix,
        ranker retrained), ``…+personalization`` (re-ranking, no contrastive loss),
        ``…+contrastive`` and ``…+type_transition``; and Hit@1/3/10 of ``…+contrastive``
        against the re-rank list size N (needs ``ranker`` and the ``neural`` extra).
    explore_share : float
        Also evaluate ``mix+ranker+explore``: the ranker with this share of every prefix of
        the list kept for items the user never bought (0: skip; skipped too when the
        config's ranker already reserves a share).
    """
    import time as _time

    from tqdm.auto import tqdm

    timings: dict[str, float] = {}
    t0 = _time.perf_counter()
    sp = (
        leave_last_split(dataset)
        if split == "leave_last"
        else time_split(dataset, t, test_share=test_share)
    )
    queries = basket_queries(sp.test, first_item_only=first_item_only)
    if len(queries) == 0:
        raise DataError(f"{dataset.name}: the test window holds no basket with >= 2 items")
    if max_queries is not None and len(queries) > max_queries:
        rng = np.random.default_rng(seed)
        queries = queries.take(np.sort(rng.choice(len(queries), size=max_queries, replace=False)))
    info = dict(sp.info)
    info["first_item_only"] = first_item_only
    t1 = _time.perf_counter()
    engine = Engine.build(sp.train, config, show_progress=show_progress)
    timings["build_engine"] = _time.perf_counter() - t1
    systems = [engine_system(engine, "mix")]
    curve: list[tuple[int, System]] = []
    if ranker:
        t1 = _time.perf_counter()
        emb = embed_items(sp.train)  # catalog text only: no events, nothing from the test
        # the ranker's own label window is cut the way the test window is
        rc = (config.ranker if config is not None else RankerConfig()).model_copy(
            update={"label_split": split, "discover": _rc_discover(config, discover)}
        )
        model = train_ranker(
            sp.train, config, rc, mixer=engine.mixer, embeddings=emb, show_progress=show_progress
        )
        systems.append(ranked_system(engine.with_ranker(model)))
        if model.discover_booster is not None:
            discoverer = engine.with_ranker(model).for_mode("discover")
            systems.append(ranked_system(discoverer, "mix+ranker+discover"))
        if explore_share and not model.config.explore_share:
            explorer = _reconfigured(model, explore_share=explore_share)
            systems.append(ranked_system(engine.with_ranker(explorer), "mix+ranker+explore"))
        timings["train_ranker"] = _time.perf_counter() - t1
        info["ranker"] = model.metrics
        result_importance = model.importance()
        if neural:
            t1 = _time.perf_counter()
            neural_systems, curve = _neural_systems(
                sp.train, config, rc, emb, show_progress=show_progress
            )
            systems += neural_systems
            timings["train_neural"] = _time.perf_counter() - t1
    else:
        result_importance = []
    if ablations:
        systems += ablation_systems(engine)
    t1 = _time.perf_counter()
    fair = _fair_baselines(sp.train, engine, config, split, baselines, info, seed=seed)
    systems += fair
    if any(s.name == "mix+ranker+discover" for s in systems):
        # a list that hides the user's purchases is compared with baselines that hide them
        systems += [hide_bought(s, sp.train) for s in fair if not s.name.startswith("user_")]
    timings["fit_baselines"] = _time.perf_counter() - t1
    curve_systems = dict(curve)
    result = BacktestResult(dataset.name, info, len(queries))
    result.importance = result_importance
    per_query_hits: dict[str, NDArray[np.float64]] = {}
    t1 = _time.perf_counter()
    for system in tqdm(systems, desc="evaluate systems", disable=not show_progress):
        recs, own = recommendations(system, queries)
        result.systems[system.name], per_query_hits[system.name] = evaluate(
            system, sp, queries, recs, own
        )
        if system.params is not None:
            result.systems[system.name]["params"] = system.params
        _log.info("%s: %s", system.name, result.systems[system.name].get("item"))
    for n_head, system in curve_systems.items():
        recs, own = recommendations(system, queries)
        item = evaluate(system, sp, queries, recs, own)[0]["item"]
        result.rerank_curve[str(n_head)] = {m: item[m] for m in ("hit@1", "hit@3", "hit@10")}
    timings["evaluate"] = _time.perf_counter() - t1
    # confidence intervals on item hit@10: the mix, the best recset system, the best baseline
    for name in {"mix", result.best("recset"), result.best("baseline")} - {None}:
        lo, hi = bootstrap_ci(per_query_hits[name], queries.basket, n_boot=n_boot, seed=seed)
        result.confidence[name] = {
            "hit@10": float(per_query_hits[name].mean()),
            "low": lo,
            "high": hi,
        }
    result.per_category = _per_category(sp.train, queries, per_query_hits, result)
    timings["total"] = _time.perf_counter() - t0
    result.timings = timings
    return result


def _per_category(
    train: Dataset,
    queries: Queries,
    hits: dict[str, NDArray[np.float64]],
    result: BacktestResult,
    top: int = 10,
) -> list[dict[str, Any]]:
    """Item hit@10 of every system in the ``top`` categories with the most queries."""
    cat = train.catalog.category
    seed_cat = np.where(queries.seed >= 0, cat[np.maximum(queries.seed, 0)], -1)
    if not (seed_cat >= 0).any():
        return []
    counts = np.bincount(seed_cat[seed_cat >= 0], minlength=train.n_categories)
    rows = []
    for c in np.argsort(-counts, kind="stable")[:top]:
        if counts[c] == 0:
            break
        sel = seed_cat == c
        rows.append(
            {
                "category": str(train.catalog.category_path[c]),
                "queries": int(sel.sum()),
                "hit@10": {name: float(h[sel].mean()) for name, h in hits.items()},
            }
        )
    return rows


# -- reports -------------------------------------------------------------------------------
def format_table(
    result: BacktestResult, level: str = "item", systems: Sequence[str] | None = None
) -> str:
    """A Markdown table of one level's metrics for (some of) the systems."""
    cols = [f"hit@{k}" for k in KS] + ["ndcg@10", "mrr", "explore_hit@10", "repeat_hit@10"]
    lines = ["| system | kind | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for name, m in result.systems.items():
        if systems is not None and name not in systems:
            continue
        vals = m.get(level)
        if not isinstance(vals, dict):
            continue
        cells = [f"{vals[c]:.4f}" if c in vals else "–" for c in cols]
        lines.append(f"| {name} | {m['kind']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_systems(result: BacktestResult) -> list[str]:
    """The recset systems and the baselines (no ablations): the short table."""
    return [n for n, m in result.systems.items() if not n.startswith(("only-", "mix-minus-"))]


def _plots(result: BacktestResult, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _log.warning("matplotlib is not installed: no plots (pip install 'recset[dev]')")
        return []
    from recset.storage import atomic_write_bytes

    written = []
    import io

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in summary_systems(result):
        item = result.systems[name]["item"]
        ax.plot(
            KS,
            [item.get(f"hit@{k}", np.nan) for k in KS],
            marker="o",
            label=name,
            linewidth=2.5 if name == "mix" else 1.2,
        )
    ax.set_xlabel("k")
    ax.set_ylabel("item Hit@k")
    ax.set_xticks(KS)
    ax.set_title(f"Hit@k — {result.dataset} ({result.queries:,} queries)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(out / "hit_at_k.png", buf.getvalue())
    written.append("hit_at_k.png")

    names = [n for n in result.systems if n == "mix" or n.startswith(("only-", "mix-minus-"))]
    if len(names) > 1:
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1))
        vals = [result.systems[n]["item"].get("hit@10", 0.0) for n in names]
        ax.barh(names[::-1], vals[::-1], color=["C3" if n == "mix" else "C0" for n in names[::-1]])
        ax.set_xlabel("item Hit@10")
        ax.set_title(f"Ablation — {result.dataset}")
        ax.grid(alpha=0.3, axis="x")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(out / "ablation.png", buf.getvalue())
        written.append("ablation.png")
    if result.rerank_curve:
        sizes = [int(n) for n in result.rerank_curve]
        fig, ax = plt.subplots(figsize=(6, 4))
        for metric in ("hit@1", "hit@3", "hit@10"):
            ax.plot(
                sizes,
                [result.rerank_curve[str(n)][metric] for n in sizes],
                marker="o",
                label=metric,
            )
        ax.set_xlabel("re-rank list size N")
        ax.set_ylabel("item Hit@k")
        ax.set_xticks(sizes)
        ax.set_title(f"Personalized re-ranking vs N — {result.dataset}")
        ax.grid(alpha=0.3)
        ax.legend()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(out / "rerank_n.png", buf.getvalue())
        written.append("rerank_n.png")
    return written


def _split_info(result: BacktestResult) -> dict[str, Any]:
    """The split's info without the baseline grids (they get their own table)."""
    return {k: v for k, v in result.split.items() if k != "baseline_tuning"}


def _tuning_table(result: BacktestResult) -> list[str]:
    """Report lines: each baseline's chosen hyper-parameters and validation Hit@10."""
    tuning = result.split.get("baseline_tuning") or {}
    if not tuning:
        return []
    lines = [
        "## Baseline hyper-parameters (chosen on a validation window cut from training)",
        "",
        "| baseline | chosen | validation hit@10 | combinations tried |",
        "|---|---|---:|---:|",
    ]
    for name, t in tuning.items():
        chosen = ", ".join(f"{k}={v}" for k, v in t["params"].items()) or "–"
        lines.append(f"| {name} | {chosen} | {t['validation_hit@10']:.4f} | {len(t['grid'])} |")
    return [*lines, ""]


def write_report(result: BacktestResult, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``metrics.json``, ``report.md`` and the plots into ``out_dir`` (atomically)."""
    from recset.storage import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(result.to_json(), indent=2))
    plots = _plots(result, out)
    levels = [lv for lv in LEVELS if any(lv in m for m in result.systems.values())]
    parts = [
        f"# Backtest: {result.dataset}",
        "",
        f"Split: `{json.dumps(_split_info(result))}`; queries: {result.queries:,}",
        "",
    ]
    for lv in levels:
        parts += [f"## {lv} level", "", format_table(result, lv), ""]
    parts += _tuning_table(result)
    if result.confidence:
        parts += [
            "## 95% bootstrap intervals (item Hit@10, baskets resampled)",
            "",
            "| system | hit@10 | low | high |",
            "|---|---:|---:|---:|",
        ]
        for name, ci in result.confidence.items():
            parts.append(f"| {name} | {ci['hit@10']:.4f} | {ci['low']:.4f} | {ci['high']:.4f} |")
        parts.append("")
    parts += [
        "## Coverage and diversity",
        "",
        "coverage@10: share of seeds with >= 10 candidates from behaviour-based sources "
        "(co-purchase, co-view, co-purchase-only; before any fallback); for baselines, with "
        ">= 10 candidates of their own.",
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
    if result.per_category:
        names = summary_systems(result)
        parts += [
            "",
            "## Item Hit@10 in the 10 largest categories (by queries)",
            "",
            "| category | queries | " + " | ".join(names) + " |",
            "|---|---:|" + "---:|" * len(names),
        ]
        for row in result.per_category:
            cells = " | ".join(f"{row['hit@10'][n]:.3f}" for n in names)
            parts.append(f"| {row['category']} | {row['queries']:,} | {cells} |")
    if result.importance:
        total = sum(g for _, g in result.importance) or 1.0
        parts += [
            "",
            "## Ranker feature importance (gain, top 15)",
            "",
            "| feature | share of gain |",
            "|---|---:|",
        ]
        parts += [f"| {n} | {g / total:.1%} |" for n, g in result.importance[:15]]
    if result.rerank_curve:
        parts += [
            "",
            "## Personalized re-ranking: item Hit@k against the re-rank list size N",
            "",
            "| N | hit@1 | hit@3 | hit@10 |",
            "|---:|---:|---:|---:|",
        ]
        parts += [
            f"| {n} | {v['hit@1']:.4f} | {v['hit@3']:.4f} | {v['hit@10']:.4f} |"
            for n, v in result.rerank_curve.items()
        ]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    parts += ["", f"Seconds: `{json.dumps({k: round(v, 1) for k, v in result.timings.items()})}`"]
    atomic_write_text(out / "report.md", "\n".join(parts) + "\n")
    return out
