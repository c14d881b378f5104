"""The affinity head on the validation window, epoch by epoch and part by part.

Cuts the validation window from the training part the way ``validate_personalization``
does (never the test window), serves its basket queries (at most 10,000, seed 0) with the
ranker *without* personal features (top 100), trains the affinity head on the part before
the window and, after every epoch, prints the Hit@10 of the lists re-ranked at several blend
weights by: the whole head (z-score blend, as served; and a rank blend), its taste and
attention terms alone, and its repeat term alone; plus the user's purchase count of the
candidate as a one-feature reference.

    .venv/bin/python bench/affinity_validation.py --data .demo/data
    .venv/bin/python bench/affinity_validation.py --data D --config '{"affinity_epochs": 3}'
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from recset.data import load_dataset
from recset.engine import Engine
from recset.eval.backtest import (
    CHUNK,
    VALIDATION_QUERIES,
    _validation_cut,
    basket_queries,
    prepare,
)
from recset.personalization import NeuralConfig
from recset.personalization._affinity import fit_affinity
from recset.personalization._data import Purchases
from recset.personalization._model import _row_percentile, _row_zscore
from recset.personalization._modules import AffinityHead, repeat_features
from recset.personalization._validate import _hit_rate
from recset.pipeline import Request
from recset.ranking import RankerConfig, train_ranker
from recset.recall import TextEmbeddingConfig, embed_items
from recset.signals import Signals

WIDTH = 100


def parts(head: AffinityHead, hist, length, cand):  # noqa: ANN001, ANN201
    """(taste + attention, repeat) terms of the head's personal score."""
    taste, attend, rep = head.terms(hist, length, cand)
    return (taste + attend).numpy(), rep.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", choices=("time", "leave_last"), default="time")
    ap.add_argument("--config", default="{}", help="NeuralConfig overrides as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = NeuralConfig(**json.loads(args.config))
    ds = load_dataset(args.data)
    train = prepare(ds, split=args.split).split.train
    rc = RankerConfig(label_split=args.split).model_copy(
        update={"personal_features": False, "discover": False}
    )
    cut = _validation_cut(train, rc)
    t0 = time.perf_counter()
    engine = Engine.build(cut.train)
    ranker = train_ranker(cut.train, None, rc, mixer=engine.mixer, embeddings=embed_items(train))
    q = basket_queries(cut.test)
    if len(q) > VALIDATION_QUERIES:
        rows = np.random.default_rng(0).choice(len(q), size=VALIDATION_QUERIES, replace=False)
        q = q.take(np.sort(rows))
    ranked = engine.with_ranker(ranker)
    items_l, base_l = [], []
    for lo in range(0, len(q), CHUNK):
        b = ranked.run_pipeline(Request.of(q.seed[lo : lo + CHUNK], q.user[lo : lo + CHUNK], WIDTH))
        items_l.append(b.item)
        base_l.append(np.where(b.item >= 0, b.score, -np.inf))
    items, base = np.concatenate(items_l), np.concatenate(base_l)
    print(f"ranker lists for {len(q):,} validation queries in {time.perf_counter() - t0:.0f} s")
    valid = items >= 0
    hist, length = Purchases.of(cut.train).last(q.user, None, cfg.affinity_history)
    known = length > 0
    zb = _row_zscore(np.where(valid, base, 0.0), valid)
    pb = _row_percentile(base, valid)

    def hit(score):  # noqa: ANN001, ANN202
        return _hit_rate(items, np.where(valid, score, -np.inf), q.targets, 10)

    def zblend(pers, weights):  # noqa: ANN001, ANN202
        zp = _row_zscore(np.nan_to_num(pers), valid)
        return {
            w: round(hit((1 - w) * zb + w * np.where(known[:, None], zp, zb)), 4) for w in weights
        }

    print(f"ranker alone: Hit@10 {hit(base):.4f}")
    count = repeat_features(
        torch.as_tensor(items.astype(np.int64)), torch.as_tensor(hist), torch.as_tensor(length)
    ).numpy()[..., 0]
    print("purchase count, z blend:", zblend(count, (0.2, 0.4, 0.6, 1.0)))

    def on_epoch(epoch: int, head: AffinityHead) -> None:
        ta = np.zeros(items.shape)
        rep = np.zeros(items.shape)
        rows = np.flatnonzero(known)
        with torch.no_grad():
            for lo in range(0, len(rows), 1000):
                r = rows[lo : lo + 1000]
                a, b = parts(
                    head,
                    torch.as_tensor(hist[r]),
                    torch.as_tensor(length[r]),
                    torch.as_tensor(np.maximum(items[r], 0).astype(np.int64)),
                )
                ta[r], rep[r] = a, b
        full = ta + rep
        pp = _row_percentile(np.where(valid, full, -np.inf), valid)
        rank = {
            w: round(hit((1 - w) * pb + w * np.where(known[:, None], pp, pb)), 4)
            for w in (0.1, 0.2, 0.3, 0.4, 0.5)
        }
        print(f"epoch {epoch}: head, z blend  ", zblend(full, (0.3, 0.4, 0.5, 0.6, 0.7)))
        print(f"epoch {epoch}: head, rank blend", rank)
        print(f"epoch {epoch}: taste+attention ", zblend(ta, (0.1, 0.2, 0.3)))
        print(f"epoch {epoch}: repeat term     ", zblend(rep, (0.3, 0.4, 0.5, 0.6)), flush=True)

    feats = embed_items(
        cut.train, TextEmbeddingConfig(embedding_size=cfg.text_embedding_size, seed=cfg.seed)
    )
    t0 = time.perf_counter()
    _, stats = fit_affinity(
        cut.train, Signals(cut.train), feats, cfg, torch.device("cpu"), on_epoch=on_epoch
    )
    print(
        f"trained in {time.perf_counter() - t0:.0f} s; held-out loss by epoch "
        f"{[round(x, 3) for x in stats['affinity_held_out_loss']]}, held-out lists MRR "
        f"{[round(x, 4) for x in stats['affinity_held_out_mrr']]}, kept epoch "
        f"{stats['affinity_best_epoch']}"
    )


if __name__ == "__main__":
    main()
