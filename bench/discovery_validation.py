"""Discovery on the validation window: the discovery system against the baselines that hide
the user's purchases, scored without ever reading the test window.

The test window is cut off first (as ``recset backtest`` cuts it) and thrown away; the
backtest then runs on the training part alone, which cuts its own last window (each user's
last training basket for leave-last, the last 20% of training baskets for a time split). Use
it to choose the discovery model's candidates and features; report test figures only from
``recset backtest``.

    python bench/discovery_validation.py --data /work/rd/instacart --split leave_last
    python bench/discovery_validation.py --data /work/rd/demo
"""

from __future__ import annotations

import argparse
import time

from recset.config import load_config
from recset.data import leave_last_split, load_dataset, time_split
from recset.eval.backtest import run_backtest
from recset.ranking import _candidates

BASELINES = ("popular", "association_rules", "sar_personal")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", choices=("time", "leave_last"), default="time")
    ap.add_argument("--config", default=None, help="a config file (default: the default config)")
    ap.add_argument("--max-queries", type=int, default=30_000)
    ap.add_argument("--baselines", default=",".join(BASELINES))
    ap.add_argument(
        "--popular-candidates",
        type=int,
        default=None,
        help="override POPULAR_CANDIDATES (the popular items added to the discovery candidates)",
    )
    args = ap.parse_args()
    if args.popular_candidates is not None:
        _candidates.POPULAR_CANDIDATES = args.popular_candidates
    t0 = time.perf_counter()
    ds = load_dataset(args.data)
    train = (leave_last_split(ds) if args.split == "leave_last" else time_split(ds)).train
    config = load_config(args.config) if args.config else None
    result = run_backtest(
        train,
        config,
        split=args.split,
        max_queries=args.max_queries,
        baselines=[b for b in args.baselines.split(",") if b],
        ablations=False,
        explore_share=0.0,
        discover=True,
        n_boot=10,
        samples=0,
    )
    print(f"{ds.name} validation window: {result.queries:,} queries")
    print("| system | explore_hit@10 | hit@10 |")
    print("|---|---:|---:|")
    rows = sorted(result.systems.items(), key=lambda kv: -kv[1]["item"].get("explore_hit@10", 0.0))
    for name, m in rows:
        print(f"| {name} | {m['item']['explore_hit@10']:.4f} | {m['item']['hit@10']:.4f} |")
    print(f"seconds: {time.perf_counter() - t0:.0f}")


if __name__ == "__main__":
    main()
