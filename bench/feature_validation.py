"""Ranker features on the validation window: ``mix+ranker`` Hit@10 with and without them.

The test window is cut off and thrown away (as ``bench/discovery_variants.py`` does); the
training part is split again the way the test was cut (each user's last training basket for
leave-last, the last 20% of training baskets for a time split): that *validation* window
scores every variant. The engine (mix) and the text embeddings are built once on the part
before it; each variant trains the ranker exactly as ``train_ranker`` does (its own fit /
label windows inside that part) with ``extra_features`` set to the variant's features, and
is served as ``recset backtest`` serves ``mix+ranker``. Every variant is compared with the
first one on the same queries (paired 95% bootstrap interval, queries of one basket
resampled together), and ``user_repeat`` (the best plain baseline on the grocery data)
is shown for reference.

    python bench/feature_validation.py --data /work/rd/instacart --split leave_last \\
        --variants base,user_cand_due

Variants are comma-separated; ``base`` is the default feature space (it reads the bundle
features ``user_seed_cand_share`` / ``user_seed_trips`` and ``cand_time_lift``, since
2026-12-03, and on data with a promotion calendar the calendar features; ``--config`` with
``[ranker] promotion_features = false`` / ``bundle_features = false`` / ``time_features =
false`` leaves them out), any other is a ``+``-joined list
of opt-in features; a part ``capN`` sets the ranker's ``n_estimators`` to N (the most trees
its early stopping may keep), e.g. ``base+cap1000``. ``--discover`` trains the rankers as
``recset backtest`` does (with the discovery model, whose ``hist_sar`` / ``seed_sar`` the
main ranker then reads too); without it the rankers train without the discovery model
(faster).

Never choose on the test window: report test figures only from ``recset backtest``.
"""

from __future__ import annotations

import argparse
import re
import resource
import time
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", choices=("time", "leave_last"), default="time")
    ap.add_argument("--config", default=None)
    ap.add_argument("--variants", default="base")
    ap.add_argument("--max-queries", type=int, default=30_000)
    ap.add_argument("--discover", action="store_true")
    ap.add_argument(
        "--save-hits",
        default=None,
        help="write each variant's per-query Hit@10 to this .npz (bench/paired_runs.py "
        "compares two runs, e.g. under two --config files, on the same queries)",
    )
    args = ap.parse_args()

    from _windows import save_hits, validation_window  # bench/_windows.py

    from recset.config import config_from_dict, load_config
    from recset.engine import Engine
    from recset.eval._result import paired_difference
    from recset.eval.backtest import evaluate, ranked_system, recommendations
    from recset.eval.baselines import user_repeat_system, with_fill
    from recset.ranking import train_ranker
    from recset.recall import embed_items

    t0 = time.perf_counter()
    config = load_config(args.config) if args.config else config_from_dict({})
    rc0 = config.ranker.model_copy(update={"label_split": args.split, "discover": args.discover})
    ds, val, queries = validation_window(args.data, args.split, rc0.label_share, args.max_queries)
    print(f"{ds.name}: validation window {len(queries):,} queries", flush=True)
    engine = Engine.build(val.train, config)
    emb = embed_items(val.train)
    fill = engine.mixer.sources[engine.mixer.fallback]
    hits: dict[str, Any] = {}
    first: str | None = None
    print(
        "| system | hit@10 | hit@1 | vs the first variant (95% CI) | note |\n"
        "|---|---:|---:|---:|---|",
        flush=True,
    )

    def judge(system: Any, note: str, paired: bool) -> None:
        nonlocal first
        recs, own = recommendations(system, queries)
        m, hit10 = evaluate(system, val, queries, recs, own)
        m = m["item"]
        diff = ""
        if paired:
            hits[system.name] = hit10
            first = first or system.name
            if first != system.name:
                d = paired_difference(hits[first], hit10, queries.basket, n_boot=1000)
                diff = f"{d['diff']:+.4f} ({d['low']:+.4f}..{d['high']:+.4f})"
        print(f"| {system.name} | {m['hit@10']:.4f} | {m['hit@1']:.4f} | {diff} | {note} |")

    judge(with_fill(user_repeat_system(val.train), fill), "baseline", paired=False)
    for name in args.variants.split(","):
        parts = name.split("+")
        caps = [p for p in parts if re.fullmatch(r"cap\d+", p)]
        extra = tuple(p for p in parts if p != "base" and p not in caps)
        rc = rc0.model_copy(update={"extra_features": extra})
        if caps:
            rc = rc.model_copy(update={"n_estimators": int(caps[-1][3:])})
        t1 = time.perf_counter()
        ranker = train_ranker(val.train, config, rc, mixer=engine.mixer, embeddings=emb)
        m = ranker.metrics
        note = (
            f"{m['trees']} trees, label-window valid NDCG@10 {m['valid_ndcg@10']:.4f}, "
            f"{time.perf_counter() - t1:.0f} s"
        )
        judge(ranked_system(engine.with_ranker(ranker), name), note, paired=True)
    if args.save_hits:
        save_hits(args.save_hits, hits, queries.basket)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"seconds: {time.perf_counter() - t0:.0f}, peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
