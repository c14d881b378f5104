"""Tune the recall mix per category on a validation window cut from the training data.

The test window is cut off first, exactly as :func:`recset.eval.backtest.run_backtest` cuts it
(same ``split`` and ``test_share``), and never looked at. Inside the training part, the last
``valid_share`` of the baskets (or each user's last basket) are the validation window and the
sources are fitted once on what precedes it. For each category group (the category-path
prefix at ``depth``) with at least ``min_queries`` validation queries, a greedy search changes
the group's mix one step at a time — take in a candidate source (another configured instance
of a type the mix uses, or ``popular_global``), drop a source, halve, double or quadruple its
fusion weight, cap its candidates at 10 or 30, a sharper or flatter ``rrf_k`` — keeping the
best step while it raises item Hit@10 on the *search* half of the group's validation baskets.
The result is kept only when it also gains on the other (*check*) half and its gain on all
validation queries has a 95% paired bootstrap interval above 0; other groups keep the default.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from recset.config import Config, config_from_dict
from recset.data import Dataset, Queries, basket_queries, leave_last_split, time_split
from recset.engine import Engine
from recset.errors import DataError
from recset.eval._progress import progress, stage
from recset.eval._result import paired_difference
from recset.eval.metrics import hit_matrix, per_query
from recset.pipeline import Candidates
from recset.recall import MixConfig, Mixer, category_names, key_matches

_log = logging.getLogger(__name__)

WEIGHT_STEPS = (0.5, 2.0, 4.0)
# candidate sources a mix may take in, defined for the search when the base config does not
# define a source of that name: popularity over the whole catalog (grocery staples)
EXTRA_SOURCES: dict[str, dict[str, Any]] = {
    "popular_global": {"type": "popular", "scope": "global"}
}
LIMIT_STEPS = (10, 30)
RRF_K_STEPS = (3.0, 30.0)


@dataclass
class GroupResult:
    """The tuning of one category group."""

    key: str
    queries: int
    default_hit: float
    tuned_hit: float
    mix: MixConfig
    changes: list[str] = field(default_factory=list)
    gain: dict[str, float] = field(default_factory=dict)
    check_gain: float = 0.0
    accepted: bool = False
    reason: str = ""


@dataclass
class TuneResult:
    """Every group looked at, and the split it was tuned on."""

    dataset: str
    split: dict[str, Any]
    groups: list[GroupResult]
    base_text: str = ""
    extra_sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def accepted(self) -> list[GroupResult]:
        return [g for g in self.groups if g.accepted]


class _Cached:
    """A fitted source whose lists for a fixed set of seeds are computed once.

    The search asks the same seeds many times; wider lists or other seeds go to the source.
    """

    def __init__(self, source: Any, seeds: NDArray[np.int32], width: int) -> None:
        self.source = source
        self.seeds = np.unique(seeds).astype(np.int32)
        c = source.recall_many(self.seeds, width)
        self.item, self.score, self.width = c.item, c.score, width

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        pos = np.minimum(np.searchsorted(self.seeds, seeds), max(len(self.seeds) - 1, 0))
        known = len(self.seeds) > 0 and bool((self.seeds[pos] == seeds).all())
        if n > self.width or not known:
            return self.source.recall_many(seeds, n)
        return Candidates(item=self.item[pos, :n], score=self.score[pos, :n])

    def keep(self, seeds: NDArray[np.int32], items: NDArray[np.int32]) -> NDArray[np.bool_]:
        return self.source.keep(seeds, items)


def _inner_split(train: Dataset, split: str, valid_share: float) -> Any:
    if split == "leave_last":
        return leave_last_split(train)
    return time_split(train, test_share=valid_share)


def _outer_train(dataset: Dataset, split: str, test_share: float, t: int | None) -> Any:
    if split == "leave_last":
        return leave_last_split(dataset)
    return time_split(dataset, t, test_share=test_share)


class _Evaluator:
    """Item Hit@10 per validation query of a candidate mix of one group."""

    def __init__(self, engine: Engine, queries: Queries, pool: Sequence[str], k: int = 10) -> None:
        self.mixer = engine.mixer
        self.queries = queries
        self.k = k
        self.width = engine.config.build.candidates_per_seed
        self.useeds, self.back = np.unique(queries.seed, return_inverse=True)
        mixed = {s for m in self.mixer.mixes for s in m.sources} | {self.mixer.fallback, *pool}
        self.order = (
            *self.mixer.source_order,
            *(p for p in pool if p not in self.mixer.source_order),
        )
        self.sources = {
            n: (_Cached(src, self.useeds, self.width) if n in mixed else src)
            for n, src in self.mixer.sources.items()
        }

    def hits(self, mix: MixConfig, rows: NDArray[np.intp]) -> NDArray[np.float64]:
        """Per-query hit@k of ``mix`` on the queries at ``rows`` (served as precomputed:
        every source asked for ``candidates_per_seed`` items)."""
        mixer = Mixer(
            self.sources,  # type: ignore[arg-type]
            [mix],
            np.zeros(self.mixer.n_items, dtype=np.int32),
            self.order,
            fallback=self.mixer.fallback,
            available=self.mixer.available,
        )
        u = np.unique(self.back[rows])
        top = mixer.top(self.useeds[u].astype(np.int32), self.width).item[:, : self.k]
        recs = np.full((len(rows), self.k), -1, dtype=np.int32)
        recs[:] = top[np.searchsorted(u, self.back[rows])]
        q = self.queries.take(rows)
        return per_query(hit_matrix(recs, q.targets), q.targets.sizes(), self.k)["hit"]


def _moves(mix: MixConfig, pool: Sequence[str]) -> list[tuple[str, MixConfig]]:
    """Every one-step change of ``mix`` (with a label for the TOML comment); ``pool``: the
    sources it may take in."""
    out = []
    for s in pool:
        if s not in mix.sources:
            out.append((f"add {s}", mix.model_copy(update={"sources": (*mix.sources, s)})))
    for s in mix.sources:
        if len(mix.sources) > 1:
            rest = tuple(x for x in mix.sources if x != s)
            out.append((f"drop {s}", mix.model_copy(update={"sources": rest})))
        for f in WEIGHT_STEPS:
            w = round(mix.weight(s) * f, 4)
            weights = {**mix.weights, s: w}
            out.append((f"{s} weight {w:g}", mix.model_copy(update={"weights": weights})))
        for lim in LIMIT_STEPS:
            if s in mix.limits and mix.limits[s] <= lim:
                continue
            limits = {**mix.limits, s: lim}
            out.append((f"{s} limit {lim}", mix.model_copy(update={"limits": limits})))
    for r in RRF_K_STEPS:
        if r != mix.rrf_k:
            out.append((f"rrf_k {r:g}", mix.model_copy(update={"rrf_k": r})))
    return out


def group_keys(train: Dataset, depth: int) -> list[str]:
    """The category-path prefixes at ``depth`` (1 = top level) of the catalog's categories."""
    keys = set()
    for p in train.catalog.category_path:
        if isinstance(p, str):
            parts = p.split(" > ")
            keys.add(" > ".join(parts[: min(depth, len(parts))]))
    return sorted(keys)


def tune_mixes(
    dataset: Dataset,
    base: Config | None = None,
    *,
    split: Literal["time", "leave_last"] = "time",
    t: int | None = None,
    test_share: float = 0.2,
    valid_share: float = 0.2,
    depth: int = 1,
    min_queries: int = 150,
    max_queries: int = 4000,
    rounds: int = 4,
    min_gain: float = 0.01,
    n_boot: int = 500,
    seed: int = 0,
    show_progress: bool = False,
) -> TuneResult:
    """Tune the mix of every category group with enough validation queries (see the module
    docstring); ``min_gain`` is the smallest relative validation gain a step must bring."""
    base = base or config_from_dict({})
    search_cfg, pool = _with_candidates(base)
    outer = _outer_train(dataset, split, test_share, t)
    inner = _inner_split(outer.train, split, valid_share)
    queries = basket_queries(inner.test)
    if len(queries) == 0:
        raise DataError(f"{dataset.name}: the validation window holds no basket with >= 2 items")
    say = show_progress
    with stage("fit the sources on the part before the validation window", say):
        engine = Engine.build(inner.train, search_cfg, precompute=False)
    cat = inner.train.catalog
    qpath = np.array(
        [
            cat.category_path[c] if c >= 0 else None
            for c in np.where(queries.seed >= 0, cat.category[np.maximum(queries.seed, 0)], -1)
        ],
        dtype=object,
    )
    ids, paths = category_names(inner.train)
    rng = np.random.default_rng(seed)
    groups: list[tuple[str, NDArray[np.intp]]] = []
    for key in group_keys(inner.train, depth):
        in_group = key_matches(key, np.full(len(qpath), None, dtype=object), qpath)
        own = key_matches(key, np.full(len(paths), None, dtype=object), paths)
        # a group holding a category the base config overrides keeps the base's override
        if any((key_matches(k, ids, paths) & own).any() for k in base.categories):
            continue
        rows = np.flatnonzero(in_group)
        if len(rows) < min_queries:
            continue
        if len(rows) > max_queries:
            rows = np.sort(rng.choice(rows, max_queries, replace=False))
        groups.append((key, rows))
    info = {
        "split": split,
        "test_share": test_share if split == "time" else None,
        "valid_share": valid_share if split == "time" else None,
        "validation_queries": int(len(queries)),
        "depth": depth,
        "min_queries": min_queries,
        "groups_tuned": len(groups),
    }
    all_rows = np.unique(np.concatenate([r for _, r in groups])) if groups else np.zeros(0, int)
    with stage(f"cache the sources' lists for {len(all_rows):,} validation queries", say):
        ev = _Evaluator(engine, queries.take(all_rows), pool)
    local = {int(r): i for i, r in enumerate(all_rows.tolist())}
    results = []
    default = base.mix
    for key, rows in progress(groups, "tune groups", say):
        lr = np.array([local[int(r)] for r in rows], dtype=np.intp)
        basket = queries.basket[rows]
        search = (np.unique(basket, return_inverse=True)[1] % 2) == 0
        results.append(
            _tune_group(
                ev, key, lr, search, basket, default, pool,
                rounds=rounds, min_gain=min_gain, n_boot=n_boot, seed=seed,
            )
        )  # fmt: skip
    extra = {n: d for n, d in EXTRA_SOURCES.items() if n not in base.sources}
    return TuneResult(dataset.name, info, results, extra_sources=extra)


def _with_candidates(base: Config) -> tuple[Config, list[str]]:
    """``base`` with the extra candidate sources defined, and the pool of sources a mix may
    take in: every configured instance of a type the default mix (or the fallback) uses that
    the default mix leaves out, and the extra sources."""
    data = base.to_dict()
    for name, settings in EXTRA_SOURCES.items():
        data["sources"].setdefault(name, dict(settings))
    cfg = config_from_dict(data, where="<tune: base + candidate sources>")
    types = {cfg.type_of(s) for s in (*base.mix.sources, base.build.fallback)}
    pool = [n for n in cfg.sources if n not in base.mix.sources and cfg.type_of(n) in types]
    return cfg, pool


def _tune_group(
    ev: _Evaluator,
    key: str,
    rows: NDArray[np.intp],
    search: NDArray[np.bool_],
    basket: NDArray[np.int64],
    default: MixConfig,
    pool: Sequence[str],
    *,
    rounds: int,
    min_gain: float,
    n_boot: int,
    seed: int,
) -> GroupResult:
    s_rows, c_rows = rows[search], rows[~search]
    base_s = ev.hits(default, s_rows).mean()
    best_mix, best_s, changes = default, base_s, []
    for _ in range(rounds):
        scored = [(ev.hits(m, s_rows).mean(), label, m) for label, m in _moves(best_mix, pool)]
        score, label, mix = max(scored, key=lambda x: x[0])
        if score <= best_s * (1 + min_gain) or score <= best_s:
            break
        best_mix, best_s = mix, score
        changes.append(label)
    base_all, tuned_all = ev.hits(default, rows), ev.hits(best_mix, rows)
    gain = paired_difference(base_all, tuned_all, basket, n_boot=n_boot, seed=seed)
    check = float(ev.hits(best_mix, c_rows).mean() - ev.hits(default, c_rows).mean())
    g = GroupResult(key, len(rows), gain["a"], gain["b"], best_mix, changes, gain, check)
    if not changes:
        g.reason = "no step gains on the search half"
    elif check <= 0:
        g.reason = f"no gain on the check half ({check:+.4f})"
    elif gain["low"] <= 0:
        g.reason = "the interval of the validation gain includes 0"
    else:
        g.accepted = True
    return g


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(float(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def tuned_toml(result: TuneResult, default: MixConfig, *, base_path: str | None = None) -> str:
    """The base config's text followed by a commented override per accepted group."""
    lines = [
        f"# recset tune: per-category recall mixes for {result.dataset}",
        "# validation window cut from the training data only (never the test window): "
        + ", ".join(f"{k}={v}" for k, v in result.split.items() if v is not None),
        f"# base config: {base_path or '(built-in defaults)'}",
        f"# {len(result.accepted)} of {len(result.groups)} groups with enough validation "
        "queries got an override; every other category keeps the default mix.",
    ]
    for g in result.groups:
        if not g.accepted:
            lines.append(f"#   kept the default for {g.key!r} ({g.queries} queries): {g.reason}")
    lines.append("")
    if result.base_text:
        lines += [result.base_text.rstrip("\n"), ""]
    used = {s for g in result.accepted for s in g.mix.sources}
    for name, settings in result.extra_sources.items():
        if name in used:
            lines += ["# a candidate source taken in by a tuned mix below", f"[sources.{name}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in settings.items()]
            lines.append("")
    for g in result.accepted:
        d = g.gain
        lines += [
            f"# {g.key}: validation item Hit@10 {g.default_hit:.4f} -> {g.tuned_hit:.4f} "
            f"({d['diff']:+.4f}, 95% CI {d['low']:+.4f} to {d['high']:+.4f}; "
            f"{g.queries} queries; check half {g.check_gain:+.4f})",
            f"# steps: {'; '.join(g.changes)}",
            f"[categories.{json.dumps(g.key)}]",
        ]
        changed = {
            k: v
            for k, v in g.mix.model_dump(mode="json").items()
            if v != default.model_dump(mode="json")[k]
        }
        lines += [f"{k} = {_toml_value(v)}" for k, v in changed.items()]
        lines.append("")
    return "\n".join(lines)


def tune_report_rows(result: TuneResult) -> Sequence[str]:
    """One printable line per group."""
    return [
        f"{g.key[:40]:<40} {g.queries:>6} {g.default_hit:.4f} -> {g.tuned_hit:.4f} "
        f"{'override' if g.accepted else 'default '} {'; '.join(g.changes) or g.reason}"
        for g in result.groups
    ]
