"""The validation window the bench scripts choose on, cut as ``recset backtest`` cuts.

The test window is cut off (each user's last basket for ``leave_last``, the last 20% of
baskets for ``time``) and thrown away; the training part is cut again the same way (the last
``label_share`` of its baskets for ``time``), and that window's basket queries (at most
``max_queries``, sampled with seed 0) score the variants. Imported by the scripts next to it
(``python bench/NAME.py`` puts this directory on the path).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recset.data import basket_queries, leave_last_split, load_dataset, time_split


def cut(ds: Any, split: str, share: float) -> Any:
    """``ds`` split as the backtest splits it: ``leave_last`` or a time split at ``share``."""
    return leave_last_split(ds) if split == "leave_last" else time_split(ds, test_share=share)


def validation_window(
    data: str, split: str, label_share: float, max_queries: int
) -> tuple[Any, Any, Any]:
    """``(dataset, validation split, its queries)`` of the dataset directory ``data``."""
    ds = load_dataset(data)
    train = cut(ds, split, 0.2).train  # the test window is thrown away here
    val = cut(train, split, label_share)
    queries = basket_queries(val.test)
    if len(queries) > max_queries:
        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(len(queries), max_queries, replace=False))
        queries = queries.take(pick)
    return ds, val, queries


def save_hits(path: str, hits: dict[str, Any], basket: Any) -> None:
    """Write each system's per-query hits (0/1, the same queries in the same order) and the
    queries' baskets to the ``.npz`` ``path`` (through a temporary name, then renamed), for
    ``bench/paired_runs.py``."""
    import os
    from pathlib import Path

    names = list(hits)
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(
        tmp,
        names=np.array(names, dtype=str),
        hits=np.stack([np.asarray(hits[n], dtype=np.float64) for n in names]),
        basket=np.asarray(basket),
    )
    os.replace(tmp, out)
