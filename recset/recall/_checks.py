"""Checks of a recall configuration against the catalog it is built on.

A ``[categories."KEY"]`` override matches a category by id or by category-path prefix (see
:meth:`RecallConfig.mix_for_categories`); a key that matches nothing is almost always a typo,
and would otherwise be accepted silently.
"""

from __future__ import annotations

import difflib
import logging

import numpy as np
from numpy.typing import NDArray

from recset.data import Dataset
from recset.errors import ConfigError
from recset.recall._config import RecallConfig

_log = logging.getLogger(__name__)


def category_names(dataset: Dataset) -> tuple[NDArray[np.object_], NDArray[np.object_]]:
    """(ids, paths) of the catalog's categories, one entry per category id."""
    n = dataset.n_categories
    ids = np.asarray(dataset.categories.ids(np.arange(n, dtype=np.int32)), dtype=object)
    return ids, np.asarray(dataset.catalog.category_path, dtype=object)


def key_matches(
    key: str, ids: NDArray[np.object_], paths: NDArray[np.object_]
) -> NDArray[np.bool_]:
    """Per category: ``key`` equals its id or is a prefix of its path at a level boundary."""
    return np.array(
        [
            cid == key or (isinstance(p, str) and (p == key or p.startswith(key + " > ")))
            for cid, p in zip(ids, paths, strict=True)
        ],
        dtype=bool,
    )


def _path_prefixes(paths: NDArray[np.object_]) -> list[str]:
    out: set[str] = set()
    for p in paths:
        if isinstance(p, str):
            parts = p.split(" > ")
            out.update(" > ".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(out)


def check_category_keys(
    config: RecallConfig, dataset: Dataset, *, allow_unknown: bool = False
) -> list[str]:
    """The override keys of ``config`` that match no category of ``dataset``.

    Raises
    ------
    ConfigError
        When a key matches no category (naming the nearest existing ids and path prefixes),
        unless ``allow_unknown``: then each such key is logged as a warning and returned.
    """
    if not config.categories:
        return []
    ids, paths = category_names(dataset)
    unknown = [k for k in config.categories if not key_matches(k, ids, paths).any()]
    if not unknown:
        return []
    names = sorted({str(i) for i in ids if i is not None}) + _path_prefixes(paths)
    messages = []
    for key in unknown:
        near = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
        hint = f"; nearest: {', '.join(repr(n) for n in near)}" if near else ""
        messages.append(
            f'[categories."{key}"] matches no category id or category-path prefix of '
            f"{dataset.name}{hint}"
        )
    if not allow_unknown:
        raise ConfigError(
            "\n".join(messages)
            + "\n(fix the key, or pass --allow-unknown-categories to build anyway)"
        )
    for m in messages:
        _log.warning("%s (ignored: --allow-unknown-categories)", m)
    return unknown


def mix_item_counts(config: RecallConfig, seed_mix: NDArray[np.int32]) -> dict[str, int]:
    """How many catalog items each mix serves (key ``""``: the default mix)."""
    keys = list(config.mixes())
    counts = np.bincount(np.asarray(seed_mix, dtype=np.int64), minlength=len(keys))
    return {k: int(c) for k, c in zip(keys, counts, strict=False)}
