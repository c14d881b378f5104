"""CPU and wall seconds of the baselines' validation grid (tune_baselines), per baseline.

    python bench/baseline_tuning_time.py /work/rd/instacart leave_last \
        sar,sar_lift,sar_personal,als,association_rules
    python bench/baseline_tuning_time.py /work/rd/cj time

CPU seconds (all threads of the process) say what the grid costs on a shared machine. Each
baseline is tuned in its own call, so the co-occurrence baselines do not share their matrix
across names here as they do in the backtest.
"""

from __future__ import annotations

import sys
import time

from recset.data import load_dataset
from recset.eval._tuning import tune_baselines
from recset.eval.backtest import prepare
from recset.eval.baselines import BASELINES
from recset.recall import PopularConfig, PopularRecall


def main() -> None:
    path, split = sys.argv[1], sys.argv[2]
    names = sys.argv[3].split(",") if len(sys.argv) > 3 else list(BASELINES)
    ds = load_dataset(path)
    train = prepare(ds, split=split, max_queries=30000).split.train  # type: ignore[arg-type]
    fill = PopularRecall(PopularConfig(scope="category")).fit(train)
    total = time.process_time()
    for name in names:
        t0, c0 = time.perf_counter(), time.process_time()
        tuned = tune_baselines(train, [name], split=split, fill=fill)[name]  # type: ignore[arg-type]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"{name}: wall {wall:.1f}s cpu {cpu:.1f}s best {tuned.params} "
            f"{tuned.score:.4f} ({len(tuned.tried)} combos)",
            flush=True,
        )
    print(f"total cpu {time.process_time() - total:.1f}s")


if __name__ == "__main__":
    main()
