"""``bought_after``: planted next-trip purchases, hand-computed scores."""

import numpy as np
import pandas as pd
import pytest

from recset.data import Dataset
from recset.recall import get_recall
from recset.signals import Signals


def _ds(baskets: list[tuple[str, list[str]]]) -> Dataset:
    rows = []
    for o, (user, items) in enumerate(baskets):
        for j, it in enumerate(items):
            rows.append(
                {
                    "user_id": user,
                    "item_id": it,
                    "event": "purchase",
                    "timestamp": o * 1000 + j,
                    "order_id": f"o{o}",
                }
            )
    items = sorted({r["item_id"] for r in rows})
    cat = pd.DataFrame({"item_id": items, "category_id": ["c"] * len(items)})
    return Dataset.from_frames(cat, pd.DataFrame(rows))


def test_next_trip_counts_and_confidence() -> None:
    # u: {a, x} then {b} then {a} then {c}; v: {a} then {b, y}; w: {a} (no next trip)
    # baskets with a and a next trip: u1, u3, v1 (3); next trips hold b twice, c once, y once
    ds = _ds(
        [("u", ["a", "x"]), ("v", ["a"]), ("u", ["b"]), ("v", ["b", "y"]), ("u", ["a"])]
        + [("u", ["c"]), ("w", ["a"])]
    )
    src = get_recall("bought_after")().fit(ds, Signals(ds))
    got = src.recall_many(np.array([ds.items.index_one("a")], np.int32), 5)
    names = [ds.items.id_of(int(i)) for i in got.item[0] if i >= 0]
    assert names == ["b", "c", "y"]
    assert got.score[0, :3] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    # the last trip of a user leads nowhere; b's next trip is u's {a}
    got_b = src.recall_many(np.array([ds.items.index_one("b")], np.int32), 5)
    assert [ds.items.id_of(int(i)) for i in got_b.item[0] if i >= 0] == ["a"]
    # c is only on u's last trip: nothing follows it
    assert (src.recall_many(np.array([ds.items.index_one("c")], np.int32), 5).item == -1).all()
