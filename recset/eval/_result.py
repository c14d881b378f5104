"""What a backtest measured (:class:`BacktestResult`) and the bootstrap intervals of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

ABLATION_PREFIXES = ("only-", "mix-minus-")


@dataclass
class BacktestResult:
    """Everything a backtest measured; ``to_json`` gives the stable metrics.json layout.

    The per-query arrays (``hits``, ``new_hits``, ``basket``, ``query_category``,
    ``cart_size``) are kept for comparisons between runs on the same queries; they are not
    written to metrics.json.
    """

    dataset: str
    split: dict[str, Any]
    queries: int
    systems: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_category: list[dict[str, Any]] = field(default_factory=list)
    confidence: dict[str, dict[str, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    importance: list[tuple[str, float]] = field(default_factory=list)
    rerank_curve: dict[str, dict[str, float]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    by_cart_size: dict[str, dict[str, Any]] = field(default_factory=dict)
    hits: dict[str, NDArray[np.float64]] = field(default_factory=dict, repr=False)
    new_hits: dict[str, NDArray[np.float64]] = field(default_factory=dict, repr=False)
    basket: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    query_category: NDArray[np.int32] = field(
        default_factory=lambda: np.zeros(0, np.int32), repr=False
    )
    category_paths: list[str] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = {
            "dataset": self.dataset,
            "split": self.split,
            "queries": self.queries,
            "config": self.config,
            "summary": self.summary,
            "systems": self.systems,
            "per_category": self.per_category,
            "confidence_95": self.confidence,
            "seconds": self.timings,
            "ranker_importance_gain": dict(self.importance),
            "rerank_curve": self.rerank_curve,
            "samples": self.samples,
        }
        if self.by_cart_size:
            out["by_cart_size"] = self.by_cart_size
        return out

    def best(self, kind: str, level: str = "item", metric: str = "hit@10") -> str | None:
        """Name of the best system of one kind by a metric (ablations left out)."""
        scored = [
            (m.get(level, {}).get(metric, -1.0), name)
            for name, m in self.systems.items()
            if m["kind"] == kind and not name.startswith(ABLATION_PREFIXES)
        ]
        return max(scored)[1] if scored else None


def summary_systems(result: BacktestResult) -> list[str]:
    """The recset systems and the baselines (no ablations): the short table."""
    return [n for n in result.systems if not n.startswith(ABLATION_PREFIXES)]


def key_systems(result: BacktestResult, most: int = 5) -> list[str]:
    """At most ``most`` systems worth a line in a plot or a narrow table: the mix, the ranker,
    the best recset system, the two best baselines."""
    names = [n for n in ("mix", "mix+ranker", result.best("recset")) if n in result.systems]
    baselines = sorted(
        (n for n, m in result.systems.items() if m["kind"] == "baseline"),
        key=lambda n: -result.systems[n]["item"].get("hit@10", 0.0),
    )
    names += baselines[:2]
    return list(dict.fromkeys(names))[:most]


def bootstrap_ci(
    hits: NDArray[np.float64], clusters: NDArray[np.int64], *, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean, resampling whole clusters (baskets).

    Queries of one basket share targets, so they are resampled together. Given the per-query
    difference of two systems on the same queries, it is the paired interval of the
    difference of their means.
    """
    hits = np.asarray(hits, dtype=np.float64)
    if len(hits) == 0:
        return float("nan"), float("nan")
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


def paired_difference(
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    clusters: NDArray[np.int64],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Mean of ``b - a`` over the same queries with its paired 95% bootstrap interval."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    lo, hi = bootstrap_ci(d, clusters, n_boot=n_boot, seed=seed)
    return {
        "a": float(np.mean(a)) if len(a) else float("nan"),
        "b": float(np.mean(b)) if len(b) else float("nan"),
        "diff": float(d.mean()) if len(d) else float("nan"),
        "low": lo,
        "high": hi,
    }
