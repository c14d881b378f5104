"""Training of the affinity head: a user's history against the candidates of a basket.

Each training row is an item bought in a basket, with the user's purchases strictly before
that basket as the history. It is scored against sampled competitors drawn the way served
lists are made: the strongest co-purchases of another item of the basket (the seed), items
of the user's own history (so the copy term learns how often a past purchase comes back
rather than that it always does) and popular items. A softmax over (bought, competitors)
is minimised; competitors that were bought in the same basket are left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from tqdm.auto import tqdm

from recset.data import Dataset
from recset.personalization._config import NeuralConfig
from recset.personalization._data import Purchases, Triples
from recset.personalization._modules import AffinityHead
from recset.signals import Signals, topk_rows

_log = logging.getLogger(__name__)


def _in_sorted(keys: NDArray[np.int64], values: NDArray[np.int64]) -> NDArray[np.bool_]:
    if not len(keys):
        return np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return keys[pos] == values


def _base_features(
    pool: NDArray[np.int32],
    pool_log: NDArray[np.float32],
    purchases_log: NDArray[np.float64],
    cand: NDArray[np.int64],
) -> NDArray[np.float32]:
    """(B, N, 2): log(1 + co-purchases with the seed) (0 outside the seed's pool) and
    log(1 + purchases) of each candidate (0 at padding)."""
    match = pool[:, None, :] == cand[:, :, None]
    co = np.where(match, pool_log[:, None, :], 0.0).sum(axis=-1)
    pop = np.where(cand >= 0, purchases_log[np.maximum(cand, 0)], 0.0)
    return np.stack([co, pop], axis=-1).astype(np.float32)


def fit_affinity(
    dataset: Dataset,
    signals: Signals,
    features: NDArray[np.float32],
    cfg: NeuralConfig,
    device: torch.device,
    show_progress: bool = False,
    on_epoch: Callable[[int, AffinityHead], None] | None = None,
) -> tuple[AffinityHead | None, dict[str, Any]]:
    """Train an :class:`AffinityHead` on ``dataset``; ``(None, stats)`` without any row
    (no basket of two items by a user with earlier purchases). ``on_epoch(epoch, head)`` is
    called after each epoch with the head in eval mode (for learning curves)."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed + 1)
    n = dataset.n_items
    h = cfg.affinity_history
    purchases = Purchases.of(dataset)
    triples = Triples.of(dataset, limit=cfg.max_triples)
    hist, length = purchases.last(triples.basket_user, triples.basket_time, h)
    keep = np.flatnonzero(length[triples.group] > 0)
    # both directions of each pair: either item can be the one a list is asked for
    seed = np.concatenate([triples.seed[keep], triples.positive[keep]])
    target = np.concatenate([triples.positive[keep], triples.seed[keep]])
    group = np.concatenate([triples.group[keep], triples.group[keep]])
    stats: dict[str, Any] = {"affinity_rows": int(len(seed))}
    if not len(seed):
        return None, stats
    in_basket = np.unique(group * n + target)
    pool, pool_value = topk_rows(signals.co_purchase.tocsr(), cfg.affinity_pool, min_value=1e-12)
    pool_log = np.log1p(np.maximum(pool_value, 0.0)).astype(np.float32)
    purchases_log = np.log1p(np.asarray(signals.item_purchases, dtype=np.float64))
    pop = np.asarray(signals.item_purchases, dtype=np.float64) ** 0.75 + 1e-9
    cum = np.cumsum(pop / pop.sum())
    k = cfg.affinity_negatives
    n_pool, n_hist = (3 * k) // 8, (5 * k) // 16

    def popular(shape: tuple[int, ...]) -> NDArray[np.int64]:
        return np.minimum(np.searchsorted(cum, rng.random(shape)), n - 1).astype(np.int64)

    head = AffinityHead(torch.as_tensor(features, device=device), cfg, h).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.affinity_learning_rate)
    head.train()
    losses: list[float] = []
    for _epoch in tqdm(
        range(cfg.affinity_epochs), desc="neural: affinity", disable=not show_progress
    ):
        total, steps = 0.0, 0
        order = rng.permutation(len(seed))
        for lo in range(0, len(order), cfg.affinity_batch_size):
            rows = order[lo : lo + cfg.affinity_batch_size]
            g = group[rows]
            b = len(rows)
            neg = popular((b, k))
            col = rng.integers(0, cfg.affinity_pool, size=(b, n_pool))
            from_pool = pool[seed[rows][:, None], col].astype(np.int64)
            neg[:, :n_pool] = np.where(from_pool >= 0, from_pool, neg[:, :n_pool])
            at = (rng.random((b, n_hist)) * length[g][:, None]).astype(np.int64)
            neg[:, n_pool : n_pool + n_hist] = hist[g[:, None], at]
            # a competitor bought in the same basket is no competitor
            neg = np.where(_in_sorted(in_basket, g[:, None] * n + neg), -1, neg)
            cand = np.concatenate([target[rows][:, None], neg], axis=1)
            base = _base_features(pool[seed[rows]], pool_log[seed[rows]], purchases_log, cand)
            opt.zero_grad(set_to_none=True)
            scores = head(
                torch.as_tensor(hist[g], device=device),
                torch.as_tensor(length[g], device=device),
                torch.as_tensor(cand, device=device),
                torch.as_tensor(base, device=device),
            )
            loss = F.cross_entropy(scores, torch.zeros(b, dtype=torch.long, device=device))
            loss.backward()
            opt.step()
            total += float(loss.detach())
            steps += 1
        losses.append(total / max(steps, 1))
        _log.debug("neural affinity epoch %d: loss %.4f", _epoch, losses[-1])
        if on_epoch is not None:
            head.eval()
            on_epoch(_epoch, head)
            head.train()
    head.eval()
    stats["affinity_loss"] = losses
    stats["affinity_seconds"] = time.perf_counter() - t0
    return head, stats
