"""``tune_mixes`` on planted data: a category whose default mix is wrong gets a better one,
a category whose default is already right keeps it; the TOML reads back as a config."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest

from recset.config import config_from_dict, load_config
from recset.data import Dataset
from recset.eval.tune import tune_mixes, tuned_toml

# the base mix trusts popularity three times more than co-purchases
BASE_TOML = """
[mix]
sources = ["co_purchase", "popular"]
weights = { popular = 3.0 }

[sources.popular]
scope = "category"
"""
BASE = tomllib.loads(BASE_TOML)


def _planted(seed: int = 0) -> Dataset:
    """Two top-level categories with their own buyers.

    In "Alpha", item i is bought with items i+1 and i+2 (co-purchases are the truth; all
    items are equally popular, so popularity is noise). In "Beta", item j was bought with
    j+1..j+6 in the first 60% of the time, then with one of a few new best sellers: its
    co-purchases went stale and popularity is the truth (the popularity-heavy default fits).
    """
    rng = np.random.default_rng(seed)
    n = 60
    items = [f"a{i:02d}" for i in range(n)] + [f"b{i:02d}" for i in range(n)]
    paths = ["Alpha > Things"] * n + ["Beta > Stuff"] * n
    catalog = pd.DataFrame(
        {"item_id": items, "title": items, "category_id": paths, "category_path": paths}
    )
    rows, t = [], 0
    for b in range(5000):
        alpha = b % 2 == 0
        user = f"u{rng.integers(0, 150) + (0 if alpha else 150)}"
        if alpha:
            i = int(rng.integers(0, n))
            basket = [f"a{i:02d}", f"a{(i + 1) % n:02d}", f"a{(i + 2) % n:02d}"]
        elif b < 3000:
            j = int(rng.integers(0, n))
            basket = [f"b{(j + d) % n:02d}" for d in range(7)]
        else:
            best = int(min(rng.geometric(0.25) - 1, n - 1))
            other = int(rng.integers(5, n))
            basket = [f"b{other:02d}", f"b{best:02d}"]
        for it in basket:
            t += 1
            rows.append((user, it, "purchase", t, f"o{b}"))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp", "order_id"])
    return Dataset.from_frames(catalog, events)


@pytest.fixture(scope="module")
def tuned():  # noqa: ANN201
    ds = _planted()
    base = config_from_dict(BASE)
    return base, tune_mixes(ds, base, min_queries=100, n_boot=200)


def test_tune_recovers_the_planted_mix(tuned) -> None:  # noqa: ANN001
    base, result = tuned
    by_key = {g.key: g for g in result.groups}
    assert set(by_key) == {"Alpha", "Beta"}
    alpha, beta = by_key["Alpha"], by_key["Beta"]
    assert alpha.accepted, alpha.reason
    assert alpha.tuned_hit > alpha.default_hit + 0.1 and alpha.gain["low"] > 0
    mix = alpha.mix
    # co-purchases now count for more than popularity (or popularity is gone)
    trust = mix.weight("co_purchase") / mix.weight("popular")
    assert "popular" not in mix.sources or trust > 1 / 3
    # Beta: the stale co-purchases count for less than before (or go), popularity stays
    assert beta.accepted, beta.reason
    b = beta.mix
    assert "popular" in b.sources and beta.tuned_hit > beta.default_hit
    assert "co_purchase" not in b.sources or b.weight("co_purchase") / b.weight("popular") < 1 / 3


def test_tuned_toml_reads_back(tuned, tmp_path) -> None:  # noqa: ANN001
    base, result = tuned
    result.base_text = BASE_TOML
    text = tuned_toml(result, base.mix)
    assert "validation item Hit@10" in text
    path = tmp_path / "tuned.toml"
    path.write_text(text)
    cfg = load_config(path)
    assert list(cfg.categories) == [g.key for g in result.accepted]
    for g in result.accepted:
        assert cfg.mixes()[g.key] == g.mix


def test_the_test_window_is_never_read(tuned) -> None:  # noqa: ANN001
    base, result = tuned
    ds = _planted()
    # the same data without its last 20% of baskets (the backtest's test window) tunes the same
    cut = ds.with_events(ds.events.timestamp < ds.order_time_quantile(0.8))
    end = int(cut.events.timestamp.max()) + 1
    again = tune_mixes(cut, base, t=end, min_queries=100, n_boot=200)
    assert [(g.key, g.mix, g.accepted) for g in again.groups] == [
        (g.key, g.mix, g.accepted) for g in result.groups
    ]
