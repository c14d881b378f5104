"""Ceiling of discovery: how many test targets new to the user any candidate set can reach.

For every test query (seed, user, targets) with at least one target the user never bought in
training, it reports the share whose new targets hold one inside each candidate set, with the
user's purchases removed: the mix's top N for the seed, the N globally most popular items,
the user's items most co-bought with their history (``hist_copurchase``, 50 kept), and the
union of the mix and the history candidates. A discovery list of 10 can only hit what its
candidate set reaches, so these shares bound its ``explore_hit@10``.

On data with a promotion calendar it also reports the items *on promotion at the query's
time* in the user's own categories (ordered by the user's share of purchases in the item's
category, then the item's popularity; the user's purchases removed), alone and added to the
mix top 100 + history 50: would a recall source of them reach targets the others miss?

``--validation`` scores the validation window the other bench scripts choose on (the test
window cut off and thrown away) instead of the test window.

    python bench/discovery_ceiling.py --data /work/rd/instacart --split leave_last
    python bench/discovery_ceiling.py --data /work/rd/cj --max-queries 30000
    python bench/discovery_ceiling.py --data /work/rd/cj_promo --max-queries 30000 --validation
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import scipy.sparse as sps
from _windows import validation_window  # this directory (bench/_windows.py)
from numpy.typing import NDArray

from recset.data import (
    PURCHASE,
    basket_queries,
    leave_last_split,
    load_dataset,
    time_split,
)
from recset.engine import Engine
from recset.ranking import fit_features
from recset.ranking._discover_features import history_candidates

SIZES = (10, 50, 100, 200, 500)


def _reach(recs: NDArray[np.int32], q_of: NDArray[np.int64], target: NDArray[np.int64]) -> float:
    """Share of queries (rows of recs) whose new targets (q_of, target) hold one in recs."""
    n = recs.shape[0]
    width = int(max(recs.max(initial=0), target.max(initial=0))) + 2
    keys = np.unique(
        np.arange(n, dtype=np.int64)[:, None] * width + np.where(recs >= 0, recs, width - 1)
    )
    hit = np.isin(q_of * width + target, keys)
    return float(np.bincount(q_of[hit], minlength=n).astype(bool).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", choices=("time", "leave_last"), default="time")
    ap.add_argument("--max-queries", type=int, default=30_000)
    ap.add_argument("--validation", action="store_true")
    ap.add_argument("--text", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.validation:
        ds, sp, queries = validation_window(args.data, args.split, 0.2, args.max_queries)
    else:
        ds = load_dataset(args.data)
        sp = leave_last_split(ds) if args.split == "leave_last" else time_split(ds)
        queries = basket_queries(sp.test)
        if len(queries) > args.max_queries:
            rng = np.random.default_rng(0)
            pick = np.sort(rng.choice(len(queries), args.max_queries, replace=False))
            queries = queries.take(pick)
    engine = Engine.build(sp.train)
    feats = fit_features(sp.train, engine.mixer, embeddings=np.zeros((ds.n_items, 0), np.float32))
    # new targets: never bought by the query's user in training
    q_all = queries.targets.query_of_entry()
    t_all = queries.targets.item.astype(np.int64)
    new = ~feats.bought(queries.user[q_all], t_all[:, None])[:, 0]
    has_new = np.bincount(q_all[new], minlength=len(queries)) > 0
    sel = np.flatnonzero(has_new)
    remap = np.full(len(queries), -1, np.int64)
    remap[sel] = np.arange(len(sel))
    q_of, target = remap[q_all[new]], t_all[new]
    seeds, users = queries.seed[sel], queries.user[sel]
    print(
        f"{ds.name}: {len(queries):,} queries, {len(sel):,} ({len(sel) / len(queries):.1%}) "
        f"with a target new to the user"
    )

    def drop_bought(recs: NDArray[np.int32]) -> NDArray[np.int32]:
        return np.where(feats.bought(users, recs) | (recs < 0), -1, recs).astype(np.int32)

    hist, _ = history_candidates(feats.feature("hist_copurchase"), users, 50)  # type: ignore[arg-type]
    print(f"history candidates (50): {_reach(drop_bought(hist), q_of, target):.4f}")
    pop = engine.mixer.sources[engine.mixer.fallback]
    glob = pop.recall_many(np.full(len(sel), -1, np.int32), max(SIZES)).item  # type: ignore[attr-defined]
    print("| N | mix top N | popular top N | mix top N + history 50 |")
    print("|---:|---:|---:|---:|")
    mix_top: dict[int, NDArray[np.int32]] = {}
    for n in SIZES:
        mix = mix_top[n] = np.concatenate(
            [engine.mixer.top(seeds[i : i + 5000], n).item for i in range(0, len(sel), 5000)]
        )
        both = np.concatenate([mix, hist], axis=1)
        print(
            f"| {n} | {_reach(drop_bought(mix), q_of, target):.4f} | "
            f"{_reach(drop_bought(glob[:, :n]), q_of, target):.4f} | "
            f"{_reach(drop_bought(both), q_of, target):.4f} |"
        )
    if args.text:
        text = _text_neighbours(sp.train, users, feats.bought, max(SIZES[:3]))
        mix_hist = np.concatenate([mix_top[100], hist], axis=1)
        print("| N | text neighbours of the user's items, top N | + mix top 100 + history 50 |")
        print("|---:|---:|---:|")
        for n in SIZES[:3]:
            both = np.concatenate([mix_hist, text[:, :n]], axis=1)
            print(
                f"| {n} | {_reach(text[:, :n], q_of, target):.4f} | "
                f"{_reach(drop_bought(both), q_of, target):.4f} |"
            )
    if sp.train.promotions is not None and queries.time is not None:
        mix100 = mix_top[100]
        promo = _promoted_in_categories(sp.train, users, queries.time[sel], max(SIZES[:3]))
        print("| N | promoted now, user's categories, top N | + mix top 100 + history 50 |")
        print("|---:|---:|---:|")
        for n in SIZES[:3]:
            both = np.concatenate([mix100, hist, promo[:, :n]], axis=1)
            print(
                f"| {n} | {_reach(drop_bought(promo[:, :n]), q_of, target):.4f} | "
                f"{_reach(drop_bought(both), q_of, target):.4f} |"
            )
        print(
            f"mix top 100 + history 50 alone: "
            f"{_reach(drop_bought(np.concatenate([mix100, hist], axis=1)), q_of, target):.4f}"
        )
    print(f"seconds: {time.perf_counter() - t0:.0f} (shared machine)")


def _text_neighbours(
    train: Any, users: NDArray[np.int64], bought: Any, n: int
) -> NDArray[np.int32]:
    """Each query's ``n`` items nearest in text to its user's 30 most-bought items (an
    item's similarity: its largest to any of them, as ``hist_text_max``), none the user
    bought ((len(users), n), -1 padded)."""
    from recset.ranking._discover_features import HISTORY_ITEMS, _user_top_items
    from recset.ranking._feature_base import FitContext
    from recset.recall import embed_items

    emb = embed_items(train)
    top = _user_top_items(FitContext(train), HISTORY_ITEMS)
    uniq, inv = np.unique(users, return_inverse=True)
    out = np.full((len(uniq), n), -1, np.int32)
    for i, u in enumerate(uniq):
        h = top[u][top[u] >= 0]
        if not len(h):
            continue
        sim = (emb[h] @ emb.T).max(axis=0)
        sim[h] = -np.inf
        m = min(4 * n, len(sim) - 1)
        best = np.argpartition(-sim, m)[:m]
        best = best[np.argsort(-sim[best], kind="stable")].astype(np.int32)
        best = best[~bought(np.array([u]), best[None, :])[0]][:n]
        out[i, : len(best)] = best
    return out[inv]


def _promoted_in_categories(
    train: Any, users: NDArray[np.int32], when: NDArray[np.int64], n: int
) -> NDArray[np.int32]:
    """Per query, the ``n`` items on promotion at ``when`` in the user's categories: by the
    user's share of purchases in the item's category, then the item's purchases (-1 padded).

    The calendar changes at few times (weekly on Complete Journey), so the queries are
    grouped by the calendar segment their time falls in and each segment's active items are
    found once."""
    cal = train.promotions
    ev = train.events
    buy = ev.event == PURCHASE
    cat = train.catalog.category.astype(np.int64)
    n_cat = int(cat.max()) + 1
    ok = cat[ev.item[buy]] >= 0
    uc = sps.csr_matrix(
        (np.ones(int(ok.sum())), (ev.user[buy][ok], cat[ev.item[buy]][ok])),
        shape=(train.n_users, n_cat),
    )
    uc = sps.diags(1.0 / np.maximum(np.asarray(uc.sum(axis=1)).ravel(), 1.0)) @ uc
    uc = uc.tocsr()
    pop = np.bincount(ev.item[buy], minlength=train.n_items).astype(np.float64)
    pop_rank = pop / (pop.max() + 1.0)  # < 1: breaks ties within a category share only
    changes = np.unique(np.r_[cal.start, cal.end])
    seg = np.searchsorted(changes, when, side="right")
    out = np.full((len(users), n), -1, np.int32)
    for s_id in np.unique(seg):
        rows = np.flatnonzero(seg == s_id)
        t = int(when[rows[0]])
        active = np.unique(cal.item[(cal.start <= t) & (cal.end > t)]).astype(np.int64)
        active = active[cat[active] >= 0]
        if not len(active):
            continue
        shares = uc[users[rows]][:, cat[active]].toarray()  # (queries, active items)
        score = np.where(shares > 0, shares + 1e-3 * pop_rank[active], -np.inf)
        k = min(n, len(active))
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        top_s = np.take_along_axis(score, top, 1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        top, top_s = np.take_along_axis(top, order, 1), np.take_along_axis(top_s, order, 1)
        out[rows, :k] = np.where(np.isfinite(top_s), active[top], -1)
    return out


if __name__ == "__main__":
    main()
