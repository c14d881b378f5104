"""``gnn_neighbors``: nearest neighbours in the item embedding space of the neural stage.

The embeddings are an artifact of the neural stage: training writes them
(``recset.personalization.save_item_embeddings``: an ``.npz`` with ``embeddings`` and
``query_embeddings``), this source only reads them, so recall never trains a model or
imports torch. It reads item embeddings of shape ``(n_items, d)`` from an ``.npy`` file (or
an ``.npz`` holding one array, or an array named ``embeddings``), rows in dense item id
order, indexes them with Annoy and precomputes every item's ``max_candidates`` nearest
neighbours at fit time, so recall is pure numpy and the file is not needed after ``fit``.
When the ``.npz`` also holds ``query_embeddings`` (same shape), a seed searches with its row
of that matrix (the trained model's complement-side vector: asymmetric scores) instead of
its own embedding.

Until the neural stage has produced a file (``embeddings`` unset or the file missing), the
source logs a warning when fitted and answers nothing: every row is padded. All-zero
embedding rows mean "no embedding": such items are neither proposed nor answered;
unavailable items are never proposed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from recset.data import Dataset
from recset.errors import ConfigError
from recset.recall._base import (
    Candidates,
    RecallBase,
    SourceConfig,
    compact,
    register_recall,
)
from recset.recall.complementary_of_similar import neighbor_table
from recset.signals import Signals

_log = logging.getLogger(__name__)


class GnnNeighborsConfig(SourceConfig):
    """Config of :class:`GnnNeighborsRecall`.

    Attributes
    ----------
    embeddings : str or None
        Path of the item embeddings (``.npy`` or ``.npz``), shape (n_items, d), e.g. written
        by ``recset.personalization.save_item_embeddings``; ``None``: the source answers
        nothing.
    metric : {"angular", "dot"}
        Cosine similarity, or inner product (for embeddings trained with a dot-product
        score, where the norm carries popularity).
    search : {"annoy", "exact"}
        Annoy's approximate search, or every item searched (the true nearest, the same on
        every machine; for catalogs of up to a few hundred thousand items), as
        ``complementary_of_similar``'s ``search``.
    n_trees : int
        Trees of the Annoy index.
    search_k : int
        Annoy's ``search_k`` (``-1``: ``n_trees * max_candidates``).
    max_candidates : int
        Neighbours precomputed and returned at most per seed.
    seed : int
        Seed of the Annoy index.
    """

    embeddings: str | None = None
    metric: Literal["angular", "dot"] = "angular"
    search: Literal["annoy", "exact"] = "annoy"
    n_trees: int = Field(20, ge=1)
    search_k: int = Field(-1, ge=-1)
    max_candidates: int = Field(100, ge=1)
    seed: int = 0


QUERY_EMBEDDINGS = "query_embeddings"
"""Name of the optional ``.npz`` array of seed-side search vectors."""


def load_embeddings(path: Path) -> NDArray[np.float32]:
    """Read an embedding matrix from ``.npy`` / ``.npz`` (without pickle).

    Returns
    -------
    ndarray of float32, shape (n, d)

    Raises
    ------
    ConfigError
        When the file holds no single 2-D finite array.
    """
    return load_embedding_file(path)[0]


def load_embedding_file(
    path: Path,
) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    """Read item embeddings and, when the file has them, the seed-side query vectors.

    Parameters
    ----------
    path : Path
        An ``.npy`` file, or an ``.npz`` holding one array or an array named
        ``embeddings`` (and then optionally ``query_embeddings``).

    Returns
    -------
    embeddings : ndarray of float32, shape (n, d)
    queries : ndarray of float32, shape (n, d), or None
        The ``query_embeddings`` array of an ``.npz`` that also holds ``embeddings``;
        ``None`` otherwise.

    Raises
    ------
    ConfigError
        When the file holds no single 2-D finite array, or ``query_embeddings`` is not a
        finite array of the shape of ``embeddings``.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read item embeddings ({exc})") from exc
    queries = None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            names = list(data.files)
            if "embeddings" in names:
                arr = data["embeddings"]
                if QUERY_EMBEDDINGS in names:
                    queries = data[QUERY_EMBEDDINGS]
            elif len(names) == 1:
                arr = data[names[0]]
            else:
                raise ConfigError(
                    f"{path}: expected one array or an array named 'embeddings'. "
                    f"Got arrays {names} instead."
                )
    else:
        arr = data
    if arr.ndim != 2:
        raise ConfigError(
            f"{path}: item embeddings must be a 2-D array (n_items, d). Got shape {arr.shape}."
        )
    arr = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ConfigError(f"{path}: item embeddings hold non-finite values")
    if queries is not None:
        if queries.shape != arr.shape:
            raise ConfigError(
                f"{path}: '{QUERY_EMBEDDINGS}' must have the shape of 'embeddings' "
                f"{arr.shape}. Got {queries.shape} instead."
            )
        queries = np.asarray(queries, dtype=np.float32)
        if not np.isfinite(queries).all():
            raise ConfigError(f"{path}: '{QUERY_EMBEDDINGS}' hold non-finite values")
    return arr, queries


@register_recall("gnn_neighbors")
class GnnNeighborsRecall(RecallBase):
    """Nearest items in the GNN embedding space.

    Fitted state
    ------------
    neighbors_ : ndarray of int32, shape (n_items, max_candidates)
        Nearest available items, most similar first, padded with -1 (width 0 when there
        are no embeddings).
    neighbor_sim_ : ndarray of float32, same shape
        Cosine similarity or inner product, padded with -inf.
    """

    basis = "behaviour"

    Config: ClassVar[type[SourceConfig]] = GnnNeighborsConfig
    config: GnnNeighborsConfig
    _state: ClassVar[tuple[str, ...]] = ("neighbors_", "neighbor_sim_")

    def fit(
        self,
        dataset: Dataset,
        signals: Signals | None = None,
        *,
        fitted: Mapping[str, RecallBase] | None = None,
    ) -> Self:
        """Index the embeddings file and precompute every item's neighbours.

        Seeds search with the file's ``query_embeddings`` when it has them.

        Parameters
        ----------
        dataset : Dataset
        signals, fitted
            Unused.

        Returns
        -------
        self

        Raises
        ------
        ConfigError
            When the file is unreadable or its row count is not ``dataset.n_items``.
        """
        cfg = self.config
        n = dataset.n_items
        path = Path(cfg.embeddings) if cfg.embeddings else None
        if path is None or not path.is_file():
            _log.warning(
                "gnn_neighbors: %s; the source answers nothing until the neural stage "
                "writes item embeddings",
                "no 'embeddings' file configured"
                if path is None
                else f"embeddings file {str(path)!r} not found",
            )
            self.neighbors_ = np.full((n, 0), -1, dtype=np.int32)
            self.neighbor_sim_ = np.full((n, 0), -np.inf, dtype=np.float32)
            return self
        vectors, queries = load_embedding_file(path)
        # with query vectors the seed searches with its complement-side vector (asymmetric)
        return self._index(vectors, dataset, str(path), queries)

    def _index(
        self,
        vectors: NDArray[np.float32],
        dataset: Dataset,
        origin: str,
        queries: NDArray[np.float32] | None = None,
    ) -> Self:
        """Index ``vectors`` (n_items, d) and precompute every item's neighbours.

        ``queries`` (n_items, d): the vectors seeds search with (default ``vectors``).
        """
        cfg = self.config
        n = dataset.n_items
        if vectors.shape[0] != n:
            raise ConfigError(
                f"{origin}: item embeddings must have one row per catalog item: expected shape "
                f"({n}, d). Got {vectors.shape} instead."
            )
        has_vec = np.any(vectors != 0, axis=1)
        self.neighbors_, self.neighbor_sim_ = neighbor_table(
            vectors,
            has_vec & dataset.catalog.available,
            has_vec,
            cfg.max_candidates,
            metric=cfg.metric,
            n_trees=cfg.n_trees,
            search_k=cfg.search_k,
            seed=cfg.seed,
            exclude_self=True,
            query_vectors=queries,
            exact=cfg.search == "exact",
        )
        _log.info(
            "gnn_neighbors: %d items with embeddings of dim %d from %s",
            int(has_vec.sum()),
            vectors.shape[1],
            origin,
        )
        return self

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        """The nearest neighbours of each seed in the embedding space.

        Parameters
        ----------
        seeds : ndarray of int32, shape (B,)
            Dense item ids; ``-1`` (unknown to the dataset) gets an empty row.
        n : int

        Returns
        -------
        Candidates of shape (B, n)
        """
        self._check_fitted()
        seeds = np.asarray(seeds, dtype=np.int32).ravel()
        n_items, width = self.neighbors_.shape
        if width == 0:
            return Candidates.empty(len(seeds), n)
        known = (seeds >= 0) & (seeds < n_items)
        safe = np.where(known, seeds, 0)
        item = self.neighbors_[safe]
        score = self.neighbor_sim_[safe]
        keep = known[:, None] & (item >= 0) & (item != seeds[:, None])
        return compact(item, score, keep, n)
