"""Type transition: which product types complement which, and type-diverse final lists.

After the complementary-type-transition design (``shared/seeds/complementary-type-transition.txt``):
every type ``t`` has an embedding ``E[t]``; a transition network ``f`` maps a seed type's
embedding to ``M`` points, the embeddings its complementary types should sit near. The
distance of a candidate type ``b`` from seed type ``a`` is the smallest squared distance
from ``E[b]`` to any of the ``M`` points::

    d(a, b) = min_m || f(E[a])_m - E[b] ||^2

Because ``f(E[a])`` is compared with ``E[b]`` and not with ``f(E[b])``, the relation is
asymmetric: a camera's points can sit on the SD-card embedding while the SD card's points
sit elsewhere. Each of the ``M`` points is pulled only by the positives it is closest to,
so the points spread over the different complementary types (tennis racket -> balls,
overgrip, headband) instead of collapsing on the most frequent one.

Training pairs are type pairs aggregated from directed co-purchases that were never
substitution views (see :class:`TypeTransitionConfig`); same-type pairs are substitutes and
are left out. The loss is a softmax over the positive and sampled negative types with an
additive margin on the positive (see :func:`transition_loss`), weighted so that each seed
type's pairs sum to one: ``softmax_b(-d(a, b))`` then estimates ``P(b | a)``, the share of
``a``'s co-purchases that go to type ``b``.

After training, a ``(n_types, n_types)`` table of those probabilities is precomputed, so
serving (:meth:`TypeTransition.type_scores`, :meth:`TypeTransition.complement_types`,
:meth:`TypeTransition.diversify`) is numpy only. torch is imported only to train, save and
load.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import ValidationError

from recset.data import Dataset
from recset.errors import ConfigError, DataError, NotFittedError, RecsetError, StorageError
from recset.personalization._torch import resolve_device
from recset.personalization._type_transition_config import TypeTransitionConfig
from recset.signals import Signals
from recset.storage import read_state, write_state

if TYPE_CHECKING:
    import torch

__all__ = [
    "TypeTransition",
    "TypeTransitionConfig",
    "train_type_transition",
    "transition_loss",
    "type_pair_counts",
]

_log = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""Format version of the saved model (2: the versioned ``type_transition`` state)."""
_KIND = "type_transition"
_META = f"{_KIND}.json"
_ARRAYS = f"{_KIND}.npz"
_RETRAIN = "retrain it with `recset train-neural`"
_WEIGHTS = "weights.pt"

Level = Literal["product_type", "category"]


# --------------------------------------------------------------------------- data


def resolve_level(dataset: Dataset, level: str) -> Level:
    """The catalog column used as "type": ``level``, or for ``"auto"`` the first usable one.

    Raises
    ------
    DataError
        When the chosen column (or, for ``"auto"``, both columns) is empty.
    """
    has_pt = bool((dataset.catalog.product_type >= 0).any())
    has_cat = bool((dataset.catalog.category >= 0).any())
    if level == "auto":
        if has_pt:
            return "product_type"
        if has_cat:
            return "category"
        raise DataError(
            f"{dataset.name}: no item has a product_type or a category_id; the type-transition "
            "model needs one of them"
        )
    if level == "product_type" and has_pt:
        return "product_type"
    if level == "category" and has_cat:
        return "category"
    raise DataError(
        f"{dataset.name}: level={level!r} was asked for, but no item has a "
        f"{'product_type' if level == 'product_type' else 'category_id'}"
    )


def _item_types(dataset: Dataset, level: Level) -> tuple[NDArray[np.int32], list[str]]:
    if level == "product_type":
        return dataset.catalog.product_type.astype(np.int32), [
            str(v) for v in dataset.product_types.values
        ]
    return dataset.catalog.category.astype(np.int32), [str(v) for v in dataset.categories.values]


def _aggregate(pairs: sp.csr_matrix, item_type: NDArray[np.int32], n_types: int) -> sp.csr_matrix:
    coo = pairs.tocoo()
    ta, tb = item_type[coo.row], item_type[coo.col]
    ok = (ta >= 0) & (tb >= 0) & (ta != tb)
    m = sp.csr_matrix((coo.data[ok].astype(np.float64), (ta[ok], tb[ok])), shape=(n_types, n_types))
    m.sum_duplicates()
    return m


def type_pair_counts(
    signals: Signals,
    item_type: NDArray[np.int32],
    n_types: int,
    *,
    exclude: Literal["substitution", "any"] = "substitution",
) -> tuple[sp.csr_matrix, NDArray[np.bool_]]:
    """Directed co-purchase counts between types, from the co-purchase-only item pairs.

    Parameters
    ----------
    signals : Signals
    item_type : ndarray of int32, shape (n_items,)
        Type of each item (``-1`` unknown; such items are left out).
    n_types : int
    exclude : {"substitution", "any"}
        ``co_purchase_only_substitution`` or the strict ``co_purchase_only``.

    Returns
    -------
    counts : csr_matrix of float64, shape (n_types, n_types)
        ``[a, b]``: (decayed) co-purchases where an item of type ``a`` was bought before
        one of type ``b``; zero diagonal (same-type pairs are substitutes).
    fallback : ndarray of bool, shape (n_types,)
        Seed types whose row had no pair in the chosen signal and was taken from
        ``co_purchase_directed`` instead.
    """
    src = (
        signals.co_purchase_only_substitution
        if exclude == "substitution"
        else signals.co_purchase_only
    )
    counts = _aggregate(src, item_type, n_types)
    directed = _aggregate(signals.co_purchase_directed, item_type, n_types)
    empty = np.diff(counts.indptr) == 0
    fallback = empty & (np.diff(directed.indptr) > 0)
    if fallback.any():
        _log.info(
            "type transition: %d of %d seed types have no co-purchase-only pair; "
            "using their directed co-purchases",
            int(fallback.sum()),
            int((np.diff(directed.indptr) > 0).sum()),
        )
        counts = (counts + sp.diags(fallback.astype(np.float64)) @ directed).tocsr()
    return counts, fallback


# --------------------------------------------------------------------------- torch parts


def _resolve_device(device: str, owner: str) -> str:
    """``"cpu"`` or ``"cuda"`` by the shared rule of :func:`resolve_device`, as a str.

    The training statistics store the device as this str. Asking for CUDA when torch sees
    none is a :class:`ConfigError` naming ``owner``.
    """
    return resolve_device(device, owner=owner).type


def _build_module(n_types: int, config: TypeTransitionConfig) -> torch.nn.Module:
    """The type embeddings and the transition network (torch is imported here)."""
    import torch
    from torch import nn

    d, m = config.embedding_size, config.n_complements

    class TypeTransitionNet(nn.Module):
        """``type_embedding``: E, (n_types, d); ``transition``: d -> M * d."""

        def __init__(self) -> None:
            super().__init__()
            self.type_embedding = nn.Embedding(n_types, d)
            nn.init.normal_(self.type_embedding.weight, std=d**-0.5)
            self.transition = nn.Sequential(
                nn.Linear(d, config.hidden_size), nn.ReLU(), nn.Linear(config.hidden_size, m * d)
            )

        def complements(self, a: torch.Tensor) -> torch.Tensor:
            """Predicted complementary type embeddings of seed types ``a`` (B,): (B, M, d)."""
            return self.transition(self.type_embedding(a)).view(-1, m, d)

        def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            """``d(a, b)`` for seed types ``a`` (B,) and types ``b`` (B, K): (B, K)."""
            pred = self.complements(a)  # (B, M, d)
            target = self.type_embedding(b)  # (B, K, d)
            # |t - p|^2 = |t|^2 - 2 t.p + |p|^2, without materialising (B, K, M, d)
            cross = torch.bmm(target, pred.transpose(1, 2))  # (B, K, M)
            sq = target.pow(2).sum(-1, keepdim=True) - 2 * cross + pred.pow(2).sum(-1)[:, None]
            return sq.min(dim=-1).values.clamp_min(0.0)

        def distance_table(self, chunk: int = 256) -> torch.Tensor:
            """``d(a, b)`` for all type pairs: (n_types, n_types)."""
            e = self.type_embedding.weight
            rows = []
            for s in range(0, n_types, chunk):
                a = torch.arange(s, min(s + chunk, n_types), device=e.device)
                pred = self.complements(a).reshape(-1, d)
                sq = torch.cdist(pred, e, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
                rows.append(sq.view(len(a), m, n_types).min(dim=1).values)
            return torch.cat(rows)

    return TypeTransitionNet()


def transition_loss(
    d_pos: torch.Tensor,
    d_neg: torch.Tensor,
    weight: torch.Tensor,
    margin: float,
    neg_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted softmax loss of the positive type against negative types, with a margin.

    For pair ``i``: ``-log( exp(-(d_pos[i] + margin)) / (exp(-(d_pos[i] + margin))
    + sum_j exp(-d_neg[i, j])) )``, the sum over the negatives where ``neg_mask`` is true;
    the result is ``sum_i weight[i] * loss_i / sum_i weight[i]``.

    Parameters
    ----------
    d_pos : Tensor of float, shape (B,)
        Distance of each seed type to its positive (complementary) type.
    d_neg : Tensor of float, shape (B, K)
        Distances to the negative types.
    weight : Tensor of float, shape (B,)
        Pair weights (normalised co-purchase counts).
    margin : float
        Added to the positive's distance, so the loss keeps pulling until the positive
        is about ``margin`` closer than the negatives.
    neg_mask : Tensor of bool, shape (B, K), optional
        False for negatives to ignore (a sampled negative that is the positive itself).

    Returns
    -------
    Tensor, scalar
    """
    import torch

    pos_logit = -(d_pos + margin)
    neg_logit = -d_neg
    if neg_mask is not None:
        neg_logit = neg_logit.masked_fill(~neg_mask, float("-inf"))
    logits = torch.cat([pos_logit[:, None], neg_logit], dim=1)
    nll = -torch.log_softmax(logits, dim=1)[:, 0]
    return (weight * nll).sum() / weight.sum().clamp_min(1e-12)


# --------------------------------------------------------------------------- the model


class TypeTransition:
    """A fitted type-transition model: complementary types and type-diverse final lists.

    Build it with :func:`train_type_transition` (or ``TypeTransition(config).fit(...)``),
    or :meth:`load` a saved one. Serving methods are numpy only.

    Parameters
    ----------
    config : TypeTransitionConfig, optional

    Attributes
    ----------
    level_ : {"product_type", "category"}
        The catalog column whose values are the types.
    type_names_ : list of str, length n_types
        External id of each type (from the dataset's id map).
    item_type_ : ndarray of int32, shape (n_items,)
        Type of each dense item id (``-1`` unknown).
    score_table_ : ndarray of float32, shape (n_types, n_types)
        ``[a, b]``: the model's ``P(b | a)``, the probability that a co-purchase with seed
        type ``a`` is of type ``b``; ``0`` on the diagonal; NaN in rows of seed types
        without training pairs and in columns of types never seen in training.
    threshold_ : float
        Chance level ``1 / (n_seen_types - 1)``: a type scoring below it for a seed type is
        predicted *not* complementary to it.
    complements_ : ndarray of int32, shape (n_types, n_complements)
        Each seed type's predicted complementary types, best first: the top
        ``n_complements`` of its row of ``score_table_`` that reach ``threshold_``; ``-1``
        padding.
    known_seed_, known_type_ : ndarray of bool, shape (n_types,)
        Types with training pairs as seed; types seen in training at all.
    stats_ : dict
        Training summary (pairs, seconds, final loss, fallback seed types).
    """

    def __init__(self, config: TypeTransitionConfig | None = None) -> None:
        if config is None:
            config = TypeTransitionConfig()
        if not isinstance(config, TypeTransitionConfig):
            raise ConfigError(
                "The 'config' parameter of TypeTransition must be a TypeTransitionConfig. "
                f"Got {type(config).__name__} instead."
            )
        self.config = config

    def __repr__(self) -> str:
        fitted = hasattr(self, "score_table_")
        extra = f", level={self.level_!r}, n_types={self.n_types}" if fitted else ""
        return f"TypeTransition({self.config!r}{extra})"

    # -- fitting ----------------------------------------------------------------------
    def fit(
        self, train: Dataset, *, signals: Signals | None = None, show_progress: bool = False
    ) -> TypeTransition:
        """Train on the co-purchases of ``train``; see :func:`train_type_transition`."""
        import torch
        from tqdm.auto import tqdm

        cfg = self.config
        if signals is None:
            signals = Signals(train)
        elif signals.dataset is not train:
            raise DataError("the 'signals' parameter was computed on another dataset")
        t0 = time.perf_counter()
        level = resolve_level(train, cfg.level)
        item_type, names = _item_types(train, level)
        n_types = len(names)
        counts, fallback = type_pair_counts(signals, item_type, n_types, exclude=cfg.exclude)
        counts.data[counts.data < cfg.min_pair_count] = 0
        counts.eliminate_zeros()
        if counts.nnz == 0:
            raise DataError(
                f"{train.name}: no co-purchase between items of two different {level}s "
                f"(min_pair_count={cfg.min_pair_count}); cannot train a type-transition model"
            )
        coo = counts.tocoo()
        a = coo.row.astype(np.int64)
        b = coo.col.astype(np.int64)
        row_sum = np.asarray(counts.sum(axis=1)).ravel()
        w = (coo.data / row_sum[a]).astype(np.float32)
        known_seed = row_sum > 0
        known_type = np.zeros(n_types, dtype=bool)
        known_type[a] = True
        known_type[b] = True
        pool = np.flatnonzero(known_type)
        if len(pool) < 2:
            raise DataError(f"{train.name}: fewer than two {level}s co-purchased")

        device = _resolve_device(cfg.device, "TypeTransitionConfig")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            module = _build_module(n_types, cfg).to(device)
        opt = torch.optim.Adam(module.parameters(), lr=cfg.learning_rate)
        rng = np.random.default_rng(cfg.seed)
        a_t = torch.as_tensor(a, device=device)
        b_t = torch.as_tensor(b, device=device)
        w_t = torch.as_tensor(w, device=device)
        pool_t = torch.as_tensor(pool, device=device)
        n_pairs = len(a)
        loss_value = float("nan")
        module.train()
        for _ in tqdm(range(cfg.epochs), desc="type transition", disable=not show_progress):
            perm = torch.as_tensor(rng.permutation(n_pairs), device=device)
            total, weight_sum = 0.0, 0.0
            for s in range(0, n_pairs, cfg.batch_size):
                idx = perm[s : s + cfg.batch_size]
                ab, bb, wb = a_t[idx], b_t[idx], w_t[idx]
                draw = torch.as_tensor(
                    rng.integers(0, len(pool), size=(len(idx), cfg.negatives)), device=device
                )
                # the seed's own type is always a negative: its items are substitutes
                neg = torch.cat([pool_t[draw], ab[:, None]], dim=1)
                d = module.distance(ab, torch.cat([bb[:, None], neg], dim=1))
                loss = transition_loss(d[:, 0], d[:, 1:], wb, cfg.margin, neg != bb[:, None])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * float(wb.sum())
                weight_sum += float(wb.sum())
            loss_value = total / weight_sum
        module.eval()
        seconds = time.perf_counter() - t0

        self.level_: Level = level
        self.type_names_ = names
        self.item_type_ = item_type
        self.known_seed_ = known_seed
        self.known_type_ = known_type
        self.module_ = module
        self.stats_ = {
            "pairs": int(n_pairs),
            "seed_types": int(known_seed.sum()),
            "types": int(known_type.sum()),
            "fallback_seed_types": int(fallback.sum()),
            "seconds": round(seconds, 3),
            "loss": loss_value,
            "device": device,
        }
        self._compute_tables()
        _log.info(
            "type transition: %d %s pairs over %d types, %d epochs in %.1f s (loss %.4f)",
            n_pairs,
            level,
            int(known_type.sum()),
            cfg.epochs,
            seconds,
            loss_value,
        )
        return self

    def _compute_tables(self) -> None:
        import torch

        with torch.no_grad():
            dist = self.module_.distance_table().double().cpu().numpy()
        seen = self.known_type_
        logits = np.where(seen[None, :], -dist, -np.inf)
        np.fill_diagonal(logits, -np.inf)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        p[~self.known_seed_, :] = np.nan
        p[:, ~seen] = np.nan
        known = np.flatnonzero(self.known_seed_)
        p[known, known] = 0.0  # same type: a substitute, known not to be complementary
        self._set_scores(p.astype(np.float32))

    def _set_scores(self, table: NDArray[np.float32]) -> None:
        """Set ``score_table_`` and derive ``threshold_`` and the complement lists from it."""
        self.score_table_ = table
        self.threshold_ = 1.0 / max(int(self.known_type_.sum()) - 1, 1)
        m = self.config.n_complements
        filled = np.nan_to_num(table, nan=-1.0)
        top = np.argsort(-filled, axis=1, kind="stable")[:, :m]
        top_score = np.take_along_axis(filled, top, axis=1)
        ok = top_score >= self.threshold_
        self.complements_ = np.where(ok, top, -1).astype(np.int32)
        self.complement_scores_ = np.where(ok, top_score, np.nan).astype(np.float32)

    # -- serving (numpy) --------------------------------------------------------------
    @property
    def n_types(self) -> int:
        self._check_fitted()
        return len(self.type_names_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "score_table_"):
            raise NotFittedError(
                "This TypeTransition is not fitted yet; call train_type_transition(dataset) "
                "or TypeTransition.load(directory) first."
            )

    def type_of(self, items: NDArray[np.integer]) -> NDArray[np.int32]:
        """Type id of each item at the model's level.

        Parameters
        ----------
        items : ndarray of int, any shape
            Dense item ids; ``-1`` (padding) and ids the model never saw map to ``-1``.

        Returns
        -------
        ndarray of int32, same shape as ``items``
            Type ids (``-1`` unknown).
        """
        self._check_fitted()
        items = np.asarray(items)
        if items.dtype.kind not in "iu":
            raise DataError(f"The 'items' parameter must hold integers. Got {items.dtype} instead.")
        out = np.full(items.shape, -1, dtype=np.int32)
        ok = (items >= 0) & (items < len(self.item_type_))
        out[ok] = self.item_type_[items[ok]]
        return out

    def complement_types(
        self, seed_types: NDArray[np.integer], m: int | None = None
    ) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """Predicted complementary types of each seed type, best first.

        Parameters
        ----------
        seed_types : ndarray of int, shape (B,)
            Type ids (``-1`` unknown).
        m : int, optional
            List length; default ``config.n_complements``.

        Returns
        -------
        types : ndarray of int32, shape (B, m)
            Types whose ``P(type | seed type)`` reaches :attr:`threshold_`, best first,
            padded with ``-1`` (always ``-1`` for an unknown seed type).
        scores : ndarray of float32, shape (B, m)
            Their ``P(type | seed type)``; NaN where padded.
        """
        self._check_fitted()
        seed_types = _int_array(seed_types, "seed_types", ndim=1)
        if m is None:
            m = self.config.n_complements
        if not isinstance(m, int | np.integer) or m < 1:
            raise ConfigError(f"The 'm' parameter must be an int in [1, inf). Got {m!r} instead.")
        m = int(m)
        ok = (seed_types >= 0) & (seed_types < self.n_types)
        ok[ok] = self.known_seed_[seed_types[ok]]
        types = np.full((len(seed_types), m), -1, dtype=np.int32)
        scores = np.full((len(seed_types), m), np.nan, dtype=np.float32)
        if m <= self.config.n_complements:
            types[ok] = self.complements_[seed_types[ok], :m]
            scores[ok] = self.complement_scores_[seed_types[ok], :m]
            return types, scores
        rows = np.nan_to_num(self.score_table_[seed_types[ok]], nan=-1.0)
        w = min(m, self.n_types)
        top = np.argsort(-rows, axis=1, kind="stable")[:, :w]
        top_score = np.take_along_axis(rows, top, axis=1)
        keep = top_score >= self.threshold_
        types[ok, :w] = np.where(keep, top, -1)
        scores[ok, :w] = np.where(keep, top_score, np.nan)
        return types, scores

    def type_scores(
        self, seeds: NDArray[np.integer], items: NDArray[np.integer]
    ) -> NDArray[np.float32]:
        """How complementary each candidate's type is for its seed's type.

        Parameters
        ----------
        seeds : ndarray of int, shape (B,)
            Dense seed item ids (``-1`` unknown).
        items : ndarray of int, shape (B, N)
            Dense candidate item ids (``-1`` padding).

        Returns
        -------
        ndarray of float32, shape (B, N)
            ``P(candidate type | seed type)`` (higher is more complementary; ``0`` for the
            seed's own type); NaN where either type is unknown or was not seen in training.
        """
        self._check_fitted()
        seeds = _int_array(seeds, "seeds", ndim=1)
        items = _int_array(items, "items", ndim=2)
        if items.shape[0] != seeds.shape[0]:
            raise DataError(
                "The 'items' parameter must have one row per seed. "
                f"Got {items.shape[0]} rows for {seeds.shape[0]} seeds instead."
            )
        st = self.type_of(seeds)[:, None]
        ct = self.type_of(items)
        ok = (st >= 0) & (ct >= 0)
        out = np.full(items.shape, np.nan, dtype=np.float32)
        out[ok] = self.score_table_[np.broadcast_to(st, ct.shape)[ok], ct[ok]]
        return out

    def diversify(
        self,
        seeds: NDArray[np.integer],
        items: NDArray[np.integer],
        scores: NDArray[np.floating],
        k: int,
    ) -> NDArray[np.int64]:
        """Reorder each row's candidates into a type-diverse final list of ``k``.

        Dispatches on ``config.strategy``: ``"cap"`` (:meth:`diversify_capped`, the
        default), ``"rounds"`` (:meth:`diversify_rounds`) or ``"min_types"``
        (:meth:`diversify_min_types`). Same parameters and result.
        """
        if self.config.strategy == "cap":
            return self.diversify_capped(seeds, items, scores, k)
        if self.config.strategy == "min_types":
            return self.diversify_min_types(seeds, items, scores, k)
        return self.diversify_rounds(seeds, items, scores, k)

    def _ranked(
        self,
        seeds: NDArray[np.integer],
        items: NDArray[np.integer],
        scores: NDArray[np.floating],
        k: int,
    ) -> tuple[
        NDArray[np.int32],
        NDArray[np.int32],
        int,
        NDArray[np.intp],
        NDArray[np.bool_],
        NDArray[np.int32],
        NDArray[np.int32],
    ]:
        """Validate ``diversify`` arguments and put each row in score order.

        Returns ``(seeds, items, k, order, valid, seed_types, cand_types)``: ``order``
        (B, N) columns best first (a real candidate scored -inf or NaN still before the
        padding); ``valid`` and ``cand_types`` follow that order (-1 type for padding).
        """
        self._check_fitted()
        seeds = _int_array(seeds, "seeds", ndim=1)
        items = _int_array(items, "items", ndim=2)
        scores = np.asarray(scores, dtype=np.float64)
        if items.shape[0] != seeds.shape[0] or scores.shape != items.shape:
            raise DataError(
                "The 'items' and 'scores' parameters must have shape (len(seeds), N). "
                f"Got {items.shape} and {scores.shape} for {seeds.shape[0]} seeds instead."
            )
        if not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"The 'k' parameter must be an int in [1, inf). Got {k!r} instead.")
        valid = items >= 0
        key = np.where(np.isnan(scores), np.inf, -scores)
        key = np.where(np.isposinf(key), np.finfo(np.float64).max, key)
        key[~valid] = np.inf
        order = np.argsort(key, axis=1, kind="stable")
        valid = np.take_along_axis(valid, order, axis=1)
        st = self.type_of(seeds)
        ct = np.where(valid, self.type_of(np.take_along_axis(items, order, axis=1)), -1)
        return seeds, items, int(k), order, valid, st, ct

    def diversify_capped(
        self,
        seeds: NDArray[np.integer],
        items: NDArray[np.integer],
        scores: NDArray[np.floating],
        k: int,
    ) -> NDArray[np.int64]:
        """The score order, with at most ``max_per_type`` items of one type in the top ``k``
        and the reverse direction of a complement pair demoted.

        Position by position, the best remaining candidate whose type has fewer than
        ``max_per_type`` items in the list is taken (the others wait for the positions
        after); a candidate is *demoted* (placed only when nothing else is left) when its
        type is predicted not complementary for the seed's type while the seed's type is a
        predicted complement of *its* type: the reverse of an asymmetric pair, such as a
        camera for an SD-card seed. Unlike :meth:`diversify_rounds`, the candidates' own
        scores decide everything else, so a ranker's order is kept wherever types allow.

        Parameters and result as in :meth:`diversify_rounds`.
        """
        seeds, items, k, order, valid, st, ct = self._ranked(seeds, items, scores, k)
        n_rows, n = items.shape
        both = (st[:, None] >= 0) & (ct >= 0)
        sti = np.broadcast_to(np.maximum(st, 0)[:, None], ct.shape)
        cti = np.maximum(ct, 0)
        forward = np.where(both, self.score_table_[sti, cti], np.nan)
        backward = np.where(both, self.score_table_[cti, sti], np.nan)
        demoted = valid & both & (forward < self.threshold_) & (backward >= self.threshold_)
        demoted &= (ct != st[:, None]) & self.config.demote_reverse
        rows = np.arange(n_rows)
        left = valid.copy()
        count = np.zeros((n_rows, n), dtype=np.int32)  # items of each candidate's type placed
        picks = np.full((n_rows, k), -1, dtype=np.int64)
        cap = self.config.max_per_type
        for p in range(min(k, n)):
            tiers = (
                left & ~demoted & ((count < cap) | (ct < 0)),
                left & ~demoted,
                left,
            )
            col = np.full(n_rows, -1, dtype=np.int64)
            for tier in tiers:
                need = (col < 0) & tier.any(axis=1)
                col[need] = np.argmax(tier[need], axis=1)
            got = col >= 0
            if not got.any():
                break
            r, c = rows[got], col[got]
            picks[r, p] = order[r, c]
            left[r, c] = False
            t = ct[r, c]
            count[r] += ((ct[r] == t[:, None]) & (t[:, None] >= 0)).astype(np.int32)
        return picks

    def diversify_min_types(
        self,
        seeds: NDArray[np.integer],
        items: NDArray[np.integer],
        scores: NDArray[np.floating],
        k: int,
    ) -> NDArray[np.int64]:
        """The score order, changed only where its top ``k`` spans fewer than ``min_types``
        product types.

        Such a row gets the best-scored candidate of each type absent from its top ``k``,
        best first, until the top ``k`` spans ``min(min_types, k)`` types or no new type is
        left; each promoted candidate takes the place of the lowest-scored top-``k`` item
        whose type is already in the list above it (or that has no type), so no type is
        lost. The kept items stay in their order, the promoted ones follow them (they
        scored lower), then everything else in score order. A row whose top ``k`` already
        spans ``min_types`` types is returned unchanged; items without a type never count
        as a type. The seed and the model's predictions play no part: this is the least
        intervention that guarantees ``min(min_types, k, types available)`` types.

        Parameters and result as in :meth:`diversify_rounds`.
        """
        seeds, items, k, order, valid, st, ct = self._ranked(seeds, items, scores, k)
        return _min_types_order(order, valid, ct, k, self.config.min_types)

    def diversify_rounds(
        self,
        seeds: NDArray[np.integer],
        items: NDArray[np.integer],
        scores: NDArray[np.floating],
        k: int,
    ) -> NDArray[np.int64]:
        """Reorder each row's candidates into a type-diverse final list of ``k``.

        The list is built in this order (scores only order candidates within a step):

        1. *Rounds over the predicted complementary types*: round ``j`` takes the
           ``j``-th best candidate of each of the seed type's :attr:`complements_`, in the
           type order of that list, for ``j < max_per_type``. When fewer than
           ``min_types`` complementary types have candidates, the best candidate of each
           next best-scoring other (not demoted) type joins round 0, until the list spans
           ``min_types`` types.
        2. *The rest* by score, at most ``max_per_type`` per type: candidates of types
           neither predicted complementary nor demoted (including unknown types, which are
           never capped, and every candidate when the seed's type is unknown).
        3. Candidates held back by the ``max_per_type`` cap, by score.
        4. *Demoted*, by score: candidates of the seed's own type (substitutes) and of types
           predicted *not* complementary (``P(type | seed type)`` below :attr:`threshold_`:
           an SD card seed does not get cameras while anything else is left).

        Every real candidate is placed, so a row with at least ``k`` real candidates gets
        ``k`` of them; padding (``item < 0``) is never returned.

        Parameters
        ----------
        seeds : ndarray of int, shape (B,)
            Dense seed item ids (``-1`` unknown).
        items : ndarray of int, shape (B, N)
            Candidates, padded with ``-1``; in any order.
        scores : ndarray of float, shape (B, N)
            Their scores, higher better (NaN and padding count as ``-inf``).
        k : int
            Final list length.

        Returns
        -------
        ndarray of int64, shape (B, k)
            Column indices into ``items`` (distinct within a row), ``-1`` padding when a
            row has fewer than ``k`` real candidates.
        """
        seeds, items, k, order, valid, st, ct = self._ranked(seeds, items, scores, k)
        n_rows, n = items.shape
        cfg = self.config
        cap, n_comp = cfg.max_per_type, cfg.n_complements
        if n == 0:
            return np.full((n_rows, k), -1, dtype=np.int64)
        pos = np.broadcast_to(np.arange(n, dtype=np.int64), (n_rows, n))

        # tier of each candidate relative to its seed's type
        seed_known = st >= 0
        comp = np.full((n_rows, n_comp), -1, dtype=np.int32)
        comp[seed_known] = self.complements_[st[seed_known]]
        match = (ct[:, :, None] == comp[:, None, :]) & (ct >= 0)[:, :, None]
        is_comp = match.any(axis=2)
        type_rank = match.argmax(axis=2)
        both = seed_known[:, None] & (ct >= 0)
        p = np.full((n_rows, n), np.nan, dtype=np.float32)
        p[both] = self.score_table_[np.broadcast_to(st[:, None], ct.shape)[both], ct[both]]
        demote = valid & both & ((ct == st[:, None]) | (p < self.threshold_))
        rest = valid & ~is_comp & ~demote

        # j: how many better candidates of the same (known) type the row has
        flat_t = np.where(ct >= 0, ct, -1).astype(np.int64).ravel()
        key = np.arange(n_rows, dtype=np.int64).repeat(n) * (self.n_types + 1) + flat_t + 1
        by_type = np.argsort(key, kind="stable")
        sk = key[by_type]
        start = np.r_[0, np.flatnonzero(sk[1:] != sk[:-1]) + 1]
        run = np.zeros(len(sk), dtype=np.int64)
        run[start[1:]] = start[1:] - start[:-1]
        j_sorted = np.arange(len(sk)) - np.cumsum(run)
        j = np.empty(len(sk), dtype=np.int64)
        j[by_type] = j_sorted
        j = np.where(ct >= 0, j.reshape(n_rows, n), 0)

        # min_types: promote the best candidate of the best other types into round 0
        n_comp_types = (is_comp & (j == 0)).sum(axis=1)
        need = np.maximum(cfg.min_types - n_comp_types, 0)
        eligible = rest & (ct >= 0) & (j == 0)
        elig_rank = np.cumsum(eligible, axis=1) - 1
        promote = eligible & (elig_rank < need[:, None])

        group = np.full((n_rows, n), 4, dtype=np.int64)  # padding
        group[demote] = 3
        group[(is_comp | rest) & (j >= cap)] = 2
        group[rest & (j < cap)] = 1
        round0 = (is_comp & (j < cap)) | promote
        group[round0] = 0
        width = n_comp + cfg.min_types + 1
        sub = np.where(is_comp, j * width + type_rank, n_comp + elig_rank)
        sub = np.where(round0, sub, 0)
        rank_key = (group * (cap * width + 1) + sub) * n + pos
        final = np.argsort(rank_key, axis=1, kind="stable")[:, :k]
        out = np.take_along_axis(order, final, axis=1).astype(np.int64)
        out[~np.take_along_axis(valid, final, axis=1)] = -1
        if out.shape[1] < k:
            out = np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=-1)
        return out

    # -- persistence ------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write the model to ``directory`` (replaced whole, via a temporary directory).

        Files: ``weights.pt`` (torch ``state_dict``) and the ``"type_transition"`` state of
        :func:`~recset.storage.write_state`: ``type_transition.json`` (config, level, type
        names, training stats) and ``type_transition.npz`` (item -> type map and the
        known-type masks).
        """
        import torch

        self._check_fitted()
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            state = {k: v.detach().cpu() for k, v in self.module_.state_dict().items()}
            torch.save(state, tmp / _WEIGHTS)
            meta = {
                "config": self.config.model_dump(mode="json"),
                "level": self.level_,
                "n_types": self.n_types,
                "n_items": len(self.item_type_),
                "type_names": self.type_names_,
                "stats": self.stats_,
            }
            arrays = {
                "item_type": self.item_type_,
                "known_seed": self.known_seed_,
                "known_type": self.known_type_,
            }
            write_state(tmp, _KIND, FORMAT_VERSION, meta=meta, arrays=arrays)
            _swap_in(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _log.debug("type transition: saved to %s", directory)

    @classmethod
    def load(cls, directory: Path, *, device: str = "auto") -> TypeTransition:
        """Load a model written by :meth:`save`.

        Parameters
        ----------
        directory : Path
        device : {"auto", "cpu", "cuda"}
            Where the torch weights go (the serving tables are numpy either way; across
            devices they agree up to float rounding).

        Raises
        ------
        DataError
            A file is missing, unreadable or corrupt (the message names it).
        ConfigError
            The files do not fit together or this code (format version, config, shapes).
        """
        import torch

        directory = Path(directory)
        for name in (_META, _ARRAYS, _WEIGHTS):
            if not (directory / name).is_file():
                raise DataError(f"{directory / name}: missing; not a saved TypeTransition")
        meta_path = directory / _META
        arrays_path = directory / _ARRAYS
        try:
            state = read_state(directory, _KIND, FORMAT_VERSION)
        except StorageError as exc:
            raise _refusal(directory, exc) from None
        except (EOFError, zipfile.BadZipFile) as exc:  # a truncated .npz
            raise DataError(f"{arrays_path}: unreadable or incomplete ({exc!r})") from None
        meta = state.meta
        try:
            raw_config = meta["config"]
            level = meta["level"]
            names = [str(x) for x in meta["type_names"]]
            n_types, n_items = int(meta["n_types"]), int(meta["n_items"])
            stats = dict(meta.get("stats", {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{meta_path}: unreadable or incomplete ({exc!r})") from None
        try:
            config = TypeTransitionConfig.model_validate(raw_config)
        except ValidationError as exc:
            raise ConfigError(f"{meta_path}: invalid config: {exc}") from None
        if level not in ("product_type", "category") or len(names) != n_types:
            raise ConfigError(f"{meta_path}: inconsistent level / type names")

        try:
            item_type = state.array("item_type", arrays_path).astype(np.int32)
            known_seed = state.array("known_seed", arrays_path).astype(bool)
            known_type = state.array("known_type", arrays_path).astype(bool)
        except StorageError as exc:
            raise DataError(f"{arrays_path}: unreadable or incomplete ({exc})") from None
        if (
            item_type.shape != (n_items,)
            or known_seed.shape != (n_types,)
            or known_type.shape != (n_types,)
            or (item_type.size and int(item_type.max()) >= n_types)
        ):
            raise ConfigError(
                f"{arrays_path}: arrays do not match {meta_path.name} "
                f"({n_items} items, {n_types} types)"
            )

        dev = _resolve_device(device, "TypeTransition.load")
        weights_path = directory / _WEIGHTS
        try:
            state = torch.load(weights_path, map_location=dev, weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
            raise DataError(f"{weights_path}: unreadable or corrupt ({exc!r})") from None
        module = _build_module(n_types, config).to(dev)
        try:
            module.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{weights_path}: weights do not match {meta_path.name} ({n_types} types, "
                f"embedding_size={config.embedding_size}, n_complements={config.n_complements}"
                f"): {exc}"
            ) from None
        module.eval()
        obj = cls(config)
        obj.level_ = level
        obj.type_names_ = names
        obj.item_type_ = item_type
        obj.known_seed_ = known_seed
        obj.known_type_ = known_type
        obj.module_ = module
        obj.stats_ = stats
        obj._compute_tables()
        return obj


def train_type_transition(
    train: Dataset,
    config: TypeTransitionConfig | None = None,
    *,
    signals: Signals | None = None,
    show_progress: bool = False,
) -> TypeTransition:
    """Train the type-transition model on the co-purchases of ``train``.

    Parameters
    ----------
    train : Dataset
        Its catalog gives the types (``config.level``), its baskets the co-purchases.
    config : TypeTransitionConfig, optional
    signals : Signals, optional
        Precomputed signals of ``train`` (shared with the recall sets); computed if absent.
    show_progress : bool
        A tqdm bar over the epochs.

    Returns
    -------
    TypeTransition

    Raises
    ------
    DataError
        No type (neither product types nor categories), or no co-purchase across types.

    Examples
    --------
    >>> from recset.data import Dataset
    >>> from recset.data.synthetic import SyntheticConfig, generate
    >>> syn = generate(SyntheticConfig(n_items=2000, seed=0))
    >>> ds = Dataset.from_frames(syn.catalog, syn.events)
    >>> tt = train_type_transition(ds, TypeTransitionConfig(epochs=100, device="cpu"))
    >>> camera = ds.product_types.index(["camera"])
    >>> types, _ = tt.complement_types(camera)
    >>> sorted(tt.type_names_[t] for t in types[0])
    ['camera_bag', 'lens', 'sd_card', 'tripod']
    """
    return TypeTransition(config).fit(train, signals=signals, show_progress=show_progress)


# --------------------------------------------------------------------------- helpers


def _min_types_order(
    order: NDArray[np.intp],
    valid: NDArray[np.bool_],
    types: NDArray[np.integer],
    k: int,
    min_types: int,
) -> NDArray[np.int64]:
    """Columns (B, k) of :meth:`TypeTransition.diversify_min_types` (-1 after the real ones).

    ``order`` is each row's columns in score order; ``valid`` and ``types`` (-1: no type)
    follow it.
    """
    n_rows, n = order.shape
    pos = np.broadcast_to(np.arange(n), (n_rows, n))
    # first[r, j]: position j holds the best-scored candidate of its type in the row
    by_type = np.argsort(np.where(types >= 0, types, np.iinfo(np.int64).max), axis=1, kind="stable")
    sorted_types = np.take_along_axis(types, by_type, 1)
    head = np.ones((n_rows, n), dtype=bool)
    head[:, 1:] = sorted_types[:, 1:] != sorted_types[:, :-1]
    first = np.zeros((n_rows, n), dtype=bool)
    np.put_along_axis(first, by_type, head & (sorted_types >= 0), 1)
    first &= valid
    in_top = pos < k
    n_types = (first & in_top).sum(axis=1)
    want = np.maximum(min(min_types, k) - n_types, 0)
    # the best new type candidates beyond the top k, at most `want` of them
    new = first & ~in_top
    promote = new & (np.cumsum(new, axis=1) <= want[:, None])
    n_promote = promote.sum(axis=1)
    # room: the lowest-scored top-k slots whose type is already above them (or untyped)
    spare = in_top & ~first
    from_bottom = np.cumsum(spare[:, ::-1], axis=1)[:, ::-1]
    removed = spare & (from_bottom <= n_promote[:, None])
    group = np.where(in_top & ~removed, 0, np.where(promote, 1, 2))
    rearranged = np.argsort(group * n + pos, axis=1, kind="stable")[:, :k]
    picks = np.take_along_axis(order, rearranged, 1).astype(np.int64)
    ok = np.take_along_axis(valid, rearranged, 1)
    out = np.full((n_rows, k), -1, dtype=np.int64)
    out[:, : picks.shape[1]] = np.where(ok, picks, -1)
    return out


def _int_array(x: Any, name: str, *, ndim: int) -> NDArray[np.int64]:
    arr = np.asarray(x)
    if arr.ndim != ndim or (arr.size and arr.dtype.kind not in "iu"):
        raise DataError(
            f"The '{name}' parameter must be a {ndim}-D integer array. "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    return arr.astype(np.int64, copy=False)


def _refusal(directory: Path, exc: StorageError) -> RecsetError:
    """The error for a :class:`StorageError` of ``read_state``: a ``DataError`` when a file is
    unreadable or corrupt, a ``ConfigError`` saying to retrain when the directory was written
    by another recset version (an older layout, another kind or format version)."""
    try:
        doc = json.loads((directory / _META).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return DataError(f"{exc} (unreadable or corrupt)")
    if not isinstance(doc, dict):
        return DataError(f"{exc} (unreadable or corrupt)")
    if doc.get("kind") == _KIND and doc.get("format_version") == FORMAT_VERSION:
        return DataError(f"{directory / _ARRAYS}: unreadable or incomplete ({exc})")
    return ConfigError(f"{exc}; {_RETRAIN}")


def _swap_in(tmp: Path, directory: Path) -> None:
    """Replace ``directory`` by ``tmp`` (a rename; the old one is removed afterwards)."""
    if not directory.exists():
        os.replace(tmp, directory)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
    os.rmdir(old)
    os.replace(directory, old)
    try:
        os.replace(tmp, directory)
    except BaseException:
        os.replace(old, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)
