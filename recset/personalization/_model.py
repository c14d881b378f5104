"""Training, re-ranking, save and load of the neural personalization model."""

from __future__ import annotations

import io
import logging
import os
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from numpy.typing import NDArray
from scipy.stats import rankdata
from tqdm.auto import tqdm

from recset.data import Dataset
from recset.errors import ConfigError, DataError, ParameterTypeError, StorageError
from recset.personalization._affinity import _row_zscore, fit_affinity, item_attributes
from recset.personalization._config import NeuralConfig
from recset.personalization._data import (
    NegativeSampler,
    PairSet,
    Purchases,
    Triples,
    augment,
    complement_edges,
)
from recset.personalization._modules import (
    AffinityHead,
    ProductGraph,
    UserEncoder,
    hinge_loss,
    info_nce,
    squared_distance,
)
from recset.personalization._torch import autocast, grad_scaler, resolve_device
from recset.signals import Signals, csr_gather
from recset.storage import read_state, write_state

_log = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""Format version of the saved model (2: one ``neural_model`` state instead of loose files)."""
_KIND = "neural_model"
_META = f"{_KIND}.json"
_ARRAYS = f"{_KIND}.npz"
_GRAPH = "graph.pt"
_ENCODER = "encoder.pt"
_AFFINITY = "affinity.pt"
_RETRAIN = "retrain the neural model with `recset train-neural`"
_ENCODE_BATCH = 4096
_MAX_VALIDATION_ROWS = 5000
_AFFINITY_BATCH = 1024


# --------------------------------------------------------------------------- training


@dataclass
class _Fitted:
    graph: ProductGraph
    encoder: UserEncoder | None
    theta: NDArray[np.float32]
    query: NDArray[np.float32]
    stats: dict[str, Any]
    affinity: AffinityHead | None = None
    features: NDArray[np.float32] | None = None
    attributes: NDArray[np.int64] | None = None


def _batches(n: int, size: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
    perm = rng.permutation(n)
    return [perm[i : i + size] for i in range(0, n, size)]


class _Subgraphs:
    """Mini-batch message passing: the ``layers``-hop neighbourhood of the items a step
    needs (messages flow from complements to their seeds), so a step costs what its batch
    touches, not the whole catalog."""

    def __init__(
        self,
        edges: NDArray[np.int64],
        n_items: int,
        layers: int,
        features: NDArray[np.float32],
        device: torch.device,
    ) -> None:
        self.edges = edges
        self.n = n_items
        self.layers = layers
        self.indptr = np.searchsorted(edges[0], np.arange(n_items + 1)).astype(np.int64)
        self.x = torch.as_tensor(features, dtype=torch.float32, device=device)
        self.device = device

    def full(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and message edges of the whole graph."""
        return self.x, torch.as_tensor(self.edges[::-1].copy(), device=self.device)

    def around(
        self, nodes: NDArray[np.int64]
    ) -> tuple[torch.Tensor, torch.Tensor, NDArray[np.int64]]:
        """(features, message edges, global -> local id map) of the neighbourhood."""
        mark = np.zeros(self.n, dtype=bool)
        frontier = np.unique(nodes)
        mark[frontier] = True
        for _ in range(self.layers):
            nb = self.edges[1, csr_gather(self.indptr, frontier)]
            new = np.unique(nb[~mark[nb]])
            if not len(new):
                break
            mark[new] = True
            frontier = new
        subset = np.flatnonzero(mark)
        local = np.full(self.n, -1, dtype=np.int64)
        local[subset] = np.arange(len(subset))
        e = csr_gather(self.indptr, subset)
        e = e[mark[self.edges[1, e]]]
        message = np.vstack([local[self.edges[1, e]], local[self.edges[0, e]]])
        x = self.x[torch.as_tensor(subset, device=self.device)]
        return x, torch.as_tensor(message, device=self.device), local


def _fit(
    dataset: Dataset,
    signals: Signals,
    features: NDArray[np.float32],
    cfg: NeuralConfig,
    device: torch.device,
    show_progress: bool,
) -> _Fitted:
    """Train the product graph (and the user encoder) on one dataset."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    stats: dict[str, Any] = {}
    n = dataset.n_items
    edges, used = complement_edges(signals, cfg.edge_signal, cfg.max_neighbors)
    stats["edge_signal"] = used
    stats["n_edges"] = int(edges.shape[1])
    if edges.shape[1] == 0:
        raise DataError(
            f"{dataset.name}: no basket holds two or more distinct items, so there is no "
            "complement edge to train the neural stage on"
        )
    sub = _Subgraphs(edges, n, cfg.gnn_layers, features, device)
    pairs = PairSet(signals.co_purchase, n)
    sampler = NegativeSampler(dataset.catalog.category, pairs, cfg.hard_negative_share)
    graph = ProductGraph(features.shape[1], cfg).to(device)
    scaler = grad_scaler(device)

    def t(a: NDArray[np.int64]) -> torch.Tensor:
        return torch.as_tensor(a, device=device)

    def pair_loss(
        theta: torch.Tensor,
        query: torch.Tensor,
        s: NDArray[np.int64],
        p: NDArray[np.int64],
        neg: NDArray[np.int64],
        u: torch.Tensor | None = None,
        v: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Eq. (3) (``u`` None) or Eq. (5) (+ the user offset ``v``); local ids."""
        qs = query[t(s)]
        if v is not None:
            qs = qs + v
        d_pos = squared_distance(qs, theta[t(p)], u)
        d_neg = squared_distance(qs[:, None, :], theta[t(neg)], None if u is None else u[:, None])
        return hinge_loss(d_pos, 1.0, cfg.threshold, cfg.margin) + hinge_loss(
            d_neg, -1.0, cfg.threshold, cfg.margin
        )

    # -- stage 1: the product graph alone (Eq. 3)
    t0 = time.perf_counter()
    opt = torch.optim.Adam(graph.parameters(), lr=cfg.gnn_learning_rate)
    losses: list[float] = []
    graph.train()
    n_edges = edges.shape[1]
    per_epoch = min(n_edges, cfg.max_edges)
    for _epoch in tqdm(range(cfg.gnn_epochs), desc="neural: graph", disable=not show_progress):
        total, steps = 0.0, 0
        # dense real co-purchase graphs hold millions of edges: each epoch trains on a fresh
        # uniform sample of at most max_edges of them (message passing still sees them all)
        pick = rng.choice(n_edges, per_epoch, replace=False) if per_epoch < n_edges else None
        for batch in _batches(per_epoch, cfg.gnn_batch_size, rng):
            if pick is not None:
                batch = pick[batch]
            i, j = edges[0, batch], edges[1, batch]
            neg = sampler.sample(i, j, cfg.negatives, rng)
            x, message, local = sub.around(np.concatenate([i, j, neg.ravel()]))
            opt.zero_grad(set_to_none=True)
            with autocast(device):
                theta = graph(x, message)
                loss = pair_loss(theta, graph.query(theta), local[i], local[j], local[neg])
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach())
            steps += 1
        losses.append(total / max(steps, 1))
        _log.debug("neural graph epoch %d: L_G %.4f", _epoch, losses[-1])
    stats["gnn_seconds"] = time.perf_counter() - t0
    stats["gnn_loss"] = losses

    # -- stage 2: joint L_G + lambda1 L_PR + lambda2 L_CL
    encoder: UserEncoder | None = None
    if cfg.personalized:
        t0 = time.perf_counter()
        purchases = Purchases.of(dataset)
        triples = Triples.of(dataset, limit=cfg.max_triples)
        b_hist, b_len = purchases.last(triples.basket_user, triples.basket_time, cfg.max_history)
        keep = np.flatnonzero(b_len[triples.group] > 0)
        stats["n_triples"] = len(keep)
        counts = np.diff(purchases.indptr)
        cl_users = np.flatnonzero(counts >= 2)
        lambda2 = cfg.effective_lambda2 if len(cl_users) >= 2 else 0.0
        encoder = UserEncoder(cfg).to(device)
        params = list(graph.parameters()) + list(encoder.parameters())
        opt = torch.optim.Adam(params, lr=cfg.joint_learning_rate)
        history: list[dict[str, float]] = []
        edge_batches: list[NDArray[np.int64]] = []
        encoder.train()
        kept = Triples(
            triples.seed[keep],
            triples.positive[keep],
            triples.group[keep],
            triples.basket_user,
            triples.basket_time,
        )
        for _epoch in tqdm(
            range(cfg.joint_epochs), desc="neural: joint", disable=not show_progress
        ):
            sums = {"L_G": 0.0, "L_PR": 0.0, "L_CL": 0.0}
            steps = 0
            for rows in kept.batches(cfg.joint_batch_size, rng):
                if not edge_batches:
                    edge_batches = _batches(edges.shape[1], cfg.gnn_batch_size, rng)
                eb = edge_batches.pop()
                ei, ej = edges[0, eb], edges[1, eb]
                e_neg = sampler.sample(ei, ej, cfg.negatives, rng)
                s, p = kept.seed[rows], kept.positive[rows]
                neg = sampler.sample(s, p, cfg.negatives, rng)
                baskets, inverse = np.unique(kept.group[rows], return_inverse=True)
                hist, length = b_hist[baskets], b_len[baskets]
                needed = [ei, ej, e_neg.ravel(), s, p, neg.ravel(), hist[hist >= 0]]
                if lambda2 > 0:
                    size = min(cfg.contrastive_batch_size, len(cl_users))
                    users = rng.choice(cl_users, size=size, replace=False)
                    h_u, len_u = purchases.last(users, None, cfg.max_history)
                    views = [
                        augment(
                            h_u,
                            len_u,
                            rng,
                            crop_ratio=cfg.crop_ratio,
                            reorder_ratio=cfg.reorder_ratio,
                        )
                        for _ in range(2)
                    ]
                    needed += [v[v >= 0] for v, _ in views]
                x, message, local = sub.around(np.concatenate(needed))
                opt.zero_grad(set_to_none=True)
                with autocast(device):
                    theta = graph(x, message)
                    query = graph.query(theta)
                    l_g = pair_loss(theta, query, local[ei], local[ej], local[e_neg])
                    u_b, v_b = encoder.with_offset(
                        _history_tokens(theta, _local(local, hist)), t(length)
                    )
                    u = u_b[t(inverse)]
                    v = v_b[t(inverse)] if cfg.user_offset else None
                    l_pr = pair_loss(theta, query, local[s], local[p], local[neg], u, v)
                    loss = l_g + cfg.lambda1 * l_pr
                    l_cl = torch.zeros((), device=device)
                    if lambda2 > 0:
                        (v1, n1), (v2, n2) = views
                        h1 = encoder.hidden(_history_tokens(theta, _local(local, v1)), t(n1))
                        h2 = encoder.hidden(_history_tokens(theta, _local(local, v2)), t(n2))
                        l_cl = info_nce(h1, h2, cfg.temperature)
                        loss = loss + lambda2 * l_cl
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sums["L_G"] += float(l_g.detach())
                sums["L_PR"] += float(l_pr.detach())
                sums["L_CL"] += float(l_cl.detach())
                steps += 1
            history.append({k: v / max(steps, 1) for k, v in sums.items()})
            _log.debug("neural joint epoch %d: %s", _epoch, history[-1])
        stats["joint_seconds"] = time.perf_counter() - t0
        stats["joint_loss"] = history
        encoder.eval()

    affinity: AffinityHead | None = None
    if cfg.personalized and cfg.personal_score == "affinity":
        affinity, a_stats = fit_affinity(dataset, signals, features, cfg, device, show_progress)
        stats.update(a_stats)

    graph.eval()
    with torch.no_grad():
        x, message = sub.full()
        theta = graph(x, message)
        query = graph.query(theta)
    return _Fitted(
        graph=graph,
        encoder=encoder,
        theta=theta.float().cpu().numpy().astype(np.float32),
        query=query.float().cpu().numpy().astype(np.float32),
        stats=stats,
        affinity=affinity,
        features=features if affinity is not None else None,
        attributes=item_attributes(dataset) if affinity is not None else None,
    )


def _history_tokens(theta: torch.Tensor, hist: NDArray[np.int64]) -> torch.Tensor:
    """``theta`` of padded histories, zeros at padding, shape (B, H, k)."""
    idx = torch.as_tensor(np.maximum(hist, 0), device=theta.device)
    mask = torch.as_tensor(hist >= 0, device=theta.device)
    return theta[idx] * mask[..., None]


def _local(local: NDArray[np.int64], ids: NDArray[np.int64]) -> NDArray[np.int64]:
    """Global -> local ids, keeping ``-1`` padding."""
    return np.where(ids >= 0, local[np.maximum(ids, 0)], -1)


def _histories(dataset: Dataset, h: int) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """The last ``h`` purchases of every user as CSR (indptr (n_users+1,), items)."""
    purchases = Purchases.of(dataset)
    hist, length = purchases.last(np.arange(dataset.n_users), None, h)
    indptr = np.r_[0, np.cumsum(length)].astype(np.int64)
    items = hist[np.arange(h)[None, :] < length[:, None]].astype(np.int32)
    return indptr, items


def train_neural(
    train: Dataset,
    config: NeuralConfig | None = None,
    *,
    signals: Signals | None = None,
    features: NDArray[np.floating] | None = None,
    show_progress: bool = False,
) -> NeuralModel:
    """Train the product graph, the user encoder and the re-ranking blend.

    Parameters
    ----------
    train : Dataset
        The training data; its users' purchase histories are kept for serving.
    config : NeuralConfig, optional
    signals : Signals, optional
        Signals of ``train`` (computed when not given); they are reused for the final fit.
    features : ndarray of float, shape (n_items, d_in), optional
        Item input features; default the FastText title / aspect vectors of
        :func:`recset.recall._text.embed_items` (so cold-start items get embeddings).
    show_progress : bool
        tqdm progress bars.

    Returns
    -------
    NeuralModel

    Notes
    -----
    Unless ``config.blend_weight`` is set, the most recent ``validation_share`` of the
    baskets of ``train`` are held out: a model fitted on the rest re-ranks each held-out
    basket's co-purchase candidates of its first item (base score: the co-purchase count),
    and the blend weight with the best mean reciprocal rank of the basket's other items is
    kept. With ``refit_on_full`` the model is then trained again on all of ``train``.
    """
    cfg = config or NeuralConfig()
    device = resolve_device(cfg.device)
    if signals is not None and signals.dataset is not train:
        raise ConfigError("the 'signals' parameter was computed on another dataset")
    sig = signals or Signals(train)
    if features is None:
        from recset.recall import TextEmbeddingConfig, embed_items

        t0 = time.perf_counter()
        feats = embed_items(
            train, TextEmbeddingConfig(embedding_size=cfg.text_embedding_size, seed=cfg.seed)
        )
        _log.info("neural: text features in %.1f s", time.perf_counter() - t0)
    else:
        feats = np.asarray(features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] != train.n_items:
            raise DataError(
                f"The 'features' parameter must have shape ({train.n_items}, d). "
                f"Got {feats.shape} instead."
            )
    t_start = time.perf_counter()
    indptr, items = _histories(train, _kept_history(cfg))
    meta: dict[str, Any] = {}
    blend = cfg.blend_weight
    fitted: _Fitted | None = None
    if blend is None:
        cut = _validation_cut(train, cfg.validation_share)
        if cut is None:
            blend = 0.5
            meta["blend_source"] = "default (too few baskets to validate)"
        else:
            fit_ds = train.split_time(cut)[0]
            fit_sig = Signals(
                fit_ds, half_life_days=sig.half_life_days, max_group_size=sig.max_group_size
            )
            fitted = _fit(fit_ds, fit_sig, feats, cfg, device, show_progress)
            probe = NeuralModel._build(cfg, fitted, indptr, items, 0.0, feats.shape[1], {})
            table = _validate(probe, train, fit_sig, cut)
            meta["validation"] = table
            if table["rows"]:
                grid = list(cfg.blend_grid)
                scores = [table["mrr"][str(w)] for w in grid]
                blend = grid[int(np.argmax(scores))]
                meta["blend_source"] = "validation"
            else:
                blend = 0.5
                meta["blend_source"] = "default (no held-out basket had a candidate hit)"
            if cfg.refit_on_full:
                fitted = None
    else:
        meta["blend_source"] = "config"
    if fitted is None:
        fitted = _fit(train, sig, feats, cfg, device, show_progress)
    meta["train_seconds"] = time.perf_counter() - t_start
    meta["fit"] = fitted.stats
    _log.info(
        "neural: trained in %.1f s (%d edges from %s), blend weight %.2f (%s)",
        meta["train_seconds"],
        fitted.stats["n_edges"],
        fitted.stats["edge_signal"],
        blend,
        meta["blend_source"],
    )
    return NeuralModel._build(cfg, fitted, indptr, items, float(blend), feats.shape[1], meta)


def _kept_history(cfg: NeuralConfig) -> int:
    """Purchases kept per user for serving: what the encoder or the affinity head reads."""
    if cfg.personalized and cfg.personal_score == "affinity":
        return max(cfg.max_history, cfg.affinity_history)
    return cfg.max_history


def _validation_cut(train: Dataset, share: float) -> int | None:
    b = train.baskets
    if len(b) < 20 or (b.sizes() >= 2).sum() < 10:
        return None
    cut = train.order_time_quantile(1.0 - share)
    first = train.split_time(cut)[0]
    if (first.baskets.sizes() >= 2).sum() < 5:
        return None
    return cut


def _top_rows(m: sp.csr_matrix, rows: NDArray[np.int64], n: int) -> tuple[NDArray, NDArray]:
    """The ``n`` largest entries of each selected row: (items, scores), padded -1 / -inf."""
    sub = m[rows].tocsr()
    sub.sort_indices()
    counts = np.diff(sub.indptr)
    owner = np.repeat(np.arange(len(rows)), counts)
    order = np.lexsort((-sub.data, owner))
    rank = np.arange(len(order)) - np.repeat(sub.indptr[:-1], counts)
    items = np.full((len(rows), n), -1, dtype=np.int32)
    scores = np.full((len(rows), n), -np.inf, dtype=np.float32)
    ok = rank < n
    items[owner[ok], rank[ok]] = sub.indices[order][ok]
    scores[owner[ok], rank[ok]] = sub.data[order][ok]
    return items, scores


def _validate(model: NeuralModel, train: Dataset, fit_sig: Signals, cut: int) -> dict[str, Any]:
    """MRR of each blend weight on the held-out baskets (base: co-purchase counts)."""
    b = train.baskets
    sizes = b.sizes()
    groups = np.flatnonzero((b.timestamp >= cut) & (sizes >= 2))
    if len(groups) > _MAX_VALIDATION_ROWS:
        groups = np.sort(np.random.default_rng(model.config.seed).choice(groups, 5000, False))
    seeds = b.item[b.indptr[groups]].astype(np.int64)
    cand, base = _top_rows(fit_sig.co_purchase, seeds, model.config.rerank_n)
    pop = fit_sig.item_purchases
    base = np.where(cand >= 0, base + 1e-3 * pop[np.maximum(cand, 0)] / (pop.max() + 1.0), -np.inf)
    # targets: the basket's other items
    key_targets = np.unique(
        np.repeat(np.arange(len(groups)), sizes[groups] - 1).astype(np.int64) * train.n_items
        + np.concatenate([b.item[b.indptr[g] + 1 : b.indptr[g + 1]] for g in groups])
        if len(groups)
        else np.zeros(0, np.int64)
    )
    key = np.arange(len(groups))[:, None].astype(np.int64) * train.n_items + np.maximum(cand, 0)
    pos = np.minimum(np.searchsorted(key_targets, key), max(len(key_targets) - 1, 0))
    hit = (cand >= 0) & (key_targets[pos] == key) if len(key_targets) else cand >= 0
    informative = hit.any(axis=1) & ((cand >= 0).sum(axis=1) >= 2)
    rows = np.flatnonzero(informative)
    table: dict[str, Any] = {"rows": int(len(rows)), "baskets": int(len(groups)), "mrr": {}}
    if not len(rows):
        return table
    users = b.user[groups][rows].astype(np.int32)
    known = model._has_history(users)
    personal = model._personal(seeds[rows].astype(np.int32), users, cand[rows])
    for w in model.config.blend_grid:
        s = model._blend(cand[rows], base[rows], personal, np.where(known, w, 0.0))
        order = np.argsort(-s, axis=1, kind="stable")
        hits = np.take_along_axis(hit[rows], order, axis=1)
        first = hits.argmax(axis=1)
        table["mrr"][str(w)] = float(np.mean(1.0 / (first + 1.0)))
    _log.info("neural: validation MRR by blend weight %s", table["mrr"])
    return table


# --------------------------------------------------------------------------- the model


def _row_percentile(values: NDArray[np.float64], mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Rank of each masked-in value within its row, scaled to (0, 1] (ties averaged)."""
    v = np.where(mask, values, -np.inf)
    ranks = rankdata(v, method="average", axis=1)
    n_out = (~mask).sum(axis=1, keepdims=True)
    n_in = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    return (ranks - n_out) / n_in


class NeuralModel:
    """Trained product graph + user encoder, with what re-ranking needs at serve time.

    Built by :func:`train_neural` or :meth:`load`. Item embeddings are precomputed; the
    user encoder runs at serve time over the kept purchase histories.

    Attributes
    ----------
    config : NeuralConfig
    blend_weight_ : float
        Weight of the personal score in :meth:`rerank` (chosen on validation unless
        configured).
    affinity_ : AffinityHead or None
        The affinity head that scores candidates for a user (``personal_score="affinity"``);
        None: the personalized distance is used.
    metadata_ : dict
        Training statistics, validation table, timings (saved as JSON).
    n_items_ : int
    """

    config: NeuralConfig

    def __init__(self) -> None:  # use train_neural or load
        raise ParameterTypeError("build a NeuralModel with train_neural() or NeuralModel.load()")

    @classmethod
    def _build(
        cls,
        config: NeuralConfig,
        fitted: _Fitted,
        indptr: NDArray[np.int64],
        items: NDArray[np.int32],
        blend_weight: float,
        in_dim: int,
        metadata: dict[str, Any],
        device: torch.device | None = None,
    ) -> NeuralModel:
        self = cls.__new__(cls)
        self.config = config
        self.graph_ = fitted.graph
        self.encoder_ = fitted.encoder
        self.affinity_ = fitted.affinity
        self.item_features_ = fitted.features
        self.item_attributes_ = fitted.attributes
        self.theta_ = fitted.theta
        self.query_ = fitted.query
        self.history_indptr_ = indptr
        self.history_items_ = items
        self.blend_weight_ = float(blend_weight)
        self.in_dim_ = int(in_dim)
        self.n_items_ = int(fitted.theta.shape[0])
        self.metadata_ = dict(metadata)
        self.metadata_["blend_weight"] = self.blend_weight_
        self.device_ = device or next(fitted.graph.parameters()).device
        return self

    def __repr__(self) -> str:
        return (
            f"NeuralModel(n_items={self.n_items_}, users={len(self.history_indptr_) - 1}, "
            f"stages={self.config.stages!r}, blend_weight={self.blend_weight_:.2f})"
        )

    # -- embeddings ------------------------------------------------------------------------
    def item_embeddings(self) -> NDArray[np.float32]:
        """Product embeddings ``theta``: float32, shape (n_items, embedding_size), unit rows.

        Suitable for the ``gnn_neighbors`` recall source (save with :meth:`save` or
        ``numpy.save``); every item has one, cold-start items from their text features.
        """
        return self.theta_.copy()

    def query_embeddings(self) -> NDArray[np.float32]:
        """Seed-side embeddings ``P(theta)`` (equal to ``theta`` when ``score="distance"``):
        float32, shape (n_items, embedding_size). Complements of ``i`` are near row ``i``
        of this matrix in ``theta``."""
        return self.query_.copy()

    def _has_history(self, users: NDArray[np.integer]) -> NDArray[np.bool_]:
        users = np.asarray(users, dtype=np.int64)
        n_users = len(self.history_indptr_) - 1
        known = (users >= 0) & (users < n_users)
        u = np.where(known, users, 0)
        return known & (self.history_indptr_[u + 1] > self.history_indptr_[u])

    def _user_histories(
        self, users: NDArray[np.integer], h: int | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The last ``h`` (default ``max_history``) kept purchases of each user, padded."""
        h = self.config.max_history if h is None else h
        users = np.asarray(users, dtype=np.int64)
        known = self._has_history(users)
        u = np.where(known, users, 0)
        hi = self.history_indptr_[u + 1]
        length = np.where(known, np.minimum(hi - self.history_indptr_[u], h), 0)
        lo = hi - length
        idx = lo[:, None] + np.arange(h)[None, :]
        valid = np.arange(h)[None, :] < length[:, None]
        top = max(len(self.history_items_) - 1, 0)
        if len(self.history_items_) == 0:
            return np.full((len(users), h), -1, np.int64), length
        hist = np.where(valid, self.history_items_[np.minimum(idx, top)], -1)
        return hist.astype(np.int64), length.astype(np.int64)

    def user_vectors(self, users: NDArray[np.int32]) -> NDArray[np.float32]:
        """User vectors ``u`` (Eq. 4) from the kept purchase histories.

        Parameters
        ----------
        users : ndarray of int32, shape (B,)
            Dense user ids of the training dataset; ``-1``, unknown ids and users without
            purchases get the neutral vector of ones (the unweighted distance).

        Returns
        -------
        ndarray of float32, shape (B, embedding_size)
        """
        return self._user_state(users)[0]

    def _user_state(
        self, users: NDArray[np.integer]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``(u, v)``: weighting (neutral: ones) and seed offset (neutral: zeros), (B, k)."""
        users = np.asarray(users)
        if users.ndim != 1:
            raise ConfigError(f"The 'users' parameter must be 1-D. Got shape {users.shape}.")
        k = self.config.embedding_size
        u_out = np.ones((len(users), k), dtype=np.float32)
        v_out = np.zeros((len(users), k), dtype=np.float32)
        known = self._has_history(users)
        if self.encoder_ is None or not known.any():
            return u_out, v_out
        rows = np.flatnonzero(known)
        hist, length = self._user_histories(users[rows])
        theta = torch.as_tensor(self.theta_, device=self.device_)
        with torch.no_grad():
            for lo in range(0, len(rows), _ENCODE_BATCH):
                sl = slice(lo, lo + _ENCODE_BATCH)
                with autocast(self.device_):
                    u, v = self.encoder_.with_offset(
                        _history_tokens(theta, hist[sl]),
                        torch.as_tensor(length[sl], device=self.device_),
                    )
                u_out[rows[sl]] = u.float().cpu().numpy()
                if self.config.user_offset:
                    v_out[rows[sl]] = v.float().cpu().numpy()
        return u_out, v_out

    # -- re-ranking -----------------------------------------------------------------------
    def _distance(
        self,
        seeds: NDArray[np.int32],
        items: NDArray[np.int32],
        u: NDArray[np.float32],
        v: NDArray[np.float32] | None = None,
    ) -> NDArray[np.float64]:
        """``||(P theta_seed + v - theta_c) * u||^2`` (B, N); nan at unknown seeds / items."""
        n = self.n_items_
        ok_seed = (seeds >= 0) & (seeds < n)
        ok_item = (items >= 0) & (items < n)
        q = self.query_[np.where(ok_seed, seeds, 0)]
        if v is not None:
            q = q + v
        t = self.theta_[np.where(ok_item, items, 0)]
        diff = (q[:, None, :] - t) * u[:, None, :]
        d = np.einsum("bnd,bnd->bn", diff, diff).astype(np.float64)
        return np.where(ok_seed[:, None] & ok_item, d, np.nan)

    def _affinity(
        self, users: NDArray[np.integer], items: NDArray[np.integer]
    ) -> NDArray[np.float64]:
        """Affinity head scores (B, N), higher is better; nan for users without history,
        padding and unknown items."""
        out = np.full(np.shape(items), np.nan)
        known = self._has_history(users)
        if self.affinity_ is None or not known.any():
            return out
        rows = np.flatnonzero(known)
        hist, length = self._user_histories(np.asarray(users)[rows], self.config.affinity_history)
        cand = np.asarray(items, dtype=np.int64)[rows]
        ok = (cand >= 0) & (cand < self.n_items_)
        cand = np.where(ok, cand, -1)
        with torch.no_grad():
            for lo in range(0, len(rows), _AFFINITY_BATCH):
                sl = slice(lo, lo + _AFFINITY_BATCH)
                score = self.affinity_(
                    torch.as_tensor(hist[sl], device=self.device_),
                    torch.as_tensor(length[sl], device=self.device_),
                    torch.as_tensor(cand[sl], device=self.device_),
                )
                out[rows[sl]] = score.float().cpu().numpy()
        scored = np.zeros(out.shape, dtype=bool)
        scored[rows] = ok
        return np.where(scored, out, np.nan)

    def _personal(
        self,
        seeds: NDArray[np.integer],
        users: NDArray[np.integer],
        items: NDArray[np.integer],
    ) -> NDArray[np.float64]:
        """The personal score of each candidate (B, N), higher is better, nan where it
        says nothing: the affinity head, or the negated personalized distance."""
        if self.affinity_ is not None:
            return self._affinity(users, items)
        u, v = self._user_state(users)
        return -self._distance(np.asarray(seeds), np.asarray(items), u, v)

    def _blend(
        self,
        items: NDArray[np.integer],
        base_scores: NDArray[np.floating],
        personal: NDArray[np.float64],
        weight: NDArray[np.float64] | float,
    ) -> NDArray[np.float32]:
        valid = items >= 0
        base = np.nan_to_num(
            np.asarray(base_scores, dtype=np.float64), nan=-1e300, posinf=1e300, neginf=-1e300
        )
        base = np.where(valid, base, -np.inf)
        # the head: the rerank_n best real candidates by base score
        order = np.argsort(-base, axis=1, kind="stable")
        position = np.empty_like(order)
        np.put_along_axis(position, order, np.arange(base.shape[1])[None, :], axis=1)
        head = valid & (position < self.config.rerank_n)
        base_all = _row_percentile(base, valid)
        ok_d = head & np.isfinite(personal)
        w = np.broadcast_to(np.asarray(weight, dtype=np.float64).reshape(-1, 1), (len(base), 1))
        w = np.where(ok_d.any(axis=1, keepdims=True), w, 0.0)
        if self.affinity_ is not None:
            # log-odds-like scores on both sides: standardised within the head
            base_head = _row_zscore(base, head)
            pers = _row_zscore(np.nan_to_num(personal, nan=-np.inf), ok_d)
            blended = (1.0 - w) * base_head + w * pers
            # below the head, under every head score, in base order
            floor = np.min(np.where(head, blended, np.inf), axis=1, keepdims=True)
            below = np.where(np.isfinite(floor), floor, 0.0) - 1.0 - (1.0 - base_all)
            out = np.where(head, blended, below)
        else:
            base_head = _row_percentile(base, head)
            pers = _row_percentile(np.nan_to_num(personal, nan=-np.inf), head)
            blended = (1.0 - w) * base_head + w * np.where(ok_d, pers, 0.0)
            out = np.where(head, blended, base_all - 2.0)
        return np.where(valid, out, -np.inf).astype(np.float32)

    def rerank(
        self,
        seeds: NDArray[np.int32],
        users: NDArray[np.int32],
        items: NDArray[np.int32],
        base_scores: NDArray[np.floating],
    ) -> NDArray[np.float32]:
        """Blend the base (ranker) scores with the personal score, per row.

        The head (the ``rerank_n`` best candidates by ``base_scores``) is scored
        ``(1 - w) * z(base) + w * z(affinity)`` with the affinity head (z-scores within the
        head), or ``(1 - w) * base_rank + w * personal_rank`` with the distance
        (``personal_score="distance"`` or a model saved before the head: within-row
        percentiles in (0, 1], the personal rank ordering by
        ``||(P theta_seed - theta_c) * u||`` ascending); ``w`` is ``blend_weight_``. The
        scale of ``base_scores`` does not matter. Candidates below the head keep their base
        order under it.

        Parameters
        ----------
        seeds : ndarray of int32, shape (B,)
            Dense seed item ids (``-1``: unknown seed, the row keeps its base order).
        users : ndarray of int32, shape (B,)
            Dense user ids of the training dataset (``-1`` / unknown / no history: the row
            keeps its base order).
        items : ndarray of int32, shape (B, N)
            Candidates, padded with ``-1``.
        base_scores : ndarray of float, shape (B, N)
            Higher is better; padding ``-inf``.

        Returns
        -------
        ndarray of float32, shape (B, N)
            Blended scores (higher is better), ``-inf`` at padding. For rows without a
            known user the scores are an order-preserving transform of ``base_scores``.
        """
        seeds = np.asarray(seeds)
        users = np.asarray(users)
        items = np.asarray(items)
        base_scores = np.asarray(base_scores)
        if items.ndim != 2 or base_scores.shape != items.shape:
            raise ConfigError(
                "The 'items' and 'base_scores' parameters must be 2-D arrays of one shape. "
                f"Got {items.shape} and {base_scores.shape} instead."
            )
        if seeds.shape != (len(items),) or users.shape != (len(items),):
            raise ConfigError(
                f"The 'seeds' and 'users' parameters must have shape ({len(items)},). "
                f"Got {seeds.shape} and {users.shape} instead."
            )
        known = self._has_history(users)
        w = np.where(known, self.blend_weight_, 0.0)
        return self._blend(items, base_scores, self._personal(seeds, users, items), w)

    # -- persistence ----------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write the model to ``directory`` (replaced atomically when it exists).

        Files: ``graph.pt`` / ``encoder.pt`` (torch ``state_dict``) and the ``"neural_model"``
        state of :func:`~recset.storage.write_state`: ``neural_model.json`` (config, sizes,
        blend weight, metadata) and ``neural_model.npz`` (``embeddings`` (``theta``),
        ``query``, and the kept purchase histories ``history_indptr`` / ``history_items``).
        """
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            meta = {
                "config": self.config.model_dump(mode="json"),
                "n_items": self.n_items_,
                "n_users": len(self.history_indptr_) - 1,
                "in_dim": self.in_dim_,
                "blend_weight": self.blend_weight_,
                "has_encoder": self.encoder_ is not None,
                "has_affinity": self.affinity_ is not None,
                "metadata": self.metadata_,
            }
            arrays = {
                "embeddings": self.theta_,
                "query": self.query_,
                "history_indptr": self.history_indptr_,
                "history_items": self.history_items_,
            }
            if self.affinity_ is not None:
                arrays["item_features"] = self.item_features_
                arrays["item_attributes"] = self.item_attributes_
            write_state(tmp, _KIND, FORMAT_VERSION, meta=meta, arrays=arrays)
            torch.save(self.graph_.state_dict(), tmp / _GRAPH)
            if self.encoder_ is not None:
                torch.save(self.encoder_.state_dict(), tmp / _ENCODER)
            if self.affinity_ is not None:
                torch.save(self.affinity_.state_dict(), tmp / _AFFINITY)
            old = None
            if directory.exists():
                old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex}"
                directory.rename(old)
            tmp.rename(directory)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(
        cls, directory: Path, *, device: str = "auto", n_items: int | None = None
    ) -> NeuralModel:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        directory : Path
        device : {"auto", "cpu", "cuda"}
        n_items : int, optional
            The catalog size the caller serves; a model of another size is refused.

        Raises
        ------
        ConfigError
            A file is missing or does not match the others (naming the file), or the
            directory was written by another recset version (an older layout, another format
            version): the message says to retrain the neural model.
        """
        directory = Path(directory)
        dev = resolve_device(device)
        meta_path = directory / _META
        arrays_path = directory / _ARRAYS
        try:
            state = read_state(directory, _KIND, FORMAT_VERSION)
        except StorageError as exc:
            raise ConfigError(f"{exc}; {_RETRAIN}") from None
        except (EOFError, zipfile.BadZipFile) as exc:  # a truncated .npz
            raise ConfigError(f"{arrays_path}: unreadable ({exc!r}); {_RETRAIN}") from None
        if not (directory / _GRAPH).is_file():
            raise ConfigError(f"{directory / _GRAPH}: missing file of the neural model")
        meta = state.meta
        try:
            config = NeuralConfig.model_validate(meta["config"])
            n = int(meta["n_items"])
            n_users = int(meta["n_users"])
            in_dim = int(meta["in_dim"])
            blend_weight = float(meta["blend_weight"])
            has_encoder = bool(meta["has_encoder"])
            # models saved before the affinity head re-rank by the personalized distance
            has_affinity = bool(meta.get("has_affinity", False))
            metadata = dict(meta.get("metadata") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{meta_path}: unreadable model metadata ({exc!r}); {_RETRAIN}"
            ) from None
        k = config.embedding_size
        if n_items is not None and n != n_items:
            raise ConfigError(
                f"{meta_path}: the model has {n} items, the dataset {n_items}; {_RETRAIN}"
            )
        try:
            theta, query, indptr, items = (
                state.array(name, arrays_path)
                for name in ("embeddings", "query", "history_indptr", "history_items")
            )
        except StorageError as exc:
            raise ConfigError(str(exc)) from None
        for name, arr in (("embeddings", theta), ("query", query)):
            if arr.shape != (n, k):
                raise ConfigError(
                    f"{arrays_path}: array {name!r} has shape {arr.shape}, expected ({n}, {k}) "
                    f"from {_META}"
                )
        theta, query = theta.astype(np.float32), query.astype(np.float32)
        indptr, items = indptr.astype(np.int64), items.astype(np.int32)
        if (
            indptr.ndim != 1
            or items.ndim != 1
            or len(indptr) != n_users + 1
            or (len(items) and (items.min() < 0 or items.max() >= n))
            or indptr[-1] != len(items)
        ):
            raise ConfigError(
                f"{arrays_path}: the histories do not match {n} items / {n_users} users of {_META}"
            )
        graph = ProductGraph(in_dim, config)
        _load_state(graph, directory / _GRAPH, dev)
        encoder = None
        if has_encoder:
            if not (directory / _ENCODER).is_file():
                raise ConfigError(f"{directory / _ENCODER}: missing file of the neural model")
            encoder = UserEncoder(config)
            _load_state(encoder, directory / _ENCODER, dev)
            encoder.to(dev).eval()
        affinity = features = attributes = None
        if has_affinity:
            if not (directory / _AFFINITY).is_file():
                raise ConfigError(f"{directory / _AFFINITY}: missing file of the neural model")
            try:
                features = state.array("item_features", arrays_path).astype(np.float32)
                attributes = state.array("item_attributes", arrays_path).astype(np.int64)
            except StorageError as exc:
                raise ConfigError(str(exc)) from None
            if features.shape != (n, in_dim):
                raise ConfigError(
                    f"{arrays_path}: array 'item_features' has shape {features.shape}, "
                    f"expected ({n}, {in_dim}) from {_META}"
                )
            if attributes.ndim != 2 or len(attributes) != n or (attributes < -1).any():
                raise ConfigError(
                    f"{arrays_path}: array 'item_attributes' has shape {attributes.shape}, "
                    f"expected ({n}, A) of ids >= -1 from {_META}"
                )
            affinity = AffinityHead(
                torch.as_tensor(features),
                torch.as_tensor(attributes),
                config,
                config.affinity_history,
            )
            _load_state(affinity, directory / _AFFINITY, dev)
            affinity.to(dev).eval()
        elif config.personal_score == "affinity":
            config = config.model_copy(update={"personal_score": "distance"})
        graph.to(dev).eval()
        fitted = _Fitted(graph, encoder, theta, query, {}, affinity, features, attributes)
        return cls._build(config, fitted, indptr, items, blend_weight, in_dim, metadata, device=dev)


def _load_state(module: torch.nn.Module, path: Path, device: torch.device) -> None:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, OSError) as e:
        raise ConfigError(f"{path}: cannot load the weights ({e})") from e


def save_item_embeddings(model: NeuralModel, path: str | os.PathLike[str]) -> Path:
    """Write a trained model's item embeddings for the ``gnn_neighbors`` recall source.

    The file is the artifact that connects the neural stage to recall: neural training
    writes it, ``gnn_neighbors`` (``embeddings = "<path>"``) only reads it, so recall never
    trains or imports the neural stage.

    Parameters
    ----------
    model : NeuralModel
        A trained model (e.g. ``train_neural(ds, NeuralConfig(stages="gnn"))``).
    path : str or PathLike
        Destination file, conventionally ``*.npz``; parent directories are created and an
        existing file is replaced.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    One ``.npz`` (written without pickle) with two float32 arrays of shape
    ``(n_items, embedding_size)``: ``embeddings`` (:meth:`NeuralModel.item_embeddings`,
    ``theta``) and ``query_embeddings`` (:meth:`NeuralModel.query_embeddings`, the seed-side
    vectors ``P(theta)``, which ``gnn_neighbors`` searches with). The bytes go to a temporary
    file in the same directory that is then renamed over ``path``, so a reader sees the old
    file or the new one, never a partial one.
    """
    from recset.storage import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(
        buf,
        embeddings=model.item_embeddings(),
        query_embeddings=model.query_embeddings(),
        allow_pickle=False,
    )
    out = atomic_write_bytes(path, buf.getvalue())
    _log.info(
        "neural: item embeddings %s and query embeddings written to %s",
        model.theta_.shape,
        out,
    )
    return out
