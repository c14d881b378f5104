"""The :class:`Engine`: build / save / load / recommend — the one object a host imports."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from recset.config import Config, config_from_dict
from recset.data import Dataset, IdMap, catalog_frame
from recset.errors import StorageError
from recset.recall import Candidates, RecallBase, get_recall

if TYPE_CHECKING:
    from recset.storage import ArtifactRecord

_log = logging.getLogger(__name__)

ENGINE_ARTIFACT = "engine"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Reason:
    """Why an item was recommended: a source that proposed it, with its score and rank (0-based)."""

    source: str
    score: float
    rank: int


@dataclass(frozen=True)
class Recommendation:
    """One recommended item (external id), its final score and the reasons behind it."""

    item_id: str
    score: float
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class Batch:
    """Recommendations for a batch of seeds in dense ids (see :meth:`Engine.recommend_many`).

    ``item`` (n_seeds, k) int32 padded with -1; ``score`` float32 padded with -inf; ``source``
    (n_seeds, k) int16 index into ``sources`` of the source that placed the item, -1 for padding;
    ``rank`` (n_seeds, k) the item's 0-based rank in that source's own list.
    """

    item: NDArray[np.int32]
    score: NDArray[np.float32]
    source: NDArray[np.int16]
    rank: NDArray[np.int32]
    sources: tuple[str, ...]


class Engine:
    """Complementary-product recommender: recall sources, merged, filtered, served.

    Build it from a :class:`~recset.data.Dataset` with :meth:`build`, persist it with
    :meth:`save` and bring it back in a host process with :meth:`load`.

    Examples
    --------
    >>> from recset.data.synthetic import SyntheticConfig, generate
    >>> from recset.data import Dataset
    >>> syn = generate(SyntheticConfig(n_items=300, seed=1))
    >>> engine = Engine.build(Dataset.from_frames(syn.catalog, syn.events))
    >>> recs = engine.recommend(syn.catalog.item_id[0], k=3)
    >>> len(recs), recs[0].reasons[0].source
    (3, 'popular')
    """

    def __init__(
        self,
        config: Config,
        items: IdMap,
        available: NDArray[np.bool_],
        sources: dict[str, RecallBase],
    ) -> None:
        if len(available) != len(items):
            raise ValueError(
                f"The 'available' parameter must have length {len(items)}. "
                f"Got {len(available)} instead."
            )
        if config.build.fallback not in sources:
            raise ValueError(f"the fallback source {config.build.fallback!r} is not fitted")
        self.config = config
        self.items = items
        self.available = np.asarray(available, dtype=bool)
        # Fallback last: it fills what the other sources leave short.
        names = [n for n in sources if n != config.build.fallback] + [config.build.fallback]
        self.sources = {n: sources[n] for n in names}

    def __repr__(self) -> str:
        return f"Engine(items={len(self.items)}, sources={list(self.sources)})"

    # -- building ---------------------------------------------------------------------
    @classmethod
    def build(
        cls, dataset: Dataset, config: Config | None = None, *, show_progress: bool = False
    ) -> Engine:
        """Fit every configured recall source on ``dataset``."""
        from tqdm.auto import tqdm

        config = config or config_from_dict({})
        fitted: dict[str, RecallBase] = {}
        specs = config.source_configs()
        for name, src_cfg in tqdm(specs.items(), desc="fit sources", disable=not show_progress):
            fitted[name] = get_recall(name)(src_cfg).fit(dataset)  # type: ignore[attr-defined]
        _log.info("built engine on %r with sources %s", dataset, list(fitted))
        return cls(config, dataset.items, dataset.catalog.available.copy(), fitted)

    # -- serving ----------------------------------------------------------------------
    def recommend_many(
        self,
        seeds: NDArray[np.int32],
        k: int = 10,
        *,
        exclude: NDArray[np.bool_] | None = None,
    ) -> Batch:
        """Top-``k`` for a batch of dense seed ids (``-1`` = unknown seed, cold-start path).

        Sources are merged in order: each candidate keeps the first source that placed it; the
        fallback fills the rest. The seed itself and unavailable items are never returned.
        ``exclude`` (n_seeds, n_items) bool, optional, removes further items per seed.
        """
        if k < 1:
            raise ValueError(f"The 'k' parameter must be an int in [1, inf). Got {k} instead.")
        seeds = np.asarray(seeds, dtype=np.int32)
        n = max(k * 3, k + 20)
        parts: list[Candidates] = []
        for src in self.sources.values():
            parts.append(src.recall_many(seeds, n))  # type: ignore[attr-defined]
        item = np.concatenate([p.item for p in parts], axis=1)
        score = np.concatenate([p.score for p in parts], axis=1)
        source = np.concatenate(
            [np.full(p.item.shape, i, dtype=np.int16) for i, p in enumerate(parts)], axis=1
        )
        rank = np.concatenate(
            [
                np.broadcast_to(np.arange(p.item.shape[1], dtype=np.int32), p.item.shape)
                for p in parts
            ],
            axis=1,
        )
        safe = np.maximum(item, 0)
        keep = (item >= 0) & self.available[safe] & (item != seeds[:, None])
        if exclude is not None:
            keep &= ~np.take_along_axis(exclude, safe, axis=1)
        keep &= _first_occurrence(item)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        item = np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(item, order, 1), -1)
        score = np.where(item >= 0, np.take_along_axis(score, order, 1), -np.inf)
        source = np.where(item >= 0, np.take_along_axis(source, order, 1), -1)
        rank = np.where(item >= 0, np.take_along_axis(rank, order, 1), -1)
        return Batch(
            item.astype(np.int32),
            score.astype(np.float32),
            source.astype(np.int16),
            rank.astype(np.int32),
            tuple(self.sources),
        )

    def recommend(
        self,
        seed_item: str,
        user: str | None = None,
        k: int = 10,
        exclude: Iterable[str] = (),
    ) -> list[Recommendation]:
        """Up to ``k`` complements of ``seed_item`` (external id), best first.

        An unknown seed never raises: it gets the cold-start path (globally popular items).
        ``user`` is accepted for the personalization stage and not used by recall alone.
        Items in ``exclude`` (external ids) are never returned.
        """
        seed = self.items.index_one(seed_item)
        ex_idx = self.items.index(list(exclude)) if exclude else np.zeros(0, np.int32)
        ex_idx = ex_idx[ex_idx >= 0]
        n = k + len(ex_idx)
        batch = self.recommend_many(np.array([seed], dtype=np.int32), n)
        items, scores, srcs, ranks = batch.item[0], batch.score[0], batch.source[0], batch.rank[0]
        valid = (items >= 0) & ~np.isin(items, ex_idx)
        items, scores, srcs, ranks = (a[valid][:k] for a in (items, scores, srcs, ranks))
        return [
            Recommendation(
                item_id=self.items.id_of(int(i)),
                score=float(s),
                reasons=(Reason(batch.sources[int(src)], float(s), int(r)),),
            )
            for i, s, src, r in zip(items, scores, srcs, ranks, strict=True)
        ]

    # -- persistence ------------------------------------------------------------------
    def save(
        self,
        target: str | os.PathLike[str],
        *,
        artifact_dir: str | os.PathLike[str] | None = None,
        dataset: Dataset | None = None,
    ) -> ArtifactRecord:
        """Write the engine to a store (a directory path or a SQLAlchemy URL).

        The fitted sources go to a new version of the ``engine`` artifact (written to a
        temporary directory, then renamed) which becomes the active one; when ``dataset`` is
        given its catalog replaces the store's catalog in one transaction.
        """
        from recset.storage import Store

        with Store.open(target, artifact_dir=artifact_dir) as store:
            if dataset is not None:
                store.replace_catalog(catalog_frame(dataset))
            return store.save_artifact(
                ENGINE_ARTIFACT,
                self._write,
                params=self.config.to_dict(),
                config_hash=self.config.hash(),
                metrics={"n_items": len(self.items)},
            )

    def _write(self, directory: Path) -> None:
        meta = {
            "format_version": _FORMAT_VERSION,
            "config": self.config.to_dict(),
            "config_hash": self.config.hash(),
            "sources": list(self.sources),
        }
        (directory / "engine.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        # ids as JSON: exact for any string (numpy fixed-width strings drop trailing NULs)
        (directory / "items.json").write_text(
            json.dumps(self.items.values.tolist()), encoding="utf-8"
        )
        np.savez(directory / "items.npz", allow_pickle=False, available=self.available)
        for name, src in self.sources.items():
            src.save(directory / "sources" / name)

    @classmethod
    def load(
        cls,
        target: str | os.PathLike[str],
        *,
        artifact_dir: str | os.PathLike[str] | None = None,
        version: int | None = None,
    ) -> Engine:
        """Load the active (or a given) version of the engine from a store.

        Item availability comes from the store's catalog when it holds one, so marking an item
        unavailable there takes effect at the next load without a rebuild.
        """
        from recset.storage import Store

        with Store.open(target, artifact_dir=artifact_dir, create=False) as store:
            record = (
                store.artifact(ENGINE_ARTIFACT, version)
                if version is not None
                else store.active_artifact(ENGINE_ARTIFACT)
            )
            if record is None:
                raise StorageError(f"{store.url}: no active engine; run `recset build` first")
            path = store.artifact_path(record)
            catalog = store.read_catalog()
        return cls._read(path, catalog)

    @classmethod
    def _read(cls, path: Path, catalog: object) -> Engine:
        import pandas as pd

        meta = json.loads((path / "engine.json").read_text(encoding="utf-8"))
        if meta.get("format_version") != _FORMAT_VERSION:
            raise StorageError(
                f"{path}: engine format version {meta.get('format_version')}, "
                f"this recset reads {_FORMAT_VERSION}; rebuild the engine"
            )
        config = config_from_dict(meta["config"], where=str(path / "engine.json"))
        items = IdMap(json.loads((path / "items.json").read_text(encoding="utf-8")))
        with np.load(path / "items.npz", allow_pickle=False) as z:
            available = z["available"].astype(bool)
        if isinstance(catalog, pd.DataFrame) and len(catalog):
            flags = pd.Series(catalog["available"].to_numpy(bool), index=catalog["item_id"])
            current = flags.reindex(items.values)
            available = np.where(current.isna(), available, current.fillna(True).to_numpy(bool))
        sources = {n: get_recall(n).load(path / "sources" / n) for n in meta["sources"]}
        return cls(config, items, available, sources)


def _first_occurrence(item: NDArray[np.int32]) -> NDArray[np.bool_]:
    """Mask (same shape) that is true at the first occurrence of each id within a row."""
    n_rows, width = item.shape
    order = np.argsort(item, axis=1, kind="stable")
    sorted_ = np.take_along_axis(item, order, axis=1)
    first_sorted = np.ones_like(sorted_, dtype=bool)
    first_sorted[:, 1:] = sorted_[:, 1:] != sorted_[:, :-1]
    out = np.empty_like(first_sorted)
    np.put_along_axis(out, order, first_sorted, axis=1)
    return out
