"""Training of the affinity head: a user's history against the candidates of a basket.

Each training row is an item bought in a basket, with the user's purchases strictly before
that basket as the history. It is scored against sampled competitors drawn the way served
lists are made: the strongest co-purchases of another item of the basket (the seed), items
of the user's own history (so the copy term learns how often a past purchase comes back
rather than that it always does) and popular items. A softmax over (bought, competitors),
corrected by the log of each competitor's sampling probability, is minimised; competitors
that were bought in the same basket are left out. The newest baskets are held out to stop
training where re-ranking them stops improving.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from tqdm.auto import tqdm

from recset.data import Dataset, decode_aspects
from recset.personalization._config import NeuralConfig
from recset.personalization._data import Purchases, Triples
from recset.personalization._modules import AffinityHead
from recset.signals import Signals, topk_rows

_log = logging.getLogger(__name__)

MAX_ASPECT_ATTRIBUTES = 4
"""Categorical aspects (the most common keys) the affinity head reads as attributes."""
MIN_ASPECT_SHARE = 0.05
"""An aspect key becomes an attribute when at least this share of the items has it."""
_MIN_HELD_OUT = 200
"""Fewer held-out (or training) rows than this: no early stopping, every epoch is trained."""
_MAX_HELD_OUT = 20_000
_PATIENCE = 2
"""Epochs without a better held-out MRR before training stops (the best epoch is kept)."""
_HELD_OUT_GRID = (0.25, 0.5, 0.75)
"""Blend weights of the held-out lists; an epoch scores the best of them."""
_MAX_HELD_OUT_LISTS = 5000


def item_attributes(dataset: Dataset) -> NDArray[np.int64]:
    """(n_items, A) value ids (-1 unknown) of the catalog's category, product type and
    brand, then of its most common categorical aspects (colour, size, ...: at most
    :data:`MAX_ASPECT_ATTRIBUTES` keys, each with a scalar value on at least
    :data:`MIN_ASPECT_SHARE` of the items and a value shared by two items); an attribute no
    item has is left out."""
    cat = dataset.catalog
    cols = [a.astype(np.int64) for a in (cat.category, cat.product_type, cat.brand)]
    cols = [a for a in cols if (a >= 0).any()]
    cols += _aspect_columns(cat.aspects)
    if not cols:
        return np.zeros((dataset.n_items, 0), dtype=np.int64)
    return np.stack(cols, axis=1)


def _aspect_columns(aspects: NDArray[np.object_]) -> list[NDArray[np.int64]]:
    decoded = [decode_aspects(raw) for raw in aspects]
    keys = Counter(
        k for d in decoded for k, v in d.items() if v is not None and not isinstance(v, list | dict)
    )
    n = max(len(decoded), 1)
    common = sorted(
        (k for k, c in keys.items() if c >= MIN_ASPECT_SHARE * n), key=lambda k: (-keys[k], k)
    )
    out = []
    for key in common[:MAX_ASPECT_ATTRIBUTES]:
        values = [d.get(key) for d in decoded]
        text = [None if v is None or isinstance(v, list | dict) else str(v) for v in values]
        counts = Counter(t for t in text if t is not None)
        vocab = {t: j for j, t in enumerate(sorted(t for t, c in counts.items() if c >= 2))}
        if vocab:
            out.append(np.array([vocab.get(t, -1) if t is not None else -1 for t in text]))
    return out


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


def _row_zscore(values: NDArray[np.float64], mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """``(v - mean) / std`` within each row's masked-in values; 0 outside the mask and in
    rows whose masked values are all equal."""
    n = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    v = np.where(mask, values, 0.0)
    mean = v.sum(axis=1, keepdims=True) / n
    dev = np.where(mask, values - mean, 0.0)
    std = np.sqrt((dev * dev).sum(axis=1, keepdims=True) / n)
    return np.where(mask & (std > 0), dev / np.where(std > 0, std, 1.0), 0.0)


@dataclass(frozen=True)
class _HeldOutLists:
    """The held-out baskets as the stage meets them: a list of the seed's strongest
    co-purchases (base score: log co-purchases), re-ordered by a z-score blend with the head.

    Each basket of the held-out rows (at most :data:`_MAX_HELD_OUT_LISTS`) gives one list,
    the seed being one of its items and the targets the others; a list without a target in
    it is left out. The co-purchase counts include the held-out baskets themselves, so the
    figure flatters the base; it only compares epochs.
    """

    seed: NDArray[np.int64]
    hist: NDArray[np.int64]
    length: NDArray[np.int64]
    cand: NDArray[np.int64]
    base_z: NDArray[np.float64]
    hit: NDArray[np.bool_]

    @classmethod
    def of(
        cls,
        rows: NDArray[np.int64],
        seed: NDArray[np.int64],
        target: NDArray[np.int64],
        group: NDArray[np.int64],
        pool: NDArray[np.int32],
        pool_log: NDArray[np.float32],
        hist: NDArray[np.int64],
        length: NDArray[np.int64],
    ) -> _HeldOutLists:
        groups, first = np.unique(group[rows], return_index=True)
        if len(groups) > _MAX_HELD_OUT_LISTS:
            pick = np.sort(np.random.default_rng(0).choice(len(groups), _MAX_HELD_OUT_LISTS, False))
            groups, first = groups[pick], first[pick]
        s = seed[rows[first]]
        cand = pool[s].astype(np.int64)
        # the targets of a list: every item its basket's rows point to, but the seed
        keys = np.unique(group[rows] * (pool.shape[0] + 1) + target[rows])
        probe = groups[:, None] * (pool.shape[0] + 1) + np.maximum(cand, 0)
        hit = _in_sorted(keys, probe) & (cand >= 0) & (cand != s[:, None])
        keep = hit.any(axis=1)
        valid = cand[keep] >= 0
        base = np.where(valid, pool_log[s[keep]], 0.0).astype(np.float64)
        return cls(
            s[keep],
            hist[groups[keep]],
            length[groups[keep]],
            np.where(valid, cand[keep], -1),
            _row_zscore(base, valid),
            hit[keep],
        )

    def mrr(self, head: AffinityHead, device: torch.device) -> float:
        """The best mean reciprocal rank of the first target over :data:`_HELD_OUT_GRID`."""
        scores = np.zeros(self.cand.shape)
        with torch.no_grad():
            for lo in range(0, len(self.seed), 1024):
                sl = slice(lo, lo + 1024)
                out = head(
                    torch.as_tensor(self.hist[sl], device=device),
                    torch.as_tensor(self.length[sl], device=device),
                    torch.as_tensor(self.cand[sl], device=device),
                )
                scores[sl] = out.float().cpu().numpy()
        valid = self.cand >= 0
        pers = _row_zscore(np.where(valid, scores, 0.0), valid)
        best = 0.0
        for w in _HELD_OUT_GRID:
            blended = np.where(valid, (1 - w) * self.base_z + w * pers, -np.inf)
            order = np.argsort(-blended, axis=1, kind="stable")
            first = np.take_along_axis(self.hit, order, axis=1).argmax(axis=1)
            best = max(best, float(np.mean(1.0 / (first + 1.0))))
        return best


def _log_sampling_probability(
    cand: NDArray[np.int64],
    pool: NDArray[np.int32],
    hist: NDArray[np.int64],
    length: NDArray[np.int64],
    pop_p: NDArray[np.float64],
    n_pool: int,
    n_hist: int,
    k: int,
) -> NDArray[np.float32]:
    """log of the chance that one draw of the competitor sampler gives each candidate
    (B, N): a uniform slot of the seed's pool (an empty slot falls back to popularity), a
    uniform position of the user's history, or popularity."""
    width = pool.shape[1]
    in_pool = (pool[:, None, :] == cand[:, :, None]).any(axis=-1)
    empty = (pool < 0).sum(axis=1, keepdims=True) / width
    valid = np.arange(hist.shape[1])[None, :] < length[:, None]
    in_hist = ((hist[:, None, :] == cand[:, :, None]) & valid[:, None, :]).sum(axis=-1)
    p = (
        (n_pool / k) * in_pool / width
        + (n_hist / k) * in_hist / np.maximum(length, 1)[:, None]
        + ((k - n_pool - n_hist) / k + (n_pool / k) * empty) * pop_p[np.maximum(cand, 0)]
    )
    return np.log(np.maximum(p, 1e-12)).astype(np.float32)


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
    pop_p = pop / pop.sum()
    cum = np.cumsum(pop_p)
    k = cfg.affinity_negatives
    n_pool, n_hist = (3 * k) // 8, (5 * k) // 16

    def batch(rows: NDArray[np.int64], rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """(history, length, candidates, base features, log sampling probability)."""
        g = group[rows]
        b = len(rows)
        neg = np.minimum(np.searchsorted(cum, rng.random((b, k))), n - 1).astype(np.int64)
        col = rng.integers(0, cfg.affinity_pool, size=(b, n_pool))
        from_pool = pool[seed[rows][:, None], col].astype(np.int64)
        neg[:, :n_pool] = np.where(from_pool >= 0, from_pool, neg[:, :n_pool])
        at = (rng.random((b, n_hist)) * length[g][:, None]).astype(np.int64)
        neg[:, n_pool : n_pool + n_hist] = hist[g[:, None], at]
        # a competitor bought in the same basket is no competitor
        neg = np.where(_in_sorted(in_basket, g[:, None] * n + neg), -1, neg)
        cand = np.concatenate([target[rows][:, None], neg], axis=1)
        base = _base_features(pool[seed[rows]], pool_log[seed[rows]], purchases_log, cand)
        log_q = _log_sampling_probability(
            cand, pool[seed[rows]], hist[g], length[g], pop_p, n_pool, n_hist, k
        )
        arrays = (hist[g], length[g], cand, base, log_q)
        return tuple(torch.as_tensor(a, device=device) for a in arrays)

    def loss_of(head: AffinityHead, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
        hist_t, len_t, cand_t, base_t, log_q = tensors
        # sampled softmax with the logQ correction: the scores estimate the full softmax
        # over the catalog, not the odds against this sampler's competitors
        logits = head(hist_t, len_t, cand_t, base_t) - log_q
        target_col = torch.zeros(len(cand_t), dtype=torch.long, device=device)
        return F.cross_entropy(logits, target_col)

    # early stopping on the newest baskets: the head memorises its training rows quickly
    time_of = triples.basket_time[group]
    cut = np.quantile(time_of, 1.0 - cfg.validation_share)
    fit_rows = np.flatnonzero(time_of < cut)
    held_rows = np.flatnonzero(time_of >= cut)
    if len(held_rows) < _MIN_HELD_OUT or len(fit_rows) < _MIN_HELD_OUT:
        fit_rows, held_rows = np.arange(len(seed)), held_rows[:0]
    if len(held_rows) > _MAX_HELD_OUT:
        held_rows = np.sort(rng.choice(held_rows, _MAX_HELD_OUT, replace=False))
    held_rng = np.random.default_rng(cfg.seed + 2)
    held = [
        batch(held_rows[lo : lo + cfg.affinity_batch_size], held_rng)
        for lo in range(0, len(held_rows), cfg.affinity_batch_size)
    ]
    lists = _HeldOutLists.of(held_rows, seed, target, group, pool, pool_log, hist, length)
    stats["affinity_fit_rows"] = int(len(fit_rows))
    stats["affinity_held_out_rows"] = int(len(held_rows))
    stats["affinity_held_out_lists"] = int(len(lists.seed))

    head = AffinityHead(
        torch.as_tensor(features, device=device),
        torch.as_tensor(item_attributes(dataset), device=device),
        cfg,
        h,
    ).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.affinity_learning_rate)
    losses: list[float] = []
    held_losses: list[float] = []
    held_mrr: list[float] = []
    best: dict[str, torch.Tensor] | None = None
    for _epoch in tqdm(
        range(cfg.affinity_epochs), desc="neural: affinity", disable=not show_progress
    ):
        head.train()
        total, steps = 0.0, 0
        order = fit_rows[rng.permutation(len(fit_rows))]
        for lo in range(0, len(order), cfg.affinity_batch_size):
            opt.zero_grad(set_to_none=True)
            loss = loss_of(head, batch(order[lo : lo + cfg.affinity_batch_size], rng))
            loss.backward()
            opt.step()
            total += float(loss.detach())
            steps += 1
        losses.append(total / max(steps, 1))
        head.eval()
        if held:
            with torch.no_grad():
                sizes = [len(t[0]) for t in held]
                value = sum(float(loss_of(head, t)) * s for t, s in zip(held, sizes, strict=True))
            held_losses.append(value / sum(sizes))
        if len(lists.seed):
            held_mrr.append(lists.mrr(head, device))
            if held_mrr[-1] > max(held_mrr[:-1], default=-1.0):
                best = copy.deepcopy(head.state_dict())
        _log.debug(
            "neural affinity epoch %d: loss %.4f, held out %s, held-out lists MRR %s",
            _epoch,
            losses[-1],
            held_losses[-1] if held_losses else None,
            held_mrr[-1] if held_mrr else None,
        )
        if on_epoch is not None:
            on_epoch(_epoch, head)
        if held_mrr and len(held_mrr) - 1 - int(np.argmax(held_mrr)) >= _PATIENCE:
            break
    if best is not None:
        head.load_state_dict(best)
    stats["affinity_held_out_loss"] = held_losses
    stats["affinity_held_out_mrr"] = held_mrr
    stats["affinity_best_epoch"] = int(np.argmax(held_mrr)) if held_mrr else None
    head.eval()
    stats["affinity_loss"] = losses
    stats["affinity_seconds"] = time.perf_counter() - t0
    return head, stats
