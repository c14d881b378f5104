"""Discovery model variants on the validation window, side by side in one process.

The test window is cut off and thrown away (as ``bench/discovery_validation.py`` does); the
training part is split again the way the test was cut (each user's last training basket on
Instacart, the last 20% of training baskets for a time split): that *validation* window
scores every variant. Each discovery model is trained exactly as ``train_ranker`` trains it
(its own fit / label windows inside the validation fit part), served through
``Engine.for_mode("discover")`` and judged on explore_hit@10 against the baselines that hide
the user's purchases. The engine, the mix and the feature spaces are built once and shared by
the variants, so a variant costs one boosting run and one evaluation.

    python bench/discovery_variants.py --data /work/rd/instacart --split leave_last \
        --variants base,sar,sar_cand,cuts3

Variants (comma-separated, combinable with ``+``):

- ``base``: the discovery model without the SAR features and candidates, one label window
  (the shipped model is ``sar+sarcand+cuts3``, with ``bag3`` since ``discover_models = 3``,
  ``promo`` on data with a calendar, ``bundle`` since ``bundle_features = true`` and
  ``tlift`` since ``time_features = true``);
- ``sar``: adds the ``hist_sar`` / ``seed_sar`` features (personal SAR: the user's purchases
  times an item-item similarity from user co-occurrence, and the seed's similarity);
- ``sarcand``: adds each user's 50 best never-bought items by ``hist_sar`` to the candidates;
- ``cutsN``: label queries from the user's last N baskets of the fit part (leave-last) or N
  consecutive label windows (time), each with its own fit part before it;
- ``leavesN`` / ``minchildN``: LightGBM ``num_leaves`` / ``min_child_samples``;
- ``binary``: a binary log-loss objective instead of lambdarank (still early-stopped on
  NDCG@10);
- ``newbuy`` / ``cattrans`` / ``conf``: the opt-in features ``cand_new_buyers``
  (popularity among first purchases), ``user_new_category`` (category transitions of new
  purchases) / ``seed_confidence`` (the association rules' ``P(candidate | seed)``);
- ``kindnew``: the opt-in feature ``user_kind_new_rate`` (how often the user starts a new
  item of the candidate's product type, per trip);
- ``promo``: the promotion-calendar features ``cand_promo``, ``cand_promo_channels`` and
  ``cand_promo_lift`` (the dataset needs ``promotions.parquet``; the shipped model reads
  them whenever the data has a calendar, ``[ranker] promotion_features``);
- ``trial``: the opt-in feature ``cand_promo_trial_lift`` (how much more often the
  candidate was bought for the first time while promoted; needs the calendar too);
- ``htmax`` / ``htprof``: the opt-in features ``hist_text_max`` (text similarity to the
  nearest of the user's most-bought items) / ``hist_text_profile`` (cosine to the user's
  trip-weighted mean text vector);
- ``bundle``: the opt-in features ``user_seed_cand_share`` (the share of the user's trips
  with the seed that also hold the candidate) and ``user_seed_trips``;
- ``catdue``: the opt-in feature ``user_cat_days_due`` (how due the user's next purchase in
  the candidate's category is at the request's time);
- ``catprice``: the opt-in feature ``user_cat_price_log`` (the candidate's log price against
  the user's mean log price paid in its category);
- ``mixN``: ``discover_mix_candidates`` N, the candidates per seed the discovery model takes
  from the mix (the ranker's ``candidates``, 100, otherwise);
- ``capN``: ``discover_n_estimators`` N, the most trees the discovery model's early stopping
  may keep;
- ``treesN``: exactly N trees, no early stopping; ``lrX`` / ``ffX`` / ``l2X``: LightGBM
  ``learning_rate`` / ``feature_fraction`` / ``lambda_l2``;
- ``mono``: the score may only rise with the affinity features (``DISCOVER_MONOTONE`` in
  ``recset/ranking/_ranker.py``);
- ``cv`` / ``cvN``: the number of trees chosen by user-grouped 5-fold (N-fold)
  cross-validation over all label queries, then one model refitted on all of them
  (``discover_rounds = "cv"``) instead of early stopping on the validation users;
- ``seedN``: the ranker's ``seed`` N (which users validate, the folds, LightGBM's bagging):
  the same variant under several seeds shows how much of a difference is noise;
- ``maxqN``: at most N label queries drawn per label window (the ranker's ``max_queries``,
  30,000, otherwise: 75% training, 25% validation);
- ``bagN``: ``discover_models = N``: N discovery models on the same label queries under
  seeds ``seed`` .. ``seed + N - 1`` (LightGBM's sampling; with leave-last, each its own
  validation users), served by the mean of their scores.

``--seeds K`` runs every variant under K seeds (the variant's ``seedN`` or the config's seed,
then the next ones; a ``bagN`` variant's next seed starts after its N models), prints each
seed's row paired with the first variant under the same seed, then the variant's mean over the
seeds, paired on the per-query hits averaged over them. One model's interval resamples the
queries but not the fit, and on Complete Journey the fit alone moves the score by up to 0.008:
a default should be judged on the mean. Every variant runs under one seed before any runs
under the next (each seed draws its own label queries), and consecutive variants that differ
only in LightGBM's parameters or the bag share their labelled queries (labelled once; one
label set in memory at a time).

Never tune on the test window: report test figures only from ``recset backtest``.
"""

from __future__ import annotations

import argparse
import re
import resource
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from _windows import cut, save_hits, validation_window  # this directory (bench/_windows.py)

from recset.config import config_from_dict, load_config
from recset.data import basket_queries
from recset.engine import Engine
from recset.eval._result import paired_difference
from recset.eval.backtest import _explore_mask, evaluate, ranked_system, recommendations
from recset.eval.baselines import (
    association_rules_system,
    hide_bought,
    popular_system,
    sar_personal_system,
    with_fill,
)
from recset.eval.metrics import hit_matrix, per_query
from recset.ranking._ranker import (
    DISCOVER_MONOTONE,
    Ranker,
    fit_discovery,
    fit_features,
    labelled_queries,
)
from recset.recall import Mixer, embed_items


@dataclass(frozen=True)
class Variant:
    name: str
    extra: tuple[str, ...] = ()
    sar_candidates: int = 0
    cuts: int = 1
    params: tuple[tuple[str, Any], ...] = ()
    trees: int = 0  # > 0: this many trees, no early stopping
    cap: int = 0  # > 0: discover_n_estimators (the most trees early stopping may keep)
    mix: int = 0  # > 0: discover_mix_candidates (candidates per seed from the mix)
    mono: bool = False  # the score never falls as an affinity feature rises
    cv: int = 0  # > 0: the trees chosen by user-grouped cross-validation with this many folds
    seed: int | None = None  # the ranker's seed (None: the config's)
    bag: int = 1  # models under consecutive seeds, their scores averaged
    max_queries: int = 0  # > 0: the label queries drawn per window (the config's otherwise)


PLUGINS = {
    "newbuy": ("cand_new_buyers",),
    "cattrans": ("user_new_category",),
    "conf": ("seed_confidence",),
    "kindnew": ("user_kind_new_rate",),
    "promo": ("cand_promo", "cand_promo_channels", "cand_promo_lift"),
    "trial": ("cand_promo_trial_lift",),
    "htmax": ("hist_text_max",),
    "htprof": ("hist_text_profile",),
    "bundle": ("user_seed_cand_share", "user_seed_trips"),
    "strial": ("seed_trial_conf",),
    "htrial": ("hist_trial_conf",),
    "tshare": ("user_cand_time_share",),
    "tlift": ("cand_time_lift",),
    "catdue": ("user_cat_days_due",),
    "catprice": ("user_cat_price_log",),
}


BASELINES = (
    "popular/new",
    "sar_personal/new",
    "association_rules(1)/new",
    "association_rules(2)/new",
)
"""The baselines scored first (hiding the user's purchases, as the discovery list does)."""


def parse_variant(spec: str) -> Variant:
    v = Variant(spec)
    for part in spec.split("+"):
        if part == "base":
            continue
        if part == "sar":
            v = replace(v, extra=(*v.extra, "hist_sar", "seed_sar"))
        elif part == "sarcand":
            v = replace(v, sar_candidates=50)
        elif m := re.fullmatch(r"cuts(\d+)", part):
            v = replace(v, cuts=int(m.group(1)))
        elif m := re.fullmatch(r"leaves(\d+)", part):
            v = replace(v, params=(*v.params, ("num_leaves", int(m.group(1)))))
        elif m := re.fullmatch(r"minchild(\d+)", part):
            v = replace(v, params=(*v.params, ("min_child_samples", int(m.group(1)))))
        elif part == "binary":
            v = replace(v, params=(*v.params, ("objective", "binary")))
        elif part in PLUGINS:
            v = replace(v, extra=(*v.extra, *PLUGINS[part]))
        elif m := re.fullmatch(r"mix(\d+)", part):
            v = replace(v, mix=int(m.group(1)))
        elif m := re.fullmatch(r"cap(\d+)", part):
            v = replace(v, cap=int(m.group(1)))
        elif m := re.fullmatch(r"trees(\d+)", part):
            v = replace(v, trees=int(m.group(1)))
        elif part == "mono":
            v = replace(v, mono=True)
        elif m := re.fullmatch(r"seed(\d+)", part):
            v = replace(v, seed=int(m.group(1)))
        elif m := re.fullmatch(r"bag(\d+)", part):
            v = replace(v, bag=int(m.group(1)))
        elif m := re.fullmatch(r"maxq(\d+)", part):
            v = replace(v, max_queries=int(m.group(1)))
        elif m := re.fullmatch(r"cv(\d*)", part):
            v = replace(v, cv=int(m.group(1) or 5))
        elif m := re.fullmatch(r"ff([0-9.]+)", part):
            v = replace(v, params=(*v.params, ("feature_fraction", float(m.group(1)))))
        elif m := re.fullmatch(r"l2([0-9.]+)", part):
            v = replace(v, params=(*v.params, ("lambda_l2", float(m.group(1)))))
        elif m := re.fullmatch(r"lr([0-9.]+)", part):
            v = replace(v, params=(*v.params, ("learning_rate", float(m.group(1)))))
        else:
            raise SystemExit(f"unknown variant part {part!r}")
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", choices=("time", "leave_last"), default="time")
    ap.add_argument("--config", default=None)
    ap.add_argument("--variants", default="base")
    ap.add_argument("--max-queries", type=int, default=30_000)
    ap.add_argument(
        "--save-hits",
        default=None,
        help="write each system's per-query explore hits to this .npz (bench/paired_runs.py "
        "compares two runs, e.g. under two --config files, on the same queries)",
    )
    ap.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="run each variant under this many consecutive seeds (from the variant's seedN or "
        "the config's): each seed's row, then the mean, paired against the first variant "
        "(per-query hits averaged over the seeds; a single model's interval resamples the "
        "queries, not the fit, and understates the uncertainty)",
    )
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    t0 = time.perf_counter()
    variants = [parse_variant(s) for s in args.variants.split(",")]
    config = load_config(args.config) if args.config else config_from_dict({})
    # the variants set the SAR features, candidates and windows themselves
    rc0 = config.ranker.model_copy(
        update={"label_split": args.split, "discover": True, "discover_sar": 0}
    )
    share = rc0.label_share
    ds, val, queries = validation_window(args.data, args.split, share, args.max_queries)
    print(f"{ds.name}: validation window {len(queries):,} queries", flush=True)
    engine = Engine.build(val.train, config)
    emb = embed_items(val.train)
    fill = engine.mixer.sources[engine.mixer.fallback]
    rows: list[tuple[str, dict[str, Any], str]] = []
    # per query with a target new to its user: explore hit@10 (paired intervals below)
    explore = _explore_mask(val.train, queries)
    new_targets = queries.targets.select(explore)
    has_new = new_targets.sizes() > 0
    hits: dict[str, Any] = {}

    def versus(ref: str | None, name: str) -> str:
        """``name`` - ``ref`` on the same queries, with its paired 95% interval."""
        if ref is None or ref == name:
            return ""
        d = paired_difference(hits[ref], hits[name], queries.basket[has_new], n_boot=1000)
        return f"{d['diff']:+.4f} ({d['low']:+.4f}..{d['high']:+.4f})"

    def judge(system: Any, note: str = "", ref: str | None = None) -> None:
        recs, own = recommendations(system, queries)
        m = evaluate(system, val, queries, recs, own)[0]["item"]
        h = per_query(hit_matrix(recs, new_targets), new_targets.sizes(), 10)["hit"]
        hits[system.name] = h[has_new]
        if ref is None:
            ref = next((n for n in hits if n not in BASELINES), None)
        rows.append((system.name, m, note))
        print(
            f"| {system.name} | {m['explore_hit@10']:.4f} | {versus(ref, system.name)} "
            f"| {m['hit@10']:.4f} | {note} |",
            flush=True,
        )

    print(
        "| system | explore_hit@10 | vs the first variant (95% CI) | hit@10 | note |\n"
        "|---|---:|---:|---:|---|",
        flush=True,
    )
    for name, sysm in (
        ("popular/new", popular_system(val.train, half_life_days=0.0)),
        (
            "sar_personal/new",
            sar_personal_system(val.train, similarity="jaccard", threshold=3, half_life_days=0.0),
        ),
        # the two minimum supports the fair protocol chose on the test runs
        ("association_rules(1)/new", association_rules_system(val.train, min_support=1)),
        ("association_rules(2)/new", association_rules_system(val.train, min_support=2)),
    ):
        judge(hide_bought(with_fill(sysm, fill), val.train, name))

    # the discovery model's own windows inside val.train: cut c = the c-th last label window
    fit_parts: dict[int, Any] = {}
    labels: dict[int, Any] = {}
    rest = val.train
    for c in range(1, max(v.cuts for v in variants) + 1):
        inner = cut(rest, args.split, share)
        fit_parts[c], labels[c] = inner.train, inner.test
        rest = inner.train
    mixers: dict[int, Mixer] = {}
    spaces: dict[tuple[int, tuple[str, ...]], Any] = {}

    def space(c: int, extra: tuple[str, ...]) -> Any:
        if (c, extra) not in spaces:
            if c not in mixers:
                mixers[c] = Mixer.fit(fit_parts[c], config)
            spaces[(c, extra)] = fit_features(
                fit_parts[c],
                mixers[c],
                embeddings=emb,
                user_candidates=rc0.user_candidates,
                extra_features=extra,
            )
        return spaces[(c, extra)]

    served_spaces: dict[tuple[str, ...], Any] = {}
    base_params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "num_leaves": rc0.num_leaves,
        "learning_rate": rc0.learning_rate,
        "min_child_samples": rc0.min_child_samples,
        "feature_fraction": rc0.feature_fraction,
        "bagging_fraction": rc0.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": rc0.lambda_l2,
        "seed": rc0.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
        "verbosity": -1,
    }

    labelled: dict[tuple[Any, ...], Any] = {}  # the current label set, by window and draw

    def label(
        c: int, extra: tuple[str, ...], q: Any, idx: Any, width: int, n_hist: int, n_sar: int
    ) -> Any:
        """The label queries ``idx`` of ``q`` (window ``c``) as :func:`labelled_queries` labels
        them; a draw labelled once while :func:`share_labels` keeps the set."""
        key = (c, extra, width, n_hist, n_sar, idx.tobytes())
        if key not in labelled:
            feats = space(c, extra)  # fits mixers[c] too
            labelled[key] = labelled_queries(
                mixers[c], feats, q.take(idx), width, discover=n_hist, n_sar=n_sar
            )
        return labelled[key]

    def fit_one(v: Variant, seed: int) -> tuple[Any, dict[str, Any], Any]:
        """The discovery models of variant ``v`` under ``seed``: boosters, metrics, config."""
        rng = np.random.default_rng(seed)
        valid_user = rng.random(val.train.n_users) < rc0.valid_share
        parts_t, parts_v = [], []
        width = v.mix or rc0.candidates
        for c in range(1, v.cuts + 1):
            q = basket_queries(labels[c])
            if args.split == "leave_last":
                is_valid = valid_user[q.user]
            else:
                t_valid = np.quantile(labels[c].baskets.timestamp, 1 - rc0.valid_share)
                is_valid = (labels[c].baskets.timestamp[q.basket] >= t_valid) & (c == 1)
            it, iv = np.flatnonzero(~is_valid), np.flatnonzero(is_valid)
            max_q = v.max_queries or rc0.max_queries
            cap_t = int(max_q * (1 - rc0.valid_share))
            cap_v = max_q - cap_t
            rng_c = np.random.default_rng(seed + c)
            if len(it) > cap_t:
                it = np.sort(rng_c.choice(it, cap_t, replace=False))
            if len(iv) > cap_v:
                iv = np.sort(rng_c.choice(iv, cap_v, replace=False))
            n_hist, n_sar = rc0.discover_candidates, v.sar_candidates
            parts_t.append(label(c, v.extra, q, it, width, n_hist, n_sar))
            if c == 1 or args.split == "leave_last":
                parts_v.append(label(c, v.extra, q, iv, width, n_hist, n_sar))
        tr = tuple(np.concatenate([p[i] for p in parts_t]) for i in range(4))
        va = tuple(np.concatenate([p[i] for p in parts_v]) for i in range(4))
        params = {**base_params, "seed": seed, **dict(v.params)}
        feats1 = space(1, v.extra)
        if v.mono:
            params["monotone_constraints"] = [int(n in DISCOVER_MONOTONE) for n in feats1.names]
            params["monotone_constraints_method"] = "intermediate"
        rc = rc0.model_copy(
            update={"extra_features": v.extra, "discover_sar": v.sar_candidates, "seed": seed}
        )
        if v.cap:
            rc = rc.model_copy(update={"discover_n_estimators": v.cap})
        if v.mix:
            rc = rc.model_copy(update={"discover_mix_candidates": v.mix})
        if v.trees:
            rc = rc.model_copy(update={"n_estimators": v.trees, "discover_n_estimators": v.trees})
            va = tuple(a[:0] for a in va)
        if v.cv:
            rc = rc.model_copy(update={"discover_rounds": "cv", "discover_folds": v.cv})
        rc = rc.model_copy(update={"discover_models": v.bag})
        boosters, metrics = fit_discovery(
            tr, va, params, rc, feats1.names, val.train.n_users, show_progress=False
        )
        return boosters, metrics, rc

    def run(v: Variant, seed: int, name: str, ref: str | None) -> None:
        """Fit ``v`` under ``seed`` and judge it as the system ``name``."""
        t1 = time.perf_counter()
        boosters, metrics, rc = fit_one(v, seed)
        if v.extra not in served_spaces:
            served_spaces[v.extra] = fit_features(
                val.train,
                engine.mixer,
                embeddings=emb,
                user_candidates=rc0.user_candidates,
                extra_features=v.extra,
            )
        ranker = Ranker(
            boosters[0],
            served_spaces[v.extra],
            rc,
            val.train.users,
            metrics,
            boosters[0],
            tuple(boosters[1:]),
        )
        system = ranked_system(engine.with_ranker(ranker).for_mode("discover"), name)
        trees = "+".join(str(m["trees"]) for m in metrics.get("members", [metrics]))
        note = (
            f"{metrics['train_queries']} label queries, {trees} trees, "
            f"{time.perf_counter() - t1:.0f} s"
        )
        judge(system, note, ref)

    labels_now: tuple[Any, ...] = ()

    def share_labels(v: Variant) -> None:
        """Keep the labelled queries while consecutive variants differ only in LightGBM's
        parameters or the bag (one label set in memory at a time)."""
        nonlocal labels_now
        labels_of = (v.extra, v.sar_candidates, v.cuts, v.mix, v.max_queries, v.seed)
        if labels_of != labels_now:
            labelled.clear()
            labels_now = labels_of

    # bagged models take seeds seed .. seed + bag - 1: the next seed starts after them
    step = max(v.bag for v in variants)

    def seed_of(v: Variant, k: int) -> int:
        return (rc0.seed if v.seed is None else v.seed) + k * step

    if args.seeds == 1:
        for v in variants:
            share_labels(v)
            run(v, seed_of(v, 0), v.name, None)
    else:
        # every variant under seed k before any under seed k + 1 (each seed draws its own
        # label queries), each paired with the first variant under the same seed (the same
        # validation users, folds and sampling draws); then each variant's mean
        first = variants[0]
        names = {
            v.name: [f"{v.name} @{seed_of(v, k)}" for k in range(args.seeds)] for v in variants
        }
        for k in range(args.seeds):
            labels_now = ()
            for v in variants:
                share_labels(v)
                ref = names[first.name][k] if v is not first else None
                run(v, seed_of(v, k), names[v.name][k], ref)
        for v in variants:
            hits[v.name] = np.mean([hits[n] for n in names[v.name]], axis=0)
        for v in variants:
            note, ref = "", None
            if v is not first:
                ref = first.name
                pairs = zip(names[v.name], names[first.name], strict=True)
                per_seed = [float(np.mean(hits[n]) - np.mean(hits[r])) for n, r in pairs]
                note = "per seed " + ", ".join(f"{d:+.4f}" for d in per_seed)
            sc = [float(np.mean(hits[n])) for n in names[v.name]]  # each seed's score
            print(
                f"| **{v.name}, mean of {args.seeds} seeds** | {np.mean(sc):.4f} "
                f"(range {min(sc):.4f}-{max(sc):.4f}) | {versus(ref, v.name)} | | {note} |",
                flush=True,
            )
        for v in variants:  # the saved file keeps the means, not every seed
            for n in names[v.name]:
                del hits[n]
    if args.save_hits:
        save_hits(args.save_hits, hits, queries.basket[has_new])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"seconds: {time.perf_counter() - t0:.0f}, peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
