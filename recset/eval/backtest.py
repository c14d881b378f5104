"""Offline backtest: splits, basket queries, Hit@k of recset, its ablations and baselines.

``run_backtest`` builds the engine on the training part only, evaluates it, every recall source
alone and the mix minus each source (same fitted sources, no refit), and the baselines of
:mod:`recset.eval.baselines`, all on the same queries; ``run_side_by_side`` does so for several
configs on one split and compares them per overridden category; ``write_report``
(:mod:`recset.eval._report`) writes ``report.md``, ``report.html``, ``metrics.json`` (stable
keys, see docs/benchmarks.md) and PNG plots.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
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
from recset.eval._baskets import Carts, cart_bins, cart_recommendations, prefix_queries
from recset.eval._compare import NamedConfig, compare_results, named_configs
from recset.eval._progress import progress, stage
from recset.eval._report import format_table, write_report
from recset.eval._result import (
    BacktestResult,
    bootstrap_ci,
    key_systems,
    paired_difference,
    summary_systems,
)
from recset.eval._systems import System
from recset.eval._tuning import tune_baselines
from recset.eval.baselines import (
    BASELINES,
    baseline_systems,
    hide_bought,
    shared_cooccurrence,
)
from recset.eval.metrics import KS, hit_matrix, per_query, summarize
from recset.personalization import StageValidation
from recset.pipeline import Request
from recset.ranking import RankerConfig, train_ranker
from recset.recall import RecallBase, embed_items
from recset.signals import Signals

_log = logging.getLogger(__name__)

__all__ = [
    "NEURAL_SYSTEMS",
    "NOPERSONAL_SYSTEMS",
    "RERANK_SIZES",
    "BacktestResult",
    "NamedConfig",
    "Prepared",
    "System",
    "bootstrap_ci",
    "evaluate",
    "engine_system",
    "evaluate_system",
    "format_table",
    "key_systems",
    "named_configs",
    "prepare",
    "recommendations",
    "run_backtest",
    "run_side_by_side",
    "summarize_gains",
    "summary_systems",
    "validate_personalization",
    "write_report",
]

K_MAX = max(KS)
CHUNK = 20_000


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
    """The engine with its ranker: personal (the ranker reads the query's user) and timed
    (time-dependent features read when the query was asked)."""

    def rec(  # noqa: ANN202
        seeds: NDArray[np.int32],
        users: NDArray[np.int32],
        k: int,
        when: NDArray[np.int64] | None = None,
    ):
        batch = engine.run_pipeline(Request.of(seeds, users, k, when))
        return batch.item, (batch.item >= 0).sum(axis=1) >= k

    return System(name, "recset", rec, personal=True, timed=True)


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
NOPERSONAL_SYSTEMS = ("mix+ranker-nopersonal", "mix+ranker-nopersonal+personalization")
"""The ranker without personal features, and the same ranker with the personalization stage
(the neural stage as the only personal signal, for hosts without feature engineering)."""
VALIDATION_QUERIES = 10_000
"""Queries of the validation window (cut from the training data) that choose a blend weight."""


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


def _gnn_configs(
    train: Dataset, config: Config | None, rc: Any, tmp: Path, *, show_progress: bool = False
) -> tuple[Config, Config]:
    """The engine's and the ranker's configs with a trained ``gnn_neighbors`` source.

    The GNN is trained on the data of each fit: all of ``train`` for the engine, the
    ranker's fit part for the sources the ranker trains on (no label-window leak). The
    embeddings are written under ``tmp`` and read when the sources are fitted. A config
    whose mix already has the source is used as it is.
    """
    base_cfg = config or config_from_dict({})
    if _has_gnn(base_cfg):
        return base_cfg, base_cfg
    cfg = _with_gnn(
        config, _gnn_embeddings(train, base_cfg, tmp / "train.npz", show_progress=show_progress)
    )
    fit_part = _ranker_fit_part(train, rc)
    ranker_cfg = _with_gnn(
        config, _gnn_embeddings(fit_part, base_cfg, tmp / "fit.npz", show_progress=show_progress)
    )
    return cfg, ranker_cfg


def _encoder_unused(neural: Any) -> bool:
    """Whether the personalizer of ``neural`` scores with the affinity head, so the
    contrastive loss (which only trains the user encoder) cannot change its lists."""
    return bool(neural.personalized and neural.personal_score == "affinity")


def _neural_systems(
    train: Dataset,
    config: Config | None,
    rc: Any,
    emb: NDArray[np.float32],
    info: dict[str, Any],
    *,
    seed: int = 0,
    show_progress: bool = False,
) -> tuple[list[System], list[tuple[int, System]]]:
    """The neural systems, each on top of the one before, and the re-rank size curve.

    Each personalizer's blend weight is chosen the way ``recset train-neural`` chooses it:
    on a validation window cut from ``train``, against the lists of the same engine
    (``gnn_neighbors`` in the mix, ranker retrained; :func:`validate_personalization`), so a
    stage that loses to the ranker there gets weight 0 and serves the ranker's order. The
    figures go to ``info["neural_validation"]``.
    """
    from recset.personalization import train_personalizer, train_type_transition

    base_cfg = config or config_from_dict({})
    with tempfile.TemporaryDirectory(prefix="recset-gnn-") as tmp:
        cfg, ranker_cfg = _gnn_configs(train, config, rc, Path(tmp), show_progress=show_progress)
        # the files are read when the sources are fitted, and not needed after
        engine = Engine.build(train, cfg, show_progress=show_progress)
        model = train_ranker(
            train, ranker_cfg, rc, mixer=engine.mixer, embeddings=emb, show_progress=show_progress
        )
    ranked = engine.with_ranker(model)
    neurals = {
        "personalization": base_cfg.neural.model_copy(update={"stages": "gnn+pr"}),
        "contrastive": base_cfg.neural.model_copy(update={"stages": "gnn+pr+cl"}),
    }
    shared = _encoder_unused(neurals["contrastive"])
    if shared:  # one model serves both rows
        del neurals["contrastive"]
    vals = _validate_many(
        train,
        config,
        rc,
        emb,
        list(neurals.values()),
        gnn=True,
        seed=seed,
        show_progress=show_progress,
    )
    report: dict[str, Any] = {}
    stages = {}
    for (name, neural), val in zip(neurals.items(), vals, strict=True):
        report[name] = val.to_json()
        _log.info("neural system %s on validation: %s", name, val.to_json())
        stages[name] = train_personalizer(
            train,
            neural.model_copy(update={"blend_weight": val.weight}),
            show_progress=show_progress,
        )
    if shared:
        report["contrastive"] = (
            "the personalization model: the affinity head does not read the user encoder, "
            "the only part the contrastive loss trains"
        )
        stages["contrastive"] = stages["personalization"]
    info["neural_validation"] = report
    personal, contrastive = stages["personalization"], stages["contrastive"]
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


def _validation_cut(train: Dataset, rc: Any) -> Split:
    """A validation window cut from ``train`` the way the ranker cuts its label window."""
    if rc.label_split == "leave_last":
        return leave_last_split(train)
    return time_split(train, test_share=rc.label_share)


def validate_personalization(
    train: Dataset,
    config: Config | None,
    rc: Any,
    emb: NDArray[np.float32],
    *,
    neural: Any = None,
    gnn: bool = False,
    max_queries: int = VALIDATION_QUERIES,
    seed: int = 0,
    show_progress: bool = False,
) -> StageValidation:
    """Hit@10 of the ranker ``rc`` and of its lists re-ranked by the personalization stage at
    each blend weight, on a validation window cut from ``train`` (never the test window).

    The engine, the ranker and the neural model (``neural``, a ``NeuralConfig``; default
    ``config.neural``) are fitted on the part of ``train`` before the window; the window's
    basket queries (at most ``max_queries``, drawn with ``seed``) are served by the ranker
    and re-ranked (:func:`recset.personalization.validate_stage`). With ``gnn`` the engine
    has a ``gnn_neighbors`` source trained on that part too (as the backtest's neural
    systems do).
    """
    base_cfg = config or config_from_dict({})
    (val,) = _validate_many(
        train,
        config,
        rc,
        emb,
        [neural if neural is not None else base_cfg.neural],
        gnn=gnn,
        max_queries=max_queries,
        seed=seed,
        show_progress=show_progress,
    )
    return val


def _validate_many(
    train: Dataset,
    config: Config | None,
    rc: Any,
    emb: NDArray[np.float32],
    neurals: Sequence[Any],
    *,
    gnn: bool = False,
    max_queries: int = VALIDATION_QUERIES,
    seed: int = 0,
    show_progress: bool = False,
) -> list[StageValidation]:
    """:func:`validate_personalization` of several neural configs on the same lists."""
    from recset.personalization import train_personalizer, validate_stage

    cut = _validation_cut(train, rc)
    with tempfile.TemporaryDirectory(prefix="recset-gnn-") as tmp:
        if gnn:
            cfg, ranker_cfg = _gnn_configs(
                cut.train, config, rc, Path(tmp), show_progress=show_progress
            )
        else:
            cfg = ranker_cfg = config or config_from_dict({})
        engine = Engine.build(cut.train, cfg, show_progress=show_progress)
        model = train_ranker(
            cut.train,
            ranker_cfg,
            rc,
            mixer=engine.mixer,
            embeddings=emb,
            show_progress=show_progress,
        )
    queries = basket_queries(cut.test)
    if len(queries) > max_queries:
        rows = np.random.default_rng(seed).choice(len(queries), size=max_queries, replace=False)
        queries = queries.take(np.sort(rows))
    ranked = engine.with_ranker(model)
    out = []
    for neural in neurals:
        personal = train_personalizer(
            cut.train,
            neural.model_copy(update={"blend_weight": 0.0}),
            show_progress=show_progress,
        )
        width = max(personal.config.rerank_n, 10)
        items, scores = [], []
        for lo in range(0, len(queries), CHUNK):
            sl = slice(lo, lo + CHUNK)
            when = None if queries.time is None else queries.time[sl]
            batch = ranked.run_pipeline(Request.of(queries.seed[sl], queries.user[sl], width, when))
            items.append(batch.item)
            scores.append(np.where(batch.item >= 0, batch.score, -np.inf))
        out.append(
            validate_stage(
                personal.model,
                queries.seed,
                queries.user,
                np.concatenate(items),
                np.concatenate(scores),
                queries.targets,
            )
        )
    return out


def _nopersonal_systems(
    train: Dataset,
    engine: Engine,
    config: Config | None,
    rc: Any,
    emb: NDArray[np.float32],
    info: dict[str, Any],
    *,
    seed: int = 0,
    show_progress: bool = False,
) -> list[System]:
    """:data:`NOPERSONAL_SYSTEMS`: the ranker without personal features (no ``user_*`` /
    ``hist_copurchase`` feature, no user-history candidates), then with the personalization
    stage at the blend weight chosen on a validation window cut from ``train``
    (:func:`validate_personalization`; its figures go to ``info``)."""
    from recset.personalization import train_personalizer

    base_cfg = config or config_from_dict({})
    rc_np = rc.model_copy(update={"personal_features": False, "discover": False})
    model = train_ranker(
        train, config, rc_np, mixer=engine.mixer, embeddings=emb, show_progress=show_progress
    )
    val = validate_personalization(
        train, config, rc_np, emb, seed=seed, show_progress=show_progress
    )
    info["nopersonal_validation"] = val.to_json()
    _log.info("personalization over the ranker without personal features: %s", val.to_json())
    personal = train_personalizer(
        train,
        base_cfg.neural.model_copy(update={"blend_weight": val.weight}),
        show_progress=show_progress,
    )
    ranked = engine.with_ranker(model)
    return [
        ranked_system(ranked, NOPERSONAL_SYSTEMS[0]),
        ranked_system(ranked.with_stages(personalizer=personal), NOPERSONAL_SYSTEMS[1]),
    ]


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
    if names is None:  # every baseline that applies: "promoted" needs a promotion calendar
        names = [n for n in BASELINES if n != "promoted" or train.promotions is not None]
    tuned = tune_baselines(train, names, split=split, share=rc.label_share, fill=fill, seed=seed)
    info["baseline_tuning"] = {name: t.to_json() for name, t in tuned.items()}
    params = {name: t.params for name, t in tuned.items()}
    with shared_cooccurrence():
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


def _batched(
    system: System,
    seeds: NDArray[np.int32],
    users: NDArray[np.int32],
    width: int,
    when: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
    """``system``'s (len(seeds), width) lists and coverage flags, asked in chunks (a timed
    system with the queries' times ``when``)."""
    recs = np.full((len(seeds), width), -1, dtype=np.int32)
    own = np.zeros(len(seeds), dtype=bool)
    for start in range(0, len(seeds), CHUNK):
        sl = slice(start, start + CHUNK)
        args: tuple[Any, ...] = (seeds[sl].astype(np.int32), users[sl].astype(np.int32), width)
        if system.timed:
            args = (*args, None if when is None else when[sl])
        r, o = system.recommend(*args)
        recs[sl, : min(r.shape[1], width)] = r[:, :width]
        own[sl] = o
    return recs, own


def _per_seed(
    system: System,
    seeds: NDArray[np.int32],
    users: NDArray[np.int32],
    width: int,
    when: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
    """Like :func:`_batched`; a non-personal, untimed system is asked once per distinct
    seed."""
    if system.personal or system.timed:
        return _batched(system, seeds, users, width, when)
    uniq, back = np.unique(seeds, return_inverse=True)
    recs, own = _batched(system, uniq, np.full(len(uniq), -1, np.int32), width)
    return recs[back], own[back]


def recommendations(
    system: System,
    queries: Queries,
    carts: Carts | None = None,
    rrf_k: float = 10.0,
) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
    """(n_queries, K_MAX) recommendations and the per-query coverage flag, in batches.

    Non-personal systems are asked once per distinct seed. With ``carts`` every query is a
    cart, answered as :meth:`Engine.recommend_basket` does (see :mod:`recset.eval._baskets`).
    """
    if carts is None:
        return _per_seed(system, queries.seed, queries.user, K_MAX, queries.time)
    owned: list[NDArray[np.bool_]] = []

    def lists(  # noqa: ANN202
        seeds: NDArray[np.int32],
        users: NDArray[np.int32],
        width: int,
        when: NDArray[np.int64] | None = None,
    ):
        r, o = _per_seed(system, seeds, users, width, when)
        owned.append(o)
        return r

    recs = cart_recommendations(lists, queries, carts, K_MAX, rrf_k)
    # a cart is covered when its last-added item's list is (the query's seed)
    last = carts.indptr[1:] - 1
    own = np.zeros(len(carts.item), dtype=bool)
    sizes = carts.sizes()
    q_of = carts.query_of_entry()
    for size, o in zip(np.unique(sizes[sizes > 0]).tolist(), owned, strict=True):
        own[np.flatnonzero(sizes[q_of] == size)] = o
    return recs, own[last]


def new_target_hits(
    split: Split, queries: Queries, recs: NDArray[np.int32], k: int = 10
) -> NDArray[np.float64]:
    """Per query: 1 when one of its targets the user never bought before is in the top ``k``
    (queries without such targets count 0)."""
    t = queries.targets.select(_explore_mask(split.train, queries))
    return per_query(hit_matrix(recs, t), t.sizes(), k)["hit"]


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


Seeds = Literal["all", "first", "prefix"]


@dataclass(frozen=True)
class Prepared:
    """The split and the queries of a backtest: shared by every config compared on them."""

    split: Split
    queries: Queries
    carts: Carts | None
    info: dict[str, Any]


def prepare(
    dataset: Dataset,
    *,
    split: Literal["time", "leave_last"] = "time",
    t: int | None = None,
    test_share: float = 0.2,
    seeds: Seeds = "all",
    max_queries: int | None = None,
    seed: int = 0,
) -> Prepared:
    """Split ``dataset`` and draw the test queries (see :func:`run_backtest`)."""
    sp = (
        leave_last_split(dataset)
        if split == "leave_last"
        else time_split(dataset, t, test_share=test_share)
    )
    carts = None
    if seeds == "prefix":
        queries, carts = prefix_queries(sp.test)
    else:
        queries = basket_queries(sp.test, first_item_only=seeds == "first")
    if len(queries) == 0:
        raise DataError(f"{dataset.name}: the test window holds no basket with >= 2 items")
    if max_queries is not None and len(queries) > max_queries:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(queries), size=max_queries, replace=False))
        queries = queries.take(rows)
        carts = carts.take(rows) if carts is not None else None
    info = dict(sp.info)
    info["seeds"] = seeds
    info["train_events"] = len(sp.train.events)
    info["test_events"] = len(sp.test.events)
    info["test_baskets"] = int(len(np.unique(queries.basket)))
    return Prepared(sp, queries, carts, info)


def run_backtest(
    dataset: Dataset,
    config: Config | None = None,
    *,
    split: Literal["time", "leave_last"] = "time",
    t: int | None = None,
    test_share: float = 0.2,
    max_queries: int | None = None,
    first_item_only: bool = False,
    seeds: Seeds = "all",
    baselines: Sequence[str] | None = None,
    ablations: bool = True,
    ranker: bool = True,
    explore_share: float = 0.3,
    discover: bool = True,
    neural: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    samples: int = 3,
    prepared: Prepared | None = None,
    allow_unknown_categories: bool = False,
    show_progress: bool = False,
    prefit: Callable[[Dataset, Config], Mapping[str, RecallBase]] | None = None,
) -> BacktestResult:
    """Backtest the engine built with ``config`` against its ablations and the baselines.

    Parameters
    ----------
    split : {"time", "leave_last"}
        Train before a time ``t`` (default: the last ``test_share`` of orders are the test),
        or hold out each user's last basket.
    max_queries : int, optional
        Sample that many queries (reproducibly, with ``seed``) to bound run time.
    seeds : {"all", "first", "prefix"}
        Every item of a test basket is a seed (the rest are its targets); only the first-added
        item is; or the first ``c`` items (time order, every ``c`` from 1 to n-1) are a cart
        served like :meth:`Engine.recommend_basket`, the rest its targets.
        ``first_item_only`` is the old spelling of ``seeds="first"``.
    baselines : sequence of str, optional
        Baseline names (default: all of :data:`recset.eval.baselines.BASELINES`, but
        ``promoted`` only for a dataset with a promotion calendar).
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
        against the re-rank list size N (needs ``ranker`` and the ``neural`` extra). Each
        personalizer's blend weight is chosen on a validation window cut from the training
        part, against that engine's own lists (0 when the stage loses there; figures in
        ``info["neural_validation"]``); with the affinity head ``…+contrastive`` is the
        ``…+personalization`` model (the contrastive loss trains only the user encoder,
        which the head does not read). Also
        :data:`NOPERSONAL_SYSTEMS`: the ranker without personal features, and that ranker
        with the personalization stage (blend weight chosen on a validation window cut from
        the training part; the validation figures are in ``info["nopersonal_validation"]``).
    explore_share : float
        Also evaluate ``mix+ranker+explore``: the ranker with this share of every prefix of
        the list kept for items the user never bought (0: skip; skipped too when the
        config's ranker already reserves a share).
    samples : int
        Sample lists (seed -> the mix's list with reasons) for 2 seeds in each of this many
        of the largest categories.
    prepared : Prepared, optional
        The split and queries (from :func:`prepare`): several configs compared on the same
        queries share one; the split arguments are then ignored.
    prefit : callable, optional
        ``prefit(train, config)`` returns sources fitted elsewhere on the training part
        (``recset.spark.fit_dataset`` on a SparkSession), which the engine uses as they are.
    """
    import time as _time

    if first_item_only:
        seeds = "first"
    timings: dict[str, float] = {}
    t0 = _time.perf_counter()
    prep = prepared or prepare(
        dataset,
        split=split,
        t=t,
        test_share=test_share,
        seeds=seeds,
        max_queries=max_queries,
        seed=seed,
    )
    sp, queries, carts = prep.split, prep.queries, prep.carts
    split = "leave_last" if prep.info.get("kind") == "leave_last" else split
    info = dict(prep.info)
    say = show_progress
    with stage("build the engine (fit sources, precompute lists)", say, timings, "build_engine"):
        prefitted = prefit(sp.train, config or config_from_dict({})) if prefit else None
        engine = Engine.build(
            sp.train,
            config,
            show_progress=show_progress,
            allow_unknown_categories=allow_unknown_categories,
            prefitted=prefitted,
        )
    systems = [engine_system(engine, "mix")]
    curve: list[tuple[int, System]] = []
    if ranker:
        with stage(
            "train the ranker (fit + label windows inside train)", say, timings, "train_ranker"
        ):
            emb = embed_items(sp.train)  # catalog text only: no events, nothing from the test
            # the ranker's own label window is cut the way the test window is
            rc = (config.ranker if config is not None else RankerConfig()).model_copy(
                update={"label_split": split, "discover": _rc_discover(config, discover)}
            )
            model = train_ranker(
                sp.train,
                config,
                rc,
                mixer=engine.mixer,
                embeddings=emb,
                show_progress=show_progress,
            )
        systems.append(ranked_system(engine.with_ranker(model)))
        if model.discover_booster is not None:
            discoverer = engine.with_ranker(model).for_mode("discover")
            systems.append(ranked_system(discoverer, "mix+ranker+discover"))
        if explore_share and not model.config.explore_share:
            explorer = _reconfigured(model, explore_share=explore_share)
            systems.append(ranked_system(engine.with_ranker(explorer), "mix+ranker+explore"))
        info["ranker"] = model.metrics
        result_importance = model.importance()
        if neural:
            with stage("train the neural stages", say, timings, "train_neural"):
                neural_systems, curve = _neural_systems(
                    sp.train, config, rc, emb, info, seed=seed, show_progress=show_progress
                )
            systems += neural_systems
            with stage(
                "ranker without personal features, + personalization",
                say,
                timings,
                "train_nopersonal",
            ):
                systems += _nopersonal_systems(
                    sp.train,
                    engine,
                    config,
                    rc,
                    emb,
                    info,
                    seed=seed,
                    show_progress=show_progress,
                )
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
    rrf_k = engine.config.mix.rrf_k
    with stage(
        f"evaluate {len(systems)} systems on {len(queries):,} queries", say, timings, "evaluate"
    ):
        for system in progress(systems, "evaluate systems", say):
            recs, own = recommendations(system, queries, carts, rrf_k)
            result.systems[system.name], result.hits[system.name] = evaluate(
                system, sp, queries, recs, own
            )
            if system.params is not None:
                result.systems[system.name]["params"] = system.params
            result.new_hits[system.name] = new_target_hits(sp, queries, recs)
            _log.info("%s: %s", system.name, result.systems[system.name].get("item"))
        for n_head, system in curve_systems.items():
            recs, own = recommendations(system, queries, carts, rrf_k)
            item = evaluate(system, sp, queries, recs, own)[0]["item"]
            result.rerank_curve[str(n_head)] = {m: item[m] for m in ("hit@1", "hit@3", "hit@10")}
    result.basket = queries.basket
    cat = sp.train.catalog.category
    result.query_category = np.where(
        queries.seed >= 0, cat[np.maximum(queries.seed, 0)], -1
    ).astype(np.int32)
    result.category_paths = _category_labels(sp.train)
    # confidence intervals on item hit@10: the mix, the best recset system, the best baseline
    for name in {"mix", result.best("recset"), result.best("baseline")} - {None}:
        lo, hi = bootstrap_ci(result.hits[name], queries.basket, n_boot=n_boot, seed=seed)
        result.confidence[name] = {"hit@10": float(result.hits[name].mean()), "low": lo, "high": hi}
    result.per_category = _per_category(result)
    if carts is not None:
        result.by_cart_size = _by_cart_size(result, carts)
    result.summary = summarize_gains(result, n_boot=n_boot, seed=seed)
    if samples:
        result.samples = sample_lists(engine, sp.train, queries, categories=samples)
    timings["total"] = _time.perf_counter() - t0
    result.timings = timings
    return result


def _category_labels(train: Dataset) -> list[str]:
    """A readable label of every category: its path, else its id."""
    from recset.recall import category_names

    ids, paths = category_names(train)
    return [str(p) if isinstance(p, str) else str(i) for i, p in zip(ids, paths, strict=True)]


def _per_category(result: BacktestResult, min_queries: int = 20) -> list[dict[str, Any]]:
    """Item hit@10 of every system in every category with ``min_queries`` queries or more,
    largest first."""
    qc = result.query_category
    if not (qc >= 0).any():
        return []
    counts = np.bincount(qc[qc >= 0], minlength=len(result.category_paths))
    rows = []
    for c in np.argsort(-counts, kind="stable"):
        if counts[c] < min_queries:
            break
        sel = qc == c
        rows.append(
            {
                "category": result.category_paths[c],
                "queries": int(sel.sum()),
                "hit@10": {name: float(h[sel].mean()) for name, h in result.hits.items()},
            }
        )
    return rows


def _by_cart_size(result: BacktestResult, carts: Carts) -> dict[str, dict[str, Any]]:
    """Item hit@10 of every system per cart-size bin (1, 2, 3, 4, 5+)."""
    out = {}
    for label, sel in cart_bins(carts.sizes()).items():
        out[label] = {
            "queries": int(sel.sum()),
            "hit@10": {name: float(h[sel].mean()) for name, h in result.hits.items()},
        }
    return out


def summarize_gains(result: BacktestResult, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The best recset system against the best baseline (and the ranker against the mix), with
    paired intervals, and how much of each gain comes from items the user bought before.

    ``repeat_share`` is 1 - (gain on new items) / (gain): the part of the item Hit@10 gain
    that is made of queries hit only through a target the user had already bought.
    """
    out: dict[str, Any] = {}
    pairs = []
    best, base = result.best("recset"), result.best("baseline")
    if best and base:
        pairs.append(("best_vs_baseline", base, best))
    if "mix+ranker" in result.hits:
        pairs.append(("ranker_vs_mix", "mix", "mix+ranker"))
    if best and best != "mix" and not (best == "mix+ranker" and "mix+ranker" in result.hits):
        pairs.append(("best_vs_mix", "mix", best))
    for key, a, b in pairs:
        d = paired_difference(
            result.hits[a], result.hits[b], result.basket, n_boot=n_boot, seed=seed
        )
        dn = paired_difference(
            result.new_hits[a], result.new_hits[b], result.basket, n_boot=n_boot, seed=seed
        )
        share = 1.0 - dn["diff"] / d["diff"] if d["diff"] > 0 else None
        out[key] = {"a": a, "b": b, "hit@10": d, "new_items_hit@10": dn, "repeat_share": share}
    for name in {best, base} - {None}:
        h, n = result.hits[name], result.new_hits[name]  # type: ignore[index]
        out.setdefault("hits_from_repeats", {})[name] = (
            float((h - n).sum() / h.sum()) if h.sum() else 0.0
        )
    return out


def sample_lists(
    engine: Engine,
    train: Dataset,
    queries: Queries,
    *,
    categories: int = 3,
    per_category: int = 2,
    k: int = 10,
) -> list[dict[str, Any]]:
    """The mix's top-``k`` with reasons and titles for the most frequent seeds of the largest
    categories; ``hit`` marks items that were in a test basket with the seed."""
    cat = train.catalog.category
    seed_cat = np.where(queries.seed >= 0, cat[np.maximum(queries.seed, 0)], -1)
    if not (seed_cat >= 0).any():
        return []
    counts = np.bincount(seed_cat[seed_cat >= 0])
    labels = _category_labels(train)
    chosen: list[tuple[int, int]] = []
    for c in np.argsort(-counts, kind="stable")[:categories]:
        if counts[c] == 0:
            break
        s_counts = np.bincount(queries.seed[seed_cat == c])
        for s in np.argsort(-s_counts, kind="stable")[:per_category]:
            if s_counts[s]:
                chosen.append((int(c), int(s)))
    if not chosen:
        return []
    seeds = np.array([s for _, s in chosen], dtype=np.int32)
    batch = engine.run_pipeline(Request.of(seeds, None, k))
    names, ids, titles = engine.source_names, train.items.values, train.catalog.title
    q_of = queries.targets.query_of_entry()
    out = []
    for row, (c, s) in enumerate(chosen):
        together = set(queries.targets.item[queries.seed[q_of] == s].tolist())
        recs = []
        for pos in range(batch.item.shape[1]):
            item = int(batch.item[row, pos])
            if item < 0:
                break
            ranks = batch.source_rank[row, pos]
            reasons = [f"{names[j]} #{int(r) + 1}" for j, r in enumerate(ranks) if r >= 0]
            recs.append(
                {
                    "item_id": str(ids[item]),
                    "title": str(titles[item] or ""),
                    "score": float(batch.score[row, pos]),
                    "reasons": reasons or ["fallback"],
                    "hit": item in together,
                }
            )
        out.append(
            {
                "category": labels[c],
                "seed_id": str(ids[s]),
                "seed_title": str(titles[s] or ""),
                "queries": int((queries.seed == s).sum()),
                "recommendations": recs,
            }
        )
    return out


def run_side_by_side(
    dataset: Dataset,
    configs: Sequence[NamedConfig],
    *,
    split: Literal["time", "leave_last"] = "time",
    t: int | None = None,
    test_share: float = 0.2,
    max_queries: int | None = None,
    seeds: Seeds = "all",
    n_boot: int = 1000,
    seed: int = 0,
    show_progress: bool = False,
    **options: Any,
) -> tuple[list[BacktestResult], dict[str, Any]]:
    """Backtest every config on the same split and queries; the first is the reference.

    The reference run has every system of :func:`run_backtest` (``options``); the others
    only those a config changes (the mix, the ranker, the neural stages), since the
    baselines do not read the config. Returns the runs and their comparison
    (:func:`recset.eval._compare.compare_results`).
    """
    prep = prepare(
        dataset,
        split=split,
        t=t,
        test_share=test_share,
        seeds=seeds,
        max_queries=max_queries,
        seed=seed,
    )
    results = []
    for i, cfg in enumerate(configs):
        if show_progress:
            print(f"config {cfg.name!r} ({i + 1}/{len(configs)})", file=sys.stderr, flush=True)
        opts = dict(options)
        if i > 0:
            opts.update(baselines=[], ablations=False, explore_share=0.0, samples=0)
        r = run_backtest(
            dataset,
            cfg.config,
            split=split,
            n_boot=n_boot,
            seed=seed,
            prepared=prep,
            show_progress=show_progress,
            **opts,
        )
        r.config = cfg.record()
        results.append(r)
    comparison = compare_results(results, configs, prep.split.train, n_boot=n_boot, seed=seed)
    return results, comparison
